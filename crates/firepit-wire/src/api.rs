//! Types of the daemon's HTTP API, shared by the daemon and its clients.
//!
//! Every request and response body of `/v1/...` is one of these types, as JSON.
//! `docs/api/openapi.yaml` describes the same shapes; a test in the daemon keeps
//! the two in step. Streams (exec output, service logs) are newline-delimited
//! JSON: one [`ExecEvent`] or [`LogLine`] per line. Types that mean the same
//! thing in the guest protocol are re-exported from [`crate::guest`], not copied.
//!
//! Request bodies refuse unknown fields (`additionalProperties: false` in the
//! document), and their integer fields take a JSON number with no fraction in
//! either spelling (`2` or `2.0`), as JSON Schema's `integer` does ([`whole`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::guest::{
    Command, DirEntry, ExitStatus, FileKind, FileStat, PortInfo, PtyInfo, RestartPolicy,
    ServiceInfo, ServiceSpec, ServiceState,
};

/// The lifecycle state of a session's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum SessionState {
    /// The machine is being made.
    Creating,
    /// The machine runs and its guest answers.
    Running,
    /// The machine's processes have ended; its files are kept.
    Stopped,
    /// Something went wrong; `error` on the session says what.
    Failed,
}

impl SessionState {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Creating => "creating",
            SessionState::Running => "running",
            SessionState::Stopped => "stopped",
            SessionState::Failed => "failed",
        }
    }

    /// Parses the name used in the API and the store.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "creating" => SessionState::Creating,
            "running" => SessionState::Running,
            "stopped" => SessionState::Stopped,
            "failed" => SessionState::Failed,
            _ => return None,
        })
    }
}

/// Whether a machine reaches the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum NetworkMode {
    /// Egress through NAT on the host (the default).
    #[default]
    Nat,
    /// Loopback only.
    None,
}

/// Resource limits of a machine. Absent fields take the daemon's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Limits {
    /// Memory limit in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option"
    )]
    pub memory_bytes: Option<u64>,
    /// CPU limit in CPUs (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Limit on the number of processes and threads.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option"
    )]
    pub pids: Option<u64>,
    /// Disk limit in bytes: the most the machine's own files (all it writes
    /// over its image) may take; writing past it fails inside with "disk
    /// quota exceeded". Absent on a session made before disk limits: none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option"
    )]
    pub disk_bytes: Option<u64>,
}

/// `POST /v1/sessions`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreateSession {
    /// Image name; the daemon's default image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resource limits.
    #[serde(default, deserialize_with = "object")]
    pub limits: Limits,
    /// Network mode.
    #[serde(default)]
    pub network: NetworkMode,
    /// A forge repository (`owner/name`) to clone into `/workspace`; the
    /// machine reaches it (and only it) through the daemon's forge broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The branch to check out (the repository's default if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Stop the session this many seconds after it starts (its files are
    /// kept; `start` runs it again, without a timeout).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option"
    )]
    pub timeout_secs: Option<u64>,
    /// A name a person gives the session (1 to 64 characters, no control
    /// characters); several sessions may share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels: `key: value` pairs to find sessions by (`GET
    /// /v1/sessions?label=key=value`). Keys are 1 to 63 of `[a-z0-9._-]`
    /// starting with a letter or digit; values at most 128 characters, no
    /// control characters; at most 32 labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `PATCH /v1/sessions/{id}`: what changes; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UpdateSession {
    /// The new name; an empty string takes the name away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The new labels, all of them (they replace the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A session: a machine and what the daemon knows of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Session {
    /// Short id, also the machine's hostname and part of its preview URLs.
    pub id: String,
    /// Image the machine was made from.
    pub image: String,
    /// Lifecycle state.
    pub state: SessionState,
    /// Limits in force (defaults filled in).
    pub limits: Limits,
    /// Network mode.
    pub network: NetworkMode,
    /// Unix time of creation, in seconds.
    pub created_at: i64,
    /// What went wrong, when `state` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix time, in seconds, at which the daemon stops the session (its
    /// timeout); absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_at: Option<i64>,
    /// The name a person gave it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/sessions/{id}/usage`: what a session's machine uses now, read
/// when asked (nothing samples an idle session nobody looks at).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Usage {
    /// Whether the machine runs (a stopped one has no CPU nor memory figures).
    pub running: bool,
    /// When the figures were read, Unix milliseconds.
    pub time_ms: i64,
    /// CPU time the machine's processes used since it started, microseconds:
    /// two readings give the CPU share between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usec: Option<u64>,
    /// Memory in use now, bytes (the cgroup's count: page cache included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Processes and threads now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// What the machine's own files take, bytes (its writable layer), where
    /// the daemon can tell (a machine in the disk pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

/// `GET /v1/usage?ids=a,b,c`: several sessions' usage in one request (a
/// list of sessions reads them all at once, not one request each).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UsageList {
    /// By session id: the usage of each session asked for that could be read.
    pub usage: BTreeMap<String, Usage>,
    /// The ids asked for that name no session (destroyed since they were
    /// listed, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// By session id: why a session's usage could not be read (its machine
    /// going away as it was read, say); such a session is not in `usage`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

/// `GET /v1/host`: what the host has, for clients that choose limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HostInfo {
    /// The host's memory, bytes: no session may have a larger memory limit.
    pub memory_bytes: u64,
    /// Memory available now, bytes.
    pub memory_available_bytes: u64,
    /// CPUs the daemon may use: a larger CPU limit means all of them.
    pub cpus: u32,
    /// Whether sessions get disk limits (the daemon has a disk pool).
    pub disk_limits: bool,
    /// The image a session gets when it names none.
    pub default_image: String,
    /// The limits a session gets where it gives none.
    pub default_limits: Limits,
    /// Whether a forge is configured (sessions may then clone a `repo`).
    pub forge: bool,
}

/// `POST /v1/sessions/{id}/exec`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// What to run.
    pub command: Command,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    /// Working directory inside the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Bytes given to the command's standard input, base64; stdin is closed after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_base64: Option<String>,
    /// Kill the command's whole process tree after this many milliseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option"
    )]
    pub timeout_ms: Option<u64>,
}

/// One line of the NDJSON stream answering an exec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ExecEvent {
    /// Bytes the command wrote to standard output, base64.
    Stdout {
        /// The bytes, base64.
        data: String,
    },
    /// Bytes the command wrote to standard error, base64.
    Stderr {
        /// The bytes, base64.
        data: String,
    },
    /// The command ended; this is the last line.
    Exit {
        /// How it ended.
        status: ExitStatus,
    },
    /// The exec failed after the stream began; this is the last line.
    Error {
        /// What went wrong.
        error: ApiError,
    },
}

/// An error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// A stable error code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `session_not_found`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// `POST /v1/sessions/{id}/files/mkdir`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkdirRequest {
    /// Absolute path inside the machine.
    pub path: String,
    /// Create missing parents too.
    #[serde(default)]
    pub parents: bool,
}

/// `POST /v1/sessions/{id}/files/rename`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// Absolute source path inside the machine.
    pub from: String,
    /// Absolute destination path inside the machine.
    pub to: String,
}

/// `GET /v1/sessions/{id}/files/search`: lines that hold the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SearchResult {
    /// What searched: `rg` (ripgrep: skips hidden files and what `.gitignore`
    /// ignores) or `grep` (ripgrep is not in the machine: every file but
    /// `.git` and `node_modules`).
    pub tool: String,
    /// The matching lines, in the tool's order.
    pub matches: Vec<SearchMatch>,
    /// More matched than `matches` holds.
    pub truncated: bool,
    /// What the tool said on its standard error, if anything (cut short).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One matching line of a [`SearchResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SearchMatch {
    /// The file, an absolute path in the machine.
    pub path: String,
    /// The line number, from 1.
    pub line: u64,
    /// The line (cut at 500 characters).
    pub text: String,
}

/// `GET /v1/sessions/{id}/changes`: what differs from the baseline (the
/// session's start, or its last checkpoint; `since` picks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Changes {
    /// What the files are compared with: `start`, the session's files when
    /// it was made; `checkpoint`, its files just before its last
    /// checkpoint (`checkpoint` names it); `git`, no baseline was recorded
    /// (or the folder is outside what it covers), so this is what differs
    /// from the folder's git repository's `HEAD`; `none`, none of these
    /// (`note` says why). New files git does not ignore are included.
    pub baseline: String,
    /// The checkpoint's name (or id) a `checkpoint` baseline was taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The baselines the session has, that the query's `since` picks
    /// from: `start` (kept for good) and `checkpoint` (its last one's, once
    /// there is one). Empty with `git` and `none`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<String>,
    /// Unix time (seconds) the `start` or `checkpoint` baseline was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<i64>,
    /// The folder compared: the asked one, or its git repository's top
    /// when it is in one (`files`' paths are relative to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The commit compared with (with `git`; absent before the first commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Per file, its diff.
    pub files: Vec<FileChange>,
    /// The diff was cut short (too large, or too many new files).
    pub truncated: bool,
    /// Why there is no baseline, or what was left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One file of [`Changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FileChange {
    /// The file's path relative to the answer's `root`.
    pub path: String,
    /// `added`, `deleted`, `modified` or `renamed`.
    pub status: String,
    /// Its unified diff (`diff --git …` on).
    pub diff: String,
}

/// `GET /v1/sessions/{id}/ports`: a TCP port listening inside the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Port {
    /// The port.
    pub port: u16,
    /// The address it listens on inside the machine (`0.0.0.0`, `127.0.0.1`, `::` …).
    pub addr: std::net::IpAddr,
    /// Its preview URL, `http://<port>-<session>.<domain>:<daemon port>/`.
    pub url: String,
}

/// One chunk of a service's log, as an NDJSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// A control message sent as a text frame on a PTY WebSocket (binary frames carry
/// raw terminal bytes both ways).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum PtyControl {
    /// Client → daemon: the terminal's size changed.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Daemon → client: the PTY's process ended.
    Exit {
        /// How it ended.
        status: ExitStatus,
    },
}

/// An image the daemon can make machines from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Image {
    /// Name, e.g. `default`.
    pub name: String,
    /// Size on disk in bytes.
    pub size_bytes: u64,
    /// Unix time it was built.
    pub created_at: i64,
    /// Where it came from.
    #[serde(default)]
    pub source: ImageSource,
}

/// Where an image came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImageSource {
    /// `recipe` (built from Debian packages), `registry` (pulled), `archive` (imported),
    /// `dockerfile` (built) or `saved` (from a session).
    pub kind: String,
    /// The recipe, the registry reference, the archive's or Dockerfile's path, or the
    /// session it was saved from.
    pub from: String,
    /// The OCI manifest's digest (pulled, imported and built images).
    pub digest: Option<String>,
}

/// `GET /v1/health`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always true when the daemon answers.
    pub ok: bool,
    /// Daemon version.
    pub version: String,
}

/// `POST /v1/sessions/{id}/shares`: a share link for one preview port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CreateShare {
    /// The port inside the machine.
    #[serde(deserialize_with = "whole::number")]
    pub port: u16,
    /// How long the link works, in seconds (default one hour, at most 30 days).
    #[serde(default, deserialize_with = "whole::option")]
    pub ttl_seconds: Option<u64>,
    /// Where the link lands in the app: a local path (`/`, the default,
    /// `/docs?x=1`); the link opens the whole port whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A share link of a preview port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Share {
    /// The share's id (for revoking it).
    pub id: String,
    /// The session it opens.
    pub session: String,
    /// The port it opens.
    pub port: u16,
    /// The link: `http://<port>-<session>.<domain>:<port>/__firepit/share?token=…`.
    pub url: String,
    /// Unix seconds it was made.
    pub created_at: i64,
    /// Unix seconds after which it no longer works.
    pub expires_at: i64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Where the link lands in the app.
    #[serde(default = "root_path")]
    pub path: String,
}

fn root_path() -> String {
    "/".into()
}

/// `POST /v1/sessions/{id}/agent`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentMessage {
    /// What the person says. Sent while a run goes on, it reaches the agent at
    /// its next step.
    pub message: String,
}

/// The answer to an [`AgentMessage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentSent {
    /// `started` (a new run) or `interjected` (delivered to the running one).
    pub status: String,
}

/// The answer to `POST /v1/sessions/{id}/agent/stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentStopped {
    /// Whether a run was going on and was stopped.
    pub stopped: bool,
}

/// `GET /v1/sessions/{id}/agent`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AgentStatus {
    /// Whether a model is configured.
    pub configured: bool,
    /// The provider (`anthropic`, `openai`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Whether a run is going on.
    pub running: bool,
    /// Input tokens of the session so far.
    pub input_tokens: u64,
    /// Output tokens of the session so far.
    pub output_tokens: u64,
    /// Cost of the session so far in USD, when the model's price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// How to configure a model, when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The seq of the session's newest event: follow the log from here to see
    /// only what a message sent now brings.
    pub last_seq: u64,
}

/// A struct read from a JSON object only: serde's derived impls also take a
/// struct from an array of its fields, which the API does not allow.
fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    T::deserialize(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// Integers of request bodies, read from a JSON number with no fraction:
/// `2` and `2.0` are the same integer to JSON Schema, so a client generated
/// from `docs/api/openapi.yaml` may send either. A fraction, a value out of the
/// type's range or anything else is refused with serde's usual message.
pub mod whole {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserializer;
    use serde::de::{Error, Unexpected, Visitor};

    struct Whole<T>(PhantomData<T>);

    impl<T: TryFrom<u64>> Whole<T> {
        fn fit<E: Error>(v: u64, unexp: Unexpected<'_>) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(unexp, &"an integer in range"))
        }
    }

    impl<T: TryFrom<u64>> Visitor<'_> for Whole<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            Self::fit(v, Unexpected::Unsigned(v))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            let u = u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))?;
            Self::fit(u, Unexpected::Signed(v))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // Below 2^64 and whole: the cast is exact.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                Self::fit(v as u64, Unexpected::Float(v))
            } else {
                Err(E::invalid_type(Unexpected::Float(v), &self))
            }
        }
    }

    /// A whole number as `T`.
    pub fn number<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(Whole(PhantomData))
    }

    /// An optional whole number as `T` (`null` is `None`).
    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
        struct Opt<T>(PhantomData<T>);
        impl<'de, T: TryFrom<u64>> Visitor<'de> for Opt<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or null")
            }
            fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }
            fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Option<T>, D2::Error> {
                number(d).map(Some)
            }
        }
        d.deserialize_option(Opt(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_loop_change_leaves_out_but_never_nulls() {
        let c: ClosedLoopChange = serde_json::from_str(r#"{"wake_agent":false}"#).unwrap();
        assert_eq!((c.wake_agent, c.preview_reports), (Some(false), None));
        for bad in [
            r#"{"preview_reports":null}"#,
            r#"{"wake_agent":null,"preview_reports":true}"#,
        ] {
            assert!(
                serde_json::from_str::<ClosedLoopChange>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn integers_take_either_spelling_and_nothing_else() {
        let s: CreateShare = serde_json::from_str(r#"{"port":8000.0,"ttl_seconds":60}"#).unwrap();
        assert_eq!((s.port, s.ttl_seconds), (8000, Some(60)));
        let s: CreateShare = serde_json::from_str(r#"{"port":1,"ttl_seconds":null}"#).unwrap();
        assert_eq!(s.ttl_seconds, None);
        for bad in [
            r#"{"port":80.5}"#,
            r#"{"port":-1}"#,
            r#"{"port":65536}"#,
            r#"{"port":"80"}"#,
            r#"{"port":1e300}"#,
            r#"{"port":80,"ttl":1}"#,
        ] {
            assert!(serde_json::from_str::<CreateShare>(bad).is_err(), "{bad}");
        }
        let l: Limits = serde_json::from_str(r#"{"memory_bytes":1073741824.0,"pids":16}"#).unwrap();
        assert_eq!((l.memory_bytes, l.pids), (Some(1 << 30), Some(16)));
        let l: Limits = serde_json::from_str(r#"{"pids":18446744073709551615}"#).unwrap();
        assert_eq!(l.pids, Some(u64::MAX));
        let err = serde_json::from_str::<CreateSession>(r#"{"limits":[null,null]}"#).unwrap_err();
        assert!(err.to_string().contains("expected a map"), "{err}");
        let c: CreateSession = serde_json::from_str(r#"{"limits":{"cpus":0.5}}"#).unwrap();
        assert_eq!(c.limits.cpus, Some(0.5));
    }

    #[test]
    fn exec_event_lines_are_tagged() {
        let line = serde_json::to_string(&ExecEvent::Stdout {
            data: "aGk=".into(),
        })
        .unwrap();
        assert_eq!(line, r#"{"type":"stdout","data":"aGk="}"#);
        let back: ExecEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back,
            ExecEvent::Stdout {
                data: "aGk=".into()
            }
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<CreateSession>(r#"{"imag":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn session_state_names_round_trip() {
        for s in [
            SessionState::Creating,
            SessionState::Running,
            SessionState::Stopped,
            SessionState::Failed,
        ] {
            assert_eq!(SessionState::parse(s.as_str()), Some(s));
        }
        assert_eq!(SessionState::parse("nope"), None);
    }
}

/// `GET`/`PUT /v1/sessions/{id}/closed-loop`: what the session does with the
/// problems it recognises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ClosedLoopSettings {
    /// Whether a new problem wakes the idle agent (default true; only once
    /// the agent has been talked to in the session). A running agent gets new
    /// problems of the session's services at its next step either way.
    pub wake_agent: bool,
    /// Whether the preview puts its error-reporting script into the app's
    /// HTML pages (default true): their uncaught exceptions and failed
    /// requests become problems with `source=preview`. Off, pages reach the
    /// browser byte for byte as the app sent them.
    #[serde(default = "crate::api::on")]
    pub preview_reports: bool,
}

impl Default for ClosedLoopSettings {
    fn default() -> Self {
        ClosedLoopSettings {
            wake_agent: true,
            preview_reports: true,
        }
    }
}

/// `PUT /v1/sessions/{id}/closed-loop`: the settings to change (those left
/// out stay as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ClosedLoopChange {
    /// See [`ClosedLoopSettings::wake_agent`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "absent_not_null"
    )]
    pub wake_agent: Option<bool>,
    /// See [`ClosedLoopSettings::preview_reports`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "absent_not_null"
    )]
    pub preview_reports: Option<bool>,
}

/// A field a change may leave out (`None`, through `#[serde(default)]`) but
/// not set to `null`, which would read as "leave it" without saying so.
fn absent_not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl ClosedLoopChange {
    /// `settings` with this change made.
    pub fn apply(&self, settings: ClosedLoopSettings) -> ClosedLoopSettings {
        ClosedLoopSettings {
            wake_agent: self.wake_agent.unwrap_or(settings.wake_agent),
            preview_reports: self.preview_reports.unwrap_or(settings.preview_reports),
        }
    }
}

/// `true`: a serde default.
pub(crate) fn on() -> bool {
    true
}
