//! Checkpoints, restore and fork of machines whose writable layer is a
//! subvolume of the disk pool ([`super::disk`]).
//!
//! Layout in the pool:
//! - `<pool>/<id>/`: the machine's layer (upper, work, guest log) and
//!   `base.json`, the checkpoint its files came from (the last one made or
//!   restored), which becomes the next checkpoint's parent;
//! - `<pool>/.checkpoints/<id>/<checkpoint>/`: a read-only snapshot of the
//!   layer, and `<checkpoint>.json` beside it, its record ([`Checkpoint`]);
//! - `<pool>/.restore-<id>/`: a restore's new layer while it is made.
//!
//! Names starting with `.` are never machine ids, so the pool's machine
//! layers and these do not mix.
//!
//! - **Checkpoint**: a running machine's cgroup is frozen, the layer is
//!   snapshotted read-only (one ioctl: the cost is a btrfs transaction, not
//!   the size of what changed), the cgroup is thawed; then its size is
//!   counted and its record written (temporary file, `fsync`, rename). The
//!   record is the commit: a snapshot without one is a checkpoint cut off
//!   halfway, which [`NamespacesBackend::recover_checkpoints`] removes.
//! - **Restore**: the machine's processes are killed (what they would still
//!   write is thrown away), the checkpoint snapshotted writable as
//!   `.restore-<id>`, given the machine's disk limit and its `base.json`, and
//!   swapped with the layer by one `renameat2(RENAME_EXCHANGE)`; the machine
//!   is started if it ran, and the old layer (now `.restore-<id>`) destroyed. Whenever it is cut off, the machine has one whole layer, the
//!   old or the new, and the other is a `.restore-*` that recovery destroys.
//!   The overlay is never mounted while its upper is swapped: the machine's
//!   mounts die with its processes.
//! - **Fork**: as creating a machine, but its layer starts as a writable
//!   snapshot (of a checkpoint, or of the parent's layer frozen for the
//!   moment), its files' owners moved from the parent's uid range to the
//!   child's (the setuid and setgid bits a chown clears are put back; file
//!   capabilities, which a chown drops, are lost), and its overlay work dir
//!   and guest log left behind.
//!
//! **Decision (machines without a pool layer):** no checkpoints: such a
//! machine (no disk limit, or a backend without a pool) gets
//! [`Error::Unsupported`] saying so. A copy of its upper would cost what the
//! machine changed since it was made (the `cp -a` floor of the benchmark) and
//! break every budget; the daemon gives sessions a disk limit by default, so
//! their layers are in the pool.
//!
//! **Architecture Invariant:** nothing here walks a path through a machine's
//! upper: the host's paths end at the layer's top (root's, never seen by the
//! machine); below it, trees are walked by fd ([`resolve::walk`]) and only
//! while nothing can change them (a fresh snapshot no machine mounts).

use std::ffi::CStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::disk::{self, Pool};
use super::uid_ranges::MachineIds;
use super::{NamespacesBackend, remove_all, resolve};
use crate::spec::UID_COUNT;
use crate::{Checkpoint, CheckpointId, Error, MachineId, MachineInfo, MachineSpec, NewCheckpoint};

/// The dir of all machines' checkpoints in the pool.
const CHECKPOINTS: &str = ".checkpoints";
/// The prefix of a restore's layer while it is made.
const RESTORING: &str = ".restore-";
/// How long freezing a machine may take before the checkpoint gives up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// The inode number of a subvolume's root directory.
const SUBVOLUME_INO: u64 = 256;

/// The record in a layer of the checkpoint its files came from.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Base {
    checkpoint: Option<CheckpointId>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Maps a failure to make something in the pool: a full pool is said so.
fn pool_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |e| match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::DiskFull { what },
        _ => Error::io(what, path)(e),
    }
}

/// Writes `value` as `path` durably: a temporary file beside it, `fsync`,
/// rename. `path`'s dir is the host's.
fn write_durable<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(value).expect("records serialize");
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(pool_err("writing", path)(e));
    }
    Ok(())
}

fn read_json<T: for<'a> Deserialize<'a>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOLUME_INO)
}

/// Bytes the files below `dir` hold on disk (each inode once).
fn tree_bytes(dir: BorrowedFd<'_>) -> io::Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    resolve::walk(dir, |_, _, st| {
        if st.st_nlink <= 1 || seen.insert(st.st_ino) {
            total = total.saturating_add(st.st_blocks as u64 * 512);
        }
        Ok(())
    })?;
    Ok(total)
}

/// Moves every owner (uid and gid) in `[from, from + 65536)` below and at
/// `dir` to the same place in `[to, to + 65536)`; owners outside stay.
fn shift_owners(dir: BorrowedFd<'_>, from: u32, to: u32) -> io::Result<()> {
    if from == to {
        return Ok(());
    }
    let shift = |id: u32| {
        if id >= from && id - from < UID_COUNT {
            id - from + to
        } else {
            id
        }
    };
    let one = |parent: BorrowedFd<'_>, name: &CStr, st: &libc::stat| -> io::Result<()> {
        let (uid, gid) = (shift(st.st_uid), shift(st.st_gid));
        if (uid, gid) == (st.st_uid, st.st_gid) {
            return Ok(());
        }
        // SAFETY: valid fd and C string; the link itself, never its target.
        let r = unsafe {
            libc::fchownat(
                parent.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        if !is_link && st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            // chown cleared them. Not a link (the tree does not change
            // while it is walked), so this reaches the entry itself.
            // SAFETY: valid fd and C string.
            let r = unsafe {
                libc::fchmodat(parent.as_raw_fd(), name.as_ptr(), st.st_mode & 0o7777, 0)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // The top itself.
    // SAFETY: valid fd and out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(dir.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid fd; an empty path means the fd itself.
    let r = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            c"".as_ptr(),
            shift(st.st_uid),
            shift(st.st_gid),
            libc::AT_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    resolve::walk(dir, one)
}

impl NamespacesBackend {
    /// The pool that holds the machine's layer, or why it has none.
    fn layer_pool(&self, spec: &MachineSpec) -> Result<&Pool, Error> {
        match (&self.pool, spec.limits.disk_bytes) {
            (Some(pool), Some(_)) => Ok(pool),
            (None, _) => Err(Error::Unsupported(format!(
                "machine {}: checkpoints need the disk pool, which this backend has not",
                spec.id
            ))),
            (Some(_), None) => Err(Error::Unsupported(format!(
                "machine {}: checkpoints need the machine's files in the disk pool, and it has \
                 no disk limit (it was made without one)",
                spec.id
            ))),
        }
    }

    fn checkpoints_dir(pool: &Pool, id: &MachineId) -> PathBuf {
        pool.dir().join(CHECKPOINTS).join(id.as_str())
    }

    fn record_path(pool: &Pool, id: &MachineId, cp: &CheckpointId) -> PathBuf {
        Self::checkpoints_dir(pool, id).join(format!("{cp}.json"))
    }

    /// A checkpoint's record, if it is whole (record and snapshot).
    fn find_checkpoint(
        pool: &Pool,
        id: &MachineId,
        cp: &CheckpointId,
    ) -> Result<Checkpoint, Error> {
        let dir = Self::checkpoints_dir(pool, id);
        match read_json::<Checkpoint>(&Self::record_path(pool, id, cp)) {
            Some(c) if &c.id == cp && is_subvolume(&dir.join(cp.as_str())) => Ok(c),
            _ => Err(Error::CheckpointNotFound {
                machine: id.to_string(),
                checkpoint: cp.to_string(),
            }),
        }
    }

    /// Runs `f` with the machine's processes frozen if it runs; thaws
    /// whatever `f` did.
    fn frozen<T>(&self, id: &MachineId, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        if self.live_init(id).is_none() {
            return f();
        }
        self.cgroups.freeze(id.as_str(), FREEZE_TIMEOUT)?;
        let r = f();
        let thawed = self.cgroups.thaw(id.as_str());
        if let Err(e) = &thawed {
            tracing::error!(machine = %id, error = %e, "thawing the machine after a snapshot");
        }
        let v = r?;
        thawed?;
        Ok(v)
    }

    pub(super) fn checkpoint_locked(
        &self,
        id: &MachineId,
        new: &NewCheckpoint,
    ) -> Result<Checkpoint, Error> {
        new.validate()?;
        let spec = self.load_spec(id)?;
        let pool = self.layer_pool(&spec)?;
        let dir = Self::checkpoints_dir(pool, id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(pool_err("creating", &dir))?;
        let exists = || Error::CheckpointExists {
            machine: id.to_string(),
            checkpoint: new.id.to_string(),
        };
        let snap = dir.join(new.id.as_str());
        let record = Self::record_path(pool, id, &new.id);
        if record.exists() {
            return Err(exists());
        }
        let dir_fd = disk::open_dir(&dir).map_err(Error::io("opening", &dir))?;
        // A snapshot without a record is a checkpoint cut off halfway.
        disk::destroy(&dir_fd, new.id.as_str()).map_err(Error::io("removing", &snap))?;
        let layer_path = pool.layer(id);
        let layer = disk::open_dir(&layer_path).map_err(Error::io("opening", &layer_path))?;
        let running = self.live_init(id).is_some();
        self.frozen(id, || {
            disk::snapshot(&layer, &dir_fd, new.id.as_str(), true)
                .map_err(pool_err("making the checkpoint", &snap))
        })?;
        let made = (|| {
            let snap_fd = disk::open_dir(&snap).map_err(Error::io("opening", &snap))?;
            let upper = resolve::open_at(
                snap_fd.as_fd(),
                "upper",
                libc::O_PATH | libc::O_DIRECTORY,
                resolve::NO_LINKS,
            )
            .map_err(Error::io("opening", snap.join("upper")))?;
            let size_bytes =
                tree_bytes(upper.as_fd()).map_err(Error::io("measuring", snap.join("upper")))?;
            let base_path = layer_path.join("base.json");
            let cp = Checkpoint {
                id: new.id.clone(),
                machine: id.clone(),
                name: new.name.clone(),
                created_at_ms: now_ms(),
                size_bytes,
                made_by: new.made_by.clone(),
                parent: read_json::<Base>(&base_path).and_then(|b| b.checkpoint),
                running,
            };
            write_durable(&record, &cp)?;
            Ok(cp)
        })();
        match made {
            Ok(cp) => {
                let base = Base {
                    checkpoint: Some(cp.id.clone()),
                };
                if let Err(e) = super::write_json(&layer_path.join("base.json"), &base) {
                    // The checkpoint is whole; only the tree's next parent is off.
                    tracing::warn!(machine = %id, error = %e, "recording the layer's checkpoint");
                }
                Ok(cp)
            }
            Err(e) => {
                let _ = disk::destroy(&dir_fd, new.id.as_str());
                Err(e)
            }
        }
    }

    pub(super) fn checkpoints_of(&self, id: &MachineId) -> Result<Vec<Checkpoint>, Error> {
        let spec = self.load_spec(id)?;
        let Ok(pool) = self.layer_pool(&spec) else {
            return Ok(Vec::new());
        };
        let dir = Self::checkpoints_dir(pool, id);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(Error::io("listing", &dir))?,
        };
        let mut all: Vec<Checkpoint> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let cp = CheckpointId::new(name.to_str()?.strip_suffix(".json")?).ok()?;
                Self::find_checkpoint(pool, id, &cp).ok()
            })
            .collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(all)
    }

    pub(super) fn remove_checkpoint_locked(
        &self,
        id: &MachineId,
        cp: &CheckpointId,
    ) -> Result<(), Error> {
        let spec = self.load_spec(id)?;
        let pool = self.layer_pool(&spec)?;
        Self::find_checkpoint(pool, id, cp)?;
        let record = Self::record_path(pool, id, cp);
        // The record first: without it the snapshot is no checkpoint.
        fs::remove_file(&record).map_err(Error::io("removing", &record))?;
        let dir = Self::checkpoints_dir(pool, id);
        let dir_fd = disk::open_dir(&dir).map_err(Error::io("opening", &dir))?;
        disk::destroy(&dir_fd, cp.as_str()).map_err(Error::io("removing", dir.join(cp.as_str())))
    }

    pub(super) fn restore_locked(
        &self,
        id: &MachineId,
        cp: &CheckpointId,
    ) -> Result<MachineInfo, Error> {
        let spec = self.load_spec(id)?;
        let pool = self.layer_pool(&spec)?;
        Self::find_checkpoint(pool, id, cp)?;
        let was_running = self.live_init(id).is_some();
        // Killed, not asked: what its processes would write is thrown away.
        if let Some(rec) = self.live_init(id) {
            super::kill_init(rec, Duration::ZERO);
        }
        self.cleanup_runtime(id)?;
        let swapped = self.swap_layer(pool, &spec, cp);
        let started = if was_running {
            let ids = MachineIds::load(&self.dir(id), &spec)?;
            self.prepare_dirs(&spec, ids.base)
                .and_then(|()| self.launch(&spec, ids))
                .map(Some)
        } else {
            Ok(None)
        };
        // The layer swapped out (or the unused new one), after the start.
        let tmp = format!("{RESTORING}{id}");
        if let Err(e) = disk::destroy(pool.root(), &tmp) {
            tracing::warn!(machine = %id, error = %e, "removing a layer a restore left");
        }
        swapped?;
        match started? {
            Some(info) => Ok(info),
            None => Ok(self.info(id)),
        }
    }

    /// Makes the checkpoint's layer the machine's (stopped) layer, whole or
    /// not at all; what is left at `.restore-<id>` (the old layer, or the
    /// unused new one) is the caller's to destroy.
    fn swap_layer(&self, pool: &Pool, spec: &MachineSpec, cp: &CheckpointId) -> Result<(), Error> {
        let id = &spec.id;
        let tmp = format!("{RESTORING}{id}");
        let tmp_path = pool.dir().join(&tmp);
        disk::destroy(pool.root(), &tmp).map_err(Error::io("removing", &tmp_path))?;
        let snap = Self::checkpoints_dir(pool, id).join(cp.as_str());
        let snap_fd = disk::open_dir(&snap).map_err(Error::io("opening", &snap))?;
        disk::snapshot(&snap_fd, pool.root(), &tmp, false)
            .map_err(pool_err("copying the checkpoint", &tmp_path))?;
        (|| {
            let tmp_fd = disk::open_dir(&tmp_path).map_err(Error::io("opening", &tmp_path))?;
            if let Some(limit) = spec.limits.disk_bytes {
                disk::set_limit(&tmp_fd, limit)
                    .map_err(Error::io("setting the disk limit of", &tmp_path))?;
            }
            let base = Base {
                checkpoint: Some(cp.clone()),
            };
            write_durable(&tmp_path.join("base.json"), &base)?;
            let (a, b) = (
                std::ffi::CString::new(tmp.as_str()).expect("no NUL"),
                std::ffi::CString::new(id.as_str()).expect("no NUL"),
            );
            let root = pool.root().as_raw_fd();
            // SAFETY: valid fds and C strings.
            let r = unsafe {
                libc::renameat2(root, a.as_ptr(), root, b.as_ptr(), libc::RENAME_EXCHANGE)
            };
            if r < 0 {
                return Err(Error::io("swapping in the restored layer", pool.layer(id))(
                    io::Error::last_os_error(),
                ));
            }
            Ok(())
        })()
    }

    pub(super) fn fork_locked(
        &self,
        parent: &MachineId,
        from: Option<&CheckpointId>,
        child: &MachineId,
    ) -> Result<MachineInfo, Error> {
        let parent_spec = self.load_spec(parent)?;
        let pool = self.layer_pool(&parent_spec)?;
        let base = match from {
            Some(cp) => Some(Self::find_checkpoint(pool, parent, cp)?.id),
            None => {
                read_json::<Base>(&pool.layer(parent).join("base.json")).and_then(|b| b.checkpoint)
            }
        };
        let parent_ids = MachineIds::load(&self.dir(parent), &parent_spec)?;
        let spec = MachineSpec {
            id: child.clone(),
            ..parent_spec
        };
        self.create_seeded(&spec, &mut |child_base| {
            let name = child.as_str();
            let layer = pool.layer(child);
            match from {
                Some(cp) => {
                    let snap = Self::checkpoints_dir(pool, parent).join(cp.as_str());
                    let snap_fd = disk::open_dir(&snap).map_err(Error::io("opening", &snap))?;
                    disk::snapshot(&snap_fd, pool.root(), name, false)
                        .map_err(pool_err("copying the checkpoint", &layer))?;
                }
                None => {
                    let src = pool.layer(parent);
                    let src_fd = disk::open_dir(&src).map_err(Error::io("opening", &src))?;
                    self.frozen(parent, || {
                        disk::snapshot(&src_fd, pool.root(), name, false)
                            .map_err(pool_err("copying the machine's files", &layer))
                    })?;
                }
            }
            // What was the parent's alone: its overlay's work dir, its log.
            remove_all(&layer.join("work"))?;
            remove_all(&layer.join("guest.log"))?;
            write_durable(
                &layer.join("base.json"),
                &Base {
                    checkpoint: base.clone(),
                },
            )?;
            let layer_fd = disk::open_dir(&layer).map_err(Error::io("opening", &layer))?;
            let upper = resolve::open_at(
                layer_fd.as_fd(),
                "upper",
                libc::O_RDONLY | libc::O_DIRECTORY,
                resolve::NO_LINKS,
            )
            .map_err(Error::io("opening", layer.join("upper")))?;
            shift_owners(upper.as_fd(), parent_ids.base, child_base).map_err(Error::io(
                "moving the files to the machine's uid range",
                &layer,
            ))
        })
    }

    /// The machine's root as a plain tree at `dest` (see
    /// [`crate::Backend::export`]): the layer (a checkpoint's, or a frozen
    /// moment's) is stacked as a read-only overlay lower over the image in a
    /// mount namespace of a child process's own, so the kernel applies its
    /// whiteouts and opaque dirs; `cp -a` copies the merged tree into `dest`
    /// (fresh, so nothing in it can send a write elsewhere), and the owners of
    /// what the machine wrote move from its uid range to the image's.
    pub(super) fn export_locked(
        &self,
        id: &MachineId,
        from: Option<&CheckpointId>,
        dest: &Path,
    ) -> Result<(), Error> {
        let spec = self.load_spec(id)?;
        let pool = self.layer_pool(&spec)?;
        let ids = MachineIds::load(&self.dir(id), &spec)?;
        let dir = Self::checkpoints_dir(pool, id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(pool_err("creating", &dir))?;
        let dir_fd = disk::open_dir(&dir).map_err(Error::io("opening", &dir))?;
        // A moment of its own, removed afterwards, when no checkpoint is named.
        let temp = format!(".export-{}", now_ms());
        let snap = match from {
            Some(cp) => {
                Self::find_checkpoint(pool, id, cp)?;
                dir.join(cp.as_str())
            }
            None => {
                let layer = pool.layer(id);
                let layer_fd = disk::open_dir(&layer).map_err(Error::io("opening", &layer))?;
                self.frozen(id, || {
                    disk::snapshot(&layer_fd, &dir_fd, &temp, true)
                        .map_err(pool_err("copying the machine's files", &dir))
                })?;
                dir.join(&temp)
            }
        };
        let mnt = self.dir(id).join("export");
        let result = (|| {
            crate::spec::overlay_option_path("checkpoint path", &snap)?;
            let _ = fs::remove_dir(&mnt);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&mnt)
                .map_err(Error::io("creating", &mnt))?;
            fs::DirBuilder::new()
                .mode(0o755)
                .create(dest)
                .map_err(Error::io("creating", dest))?;
            // The image's layers by short names (links in a root-only dir), so that the
            // overlay's options fit in a page however deep the stack.
            let links = self.dir(id).join("export-lowers");
            let lowers = link_lowers(&spec, &links)?;
            let out = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(
                    "mount -t overlay overlay -o \"ro,lowerdir=$1:$2\" \"$3\" \
                     && exec cp -a --reflink=auto \"$3/.\" \"$4/\"",
                )
                .arg("sh")
                .arg(snap.join("upper"))
                .arg(&lowers)
                .arg(&mnt)
                .arg(dest)
                .current_dir(&links)
                .output()
                .map_err(Error::sys("running unshare, mount and cp"))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                return Err(if err.contains("No space left") || err.contains("quota") {
                    Error::DiskFull {
                        what: "writing the image",
                    }
                } else {
                    Error::Launch {
                        stage: "copying the machine's root".into(),
                        message: format!("{} ({})", err.trim(), out.status),
                    }
                });
            }
            let dest_fd = resolve::open_dir(dest).map_err(Error::io("opening", dest))?;
            let top = resolve::open_at(
                dest_fd.as_fd(),
                ".",
                libc::O_RDONLY | libc::O_DIRECTORY,
                resolve::NO_LINKS,
            )
            .map_err(Error::io("opening", dest))?;
            shift_owners(top.as_fd(), ids.base, spec.uid_base)
                .map_err(Error::io("moving the files to the image's uid range", dest))
        })();
        let _ = fs::remove_dir(&mnt);
        if from.is_none() {
            let _ = disk::destroy(&dir_fd, &temp);
        }
        result
    }

    /// Removes all of a machine's checkpoints (when it is destroyed).
    pub(super) fn remove_checkpoints(&self, id: &MachineId) -> Result<(), Error> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        let dir = Self::checkpoints_dir(pool, id);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(Error::io("listing", &dir))?,
        };
        let dir_fd = disk::open_dir(&dir).map_err(Error::io("opening", &dir))?;
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if path.extension().is_some_and(|x| x == "json") {
                fs::remove_file(&path).map_err(Error::io("removing", &path))?;
            }
            if is_subvolume(&path) {
                disk::destroy(&dir_fd, &name).map_err(Error::io("removing", &path))?;
            } else {
                remove_all(&path)?;
            }
        }
        fs::remove_dir(&dir).map_err(Error::io("removing", &dir))
    }

    /// After a restart: destroys the leftovers of restores cut off halfway,
    /// checkpoints without a record (or records without a checkpoint), and
    /// the checkpoints of machines that are gone. Each machine's part under
    /// its lock.
    pub(super) fn recover_checkpoints(&self) -> Result<(), Error> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        for e in fs::read_dir(pool.dir()).into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix(RESTORING))
                .and_then(|n| MachineId::new(n).ok())
            else {
                continue;
            };
            let lock = self.lock(&id);
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            tracing::warn!(machine = %id, "removing the layer of a restore that did not finish");
            disk::destroy(pool.root(), &format!("{RESTORING}{id}"))
                .map_err(Error::io("removing", e.path()))?;
        }
        let all = pool.dir().join(CHECKPOINTS);
        for e in fs::read_dir(&all).into_iter().flatten().flatten() {
            let Some(id) = e.file_name().to_str().and_then(|n| MachineId::new(n).ok()) else {
                continue;
            };
            let lock = self.lock(&id);
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            if !self.dir(&id).join("spec.json").exists() {
                tracing::warn!(machine = %id, "removing the checkpoints of a machine that is gone");
                self.remove_checkpoints(&id)?;
                continue;
            }
            let dir = e.path();
            let dir_fd = disk::open_dir(&dir).map_err(Error::io("opening", &dir))?;
            for f in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = f.path();
                let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.ends_with(".json.tmp") {
                    let _ = fs::remove_file(&path);
                } else if let Some(cp) = name.strip_suffix(".json") {
                    if !is_subvolume(&dir.join(cp)) {
                        tracing::warn!(machine = %id, checkpoint = cp, "removing a checkpoint record without its files");
                        fs::remove_file(&path).map_err(Error::io("removing", &path))?;
                    }
                } else if !dir.join(format!("{name}.json")).exists() {
                    tracing::warn!(machine = %id, checkpoint = name, "removing a checkpoint that was cut off");
                    if is_subvolume(&path) {
                        disk::destroy(&dir_fd, &name).map_err(Error::io("removing", &path))?;
                    } else {
                        remove_all(&path)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Makes `dir` afresh with a link `<n>` to each of the spec's read-only layers
/// (its image, then the layers below it); returns `0:1:...`, the overlay's
/// lowerdir names relative to `dir`.
fn link_lowers(spec: &MachineSpec, dir: &Path) -> Result<String, Error> {
    let _ = fs::remove_dir_all(dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(Error::io("creating", dir))?;
    let stack = std::iter::once(&spec.image).chain(&spec.layers);
    let mut names = Vec::new();
    for (n, target) in stack.enumerate() {
        let link = dir.join(n.to_string());
        std::os::unix::fs::symlink(target, &link).map_err(Error::io("linking", &link))?;
        names.push(n.to_string());
    }
    Ok(names.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_move_between_ranges_and_setuid_stays() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("upper");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/su"), "x").unwrap();
        fs::write(root.join("outside"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/link")).unwrap();
        use std::os::unix::fs::{PermissionsExt, lchown};
        let from = 200_000;
        for p in ["", "a", "a/b", "a/b/su", "a/link"] {
            lchown(root.join(p), Some(from + 5), Some(from + 7)).unwrap();
        }
        fs::set_permissions(root.join("a/b/su"), fs::Permissions::from_mode(0o4755)).unwrap();
        lchown(root.join("outside"), Some(42), Some(42)).unwrap();
        let fd = resolve::open_dir(&root).unwrap();
        shift_owners(fd.as_fd(), from, 300_000).unwrap();
        for p in ["", "a", "a/b", "a/b/su", "a/link"] {
            let m = fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (300_005, 300_007), "{p}");
        }
        let su = fs::metadata(root.join("a/b/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755);
        assert_eq!(fs::metadata(root.join("outside")).unwrap().uid(), 42);
        // The link's target was not touched.
        assert_eq!(fs::metadata("/etc/passwd").unwrap().uid(), 0);
    }
}
