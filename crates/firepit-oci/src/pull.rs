//! `pull`: a reference resolved to a manifest (an index resolved for this host's platform),
//! its config and the layers the content store lacks downloaded and verified, then the image
//! made from them (`install`).

use firepit_image::{Image, ImageStore};

use crate::blobs::BlobStore;
use crate::error::{Error, Result};
use crate::install::{self, Event, SourceKind};
use crate::reference::Reference;
use crate::registry::{Client, ClientOptions};
use crate::spec::{self, Document};

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// How to reach the registry.
    pub client: ClientOptions,
    /// The registry of short names (`python:3.12`).
    pub default_registry: Option<String>,
}

/// Pulls `reference` into `store` as image `name` (by default the reference's last path
/// component and tag). Layers already in the content store are not downloaded again.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    name: Option<&str>,
    options: &PullOptions,
    progress: &mut (dyn FnMut(Event) + Send),
) -> Result<Image> {
    let reference = Reference::parse(reference, options.default_registry.as_deref())?;
    let name = name.map_or_else(|| reference.default_name(), str::to_owned);
    // Refuse a bad name before any download.
    firepit_image::recipe::validate_name(&name)?;
    let blobs = BlobStore::open(store.dir())?;
    let _hold = blobs.hold()?;
    let mut client = Client::new(&reference, &options.client)?;
    let reference_text = reference.to_string();

    let mut fetched = client.manifest(reference.target()).await?;
    let mut manifest = loop {
        match Document::parse("manifest", fetched.media_type.as_deref(), &fetched.bytes)? {
            Document::Manifest(m) => break m,
            Document::Index(index) => {
                let chosen = spec::select_platform(&index, &reference_text)?
                    .digest
                    .clone();
                // An index inside an index is refused by the second round.
                let next = client.manifest(chosen.as_str()).await?;
                if matches!(
                    Document::parse("manifest", next.media_type.as_deref(), &next.bytes)?,
                    Document::Index(_)
                ) {
                    return Err(Error::bad("manifest", "an index nested in an index"));
                }
                blobs.put(&fetched.digest, &fetched.bytes)?;
                fetched = next;
            }
        }
    };
    // Keep the platform manifest's own bytes: its digest is what the image records.
    blobs.put(&fetched.digest, &fetched.bytes)?;
    let manifest_digest = fetched.digest.clone();
    progress(Event::Resolved {
        manifest: manifest_digest.clone(),
        layers: manifest.layers.len(),
    });

    if blobs.size(&manifest.config.digest) != Some(manifest.config.size) {
        if manifest.config.size > spec::DOCUMENT_LIMIT {
            return Err(Error::TooLarge {
                what: "image config",
                limit: spec::DOCUMENT_LIMIT,
            });
        }
        client
            .blob(
                &blobs,
                &manifest.config.digest,
                manifest.config.size,
                &mut |_| {},
            )
            .await?;
    }
    let (m, _config) = install::load(&blobs, &manifest_digest)?;
    manifest = m;
    for layer in &manifest.layers {
        if blobs.size(&layer.digest) == Some(layer.size) {
            progress(Event::Present {
                layer: layer.digest.clone(),
                size: layer.size,
            });
            continue;
        }
        let (d, size) = (layer.digest.clone(), layer.size);
        client
            .blob(&blobs, &layer.digest, layer.size, &mut |done| {
                progress(Event::Download {
                    layer: d.clone(),
                    done,
                    size,
                })
            })
            .await?;
    }

    let (store, blobs2) = (store.clone(), blobs.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        install::install(
            &store,
            &blobs2,
            &name,
            SourceKind::Registry,
            &reference_text,
            &manifest_digest,
            &mut |e| {
                let _ = tx.send(e);
            },
        )
    });
    while let Some(e) = rx.recv().await {
        progress(e);
    }
    task.await
        .map_err(|e| Error::bad("unpacking", e.to_string()))?
}
