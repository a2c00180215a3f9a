//! Idmapped mounts: the image, whose files are owned by the image's
//! `uid_base..`, shown to one machine as owned by that machine's own range
//! (see `super::uid_ranges`), without touching the image.
//!
//! An idmapped mount takes its mapping from a user namespace. The launcher
//! makes a throwaway one: a helper cloned into a new user namespace, whose
//! `uid_map` and `gid_map` say `<image base> <machine base> 65536`; it opens
//! `/proc/<helper>/ns/user`, kills and reaps the helper (the descriptor keeps
//! the namespace). Then `open_tree(OPEN_TREE_CLONE)` makes a detached copy of
//! the image's mount, `mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY)`
//! gives it the mapping, and `move_mount` attaches it at the machine's
//! `lower/<n>`, the overlay's n-th lower layer (an image with layers stacked
//! below its tree has one such mount per layer, all through the one
//! namespace). Overlayfs copies files up with the mapped owners, so the upper
//! layer stays in the machine's range.
//!
//! A fork's layer (see `super::checkpoint`) is mapped the same way, writable:
//! its files keep the owners of the layer it was snapshotted from (its
//! parent's range), and the overlay's upper and work dirs are taken from the
//! mapped mount, so what the fork writes is stored in that range too and
//! shown in its own; the mapping also keeps host root as root, whom overlayfs
//! makes its work files and whiteouts as.
//!
//! Runs in the launcher only, in its private mount namespace, while it is
//! single-threaded (Linux 5.19 or later: idmapped layers of overlayfs).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the launcher maps: the image's range onto the machine's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdmapPlan {
    /// The dir under which each mapped layer is mounted (`<lower>/<n>`, topmost first).
    pub lower: PathBuf,
    /// Owner base of the image's files on disk.
    pub image_uid_base: u32,
}

/// What the launcher maps for a fork: its layer, whose files keep the owners
/// of the layer it was snapshotted from, onto the machine's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerMap {
    /// The layer dir (upper and work below it), as the host has it.
    pub layer: PathBuf,
    /// Where the mapped layer is mounted; the overlay's upper and work dirs
    /// are below it.
    pub at: PathBuf,
    /// Owner base of the layer's files on disk.
    pub owners: u32,
}

/// Mounts each of `layers` (topmost first) at `plan.lower/<n>`, its owners
/// `image_uid_base + i` shown as `machine_base + i` (i < `count`), read-only.
pub(crate) fn mount_layers(
    layers: &[&Path],
    plan: &IdmapPlan,
    machine_base: u32,
    count: u32,
) -> io::Result<()> {
    let userns = mapping_namespace(plan.image_uid_base, machine_base, count, false)?;
    make_dir(&plan.lower)?;
    for (n, layer) in layers.iter().enumerate() {
        let at = plan.lower.join(n.to_string());
        mount_mapped(layer, &at, &userns, libc::MOUNT_ATTR_RDONLY)?;
    }
    Ok(())
}

fn make_dir(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(context(e, "mkdir", path)),
        _ => Ok(()),
    }
}

/// Mounts a fork's layer at `map.at`, writable, its owners `map.owners + n`
/// shown (and written) as `machine_base + n` (n < `count`). Host root stays
/// root: overlayfs makes its work files and whiteouts as the mounter.
pub(crate) fn mount_layer(map: &LayerMap, machine_base: u32, count: u32) -> io::Result<()> {
    let userns = mapping_namespace(map.owners, machine_base, count, true)?;
    mount_mapped(&map.layer, &map.at, &userns, 0)
}

/// Clones the mount of `src`, gives it the idmapping of `userns` (and
/// `extra` mount attributes) and attaches it at `at` (made, root's, 0700).
fn mount_mapped(src: &Path, at: &Path, userns: &OwnedFd, extra: u64) -> io::Result<()> {
    make_dir(at)?;
    let image = src;
    let src = cstr(image);
    // SAFETY: open_tree with a valid path; the result is a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if tree < 0 {
        return Err(context(io::Error::last_os_error(), "open_tree", image));
    }
    // SAFETY: a fresh descriptor that nobody else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | extra,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: the attr struct outlives the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(context(io::Error::last_os_error(), "mount_setattr", image));
    }
    let dst = cstr(at);
    // SAFETY: valid descriptor and paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(context(io::Error::last_os_error(), "move_mount", at));
    }
    Ok(())
}

/// A user namespace that maps `from..from+count` (inside) to
/// `to..to+count` (outside), and root to root if `keep_root`, held by a
/// descriptor.
///
/// Its only process is a helper that shares the launcher's memory
/// (`CLONE_VM`: nothing to copy, nothing to tear down) and sleeps on a small
/// stack of its own until it is killed.
fn mapping_namespace(from: u32, to: u32, count: u32, keep_root: bool) -> io::Result<OwnedFd> {
    let mut stack = vec![0u8; HELPER_STACK];
    // SAFETY: the top of the buffer, aligned down to 16 bytes as the ABI wants.
    let top = unsafe { stack.as_mut_ptr().add(HELPER_STACK) };
    let top = top.wrapping_sub(top as usize % 16);
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() } as usize;
    // SAFETY: the helper runs on its own stack, which `Child` keeps alive
    // until the helper is reaped, and only makes system calls.
    let pid = unsafe {
        libc::clone(
            helper,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_NEWUSER | libc::SIGCHLD,
            parent as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(context(
            io::Error::last_os_error(),
            "clone",
            Path::new("user namespace"),
        ));
    }
    let child = Child { pid, _stack: stack };
    let root = if keep_root { "0 0 1\n" } else { "" };
    let map = format!("{root}{from} {to} {count}\n");
    for file in ["uid_map", "gid_map"] {
        let path = PathBuf::from(format!("/proc/{}/{file}", child.pid));
        fs::write(&path, &map).map_err(|e| context(e, "write", &path))?;
    }
    let ns = PathBuf::from(format!("/proc/{}/ns/user", child.pid));
    let file = fs::File::open(&ns).map_err(|e| context(e, "open", &ns))?;
    Ok(file.into())
}

const HELPER_STACK: usize = 16 << 10;

/// The helper's body: never outlive the launcher, sleep until killed.
extern "C" fn helper(parent: *mut libc::c_void) -> libc::c_int {
    // SAFETY: plain system calls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() as usize != parent as usize {
            libc::_exit(0);
        }
        loop {
            libc::pause();
        }
    }
}

/// The helper: killed and reaped when dropped, then its stack is freed.
struct Child {
    pid: libc::pid_t,
    _stack: Vec<u8>,
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

fn context(e: io::Error, what: &str, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}
