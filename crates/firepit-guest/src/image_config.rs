//! The image's run configuration ([`firepit_wire::image_config`]): read once when the guest
//! starts as PID 1, its environment set over the guest's defaults (so every exec, pty and
//! service inherits it) and its working directory made the default of all three.
//!
//! The file is the machine's own (it may have changed it): it is read up to
//! [`image_config::MAX_BYTES`], malformed entries are skipped, and a file that does not
//! parse is ignored with a line on standard error.

use std::io::Read as _;
use std::sync::OnceLock;

use firepit_wire::image_config::{self, ImageConfig};

static CWD: OnceLock<String> = OnceLock::new();

/// Reads the file at `path` (missing: `None`).
pub fn read(path: &str) -> Option<ImageConfig> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    if file
        .take(image_config::MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 > image_config::MAX_BYTES
    {
        eprintln!("firepit-guest: {path} is unreadable or too large; ignored");
        return None;
    }
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("firepit-guest: {path} does not parse ({e}); ignored");
            None
        }
    }
}

/// Applies the image's configuration to this process: its environment, and its working
/// directory as the default for children.
///
/// # Safety
/// No other thread may exist (it sets environment variables).
pub unsafe fn apply(config: &ImageConfig) {
    for (k, v) in config.env_pairs() {
        // SAFETY: the caller promises a single thread.
        unsafe { std::env::set_var(k, v) };
    }
    if let Some(cwd) = &config.cwd
        && firepit_wire::guest::check_path(cwd).is_ok()
    {
        let _ = CWD.set(cwd.clone());
    }
}

/// The image's working directory, if it has one.
pub fn cwd() -> Option<&'static str> {
    CWD.get().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_sane_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let p = path.to_str().unwrap();
        assert!(read(p).is_none());
        std::fs::write(&path, r#"{"env":["A=1"],"cwd":"/srv"}"#).unwrap();
        let c = read(p).unwrap();
        assert_eq!((c.env_pairs().len(), c.cwd.as_deref()), (1, Some("/srv")));
        std::fs::write(&path, "{not json").unwrap();
        assert!(read(p).is_none());
        std::fs::write(&path, vec![b' '; image_config::MAX_BYTES as usize + 1]).unwrap();
        assert!(read(p).is_none());
    }
}
