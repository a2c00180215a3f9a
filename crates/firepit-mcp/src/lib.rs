//! firepit over the Model Context Protocol: any MCP client (Claude Code,
//! Claude Desktop, Cursor, Zed, an agent framework) drives firepit's machines
//! with the same tools firepit's own agent uses.
//!
//! - [`Server`] is the MCP server (an rmcp [`rmcp::ServerHandler`]): the
//!   session tools ([`tools`]: create, list, stop, start, destroy, share
//!   links, problems) and every tool of the agent
//!   ([`firepit_agent::tools::definitions`], less `ask_user`) with a `session`
//!   argument added, run by [`firepit_agent::tools::call`]: one code path for
//!   both. Resources ([`resources`]) give a session's files, service logs and
//!   problems; [`notify`] sends a notification when a port opens or a problem
//!   is found in a session the client works in.
//! - [`http::service`] is the streamable HTTP transport as a tower service;
//!   the daemon mounts it at `/mcp` behind its token.
//! - [`bridge`] is `firepit mcp`: MCP over stdio for local clients, each
//!   message passed to the daemon's `/mcp`, so there is one server.
//! - [`Host`] is what the server needs of the daemon (sessions, a session's
//!   tool context, share links, the event log); the daemon implements it.
#![warn(missing_docs)]

pub mod bridge;
mod error;
mod host;
pub mod http;
pub mod notify;
pub mod resources;
mod server;
pub mod tools;

pub use error::Error;
pub use host::{Host, HostError, HostErrorKind};
pub use server::Server;
