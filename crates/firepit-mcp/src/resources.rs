//! Resources: a session's files, its services' logs and its problems, by URI.
//!
//! - `firepit://sessions/{session}/files/{+path}`: a file of the machine by
//!   its absolute path without the first `/` (percent-encoded where a URI
//!   needs it); text, or base64 when it is not UTF-8; at most [`FILE_LIMIT`].
//! - `firepit://sessions/{session}/logs/{service}`: the end of a service's log.
//! - `firepit://sessions/{session}/problems`: what the `problems` tool says.
//!
//! Reads go through the same code as the tools (the agent's `service_logs`,
//! the `problems` tool); a file is read whole through the guest. A URI that
//! names nothing is `-32002` (resource not found) with what to fix.

use std::sync::Arc;

use base64::Engine;
use rmcp::ErrorData;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use serde_json::{Map, Value};

use crate::host::Host;
use crate::tools;

/// The largest file a resource read returns.
pub const FILE_LIMIT: u64 = 4 << 20;

const PREFIX: &str = "firepit://sessions/";

/// A resource URI, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// A file.
    File {
        /// The session.
        session: String,
        /// Its absolute path.
        path: String,
    },
    /// A service's log.
    Logs {
        /// The session.
        session: String,
        /// The service.
        service: String,
    },
    /// The session's problems.
    Problems {
        /// The session.
        session: String,
    },
}

/// The problems resource of `session`.
pub fn problems_uri(session: &str) -> String {
    format!("{PREFIX}{session}/problems")
}

/// The log resource of a service.
pub fn logs_uri(session: &str, service: &str) -> String {
    format!("{PREFIX}{session}/logs/{}", encode(service))
}

/// Percent-encodes what may not stand in a URI path segment as it is.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes percent-encoding; `None` for a bad escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn not_found(uri: &str, why: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!(
            "{why}: {}. The resources are firepit://sessions/{{session}}/files/{{path}}, …/logs/{{service}} and …/problems",
            firepit_agent::context::bound_output(uri, 200)
        ),
        None,
    )
}

impl Uri {
    /// Parses a resource URI.
    pub fn parse(uri: &str) -> Result<Uri, ErrorData> {
        let rest = uri
            .strip_prefix(PREFIX)
            .ok_or_else(|| not_found(uri, "not a firepit resource"))?;
        let (session, rest) = rest
            .split_once('/')
            .ok_or_else(|| not_found(uri, "no resource of the session named"))?;
        if session.is_empty()
            || !session
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(not_found(uri, "not a session id"));
        }
        let session = session.to_owned();
        let bad = || not_found(uri, "a bad percent-escape");
        if rest == "problems" {
            Ok(Uri::Problems { session })
        } else if let Some(p) = rest.strip_prefix("files/") {
            let path = format!("/{}", decode(p).ok_or_else(bad)?);
            if path.split('/').any(|c| c == "..") || path.contains('\0') {
                return Err(not_found(uri, "paths may not contain `..`"));
            }
            Ok(Uri::File { session, path })
        } else if let Some(s) = rest.strip_prefix("logs/") {
            let service = decode(s).ok_or_else(bad)?;
            if service.is_empty() || service.contains('/') {
                return Err(not_found(uri, "not a service name"));
            }
            Ok(Uri::Logs { session, service })
        } else {
            Err(not_found(uri, "no such resource"))
        }
    }

    /// The session it belongs to.
    pub fn session(&self) -> &str {
        match self {
            Uri::File { session, .. } | Uri::Logs { session, .. } | Uri::Problems { session } => {
                session
            }
        }
    }
}

/// The resource templates.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{PREFIX}{{session}}/files/{{+path}}"), "file")
            .with_description("A file of a session's machine, by its absolute path (without the first '/'), e.g. firepit://sessions/abc123/files/workspace/app.py."),
        ResourceTemplate::new(format!("{PREFIX}{{session}}/logs/{{service}}"), "service log")
            .with_description("The end of the log of a service of a session (service_start starts one). Subscribe to hear when a problem shows in it.")
            .with_mime_type("text/plain"),
        ResourceTemplate::new(format!("{PREFIX}{{session}}/problems"), "problems")
            .with_description("The problems firepit found in a session (errors in service logs, the browser, failing tests). Subscribe to hear of new ones.")
            .with_mime_type("text/plain"),
    ]
}

/// The resources to list: each running session's problems.
pub fn list<H: Host>(host: &H) -> Result<Vec<Resource>, ErrorData> {
    let sessions = host
        .sessions()
        .map_err(|e| ErrorData::internal_error(e.message, None))?;
    Ok(sessions
        .into_iter()
        .filter(|s| s.state == firepit_wire::api::SessionState::Running)
        .map(|s| {
            Resource::new(problems_uri(&s.id), format!("problems of session {}", s.id))
                .with_mime_type("text/plain")
        })
        .collect())
}

/// Reads a resource.
pub async fn read<H: Host>(host: &Arc<H>, raw: &str) -> Result<ReadResourceResult, ErrorData> {
    let uri = Uri::parse(raw)?;
    let gone = |e: crate::HostError| not_found(raw, &e.message);
    match &uri {
        Uri::File { session, path } => {
            let ctx = host.tools(session).await.map_err(gone)?;
            let bytes = ctx
                .guest
                .read_file_all(path, FILE_LIMIT)
                .await
                .map_err(|e| not_found(raw, &format!("reading {path}: {e}")))?;
            let contents = match std::str::from_utf8(&bytes) {
                Ok(text) => ResourceContents::text(text, raw).with_mime_type("text/plain"),
                Err(_) => ResourceContents::blob(
                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                    raw,
                )
                .with_mime_type("application/octet-stream"),
            };
            Ok(ReadResourceResult::new(vec![contents]))
        }
        Uri::Logs { session, service } => {
            let mut args = Map::new();
            args.insert("session".into(), Value::String(session.clone()));
            args.insert("name".into(), Value::String(service.clone()));
            text(host, "service_logs", args, raw).await
        }
        Uri::Problems { session } => {
            let mut args = Map::new();
            args.insert("session".into(), Value::String(session.clone()));
            text(host, "problems", args, raw).await
        }
    }
}

/// A resource read as the tool `name` answers.
async fn text<H: Host>(
    host: &Arc<H>,
    name: &str,
    args: Map<String, Value>,
    raw: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let out = tools::call(host, name, args, |_| {}).await;
    if out.is_error {
        return Err(not_found(raw, &out.text));
    }
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(out.text, raw).with_mime_type("text/plain"),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse() {
        assert_eq!(
            Uri::parse("firepit://sessions/ab12/files/workspace/a%20b.py").unwrap(),
            Uri::File {
                session: "ab12".into(),
                path: "/workspace/a b.py".into()
            }
        );
        assert_eq!(
            Uri::parse(&logs_uri("ab12", "web app")).unwrap(),
            Uri::Logs {
                session: "ab12".into(),
                service: "web app".into()
            }
        );
        assert_eq!(
            Uri::parse(&problems_uri("ab12")).unwrap(),
            Uri::Problems {
                session: "ab12".into()
            }
        );
        for bad in [
            "file:///etc/passwd",
            "firepit://sessions/ab12",
            "firepit://sessions/../files/etc",
            "firepit://sessions/ab12/files/workspace/../../etc/shadow",
            "firepit://sessions/ab12/files/%2e%2e/etc",
            "firepit://sessions/ab12/files/x%zz",
            "firepit://sessions/ab12/files/x%ff",
            "firepit://sessions/ab12/logs/a%2Fb",
            "firepit://sessions/ab12/other",
        ] {
            let e = Uri::parse(bad).unwrap_err();
            assert_eq!(e.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND, "{bad}");
        }
    }
}
