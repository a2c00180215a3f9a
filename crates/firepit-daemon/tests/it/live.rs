//! A session's runtime ends whole: after a stop, a destroy or a machine that
//! ended on its own, nothing of it runs on (watcher, agent, browser, forge
//! broker, the preview proxy's idle sockets).
//!
//! The "machines" here are real guests on the host (root only), each in a
//! mount namespace of its own with a scratch `/etc` (what the daemon writes
//! there, the broker's gitconfig, stays there); they share the host's
//! network, so the backend dials and listens on the host's loopback.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_daemon::App;
use firepit_machine::{
    Backend, Error as MachineError, GuestAddress, MachineId, MachineInfo, MachineSpec, MachineState,
};
use firepit_wire::api::{CreateSession, SessionState};

use crate::routes::{TOKEN, app_on, tiny_image};

/// Hang guard for anything a test waits on.
const GUARD: Duration = Duration::from_secs(30);

/// Guests on the host, one per machine id.
struct HostGuests {
    dir: PathBuf,
    running: Mutex<HashMap<String, Child>>,
}

impl HostGuests {
    fn socket(&self, id: &MachineId) -> PathBuf {
        self.dir.join(format!("{}.sock", id.as_str()))
    }

    fn spawn(&self, id: &MachineId) -> Result<MachineInfo, MachineError> {
        let child = firepit_testkit::guest::spawn_with_own_etc(&self.socket(id));
        self.running
            .lock()
            .unwrap()
            .insert(id.as_str().to_owned(), child);
        Ok(self.info(id))
    }

    fn pid(&self, id: &MachineId) -> Option<u32> {
        let mut running = self.running.lock().unwrap();
        let child = running.get_mut(id.as_str())?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            _ => None,
        }
    }

    fn info(&self, id: &MachineId) -> MachineInfo {
        let pid = self.pid(id);
        MachineInfo {
            id: id.clone(),
            state: if pid.is_some() {
                MachineState::Running
            } else {
                MachineState::Stopped
            },
            pid,
            address: None,
            guest: GuestAddress::Unix {
                path: self.socket(id),
                pid,
            },
        }
    }

    /// Ends a machine's guest (as if its init died).
    fn kill(&self, id: &str) {
        if let Some(mut child) = self.running.lock().unwrap().remove(id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl HostGuests {
    /// Ends every guest (the daemon's state outlives the test: its tasks
    /// hold it).
    fn kill_all(&self) {
        for (_, mut child) in self.running.lock().unwrap().drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Backend for HostGuests {
    fn create(&self, spec: &MachineSpec) -> Result<MachineInfo, MachineError> {
        self.spawn(&spec.id)
    }
    fn start(&self, id: &MachineId) -> Result<MachineInfo, MachineError> {
        self.spawn(id)
    }
    fn stop(&self, id: &MachineId) -> Result<(), MachineError> {
        self.kill(id.as_str());
        Ok(())
    }
    fn destroy(&self, id: &MachineId) -> Result<(), MachineError> {
        self.kill(id.as_str());
        Ok(())
    }
    fn inspect(&self, id: &MachineId) -> Result<MachineInfo, MachineError> {
        Ok(self.info(id))
    }
    fn recover(&self) -> Result<Vec<MachineInfo>, MachineError> {
        Ok(Vec::new())
    }
    fn guest_address(&self, id: &MachineId) -> Result<GuestAddress, MachineError> {
        Ok(self.info(id).guest)
    }
    fn dial(&self, id: &MachineId, addrs: &[SocketAddr]) -> Result<TcpStream, MachineError> {
        if self.pid(id).is_none() {
            return Err(MachineError::NotRunning(id.as_str().into()));
        }
        let stream = addrs
            .iter()
            .find_map(|a| TcpStream::connect(a).ok())
            .ok_or(MachineError::Refused(addrs.first().map_or(0, |a| a.port())))?;
        stream.set_nonblocking(true).unwrap();
        Ok(stream)
    }
    fn listen(&self, id: &MachineId, addr: SocketAddr) -> Result<TcpListener, MachineError> {
        if self.pid(id).is_none() {
            return Err(MachineError::NotRunning(id.as_str().into()));
        }
        let listener = TcpListener::bind(addr).map_err(|source| MachineError::Net {
            what: "listening on",
            addr,
            source,
        })?;
        listener.set_nonblocking(true).unwrap();
        Ok(listener)
    }
}

struct Daemon {
    app: App,
    guests: Arc<HostGuests>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.guests.kill_all();
    }
}

async fn daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let guests = Arc::new(HostGuests {
        dir: dir.path().to_owned(),
        running: Mutex::default(),
    });
    let app = app_on(&dir.path().join("data"), guests.clone(), |config| {
        // A model that is never asked: agents are made, not run.
        config.model = Some(firepit_agent::ModelConfig::new(
            firepit_agent::ProviderKind::OpenAiCompatible,
            "http://127.0.0.1:9/v1",
            None,
            "stand-in",
        ));
    });
    tiny_image(&app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(firepit_daemon::serve(
        listener,
        app.clone(),
        std::future::pending(),
    ));
    Daemon {
        app,
        guests,
        addr,
        _dir: dir,
    }
}

/// An app on the host's loopback that answers every request, keeping its
/// connections open.
fn app_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok",
                        );
                    }
                }
            });
        }
    });
    port
}

/// One preview request through the daemon's listener; the answer's status line.
async fn preview(d: &Daemon, session: &str, port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nhost: {port}-{session}.localhost\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("the preview answers")
        .unwrap();
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What a live session runs, made through the daemon: its agent, browser,
/// forge broker and an idle upstream socket. Returns what shows whether they
/// still live: the browser (weakly) and the broker's port.
async fn make_everything(
    d: &Daemon,
    id: &str,
    app_port: u16,
) -> (std::sync::Weak<firepit_browser::Browser>, u16) {
    let app = &d.app;
    let live = app.live().get(id).expect("the session is live");
    let agent = tokio::time::timeout(GUARD, app.agent(id))
        .await
        .expect("the agent is made")
        .unwrap();
    assert!(app.agent_if_made(id).is_some());
    drop(agent);
    let guest = app.guest(id).await.unwrap();
    let browser = app.browser(id, &guest);
    assert!(
        Arc::ptr_eq(&browser, &app.browser(id, &guest)),
        "one browser per session"
    );
    let weak = Arc::downgrade(&browser);
    drop(browser);
    app.store().set_session_repo(id, "octo/repo", None).unwrap();
    tokio::time::timeout(GUARD, app.start_broker(id))
        .await
        .expect("the broker starts")
        .unwrap();
    let broker = live.broker_port().expect("the broker has a port");
    assert!(live.broker_running());
    assert!(app.is_broker_port(id, broker));
    TcpStream::connect(("127.0.0.1", broker)).expect("the broker listens");
    assert!(preview(d, id, app_port).await.contains(" 200 "));
    // The proxy gives the upstream socket back to the pool once the answer
    // was read to its end, which may be just after the client has it.
    tokio::time::timeout(GUARD, async {
        while app.previews().idle(id) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the upstream socket is kept idle");
    assert_eq!(app.previews().idle(id), 1);
    (weak, broker)
}

/// Asserts that nothing of session `id`'s runtime is left.
fn assert_nothing_live(
    d: &Daemon,
    id: &str,
    browser: &std::sync::Weak<firepit_browser::Browser>,
    broker: u16,
) {
    let app = &d.app;
    assert!(app.live().get(id).is_none(), "the runtime is gone");
    assert!(app.agent_if_made(id).is_none(), "the agent is gone");
    assert!(app.browser_if_made(id).is_none(), "no browser is kept");
    assert!(browser.upgrade().is_none(), "the browser is dropped");
    assert!(!app.is_broker_port(id, broker));
    assert_eq!(
        TcpStream::connect(("127.0.0.1", broker))
            .map(|_| ())
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::ConnectionRefused,
        "the broker's socket is closed"
    );
    assert_eq!(
        app.previews().idle(id),
        0,
        "no idle upstream socket is kept"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A daemon with a running session and an app for its previews (on the
/// host's loopback); `None` where the host guests cannot run (not root).
async fn session() -> Option<(Daemon, firepit_wire::api::Session, u16)> {
    if !is_root() {
        eprintln!("skipped: the host guests need root (mount namespaces)");
        return None;
    }
    let d = daemon().await;
    let app_port = app_server();
    let s = d
        .app
        .create_session(CreateSession {
            image: Some("tiny".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    Some((d, s, app_port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_destroyed_session_leaves_nothing_running() {
    let Some((d, s, app_port)) = session().await else {
        return;
    };
    let app = &d.app;
    let (browser, broker) = make_everything(&d, &s.id, app_port).await;

    let stopped = app.stop_session(&s.id).await.unwrap();
    assert_eq!(stopped.state, SessionState::Stopped);
    assert_nothing_live(&d, &s.id, &browser, broker);
    assert!(app.live().is_empty());
    assert!(
        preview(&d, &s.id, app_port).await.contains(" 409 "),
        "the preview says the session is stopped"
    );

    let started = app.start_session(&s.id).await.unwrap();
    assert_eq!(started.state, SessionState::Running);
    assert!(app.live().get(&s.id).is_some(), "live again");
    // The broker came back with the machine.
    let again = app.live().get(&s.id).unwrap().broker_port();
    assert!(again.is_some());
    let (browser, broker) = make_everything(&d, &s.id, app_port).await;

    app.destroy_session(&s.id).await.unwrap();
    assert_nothing_live(&d, &s.id, &browser, broker);
    assert!(app.live().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_ends_on_its_own_takes_its_runtime_with_it() {
    let Some((d, s, app_port)) = session().await else {
        return;
    };
    let app = &d.app;
    let (browser, broker) = make_everything(&d, &s.id, app_port).await;
    d.guests.kill(&s.id);
    // The next use notices (the watcher may be first).
    tokio::time::timeout(GUARD, async {
        while app.live().contains(&s.id) {
            let _ = app.guest(&s.id).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the ended machine is noticed");
    assert_eq!(
        app.store().session(&s.id).unwrap().state,
        SessionState::Stopped
    );
    // Its tasks were aborted, not awaited: their sockets close as they end.
    tokio::time::timeout(GUARD, async {
        while TcpStream::connect(("127.0.0.1", broker)).is_ok() || browser.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broker's socket closes and the browser is dropped");
    assert_nothing_live(&d, &s.id, &browser, broker);
}
