//! Ownership shift: move every owner in a tree from ids `0..65536` to
//! `uid_base..uid_base+65536`, the ids a machine's root and users have outside its user
//! namespace.
//!
//! Each file, directory and symlink is `lchown`ed (links are never followed); the kernel clears
//! setuid/setgid on chown, so the mode of every non-symlink that had them is restored
//! afterwards. Hard-linked inodes are shifted once. `security.capability` xattrs (file
//! capabilities) are removed before the chown: they were written by the host's root and the
//! kernel would drop them on chown anyway. Nothing on another file system is touched: a mount
//! point in the tree is an error.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::UID_RANGE;
use crate::error::{Error, IoContext, Result};

/// What a shift did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShiftStats {
    /// Entries (files, directories, links) visited.
    pub entries: u64,
    /// Disk usage of the tree in bytes, hard links counted once.
    pub bytes: u64,
    /// File capability xattrs removed.
    pub capabilities_dropped: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Shift the owners of everything under `root` (and `root` itself) by `uid_base`.
///
/// `uid_base` must be 0 (nothing changes, but sizes are still counted) or at least 65536.
/// An owner id of 65536 or more is an error: it could not be mapped into a machine.
pub fn shift_tree(root: &Path, uid_base: u32) -> Result<ShiftStats> {
    if uid_base != 0 && uid_base < UID_RANGE {
        return Err(Error::InvalidUidBase(uid_base));
    }
    let start = Instant::now();
    let meta = std::fs::symlink_metadata(root).ctx("inspecting", root)?;
    let mut walk = Walk {
        uid_base,
        dev: meta.dev(),
        seen: HashSet::new(),
        stats: ShiftStats::default(),
    };
    walk.visit(root, &meta)?;
    let mut stats = walk.stats;
    stats.elapsed = start.elapsed();
    Ok(stats)
}

struct Walk {
    uid_base: u32,
    dev: u64,
    seen: HashSet<(u64, u64)>,
    stats: ShiftStats,
}

impl Walk {
    fn visit(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<()> {
        if meta.dev() != self.dev {
            return Err(Error::MountInTree { path: path.into() });
        }
        self.stats.entries += 1;
        let first_time =
            meta.nlink() <= 1 || meta.is_dir() || self.seen.insert((meta.dev(), meta.ino()));
        if first_time {
            self.stats.bytes += meta.blocks() * 512;
            self.shift_one(path, meta)?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).ctx("reading", path)? {
                let entry = entry.ctx("reading", path)?;
                let child = entry.path();
                let meta = std::fs::symlink_metadata(&child).ctx("inspecting", &child)?;
                self.visit(&child, &meta)?;
            }
        }
        Ok(())
    }

    fn shift_one(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<()> {
        let check = |id: u32| {
            if id >= UID_RANGE {
                Err(Error::IdOutOfRange {
                    path: path.into(),
                    id,
                    range: UID_RANGE,
                })
            } else {
                Ok(id)
            }
        };
        let (uid, gid) = (check(meta.uid())?, check(meta.gid())?);
        if self.uid_base == 0 {
            return Ok(());
        }
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| Error::io("shifting", path, e.into()))?;
        if meta.is_file() {
            // SAFETY: cpath is a valid NUL-terminated string that outlives the call.
            let rc = unsafe { libc::lremovexattr(cpath.as_ptr(), c"security.capability".as_ptr()) };
            if rc == 0 {
                self.stats.capabilities_dropped += 1;
            } else {
                let err = std::io::Error::last_os_error();
                let benign = [libc::ENODATA, libc::ENOTSUP];
                if !err.raw_os_error().is_some_and(|c| benign.contains(&c)) {
                    return Err(Error::io("removing file capabilities of", path, err));
                }
            }
        }
        // SAFETY: as above; lchown never follows a symlink.
        let rc = unsafe { libc::lchown(cpath.as_ptr(), self.uid_base + uid, self.uid_base + gid) };
        if rc != 0 {
            return Err(Error::io(
                "changing the owner of",
                path,
                std::io::Error::last_os_error(),
            ));
        }
        let mode = meta.permissions().mode();
        if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
                .ctx("restoring the mode of", path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn rejects_overlapping_base() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            shift_tree(dir.path(), 1000),
            Err(Error::InvalidUidBase(1000))
        ));
    }

    #[test]
    fn zero_base_counts_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![0u8; 10_000]).unwrap();
        let stats = shift_tree(dir.path(), 0).unwrap();
        assert_eq!(stats.entries, 2);
        assert!(stats.bytes >= 8192);
    }

    #[test]
    fn shifts_a_small_tree() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        let setuid = root.join("usr/bin/su");
        std::fs::write(&setuid, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let setgid_dir = root.join("var-mail");
        std::fs::create_dir(&setgid_dir).unwrap();
        std::fs::set_permissions(&setgid_dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
        std::os::unix::fs::lchown(&setgid_dir, Some(0), Some(8)).unwrap();
        let file = root.join("usr/bin/tool");
        std::fs::write(&file, "x").unwrap();
        std::os::unix::fs::chown(&file, Some(42), Some(65534)).unwrap();
        std::fs::hard_link(&file, root.join("usr/bin/tool-again")).unwrap();
        // A link to a host file must not move the host file.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "host").unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        symlink("usr/bin/tool", root.join("rel")).unwrap();

        let stats = shift_tree(&root, 100_000).unwrap();
        assert_eq!(stats.entries, 9);

        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&root), (100_000, 100_000));
        assert_eq!(owner(&setuid), (100_000, 100_000));
        assert_eq!(owner(&file), (100_042, 165_534));
        assert_eq!(owner(&root.join("usr/bin/tool-again")), (100_042, 165_534));
        assert_eq!(owner(&setgid_dir), (100_000, 100_008));
        assert_eq!(owner(&root.join("escape")), (100_000, 100_000));
        assert_eq!(owner(&root.join("rel")), (100_000, 100_000));
        assert_eq!(owner(&outside), (0, 0));
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&setuid), 0o4755);
        assert_eq!(mode(&setgid_dir), 0o2775);

        // Shifting again finds ids that no longer fit.
        assert!(matches!(
            shift_tree(&root, 100_000),
            Err(Error::IdOutOfRange { .. })
        ));
    }
}
