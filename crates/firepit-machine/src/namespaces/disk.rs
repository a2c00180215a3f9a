//! Disk limits: every machine's writable layer in a file system of its own
//! size, enforced by the kernel.
//!
//! The pool is one btrfs file system in a sparse image file (made once,
//! `mkfs.btrfs`), loop-mounted `nosuid,nodev` at [`PoolConfig::dir`] with
//! quotas on. A machine with a disk limit gets a subvolume `<dir>/<id>/`
//! holding its overlay `upper/` and `work/` and its `guest.log`, and a qgroup
//! limit on it: writing past the limit fails inside the machine with
//! `EDQUOT` ("Disk quota exceeded"), and the pool as a whole can never take
//! more of the host's disk than its image's size. Every per-machine step is
//! an ioctl (subvolume create, qgroup limit, subvolume destroy), so making a
//! machine stays in its millisecond budget.
//!
//! Why btrfs and not project quotas on ext4 or XFS: those need a kernel built
//! with `CONFIG_QFMT_V2` (ext4) or `CONFIG_XFS_QUOTA`, which hosts such as
//! Firecracker guests leave out, while btrfs qgroups need only btrfs itself,
//! and the same ioctls work on every kernel that has it (simple quotas where
//! the kernel knows them, 6.7+, full qgroups before).
//!
//! The mount is made in the host's mount namespace and kept across daemon
//! restarts; [`Pool::open`] mounts the image when it is not mounted (finding
//! the loop device still attached to it, if any) and does nothing when it is.
//!
//! **Architecture Invariant:** the pool's mount point is root-only (0700), so
//! no host user can reach a file in a machine's layer (a setuid one, say).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, MachineId};

/// The smallest pool image: what `mkfs.btrfs` accepts, with room to spare.
pub const MIN_POOL: u64 = 256 << 20;

/// Where the disk pool lives and how big its image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The pool's image file (sparse; formatted once).
    pub image: PathBuf,
    /// Where the pool is mounted; a machine's layer is `<dir>/<id>/`.
    pub dir: PathBuf,
    /// The image's size when it is made. An existing image keeps its size.
    pub size_bytes: u64,
}

/// The mounted pool.
pub(crate) struct Pool {
    dir: PathBuf,
    /// The pool's root, open: subvolumes are made and destroyed through it,
    /// and it keeps the mount from being unmounted under the daemon.
    root: OwnedFd,
}

// linux/btrfs.h
const BTRFS_IOC_SUBVOL_CREATE: u64 = 0x5000_940e; // _IOW(0x94, 14, vol_args)
const BTRFS_IOC_SNAP_DESTROY: u64 = 0x5000_940f; // _IOW(0x94, 15, vol_args)
const BTRFS_IOC_SNAP_CREATE_V2: u64 = 0x5000_9417; // _IOW(0x94, 23, vol_args_v2)
const BTRFS_IOC_QUOTA_CTL: u64 = 0xc010_9428; // _IOWR(0x94, 40, quota_ctl_args)
const BTRFS_IOC_QGROUP_LIMIT: u64 = 0x8030_942b; // _IOR(0x94, 43, qgroup_limit_args)
const BTRFS_IOC_INO_LOOKUP: u64 = 0xd000_9412; // _IOWR(0x94, 18, ino_lookup_args)
const BTRFS_IOC_FS_INFO: u64 = 0x8400_941f; // _IOR(0x94, 31, fs_info_args)
const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
const BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA: u64 = 4;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// The inode number of every subvolume's root directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `ioctl(fd, request, arg)`.
fn ioctl<T>(fd: &impl AsRawFd, request: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is the `repr(C)` struct the request reads and writes,
    // valid for the whole call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, std::ptr::from_mut(arg)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn vol_args(name: &str) -> VolArgs {
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    // Machine ids are at most 40 bytes, layer names a few more.
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    args
}

/// Snapshots the subvolume `src` (its root directory's fd) as `name` in the
/// directory `dest`, read-only or writable. One ioctl: after a crash the
/// snapshot is there whole or not at all.
pub(crate) fn snapshot(
    src: &impl AsRawFd,
    dest: &impl AsRawFd,
    name: &str,
    readonly: bool,
) -> io::Result<()> {
    if name.len() >= 4000 || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a subvolume name",
        ));
    }
    let mut args = VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: if readonly { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    };
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    ioctl(dest, BTRFS_IOC_SNAP_CREATE_V2, &mut args)
}

/// Destroys the subvolume `name` in the directory `dir`; one that is not
/// there is fine.
pub(crate) fn destroy(dir: &impl AsRawFd, name: &str) -> io::Result<()> {
    let mut args = vol_args(name);
    match ioctl(dir, BTRFS_IOC_SNAP_DESTROY, &mut args) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Sets the disk limit of the subvolume `layer`.
pub(crate) fn set_limit(layer: &impl AsRawFd, limit: u64) -> io::Result<()> {
    let mut args = QgroupLimitArgs {
        // 0: the subvolume of the descriptor.
        qgroupid: 0,
        flags: BTRFS_QGROUP_LIMIT_MAX_RFER,
        max_rfer: limit,
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    ioctl(layer, BTRFS_IOC_QGROUP_LIMIT, &mut args)
}

#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

#[repr(C)]
struct FsInfoArgs {
    max_id: u64,
    num_devices: u64,
    fsid: [u8; 16],
    rest: [u8; 1024 - 32],
}

/// The bytes the subvolume `layer` takes (its qgroup's `referenced`), read
/// from `/sys/fs/btrfs/<fsid>/qgroups/0_<subvolume id>/` (kernel 5.9+): two
/// ioctls and a small file, whatever the layer holds. `None` where the
/// kernel does not show qgroups there.
pub(crate) fn used_bytes(layer: &impl AsRawFd) -> Option<u64> {
    let mut lookup = InoLookupArgs {
        treeid: 0,
        objectid: BTRFS_FIRST_FREE_OBJECTID,
        name: [0; 4080],
    };
    ioctl(layer, BTRFS_IOC_INO_LOOKUP, &mut lookup).ok()?;
    let mut info = FsInfoArgs {
        max_id: 0,
        num_devices: 0,
        fsid: [0; 16],
        rest: [0; 1024 - 32],
    };
    ioctl(layer, BTRFS_IOC_FS_INFO, &mut info).ok()?;
    let file = Path::new("/sys/fs/btrfs")
        .join(uuid(&info.fsid))
        .join("qgroups")
        .join(format!("0_{}", lookup.treeid))
        .join("referenced");
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// A file system id as sysfs names it (`8-4-4-4-12` lowercase hex).
fn uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn statfs_type(fd: &OwnedFd) -> io::Result<i64> {
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out pointer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// The bytes an unprivileged writer may still use on `path`'s file system.
pub fn free_space(path: &Path) -> Result<u64, Error> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidSpec(format!("{} has a NUL byte", path.display())))?;
    // SAFETY: statvfs is plain data that statvfs(3) fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io("reading the free space of", path)(
            io::Error::last_os_error(),
        ));
    }
    Ok(st.f_bavail * st.f_frsize)
}

impl PoolConfig {
    /// Checks the paths and the size.
    pub fn validate(&self) -> Result<(), Error> {
        for p in [&self.image, &self.dir] {
            if !p.is_absolute() {
                return Err(Error::InvalidSpec(format!(
                    "disk pool path {} is not absolute",
                    p.display()
                )));
            }
        }
        crate::spec::overlay_option_path("disk pool dir", &self.dir)?;
        if self.size_bytes < MIN_POOL {
            return Err(Error::InvalidSpec(format!(
                "disk pool size {} bytes is below the minimum of {} MiB",
                self.size_bytes,
                MIN_POOL >> 20
            )));
        }
        Ok(())
    }
}

impl Pool {
    /// Mounts the pool if it is not mounted, making and formatting its image
    /// first if there is none, and turns quotas on. Idempotent.
    pub(crate) fn open(config: &PoolConfig) -> Result<Pool, Error> {
        config.validate()?;
        let has_btrfs = fs::read_to_string("/proc/filesystems")
            .map_err(Error::io("reading", "/proc/filesystems"))?
            .lines()
            .any(|l| l.split_whitespace().last() == Some("btrfs"));
        if !has_btrfs {
            return Err(Error::Unsupported(
                "disk limits need btrfs, which this kernel lacks (load the btrfs module), \
                 or turn the disk pool off"
                    .into(),
            ));
        }
        let dir = &config.dir;
        fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .map_err(Error::io("creating", dir))?;
        match mounted_at(dir)? {
            Some(m) => {
                let image = fs::canonicalize(&config.image).ok();
                let ours = m.fstype == "btrfs"
                    && m.root == "/"
                    && image.is_some()
                    && loop_backing_file(&m.source) == image;
                if !ours {
                    return Err(Error::Unsupported(format!(
                        "{} is a mount of {} ({}), not of the disk pool {}; unmount it",
                        dir.display(),
                        m.source,
                        m.fstype,
                        config.image.display()
                    )));
                }
            }
            None if config.image.exists() => attach(&config.image, dir)?,
            None => format(config)?,
        }
        let root = open_dir(dir).map_err(Error::io("opening", dir))?;
        if statfs_type(&root).map_err(Error::io("checking", dir))? != BTRFS_SUPER_MAGIC {
            return Err(Error::Unsupported(format!(
                "{} is not a btrfs file system",
                dir.display()
            )));
        }
        enable_quotas(&root).map_err(Error::io("turning quotas on in", dir))?;
        // Root-only: no host user reaches a machine's files through the pool.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("setting mode of", dir))?;
        Ok(Pool {
            dir: dir.clone(),
            root,
        })
    }

    /// The pool's mount point.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pool's root directory, open.
    pub(crate) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// The layer dir of a machine.
    pub(crate) fn layer(&self, id: &MachineId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// Makes the machine's layer (a subvolume) if it does not exist, and sets
    /// its limit.
    pub(crate) fn create_layer(&self, id: &MachineId, limit: u64) -> Result<PathBuf, Error> {
        let path = self.layer(id);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && m.ino() == BTRFS_FIRST_FREE_OBJECTID => {}
            Ok(_) => {
                return Err(Error::Unsupported(format!(
                    "{} is in the disk pool but is not a machine layer (a subvolume)",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut args = vol_args(id.as_str());
                ioctl(&self.root, BTRFS_IOC_SUBVOL_CREATE, &mut args)
                    .map_err(Error::io("creating the disk layer", &path))?;
            }
            Err(e) => return Err(Error::io("reading", &path)(e)),
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("setting mode of", &path))?;
        let layer = open_dir(&path).map_err(Error::io("opening", &path))?;
        set_limit(&layer, limit).map_err(Error::io("setting the disk limit of", &path))?;
        Ok(path)
    }

    /// Destroys a machine's layer and everything in it. A layer that is not
    /// there is fine.
    pub(crate) fn remove_layer(&self, id: &MachineId) -> Result<(), Error> {
        let path = self.layer(id);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("reading", &path)(e)),
            Ok(m) if m.ino() != BTRFS_FIRST_FREE_OBJECTID => {
                // Not a subvolume (made by hand): removed as files.
                return fs::remove_dir_all(&path).map_err(Error::io("removing", &path));
            }
            Ok(_) => {}
        }
        let mut args = vol_args(id.as_str());
        // The file system drops the subvolume's extents in the background;
        // its qgroup goes with it (kernels before 6.8 keep an empty one).
        ioctl(&self.root, BTRFS_IOC_SNAP_DESTROY, &mut args)
            .map_err(Error::io("destroying the disk layer", &path))
    }

    /// The ids of the layers in the pool.
    pub(crate) fn layers(&self) -> Vec<MachineId> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| MachineId::new(s).ok()))
            .collect()
    }
}

fn enable_quotas(root: &OwnedFd) -> io::Result<()> {
    // Turning them on when they are on does nothing.
    let mut args = QuotaCtlArgs {
        cmd: BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA,
        status: 0,
    };
    match ioctl(root, BTRFS_IOC_QUOTA_CTL, &mut args) {
        // Kernels before 6.7 know only full qgroups.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut args = QuotaCtlArgs {
                cmd: BTRFS_QUOTA_CTL_ENABLE,
                status: 0,
            };
            ioctl(root, BTRFS_IOC_QUOTA_CTL, &mut args)
        }
        r => r,
    }
}

/// Makes the image as `<image>.new`, formats and mounts it, and renames it
/// into place: an image at its final name is always formatted.
fn format(config: &PoolConfig) -> Result<(), Error> {
    let mut name = config.image.as_os_str().to_owned();
    name.push(".new");
    let tmp = PathBuf::from(name);
    if let Some(parent) = tmp.parent() {
        fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
    }
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::io("removing", &tmp)(e));
        }
        _ => {}
    }
    let result = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io("creating", &tmp))?;
        file.set_len(config.size_bytes)
            .map_err(Error::io("sizing", &tmp))?;
        drop(file);
        run(
            Command::new("mkfs.btrfs")
                .args([
                    "-q",
                    "-f",
                    "-m",
                    "single",
                    "-d",
                    "single",
                    "-L",
                    "firepit-layers",
                ])
                .arg(&tmp),
            "formatting the disk pool (mkfs.btrfs, from the Debian package btrfs-progs)",
        )?;
        attach(&tmp, &config.dir)?;
        let renamed = fs::rename(&tmp, &config.image).map_err(Error::io("naming", &config.image));
        if renamed.is_err() {
            let _ = unmount(&config.dir);
        }
        renamed
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Mounts an image at `dir`: through the loop device still attached to it if
/// there is one (its machines may still run), else a new one that goes away
/// with the mount.
fn attach(image: &Path, dir: &Path) -> Result<(), Error> {
    let opts = "nosuid,nodev,noatime,discard=async";
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "btrfs"]);
    match attached_loop(image) {
        Some(dev) => cmd.args(["-o", opts]).arg(dev),
        None => cmd.args(["-o", &format!("loop,{opts}")]).arg(image),
    };
    run(cmd.arg(dir), "mounting the disk pool")
}

fn unmount(dir: &Path) -> Result<(), Error> {
    run(Command::new("umount").arg(dir), "unmounting the disk pool")
}

fn run(cmd: &mut Command, what: &'static str) -> Result<(), Error> {
    let out = cmd.output().map_err(|e| Error::Launch {
        stage: what.into(),
        message: format!("{:?}: {e}", cmd.get_program()),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Launch {
        stage: what.into(),
        message: format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ),
    })
}

/// A line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v << 3 | u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if b[i] == b'\\'
            && let Some(v) = octal
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let root = unescape(left.nth(3)?);
            let point = PathBuf::from(unescape(left.next()?));
            let mut right = right.split(' ');
            let fstype = right.next()?.to_owned();
            let source = unescape(right.next()?);
            Some(Mount {
                root,
                point,
                fstype,
                source,
            })
        })
        .collect()
}

/// The mount on top at `dir`, if `dir` is a mount point.
fn mounted_at(dir: &Path) -> Result<Option<Mount>, Error> {
    let dir = fs::canonicalize(dir).map_err(Error::io("resolving", dir))?;
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("reading", "/proc/self/mountinfo"))?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.point == dir))
}

/// The file behind a loop device (`/dev/loop3`).
fn loop_backing_file(dev: &str) -> Option<PathBuf> {
    let name = dev.strip_prefix("/dev/")?;
    let text = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// The loop device attached to `image`, if any.
fn attached_loop(image: &Path) -> Option<String> {
    let image = fs::canonicalize(image).ok()?;
    fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with("loop"))
        .map(|n| format!("/dev/{n}"))
        .find(|dev| loop_backing_file(dev).as_deref() == Some(image.as_path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsids_are_written_as_sysfs_names_them() {
        let b: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(uuid(&b), "00112233-4455-6677-8899-aabbccddeeff");
        let ioc = |dir: u64, nr: u64, size: usize| dir << 30 | (size as u64) << 16 | 0x94 << 8 | nr;
        assert_eq!(BTRFS_IOC_INO_LOOKUP, ioc(3, 18, size_of::<InoLookupArgs>()));
        assert_eq!(BTRFS_IOC_FS_INFO, ioc(2, 31, size_of::<FsInfoArgs>()));
    }

    #[test]
    fn ioctl_numbers_match_their_encoding() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr
        let ioc = |dir: u64, nr: u64, size: usize| dir << 30 | (size as u64) << 16 | 0x94 << 8 | nr;
        assert_eq!(BTRFS_IOC_SUBVOL_CREATE, ioc(1, 14, size_of::<VolArgs>()));
        assert_eq!(BTRFS_IOC_SNAP_DESTROY, ioc(1, 15, size_of::<VolArgs>()));
        assert_eq!(BTRFS_IOC_QUOTA_CTL, ioc(3, 40, size_of::<QuotaCtlArgs>()));
        assert_eq!(
            BTRFS_IOC_QGROUP_LIMIT,
            ioc(2, 43, size_of::<QgroupLimitArgs>())
        );
        assert_eq!(size_of::<VolArgs>(), 4096);
        assert_eq!(size_of::<VolArgsV2>(), 4096);
        assert_eq!(BTRFS_IOC_SNAP_CREATE_V2, ioc(1, 23, size_of::<VolArgsV2>()));
    }

    #[test]
    fn mountinfo_lines() {
        let text = "36 35 98:0 / /var/lib/fire\\040pit/layers rw,noatime shared:1 - btrfs /dev/loop3 rw,space_cache=v2\n\
                    37 35 0:5 /sub /mnt rw - ext4 /dev/vda rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(
            m[0],
            Mount {
                root: "/".into(),
                point: "/var/lib/fire pit/layers".into(),
                fstype: "btrfs".into(),
                source: "/dev/loop3".into(),
            }
        );
        assert_eq!(m[1].root, "/sub");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn escapes_only_where_they_are_whole() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\\\x"), "\\\\x");
    }

    #[test]
    fn pool_settings_are_checked() {
        let ok = PoolConfig {
            image: "/var/lib/firepit/layers.img".into(),
            dir: "/var/lib/firepit/layers".into(),
            size_bytes: 1 << 30,
        };
        ok.validate().unwrap();
        for bad in [
            PoolConfig {
                size_bytes: MIN_POOL - 1,
                ..ok.clone()
            },
            PoolConfig {
                dir: "rel".into(),
                ..ok.clone()
            },
            PoolConfig {
                dir: "/a,b".into(),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
