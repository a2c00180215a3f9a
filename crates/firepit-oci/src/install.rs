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
use crate::layers::{Layer, LayerStore};
use crate::spec::{self, DOCUMENT_LIMIT};

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
    /// The key of the whole tree its stack starts from (an image built `FROM` one without
    /// layers of its own, see `layers::Tree`); `None`: its layers are the whole stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    /// The directories of its stack (relative to the store, topmost first, the image's own
    /// tree left out) with their disk usage, for `image ls` to count each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<(String, u64)>,
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
    /// A layer was unpacked already (for another image): shared, not unpacked again.
    Shared {
        /// The layer.
        layer: Digest,
        /// Its position, from 1.
        index: usize,
        /// How many layers.
        of: usize,
    },
    /// A layer is being unpacked.
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
    let uid_base = store.options().uid_base;
    let of = m.layers.len();
    let layers: Vec<Layer> = m
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(l, d)| Layer {
            blob: l.digest.clone(),
            diff_id: d.clone(),
        })
        .collect();
    let stack = LayerStore::open(store)?.stack(blobs, None, &layers, &mut |i, unpacked| {
        let (layer, index) = (layers[i].blob.clone(), i + 1);
        progress(if unpacked {
            Event::Unpack { layer, index, of }
        } else {
            Event::Shared { layer, index, of }
        })
    })?;
    let image = finish(
        staged,
        Made {
            kind,
            source,
            manifest_digest,
            manifest: &m,
            config: &config,
            uid_base,
            tree: None,
            stack: &stack,
        },
    )?;
    progress(Event::Done {
        name: name.to_owned(),
        size: image.manifest.size_bytes,
    });
    Ok(image)
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

/// What an image is made of, for [`finish`].
pub struct Made<'a> {
    /// Where it came from.
    pub kind: SourceKind,
    /// The reference, archive or Dockerfile.
    pub source: &'a str,
    /// Its manifest's digest.
    pub manifest_digest: &'a Digest,
    /// Its manifest.
    pub manifest: &'a spec::Manifest,
    /// Its config.
    pub config: &'a spec::ImageConfig,
    /// The store's uid base.
    pub uid_base: u32,
    /// The key of the tree its stack starts from, if any.
    pub tree: Option<String>,
    /// Its stack's directories in the layer store, topmost first.
    pub stack: &'a [std::path::PathBuf],
}

/// Completes a staged image whose layers are all in the layer store (`made.stack`): its
/// own tree (the stack's root owner and mode, and the run configuration for the guest), the
/// record, the store's manifest naming the stack; then moves it into place.
pub fn finish(staged: firepit_image::Staged, made: Made<'_>) -> Result<Image> {
    let Made {
        kind,
        source,
        manifest_digest,
        manifest: m,
        config,
        uid_base,
        tree,
        stack,
    } = made;
    let name = staged.name().to_owned();
    let rootfs = staged.rootfs();
    match stack.first() {
        Some(top) => crate::layers::copy_owner_mode(top, &rootfs)?,
        None => std::os::unix::fs::lchown(&rootfs, Some(uid_base), Some(uid_base))
            .ctx("changing the owner of", &rootfs)?,
    }
    let run = run_config(config);
    write_guest_config(&rootfs, &run, uid_base)?;
    // The store's dir: staged images are made in a dir of it.
    let store_dir = staged.dir().parent().unwrap_or(Path::new("/")).to_owned();
    let mut sizes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut size = disk_usage_into(&rootfs, &mut seen)?;
    for dir in stack {
        let mut own = std::collections::HashSet::new();
        let bytes = disk_usage_into(dir, &mut own)?;
        size += disk_usage_into(dir, &mut seen)?;
        sizes.push((crate::layers::relative(&store_dir, dir), bytes));
    }
    let record = Record {
        kind: kind.clone(),
        source: source.to_owned(),
        manifest: manifest_digest.clone(),
        config: m.config.digest.clone(),
        layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
        run,
        tree,
        stack: sizes.clone(),
    };
    let record_path = staged.dir().join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::bad("image record", e.to_string()))?;
    std::fs::write(&record_path, json).ctx("writing", &record_path)?;
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
        layers: sizes.into_iter().map(|(dir, _)| dir).collect(),
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
    // Whatever layers below put at /.firepit stays hidden.
    fsat::set_opaque(dir.as_fd()).ctx("making /.firepit in", rootfs)?;
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
        .ctx("writing the run configuration in", rootfs)?;
    // The guest's mount point, made once here: a machine's launcher finds it and binds the
    // guest on it, where making it would copy `/.firepit` up into every new machine's layer.
    let guest = firepit_wire::image_config::GUEST
        .rsplit('/')
        .next()
        .unwrap_or("guest");
    let cname = fsat::cstr(guest).ctx("writing", rootfs)?;
    let fd = fsat::open_name(
        dir.as_fd(),
        &cname,
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
        0o755,
    )
    .ctx("making the guest's mount point in", rootfs)?;
    fsat::chown_chmod(fd.as_fd(), uid_base, uid_base, 0o755)
        .ctx("making the guest's mount point in", rootfs)
}

/// Disk usage of a tree in bytes, hard links counted once; links are not followed.
pub fn disk_usage(root: &Path) -> Result<u64> {
    disk_usage_into(root, &mut std::collections::HashSet::new())
}

/// [`disk_usage`], leaving out the files whose inode is in `seen` and adding the others.
fn disk_usage_into(root: &Path, seen: &mut std::collections::HashSet<u64>) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
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
    freed += crate::layers::LayerStore::open(store)?.collect_garbage(store)?;
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
