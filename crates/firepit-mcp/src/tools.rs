//! The MCP tool set: firepit's session tools, then every tool of firepit's
//! agent with a `session` argument added.
//!
//! The agent's tools are not copied: their definitions come from
//! [`firepit_agent::tools::definitions`] and a call goes to
//! [`firepit_agent::tools::call`] with the session's [`ToolContext`] (the one
//! the agent uses), so output bounds, cut marks, error texts and the browser
//! are the same for both. `ask_user` is left out (an MCP client's model
//! talks to its person itself).
//!
//! Every failure a model can do something about (an unknown or stopped
//! session, arguments of the wrong shape, a command that fails in the
//! machine) is a result with `isError` and a message that says what to do, so
//! the client hands it to its model; only a tool name that does not exist is
//! a protocol error (`-32602`), as the protocol asks.

use std::collections::BTreeMap;
use std::sync::Arc;

use firepit_agent::ToolContext;
use firepit_agent::context::bound_output;
use firepit_agent::message::ToolCall;
use firepit_wire::api::{CreateSession, Limits, NetworkMode, Session};
use firepit_wire::events::EventKind;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::host::{Host, HostError};

/// The tools of the agent an MCP client does not get.
const LEFT_OUT: &[&str] = &[firepit_agent::tools::ASK_USER];

/// Longest answer of a session tool (a long session list, many problems).
const OUTPUT_LIMIT: usize = 16 * 1024;

/// One tool: its name, its description for a model, its input schema.
#[derive(Debug, Clone)]
pub struct Def {
    /// The name.
    pub name: &'static str,
    /// What it does, for a model.
    pub description: String,
    /// Its arguments' JSON schema (an object schema).
    pub schema: Value,
}

/// What a call gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the model reads.
    pub text: String,
    /// A PNG the call made (the browser's screenshot).
    pub png: Option<Vec<u8>>,
    /// Whether the call failed.
    pub is_error: bool,
}

impl Outcome {
    fn ok(text: impl Into<String>) -> Outcome {
        Outcome {
            text: bound_output(&text.into(), OUTPUT_LIMIT),
            png: None,
            is_error: false,
        }
    }

    fn error(text: impl Into<String>) -> Outcome {
        Outcome {
            text: bound_output(&format!("error: {}", text.into()), OUTPUT_LIMIT),
            png: None,
            is_error: true,
        }
    }
}

fn session_prop() -> Value {
    json!({"type": "string", "description": "The session's id, from session_create or session_list."})
}

/// An object schema of `session` and the properties `more`, of which
/// `required` are needed besides `session`.
fn session_schema(more: Value, required: &[&str]) -> Value {
    let mut props = Map::new();
    props.insert("session".into(), session_prop());
    if let Value::Object(m) = more {
        props.extend(m);
    }
    let mut req = vec!["session"];
    req.extend_from_slice(required);
    json!({"type": "object", "properties": props, "required": req, "additionalProperties": false})
}

/// The session tools' definitions.
fn session_defs() -> Vec<Def> {
    let only_session = session_schema(json!({}), &[]);
    vec![
        Def {
            name: "session_create",
            description: "Create a firepit session: an isolated Linux machine (its own root file system from an image, processes, network) to build, run and test software in. Returns the session, whose id every other tool takes. The machine starts at once; /workspace is the working directory (with the repository cloned there when `repo` is given).".into(),
            schema: json!({"type": "object", "properties": {
                "image": {"type": "string", "description": "Image to make the machine from (e.g. 'default', 'minimal', 'browser'); the daemon's default when absent."},
                "memory_mb": {"type": "integer", "minimum": 1, "description": "Memory limit in MiB; the daemon's default when absent."},
                "cpus": {"type": "number", "exclusiveMinimum": 0, "description": "CPU limit in CPUs (fractions allowed)."},
                "pids": {"type": "integer", "minimum": 1, "description": "Limit on processes and threads."},
                "disk_mb": {"type": "integer", "minimum": 1, "description": "Limit on what the machine may write, in MiB."},
                "network": {"type": "string", "enum": ["nat", "none"], "description": "'nat' (default): outbound network; 'none': loopback only."},
                "repo": {"type": "string", "description": "A forge repository 'owner/name' to clone into /workspace (when the daemon has a forge configured)."},
                "branch": {"type": "string", "description": "Branch to check out; the repository's default when absent."},
                "name": {"type": "string", "minLength": 1, "maxLength": 64, "description": "A name for people to know the session by (1 to 64 characters, shown in the web UI and by session_list); the tools still take the id."},
                "labels": {"type": "object", "maxProperties": 32, "additionalProperties": {"type": "string", "maxLength": 128}, "description": "Labels, key to value (at most 32): a key is 1 to 63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit; a value is at most 128 characters. The API finds sessions by label."}
            }, "additionalProperties": false}),
        },
        Def {
            name: "session_list",
            description: "List the firepit sessions: id, name and labels, image, state (running, stopped, failed), limits and creation time.".into(),
            schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        },
        Def {
            name: "session_stop",
            description: "Stop a session's machine. Its files are kept; session_start runs it again. Processes and services end.".into(),
            schema: only_session.clone(),
        },
        Def {
            name: "session_start",
            description: "Start a stopped session's machine again, with the files it had.".into(),
            schema: only_session.clone(),
        },
        Def {
            name: "session_destroy",
            description: "Destroy a session: its machine, its files and its share links are gone for good.".into(),
            schema: only_session.clone(),
        },
        Def {
            name: "share_link",
            description: "Make a share link to a port's preview: a URL anyone can open without the firepit token, until it expires. Use `ports` for the owner's own preview URLs.".into(),
            schema: session_schema(json!({
                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "The port in the machine."},
                "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": 2592000, "description": "How long the link works; default 3600."}
            }), &["port"]),
        },
        Def {
            name: "checkpoint_create",
            description: "Save a session's files as a checkpoint, to come back to with checkpoint_restore or to branch from with session_fork. Make one before a risky change (a migration, a large refactor, a dependency upgrade). It keeps files only, not running processes; the machine pauses for a moment and goes on. Returns the checkpoint's id (cp-…).".into(),
            schema: session_schema(json!({
                "name": {"type": "string", "maxLength": 200, "description": "A short name saying what state the files are in (e.g. 'before the migration'); optional."}
            }), &[]),
        },
        Def {
            name: "checkpoint_list",
            description: "List a session's checkpoints, oldest first: id, name, when it was made (unix ms), size, who made it (`user`, or `agent` for firepit's own agent's automatic ones) and the checkpoint it came after.".into(),
            schema: only_session,
        },
        Def {
            name: "checkpoint_restore",
            description: "Return a session's files to a checkpoint: every change since it is lost (make a checkpoint first to keep them). The machine restarts: running commands and shells end, services that ran start again. The session keeps its id.".into(),
            schema: session_schema(json!({
                "checkpoint": {"type": "string", "description": "The checkpoint's id (cp-…), from checkpoint_create or checkpoint_list."}
            }), &["checkpoint"]),
        },
        Def {
            name: "session_fork",
            description: "Make a new session whose files are a copy of a session's checkpoint, or of its files now when `from` is absent; it runs beside the original, which is left as it is, with a copy of the services the original keeps (those running are started). Use it to try two approaches side by side. Returns the new session, whose id the other tools take.".into(),
            schema: session_schema(json!({
                "from": {"type": "string", "description": "The checkpoint (cp-…) to start from; absent: the session's files now."}
            }), &[]),
        },
        Def {
            name: "problems",
            description: "The problems firepit found in a session by itself: errors and stack traces in service logs, uncaught exceptions and failed requests in the browser, failing test runs. Each with its source, a summary, how often it was seen and its detail.".into(),
            schema: session_schema(json!({
                "since": {"type": "integer", "minimum": 0, "description": "Only problems after this event number (the `seq` a previous answer ended with)."}
            }), &[]),
        },
    ]
}

/// The agent's tools an MCP client gets, with `session` added to each.
fn agent_defs() -> Vec<Def> {
    firepit_agent::tools::definitions()
        .into_iter()
        .filter(|d| !LEFT_OUT.contains(&d.name))
        .map(|d| {
            let mut schema = d.schema.clone();
            if let Some(o) = schema.as_object_mut() {
                let props = o
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(p) = props.as_object_mut() {
                    p.insert("session".into(), session_prop());
                }
                let req = o
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(r) = req.as_array_mut() {
                    r.insert(0, Value::String("session".into()));
                }
            }
            Def {
                name: d.name,
                description: format!("{} (In the session's machine.)", d.description),
                schema,
            }
        })
        .collect()
}

/// Every tool, session tools first, in a stable order.
pub fn definitions() -> Vec<Def> {
    let mut d = session_defs();
    d.extend(agent_defs());
    d
}

/// Whether `name` is one of the agent's tools that MCP clients get.
fn is_agent_tool(name: &str) -> bool {
    !LEFT_OUT.contains(&name)
        && firepit_agent::tools::definitions()
            .iter()
            .any(|d| d.name == name)
}

/// Whether a tool of this name exists.
pub fn exists(name: &str) -> bool {
    session_defs().iter().any(|d| d.name == name) || is_agent_tool(name)
}

/// The names of all tools, for an error message.
pub fn names() -> String {
    definitions()
        .iter()
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The schema of `name`, for an error message.
fn schema_of(name: &str) -> String {
    definitions()
        .into_iter()
        .find(|d| d.name == name)
        .map(|d| d.schema.to_string())
        .unwrap_or_default()
}

/// Parses arguments into `T`, or says what is wrong with them.
fn parse<T: for<'de> Deserialize<'de>>(name: &str, args: &Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(args.clone())).map_err(|e| {
        format!(
            "wrong arguments for {name}: {e}. The schema is {}",
            schema_of(name)
        )
    })
}

/// The `session` argument of a call.
fn session_arg(name: &str, args: &Map<String, Value>) -> Result<String, String> {
    match args.get("session") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(other) => Err(format!(
            "`session` must be a session id (a string), not {}; session_list lists them",
            bound_output(&other.to_string(), 100)
        )),
        None => Err(format!(
            "{name} needs `session`, the id of a session: create one with session_create or find one with session_list"
        )),
    }
}

fn host_error(e: HostError) -> String {
    match e.kind {
        crate::HostErrorKind::NotFound => format!(
            "{}. session_list lists the sessions; session_create makes one",
            e.message
        ),
        crate::HostErrorKind::NotRunning => format!("{}. session_start starts it again", e.message),
        _ => e.message,
    }
}

/// A failure of a checkpoint tool: what the model can do about it.
fn checkpoint_error(e: HostError) -> String {
    match e.kind {
        // An unknown checkpoint of a known session.
        crate::HostErrorKind::NotFound if e.message.contains("checkpoint") => format!(
            "{}. checkpoint_list lists the session's checkpoints",
            e.message
        ),
        crate::HostErrorKind::Conflict => format!(
            "{}. The session's files cannot be checkpointed here; keep the work with git or by copying files instead",
            e.message
        ),
        _ => host_error(e),
    }
}

/// Whole MiB → bytes, refusing what does not fit.
fn mib(name: &str, v: Option<u64>) -> Result<Option<u64>, String> {
    v.map(|m| {
        m.checked_mul(1 << 20)
            .ok_or_else(|| format!("{name} is too large"))
    })
    .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    image: Option<String>,
    memory_mb: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
    disk_mb: Option<u64>,
    network: Option<NetworkMode>,
    repo: Option<String>,
    branch: Option<String>,
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionArgs {
    #[allow(dead_code)]
    session: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareArgs {
    #[allow(dead_code)]
    session: String,
    port: u16,
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProblemsArgs {
    #[allow(dead_code)]
    session: String,
    since: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointArgs {
    #[allow(dead_code)]
    session: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreArgs {
    #[allow(dead_code)]
    session: String,
    checkpoint: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForkArgs {
    #[allow(dead_code)]
    session: String,
    from: Option<String>,
}

fn show(s: &Session) -> String {
    serde_json::to_string_pretty(s).unwrap_or_default()
}

/// Runs the tool `name` (which [`exists`]). Never panics; every failure is an
/// [`Outcome`] with `is_error`. `used` is told the session a call acts in.
pub async fn call<H: Host>(
    host: &Arc<H>,
    name: &str,
    args: Map<String, Value>,
    used: impl FnOnce(&str),
) -> Outcome {
    if name == "session_create" {
        return match create(host, &args).await {
            Ok(s) => {
                used(&s.id);
                Outcome::ok(format!(
                    "{}\nThe machine runs; pass session={:?} to the other tools.",
                    show(&s),
                    s.id
                ))
            }
            Err(e) => Outcome::error(e),
        };
    }
    if name == "session_list" {
        return match parse::<NoArgs>(name, &args).map(|_| host.sessions()) {
            Ok(Ok(list)) if list.is_empty() => {
                Outcome::ok("there are no sessions; session_create makes one")
            }
            Ok(Ok(list)) => Outcome::ok(serde_json::to_string_pretty(&list).unwrap_or_default()),
            Ok(Err(e)) => Outcome::error(host_error(e)),
            Err(e) => Outcome::error(e),
        };
    }
    let session = match session_arg(name, &args) {
        Ok(s) => s,
        Err(e) => return Outcome::error(e),
    };
    let r = match name {
        "session_stop" | "session_start" | "session_destroy" => {
            match parse::<SessionArgs>(name, &args) {
                Err(e) => Err(e),
                Ok(_) => match name {
                    "session_stop" => host.stop_session(&session).await.map(|s| show(&s)),
                    "session_start" => host.start_session(&session).await.map(|s| {
                        used(&session);
                        show(&s)
                    }),
                    _ => host
                        .destroy_session(&session)
                        .await
                        .map(|()| format!("session {session} is destroyed")),
                }
                .map_err(host_error),
            }
        }
        "share_link" => match parse::<ShareArgs>(name, &args) {
            Err(e) => Err(e),
            Ok(a) if a.port == 0 => Err("port must be 1 to 65535".into()),
            Ok(a) => host
                .share(&session, a.port, a.ttl_seconds)
                .map(|s| {
                    format!(
                        "{}\nexpires at unix time {} (share id {})",
                        s.url, s.expires_at, s.id
                    )
                })
                .map_err(host_error),
        },
        "checkpoint_create" => match parse::<CheckpointArgs>(name, &args) {
            Err(e) => Err(e),
            Ok(a) => host
                .checkpoint(&session, a.name)
                .await
                .map(|cp| {
                    format!(
                        "checkpoint {} made ({} bytes above the image)\n{}\ncheckpoint_restore with checkpoint={:?} returns the files to it; session_fork with from={:?} branches from it.",
                        cp.id,
                        cp.size_bytes,
                        serde_json::to_string_pretty(&cp).unwrap_or_default(),
                        cp.id,
                        cp.id
                    )
                })
                .map_err(checkpoint_error),
        },
        "checkpoint_list" => match parse::<SessionArgs>(name, &args) {
            Err(e) => Err(e),
            Ok(_) => host
                .checkpoints(&session)
                .await
                .map(|list| {
                    if list.is_empty() {
                        format!("session {session} has no checkpoints; checkpoint_create makes one")
                    } else {
                        serde_json::to_string_pretty(&list).unwrap_or_default()
                    }
                })
                .map_err(checkpoint_error),
        },
        "checkpoint_restore" => match parse::<RestoreArgs>(name, &args) {
            Err(e) => Err(e),
            Ok(a) => host
                .restore(&session, &a.checkpoint)
                .await
                .map(|s| {
                    used(&session);
                    format!(
                        "session {session} has the files of {} again; what ran in it started again.\n{}",
                        a.checkpoint,
                        show(&s)
                    )
                })
                .map_err(checkpoint_error),
        },
        "session_fork" => match parse::<ForkArgs>(name, &args) {
            Err(e) => Err(e),
            Ok(a) => host
                .fork(&session, a.from.as_deref())
                .await
                .map(|s| {
                    used(&s.id);
                    format!(
                        "{}\nThe fork runs beside {session}; pass session={:?} to the other tools to work in it.",
                        show(&s),
                        s.id
                    )
                })
                .map_err(checkpoint_error),
        },
        "problems" => match parse::<ProblemsArgs>(name, &args) {
            Err(e) => Err(e),
            Ok(a) => problems(host.as_ref(), &session, a.since.unwrap_or(0)).map_err(host_error),
        },
        _ => return agent_call(host, name, &session, args, used).await,
    };
    match r {
        Ok(t) => Outcome::ok(t),
        Err(e) => Outcome::error(e),
    }
}

async fn create<H: Host>(host: &Arc<H>, args: &Map<String, Value>) -> Result<Session, String> {
    let a: CreateArgs = parse("session_create", args)?;
    let req = CreateSession {
        image: a.image,
        limits: Limits {
            memory_bytes: mib("memory_mb", a.memory_mb)?,
            cpus: a.cpus,
            pids: a.pids,
            disk_bytes: mib("disk_mb", a.disk_mb)?,
        },
        network: a.network.unwrap_or_default(),
        repo: a.repo,
        branch: a.branch,
        timeout_secs: None,
        name: a.name,
        labels: a.labels,
    };
    host.create_session(req).await.map_err(host_error)
}

/// The problems of a session's log after `since`, newest last.
fn problems<H: Host>(host: &H, session: &str, since: u64) -> Result<String, HostError> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut cursor = since;
    loop {
        let page = host.events(session, cursor, PAGE)?;
        let n = page.len();
        for e in page {
            cursor = e.seq;
            if let EventKind::Problem {
                source,
                kind,
                summary,
                detail,
                count,
            } = e.kind
            {
                out.push(format!(
                    "[seq {}] {source} {kind} (seen {count}×): {summary}\n{}",
                    e.seq,
                    bound_output(&detail, 1500)
                ));
            }
        }
        if n < PAGE {
            break;
        }
    }
    Ok(if out.is_empty() {
        format!("no problems found in session {session} (up to event {cursor})")
    } else {
        // The newest matter most: keep the end when it is long.
        let text = out.join("\n\n");
        let text = if text.len() > OUTPUT_LIMIT {
            format!(
                "[older problems left out]\n{}",
                &text[text.ceil_char_boundary(text.len() - OUTPUT_LIMIT + 100)..]
            )
        } else {
            text
        };
        format!("{text}\n\nlast event: {cursor}")
    })
}

/// One of the agent's tools, through the agent's own code.
async fn agent_call<H: Host>(
    host: &Arc<H>,
    name: &str,
    session: &str,
    mut args: Map<String, Value>,
    used: impl FnOnce(&str),
) -> Outcome {
    let ctx: ToolContext = match host.tools(session).await {
        Ok(c) => c,
        Err(e) => return Outcome::error(host_error(e)),
    };
    used(session);
    args.remove("session");
    let call = ToolCall {
        id: "mcp".into(),
        name: name.to_owned(),
        arguments: Value::Object(args).to_string(),
    };
    let out = firepit_agent::tools::call(&ctx, &call).await;
    Outcome {
        text: out.output,
        png: out.png,
        is_error: out.is_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_agent_tool_but_ask_user_takes_a_session() {
        let defs = definitions();
        for d in firepit_agent::tools::definitions() {
            let ours = defs.iter().find(|x| x.name == d.name);
            if d.name == firepit_agent::tools::ASK_USER {
                assert!(ours.is_none());
                continue;
            }
            let ours = ours.unwrap_or_else(|| panic!("{} is missing", d.name));
            assert_eq!(ours.schema["required"][0], "session", "{}", d.name);
            assert_eq!(ours.schema["properties"]["session"]["type"], "string");
            assert!(ours.description.starts_with(d.description));
        }
        for name in [
            "session_create",
            "session_list",
            "session_destroy",
            "checkpoint_create",
            "checkpoint_list",
            "checkpoint_restore",
            "session_fork",
            "exec",
            "browser_screenshot",
        ] {
            assert!(exists(name), "{name}");
        }
        assert!(!exists("ask_user"));
        assert!(!exists("nope"));
    }

    #[test]
    fn names_are_unique_and_schemas_are_objects() {
        let defs = definitions();
        let mut names: Vec<_> = defs.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), defs.len());
        for d in &defs {
            assert_eq!(d.schema["type"], "object", "{}", d.name);
        }
    }

    #[test]
    fn session_tools_need_their_session_first() {
        let defs = definitions();
        let schema = |n: &str| defs.iter().find(|d| d.name == n).unwrap().schema.clone();
        assert_eq!(schema("share_link")["required"], json!(["session", "port"]));
        assert_eq!(
            schema("checkpoint_restore")["required"],
            json!(["session", "checkpoint"])
        );
        let fork = schema("session_fork");
        assert_eq!(fork["required"], json!(["session"]));
        assert_eq!(fork["properties"]["from"]["type"], "string");
        assert_eq!(fork["additionalProperties"], false);
        assert_eq!(
            schema("checkpoint_list")["properties"]
                .as_object()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn sizes_in_mib_refuse_overflow() {
        assert_eq!(mib("m", Some(2)).unwrap(), Some(2 << 20));
        assert_eq!(mib("m", None).unwrap(), None);
        assert!(mib("m", Some(u64::MAX)).is_err());
    }
}
