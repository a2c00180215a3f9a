//! Unpacked layers shared by images: each layer of an OCI image unpacked once into a
//! directory of its own, which machines stack as overlayfs lower dirs (see
//! `unpack::unpack_layer`), so images made of the same layers share them on disk.
//!
//! ```text
//! <images>/.oci/layers/<uid base>/l-<chain>   one layer over the layers its chain names
//! <images>/.oci/layers/<uid base>/f-<chain>   the layers up to <chain> flattened into a tree
//! <images>/.oci/layers/<uid base>/t-<key>     an image's whole tree (a Dockerfile's FROM a
//!                                             Debian image), hard-linked
//! <images>/.oci/layers/<uid base>/.tmp-*      one being made
//! ```
//!
//! A layer's directory is named by its chain: the sha256 of the chain below it and its diff
//! id, as a layer unpacked over other layers takes the owners of the directories it did not
//! name and hard links from them. Owners are `uid_base + id` (as every image's are), so the
//! uid base is part of the path. A directory is made under `.tmp-*` and renamed into place
//! whole; once in place it never changes (layers and trees are shared read-only).
//!
//! A stack deeper than [`FLATTEN_AT`] has its oldest layers flattened into one tree, so a
//! machine's overlay stays within [`firepit_machine`]'s limit.
//!
//! **Architecture Invariant:** a directory in place under `layers/` is complete; garbage
//! collection (under the content store's exclusive lock) removes those no image names.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use firepit_image::ImageStore;
use sha2::Digest as _;

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::unpack;

/// The most layers an image stacks (its own tree above them makes one more); beyond, the
/// oldest are flattened into one.
pub const FLATTEN_AT: usize = 32;

/// A layer of a stack: its blob and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob in the content store.
    pub blob: Digest,
    /// The diff id (checked when it is unpacked).
    pub diff_id: Digest,
}

/// A whole tree that a stack starts from (an image without layers of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Says which tree it is: the same key, the same tree.
    pub key: String,
    /// The tree to link from when it is not in the store yet (`None`: it is, or the stack
    /// that flattened it is).
    pub source: Option<PathBuf>,
}

/// The unpacked layers of one image store, for one uid base.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    uid_base: u32,
}

impl LayerStore {
    /// The layers of `store` (made when missing), owners shifted by the store's uid base.
    pub fn open(store: &ImageStore) -> Result<LayerStore> {
        let uid_base = store.options().uid_base;
        let dir = store.dir().join(".oci/layers").join(uid_base.to_string());
        std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
        Ok(LayerStore { dir, uid_base })
    }

    /// The directories of the stack `tree` + `layers` (base first), made as needed, topmost
    /// first; the oldest flattened into one when there are more than [`FLATTEN_AT`].
    /// `blobs` must hold every layer (the caller holds them against garbage collection).
    /// `progress(i, unpacked)` hears of each layer: unpacked now, or found unpacked already.
    pub fn stack(
        &self,
        blobs: &BlobStore,
        tree: Option<&Tree>,
        layers: &[Layer],
        progress: &mut dyn FnMut(usize, bool),
    ) -> Result<Vec<PathBuf>> {
        let mut chains = Vec::with_capacity(layers.len());
        let mut chain = tree
            .map(|t| format!("t-{}", hex(t.key.as_bytes())))
            .unwrap_or_default();
        for l in layers {
            chain = hex(format!("{chain}\n{}", l.diff_id).as_bytes());
            chains.push(chain.clone());
        }
        let depth = usize::from(tree.is_some()) + layers.len();
        // Bottom first.
        let mut stack: Vec<PathBuf> = Vec::new();
        let first_own = if depth > FLATTEN_AT {
            // One flattened tree and the rest: FLATTEN_AT in all.
            let flat = (layers.len() + 1 - FLATTEN_AT).clamp(1, layers.len());
            let name = format!("f-{}", chains[flat - 1]);
            let dir = self.make(&name, |tmp| {
                // From the deepest flattened tree of this chain already made, else the start.
                let made = (1..flat)
                    .rev()
                    .map(|j| (j, self.dir.join(format!("f-{}", chains[j - 1]))))
                    .find(|(_, d)| d.is_dir());
                let start = match (made, tree) {
                    (Some((j, d)), _) => {
                        crate::install::link_tree(&d, tmp)?;
                        j
                    }
                    (None, Some(t)) => {
                        let src = match &t.source {
                            Some(src) => src.clone(),
                            None => self.dir.join(tree_name(t)),
                        };
                        if !src.is_dir() {
                            return Err(crate::Error::bad(
                                "image",
                                "the tree its layers stack on is gone; rebuild its base image",
                            ));
                        }
                        crate::install::link_tree(&src, tmp)?;
                        0
                    }
                    (None, None) => 0,
                };
                for (i, l) in layers[..flat].iter().enumerate().skip(start) {
                    progress(i, true);
                    unpack::apply_layer(
                        tmp,
                        &blobs.path(&l.blob),
                        &l.blob,
                        Some(&l.diff_id),
                        self.uid_base,
                    )?;
                }
                Ok(())
            })?;
            stack.push(dir);
            flat
        } else {
            if let Some(t) = tree {
                stack.push(self.tree(t)?);
            }
            0
        };
        for (i, l) in layers.iter().enumerate().skip(first_own) {
            let name = format!("l-{}", chains[i]);
            let below: Vec<PathBuf> = stack.iter().rev().cloned().collect();
            let mut unpacked = false;
            let dir = self.make(&name, |tmp| {
                unpacked = true;
                progress(i, true);
                // The layer's root as the stack's, unless the layer says otherwise.
                if let Some(top) = below.first() {
                    copy_owner_mode(top, tmp)?;
                }
                unpack::unpack_layer(
                    tmp,
                    &below,
                    &blobs.path(&l.blob),
                    &l.blob,
                    Some(&l.diff_id),
                    self.uid_base,
                )?;
                Ok(())
            })?;
            if !unpacked {
                progress(i, false);
            }
            stack.push(dir);
        }
        stack.reverse();
        Ok(stack)
    }

    /// The tree `t`, linked into the store when it is not there yet.
    fn tree(&self, t: &Tree) -> Result<PathBuf> {
        self.make(&tree_name(t), |tmp| match &t.source {
            Some(src) => crate::install::link_tree(src, tmp),
            None => Err(crate::Error::bad(
                "image",
                "the tree its layers stack on is gone; rebuild its base image",
            )),
        })
    }

    /// `dir/name`, made by `fill` in a fresh `.tmp-*` dir and renamed into place when it is
    /// not there yet.
    fn make(&self, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        let dest = self.dir.join(name);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self
            .dir
            .join(format!(".tmp-{name}-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&tmp).ctx("creating", &tmp)?;
        std::os::unix::fs::lchown(&tmp, Some(self.uid_base), Some(self.uid_base))
            .ctx("changing the owner of", &tmp)?;
        let r = fill(&tmp).and_then(|()| match std::fs::rename(&tmp, &dest) {
            // Made meanwhile by another maker: theirs is the same.
            Err(_) if dest.is_dir() => {
                remove_tree(&tmp);
                Ok(())
            }
            r => r.ctx("moving into place", &dest),
        });
        if r.is_err() {
            remove_tree(&tmp);
        }
        r.map(|()| dest)
    }

    /// Removes the layers no image of `store` names, and what makers left in `.tmp-*`; the
    /// caller holds the content store's exclusive lock. Returns the bytes freed.
    pub fn collect_garbage(&self, store: &ImageStore) -> Result<u64> {
        let mut used = HashSet::new();
        for image in store.list()? {
            used.extend(image.lowers().into_iter().skip(1));
        }
        let mut freed = 0;
        for entry in std::fs::read_dir(&self.dir).ctx("reading", &self.dir)? {
            let entry = entry.ctx("reading", &self.dir)?;
            let path = entry.path();
            if !used.contains(&path) {
                freed += crate::install::disk_usage(&path).unwrap_or(0);
                remove_tree(&path);
            }
        }
        Ok(freed)
    }
}

/// `path`, a directory of the layer store, relative to the image store at `store_dir`: how
/// an image's manifest names its layers.
pub fn relative(store_dir: &Path, path: &Path) -> String {
    path.strip_prefix(store_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn tree_name(t: &Tree) -> String {
    format!("t-{}", hex(t.key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Gives `to` the owner and mode of `from` (directories of trusted paths).
pub(crate) fn copy_owner_mode(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(from).ctx("inspecting", from)?;
    std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid())).ctx("changing the owner of", to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
        .ctx("changing the mode of", to)
}

/// Removes a tree of the layer store (best effort; what is left is collected later).
fn remove_tree(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}
