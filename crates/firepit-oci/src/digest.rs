//! Content digests (`sha256:<hex>`): parsed strictly, because a digest becomes a file name in
//! the content store, and computed while content streams past.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A sha256 digest, `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parse a digest; anything but sha256 in its canonical form is refused.
    pub fn parse(s: &str) -> Result<Digest> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::InvalidDigest(s.to_owned()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::InvalidDigest(s.to_owned()));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    /// The digest of the file at `path`.
    pub fn of_file(path: &std::path::Path) -> Result<Digest> {
        let f = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
        let mut r = HashingReader::new(f);
        std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| Error::io("reading", path, e))?;
        Ok(r.finish().0)
    }

    /// The 64 hex digits (a file name: nothing else can be in it).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole digest, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    /// Fails unless `actual` is this digest.
    pub fn verify(&self, what: &'static str, actual: &Digest) -> Result<()> {
        if self == actual {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                what,
                expected: self.0.clone(),
                actual: actual.0.clone(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A running sha256 over content as it streams.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A hasher over nothing yet.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Take more content.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes it took.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it took nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything taken.
    pub fn finish(self) -> Digest {
        let sum = self.inner.finalize();
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in sum {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R> HashingReader<R> {
    /// Hash what is read from `inner`.
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// The digest of what was read so far, and how many bytes.
    pub fn finish(self) -> (Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finish(), len)
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_sha256() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::of(b"").as_str(), empty);
        assert_eq!(Digest::parse(empty).unwrap().short(), "e3b0c44298fc");
        for bad in [
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../etc/passwd",
            "sha512:e3b0",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        let d = Digest::of(b"x");
        assert!(d.verify("blob", &Digest::of(b"y")).is_err());
        assert!(d.verify("blob", &Digest::of(b"x")).is_ok());
    }
}
