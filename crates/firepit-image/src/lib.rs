//! Machine images for firepit.
//!
//! A machine's root filesystem is an image (a read-only directory tree) plus a copy-on-write
//! layer of its own. This crate builds images from Debian packages (with `mmdebstrap`, or
//! `debootstrap` where that is all there is) and keeps them in an [`ImageStore`]:
//!
//! ```text
//! <data-dir>/images/
//!   <name>/rootfs/            the tree, owned by uid_base.. (root inside a machine)
//!   <name>/image.json         the manifest, written last: no manifest, no image
//!   .build-<name>-<rand>/     a build in progress (or a dead one, removed on the next
//!   .build-<name>-<rand>.lock   build/list once its flock is free)
//!   .trash-<name>-<rand>/     an image being removed
//! ```
//!
//! **Architecture Invariant:** an image directory without a parsable `image.json` is never
//! listed, and `image.json` is only written into a complete, ownership-shifted tree, which is
//! then renamed into place (atomically swapped with the old image on rebuild).
//!
//! **Architecture Invariant:** the files of an image are owned by `uid_base + id` where `id` is
//! the owner the packages gave them, so a machine whose user namespace maps `0..65536` inside
//! to `uid_base..uid_base+65536` outside sees them owned as intended. File capabilities
//! (`security.capability` xattrs) are dropped during the shift: they were set by the host's
//! root and a machine's root could not use them as they are.
//!
//! Everything here is synchronous; the daemon calls it from a blocking thread.
#![warn(missing_docs)]

mod build;
pub mod cache;
pub mod contents;
mod error;
mod fsutil;
pub mod host;
mod manifest;
pub mod progress;
pub mod recipe;
pub mod shift;
pub mod sources;
mod store;

pub use build::BuildOptions;
pub use error::{Error, Result};
pub use manifest::Manifest;
pub use progress::{Phase, Progress};
pub use recipe::Recipe;
pub use store::{Image, ImageStore, Staged};

/// The first uid (and gid) of the range that a machine's ids `0..65536` map to, by default.
pub const DEFAULT_UID_BASE: u32 = 100_000;

/// How many ids a machine's user namespace maps.
pub const UID_RANGE: u32 = 65_536;
