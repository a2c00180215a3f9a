//! OCI images for firepit: pulled from any registry, imported from archives, and made into
//! images of the image store that machines start from.
//!
//! ```text
//! <images>/.oci/blobs/sha256/<hex>   the content store: manifests, configs, layers, once each
//! <images>/.oci/layers/<uid base>/    layers unpacked once each, shared (see `layers`)
//! <images>/<name>/rootfs/            the image's own tree (its run configuration), stacked
//!                                    over its layers as overlay lower dirs
//! <images>/<name>/oci.json           where it came from, its blobs, its run configuration
//! <images>/<name>/image.json         the store's manifest, written last
//! ```
//!
//! `registry` speaks the distribution API, `blobs` keeps what it fetched by digest, `unpack`
//! applies layers (whiteouts, opaque directories, no path leaving the root), `install` makes
//! the image, `pull` and `archive` are the two ways in.
#![warn(missing_docs)]

pub mod archive;
pub mod blobs;
pub mod build;
pub mod diff;
pub mod digest;
pub mod dockerfile;
mod error;
mod fsat;
pub mod install;
pub mod layers;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod spec;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod unpack;

pub use error::{Error, Result};
pub use install::{Event, Record, SourceKind};
pub use pull::{PullOptions, pull};
pub use reference::Reference;
pub use registry::{ClientOptions, Credentials};
