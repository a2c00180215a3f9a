//! What machines trust and how they reach the web, decided once by the
//! daemon for all of them.
//!
//! - [`ca`]: the extra CA certificates machines trust besides their image's:
//!   the host's own additions (`/usr/local/share/ca-certificates`,
//!   `/etc/pki/ca-trust/source/anchors`) and `firepit up --ca-file`, checked
//!   and written out as one PEM text. The machine backend installs it into
//!   each machine (`firepit_machine::namespaces::trust`).
//! - [`proxy`]: the proxy settings (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`
//!   of the daemon's environment, or `firepit up --proxy`), the environment
//!   machines get from them, and what image builds use.
//! - [`relay`]: the per-machine proxy relay. Machines never reach the host
//!   (nor its loopback, where a proxy often listens) and never hold the
//!   proxy's credentials: the daemon listens inside each machine on
//!   `127.0.0.1:`[`proxy::RELAY_PORT`] and forwards what it accepts to the
//!   proxy, adding the credentials outside the machine.
#![warn(missing_docs)]

pub mod ca;
mod error;
pub mod proxy;
pub mod relay;

pub use error::Error;
