//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// What can be wrong with the trust and proxy settings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CA file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A CA file holds no certificate, or a broken one.
    #[error("{}: {why}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A proxy URL that machines could not be given.
    #[error("proxy {url:?} (from {source_name}): {why}")]
    BadProxy {
        /// The URL, its credentials left out.
        url: String,
        /// Where it came from (`--proxy`, `HTTPS_PROXY`, …).
        source_name: String,
        /// What is wrong with it.
        why: String,
    },
}
