//! The async client of the guest protocol ([`firepit_wire::guest`]), used by the daemon.
//!
//! A [`GuestClient`] owns one connection. Every call opens a stream on it, so any number
//! of execs, pty attachments, file transfers and watches run at once. A background task
//! reads frames and hands each to the stream it belongs to; a writer task sends frames.
//! When the connection drops, every open stream ends with [`Error::Closed`] and new calls
//! fail the same way: nothing hangs.
//!
//! Memory stays bounded whatever the guest does: every stream has a window (the guest
//! protocol's flow control), a handle that is not read holds its stream up in the guest,
//! and a guest that breaks the protocol (an oversized or malformed frame, more than a
//! window) loses its connection: its streams end with [`Error::Protocol`] saying why.
#![warn(missing_docs)]

mod capture;
mod conn;
mod error;
mod handles;

use std::path::Path;

use bytes::Bytes;
use firepit_wire::guest::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

pub use capture::{Captured, cut_note};
pub use error::Error;
pub use firepit_wire::guest::{
    Command, DirEntry, ErrorKind, ExecRequest, ExitStatus, FileKind, FileStat, FilesChanged,
    GuestInfo, LogChunk, OutputStream, PortInfo, PtyCreate, PtyInfo, RestartPolicy, ServiceEvent,
    ServiceInfo, ServiceSpec, ServiceState, WireError, WriteOptions,
};
pub use handles::{
    Exec, ExecControl, ExecEvent, ExecOutput, FileReader, FileWatch, FileWriter, LogStream,
    PortEvent, PortWatch, Pty, PtyEvent, PtyInput, ServiceWatch,
};

use conn::Conn;

/// A connection to one guest. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct GuestClient {
    conn: Conn,
}

fn unexpected(resp: Response) -> Error {
    Error::Protocol(format!("unexpected response {resp:?}"))
}

impl GuestClient {
    /// Connects to a guest listening on a unix socket.
    pub async fn connect_unix(path: &Path) -> Result<GuestClient, Error> {
        let io = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| Error::Connect {
                path: path.to_owned(),
                source,
            })?;
        Ok(GuestClient::over(io))
    }

    /// Connects to a guest listening on a unix socket and checks that the
    /// process that answered is `pid` (the socket's peer credentials, as the
    /// kernel reports them): a socket that is not the guest's own, whatever
    /// put it at `path`, is never spoken to.
    pub async fn connect_unix_peer(path: &Path, pid: u32) -> Result<GuestClient, Error> {
        let io = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| Error::Connect {
                path: path.to_owned(),
                source,
            })?;
        let found = io
            .peer_cred()
            .map_err(|source| Error::Connect {
                path: path.to_owned(),
                source,
            })?
            .pid();
        if found != Some(pid as i32) {
            return Err(Error::WrongPeer {
                path: path.to_owned(),
                expected: pid,
                found,
            });
        }
        Ok(GuestClient::over(io))
    }

    /// Speaks the protocol over any byte stream (unix socket, vsock, TCP, an in-memory pipe).
    /// Must be called within a tokio runtime.
    pub fn over<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(io: T) -> GuestClient {
        GuestClient {
            conn: Conn::start(io),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    async fn call(&self, req: Request) -> Result<Response, Error> {
        let mut s = self.conn.open(&req).await?;
        s.control().await
    }

    async fn call_done(&self, req: Request) -> Result<(), Error> {
        match self.call(req).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// About the guest.
    pub async fn info(&self) -> Result<GuestInfo, Error> {
        match self.call(Request::Info).await? {
            Response::Info(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// Starts a command; read its output and exit from the returned [`Exec`].
    pub async fn exec(&self, req: ExecRequest) -> Result<Exec, Error> {
        let mut s = self.conn.open(&Request::Exec(req)).await?;
        match s.control().await? {
            Response::Started { pid } => Ok(Exec::new(s, pid)),
            other => Err(unexpected(other)),
        }
    }

    /// Attaches to pty `name`, creating it with `create` if it does not exist. The first
    /// output is the pty's scrollback; dropping the [`Pty`] detaches.
    pub async fn pty_attach(&self, name: &str, create: Option<PtyCreate>) -> Result<Pty, Error> {
        let mut s = self
            .conn
            .open(&Request::PtyAttach {
                name: name.into(),
                create,
            })
            .await?;
        match s.control().await? {
            Response::PtyAttached(info) => Ok(Pty::new(s, info)),
            other => Err(unexpected(other)),
        }
    }

    /// The pty sessions.
    pub async fn pty_list(&self) -> Result<Vec<PtyInfo>, Error> {
        match self.call(Request::PtyList).await? {
            Response::Ptys { ptys } => Ok(ptys),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a pty session (its process group gets SIGHUP, then SIGKILL).
    pub async fn pty_close(&self, name: &str) -> Result<(), Error> {
        self.call_done(Request::PtyClose { name: name.into() })
            .await
    }

    /// Opens a file for reading: its size, then its chunks.
    pub async fn read_file(&self, path: &str) -> Result<FileReader, Error> {
        let mut s = self
            .conn
            .open(&Request::ReadFile { path: path.into() })
            .await?;
        match s.control().await? {
            Response::FileSize { size } => Ok(FileReader::new(s, size)),
            other => Err(unexpected(other)),
        }
    }

    /// Reads a whole file of at most `limit` bytes ([`Error::TooLarge`] if it is longer).
    pub async fn read_file_all(&self, path: &str, limit: u64) -> Result<Bytes, Error> {
        self.read_file(path).await?.read_all(limit).await
    }

    /// Opens a file for writing; nothing is visible at `path` until [`FileWriter::finish`].
    pub async fn write_file(&self, path: &str, opts: WriteOptions) -> Result<FileWriter, Error> {
        let mut s = self
            .conn
            .open(&Request::WriteFile {
                path: path.into(),
                opts,
            })
            .await?;
        match s.control().await? {
            Response::Ready => Ok(FileWriter::new(s)),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a whole file.
    pub async fn write_file_all(
        &self,
        path: &str,
        data: Bytes,
        opts: WriteOptions,
    ) -> Result<(), Error> {
        let mut w = self.write_file(path, opts).await?;
        w.write(data).await?;
        w.finish().await
    }

    /// The entries of a directory, sorted by name.
    pub async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        match self.call(Request::ListDir { path: path.into() }).await? {
            Response::Dir { entries } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Metadata of a path (symlinks not followed).
    pub async fn stat(&self, path: &str) -> Result<FileStat, Error> {
        match self.call(Request::Stat { path: path.into() }).await? {
            Response::Stat(st) => Ok(st),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a directory (with its parents if `parents`; then an existing one is fine).
    pub async fn mkdir(&self, path: &str, parents: bool) -> Result<(), Error> {
        self.call_done(Request::Mkdir {
            path: path.into(),
            parents,
        })
        .await
    }

    /// Removes a file, or a directory (with its contents if `recursive`).
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), Error> {
        self.call_done(Request::Remove {
            path: path.into(),
            recursive,
        })
        .await
    }

    /// Renames a path.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        self.call_done(Request::Rename {
            from: from.into(),
            to: to.into(),
        })
        .await
    }

    /// The listening TCP ports.
    pub async fn list_ports(&self) -> Result<Vec<PortInfo>, Error> {
        let mut s = self.conn.open(&Request::ListPorts).await?;
        match s.control().await? {
            Response::Ports { ports } => Ok(ports),
            other => Err(unexpected(other)),
        }
    }

    /// Watches listening TCP ports: [`PortWatch::initial`] is the current set, then
    /// [`PortWatch::next`] gives each change.
    pub async fn watch_ports(&self) -> Result<PortWatch, Error> {
        let mut s = self.conn.open(&Request::WatchPorts).await?;
        match s.control().await? {
            Response::Ports { ports } => Ok(PortWatch::new(s, ports)),
            other => Err(unexpected(other)),
        }
    }

    /// Watches every service's processes: each start and exit from now on, as
    /// [`ServiceEvent`]s from [`ServiceWatch::next`].
    pub async fn watch_services(&self) -> Result<ServiceWatch, Error> {
        let mut s = self.conn.open(&Request::WatchServices).await?;
        match s.control().await? {
            Response::Ready => Ok(ServiceWatch::new(s)),
            other => Err(unexpected(other)),
        }
    }

    /// Watches the tree under `root` (absent: the machine's working
    /// directory): batches of changed directories from [`FileWatch::next`].
    pub async fn watch_files(&self, root: Option<&str>) -> Result<FileWatch, Error> {
        let mut s = self
            .conn
            .open(&Request::WatchFiles {
                root: root.map(str::to_owned),
            })
            .await?;
        match s.control().await? {
            Response::Ready => Ok(FileWatch::new(s)),
            other => Err(unexpected(other)),
        }
    }

    /// Starts a service (a name that runs already is `AlreadyExists`).
    pub async fn service_start(&self, spec: ServiceSpec) -> Result<ServiceInfo, Error> {
        match self.call(Request::ServiceStart(spec)).await? {
            Response::Service(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Stops a service: SIGTERM to its group, SIGKILL after a grace period.
    pub async fn service_stop(&self, name: &str) -> Result<(), Error> {
        self.call_done(Request::ServiceStop { name: name.into() })
            .await
    }

    /// Empties a service's log.
    pub async fn service_clear_log(&self, name: &str) -> Result<(), Error> {
        self.call_done(Request::ServiceClearLog { name: name.into() })
            .await
    }

    /// The services.
    pub async fn service_list(&self) -> Result<Vec<ServiceInfo>, Error> {
        match self.call(Request::ServiceList).await? {
            Response::Services { services } => Ok(services),
            other => Err(unexpected(other)),
        }
    }

    /// A service's log: the last `tail_bytes` (all kept if `None`), then, with `follow`,
    /// new output as it comes.
    pub async fn service_logs(
        &self,
        name: &str,
        tail_bytes: Option<u64>,
        follow: bool,
    ) -> Result<LogStream, Error> {
        let mut s = self
            .conn
            .open(&Request::ServiceLogs {
                name: name.into(),
                tail_bytes,
                follow,
            })
            .await?;
        match s.control().await? {
            Response::Ready => Ok(LogStream::new(s)),
            other => Err(unexpected(other)),
        }
    }
}
