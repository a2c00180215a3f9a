//! pty sessions: named terminals that many clients attach to at once.
//!
//! Each session has a reader task that drains the pty master into a scrollback ring
//! ([`SCROLLBACK`] bytes) and a broadcast channel. Attaching takes the scrollback and a
//! subscription under one lock, so a client sees every byte once, in order. When the
//! process exits, attached clients get its exit status and the session is forgotten;
//! the session named `main` (the shared shell) is then started again.
//!
//! A pty never waits for a client: its output is read as fast as the process writes
//! it, for every client at once. Each attachment sends what the broadcast gives it
//! while its stream's window is open; a client whose window stays shut while more than
//! [`BACKLOG`] pieces of output go by is ended with `Error{Overrun}` (it may attach
//! again and gets the scrollback), so a slow client costs a bounded backlog here and
//! one window in the daemon.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{
    DATA_CHUNK, ErrorKind, ExitStatus, PtyCreate, PtyInfo, Request, Response, WireError,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;

use crate::conn::{Inbound, Stream};
use crate::{Guest, process};

/// Bytes of output kept for clients that attach later.
pub const SCROLLBACK: usize = 256 * 1024;
/// The shared shell's name.
pub const MAIN: &str = "main";
/// Pieces of output (each at most one read, 16 KiB) a client may fall behind by before
/// it is detached.
pub const BACKLOG: usize = 256;

#[derive(Clone, Debug)]
enum PtyOut {
    Data(Bytes),
    Exit(ExitStatus),
}

struct State {
    ring: VecDeque<u8>,
    cols: u16,
    rows: u16,
    clients: u32,
    exited: Option<ExitStatus>,
}

struct Session {
    name: String,
    pid: i32,
    argv: Vec<String>,
    master: AsyncFd<OwnedFd>,
    state: Mutex<State>,
    tx: broadcast::Sender<PtyOut>,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> PtyInfo {
        let st = self.state();
        PtyInfo {
            name: self.name.clone(),
            pid: self.pid as u32,
            argv: self.argv.clone(),
            cols: st.cols,
            rows: st.rows,
            clients: st.clients,
            scrollback: 0,
        }
    }

    fn resize(&self, cols: u16, rows: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on our master fd.
        unsafe { libc::ioctl(self.master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        let mut st = self.state();
        st.cols = cols;
        st.rows = rows;
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| {
                // SAFETY: write from a valid buffer to our fd.
                let n = unsafe {
                    libc::write(fd.get_ref().as_raw_fd(), data.as_ptr().cast(), data.len())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {
                    if self.state().exited.is_some() {
                        return Err(std::io::ErrorKind::BrokenPipe.into());
                    }
                    // A master whose program does not read its input can be reported
                    // writable and still refuse: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        Ok(())
    }

    async fn read(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        buf.reserve(16 * 1024);
        loop {
            let mut guard = self.master.readable().await?;
            let spare = buf.spare_capacity_mut();
            match guard.try_io(|fd| {
                // SAFETY: read into the spare capacity of buf, at most its length.
                let n = unsafe {
                    libc::read(
                        fd.get_ref().as_raw_fd(),
                        spare.as_mut_ptr().cast(),
                        spare.len(),
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => {
                    // SAFETY: the kernel initialized n bytes.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(n);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The pty sessions of a guest.
#[derive(Default)]
pub struct Ptys {
    map: Mutex<HashMap<String, Arc<Session>>>,
    shutting_down: std::sync::atomic::AtomicBool,
}

fn login_shell() -> Vec<String> {
    if std::path::Path::new("/bin/bash").exists() {
        vec!["/bin/bash".into(), "-l".into()]
    } else if std::path::Path::new("/bin/sh").exists() {
        vec!["/bin/sh".into()]
    } else {
        // An image without a shell (distroless): the terminal says so instead of dying.
        let me = std::env::current_exe().map_or_else(
            |_| "/.firepit/guest".to_owned(),
            |p| p.display().to_string(),
        );
        vec![me, NO_SHELL_ARG.into()]
    }
}

/// `PS0` and `PROMPT_COMMAND` printing [`firepit_wire::guest::SHELL_MARK`]
/// around each command line (the exit status is kept for the prompt), unless
/// the caller set either.
fn shell_marks(env: &[(String, String)]) -> Vec<(String, String)> {
    if env.iter().any(|(k, _)| k == "PS0" || k == "PROMPT_COMMAND") {
        return Vec::new();
    }
    let mark = firepit_wire::guest::SHELL_MARK;
    vec![
        (
            "PS0".into(),
            format!(r"\e]{mark}run;$(fc -ln -1 2>/dev/null | base64 -w0 2>/dev/null)\a"),
        ),
        (
            "PROMPT_COMMAND".into(),
            format!(r#"__fp_s=$?; printf '\033]{mark}done;%s\007' "$__fp_s"; (exit $__fp_s)"#),
        ),
    ]
}

/// The argument that makes the guest binary print [`no_shell_notice`]'s text and wait.
pub const NO_SHELL_ARG: &str = "--no-shell-notice";

/// What the shared terminal of an image without a shell runs: a note of why, then it waits
/// for its terminal to hang up (so the note stays and `main` is not restarted in a loop).
pub fn no_shell_notice() -> std::process::ExitCode {
    use std::io::{Read as _, Write as _};
    let _ = std::io::stdout().write_all(
        b"firepit: this image has no shell (/bin/sh is missing), so the shared terminal has \
nothing to run.\r\nRun the image's programs with `firepit exec SESSION -- PROGRAM ARGS` or the \
API's exec.\r\n",
    );
    let _ = std::io::stdout().flush();
    let mut buf = [0u8; 256];
    while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    std::process::ExitCode::SUCCESS
}

impl Ptys {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the shared shell, `main`.
    pub fn start_main(&self, guest: &Arc<Guest>) {
        if let Err(e) = self.create(guest, MAIN, PtyCreate::default()) {
            eprintln!("firepit-guest: starting the main pty: {e}");
        }
    }

    /// Stops restarting `main` and hangs up every session (interactive shells ignore
    /// SIGTERM, not SIGHUP): the guest is shutting down.
    pub fn shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for s in self.map().values() {
            process::kill_group(s.pid, libc::SIGHUP);
            process::kill_group(s.pid, libc::SIGCONT);
        }
    }

    /// The sessions, sorted by name.
    pub fn list(&self) -> Vec<PtyInfo> {
        let mut v: Vec<_> = self.map().values().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Hangs up a session's process group (SIGKILL if it lingers) and forgets it.
    pub fn close(&self, name: &str) -> Result<(), WireError> {
        let s = self.map().remove(name).ok_or_else(|| no_such(name))?;
        process::kill_group(s.pid, libc::SIGHUP);
        process::kill_group(s.pid, libc::SIGCONT);
        let pid = s.pid;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if s.state().exited.is_none() {
                process::kill_group(pid, libc::SIGKILL);
            }
        });
        Ok(())
    }

    fn create(
        &self,
        guest: &Arc<Guest>,
        name: &str,
        c: PtyCreate,
    ) -> Result<Arc<Session>, WireError> {
        if !(1..=64).contains(&name.chars().count()) || name.contains(['/', '\0']) {
            return Err(WireError::new(
                ErrorKind::InvalidInput,
                format!("invalid pty name: {name:?}"),
            ));
        }
        let mut env = c.env;
        if c.argv.is_none() {
            env.extend(shell_marks(&env));
        }
        let argv = c.argv.unwrap_or_else(login_shell);
        let cwd = process::resolve_cwd(c.cwd.as_deref())?;
        let (cols, rows) = (c.cols.unwrap_or(80).max(1), c.rows.unwrap_or(24).max(1));
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None)
            .map_err(|e| WireError::io("opening a pty", &std::io::Error::from(e)))?;
        for fd in [&pty.master, &pty.slave] {
            // SAFETY: fcntl on descriptors we own; children must not inherit them.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let io = |fd: &OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| WireError::io("duplicating a pty", &e))
        };
        let mut cmd = crate::exec::command(&argv, &env, &cwd)?;
        cmd.stdin(io(&pty.slave)?)
            .stdout(io(&pty.slave)?)
            .stderr(io(&pty.slave)?);
        let spawned =
            process::spawn(&mut cmd, true).map_err(|e| process::spawn_error(&argv[0], &e))?;
        drop(cmd); // closes our copies of the slave
        drop(pty.slave);
        process::set_nonblocking(&pty.master).map_err(|e| WireError::io("pty", &e))?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same
        // for the AsyncFd's whole life.
        let master = unsafe { AsyncFd::register(pty.master) }
            .map_err(|e| WireError::io("pty", &std::io::Error::from(e)))?;
        let (tx, _) = broadcast::channel(BACKLOG);
        let session = Arc::new(Session {
            name: name.to_string(),
            pid: spawned.pid,
            argv,
            master,
            state: Mutex::new(State {
                ring: VecDeque::new(),
                cols,
                rows,
                clients: 0,
                exited: None,
            }),
            tx,
        });
        self.map().insert(name.to_string(), session.clone());
        let (s, g, exit) = (session.clone(), guest.clone(), spawned.exit);
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            pump(&s, exit).await;
            {
                let mut map = g.ptys.map();
                if map.get(&s.name).is_some_and(|cur| Arc::ptr_eq(cur, &s)) {
                    map.remove(&s.name);
                }
            }
            if s.name == MAIN
                && !g
                    .ptys
                    .shutting_down
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                if started.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                g.ptys.start_main(&g);
            }
        });
        Ok(session)
    }

    /// Attaches `s` to pty `name` (creating it if asked) until detach, exit or disconnect.
    pub async fn attach(
        &self,
        guest: &Arc<Guest>,
        name: &str,
        create: Option<PtyCreate>,
        s: &mut Stream,
    ) -> Result<Response, WireError> {
        let existing = self.map().get(name).cloned();
        let session = match (existing, create) {
            (Some(sess), _) => sess,
            (None, Some(c)) => self.create(guest, name, c)?,
            (None, None) => return Err(no_such(name)),
        };
        let (scrollback, mut rx, exited) = {
            let mut st = session.state();
            st.clients += 1;
            let (a, b) = st.ring.as_slices();
            let mut sb = BytesMut::with_capacity(a.len() + b.len());
            sb.extend_from_slice(a);
            sb.extend_from_slice(b);
            (sb.freeze(), session.tx.subscribe(), st.exited)
        };
        let _detach = Detach(session.clone());
        let info = PtyInfo {
            scrollback: scrollback.len() as u64,
            ..session.info()
        };
        if !s.send(&Response::PtyAttached(info)).await {
            return Ok(Response::Done);
        }
        // Output waiting for the window, in pieces of at most one data frame.
        let mut pending: VecDeque<Bytes> =
            firepit_wire::guest::chunks(scrollback, DATA_CHUNK).collect();
        let mut exit = exited;
        let credit = s.credit();
        // Input is written by a task of its own: a program that does not read its
        // terminal (the input buffer full) must not stop this attachment, or the
        // connection's reader behind it, from going on. What was typed is still
        // written after a detach; the task ends with the pty.
        let (input, mut input_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let writer = session.clone();
        tokio::spawn(async move {
            while let Some(b) = input_rx.recv().await {
                if writer.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        loop {
            while credit.open()
                && let Some(b) = pending.pop_front()
            {
                if !s.data(b).await {
                    return Ok(Response::Done);
                }
            }
            if pending.is_empty()
                && let Some(st) = exit
            {
                return Ok(Response::Exit(st));
            }
            if credit.is_closed() {
                return Ok(Response::Done);
            }
            let take_output = pending.is_empty() && exit.is_none() && credit.open();
            tokio::select! {
                out = rx.recv(), if take_output => match out {
                    Ok(PtyOut::Data(b)) => pending.push_back(b),
                    Ok(PtyOut::Exit(st)) => exit = Some(st),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Err(WireError::new(
                            ErrorKind::Overrun,
                            format!(
                                "this client fell {n} pieces of output behind the terminal and was detached; attach again to go on"
                            ),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(Response::Done),
                },
                _ = credit.changed(), if !credit.open() => {}
                msg = s.rx.recv() => match msg {
                    Some(Inbound::Data(b)) => { let _ = input.send(b); }
                    Some(Inbound::Control(Request::PtyResize { cols, rows })) => session.resize(cols.max(1), rows.max(1)),
                    Some(Inbound::Control(_)) | None => return Ok(Response::Done),
                },
            }
        }
    }
}

struct Detach(Arc<Session>);

impl Drop for Detach {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.clients = st.clients.saturating_sub(1);
    }
}

fn no_such(name: &str) -> WireError {
    WireError::new(ErrorKind::NotFound, format!("no such pty: {name}"))
}

/// Moves output from the master to the ring and the subscribers until the process ends.
async fn pump(s: &Session, mut exit: tokio::sync::oneshot::Receiver<ExitStatus>) {
    let mut buf = BytesMut::new();
    let publish = |data: Bytes| {
        let mut st = s.state();
        st.ring.extend(data.iter());
        let over = st.ring.len().saturating_sub(SCROLLBACK);
        st.ring.drain(..over);
        let _ = s.tx.send(PtyOut::Data(data));
    };
    let status = loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(n) if n > 0 => publish(buf.split().freeze()),
                // EIO: every slave side is closed; the exit status follows.
                _ => break exit.await.ok(),
            },
            st = &mut exit => {
                // Output still buffered in the pty, and from descendants for a moment.
                let _ = tokio::time::timeout(Duration::from_millis(50), async {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 { break; }
                        publish(buf.split().freeze());
                    }
                }).await;
                break st.ok();
            }
        }
    };
    let status = status.unwrap_or(ExitStatus {
        code: None,
        signal: None,
        timed_out: false,
    });
    let mut st = s.state();
    st.exited = Some(status);
    let _ = s.tx.send(PtyOut::Exit(status));
}
