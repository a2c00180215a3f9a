//! Services: named background processes, supervised and restarted by policy.
//!
//! A supervisor task per service spawns the process (own session and process group),
//! copies its stdout and stderr into a log ring ([`LOG_RING`] bytes, chunks tagged with
//! their stream) and a broadcast for followers, and restarts it per its
//! [`RestartPolicy`] with exponential backoff. Stopping sends SIGTERM to the group and
//! SIGKILL after [`STOP_GRACE`].
//!
//! Every start and exit of a service's process is also sent to the watchers of all
//! services ([`Services::watch`]) as a [`ServiceEvent`].
//!
//! A service's output is always read (its log is a ring, it never waits for a reader).
//! A log follower sends only as its stream's window allows; one that falls further
//! behind than the broadcast holds skips what it missed and goes on with new output.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{
    ErrorKind, ExitStatus, OutputStream, Response, RestartPolicy, ServiceEvent, ServiceInfo,
    ServiceSpec, ServiceState, WireError,
};
use tokio::net::unix::pipe;
use tokio::sync::{Notify, broadcast};

use crate::conn::Stream;
use crate::process;

/// Bytes of log kept per service.
pub const LOG_RING: usize = 1024 * 1024;
/// Time between SIGTERM and SIGKILL on stop.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

struct State {
    state: ServiceState,
    pid: Option<i32>,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    log: VecDeque<(OutputStream, Bytes)>,
    log_bytes: usize,
    stopping: bool,
}

struct Service {
    spec: ServiceSpec,
    state: Mutex<State>,
    tx: broadcast::Sender<(OutputStream, Bytes)>,
    events: broadcast::Sender<ServiceEvent>,
    wake: Notify,
}

impl Service {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> ServiceInfo {
        let st = self.state();
        ServiceInfo {
            name: self.spec.name.clone(),
            state: st.state,
            pid: st.pid.map(|p| p as u32),
            restarts: st.restarts,
            last_exit: st.last_exit,
            spec: self.spec.clone(),
        }
    }

    fn log(&self, stream: OutputStream, data: Bytes) {
        let mut st = self.state();
        st.log_bytes += data.len();
        st.log.push_back((stream, data.clone()));
        while st.log_bytes > LOG_RING {
            let Some((_, old)) = st.log.pop_front() else {
                break;
            };
            st.log_bytes -= old.len();
        }
        let _ = self.tx.send((stream, data));
    }
}

/// Service events a watcher may fall behind by before it misses some.
const EVENT_BACKLOG: usize = 1024;

/// The services of a guest.
pub struct Services {
    map: Mutex<HashMap<String, Arc<Service>>>,
    events: broadcast::Sender<ServiceEvent>,
}

impl Default for Services {
    fn default() -> Services {
        Services {
            map: Mutex::default(),
            events: broadcast::channel(EVENT_BACKLOG).0,
        }
    }
}

impl Services {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Service>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &str) -> Result<Arc<Service>, WireError> {
        self.map()
            .get(name)
            .cloned()
            .ok_or_else(|| WireError::new(ErrorKind::NotFound, format!("no such service: {name}")))
    }

    /// Starts a service; one of the same name that still runs is `AlreadyExists`, one that
    /// ended is replaced.
    pub fn start(&self, spec: ServiceSpec) -> Result<ServiceInfo, WireError> {
        if !(1..=64).contains(&spec.name.chars().count()) || spec.name.contains(['/', '\0']) {
            return Err(WireError::new(
                ErrorKind::InvalidInput,
                format!("invalid service name: {:?}", spec.name),
            ));
        }
        let argv = spec.command.to_argv();
        let cwd = process::resolve_cwd(spec.cwd.as_deref())?;
        crate::exec::command(&argv, &spec.env, &cwd)?; // validates argv and env
        let mut map = self.map();
        if let Some(old) = map.get(&spec.name)
            && matches!(
                old.state().state,
                ServiceState::Running | ServiceState::Backoff
            )
        {
            return Err(WireError::new(
                ErrorKind::AlreadyExists,
                format!("service already runs: {}", spec.name),
            ));
        }
        let svc = Arc::new(Service {
            spec: spec.clone(),
            state: Mutex::new(State {
                state: ServiceState::Running,
                pid: None,
                restarts: 0,
                last_exit: None,
                log: VecDeque::new(),
                log_bytes: 0,
                stopping: false,
            }),
            tx: broadcast::channel(1024).0,
            events: self.events.clone(),
            wake: Notify::new(),
        });
        // The first start happens here, so a missing command is an error to the caller.
        let first = spawn(&svc, &argv, &cwd)?;
        map.insert(spec.name.clone(), svc.clone());
        drop(map);
        let info = svc.info();
        tokio::spawn(supervise(svc, argv, cwd, first));
        Ok(info)
    }

    /// Stops a service and waits until its process is gone.
    pub async fn stop(&self, name: &str) -> Result<(), WireError> {
        let svc = self.get(name)?;
        let pid = {
            let mut st = svc.state();
            st.stopping = true;
            st.pid
        };
        svc.wake.notify_one();
        if let Some(pid) = pid {
            process::kill_group(pid, libc::SIGTERM);
            process::kill_group(pid, libc::SIGCONT);
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while svc.state().pid == Some(pid) {
                if tokio::time::Instant::now() >= deadline {
                    process::kill_group(pid, libc::SIGKILL);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    /// Empties service `name`'s log; followers go on with new output.
    pub fn clear_log(&self, name: &str) -> Result<(), WireError> {
        let svc = self.get(name)?;
        let mut st = svc.state();
        st.log.clear();
        st.log_bytes = 0;
        Ok(())
    }

    /// All services, sorted by name.
    pub fn list(&self) -> Vec<ServiceInfo> {
        let mut v: Vec<_> = self.map().values().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Streams every start and exit of a service's process until cancelled.
    pub async fn watch(&self, s: &mut Stream) -> Result<Response, WireError> {
        let mut rx = self.events.subscribe();
        if !s.send(&Response::Ready).await {
            return Ok(Response::Done);
        }
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok(event) => if !s.send(&Response::ServiceEvent(event)).await { return Ok(Response::Done) },
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Ok(Response::Done),
                },
                _ = s.rx.recv() => return Ok(Response::Done), // cancelled or disconnected
            }
        }
    }

    /// Sends a service's log tail, then (with `follow`) live output until cancelled.
    pub async fn logs(
        &self,
        name: &str,
        tail: Option<u64>,
        follow: bool,
        s: &mut Stream,
    ) -> Result<Response, WireError> {
        let svc = self.get(name)?;
        let (chunks, mut rx) = {
            let st = svc.state();
            let mut budget = tail.map(|t| t as usize).unwrap_or(usize::MAX);
            let mut chunks = Vec::new();
            for (stream, data) in st.log.iter().rev() {
                if budget == 0 {
                    break;
                }
                let take = data.len().min(budget);
                chunks.push((*stream, data.slice(data.len() - take..)));
                budget -= take;
            }
            chunks.reverse();
            (chunks, svc.tx.subscribe())
        };
        if !s.send(&Response::Ready).await {
            return Ok(Response::Done);
        }
        for (stream, data) in chunks {
            if !send_log(s, stream, data).await {
                return Ok(Response::Done);
            }
        }
        if !follow {
            return Ok(Response::Done);
        }
        s.send(&Response::LogsLive).await;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Ok((stream, data)) => if !send_log(s, stream, data).await { return Ok(Response::Done) },
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Ok(Response::Done),
                },
                _ = s.rx.recv() => return Ok(Response::Done),
            }
        }
    }
}

async fn send_log(s: &Stream, stream: OutputStream, data: Bytes) -> bool {
    match stream {
        OutputStream::Stdout => s.data(data).await,
        OutputStream::Stderr => s.stderr(data).await,
    }
}

fn spawn(svc: &Arc<Service>, argv: &[String], cwd: &str) -> Result<process::Spawned, WireError> {
    let mut cmd = crate::exec::command(argv, &svc.spec.env, cwd)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut spawned =
        process::spawn(&mut cmd, false).map_err(|e| process::spawn_error(&argv[0], &e))?;
    for (pipe, stream) in [
        (
            spawned.child.stdout.take().map(OwnedFd::from),
            OutputStream::Stdout,
        ),
        (
            spawned.child.stderr.take().map(OwnedFd::from),
            OutputStream::Stderr,
        ),
    ] {
        let Some(fd) = pipe else { continue };
        if process::set_nonblocking(&fd).is_err() {
            continue;
        }
        let Ok(mut rx) = pipe::Receiver::from_owned_fd_unchecked(fd) else {
            continue;
        };
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while let Ok(n) = crate::exec::read_into(&mut rx, &mut buf).await {
                if n == 0 {
                    break;
                }
                // Whole lines where possible; a partial line waits for its end (or 4 KiB).
                let cut = match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None if buf.len() >= 4096 => buf.len(),
                    None => continue,
                };
                svc.log(stream, buf.split_to(cut).freeze());
            }
            if !buf.is_empty() {
                svc.log(stream, buf.freeze());
            }
        });
    }
    let mut st = svc.state();
    st.pid = Some(spawned.pid);
    st.state = ServiceState::Running;
    drop(st);
    let _ = svc.events.send(ServiceEvent::Started {
        name: svc.spec.name.clone(),
        pid: spawned.pid as u32,
    });
    Ok(spawned)
}

async fn supervise(svc: Arc<Service>, argv: Vec<String>, cwd: String, first: process::Spawned) {
    let mut current = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(spawned) = current.take() else { break };
        let started = tokio::time::Instant::now();
        let status = spawned.exit.await.unwrap_or(ExitStatus {
            code: None,
            signal: None,
            timed_out: false,
        });
        let restart = {
            let mut st = svc.state();
            st.pid = None;
            st.last_exit = Some(status);
            let _ = svc.events.send(ServiceEvent::Exited {
                name: svc.spec.name.clone(),
                status,
            });
            let restart = !st.stopping
                && match svc.spec.restart {
                    RestartPolicy::Never => false,
                    RestartPolicy::OnFailure => !status.success(),
                    RestartPolicy::Always => true,
                };
            st.state = if st.stopping {
                ServiceState::Stopped
            } else if restart {
                ServiceState::Backoff
            } else {
                ServiceState::Exited
            };
            restart
        };
        if !restart {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = svc.wake.notified() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
        {
            let mut st = svc.state();
            if st.stopping {
                st.state = ServiceState::Stopped;
                break;
            }
            st.restarts += 1;
        }
        match spawn(&svc, &argv, &cwd) {
            Ok(s) => current = Some(s),
            Err(e) => {
                svc.log(
                    OutputStream::Stderr,
                    Bytes::from(format!("firepit-guest: restarting failed: {e}\n")),
                );
                svc.state().state = ServiceState::Exited;
            }
        }
    }
}
