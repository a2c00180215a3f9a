//! The command line of OCI images (`firepit image pull|import`), as clap derive types.

use std::path::PathBuf;

use clap::Args;

/// `firepit image pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image reference, `HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]` (a short name with
    /// `--default-registry`).
    pub reference: String,
    /// The image's name in firepit (default: the repository's last part and the tag).
    #[arg(long)]
    pub name: Option<String>,
    /// Speak plain HTTP to the registry (a registry on this host's loopback).
    #[arg(long)]
    pub insecure: bool,
    /// The user name for the registry (the password is read from standard input with
    /// `--password-stdin`); without it, the Docker config's credentials are used.
    #[arg(long, requires = "password_stdin")]
    pub user: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// The registry of short names (`python:3.12`).
    #[arg(long, env = "FIREPIT_DEFAULT_REGISTRY")]
    pub default_registry: Option<String>,
    /// Directory of images, if not `<data-dir>/images`.
    #[arg(long, env = "FIREPIT_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
}

/// `firepit image import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive: `docker save` output or an OCI archive (plain or gzip).
    pub file: PathBuf,
    /// The image's name in firepit (default: from the archive's tag or file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory of images, if not `<data-dir>/images`.
    #[arg(long, env = "FIREPIT_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
}
