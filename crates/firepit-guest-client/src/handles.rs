//! Handles of long-lived operations: execs, ptys, file transfers, port and service
//! watches, logs.
//!
//! Each wraps one stream. Dropping a handle before its stream ended cancels it on the
//! guest (an exec is killed, a pty detached, a transfer aborted, a watch stopped). A
//! handle that is not read holds up its stream in the guest (flow control), so nothing
//! piles up in the client: [`Exec::output`] and [`FileReader::read_all`] keep within a
//! bound of their own.

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{
    ExitStatus, FilesChanged, LogChunk, OutputStream, PortInfo, PtyInfo, Request, Response,
    ServiceEvent,
};

use crate::Error;
use crate::capture::Captured;
use crate::conn::{Item, StreamHandle, StreamSender, into_result};

/// The longest service or pty name the guest accepts.
const MAX_NAME: usize = 64;

fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected response {r:?}"))
}

/// What an exec produced next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes of standard output.
    Stdout(Bytes),
    /// Bytes of standard error.
    Stderr(Bytes),
    /// The process ended; the last event.
    Exit(ExitStatus),
}

/// What an exec produced, each stream kept within a bound ([`Captured`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: Captured,
    /// Standard error.
    pub stderr: Captured,
    /// How it ended.
    pub status: ExitStatus,
}

/// A running command.
pub struct Exec {
    s: StreamHandle,
    pid: u32,
}

impl Exec {
    pub(crate) fn new(s: StreamHandle, pid: u32) -> Exec {
        Exec { s, pid }
    }

    /// The process's pid in the machine (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next output or the exit; `Ok(None)` after the exit.
    pub async fn next_event(&mut self) -> Result<Option<ExecEvent>, Error> {
        let Some(item) = self.s.next().await? else {
            return Ok(None);
        };
        Ok(Some(match item {
            Item::Data(b) => ExecEvent::Stdout(b),
            Item::Stderr(b) => ExecEvent::Stderr(b),
            Item::Response(r) => match into_result(*r)? {
                Response::Exit(st) => ExecEvent::Exit(st),
                other => return Err(unexpected(other)),
            },
        }))
    }

    /// Writes to the command's stdin (the request must have had `stdin: true`).
    pub async fn stdin_write(&self, data: Bytes) -> Result<(), Error> {
        self.s.data(data).await
    }

    /// Closes the command's stdin.
    pub async fn stdin_close(&self) -> Result<(), Error> {
        self.s.request(&Request::StdinClose).await
    }

    /// Sends `signal` to the command's process group.
    pub async fn kill(&self, signal: i32) -> Result<(), Error> {
        self.s.request(&Request::Kill { signal }).await
    }

    /// A handle that writes stdin and signals this command while this `Exec` is read
    /// elsewhere (a reader task owns the `Exec`; others type and kill).
    pub fn control(&self) -> ExecControl {
        ExecControl { s: self.s.sender() }
    }

    /// Reads the output until the exit, keeping of each stream at most `limit` bytes:
    /// its head and its tail, and a count of what was cut between ([`Captured`]).
    pub async fn output(mut self, limit: usize) -> Result<ExecOutput, Error> {
        let (mut stdout, mut stderr) = (Captured::new(limit), Captured::new(limit));
        loop {
            match self.next_event().await? {
                Some(ExecEvent::Stdout(b)) => stdout.push(&b),
                Some(ExecEvent::Stderr(b)) => stderr.push(&b),
                Some(ExecEvent::Exit(status)) => {
                    return Ok(ExecOutput {
                        stdout,
                        stderr,
                        status,
                    });
                }
                None => return Err(Error::Protocol("exec ended without an exit".into())),
            }
        }
    }
}

/// Writes stdin to and signals a running command, apart from the [`Exec`] that reads
/// it. Once the command ended (or its `Exec` was dropped) its calls reach nothing.
#[derive(Clone)]
pub struct ExecControl {
    s: StreamSender,
}

impl ExecControl {
    /// Writes to the command's stdin (the request must have had `stdin: true`).
    pub async fn stdin_write(&self, data: Bytes) -> Result<(), Error> {
        self.s.data(data).await
    }

    /// Closes the command's stdin.
    pub async fn stdin_close(&self) -> Result<(), Error> {
        self.s.request(&Request::StdinClose).await
    }

    /// Sends `signal` to the command's process group.
    pub async fn kill(&self, signal: i32) -> Result<(), Error> {
        self.s.request(&Request::Kill { signal }).await
    }
}

/// What a pty produced next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Output (scrollback first, then live).
    Output(Bytes),
    /// The pty's process ended; the last event.
    Exit(ExitStatus),
}

/// An attachment to a pty session. Dropping it detaches (the session lives on).
///
/// The guest does not wait for a slow attachment: one that falls too far behind the
/// pty's output ends with an error of kind `Overrun` (attach again to go on).
pub struct Pty {
    s: StreamHandle,
    info: PtyInfo,
}

/// Types into and resizes a pty attachment, apart from the [`Pty`] that reads it (the
/// same attachment: a reader task can own the `Pty` while others type).
#[derive(Clone)]
pub struct PtyInput {
    s: StreamSender,
}

impl PtyInput {
    /// Types into the pty.
    pub async fn input(&self, data: Bytes) -> Result<(), Error> {
        self.s.data(data).await
    }

    /// Resizes the pty (for every attached client).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), Error> {
        self.s.request(&Request::PtyResize { cols, rows }).await
    }
}

impl Pty {
    pub(crate) fn new(s: StreamHandle, info: PtyInfo) -> Pty {
        Pty { s, info }
    }

    /// The session as it was when attached.
    pub fn info(&self) -> &PtyInfo {
        &self.info
    }

    /// The next output or the exit; `Ok(None)` after the end.
    pub async fn next_event(&mut self) -> Result<Option<PtyEvent>, Error> {
        loop {
            let Some(item) = self.s.next().await? else {
                return Ok(None);
            };
            return Ok(Some(match item {
                Item::Data(b) | Item::Stderr(b) => PtyEvent::Output(b),
                Item::Response(r) => match into_result(*r)? {
                    Response::Exit(st) => PtyEvent::Exit(st),
                    Response::Done => return Ok(None),
                    _ => continue,
                },
            }));
        }
    }

    /// Types into the pty.
    pub async fn input(&self, data: Bytes) -> Result<(), Error> {
        self.s.data(data).await
    }

    /// Resizes the pty (for every attached client).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), Error> {
        self.s.request(&Request::PtyResize { cols, rows }).await
    }

    /// A handle that types into this attachment while this `Pty` is read elsewhere.
    pub fn input_half(&self) -> PtyInput {
        PtyInput { s: self.s.sender() }
    }
}

/// A file being read.
pub struct FileReader {
    s: StreamHandle,
    size: u64,
}

impl FileReader {
    pub(crate) fn new(s: StreamHandle, size: u64) -> FileReader {
        FileReader { s, size }
    }

    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next chunk; `Ok(None)` at the end of the file.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let Some(item) = self.s.next().await? else {
            return Ok(None);
        };
        match item {
            Item::Data(b) | Item::Stderr(b) => Ok(Some(b)),
            Item::Response(r) => match into_result(*r)? {
                Response::Done => Ok(None),
                other => Err(unexpected(other)),
            },
        }
    }

    /// Reads the rest of the file, which must not be longer than `limit` bytes
    /// ([`Error::TooLarge`] otherwise, before more than `limit` bytes are held).
    pub async fn read_all(mut self, limit: u64) -> Result<Bytes, Error> {
        if self.size > limit {
            return Err(Error::TooLarge { limit });
        }
        let mut all = BytesMut::with_capacity(self.size as usize);
        while let Some(chunk) = self.next_chunk().await? {
            if (all.len() + chunk.len()) as u64 > limit {
                return Err(Error::TooLarge { limit });
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }
}

/// A file being written. Dropping it without [`FileWriter::finish`] leaves no file.
pub struct FileWriter {
    s: StreamHandle,
}

impl FileWriter {
    pub(crate) fn new(s: StreamHandle) -> FileWriter {
        FileWriter { s }
    }

    /// Sends more of the file.
    pub async fn write(&mut self, data: Bytes) -> Result<(), Error> {
        if self.s.ended() {
            // The guest ended the stream early: an error is waiting in `finish`.
            return Ok(());
        }
        self.s.data(data).await
    }

    /// Commits the file (renames it into place) and reports how the write went.
    pub async fn finish(mut self) -> Result<(), Error> {
        self.s.request(&Request::WriteFinish).await?;
        loop {
            match self.s.next().await? {
                Some(Item::Response(r)) => match into_result(*r)? {
                    Response::Done => return Ok(()),
                    other => return Err(unexpected(other)),
                },
                Some(_) => continue,
                None => return Err(Error::Protocol("write ended without an answer".into())),
            }
        }
    }
}

/// A change of the listening ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortEvent {
    /// A port started listening.
    Opened(PortInfo),
    /// A port stopped listening.
    Closed(PortInfo),
}

/// A watch of the listening TCP ports.
pub struct PortWatch {
    s: StreamHandle,
    initial: Vec<PortInfo>,
}

impl PortWatch {
    pub(crate) fn new(s: StreamHandle, initial: Vec<PortInfo>) -> PortWatch {
        PortWatch { s, initial }
    }

    /// The ports that listened when the watch began.
    pub fn initial(&self) -> &[PortInfo] {
        &self.initial
    }

    /// The next change; `Ok(None)` if the guest ended the watch.
    pub async fn next(&mut self) -> Result<Option<PortEvent>, Error> {
        loop {
            let Some(item) = self.s.next().await? else {
                return Ok(None);
            };
            let Item::Response(r) = item else { continue };
            return match into_result(*r)? {
                Response::PortOpened(p) => Ok(Some(PortEvent::Opened(p))),
                Response::PortClosed(p) => Ok(Some(PortEvent::Closed(p))),
                Response::Done => Ok(None),
                _ => continue,
            };
        }
    }
}

/// A watch of every service's processes starting and exiting.
pub struct ServiceWatch {
    s: StreamHandle,
}

impl ServiceWatch {
    pub(crate) fn new(s: StreamHandle) -> ServiceWatch {
        ServiceWatch { s }
    }

    /// The next start or exit; `Ok(None)` if the guest ended the watch.
    pub async fn next(&mut self) -> Result<Option<ServiceEvent>, Error> {
        loop {
            let Some(item) = self.s.next().await? else {
                return Ok(None);
            };
            let Item::Response(r) = item else { continue };
            return match into_result(*r)? {
                Response::ServiceEvent(e) => {
                    let (ServiceEvent::Started { name, .. } | ServiceEvent::Exited { name, .. }) =
                        &e;
                    // The guest refuses such names; a guest that sends one is not to be
                    // believed (and its names end up in the session's event log).
                    if name.is_empty() || name.len() > MAX_NAME {
                        return Err(Error::Protocol(format!(
                            "a service event names a service of {} bytes",
                            name.len()
                        )));
                    }
                    Ok(Some(e))
                }
                Response::Done => Ok(None),
                _ => continue,
            };
        }
    }
}

/// A watch of a tree of files (see `firepit_guest::watch`).
pub struct FileWatch {
    s: StreamHandle,
}

impl FileWatch {
    pub(crate) fn new(s: StreamHandle) -> FileWatch {
        FileWatch { s }
    }

    /// The next batch of changed directories; `Ok(None)` if the guest ended
    /// the watch. A batch beyond the protocol's bounds
    /// ([`FilesChanged::check`]) is a protocol error.
    pub async fn next(&mut self) -> Result<Option<FilesChanged>, Error> {
        loop {
            let Some(item) = self.s.next().await? else {
                return Ok(None);
            };
            let Item::Response(r) = item else { continue };
            return match into_result(*r)? {
                Response::FilesChanged(c) => {
                    c.check().map_err(|e| {
                        Error::Protocol(format!("a file watch's report: {}", e.message))
                    })?;
                    Ok(Some(c))
                }
                Response::Done => Ok(None),
                _ => continue,
            };
        }
    }
}

/// A service's log, as chunks tagged with their stream.
pub struct LogStream {
    s: StreamHandle,
    live: bool,
}

impl LogStream {
    pub(crate) fn new(s: StreamHandle) -> LogStream {
        LogStream { s, live: false }
    }

    /// Whether the tail was delivered and what follows is live output.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Reads to the end (a log read without follow) and keeps the last `max` bytes of
    /// it, both streams together: however much the guest sends, no more is held.
    pub async fn read_tail(mut self, max: usize) -> Result<Bytes, Error> {
        let mut kept = std::collections::VecDeque::with_capacity(max.min(1 << 20));
        while let Some(chunk) = self.next().await? {
            let data = &chunk.data[chunk.data.len().saturating_sub(max)..];
            let over = (kept.len() + data.len()).saturating_sub(max);
            kept.drain(..over);
            kept.extend(data);
        }
        Ok(Bytes::from(Vec::from(kept)))
    }

    /// The next chunk; `Ok(None)` at the end (without follow, after the tail).
    pub async fn next(&mut self) -> Result<Option<LogChunk>, Error> {
        loop {
            let Some(item) = self.s.next().await? else {
                return Ok(None);
            };
            return match item {
                Item::Data(data) => Ok(Some(LogChunk {
                    stream: OutputStream::Stdout,
                    data,
                })),
                Item::Stderr(data) => Ok(Some(LogChunk {
                    stream: OutputStream::Stderr,
                    data,
                })),
                Item::Response(r) => match into_result(*r)? {
                    Response::Done => Ok(None),
                    Response::LogsLive => {
                        self.live = true;
                        continue;
                    }
                    _ => continue,
                },
            };
        }
    }
}
