//! `image.json`: what an image is and how it was made. Written last, atomically; an image
//! without a manifest that parses does not exist.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// The manifest's file name inside an image directory.
pub const FILE: &str = "image.json";

/// An image's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The image name.
    pub name: String,
    /// The recipe it was built from (its name is the image's kind).
    pub recipe: String,
    /// The variant (`minbase`).
    pub variant: String,
    /// The packages asked for on top of the variant.
    pub packages: Vec<String>,
    /// The Debian suite (a codename: `stable` is resolved before the build).
    pub suite: String,
    /// The archive it was built from.
    pub mirror: String,
    /// The Debian architecture (`amd64`).
    pub arch: String,
    /// Owner ids in the tree are `uid_base + id inside`.
    pub uid_base: u32,
    /// Build completion, seconds since the Unix epoch.
    pub created: u64,
    /// Disk usage of the tree in bytes (hard links counted once).
    pub size_bytes: u64,
    /// The builder program and its version (`mmdebstrap 1.3.5`).
    pub builder: String,
    /// The version of firepit-image that built it.
    pub builder_version: String,
    /// Debian versions of the key packages installed (see [`crate::contents::key_versions`]);
    /// empty in manifests written before they were recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
    /// Read-only layers stacked below the image's own tree, topmost first: directories
    /// relative to the store (`.oci/layers/...`), shared by the images made of them. Empty:
    /// the tree is the whole image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

impl Manifest {
    /// The tools of the image with their upstream versions (see [`crate::contents::tools`]).
    pub fn tools(&self) -> Vec<(&'static str, String)> {
        crate::contents::tools(&self.versions)
    }

    /// What the image offers, for a person or an agent (see [`crate::contents::describe`]).
    pub fn describe(&self) -> String {
        crate::contents::describe(&self.suite, &self.versions)
    }
}

/// Whether `layer` may name a layer of [`Manifest::layers`]: relative, below the store,
/// without `..`, and fit for overlayfs options (no `,`, `:` or `\\`).
pub fn layer_path_ok(layer: &str) -> bool {
    !layer.is_empty()
        && !layer.starts_with('/')
        && !layer.contains([',', ':', '\\'])
        && layer
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Manifest {
    /// Read and parse a manifest file.
    pub fn read(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).ctx("reading", path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Manifest {
            path: path.into(),
            source,
        })
    }

    /// Write the manifest to `path` atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Manifest {
            path: path.into(),
            source,
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).ctx("creating", &tmp)?;
        f.write_all(&json)
            .and_then(|()| f.write_all(b"\n"))
            .ctx("writing", &tmp)?;
        f.sync_all().ctx("syncing", &tmp)?;
        std::fs::rename(&tmp, path).ctx("renaming into place", path)
    }
}

#[cfg(test)]
pub(crate) fn sample(name: &str) -> Manifest {
    Manifest {
        name: name.into(),
        recipe: "minimal".into(),
        variant: "minbase".into(),
        packages: vec!["bash".into()],
        suite: "bookworm".into(),
        mirror: "http://mirror.invalid/debian".into(),
        arch: "amd64".into(),
        uid_base: 100_000,
        created: 1_700_000_000,
        size_bytes: 1234,
        builder: "mmdebstrap 1.3.5".into(),
        builder_version: env!("CARGO_PKG_VERSION").into(),
        versions: Default::default(),
        layers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let m = sample("minimal");
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn versions_round_trip_and_old_manifests_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut m = sample("default");
        m.versions = crate::contents::sample_versions();
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);
        assert!(
            m.tools()
                .iter()
                .any(|(t, v)| t.starts_with("Node.js") && v == "20.19.2")
        );
        // A manifest from before versions were kept.
        let mut old = serde_json::to_value(sample("minimal")).unwrap();
        old.as_object_mut().unwrap().remove("versions");
        std::fs::write(&path, old.to_string()).unwrap();
        assert!(Manifest::read(&path).unwrap().versions.is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, "{\"name\": ").unwrap();
        assert!(matches!(Manifest::read(&path), Err(Error::Manifest { .. })));
    }
}
