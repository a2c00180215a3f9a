//! envd's messages (`process.proto`, `filesystem.proto` in E2B's `spec/envd`)
//! in the proto3 JSON mapping the SDK's codec writes: lowerCamelCase field
//! names (the proto names accepted too), `bytes` as base64, 64-bit integers
//! as strings, enums by name (numbers accepted), a oneof as whichever of its
//! fields is present, default values left out. Unknown fields are ignored,
//! as a newer SDK may send some.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `bytes` fields: standard base64 out; standard or URL-safe, padded or not, in.
pub mod b64 {
    use super::*;

    /// Writes `b` as standard base64.
    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    /// Reads base64 of either alphabet.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map_err(serde::de::Error::custom)
    }

    /// Decodes base64 of either alphabet, padded or not.
    pub fn decode(s: &str) -> Result<Bytes, base64::DecodeError> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let t = s.trim_end_matches('=');
        STANDARD_NO_PAD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t))
            .map(Bytes::from)
    }

    /// An optional `bytes` field.
    pub mod option {
        use super::*;

        /// Reads an optional base64 field.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| decode(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// A `uint32` as a number or a string.
fn u32_any<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        N(u32),
        S(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(0),
        Some(N::N(n)) => Ok(n),
        Some(N::S(s)) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn opt_u32_any<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    u32_any(d).map(Some)
}

fn i64_str<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

// ---- process ----

/// `process.ProcessConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessConfig {
    /// The program.
    pub cmd: String,
    /// Its arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment added for it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// `process.PTY.Size`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct PtySize {
    /// Columns.
    #[serde(deserialize_with = "u32_any")]
    pub cols: u32,
    /// Rows.
    #[serde(deserialize_with = "u32_any")]
    pub rows: u32,
}

/// `process.PTY`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pty {
    /// Its size.
    pub size: Option<PtySize>,
}

/// `process.ProcessSelector`: a pid or a tag.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProcessSelector {
    /// By pid.
    #[serde(deserialize_with = "opt_u32_any")]
    pub pid: Option<u32>,
    /// By tag.
    pub tag: Option<String>,
}

/// `process.StartRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StartRequest {
    /// What to run.
    pub process: Option<ProcessConfig>,
    /// A terminal for it, when present.
    pub pty: Option<Pty>,
    /// A tag to find it by.
    pub tag: Option<String>,
    /// Whether stdin is kept open for `SendInput`.
    pub stdin: Option<bool>,
}

/// `process.ConnectRequest`, `CloseStdinRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SelectRequest {
    /// The process.
    pub process: Option<ProcessSelector>,
}

/// `process.UpdateRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpdateRequest {
    /// The process.
    pub process: Option<ProcessSelector>,
    /// Its terminal's new size.
    pub pty: Option<Pty>,
}

/// `process.ProcessInput`: stdin or terminal bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProcessInput {
    /// Bytes for stdin.
    #[serde(deserialize_with = "b64::option::deserialize")]
    pub stdin: Option<Bytes>,
    /// Bytes typed into the terminal.
    #[serde(deserialize_with = "b64::option::deserialize")]
    pub pty: Option<Bytes>,
}

/// `process.SendInputRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SendInputRequest {
    /// The process.
    pub process: Option<ProcessSelector>,
    /// The input.
    pub input: Option<ProcessInput>,
}

/// `process.StreamInputRequest`: its start, data or keepalive.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StreamInputRequest {
    /// The first message: which process.
    pub start: Option<SelectRequest>,
    /// Input.
    pub data: Option<StreamInputData>,
    /// A keepalive (ignored).
    pub keepalive: Option<serde_json::Value>,
}

/// `process.StreamInputRequest.DataEvent`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StreamInputData {
    /// The input.
    pub input: Option<ProcessInput>,
}

/// `process.Signal`, by name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signal {
    /// None given.
    #[default]
    Unspecified,
    /// `SIGTERM`.
    Term,
    /// `SIGKILL`.
    Kill,
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(match &v {
            serde_json::Value::String(s) if s == "SIGNAL_SIGTERM" => Signal::Term,
            serde_json::Value::String(s) if s == "SIGNAL_SIGKILL" => Signal::Kill,
            serde_json::Value::Number(n) if n.as_u64() == Some(15) => Signal::Term,
            serde_json::Value::Number(n) if n.as_u64() == Some(9) => Signal::Kill,
            _ => Signal::Unspecified,
        })
    }
}

/// `process.SendSignalRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SendSignalRequest {
    /// The process.
    pub process: Option<ProcessSelector>,
    /// The signal.
    pub signal: Signal,
}

/// `process.ProcessInfo`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// What it runs.
    pub config: ProcessConfig,
    /// Its pid.
    pub pid: u32,
    /// Its tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `process.ListResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResponse {
    /// The processes started through envd that still run.
    pub processes: Vec<ProcessInfo>,
}

/// `process.ProcessEvent.EndEvent`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndEvent {
    /// The exit code (`-1` when a signal ended it).
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub exit_code: i32,
    /// Whether it exited by itself.
    #[serde(skip_serializing_if = "is_false")]
    pub exited: bool,
    /// How it ended, in words (`exit status 1`, `signal: killed`).
    pub status: String,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// `process.ProcessEvent.DataEvent`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DataEvent {
    /// Standard output.
    Stdout(#[serde(with = "b64")] Bytes),
    /// Standard error.
    Stderr(#[serde(with = "b64")] Bytes),
    /// Terminal output.
    Pty(#[serde(with = "b64")] Bytes),
}

/// `process.ProcessEvent`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessEvent {
    /// The process started.
    Start {
        /// Its pid.
        pid: u32,
    },
    /// Output.
    Data(DataEvent),
    /// The end.
    End(EndEvent),
    /// Nothing happened for a while.
    Keepalive {},
}

/// `process.StartResponse` and `ConnectResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessEventMessage {
    /// The event.
    pub event: ProcessEvent,
}

// ---- filesystem ----

/// A request naming one path (`Stat`, `MakeDir`, `Remove`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PathRequest {
    /// The path.
    pub path: String,
}

/// `filesystem.MoveRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MoveRequest {
    /// From.
    pub source: String,
    /// To.
    pub destination: String,
}

/// `filesystem.ListDirRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListDirRequest {
    /// The directory.
    pub path: String,
    /// How deep to go (0 and 1: the directory's own entries).
    #[serde(deserialize_with = "u32_any")]
    pub depth: u32,
}

/// `filesystem.WatchDirRequest` and `CreateWatcherRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WatchRequest {
    /// The directory.
    pub path: String,
    /// Whether subdirectories are watched too.
    pub recursive: bool,
}

/// `GetWatcherEventsRequest`, `RemoveWatcherRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WatcherRequest {
    /// The watcher.
    #[serde(alias = "watcher_id")]
    pub watcher_id: String,
}

/// `filesystem.FileType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FileType {
    /// Neither (a symlink, a socket, a device).
    #[serde(rename = "FILE_TYPE_UNSPECIFIED")]
    Unspecified,
    /// A regular file.
    #[serde(rename = "FILE_TYPE_FILE")]
    File,
    /// A directory.
    #[serde(rename = "FILE_TYPE_DIRECTORY")]
    Directory,
}

/// `filesystem.EntryInfo`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    /// The file name.
    pub name: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: FileType,
    /// Its whole path.
    pub path: String,
    /// Size in bytes.
    #[serde(serialize_with = "i64_str", skip_serializing_if = "is_zero_i64")]
    pub size: i64,
    /// `st_mode` bits (type and permissions).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mode: u32,
    /// Permissions as `ls -l` writes them.
    pub permissions: String,
    /// Modification time, RFC 3339.
    pub modified_time: String,
}

/// A response holding one entry (`Stat`, `MakeDir`, `Move`).
#[derive(Debug, Clone, Serialize)]
pub struct EntryResponse {
    /// The entry.
    pub entry: EntryInfo,
}

/// `filesystem.ListDirResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct ListDirResponse {
    /// The entries.
    pub entries: Vec<EntryInfo>,
}

/// `filesystem.EventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Made.
    #[serde(rename = "EVENT_TYPE_CREATE")]
    Create,
    /// Written.
    #[serde(rename = "EVENT_TYPE_WRITE")]
    Write,
    /// Removed.
    #[serde(rename = "EVENT_TYPE_REMOVE")]
    Remove,
    /// Permissions changed.
    #[serde(rename = "EVENT_TYPE_CHMOD")]
    Chmod,
}

/// `filesystem.FilesystemEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemEvent {
    /// The path, relative to the watched directory.
    pub name: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
}

/// `filesystem.WatchDirResponse`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WatchDirResponse {
    /// The watch is on.
    Start {},
    /// A change.
    Filesystem(FilesystemEvent),
    /// Nothing happened for a while.
    Keepalive {},
}

/// Permission bits as `ls -l` writes them, with the type letter first.
pub fn permissions(kind: FileType, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        FileType::Directory => 'd',
        FileType::File => '-',
        FileType::Unspecified => '?',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Seconds since the epoch as RFC 3339 in UTC.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_the_sdk_reads_them() {
        let m = ProcessEventMessage {
            event: ProcessEvent::Data(DataEvent::Stdout(Bytes::from_static(b"hi\n"))),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"event":{"data":{"stdout":"aGkK"}}}"#
        );
        let m = ProcessEventMessage {
            event: ProcessEvent::Keepalive {},
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"event":{"keepalive":{}}}"#
        );
        let end = ProcessEvent::End(EndEvent {
            exit_code: 3,
            exited: true,
            status: "exit status 3".into(),
            error: None,
        });
        assert_eq!(
            serde_json::to_string(&end).unwrap(),
            r#"{"end":{"exitCode":3,"exited":true,"status":"exit status 3"}}"#
        );
    }

    #[test]
    fn requests_read_as_the_sdk_writes_them() {
        let r: StartRequest = serde_json::from_str(
            r#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"A":"1"}},"stdin":true,"pty":{"size":{"cols":80,"rows":"24"}}}"#,
        )
        .unwrap();
        assert_eq!(r.process.unwrap().args.len(), 3);
        assert_eq!(r.pty.unwrap().size.unwrap().rows, 24);
        let s: SendSignalRequest =
            serde_json::from_str(r#"{"process":{"pid":7},"signal":"SIGNAL_SIGKILL"}"#).unwrap();
        assert_eq!((s.process.unwrap().pid, s.signal), (Some(7), Signal::Kill));
        let i: SendInputRequest =
            serde_json::from_str(r#"{"process":{"pid":7},"input":{"stdin":"aGk"}}"#).unwrap();
        assert_eq!(&i.input.unwrap().stdin.unwrap()[..], b"hi");
        let bad = serde_json::from_str::<SendInputRequest>(r#"{"input":{"stdin":"!!"}}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn times_and_permissions_read_as_humans_write_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(permissions(FileType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(permissions(FileType::File, 0o640), "-rw-r-----");
    }
}
