//! The data dir's permissions: nothing in it is for other host users.
//!
//! The data dir holds the API token, the preview signing key and the store
//! (sessions, event logs, agent transcripts), and, below it, the machines'
//! files and the images, whose setuid programs are owned by the machines'
//! root uid. [`secure`] makes the dirs root-only (0700) and the secret files
//! 0600 on every start, so an install made before this was so is fixed too,
//! and makes the store's file 0600 before SQLite first opens it (its `-wal`
//! and `-shm` files take their mode from it).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Config, Error};

/// The store's file in the data dir.
pub const STORE: &str = "firepit.db";

/// Files of the data dir that only root may read.
const PRIVATE_FILES: &[&str] = &[
    "token",
    "preview.key",
    STORE,
    "firepit.db-wal",
    "firepit.db-shm",
    "daemon.json",
];

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let what = format!("{what} {}", path.display());
    move |source| Error::Io { what, source }
}

/// Makes `dir` (and its parents) if missing, and root-only.
fn private_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("creating", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("setting the mode of", dir))
}

/// Makes the data dir, the images dir and the artifacts dir root-only, the
/// secret files 0600, and the store's file (empty, 0600) if it is missing.
pub fn secure(config: &Config) -> Result<(), Error> {
    let data = &config.data_dir;
    private_dir(data)?;
    private_dir(&config.images_dir)?;
    private_dir(&data.join("artifacts"))?;
    for name in PRIVATE_FILES {
        let path = data.join(name);
        match fs::set_permissions(&path, fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("setting the mode of", &path)(e));
            }
            _ => {}
        }
    }
    let store = data.join(STORE);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&store)
    {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err("creating", &store)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_install_is_closed_and_a_new_one_starts_closed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let images = dir.path().join("cache/images");
        // An install from before: world-readable dirs and files.
        fs::create_dir_all(data.join("artifacts")).unwrap();
        fs::create_dir_all(&images).unwrap();
        for d in [&data, &data.join("artifacts"), &images] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for f in ["token", "preview.key", "firepit.db", "firepit.db-wal"] {
            fs::write(data.join(f), "x").unwrap();
            fs::set_permissions(data.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mut config = Config::new(data.clone(), "/bin/true".into(), "/bin/true".into());
        config.images_dir = images.clone();
        secure(&config).unwrap();
        for d in [&data, &data.join("artifacts"), &images] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        for f in ["token", "preview.key", "firepit.db", "firepit.db-wal"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
            assert_eq!(fs::read_to_string(data.join(f)).unwrap(), "x", "{f} kept");
        }

        let fresh = dir.path().join("fresh");
        let config = Config::new(fresh.clone(), "/bin/true".into(), "/bin/true".into());
        secure(&config).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join(STORE)), 0o600);
        // The store opens on the empty file, and its companions (there while
        // it is open) take its mode.
        let store = crate::Store::open(&fresh.join(STORE)).unwrap();
        for f in ["firepit.db-wal", "firepit.db-shm"] {
            assert_eq!(mode(&fresh.join(f)), 0o600, "{f}");
        }
        drop(store);
    }
}
