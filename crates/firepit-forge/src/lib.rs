//! GitHub for firepit: a REST client ([`Forge`]) for the issues, comments,
//! pull requests and check runs the daemon works with, and the forge broker
//! ([`broker`]) through which a machine's git reaches the forge.
//!
//! The token lives in [`Token`], whose `Debug` and `Display` never show it;
//! every error message passes through [`redact`] before it is built. The
//! base URLs come from [`ForgeConfig`], so GitHub Enterprise (and the test
//! suite's stand-in forge) work by pointing them elsewhere.

#![warn(missing_docs)]

pub mod broker;
mod client;
mod config;
mod error;
mod repo;
mod route;
mod token;

pub use crate::client::{CheckRun, Comment, Forge, Issue, NewPull, Pull, PullRef, Repository};
pub use crate::config::{CONFIGURE_HELP, ForgeConfig};
pub use crate::error::Error;
pub use crate::repo::RepoName;
pub use crate::token::{Token, redact};

/// An error and its causes in one line (reqwest hides the useful part in sources).
pub(crate) use firepit_util::chain as error_chain;
