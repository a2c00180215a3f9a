//! Checkpoints, restore and fork of machines, kept as btrfs snapshots when the
//! machine's writable layer is a subvolume of the disk pool ([`super::disk`]),
//! and as copies when it is not (the fallback, slower).
//!
//! Layout, for a machine in the pool:
//! - `<pool>/<id>/`: the machine's layer (upper, work, guest log) and
//!   `base.json`, the checkpoint its files came from (the last one made or
//!   restored), which becomes the next checkpoint's parent;
//! - `<pool>/.checkpoints/<id>/<checkpoint>/`: a read-only snapshot of the
//!   layer, its record ([`Checkpoint`]) inside as `checkpoint.json`, and
//!   `<checkpoint>.json` beside it, the record with its size (the first
//!   layout's record, which was the commit then);
//! - `<pool>/.restore-<id>/`: a restore's new layer while it is made.
//!
//! Names starting with `.` are never machine ids, so the pool's machine
//! layers and these do not mix.
//!
//! For a machine without a pool layer (no disk limit, or a backend without a
//! pool) its layer is its state dir `<state>/<id>/`, and:
//! - `<state>/<id>/checkpoints/<checkpoint>/`: a copy of the layer's
//!   `upper/` (`cp -a --reflink=auto`: shared extents where the file system
//!   can, a full copy elsewhere), `base.json` and `checkpoint.json`, made as
//!   `checkpoints/.tmp-<checkpoint>/`, synced and renamed into place;
//! - `<state>/<id>/.restore/`: a restore's new upper while it is copied.
//!
//! - **Checkpoint**: the record is written into the layer as
//!   `checkpoint.json`, then a running machine's cgroup is frozen, the layer
//!   snapshotted read-only (one ioctl that flushes the layer's dirty data and
//!   commits a btrfs transaction: the snapshot and the record in it are on
//!   disk, together, when it returns; no `fsync` of its own), the cgroup is
//!   thawed. The snapshot is the commit: one whose `checkpoint.json` is
//!   missing or names another checkpoint is no checkpoint, which
//!   [`NamespacesBackend::recover_checkpoints`] removes. A copy is the same
//!   with the copy, a `syncfs` and a rename in place of the ioctl (its cost
//!   is the size of the upper, and the machine stays frozen for all of it).
//!   Then its size is counted (a walk, by number of files: on the
//!   snapshot after the thaw, or on a stopped machine's layer, whose inodes
//!   are in memory) and kept beside it as `<checkpoint>.json`, not synced: a
//!   cache that is counted again when it is missing.
//! - **Restore**: the machine's processes are killed (what they would still
//!   write is thrown away), the checkpoint snapshotted writable as
//!   `.restore-<id>` (copied as `.restore/`), given the machine's disk limit
//!   and its `base.json`, and swapped with the layer (the upper) by one
//!   `renameat2(RENAME_EXCHANGE)`; the machine is started if it ran, and the
//!   old layer (now `.restore-<id>`) destroyed. Whenever it is cut off, the
//!   machine has one whole layer, the old or the new, and the other is a
//!   `.restore-*` (`.restore/`) that recovery destroys. The overlay is never
//!   mounted while its upper is swapped: the machine's mounts die with its
//!   processes.
//! - **Fork**: as creating a machine, but its layer starts as a writable
//!   snapshot or a copy (of a checkpoint, or of the parent's layer frozen for
//!   the moment), its overlay work dir and guest log left behind. A
//!   snapshot's files keep the owners they are stored with (the parent's
//!   range, recorded in the child's state dir as `layer.json`), and the
//!   launcher mounts the layer idmapped from that range onto the child's
//!   (`super::idmap::mount_layer`): nothing is walked, however many files. A
//!   copy's owners are moved from the parent's range to the child's instead
//!   (the setuid and setgid bits a chown clears are put back; file
//!   capabilities, which a chown drops, are lost).
//!
//! **Decision (the record inside the snapshot):** a checkpoint's record is a
//! file of the layer when the snapshot is taken, so the snapshot ioctl makes
//! both durable at once and they cannot disagree; a record beside the
//! snapshot (the first layout, still read) needed an `fsync` of its own, a
//! second flush of the pool's disk on every checkpoint and fork.
//!
//! **Decision (copies without the pool):** a machine without a pool layer
//! gets its checkpoints as copies rather than none, so checkpoints, restore
//! and fork work on every host; they cost what the machine changed (the
//! `cp -a` floor of the benchmark) and freeze a running machine for the copy,
//! so the daemon gives sessions a disk limit (and a pool layer) by default.
//! A copy that takes long says how far it is in the daemon's log.
//!
//! **Architecture Invariant:** nothing here walks a path through a machine's
//! upper: the host's paths end at the layer's top (root's, never seen by the
//! machine); below it, trees are walked by fd ([`resolve::walk`]) and only
//! while nothing can change them (a fresh snapshot or copy no machine mounts,
//! or a stopped or frozen machine's layer), and copied by `cp -a`, which
//! copies links as links into a fresh dir.

use std::ffi::CStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::disk::{self, Pool};
use super::uid_ranges::MachineIds;
use super::{NamespacesBackend, remove_all, resolve, write_json};
use crate::spec::UID_COUNT;
use crate::{Checkpoint, CheckpointId, Error, MachineId, MachineInfo, MachineSpec, NewCheckpoint};

/// The dir of all machines' checkpoints in the pool.
const CHECKPOINTS: &str = ".checkpoints";
/// The dir of a machine's copied checkpoints in its state dir.
const COPIES: &str = "checkpoints";
/// A checkpoint's record, inside it.
const RECORD: &str = "checkpoint.json";
/// The prefix of a restore's layer while it is made.
const RESTORING: &str = ".restore-";
/// A copied restore's new upper while it is copied, in the state dir.
const RESTORING_COPY: &str = ".restore";
/// The prefix of a copy while it is made.
const COPYING: &str = ".tmp-";
/// How long freezing a machine may take before the checkpoint gives up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// The inode number of a subvolume's root directory.
const SUBVOLUME_INO: u64 = 256;
/// How often a long copy says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The record in a layer of the checkpoint its files came from.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Base {
    checkpoint: Option<CheckpointId>,
}

/// The record, in a machine's state dir, of the range its layer's files are
/// owned by on disk, where that is not its own (a fork's in the pool).
const LAYER_FILE: &str = "layer.json";

#[derive(Debug, Serialize, Deserialize)]
struct LayerRecord {
    owners: u32,
}

/// The range (its base) the files of the layer of the machine whose state
/// dir is `dir` are owned by on disk, if it is recorded (a fork's, which
/// the launcher maps onto the machine's own range).
pub(super) fn layer_owners(dir: &Path) -> Option<u32> {
    read_json::<LayerRecord>(&dir.join(LAYER_FILE)).map(|r| r.owners)
}

/// Where a machine's layer and checkpoints are kept.
#[derive(Clone, Copy)]
enum Keep<'a> {
    /// Subvolumes of the disk pool; checkpoints are snapshots.
    Pool(&'a Pool),
    /// The machine's state dir; checkpoints are copies.
    Copy,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Maps a failure to make something in the pool or the state dir: a full
/// one is said so.
fn pool_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |e| match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::DiskFull { what },
        _ => Error::io(what, path)(e),
    }
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

/// `syncfs` of the file system that holds `dir`.
fn sync_fs(dir: &Path) -> io::Result<()> {
    let fd = disk::open_dir(dir)?;
    // SAFETY: a valid descriptor.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes process `pid` has written so far (its `wchar`; a copy's progress).
fn written_by(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Copies the tree `src` (a dir the host trusts; below it, the machine's
/// files of a stopped or frozen machine, or of a checkpoint) to `dest`,
/// which must not exist, with `cp -a --reflink=auto` (links copied as links,
/// owners, modes, times and extended attributes kept: the overlay's opaque
/// dirs and whiteouts with them). Says how far it is every
/// [`PROGRESS_EVERY`] while it runs.
fn copy_tree(id: &MachineId, src: &Path, dest: &Path) -> Result<(), Error> {
    let what = "copying the machine's files";
    let src_fd = disk::open_dir(src).map_err(Error::io("opening", src))?;
    let total = tree_bytes(src_fd.as_fd()).map_err(Error::io("measuring", src))?;
    let mut child = Command::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory", "--"])
        .arg(src)
        .arg(dest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::sys("running cp"))?;
    // Read beside the wait, so that a chatty cp never blocks on a full pipe.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.by_ref().take(16 << 10).read_to_string(&mut text);
            let _ = io::copy(&mut e, &mut io::sink());
        }
        text
    });
    let started = Instant::now();
    let mut next = started + PROGRESS_EVERY;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::io(what, dest)(e));
            }
        }
        if Instant::now() >= next {
            next += PROGRESS_EVERY;
            tracing::info!(
                machine = %id,
                done_bytes = written_by(child.id()).unwrap_or(0).min(total),
                total_bytes = total,
                seconds = started.elapsed().as_secs(),
                "{what}",
            );
        }
        // Short waits first: most copies are small.
        let waited = started.elapsed();
        std::thread::sleep((waited / 8).clamp(Duration::from_millis(1), Duration::from_millis(50)));
    };
    let err = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    if err.contains("No space left") || err.contains("quota exceeded") {
        return Err(Error::DiskFull { what });
    }
    Err(Error::io(what, dest)(io::Error::other(format!(
        "cp {status}: {}",
        err.trim()
    ))))
}

/// Copies the layer `src` (its `upper/`, `base.json` and `checkpoint.json`)
/// into `dest`, made here (it must not exist).
fn copy_layer(id: &MachineId, src: &Path, dest: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(pool_err("creating", dest))?;
    for f in [RECORD, "base.json"] {
        if fs::symlink_metadata(src.join(f)).is_ok_and(|m| m.is_file()) {
            fs::copy(src.join(f), dest.join(f)).map_err(pool_err("copying", &src.join(f)))?;
        }
    }
    copy_tree(id, &src.join("upper"), &dest.join("upper"))
}

impl NamespacesBackend {
    /// Where the machine's layer and checkpoints are kept.
    fn keep(&self, spec: &MachineSpec) -> Result<Keep<'_>, Error> {
        match (&self.pool, spec.limits.disk_bytes) {
            (Some(pool), Some(_)) => Ok(Keep::Pool(pool)),
            (None, Some(_)) => Err(super::no_pool(&spec.id)),
            (_, None) => Ok(Keep::Copy),
        }
    }

    /// The machine's layer: its subvolume, or its state dir.
    fn layer_of(&self, keep: Keep<'_>, id: &MachineId) -> PathBuf {
        match keep {
            Keep::Pool(pool) => pool.layer(id),
            Keep::Copy => self.dir(id),
        }
    }

    fn checkpoints_dir(&self, keep: Keep<'_>, id: &MachineId) -> PathBuf {
        match keep {
            Keep::Pool(pool) => pool.dir().join(CHECKPOINTS).join(id.as_str()),
            Keep::Copy => self.dir(id).join(COPIES),
        }
    }

    /// The checkpoints dir, made if it is not there.
    fn made_checkpoints_dir(&self, keep: Keep<'_>, id: &MachineId) -> Result<PathBuf, Error> {
        let dir = self.checkpoints_dir(keep, id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(pool_err("creating", &dir))?;
        Ok(dir)
    }

    /// Makes `dir/name` a copy of the layer `layer` as it is now (read-only
    /// for a snapshot; copies are never mounted, so never written), whole or
    /// not at all. The caller freezes a running machine.
    fn take(
        &self,
        keep: Keep<'_>,
        id: &MachineId,
        layer: &Path,
        dir: &Path,
        name: &str,
        readonly: bool,
    ) -> Result<(), Error> {
        let dest = dir.join(name);
        match keep {
            Keep::Pool(_) => {
                let layer_fd = disk::open_dir(layer).map_err(Error::io("opening", layer))?;
                let dir_fd = disk::open_dir(dir).map_err(Error::io("opening", dir))?;
                disk::snapshot(&layer_fd, &dir_fd, name, readonly)
                    .map_err(pool_err("making the checkpoint", &dest))
            }
            Keep::Copy => {
                let tmp = dir.join(format!("{COPYING}{name}"));
                remove_all(&tmp)?;
                let made = copy_layer(id, layer, &tmp)
                    .and_then(|()| sync_fs(&tmp).map_err(Error::io("syncing", &tmp)))
                    .and_then(|()| fs::rename(&tmp, &dest).map_err(pool_err("renaming", &tmp)))
                    .and_then(|()| {
                        fs::File::open(dir)
                            .and_then(|d| d.sync_all())
                            .map_err(Error::io("syncing", dir))
                    });
                if made.is_err() {
                    let _ = remove_all(&tmp);
                }
                made
            }
        }
    }

    /// Removes `dir/name` (a snapshot or a copy); one that is not there is fine.
    fn drop_copy(keep: Keep<'_>, dir: &Path, name: &str) -> Result<(), Error> {
        let path = dir.join(name);
        match keep {
            Keep::Pool(_) if is_subvolume(&path) => {
                let dir_fd = disk::open_dir(dir).map_err(Error::io("opening", dir))?;
                disk::destroy(&dir_fd, name).map_err(Error::io("removing", &path))
            }
            _ => remove_all(&path),
        }
    }

    /// A checkpoint's record, if it is whole: its snapshot or copy holds a
    /// record of it (or, made by an earlier version, has one beside it).
    fn find_checkpoint(
        &self,
        keep: Keep<'_>,
        id: &MachineId,
        cp: &CheckpointId,
    ) -> Result<Checkpoint, Error> {
        let dir = self.checkpoints_dir(keep, id);
        let path = dir.join(cp.as_str());
        let there = match keep {
            Keep::Pool(_) => is_subvolume(&path),
            Keep::Copy => fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()),
        };
        let not_found = || Error::CheckpointNotFound {
            machine: id.to_string(),
            checkpoint: cp.to_string(),
        };
        if !there {
            return Err(not_found());
        }
        let ours = |c: &Checkpoint| &c.id == cp && &c.machine == id;
        let beside = read_json::<Checkpoint>(&dir.join(format!("{cp}.json"))).filter(ours);
        let Some(mut inside) = read_json::<Checkpoint>(&path.join(RECORD)).filter(ours) else {
            // The first layout: the record beside the snapshot.
            return beside.ok_or_else(not_found);
        };
        match beside {
            Some(b) => inside.size_bytes = b.size_bytes,
            // Its size was not written down (cut off after the snapshot).
            None => {
                inside.size_bytes = Self::count(&path)?;
                if let Err(e) = write_json(&dir.join(format!("{cp}.json")), &inside) {
                    tracing::warn!(machine = %id, checkpoint = %cp, error = %e, "recording a checkpoint's size");
                }
            }
        }
        Ok(inside)
    }

    /// Bytes the files of the upper of the snapshot or copy `path` hold.
    fn count(path: &Path) -> Result<u64, Error> {
        let upper = path.join("upper");
        disk::open_dir(&upper)
            .and_then(|fd| tree_bytes(fd.as_fd()))
            .map_err(Error::io("measuring", &upper))
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
        let keep = self.keep(&spec)?;
        let dir = self.made_checkpoints_dir(keep, id)?;
        if self.find_checkpoint(keep, id, &new.id).is_ok() {
            return Err(Error::CheckpointExists {
                machine: id.to_string(),
                checkpoint: new.id.to_string(),
            });
        }
        // What is there without a record is a checkpoint cut off halfway.
        Self::drop_copy(keep, &dir, new.id.as_str())?;
        let _ = fs::remove_file(dir.join(format!("{}.json", new.id)));
        let layer = self.layer_of(keep, id);
        let running = self.live_init(id).is_some();
        let base_path = layer.join("base.json");
        let record = layer.join(RECORD);
        let made = self.frozen(id, || {
            let cp = Checkpoint {
                id: new.id.clone(),
                machine: id.clone(),
                name: new.name.clone(),
                created_at_ms: now_ms(),
                // Counted below, on the snapshot, after the thaw.
                size_bytes: 0,
                made_by: new.made_by.clone(),
                parent: read_json::<Base>(&base_path).and_then(|b| b.checkpoint),
                running,
            };
            // Into the layer, so that the snapshot (or copy) holds it.
            write_json(&record, &cp).map_err(|e| match e {
                Error::Io { source, .. }
                    if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
                {
                    Error::DiskFull {
                        what: "writing the checkpoint's record",
                    }
                }
                e => e,
            })?;
            self.take(keep, id, &layer, &dir, new.id.as_str(), true)?;
            Ok(cp)
        });
        let _ = fs::remove_file(&record);
        let _ = fs::remove_file(record.with_extension("tmp"));
        let mut cp = match made {
            Ok(cp) => cp,
            Err(e) => {
                let _ = Self::drop_copy(keep, &dir, new.id.as_str());
                return Err(e);
            }
        };
        // The size, counted where nothing changes it (a walk: its cost is
        // the number of files), kept beside the snapshot. Not synced: a
        // size lost is counted again when the checkpoint is next read. A
        // stopped machine's layer is the same files with their inodes in
        // memory (a fresh snapshot's are not: walking it costs a few times
        // more); a running machine's snapshot, so that it is not frozen
        // for the walk.
        let counted = if running {
            dir.join(new.id.as_str())
        } else {
            layer.clone()
        };
        cp.size_bytes = Self::count(&counted)?;
        if let Err(e) = write_json(&dir.join(format!("{}.json", new.id)), &cp) {
            tracing::warn!(machine = %id, checkpoint = %cp.id, error = %e, "recording a checkpoint's size");
        }
        let base = Base {
            checkpoint: Some(cp.id.clone()),
        };
        if let Err(e) = write_json(&base_path, &base) {
            // The checkpoint is whole; only the tree's next parent is off.
            tracing::warn!(machine = %id, error = %e, "recording the layer's checkpoint");
        }
        Ok(cp)
    }

    pub(super) fn checkpoints_of(&self, id: &MachineId) -> Result<Vec<Checkpoint>, Error> {
        let spec = self.load_spec(id)?;
        let Ok(keep) = self.keep(&spec) else {
            return Ok(Vec::new());
        };
        let dir = self.checkpoints_dir(keep, id);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(Error::io("listing", &dir))?,
        };
        let ids: std::collections::BTreeSet<CheckpointId> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                CheckpointId::new(name.strip_suffix(".json").unwrap_or(name)).ok()
            })
            .collect();
        let mut all: Vec<Checkpoint> = ids
            .iter()
            .filter_map(|cp| self.find_checkpoint(keep, id, cp).ok())
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
        let keep = self.keep(&spec)?;
        self.find_checkpoint(keep, id, cp)?;
        let dir = self.checkpoints_dir(keep, id);
        // A record beside it (an earlier version's) first: without it the
        // snapshot is no checkpoint.
        let beside = dir.join(format!("{cp}.json"));
        match fs::remove_file(&beside) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &beside)(e));
            }
            _ => {}
        }
        Self::drop_copy(keep, &dir, cp.as_str())
    }

    pub(super) fn restore_locked(
        &self,
        id: &MachineId,
        cp: &CheckpointId,
    ) -> Result<MachineInfo, Error> {
        let spec = self.load_spec(id)?;
        let keep = self.keep(&spec)?;
        self.find_checkpoint(keep, id, cp)?;
        let was_running = self.live_init(id).is_some();
        // Killed, not asked: what its processes would write is thrown away.
        if let Some(rec) = self.live_init(id) {
            super::kill_init(rec, Duration::ZERO);
        }
        self.cleanup_runtime(id)?;
        let swapped = self.swap_layer(keep, &spec, cp);
        let started = if was_running {
            let ids = MachineIds::load(&self.dir(id), &spec)?;
            self.prepare_dirs(&spec, ids.base)
                .and_then(|()| self.launch(&spec, ids))
                .map(Some)
        } else {
            Ok(None)
        };
        // The layer swapped out (or the unused new one), after the start.
        let left = match keep {
            Keep::Pool(pool) => disk::destroy(pool.root(), &format!("{RESTORING}{id}")).map_err(
                Error::io("removing", pool.dir().join(format!("{RESTORING}{id}"))),
            ),
            Keep::Copy => remove_all(&self.dir(id).join(RESTORING_COPY)),
        };
        if let Err(e) = left {
            tracing::warn!(machine = %id, error = %e, "removing a layer a restore left");
        }
        swapped?;
        match started? {
            Some(info) => Ok(info),
            None => Ok(self.info(id)),
        }
    }

    /// Makes the checkpoint's files the machine's (stopped) layer, whole or
    /// not at all; what is left at `.restore-<id>` (`.restore/` for a copy:
    /// the old layer, or the unused new one) is the caller's to destroy.
    fn swap_layer(
        &self,
        keep: Keep<'_>,
        spec: &MachineSpec,
        cp: &CheckpointId,
    ) -> Result<(), Error> {
        let id = &spec.id;
        let snap = self.checkpoints_dir(keep, id).join(cp.as_str());
        let base = Base {
            checkpoint: Some(cp.clone()),
        };
        // (dir, new name, current name): what the exchange swaps.
        let (dir_path, new, current) = match keep {
            Keep::Pool(pool) => {
                let tmp = format!("{RESTORING}{id}");
                let tmp_path = pool.dir().join(&tmp);
                disk::destroy(pool.root(), &tmp).map_err(Error::io("removing", &tmp_path))?;
                let snap_fd = disk::open_dir(&snap).map_err(Error::io("opening", &snap))?;
                disk::snapshot(&snap_fd, pool.root(), &tmp, false)
                    .map_err(pool_err("copying the checkpoint", &tmp_path))?;
                let tmp_fd = disk::open_dir(&tmp_path).map_err(Error::io("opening", &tmp_path))?;
                if let Some(limit) = spec.limits.disk_bytes {
                    disk::set_limit(&tmp_fd, limit)
                        .map_err(Error::io("setting the disk limit of", &tmp_path))?;
                }
                let _ = fs::remove_file(tmp_path.join(RECORD));
                write_json(&tmp_path.join("base.json"), &base)?;
                (pool.dir().to_owned(), tmp, id.to_string())
            }
            Keep::Copy => {
                // Only the upper is swapped: the rest of the state dir stays.
                let dir = self.dir(id);
                let tmp = dir.join(RESTORING_COPY);
                remove_all(&tmp)?;
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&tmp)
                    .map_err(pool_err("creating", &tmp))?;
                copy_tree(id, &snap.join("upper"), &tmp.join("upper"))?;
                (dir, format!("{RESTORING_COPY}/upper"), "upper".to_owned())
            }
        };
        let root = disk::open_dir(&dir_path).map_err(Error::io("opening", &dir_path))?;
        let (a, b) = (
            std::ffi::CString::new(new).expect("no NUL"),
            std::ffi::CString::new(current).expect("no NUL"),
        );
        // SAFETY: valid fds and C strings.
        let r = unsafe {
            libc::renameat2(
                root.as_raw_fd(),
                a.as_ptr(),
                root.as_raw_fd(),
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r < 0 {
            return Err(Error::io(
                "swapping in the restored layer",
                self.layer_of(keep, id),
            )(io::Error::last_os_error()));
        }
        if let Keep::Copy = keep {
            // The swap is done; only the tree's next parent would be off.
            if let Err(e) = write_json(&dir_path.join("base.json"), &base) {
                tracing::warn!(machine = %id, error = %e, "recording the layer's checkpoint");
            }
        }
        Ok(())
    }

    pub(super) fn fork_locked(
        &self,
        parent: &MachineId,
        from: Option<&CheckpointId>,
        child: &MachineId,
    ) -> Result<MachineInfo, Error> {
        let parent_spec = self.load_spec(parent)?;
        let keep = self.keep(&parent_spec)?;
        let parent_layer = self.layer_of(keep, parent);
        let base = match from {
            Some(cp) => Some(self.find_checkpoint(keep, parent, cp)?.id),
            None => read_json::<Base>(&parent_layer.join("base.json")).and_then(|b| b.checkpoint),
        };
        let parent_ids = MachineIds::load(&self.dir(parent), &parent_spec)?;
        // The range the parent's files are stored in (its own, or its
        // parent's if it is a fork itself).
        let owners = layer_owners(&self.dir(parent)).unwrap_or(parent_ids.base);
        let spec = MachineSpec {
            id: child.clone(),
            ..parent_spec
        };
        let src = match from {
            Some(cp) => self.checkpoints_dir(keep, parent).join(cp.as_str()),
            None => parent_layer,
        };
        self.create_seeded(&spec, &mut |child_base| {
            let layer = self.layer_of(keep, child);
            let copy = || match keep {
                Keep::Pool(pool) => {
                    let src_fd = disk::open_dir(&src).map_err(Error::io("opening", &src))?;
                    disk::snapshot(&src_fd, pool.root(), child.as_str(), false)
                        .map_err(pool_err("copying the machine's files", &layer))?;
                    // What was the parent's alone: its overlay's work dir, its log.
                    remove_all(&layer.join("work"))?;
                    remove_all(&layer.join("guest.log"))?;
                    let _ = fs::remove_file(layer.join(RECORD));
                    Ok(())
                }
                // The child's state dir is there already; only the upper is taken.
                Keep::Copy => copy_tree(child, &src.join("upper"), &layer.join("upper")),
            };
            match from {
                Some(_) => copy()?,
                None => self.frozen(parent, copy)?,
            }
            // A hint for the tree (the next checkpoint's parent), not synced:
            // the machine's commit is its spec.
            write_json(
                &layer.join("base.json"),
                &Base {
                    checkpoint: base.clone(),
                },
            )?;
            match keep {
                // Stored as they are, shown in the child's range through an
                // idmapped mount: no walk, whatever the number of files.
                Keep::Pool(_) => {
                    write_json(&self.dir(child).join(LAYER_FILE), &LayerRecord { owners })
                }
                // Copies move their owners (the copy's walk costs more).
                Keep::Copy => {
                    let upper = layer.join("upper");
                    let upper_fd = disk::open_dir(&upper).map_err(Error::io("opening", &upper))?;
                    shift_owners(upper_fd.as_fd(), owners, child_base).map_err(Error::io(
                        "moving the files to the machine's uid range",
                        &layer,
                    ))
                }
            }
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
        let keep = self.keep(&spec)?;
        let ids = MachineIds::load(&self.dir(id), &spec)?;
        let dir = self.made_checkpoints_dir(keep, id)?;
        // A moment of its own, removed afterwards, when no checkpoint is named.
        let temp = format!(".export-{}", now_ms());
        let snap = match from {
            Some(cp) => {
                self.find_checkpoint(keep, id, cp)?;
                dir.join(cp.as_str())
            }
            None => {
                let layer = self.layer_of(keep, id);
                self.frozen(id, || self.take(keep, id, &layer, &dir, &temp, true))?;
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
            let owners = layer_owners(&self.dir(id)).unwrap_or(ids.base);
            shift_owners(top.as_fd(), owners, spec.uid_base)
                .map_err(Error::io("moving the files to the image's uid range", dest))
        })();
        let _ = fs::remove_dir(&mnt);
        if from.is_none() {
            let _ = Self::drop_copy(keep, &dir, &temp);
        }
        result
    }

    /// Removes all of a machine's checkpoints in the pool (when it is
    /// destroyed; copies go with its state dir).
    pub(super) fn remove_checkpoints(&self, id: &MachineId) -> Result<(), Error> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        let keep = Keep::Pool(pool);
        let dir = self.checkpoints_dir(keep, id);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(Error::io("listing", &dir))?,
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if path.extension().is_some_and(|x| x == "json") {
                fs::remove_file(&path).map_err(Error::io("removing", &path))?;
            } else {
                Self::drop_copy(keep, &dir, &name)?;
            }
        }
        fs::remove_dir(&dir).map_err(Error::io("removing", &dir))
    }

    /// In one machine's checkpoints dir: removes what is no whole checkpoint
    /// (a snapshot or copy without its record, a record beside nothing, a
    /// copy or record cut off while it was written).
    fn recover_dir(&self, keep: Keep<'_>, id: &MachineId) -> Result<(), Error> {
        let dir = self.checkpoints_dir(keep, id);
        for f in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = f.path();
            let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
            } else if let Some(cp) = name.strip_suffix(".json") {
                let whole = CheckpointId::new(cp)
                    .is_ok_and(|cp| self.find_checkpoint(keep, id, &cp).is_ok());
                if !whole {
                    tracing::warn!(machine = %id, checkpoint = cp, "removing a checkpoint record without its files");
                    fs::remove_file(&path).map_err(Error::io("removing", &path))?;
                }
            } else {
                let whole = CheckpointId::new(name.as_str())
                    .is_ok_and(|cp| self.find_checkpoint(keep, id, &cp).is_ok());
                if !whole {
                    tracing::warn!(machine = %id, checkpoint = name, "removing a checkpoint that was cut off");
                    Self::drop_copy(keep, &dir, &name)?;
                }
            }
        }
        // A record a checkpoint cut off left in the layer.
        let layer = self.layer_of(keep, id);
        let _ = fs::remove_file(layer.join(RECORD));
        let _ = fs::remove_file(layer.join(RECORD).with_extension("tmp"));
        Ok(())
    }

    /// After a restart: destroys the leftovers of restores cut off halfway,
    /// checkpoints without a record, and the checkpoints of machines that are
    /// gone. Each machine's part under its lock.
    pub(super) fn recover_checkpoints(&self) -> Result<(), Error> {
        // Copies, in the machines' state dirs.
        let state = &self.config.state_dir;
        for e in fs::read_dir(state).into_iter().flatten().flatten() {
            let Some(id) = e.file_name().to_str().and_then(|n| MachineId::new(n).ok()) else {
                continue;
            };
            let lock = self.lock(&id);
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(spec) = self.load_spec(&id) else {
                continue;
            };
            if !matches!(self.keep(&spec), Ok(Keep::Copy)) {
                continue;
            }
            let restoring = self.dir(&id).join(RESTORING_COPY);
            if restoring.exists() {
                tracing::warn!(machine = %id, "removing the files of a restore that did not finish");
                remove_all(&restoring)?;
            }
            self.recover_dir(Keep::Copy, &id)?;
        }
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
            self.recover_dir(Keep::Pool(pool), &id)?;
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
