//! `firepit image pull|import`, and the OCI side of `image ls|rm`: images made from OCI
//! registries and archives on this host, into the data dir's image store, with progress per
//! layer on standard error. The daemon need not run.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use firepit_image::ImageStore;
use firepit_oci::blobs::BlobStore;
use firepit_oci::{ClientOptions, Credentials, Event, PullOptions, Record};

use crate::cli_oci::{ImportArgs, PullArgs};

fn store(data_dir: &Path, images_dir: Option<PathBuf>) -> Result<ImageStore> {
    let dir = images_dir.unwrap_or_else(|| data_dir.join("images"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(ImageStore::open(&dir)?)
}

/// Turns pull and import events into progress lines: a counter per downloaded layer, a line
/// per layer found in the content store and per layer unpacked.
struct Reporter {
    label: String,
    download: Option<(firepit_oci::digest::Digest, firepit_progress::Progress)>,
    phases: firepit_progress::Progress,
}

impl Reporter {
    fn new(label: &str) -> Reporter {
        Reporter {
            label: label.to_owned(),
            download: None,
            phases: firepit_progress::Progress::phases(format!("image {label}")),
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Resolved { manifest, layers } => {
                self.phases.message(format!("{manifest}: {layers} layers"))
            }
            Event::Download { layer, done, size } => {
                let same = self.download.as_ref().is_some_and(|(d, _)| *d == layer);
                if !same {
                    let label = format!(
                        "{} layer {} ({} KiB)",
                        self.label,
                        layer.short(),
                        size >> 10
                    );
                    self.download = Some((layer, firepit_progress::Progress::counter(label, size)));
                }
                if let Some((_, p)) = &mut self.download {
                    p.set(done);
                }
            }
            Event::Present { layer, size } => {
                self.download = None;
                self.phases.println(format!(
                    "layer {} ({} KiB) already present",
                    layer.short(),
                    size >> 10
                ));
            }
            Event::Shared { layer, index, of } => {
                self.download = None;
                self.phases.println(format!(
                    "layer {index}/{of} {} already unpacked: shared, not unpacked again",
                    layer.short()
                ));
            }
            Event::Unpack { layer, index, of } => {
                self.download = None;
                self.phases
                    .message(format!("unpacking layer {index}/{of} {}", layer.short()));
            }
            Event::Done { name, size } => {
                self.phases
                    .message(format!("image {name} ready ({} MiB)", size >> 20));
            }
        }
    }
}

/// `firepit image pull`
pub async fn pull(data_dir: &Path, args: PullArgs) -> Result<()> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => firepit_oci::Reference::parse(&args.reference, args.default_registry.as_deref())?
            .default_name(),
    };
    crate::commands::image::refuse_if_in_use(data_dir, &name)?;
    let store = store(data_dir, args.images_dir.clone())?;
    let credentials = match &args.user {
        Some(user) => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            Some(Credentials {
                user: user.clone(),
                password: password.trim_end_matches(['\n', '\r']).to_owned(),
            })
        }
        None => None,
    };
    let options = PullOptions {
        client: ClientOptions {
            insecure: args.insecure,
            credentials,
        },
        default_registry: args.default_registry.clone(),
    };
    let mut reporter = Reporter::new(&args.reference);
    let image = firepit_oci::pull(&store, &args.reference, Some(&name), &options, &mut |e| {
        reporter.event(e)
    })
    .await?;
    drop(reporter);
    println!(
        "pulled {} as image {} ({} MiB)",
        args.reference,
        image.name,
        image.manifest.size_bytes >> 20
    );
    Ok(())
}

/// `firepit image import`
pub fn import(data_dir: &Path, args: ImportArgs) -> Result<()> {
    if let Some(name) = &args.name {
        crate::commands::image::refuse_if_in_use(data_dir, name)?;
    }
    let store = store(data_dir, args.images_dir.clone())?;
    let mut reporter = Reporter::new(&args.file.display().to_string());
    let image = firepit_oci::archive::import(&store, &args.file, args.name.as_deref(), &mut |e| {
        reporter.event(e)
    })?;
    drop(reporter);
    println!(
        "imported {} as image {} ({} MiB)",
        args.file.display(),
        image.name,
        image.manifest.size_bytes >> 20
    );
    Ok(())
}

/// `firepit image ls`: every image with its source, its tree's size (its whole stack of
/// unpacked layers), its layers' size (compressed, in the shared content store) and the
/// sessions using it; the totals count a layer that images share once, unpacked and
/// compressed.
pub fn ls(data_dir: &Path, store: &ImageStore) -> Result<()> {
    let users = crate::commands::image::sessions_by_image(data_dir)?;
    let blobs = BlobStore::open(store.dir())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:>8} {:>8} {:<10} SOURCE",
        "NAME", "TREE", "LAYERS", "SESSIONS"
    )?;
    let mut counted = HashSet::new();
    let mut unpacked = HashSet::new();
    let (mut trees, mut layers_total) = (0u64, 0u64);
    for image in store.list()? {
        let record = Record::read(&image);
        // A stacked image's tree is its own small one and its shared layers, each once.
        match &record {
            Some(r) if !r.stack.is_empty() => {
                let shared: u64 = r.stack.iter().map(|(_, bytes)| bytes).sum();
                trees += image.manifest.size_bytes.saturating_sub(shared);
                for (dir, bytes) in &r.stack {
                    if unpacked.insert(dir.clone()) {
                        trees += bytes;
                    }
                }
            }
            _ => trees += image.manifest.size_bytes,
        }
        let (source, layers) = match &record {
            Some(r) => {
                let size: u64 = r.blobs().iter().filter_map(|d| blobs.size(d)).sum();
                for d in r.blobs() {
                    if counted.insert(d.clone()) {
                        layers_total += blobs.size(&d).unwrap_or(0);
                    }
                }
                (
                    format!("{:?} {} {}", r.kind, r.source, r.manifest).to_lowercase(),
                    size,
                )
            }
            None => (format!("recipe {}", image.manifest.recipe), 0),
        };
        let sessions = users.get(&image.name).map_or(0, Vec::len);
        writeln!(
            out,
            "{:<20} {:>7}M {:>7}M {:<10} {source}",
            image.name,
            image.manifest.size_bytes >> 20,
            layers >> 20,
            sessions
        )?;
        let details = crate::commands::image::details(&image);
        if !details.is_empty() {
            writeln!(out, "  {details}")?;
        }
    }
    writeln!(
        out,
        "on disk: {} MiB of trees and unpacked layers, {} MiB of compressed layers (each layer once, however many images share it)",
        trees >> 20,
        layers_total >> 20
    )?;
    Ok(())
}

/// After `image rm`: frees the layers no image uses any more.
pub fn collect_garbage(store: &ImageStore) -> Result<u64> {
    let blobs = BlobStore::open(store.dir())?;
    Ok(firepit_oci::install::collect_garbage(store, &blobs)?)
}

/// Sessions per image name, for `ls`.
pub type Users = BTreeMap<String, Vec<String>>;
