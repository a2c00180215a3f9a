//! The crate's error type.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable image of that name in the store.
    #[error("image `{name}` not found; build it with `firepit image build {name}`")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// No built-in recipe of that name.
    #[error("unknown image recipe `{name}`; known recipes: {known}")]
    UnknownRecipe {
        /// The name asked for.
        name: String,
        /// The known recipe names, comma separated.
        known: String,
    },
    /// An image name that cannot be a directory name in the store.
    #[error(
        "invalid image name `{name}`: use 1 to 64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Neither mmdebstrap nor debootstrap is installed.
    #[error(
        "neither mmdebstrap nor debootstrap is installed; install the Debian package `mmdebstrap` (apt-get install mmdebstrap)"
    )]
    NoBuilder,
    /// Host packages firepit needs could not be installed.
    #[error(
        "could not install the host packages {packages} ({reason}); install them with apt-get as root"
    )]
    HostPackages {
        /// The packages, space separated.
        packages: String,
        /// What went wrong.
        reason: String,
    },
    /// No mirror/suite could be found in the host's apt sources and none was given.
    #[error(
        "no Debian archive found in the apt sources under {apt_dir}; set the mirror and suite in the build options"
    )]
    NoAptSource {
        /// The apt configuration directory searched.
        apt_dir: PathBuf,
    },
    /// A suite alias (`stable`) whose codename the archive did not give.
    #[error(
        "could not learn which release `{alias}` is at {uri} ({reason}); name the suite with `--suite CODENAME`"
    )]
    SuiteAlias {
        /// The alias.
        alias: String,
        /// The archive asked.
        uri: String,
        /// What went wrong.
        reason: String,
    },
    /// The image builder (mmdebstrap or debootstrap) failed.
    #[error("{tool} failed ({status}); its last output:\n{tail}")]
    BuilderFailed {
        /// The builder program.
        tool: String,
        /// How it exited.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// A file system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest that does not parse or cannot be written.
    #[error("image manifest {path}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An owner id that does not fit in the ids a machine maps.
    #[error("{path} is owned by id {id}, outside the {range} ids a machine maps")]
    IdOutOfRange {
        /// The file.
        path: PathBuf,
        /// The uid or gid.
        id: u32,
        /// The size of the mapped range.
        range: u32,
    },
    /// A uid base that would overlap the ids it is meant to shift.
    #[error("uid base {0} must be 0 or at least 65536")]
    InvalidUidBase(u32),
    /// Something is mounted inside a tree we were about to change or delete.
    #[error("{path} is a mount point inside an image tree; unmount it first")]
    MountInTree {
        /// The mount point.
        path: PathBuf,
    },
}

impl Error {
    /// Whether this error means "no such image" (the HTTP layer maps it to 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
