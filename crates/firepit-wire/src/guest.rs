//! The guest protocol: what the daemon and `firepit-guest` say to each other.
//!
//! # Transport
//!
//! Any reliable, ordered byte stream (a unix socket, vsock, TCP behind a token check). The
//! protocol does not care which; both ends only need `read`/`write`.
//!
//! # Frames
//!
//! The stream carries frames, in both directions, in this layout (integers big-endian):
//!
//! ```text
//! +-------------+-------------+----------+---------------------+
//! | len: u32    | stream: u32 | kind: u8 | payload (len-5)     |
//! +-------------+-------------+----------+---------------------+
//! ```
//!
//! `len` counts everything after itself (stream id, kind and payload) and is at most
//! [`MAX_FRAME`]; a larger `len` is a protocol error and the connection is dropped.
//! `kind` is a [`FrameKind`]:
//!
//! * `Control` (0): the payload is one JSON document, a [`Request`] from the client or a
//!   [`Response`] from the guest.
//! * `Data` (1): raw bytes, never base64: stdin to an exec, stdout of an exec, pty input and
//!   output, file chunks, a service's stdout log.
//! * `Stderr` (2): raw bytes of a standard error stream (exec, service logs).
//! * `Credit` (3): flow control, from the client only: the payload is exactly four bytes, a
//!   `u32` count of bytes the guest may send more on the frame's stream (see below).
//!
//! # Streams
//!
//! Every operation is a stream: the client picks a fresh stream id (any `u32` not in use on
//! the connection) and sends a `Control` frame with the [`Request`] that opens it. All
//! frames of that operation, both ways, carry that id, so any number of operations run at
//! once over one connection. The guest ends a stream with a *final* response
//! ([`Response::is_final`]): `Done`, `Error`, `Exit`, or one of the one-shot answers; after
//! it the id may be reused. The client may end a stream early with [`Request::Cancel`]
//! (detach from a pty, stop a port watch or log follow, abort a read; on an exec it kills
//! the process group); the guest then answers with a final `Done` unless it already ended.
//!
//! Per operation (C = client, G = guest):
//!
//! * info: C `Info` → G `Info`.
//! * exec: C `Exec` → G `Started` → C `Data`* (stdin), `StdinClose`, `Kill` … G `Data`
//!   (stdout) / `Stderr` frames … G `Exit`. A missing program is G `Error{NotFound}`.
//! * pty: C `PtyAttach` → G `PtyAttached` → G `Data` (scrollback first, then live output)
//!   … C `Data` (input), `PtyResize` … G `Exit` when the process ends. `PtyList`,
//!   `PtyClose` are one-shot.
//! * read file: C `ReadFile` → G `FileSize` → G `Data`* → G `Done`.
//! * write file: C `WriteFile` → G `Ready` → C `Data`* → C `WriteFinish` → G `Done`
//!   (the guest writes a temporary file next to the target and renames it on finish).
//! * list dir / stat / mkdir / remove / rename: one request, one answer.
//! * ports: C `ListPorts` → G `Ports` → G `Done`. C `WatchPorts` → G `Ports` (the current set) → G
//!   `PortOpened` / `PortClosed` … until `Cancel`.
//! * services: `ServiceStart` → `Service`; `ServiceStop` and `ServiceClearLog` → `Done`; `ServiceList` →
//!   `Services`; `ServiceLogs` → G `Ready` → G `Data`/`Stderr` (the tail) → G `LogsLive` (only with
//!   follow) → more `Data`/`Stderr` … → `Done` (without follow, or after `Cancel`).
//!   `WatchServices` → G `Ready` → G `ServiceEvent` (a process started or exited) … until
//!   `Cancel`.
//! * file watch: C `WatchFiles` → G `Ready` → G `FilesChanged` (a batch of directories whose
//!   entries changed, bounded by [`MAX_CHANGED_DIRS`] and [`MAX_WATCH_PATH`]) … until `Cancel`.
//!
//! Paths are absolute, without `..` components or NUL bytes ([`check_path`]).
//!
//! # Flow control
//!
//! The guest sends what a stream produces (an exec's output, a pty's, a file, a log, port
//! and service events) only as fast as the client takes it. Every stream has a *window*:
//! credit in bytes, [`WINDOW`] when the stream opens, counted by both sides
//! ([`Window`]). Every frame the guest sends on a stream, except its final response,
//! costs [`Frame::cost`] (its payload plus [`FRAME_COST`], so a flood of empty frames
//! costs too). The guest may send a frame only while the stream's credit is above zero
//! (one frame may take it below). As the client's consumer takes frames, the client
//! gives their cost back with `Credit` frames (in batches of at least half a window).
//!
//! When a stream is out of credit the guest stops reading what feeds it: an exec's
//! pipes fill and the process blocks in `write`; a file read or a log tail waits. A pty is
//! shared, so its output never waits for one client: a client that falls behind by more
//! than the pty's backlog is ended with `Error{Overrun}` and may attach again (the
//! scrollback replays). Control frames from the client (`Cancel` above all) are read
//! whatever a stream's credit, so a cancelled stream never waits for credit.
//!
//! The client checks the count: a frame that arrives on a stream with no credit left is a
//! protocol error and ends the connection, so a guest that ignores its windows can make
//! the client hold at most about one window per open stream, never more.
//!
//! # Trust
//!
//! The guest runs inside the machine, whose root may replace or drive it: the client
//! treats every byte from it as hostile. A length over [`MAX_FRAME`], an unknown kind, a
//! `Credit` frame from the guest, a control payload that is not a [`Response`], or a frame
//! beyond its window ends that connection with an error; nothing the guest sends makes
//! the client allocate more than a frame at a time or more than its windows hold.

use std::fmt;
use std::net::IpAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Largest frame, counted as `len` counts it (stream id + kind + payload).
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes of the fixed frame header (len + stream + kind).
pub const HEADER_LEN: usize = 9;
/// Largest payload one frame may carry.
pub const MAX_PAYLOAD: usize = MAX_FRAME - 5;
/// The guest's protocol version; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 2;
/// A stream's credit when it opens, in bytes (see the module's flow control).
pub const WINDOW: u32 = 256 * 1024;
/// What a frame costs against its stream's window besides its payload.
pub const FRAME_COST: usize = 64;
/// The largest data frame the guest sends (output is split into pieces of this size).
pub const DATA_CHUNK: usize = 64 * 1024;

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON [`Request`] or [`Response`].
    Control = 0,
    /// Raw bytes (stdin, stdout, pty, file chunks).
    Data = 1,
    /// Raw bytes of a standard error stream.
    Stderr = 2,
    /// Flow control: four bytes, a `u32` grant of credit (client to guest only).
    Credit = 3,
}

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The operation this frame belongs to.
    pub stream: u32,
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload.
    pub payload: Bytes,
}

/// Why bytes could not be decoded into a frame or message.
#[derive(Debug)]
pub enum DecodeError {
    /// The frame announces more than [`MAX_FRAME`] bytes.
    TooLarge(usize),
    /// The frame is shorter than its fixed header.
    TooShort(usize),
    /// The kind byte is not a known [`FrameKind`].
    UnknownKind(u8),
    /// A control payload is not valid JSON for the expected message.
    Json(serde_json::Error),
    /// A `Credit` frame's payload is not four bytes.
    BadCredit(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            DecodeError::TooShort(n) => write!(f, "frame of {n} bytes is shorter than its header"),
            DecodeError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::Json(_) => write!(f, "malformed control message"),
            DecodeError::BadCredit(n) => write!(f, "credit frame of {n} bytes, not 4"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl Frame {
    /// A control frame carrying `msg` as JSON.
    pub fn control<T: Serialize>(stream: u32, msg: &T) -> Frame {
        // Serializing these plain types cannot fail (no maps with non-string keys).
        let json = serde_json::to_vec(msg).expect("wire messages serialize");
        Frame {
            stream,
            kind: FrameKind::Control,
            payload: Bytes::from(json),
        }
    }

    /// A data frame.
    pub fn data(stream: u32, payload: Bytes) -> Frame {
        Frame {
            stream,
            kind: FrameKind::Data,
            payload,
        }
    }

    /// A standard-error data frame.
    pub fn stderr(stream: u32, payload: Bytes) -> Frame {
        Frame {
            stream,
            kind: FrameKind::Stderr,
            payload,
        }
    }

    /// A grant of `bytes` more credit on `stream`.
    pub fn credit(stream: u32, bytes: u32) -> Frame {
        Frame {
            stream,
            kind: FrameKind::Credit,
            payload: Bytes::copy_from_slice(&bytes.to_be_bytes()),
        }
    }

    /// The grant a `Credit` frame carries.
    pub fn credit_grant(&self) -> Result<u32, DecodeError> {
        let b: [u8; 4] = self.payload[..]
            .try_into()
            .map_err(|_| DecodeError::BadCredit(self.payload.len()))?;
        Ok(u32::from_be_bytes(b))
    }

    /// What this frame costs against its stream's window.
    pub fn cost(&self) -> u64 {
        (self.payload.len() + FRAME_COST) as u64
    }

    /// Parses a control payload as `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, DecodeError> {
        serde_json::from_slice(&self.payload).map_err(DecodeError::Json)
    }

    /// Appends the encoded frame to `dst`.
    ///
    /// # Panics
    /// If the payload is longer than [`MAX_PAYLOAD`]; split bulk data with [`chunks`].
    pub fn encode(&self, dst: &mut BytesMut) {
        assert!(
            self.payload.len() <= MAX_PAYLOAD,
            "frame payload over MAX_PAYLOAD"
        );
        dst.reserve(HEADER_LEN + self.payload.len());
        dst.put_u32((self.payload.len() + 5) as u32);
        dst.put_u32(self.stream);
        dst.put_u8(self.kind as u8);
        dst.put_slice(&self.payload);
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Takes one whole frame off the front of `src`, if it holds one.
    ///
    /// Returns `Ok(None)` when more bytes are needed (truncated input); an announced
    /// length over [`MAX_FRAME`] is an error before any payload is buffered.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > MAX_FRAME {
            return Err(DecodeError::TooLarge(len));
        }
        if len < 5 {
            return Err(DecodeError::TooShort(len));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let stream = src.get_u32();
        let kind = match src.get_u8() {
            0 => FrameKind::Control,
            1 => FrameKind::Data,
            2 => FrameKind::Stderr,
            3 => FrameKind::Credit,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        let payload = src.split_to(len - 5).freeze();
        Ok(Some(Frame {
            stream,
            kind,
            payload,
        }))
    }
}

/// Encodes `first` and then, while the batch stays under [`BATCH_BYTES`], as
/// many frames as `more` yields without waiting: one write carries them all.
pub fn encode_batch(dst: &mut BytesMut, first: Frame, mut more: impl FnMut() -> Option<Frame>) {
    first.encode(dst);
    while dst.len() < BATCH_BYTES {
        match more() {
            Some(f) => f.encode(dst),
            None => break,
        }
    }
}

/// How many encoded bytes a writer gathers into one write.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Splits bulk bytes into frame-sized pieces (no copies).
pub fn chunks(mut data: Bytes, max: usize) -> impl Iterator<Item = Bytes> {
    let max = max.clamp(1, MAX_PAYLOAD);
    std::iter::from_fn(move || {
        if data.is_empty() {
            None
        } else {
            Some(data.split_to(data.len().min(max)))
        }
    })
}

/// One side's count of a stream's window: the credit the guest has left.
///
/// Both sides keep one per stream. The guest [`takes`](Window::take) a frame's cost before
/// it sends the frame and waits while [`Window::open`] is false; the client takes the cost
/// of each frame that arrives (a frame that finds the window shut breaks the protocol)
/// and [`grants`](Window::grant) credit back before it sends the `Credit` frame, so its
/// count is never below the guest's.
#[derive(Debug)]
pub struct Window {
    avail: std::sync::atomic::AtomicI64,
}

impl Default for Window {
    fn default() -> Window {
        Window::new()
    }
}

impl Window {
    /// A stream's window as it opens: [`WINDOW`] bytes.
    pub fn new() -> Window {
        Window {
            avail: std::sync::atomic::AtomicI64::new(i64::from(WINDOW)),
        }
    }

    /// Credit left (below zero after a frame larger than what was left).
    pub fn available(&self) -> i64 {
        self.avail.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the guest may send a frame now.
    pub fn open(&self) -> bool {
        self.available() > 0
    }

    /// Takes `cost` for a frame; `false`, taking nothing, if the window was shut (then the
    /// frame may not be sent, or, on the client, was sent against the rules).
    pub fn take(&self, cost: u64) -> bool {
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        self.avail
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |a| (a > 0).then(|| a.saturating_sub(cost)),
            )
            .is_ok()
    }

    /// Adds a grant of `bytes` (saturating: no count of grants overflows).
    pub fn grant(&self, bytes: u32) {
        let _ = self.avail.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |a| Some(a.saturating_add(i64::from(bytes))),
        );
    }
}

/// Checks that a path is absolute, has no `..` component and no NUL byte.
pub fn check_path(path: &str) -> Result<(), WireError> {
    if path.contains('\0') {
        return Err(WireError::new(
            ErrorKind::InvalidInput,
            "path contains a NUL byte",
        ));
    }
    if !path.starts_with('/') {
        return Err(WireError::new(
            ErrorKind::InvalidInput,
            format!("path is not absolute: {path}"),
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(WireError::new(
            ErrorKind::InvalidInput,
            format!("path has a `..` component: {path}"),
        ));
    }
    Ok(())
}

/// A stable class of error, for the daemon to map onto HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The path, pty, service or command does not exist.
    NotFound,
    /// The request is malformed or names something invalid.
    InvalidInput,
    /// The operating system refused.
    PermissionDenied,
    /// The pty or service already exists; the file is there.
    AlreadyExists,
    /// A directory was expected and something else is there (or the reverse).
    NotADirectory,
    /// A directory is not empty and `recursive` was not set.
    DirectoryNotEmpty,
    /// Another I/O failure.
    Io,
    /// The peer broke the protocol.
    Protocol,
    /// The operation is not supported here.
    Unsupported,
    /// The client fell too far behind a stream that does not wait for it (a pty's
    /// output) and was detached; attaching again replays the scrollback.
    Overrun,
    /// The connection to the guest ended (reported by clients, never sent).
    Closed,
}

/// An error as the guest reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The stable class.
    pub kind: ErrorKind,
    /// A short human message ("command not found: foo").
    pub message: String,
}

impl WireError {
    /// A new error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> WireError {
        WireError {
            kind,
            message: message.into(),
        }
    }

    /// Classifies an I/O error, prefixing `context` to its message.
    pub fn io(context: impl fmt::Display, e: &std::io::Error) -> WireError {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::InvalidInput | K::InvalidFilename => ErrorKind::InvalidInput,
            K::NotADirectory | K::IsADirectory => ErrorKind::NotADirectory,
            K::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
            K::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        };
        WireError {
            kind,
            message: format!("{context}: {e}"),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// About the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInfo {
    /// The guest's crate version.
    pub version: String,
    /// [`PROTOCOL_VERSION`] of the guest.
    pub protocol: u32,
    /// The guest's pid in its pid namespace (1 inside a machine).
    pub pid: u32,
    /// The machine's hostname.
    pub hostname: String,
    /// Milliseconds since the guest started.
    pub uptime_ms: u64,
}

/// What to run: a program with arguments, or a shell line for `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Command {
    /// `argv[0]` is looked up in `PATH`.
    Argv(Vec<String>),
    /// Run by `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// The argv that runs this command.
    pub fn to_argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

/// Runs a command to completion, streaming its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// What to run.
    pub command: Command,
    /// Added to (and overriding) the guest's environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; default `/root` (or `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Whether the client streams stdin; without it stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Kill the process group after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl ExecRequest {
    /// Runs `argv`.
    pub fn argv<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> ExecRequest {
        ExecRequest::new(Command::Argv(argv.into_iter().map(Into::into).collect()))
    }

    /// Runs `line` with `/bin/sh -c`.
    pub fn shell(line: impl Into<String>) -> ExecRequest {
        ExecRequest::new(Command::Shell(line.into()))
    }

    fn new(command: Command) -> ExecRequest {
        ExecRequest {
            command,
            env: Vec::new(),
            cwd: None,
            stdin: false,
            timeout_ms: None,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ExitStatus {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the guest killed it because its timeout passed.
    #[serde(default)]
    pub timed_out: bool,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Opens a pty session if the name is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PtyCreate {
    /// The program; default the login shell (`/bin/bash -l`, else `/bin/sh`).
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// Columns; default 80.
    #[serde(default)]
    pub cols: Option<u16>,
    /// Rows; default 24.
    #[serde(default)]
    pub rows: Option<u16>,
    /// Added to the environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; default `/root` (or `/`).
    #[serde(default)]
    pub cwd: Option<String>,
}

/// A pty session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyInfo {
    /// Its name (`main` is the shared shell).
    pub name: String,
    /// Pid of its process.
    pub pid: u32,
    /// The program.
    pub argv: Vec<String>,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// Clients attached now.
    pub clients: u32,
    /// In the answer to an attach: bytes of scrollback the attachment gets
    /// before live output (0 in lists).
    #[serde(default)]
    pub scrollback: u64,
}

/// The terminal escape (an OSC, which terminals ignore) the login shell of a
/// pty prints before each command line it runs, `ESC ] 7788;run;<base64 of
/// the line> BEL`, and after it, `ESC ] 7788;done;<exit status> BEL`; the
/// guest sets them up (`PS0`, `PROMPT_COMMAND`) in ptys it starts with the
/// default shell, and the closed loop reads them to name the command a
/// problem in the shell came from. Text the machine prints: never trusted.
pub const SHELL_MARK: &str = "7788;";

/// How a file is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WriteOptions {
    /// Create missing parent directories.
    #[serde(default)]
    pub create_parents: bool,
    /// Permission bits; default 0o644 (or the existing file's).
    #[serde(default)]
    pub mode: Option<u32>,
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (socket, fifo, device).
    Other,
}

/// Metadata of a path (symlinks are not followed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// The kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DirEntry {
    /// File name (not the path).
    pub name: String,
    /// The kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortInfo {
    /// The address it listens on (`0.0.0.0`, `::`, `127.0.0.1` …).
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
}

/// When a service is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum RestartPolicy {
    /// Never.
    #[default]
    Never,
    /// When it exits other than with code 0.
    OnFailure,
    /// Always (with backoff).
    Always,
}

/// A named background process. Unknown fields are refused: it is also the
/// body of `POST /v1/sessions/{id}/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Added to the environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// When to restart.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ServiceState {
    /// Its process runs.
    Running,
    /// It exited and waits for the backoff before it restarts.
    Backoff,
    /// It exited and will not be restarted.
    Exited,
    /// It was stopped.
    Stopped,
}

/// A service as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ServiceInfo {
    /// Name.
    pub name: String,
    /// State.
    pub state: ServiceState,
    /// Pid of the current process.
    pub pid: Option<u32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<ExitStatus>,
    /// The spec it runs.
    pub spec: ServiceSpec,
}

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a service's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes (whole lines where the process wrote whole lines).
    pub data: Bytes,
}

/// Most directories one [`FilesChanged`] names; more changed at once are
/// reported as `overflow`.
pub const MAX_CHANGED_DIRS: usize = 64;
/// Longest path a file watch reports, in bytes; deeper changes are reported
/// as their nearest ancestor within it.
pub const MAX_WATCH_PATH: usize = 1024;
/// Most directories one file watch watches; a tree with more is watched in
/// part (the first ones found, breadth first), and says so (`partial`).
pub const MAX_WATCHES: usize = 4096;

/// What a file watch reports: a batch of directories whose entries were made,
/// removed, renamed or written (a file written and closed counts for its
/// directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesChanged {
    /// The directories, sorted, at most [`MAX_CHANGED_DIRS`], each at most
    /// [`MAX_WATCH_PATH`] bytes.
    pub dirs: Vec<String>,
    /// More changed than `dirs` holds, or the kernel's queue overflowed: anything
    /// under the watch's root may have changed.
    #[serde(default)]
    pub overflow: bool,
    /// The watch covers only part of the tree (it holds [`MAX_WATCHES`]).
    #[serde(default)]
    pub partial: bool,
}

impl FilesChanged {
    /// Checks what a guest sent: the bounds above and [`check_path`] on every
    /// directory.
    pub fn check(&self) -> Result<(), WireError> {
        if self.dirs.len() > MAX_CHANGED_DIRS {
            return Err(WireError::new(
                ErrorKind::Protocol,
                format!("{} changed directories in one report", self.dirs.len()),
            ));
        }
        for d in &self.dirs {
            if d.len() > MAX_WATCH_PATH {
                return Err(WireError::new(
                    ErrorKind::Protocol,
                    "a changed directory's path is too long",
                ));
            }
            check_path(d)?;
        }
        Ok(())
    }
}

/// Something that happened to a service's process, as a service watch reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ServiceEvent {
    /// The service's process was started (the first time or after a restart).
    Started {
        /// Service name.
        name: String,
        /// Pid of the new process.
        pid: u32,
    },
    /// The service's process exited.
    Exited {
        /// Service name.
        name: String,
        /// How it ended.
        status: ExitStatus,
    },
}

/// A control message from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// About the guest.
    Info,
    /// Run a command.
    Exec(ExecRequest),
    /// No more stdin for the exec on this stream.
    StdinClose,
    /// Send a signal to the exec's process group.
    Kill {
        /// Signal number.
        signal: i32,
    },
    /// Attach to a pty, creating it if `create` is given and the name is free.
    PtyAttach {
        /// Name.
        name: String,
        /// Create it if missing.
        create: Option<PtyCreate>,
    },
    /// Resize the attached pty.
    PtyResize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// List ptys.
    PtyList,
    /// Kill a pty's process group and forget it.
    PtyClose {
        /// Name.
        name: String,
    },
    /// Read a file.
    ReadFile {
        /// Absolute path.
        path: String,
    },
    /// Write a file (then `Data` frames and `WriteFinish`).
    WriteFile {
        /// Absolute path.
        path: String,
        /// Options.
        #[serde(default)]
        opts: WriteOptions,
    },
    /// All data of the write was sent; commit it.
    WriteFinish,
    /// List a directory.
    ListDir {
        /// Absolute path.
        path: String,
    },
    /// Metadata of a path.
    Stat {
        /// Absolute path.
        path: String,
    },
    /// Create a directory.
    Mkdir {
        /// Absolute path.
        path: String,
        /// Create parents; an existing directory is fine.
        #[serde(default)]
        parents: bool,
    },
    /// Remove a file or directory.
    Remove {
        /// Absolute path.
        path: String,
        /// Remove a directory with its contents.
        #[serde(default)]
        recursive: bool,
    },
    /// Rename a path.
    Rename {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// List listening TCP ports.
    ListPorts,
    /// Watch listening TCP ports.
    WatchPorts,
    /// Start a service.
    ServiceStart(ServiceSpec),
    /// Stop a service.
    ServiceStop {
        /// Name.
        name: String,
    },
    /// List services.
    ServiceList,
    /// Empty a service's log (its process runs on).
    ServiceClearLog {
        /// Name.
        name: String,
    },
    /// A service's log.
    ServiceLogs {
        /// Name.
        name: String,
        /// Send at most the last this many bytes; all kept if absent.
        #[serde(default)]
        tail_bytes: Option<u64>,
        /// Keep streaming new output.
        #[serde(default)]
        follow: bool,
    },
    /// Watch every service's processes start and exit.
    WatchServices,
    /// Watch a tree of directories for entries made, removed, renamed or written.
    WatchFiles {
        /// The tree's top; absent: the machine's working directory (the
        /// image's, else `/root`).
        #[serde(default)]
        root: Option<String>,
    },
    /// End this stream early.
    Cancel,
}

/// A control message from the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Response {
    /// The operation failed or was refused (final).
    Error(WireError),
    /// The operation finished (final).
    Done,
    /// About the guest (final).
    Info(GuestInfo),
    /// The exec's process runs.
    Started {
        /// Its pid (and process group id).
        pid: u32,
    },
    /// The process ended (final).
    Exit(ExitStatus),
    /// Attached to a pty; scrollback follows.
    PtyAttached(PtyInfo),
    /// The ptys (final).
    Ptys {
        /// All ptys.
        ptys: Vec<PtyInfo>,
    },
    /// The file's size; chunks follow.
    FileSize {
        /// Bytes.
        size: u64,
    },
    /// Ready for the chunks of a write.
    Ready,
    /// A directory's entries (final).
    Dir {
        /// Entries, sorted by name.
        entries: Vec<DirEntry>,
    },
    /// A path's metadata (final).
    Stat(FileStat),
    /// Listening ports (final for `ListPorts`; the first message of a watch).
    Ports {
        /// Sorted.
        ports: Vec<PortInfo>,
    },
    /// A port started listening.
    PortOpened(PortInfo),
    /// A port stopped listening.
    PortClosed(PortInfo),
    /// A service (final).
    Service(ServiceInfo),
    /// The services (final).
    Services {
        /// All services.
        services: Vec<ServiceInfo>,
    },
    /// The tail of a followed log was sent; live output follows.
    LogsLive,
    /// A service's process started or exited (on a service watch).
    ServiceEvent(ServiceEvent),
    /// Directories whose entries changed (on a file watch).
    FilesChanged(FilesChanged),
}

impl Response {
    /// Whether this response ends its stream.
    ///
    /// `Ports` is final except as the first message of a watch; the client knows which
    /// it asked for, so it is reported as not final here and `ListPorts` handlers treat it
    /// as the answer.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Response::Error(_)
                | Response::Done
                | Response::Info(_)
                | Response::Exit(_)
                | Response::Ptys { .. }
                | Response::Dir { .. }
                | Response::Stat(_)
                | Response::Service(_)
                | Response::Services { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let frames = vec![
            Frame::control(7, &Request::Exec(ExecRequest::shell("echo hi"))),
            Frame::data(7, Bytes::from_static(b"\x00\xffraw")),
            Frame::stderr(u32::MAX, Bytes::new()),
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            f.encode(&mut buf);
        }
        let mut out = Vec::new();
        while let Some(f) = Frame::decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert_eq!(out, frames);
        assert!(buf.is_empty());
        let req: Request = out[0].parse().unwrap();
        assert_eq!(req, Request::Exec(ExecRequest::shell("echo hi")));
    }

    #[test]
    fn a_service_spec_refuses_unknown_fields_but_travels_in_a_request() {
        let spec = ServiceSpec {
            name: "web".into(),
            command: Command::Shell("true".into()),
            env: Vec::new(),
            cwd: None,
            restart: RestartPolicy::Always,
        };
        let req = Request::ServiceStart(spec.clone());
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req);
        let err = serde_json::from_str::<ServiceSpec>(
            r#"{"name":"web","command":{"shell":"true"},"restart_policy":"always"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let bytes = Frame::data(3, Bytes::from_static(b"hello")).to_bytes();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(Frame::decode(&mut buf).unwrap().is_none(), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(Frame::decode(&mut buf).unwrap().unwrap().payload, "hello");
    }

    #[test]
    fn oversized_frame_is_rejected() {
        let mut buf = BytesMut::new();
        buf.put_u32((MAX_FRAME + 1) as u32);
        buf.put_u32(1);
        buf.put_u8(1);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn bad_kind_and_short_header_are_rejected() {
        let mut buf = BytesMut::new();
        buf.put_u32(5);
        buf.put_u32(1);
        buf.put_u8(9);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(DecodeError::UnknownKind(9))
        ));
        let mut buf = BytesMut::new();
        buf.put_u32(2);
        buf.put_u16(0);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(DecodeError::TooShort(2))
        ));
    }

    /// A small deterministic generator, so the random tests need no crate and repeat.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Feeds `bytes` to the decoder in pieces of random sizes, as a socket would deliver
    /// them; returns the frames and whether decoding stopped with an error. Asserts what
    /// must hold for any input: no panic, no payload over the limit, and the buffer never
    /// holding much more than one whole frame.
    fn decode_all(bytes: &[u8], rng: &mut Rng) -> (Vec<Frame>, bool) {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(70_000));
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match Frame::decode(&mut buf) {
                    Ok(Some(f)) => {
                        assert!(f.payload.len() <= MAX_PAYLOAD);
                        frames.push(f);
                    }
                    Ok(None) => break,
                    Err(_) => return (frames, true),
                }
            }
            assert!(
                buf.len() <= HEADER_LEN + MAX_FRAME + 70_000,
                "the buffer holds {} bytes",
                buf.len()
            );
        }
        (frames, false)
    }

    #[test]
    fn random_bytes_never_panic_or_overallocate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let len = rng.below(if round % 10 == 0 { 200_000 } else { 2_000 });
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half the rounds start with a plausible header, so decoding gets past it.
            if round % 2 == 0 && bytes.len() >= HEADER_LEN {
                let body = (bytes.len() - 4) as u32;
                bytes[..4].copy_from_slice(&body.min(MAX_FRAME as u32).to_be_bytes());
                bytes[8] %= 4;
            }
            let (frames, _) = decode_all(&bytes, &mut rng);
            for f in frames {
                // Any control payload parses or fails cleanly; credits decode or refuse.
                let _ = f.parse::<Response>();
                let _ = f.parse::<Request>();
                let _ = f.credit_grant();
            }
        }
    }

    #[test]
    fn random_frames_round_trip_through_random_splits() {
        let mut rng = Rng(42);
        let mut frames = Vec::new();
        let mut bytes = BytesMut::new();
        for _ in 0..500 {
            let stream = rng.next() as u32;
            let f = match rng.below(4) {
                0 => Frame::control(stream, &Request::Kill { signal: 9 }),
                1 => Frame::data(stream, Bytes::from(vec![1u8; rng.below(100_000)])),
                2 => Frame::stderr(stream, Bytes::new()),
                _ => Frame::credit(stream, rng.next() as u32),
            };
            f.encode(&mut bytes);
            frames.push(f);
        }
        let (out, failed) = decode_all(&bytes, &mut rng);
        assert!(!failed);
        assert_eq!(out, frames);
    }

    #[test]
    fn a_huge_length_is_refused_before_anything_is_buffered() {
        for len in [MAX_FRAME as u32 + 1, u32::MAX, 1 << 31] {
            let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
            let cap = buf.capacity();
            assert!(matches!(
                Frame::decode(&mut buf),
                Err(DecodeError::TooLarge(_))
            ));
            assert_eq!(buf.capacity(), cap, "no room reserved for {len}");
        }
        // The largest allowed frame reserves at most that much.
        let mut buf = BytesMut::from(&(MAX_FRAME as u32).to_be_bytes()[..]);
        assert!(Frame::decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= MAX_FRAME + 64);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for junk in [
            &b"{"[..],
            b"null",
            b"{\"r\":\"nope\"}",
            b"\xff\xfe",
            b"[1,2]",
            b"",
        ] {
            let f = Frame::control(1, &Response::Done);
            let f = Frame {
                payload: Bytes::copy_from_slice(junk),
                ..f
            };
            assert!(f.parse::<Response>().is_err(), "{junk:?}");
        }
        // Deep nesting is refused by the parser's depth limit, not by the stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let f = Frame::data(1, Bytes::from(deep));
        assert!(f.parse::<Response>().is_err());
        for n in [0usize, 3, 5, 1000] {
            let f = Frame {
                stream: 1,
                kind: FrameKind::Credit,
                payload: Bytes::from(vec![0u8; n]),
            };
            assert!(matches!(f.credit_grant(), Err(DecodeError::BadCredit(m)) if m == n));
        }
        assert_eq!(Frame::credit(1, u32::MAX).credit_grant().unwrap(), u32::MAX);
    }

    #[test]
    fn windows_count_and_saturate() {
        let w = Window::new();
        assert!(w.open());
        let f = Frame::data(1, Bytes::from(vec![0u8; 1000]));
        assert_eq!(f.cost(), 1000 + FRAME_COST as u64);
        // A frame may take the window below zero; the next one is refused.
        assert!(w.take(u64::from(WINDOW) - 1));
        assert!(w.take(u64::from(WINDOW)));
        assert!(!w.open());
        assert!(!w.take(1));
        assert_eq!(w.available(), 1 - i64::from(WINDOW));
        w.grant(WINDOW);
        assert!(w.open());
        // Grants never overflow, and a cost beyond any count shuts the window.
        for _ in 0..10 {
            w.grant(u32::MAX);
        }
        let w = Window::new();
        for _ in 0..1_000_000 {
            w.grant(u32::MAX);
        }
        assert!(w.available() > 0);
        assert!(w.take(u64::MAX));
        assert!(!w.open());
        let max = Window {
            avail: std::sync::atomic::AtomicI64::new(i64::MAX),
        };
        max.grant(u32::MAX);
        assert_eq!(max.available(), i64::MAX);
    }

    #[test]
    fn chunks_split_without_loss() {
        let data = Bytes::from(vec![7u8; 10]);
        let parts: Vec<_> = chunks(data, 4).collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/root/a.txt").is_ok());
        assert!(check_path("/").is_ok());
        assert_eq!(
            check_path("relative").unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_path("/a/../etc").unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_path("/a/..").unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_path("/a\0b").unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        assert!(check_path("/a/..b/c..").is_ok());
    }

    #[test]
    fn messages_have_stable_json() {
        let json = serde_json::to_string(&Request::Kill { signal: 9 }).unwrap();
        assert_eq!(json, r#"{"op":"kill","signal":9}"#);
        let r = Response::Error(WireError::new(
            ErrorKind::NotFound,
            "command not found: foo",
        ));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"r":"error","kind":"not_found","message":"command not found: foo"}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), r);
        assert!(r.is_final());
        assert!(!Response::Started { pid: 1 }.is_final());
    }
}
