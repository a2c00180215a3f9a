//! The few helpers every firepit crate would otherwise write again, each in
//! one place: the wall clock ([`now`], [`now_ms`]), an error and its causes
//! in one line ([`chain`]), and a private file written whole
//! ([`write_private`]).
//!
//! std only, so that the guest (static, depending on nothing of the daemon)
//! can use it as well as the daemon and the CLI.

#![warn(missing_docs)]

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The error and its causes in one line, `: `-separated; a cause whose text
/// the line already holds (an error that prints its source) is not repeated.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

/// Writes `bytes` to `path` whole or not at all, readable by its owner
/// only (0600): into a sibling temporary file, synced, then renamed over
/// `path`, so no reader ever sees half of it. The temporary file is removed
/// when a step fails.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary(path);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A file left by an earlier run keeps its mode through `open`.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// `<dir>/.<name>.partial`: next to `path`, so the rename stays on one file system.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        let e = E("reading x", Some(Box::new(E("denied", None))));
        assert_eq!(chain(&e), "reading x: denied");
        let e = E("reading x: denied", Some(Box::new(E("denied", None))));
        assert_eq!(chain(&e), "reading x: denied");
        assert_eq!(chain(&E("alone", None)), "alone");
    }

    #[test]
    fn a_private_file_is_written_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        // A wide-open leftover of an interrupted write is not reused as is.
        fs::write(temporary(&path), b"old").unwrap();
        fs::set_permissions(temporary(&path), fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&path, b"first").unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
        // A write that cannot happen leaves nothing behind.
        let missing = dir.path().join("no/such/dir/file");
        assert!(write_private(&missing, b"x").is_err());
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now() > 1_577_836_800);
        assert!(now_ms() / 1000 >= now() - 1);
    }
}
