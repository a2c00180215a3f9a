//! Making an image of the store from an OCI manifest whose blobs are in the content store:
//! the layers applied in order into a staged tree (see `unpack`), the run configuration
//! written for the guest at `/.firepit/config.json`, the record of where the image came from
//! (`oci.json`) next to its manifest, and the image moved into place last.

use std::io::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use firepit_image::{Image, ImageStore, Manifest as ImageManifest};
use firepit_wire::image_config::{self, ImageConfig};
use serde::{Deserialize, Serialize};

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsat;
use crate::spec::{self, DOCUMENT_LIMIT};
use crate::unpack;

/// The file next to `image.json` that records an OCI image's origin and blobs.
pub const RECORD_FILE: &str = "oci.json";

/// Where an image came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Pulled from a registry.
    Registry,
    /// Imported from an archive file.
    Archive,
    /// Built from a Dockerfile.
    Dockerfile,
}

/// An OCI image's record (`oci.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What kind of source.
    pub kind: SourceKind,
    /// The reference, the archive's path, or the Dockerfile's path.
    pub source: String,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The config's digest.
    pub config: Digest,
    /// The layers' digests, base first.
    pub layers: Vec<Digest>,
    /// How the image's processes run.
    pub run: ImageConfig,
}

impl Record {
    /// The record of an image of the store, if it is an OCI image.
    pub fn read(image: &Image) -> Option<Record> {
        let dir = image.rootfs.parent()?;
        let bytes = std::fs::read(dir.join(RECORD_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every blob the image holds on to.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.manifest.clone(), self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

/// What is reported while an image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The manifest was resolved to this digest.
    Resolved {
        /// The manifest's digest.
        manifest: Digest,
        /// How many layers.
        layers: usize,
    },
    /// A layer is downloaded: `done` of `size` bytes.
    Download {
        /// The layer.
        layer: Digest,
        /// Bytes so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A layer was already in the content store.
    Present {
        /// The layer.
        layer: Digest,
        /// Its size.
        size: u64,
    },
    /// The tree of an image with the same first layers was linked in: they need no unpack.
    Reused {
        /// That image.
        image: String,
        /// How many layers it gave.
        layers: usize,
    },
    /// A layer is being applied to the tree.
    Unpack {
        /// The layer.
        layer: Digest,
        /// Its position, from 1.
        index: usize,
        /// How many layers.
        of: usize,
    },
    /// The image is in place.
    Done {
        /// Its name.
        name: String,
        /// Its tree's size in bytes.
        size: u64,
    },
}

/// The run configuration of an image config.
pub fn run_config(config: &spec::ImageConfig) -> ImageConfig {
    let c = config.config.clone().unwrap_or_default();
    ImageConfig {
        env: c.env.unwrap_or_default(),
        cwd: c.working_dir.filter(|w| w.starts_with('/')),
        user: c.user.filter(|u| !u.is_empty()),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
    }
}

/// Reads and checks the manifest and config `manifest` of the content store.
pub fn load(blobs: &BlobStore, manifest: &Digest) -> Result<(spec::Manifest, spec::ImageConfig)> {
    let bytes = blobs.read(manifest, DOCUMENT_LIMIT)?;
    let spec::Document::Manifest(m) = spec::Document::parse("manifest", None, &bytes)? else {
        return Err(Error::bad(
            "manifest",
            "an index where an image manifest was expected",
        ));
    };
    let config_bytes = blobs.read(&m.config.digest, DOCUMENT_LIMIT)?;
    let config: spec::ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::bad("image config", e.to_string()))?;
    check(&m, &config)?;
    Ok((m, config))
}

/// Checks that a manifest and its config fit together and name layers firepit can unpack.
pub fn check(m: &spec::Manifest, config: &spec::ImageConfig) -> Result<()> {
    if !config.os.is_empty() && config.os != "linux" {
        return Err(Error::bad(
            "image config",
            format!("the image is for {}, not linux", config.os),
        ));
    }
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(Error::bad(
            "image config",
            format!(
                "{} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                m.layers.len()
            ),
        ));
    }
    for l in &m.layers {
        let t = l.media_type.as_str();
        let ok = t.is_empty()
            || t.starts_with("application/vnd.oci.image.layer.")
            || t.starts_with("application/vnd.docker.image.rootfs.diff.tar");
        if !ok {
            return Err(Error::BadLayer {
                layer: l.digest.to_string(),
                reason: format!("media type {t} is not a filesystem layer"),
            });
        }
    }
    Ok(())
}

/// Makes image `name` from manifest `manifest_digest`, whose blobs are all in `blobs`.
pub fn install(
    store: &ImageStore,
    blobs: &BlobStore,
    name: &str,
    kind: SourceKind,
    source: &str,
    manifest_digest: &Digest,
    progress: &mut dyn FnMut(Event),
) -> Result<Image> {
    let (m, config) = load(blobs, manifest_digest)?;
    let staged = store.stage(name)?;
    let rootfs = staged.rootfs();
    let uid_base = store.options().uid_base;
    // The root of the tree: root's, 0755, as a layer may change it.
    std::os::unix::fs::lchown(&rootfs, Some(uid_base), Some(uid_base))
        .ctx("changing the owner of", &rootfs)?;
    let of = m.layers.len();
    // The tree of an image whose layers begin ours, hard-linked: those layers need no unpack.
    let mut done = 0;
    if let Some((base, n)) = longest_prefix(store, &m, uid_base) {
        link_tree(&base.rootfs, &rootfs)?;
        progress(Event::Reused {
            image: base.name.clone(),
            layers: n,
        });
        done = n;
    }
    for (i, (layer, diff_id)) in m
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .enumerate()
        .skip(done)
    {
        progress(Event::Unpack {
            layer: layer.digest.clone(),
            index: i + 1,
            of,
        });
        unpack::apply_layer(
            &rootfs,
            &blobs.path(&layer.digest),
            &layer.digest,
            Some(diff_id),
            uid_base,
        )?;
    }
    let image = finish(staged, kind, source, manifest_digest, &m, &config, uid_base)?;
    progress(Event::Done {
        name: name.to_owned(),
        size: image.manifest.size_bytes,
    });
    Ok(image)
}

/// The image of `store` (same uid base) whose layers are the longest prefix of `m`'s, and
/// how many layers that is.
fn longest_prefix(store: &ImageStore, m: &spec::Manifest, uid_base: u32) -> Option<(Image, usize)> {
    let mut best: Option<(Image, usize)> = None;
    for image in store.list().ok()? {
        if image.manifest.uid_base != uid_base {
            continue;
        }
        let Some(r) = Record::read(&image) else {
            continue;
        };
        let n = r.layers.len();
        let prefix = n > 0
            && n <= m.layers.len()
            && r.layers.iter().zip(&m.layers).all(|(a, b)| *a == b.digest)
            && r.kind != SourceKind::Dockerfile;
        if prefix && best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((image, n));
        }
    }
    best
}

/// Fills `dest` (an empty directory) with hard links to the files of `src`, directories made
/// anew with the same owners and modes: a tree to apply more layers to without copying.
/// Safe because layers replace files and never change one in place, and machines see trees
/// through a read-only lower layer.
pub(crate) fn link_tree(src: &Path, dest: &Path) -> Result<()> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg("-l")
        .arg("--no-target-directory")
        .arg(src)
        .arg(dest)
        .output()
        .ctx("running cp", dest)?;
    if !out.status.success() {
        return Err(Error::io(
            "linking the tree of an image into",
            dest,
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ));
    }
    Ok(())
}

/// Completes a staged image whose tree holds every layer of `m`: the run configuration for
/// the guest, the record, the store's manifest; then moves it into place.
pub fn finish(
    staged: firepit_image::Staged,
    kind: SourceKind,
    source: &str,
    manifest_digest: &Digest,
    m: &spec::Manifest,
    config: &spec::ImageConfig,
    uid_base: u32,
) -> Result<Image> {
    let name = staged.name().to_owned();
    let rootfs = staged.rootfs();
    let run = run_config(config);
    write_guest_config(&rootfs, &run, uid_base)?;
    let record = Record {
        kind: kind.clone(),
        source: source.to_owned(),
        manifest: manifest_digest.clone(),
        config: m.config.digest.clone(),
        layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
        run,
    };
    let record_path = staged.dir().join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::bad("image record", e.to_string()))?;
    std::fs::write(&record_path, json).ctx("writing", &record_path)?;
    let size = disk_usage(&rootfs)?;
    let manifest = ImageManifest {
        name: name.clone(),
        recipe: match kind {
            SourceKind::Registry => "registry",
            SourceKind::Archive => "archive",
            SourceKind::Dockerfile => "dockerfile",
        }
        .into(),
        variant: String::new(),
        packages: Vec::new(),
        suite: String::new(),
        mirror: source.to_owned(),
        arch: if config.architecture.is_empty() {
            spec::host_platform().0.to_owned()
        } else {
            config.architecture.clone()
        },
        uid_base,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        size_bytes: size,
        builder: format!("firepit-oci {manifest_digest}"),
        builder_version: env!("CARGO_PKG_VERSION").to_owned(),
        versions: Default::default(),
    };
    Ok(staged.commit(&manifest)?)
}

/// Writes the guest's run configuration at `/.firepit/config.json`, replacing whatever the
/// layers put at `/.firepit` (the launcher mounts the guest there).
pub(crate) fn write_guest_config(rootfs: &Path, run: &ImageConfig, uid_base: u32) -> Result<()> {
    let root = fsat::open_dir(rootfs).ctx("opening", rootfs)?;
    fsat::remove_all(root.as_fd(), c".firepit").ctx("clearing /.firepit in", rootfs)?;
    fsat::mkdir(root.as_fd(), c".firepit", 0o755).ctx("making /.firepit in", rootfs)?;
    let dir = fsat::open_name(
        root.as_fd(),
        c".firepit",
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .ctx("opening /.firepit in", rootfs)?;
    fsat::chown_chmod(dir.as_fd(), uid_base, uid_base, 0o755).ctx("making /.firepit in", rootfs)?;
    let name = image_config::PATH
        .rsplit('/')
        .next()
        .unwrap_or("config.json");
    let cname = fsat::cstr(name).ctx("writing", rootfs)?;
    let fd = fsat::open_name(
        dir.as_fd(),
        &cname,
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
        0o644,
    )
    .ctx("writing the run configuration in", rootfs)?;
    let mut file = std::fs::File::from(fd);
    let json = serde_json::to_vec_pretty(run)
        .map_err(|e| Error::bad("run configuration", e.to_string()))?;
    file.write_all(&json)
        .ctx("writing the run configuration in", rootfs)?;
    fsat::chown_chmod(file.as_fd(), uid_base, uid_base, 0o644)
        .ctx("writing the run configuration in", rootfs)
}

/// Disk usage of a tree in bytes, hard links counted once; links are not followed.
pub fn disk_usage(root: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ctx("reading", &dir)? {
            let entry = entry.ctx("reading", &dir)?;
            let m = entry.metadata().ctx("inspecting", entry.path())?;
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.nlink() > 1 && !seen.insert(m.ino()) {
                continue;
            }
            total += m.blocks() * 512;
        }
    }
    Ok(total)
}

/// Removes the blobs no OCI image of `store` holds on to; returns how many bytes that freed.
pub fn collect_garbage(store: &ImageStore, blobs: &BlobStore) -> Result<u64> {
    let _lock = blobs.exclusive()?;
    let mut used = std::collections::HashSet::new();
    for image in store.list()? {
        if let Some(r) = Record::read(&image) {
            used.extend(r.blobs());
        }
    }
    let mut freed = 0;
    for (d, size) in blobs.list()? {
        if !used.contains(&d) {
            blobs.remove(&d)?;
            freed += size;
        }
    }
    // Build cache entries whose layer is gone.
    let cache = store.dir().join(".oci/cache");
    if let Ok(entries) = std::fs::read_dir(&cache) {
        for entry in entries.flatten() {
            let layer = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let live = Digest::parse(layer.trim()).is_ok_and(|d| blobs.size(&d).is_some());
            if !live {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(freed)
}
