//! The streamable HTTP transport: rmcp's [`StreamableHttpService`] (a tower
//! service) over a [`Server`] per MCP session. The daemon mounts it at
//! `/mcp` behind its bearer token; it checks neither the token nor the
//! `Host` itself (the daemon routes by `Host` and checks `Origin`, see
//! `auth::same_origin_only`), so [`service`] turns rmcp's loopback-only
//! `Host` check off.
//!
//! Sessions are stateful (`Mcp-Session-Id`), so a client gets notifications
//! on its `GET` stream; one idle for [`IDLE`] is ended (the client
//! initializes again).

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::{Host, Server};

/// How long an MCP session may go without a request before it is ended.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// The largest request body (a `write_file` of a large file fits).
pub const BODY_LIMIT: usize = 16 << 20;

/// The transport's service; every MCP session made through it ends when
/// `stop` is cancelled.
pub fn service<H: Host>(
    host: Arc<H>,
    stop: CancellationToken,
) -> StreamableHttpService<Server<H>, LocalSessionManager> {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(IDLE);
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(BODY_LIMIT)
        .with_cancellation_token(stop);
    StreamableHttpService::new(
        move || Ok(Server::new(host.clone())),
        Arc::new(sessions),
        config,
    )
}
