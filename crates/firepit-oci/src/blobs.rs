//! The content store: every blob (manifest, config, layer) once, by digest, shared by all
//! images of the image store.
//!
//! ```text
//! <images>/.oci/blobs/sha256/<hex>   a blob whose content hashed to its name
//! <images>/.oci/tmp/<random>          a blob being written (removed on drop, or on open)
//! ```
//!
//! **Architecture Invariant:** a file under `blobs/` always holds exactly the content its name
//! is the digest of: a blob is written to `tmp/`, hashed while it is written, and renamed into
//! place only when its digest (and its size, where one was announced) matched.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};

/// The shared blob store of one image store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (making it when missing) the content store in `images_dir`.
    pub fn open(images_dir: &Path) -> Result<BlobStore> {
        let dir = images_dir.join(".oci");
        for sub in ["blobs/sha256", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).ctx("creating", dir.join(sub))?;
        }
        Ok(BlobStore { dir })
    }

    /// Holds blobs against garbage collection while an image is being made from them
    /// (shared with other makers; [`BlobStore::exclusive`] waits for every holder).
    pub fn hold(&self) -> Result<GcLock> {
        self.lock(libc::LOCK_SH)
    }

    /// The lock garbage collection takes: no image is being made meanwhile.
    pub fn exclusive(&self) -> Result<GcLock> {
        self.lock(libc::LOCK_EX)
    }

    fn lock(&self, how: libc::c_int) -> Result<GcLock> {
        use std::os::fd::AsRawFd;
        let path = self.dir.join("gc.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("opening", &path)?;
        // SAFETY: flock on a descriptor we own; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), how) } != 0 {
            return Err(Error::io("locking", &path, std::io::Error::last_os_error()));
        }
        Ok(GcLock { _file: file })
    }

    /// Where blob `d` is (whether or not it is there).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// The size of blob `d`, if it is stored.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(d))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Starts writing a blob that must turn out to be `expected` (of `size` bytes, if known).
    pub fn writer(&self, expected: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{:016x}",
            expected.short(),
            rand::random::<u64>()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("creating", &tmp)?;
        Ok(BlobWriter {
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest: self.path(expected),
            expected: expected.clone(),
            size,
            hasher: Hasher::new(),
        })
    }

    /// Stores `bytes`, which must be `expected`.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<()> {
        if self.size(expected).is_some() {
            return Ok(());
        }
        let mut w = self.writer(expected, Some(bytes.len() as u64))?;
        w.write(bytes)?;
        w.commit()
    }

    /// Stores the content of `reader`, which must be `expected`.
    pub fn put_reader(
        &self,
        expected: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<()> {
        let mut w = self.writer(expected, size)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).ctx("reading", &w.tmp)?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        w.commit()
    }

    /// Stores the content of `reader` under the digest it turns out to have.
    pub fn put_any(&self, reader: &mut dyn Read) -> Result<(Digest, u64)> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("any-{:016x}", rand::random::<u64>()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("creating", &tmp)?;
        let mut hashing = crate::digest::HashingReader::new(reader);
        let result = std::io::copy(&mut hashing, &mut file)
            .and_then(|_| file.sync_all())
            .ctx("writing", &tmp);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let (digest, len) = hashing.finish();
        std::fs::rename(&tmp, self.path(&digest)).ctx("moving into place", self.path(&digest))?;
        Ok((digest, len))
    }

    /// Reads a small blob (a manifest or config) of at most `limit` bytes, checking its digest
    /// again.
    pub fn read(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.path(d);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .ctx("opening", &path)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .ctx("reading", &path)?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: "document",
                limit,
            });
        }
        d.verify("stored blob", &Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// Every stored blob and its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let dir = self.dir.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx("reading", &dir)? {
            let entry = entry.ctx("reading", &dir)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((d, len));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes blob `d` (a missing one is fine).
    pub fn remove(&self, d: &Digest) -> Result<()> {
        let path = self.path(d);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("removing", &path, e))
            }
            _ => Ok(()),
        }
    }
}

/// A held lock of the content store (see [`BlobStore::hold`]); released on drop.
pub struct GcLock {
    _file: std::fs::File,
}

/// A blob being written: hashed as it goes, renamed into place by [`BlobWriter::commit`] only
/// if it is what it should be; removed when dropped otherwise.
pub struct BlobWriter {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: PathBuf,
    dest: PathBuf,
    expected: Digest,
    size: Option<u64>,
    hasher: Hasher,
}

impl BlobWriter {
    /// Takes more content.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        if let Some(size) = self.size
            && self.hasher.len() > size
        {
            return Err(Error::TooLarge {
                what: "blob",
                limit: size,
            });
        }
        let file = self.file.as_mut().expect("open until commit");
        file.write_all(bytes).ctx("writing", &self.tmp)
    }

    /// How many bytes it took so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Checks the content and moves it into place.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("open until commit");
        let file = file
            .into_inner()
            .map_err(|e| Error::io("writing", &self.tmp, e.into_error()))?;
        file.sync_all().ctx("syncing", &self.tmp)?;
        if let Some(size) = self.size
            && self.hasher.len() != size
        {
            return Err(Error::bad(
                format!("blob {}", self.expected),
                format!("{} bytes, its descriptor says {size}", self.hasher.len()),
            ));
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        self.expected.verify("blob", &actual)?;
        std::fs::rename(&self.tmp, &self.dest).ctx("moving into place", &self.dest)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_verified_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        store.put(&d, b"hello").unwrap();
        assert_eq!(store.size(&d), Some(5));
        assert_eq!(store.read(&d, 100).unwrap(), b"hello");
        assert!(store.read(&d, 2).is_err());

        let wrong = Digest::of(b"other");
        let err = store.put(&wrong, b"not other").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert_eq!(store.size(&wrong), None);
        let mut w = store.writer(&d, Some(3)).unwrap();
        assert!(w.write(b"hello").is_err());
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path().join(".oci/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(store.list().unwrap(), [(d.clone(), 5)]);
        store.remove(&d).unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}
