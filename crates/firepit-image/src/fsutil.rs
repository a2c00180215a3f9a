//! File system helpers: flock'd lock files, removal that never crosses into a mount, and
//! random suffixes for work directories.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
}

impl Lock {
    /// Take the lock, waiting for it if `wait`; `Ok(None)` if not waiting and it is taken.
    pub(crate) fn acquire(path: &Path, wait: bool) -> Result<Option<Lock>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx("opening lock file", path)?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(Lock { file }));
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                ErrorKind::Interrupted => continue,
                ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(Error::io("locking", path, err)),
            }
        }
    }

    /// Whether this lock's file is still the one at `path` (it was not unlinked and recreated
    /// by a cleaner between our open and our flock).
    pub(crate) fn is_at(&self, path: &Path) -> bool {
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// A random suffix for work directory names.
pub(crate) fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Remove a file or a tree, never descending into another file system: a mount point found
/// inside is lazily unmounted, and if that fails the removal stops with
/// [`Error::MountInTree`]. A path that is already gone is not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspecting", path, e)),
    };
    if !meta.is_dir() {
        return ignore_not_found(std::fs::remove_file(path)).ctx("removing", path);
    }
    remove_dir_on(path, meta.dev())
}

fn remove_dir_on(dir: &Path, dev: u64) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", dir, e)),
    };
    for entry in entries {
        let entry = entry.ctx("reading", dir)?;
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("inspecting", &path, e)),
        };
        if meta.is_dir() {
            let mut sub_dev = meta.dev();
            if sub_dev != dev {
                let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
                sub_dev = std::fs::symlink_metadata(&path)
                    .map(|m| m.dev())
                    .unwrap_or(dev);
                if sub_dev != dev {
                    return Err(Error::MountInTree { path });
                }
            }
            remove_dir_on(&path, dev)?;
        } else {
            ignore_not_found(std::fs::remove_file(&path)).ctx("removing", &path)?;
        }
    }
    ignore_not_found(std::fs::remove_dir(dir)).ctx("removing", dir)
}

fn ignore_not_found(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = Lock::acquire(&path, false).unwrap().unwrap();
        assert!(held.is_at(&path));
        // flock locks belong to the open file description, so a second open conflicts.
        assert!(Lock::acquire(&path, false).unwrap().is_none());
        drop(held);
        assert!(Lock::acquire(&path, false).unwrap().is_some());
    }

    #[test]
    fn remove_tree_removes_and_keeps_link_targets() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        remove_tree(&tree).unwrap();
    }
}
