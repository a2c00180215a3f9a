//! `import`: an image from a file, for hosts without a registry: a `docker save` tarball
//! (`manifest.json` naming a config and `layer.tar`s, the older layout, or the OCI layout
//! that newer Docker writes beside it) or an OCI archive (a tar of an OCI image layout:
//! `oci-layout`, `index.json`, `blobs/sha256/…`), plain or gzip-compressed.
//!
//! The archive is read once, as a stream: every regular file goes into the content store (a
//! file under `blobs/sha256/` must hash to its name; others are stored under the digest they
//! have), small JSON files are kept to read the layout, symlinks are remembered by path.
//! A `docker save` image gets an OCI manifest made for it, whose layer digests are the
//! layers' own (uncompressed) digests.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use firepit_image::{Image, ImageStore};

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::install::{self, Event, SourceKind};
use crate::spec::{self, DOCUMENT_LIMIT, Descriptor, Document};

/// Where each file of the archive went.
struct Contents {
    /// Path → digest of its content in the store.
    files: HashMap<String, Digest>,
    /// Path → link target, resolved to an archive path.
    links: HashMap<String, String>,
}

impl Contents {
    fn get(&self, path: &str) -> Option<&Digest> {
        let mut p = normalize(path);
        for _ in 0..16 {
            if let Some(d) = self.files.get(&p) {
                return Some(d);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// Imports the archive at `file` into `store` as image `name` (by default the archive's tag).
pub fn import(
    store: &ImageStore,
    file: &Path,
    name: Option<&str>,
    progress: &mut dyn FnMut(Event),
) -> Result<Image> {
    let blobs = BlobStore::open(store.dir())?;
    let _hold = blobs.hold()?;
    let bad = |reason: String| Error::BadArchive {
        path: file.to_owned(),
        reason,
    };
    let f = std::fs::File::open(file).map_err(|e| Error::io("opening", file, e))?;
    let mut buffered = std::io::BufReader::with_capacity(1 << 20, f);
    let reader: Box<dyn Read> = {
        use std::io::BufRead as _;
        let head = buffered
            .fill_buf()
            .map_err(|e| Error::io("reading", file, e))?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        }
    };
    let mut contents = Contents {
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let hex = path.strip_prefix("blobs/sha256/");
                let d = match hex.map(|h| Digest::parse(&format!("sha256:{h}"))) {
                    Some(Ok(d)) => {
                        if blobs.size(&d) == Some(entry.size()) {
                            std::io::copy(&mut entry, &mut std::io::sink())
                                .map_err(|e| bad(e.to_string()))?;
                        } else {
                            let size = entry.size();
                            blobs.put_reader(&d, Some(size), &mut entry)?;
                        }
                        d
                    }
                    _ => blobs.put_any(&mut entry)?.0,
                };
                contents.files.insert(path, d);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Link
                        || target.starts_with('/')
                    {
                        normalize(&target)
                    } else {
                        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                        normalize(&format!("{parent}/{target}"))
                    };
                    contents.links.insert(path, resolved);
                }
            }
            _ => {}
        }
    }
    let source = file.display().to_string();
    let read_json = |path: &str| -> Result<Vec<u8>> {
        let d = contents
            .get(path)
            .ok_or_else(|| bad(format!("{path} is missing")))?;
        blobs.read(d, DOCUMENT_LIMIT)
    };

    let (manifest_digest, tag) = if contents.get("index.json").is_some()
        && contents.get("oci-layout").is_some()
    {
        let index: spec::Index = serde_json::from_slice(&read_json("index.json")?)
            .map_err(|e| bad(format!("index.json: {e}")))?;
        let chosen = choose(&blobs, &index, &source)?;
        let tag = chosen
            .annotations
            .get("org.opencontainers.image.ref.name")
            .cloned();
        (resolve_index(&blobs, chosen, &source)?, tag)
    } else if contents.get("manifest.json").is_some() {
        docker_save(&blobs, &contents, &read_json("manifest.json")?, &bad)?
    } else {
        return Err(bad(
            "it has neither index.json and oci-layout (OCI) nor manifest.json (docker save)".into(),
        ));
    };
    // The manifest and its blobs must all be here.
    let (m, _) = install::load(&blobs, &manifest_digest)?;
    for l in &m.layers {
        if blobs.size(&l.digest).is_none() {
            return Err(bad(format!("layer {} is missing", l.digest)));
        }
    }
    let name = match name {
        Some(n) => n.to_owned(),
        None => default_name(tag.as_deref(), file),
    };
    progress(Event::Resolved {
        manifest: manifest_digest.clone(),
        layers: m.layers.len(),
    });
    install::install(
        store,
        &blobs,
        &name,
        SourceKind::Archive,
        &source,
        &manifest_digest,
        progress,
    )
}

/// The descriptor of `index` to import: the only one, or this host's platform's.
fn choose<'a>(_blobs: &BlobStore, index: &'a spec::Index, source: &str) -> Result<&'a Descriptor> {
    match index.manifests.as_slice() {
        [] => Err(Error::bad("index.json", "it lists no manifest")),
        [only] => Ok(only),
        _ => spec::select_platform(index, source),
    }
}

/// Follows a descriptor through at most one nested index to an image manifest.
fn resolve_index(blobs: &BlobStore, d: &Descriptor, source: &str) -> Result<Digest> {
    let bytes = blobs.read(&d.digest, DOCUMENT_LIMIT)?;
    match Document::parse("manifest", Some(&d.media_type), &bytes)? {
        Document::Manifest(_) => Ok(d.digest.clone()),
        Document::Index(inner) => {
            let chosen = spec::select_platform(&inner, source)?;
            let bytes = blobs.read(&chosen.digest, DOCUMENT_LIMIT)?;
            match Document::parse("manifest", Some(&chosen.media_type), &bytes)? {
                Document::Manifest(_) => Ok(chosen.digest.clone()),
                Document::Index(_) => Err(Error::bad("manifest", "an index nested twice")),
            }
        }
    }
}

/// A `docker save` `manifest.json`: an OCI manifest made for its first image.
fn docker_save(
    blobs: &BlobStore,
    contents: &Contents,
    manifest_json: &[u8],
    bad: &dyn Fn(String) -> Error,
) -> Result<(Digest, Option<String>)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let entries: Vec<Entry> =
        serde_json::from_slice(manifest_json).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let [entry] = entries.as_slice() else {
        return Err(bad(format!(
            "manifest.json lists {} images; import archives of one image",
            entries.len()
        )));
    };
    let config = contents
        .get(&entry.config)
        .ok_or_else(|| bad(format!("{} is missing", entry.config)))?
        .clone();
    let config_size = blobs.size(&config).unwrap_or(0);
    let mut layers = Vec::new();
    for l in &entry.layers {
        let d = contents
            .get(l)
            .ok_or_else(|| bad(format!("{l} is missing")))?
            .clone();
        layers.push(Descriptor {
            media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
            size: blobs.size(&d).unwrap_or(0),
            digest: d,
            platform: None,
            annotations: Default::default(),
        });
    }
    let manifest = spec::Manifest {
        schema_version: 2,
        media_type: Some(spec::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: config,
            size: config_size,
            platform: None,
            annotations: Default::default(),
        },
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
    let digest = Digest::of(&bytes);
    blobs.put(&digest, &bytes)?;
    let tag = entry.repo_tags.as_ref().and_then(|t| t.first()).cloned();
    Ok((digest, tag))
}

/// An image name from a tag (`app:v1` → `app-v1`) or the file's name.
fn default_name(tag: Option<&str>, file: &Path) -> String {
    let base = match tag {
        Some(t) => {
            let last = t.rsplit('/').next().unwrap_or(t);
            match last.split_once(':') {
                Some((n, "latest")) => n.to_owned(),
                Some((n, t)) => format!("{n}-{t}"),
                None => last.to_owned(),
            }
        }
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n).to_owned())
            .unwrap_or_else(|| "imported".into()),
    };
    crate::reference::image_name(&base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(normalize("./blobs//sha256/../x"), "blobs/x");
        assert_eq!(
            default_name(Some("reg:5000/team/app:v1"), Path::new("x.tar")),
            "app-v1"
        );
        assert_eq!(default_name(Some("app:latest"), Path::new("x.tar")), "app");
        assert_eq!(
            default_name(None, Path::new("/tmp/My Image.tar.gz")),
            "my-image"
        );
    }
}
