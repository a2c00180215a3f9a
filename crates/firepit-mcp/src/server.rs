//! [`Server`]: the MCP server of one client connection, an rmcp
//! [`ServerHandler`] over a [`Host`].
//!
//! Log messages (deprecated by the newest protocol revision, see `notify`)
//! carry the notifications, hence `allow(deprecated)`.

#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, Tool,
};
use rmcp::model::{LoggingLevel, SetLevelRequestParams};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::host::Host;
use crate::{notify, resources, tools};

/// What the server tells a client at `initialize`, for its model.
const INSTRUCTIONS: &str = "firepit runs isolated Linux machines (sessions) to build, run and test software in. \
Start with session_list or session_create; every other tool takes the session's id. \
exec runs a command and returns its exit code and output; shell types into the shared terminal `main` the person watches. \
Files: read_file, write_file, edit_file, list_files, find_files, search. \
Services (long-running processes such as dev servers): service_start, service_logs, service_stop; ports lists listening ports with their preview URLs. \
browser_open opens a page in the machine's own browser (http://localhost:PORT reaches the app); browser_snapshot reads it with element refs for browser_click and browser_type; browser_screenshot returns an image. \
problems lists errors firepit noticed by itself (service logs, the browser, tests). \
The resources firepit://sessions/{session}/files/{path}, /logs/{service} and /problems read the same things.";

/// One client connection's MCP server. Cheap to clone; the notifications it
/// started end when the last clone is dropped (the connection closed).
pub struct Server<H> {
    host: Arc<H>,
    state: Arc<State>,
}

impl<H> Clone for Server<H> {
    fn clone(&self) -> Self {
        Server {
            host: self.host.clone(),
            state: self.state.clone(),
        }
    }
}

struct State {
    /// Sessions whose ports and problems this client is told about.
    followed: Mutex<HashSet<String>>,
    /// Resource URIs the client subscribed to.
    subscribed: Arc<Mutex<HashSet<String>>>,
    /// The least severe log message the client wants (`logging/setLevel`).
    level: Arc<AtomicU8>,
    /// Ends the followers.
    stop: CancellationToken,
    _guard: DropGuard,
}

impl<H: Host> Server<H> {
    /// A server for one connection over `host`.
    pub fn new(host: Arc<H>) -> Server<H> {
        let stop = CancellationToken::new();
        Server {
            host,
            state: Arc::new(State {
                followed: Mutex::new(HashSet::new()),
                subscribed: Arc::new(Mutex::new(HashSet::new())),
                level: Arc::new(AtomicU8::new(notify::severity(LoggingLevel::Debug))),
                _guard: stop.clone().drop_guard(),
                stop,
            }),
        }
    }

    /// Starts telling the client about `session`'s ports and problems, once.
    fn follow(&self, session: &str, context: &RequestContext<RoleServer>) {
        let first = self
            .state
            .followed
            .lock()
            .expect("followed")
            .insert(session.to_owned());
        if first {
            notify::spawn(
                self.host.as_ref(),
                session,
                context.peer.clone(),
                self.state.subscribed.clone(),
                self.state.level.clone(),
                self.state.stop.clone(),
            );
        }
    }
}

fn tool(d: tools::Def) -> Tool {
    let schema: JsonObject = match d.schema {
        serde_json::Value::Object(o) => o,
        _ => JsonObject::new(),
    };
    Tool::new(d.name, d.description, Arc::new(schema))
}

impl<H: Host> ServerHandler for Server<H> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_logging()
                .build(),
        )
        .with_server_info(
            Implementation::new("firepit", env!("CARGO_PKG_VERSION")).with_title("firepit"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            tools::definitions().into_iter().map(tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if !tools::exists(name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "there is no tool named {:?}; the tools are: {}",
                    firepit_agent::context::bound_output(name, 100),
                    tools::names()
                ),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        let mut used = None;
        let out = tokio::select! {
            out = tools::call(&self.host, name, args, |s| used = Some(s.to_owned())) => out,
            () = context.ct.cancelled() => tools::Outcome {
                text: "error: cancelled by the client".into(),
                png: None,
                is_error: true,
            },
        };
        if let Some(s) = used {
            self.follow(&s, &context);
        }
        let mut content = vec![ContentBlock::text(out.text)];
        if let Some(png) = out.png {
            content.push(ContentBlock::image(
                base64::engine::general_purpose::STANDARD.encode(png),
                "image/png",
            ));
        }
        let result = if out.is_error {
            CallToolResult::error(content)
        } else {
            CallToolResult::success(content)
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        resources::list(self.host.as_ref()).map(ListResourcesResult::with_all_items)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(&self.host, &request.uri)
            .await
            .map(Into::into)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .level
            .store(notify::severity(request.level), Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = resources::Uri::parse(&request.uri)?;
        let known = self
            .host
            .sessions()
            .map_err(|e| ErrorData::internal_error(e.message, None))?
            .iter()
            .any(|s| s.id == uri.session());
        if !known {
            return Err(ErrorData::resource_not_found(
                format!(
                    "no session {:?}; session_list lists the sessions",
                    uri.session()
                ),
                None,
            ));
        }
        self.state
            .subscribed
            .lock()
            .expect("subscribed")
            .insert(request.uri.clone());
        self.follow(uri.session(), &context);
        Ok(())
    }
}
