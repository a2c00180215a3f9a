//! Port watching end to end, with the guest on the host (its children carry its
//! `listen()` filter; the rest of the host does not).
//!
//! Most tests start the guest with `--port-rescan-ms 0`: no safety rescan, so a port
//! is announced only if the guest was told of its `listen()` (or of its end) by the
//! kernel. A missed one hangs its test until the guard fails it. The same flows run
//! inside real machines in the `firepit` crate's `ports` tests.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use firepit_guest_client::{
    Command, ExecRequest, PortEvent, PortInfo, PortWatch, RestartPolicy, ServiceSpec,
};

use crate::{Harness, guard};

/// Listens on each address given (port 0), writes `pid N` and `ADDR PORT` lines to
/// the file named first (whole, by a rename), then sleeps until killed. With
/// `--daemon` first it leaves its parent behind first: fork, `setsid`, fork again.
const LISTENER: &str = include_str!("listener.py");

/// `listen()` on a bad descriptor, a file and a UDP socket: the errnos, in order.
const BAD_LISTENS: &str = include_str!("bad_listens.py");

/// A scratch dir with the listener program in it.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("listener.py"), LISTENER).unwrap();
        Scratch(d)
    }

    fn program(&self) -> String {
        self.0.path().join("listener.py").display().to_string()
    }

    fn out(&self, tag: &str) -> PathBuf {
        self.0.path().join(tag)
    }
}

/// What a listener wrote: its pid and its ports.
struct Listening {
    pid: i32,
    ports: BTreeSet<PortInfo>,
}

/// Waits until the listener wrote `out`; reads it.
async fn listening(out: &Path) -> Listening {
    let text = guard(async {
        loop {
            if let Ok(t) = std::fs::read_to_string(out) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut pid = 0;
    let mut ports = BTreeSet::new();
    for line in text.lines() {
        let (a, b) = line.split_once(' ').unwrap();
        if a == "pid" {
            pid = b.parse().unwrap();
        } else {
            ports.insert(PortInfo {
                addr: a.parse().unwrap(),
                port: b.parse().unwrap(),
            });
        }
    }
    Listening { pid, ports }
}

/// Waits until every one of `want` was announced (other ports of the host come and go).
async fn announced(w: &mut PortWatch, want: &BTreeSet<PortInfo>, opened: bool) {
    let mut left = want.clone();
    guard(async {
        while !left.is_empty() {
            match w.next().await.unwrap().expect("watch ended") {
                PortEvent::Opened(p) if opened => left.remove(&p),
                PortEvent::Closed(p) if !opened => left.remove(&p),
                _ => false,
            };
        }
    })
    .await
}

fn kill(pid: i32) {
    // SAFETY: plain syscall, on a pid the listener just reported.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// The `Seccomp_filters:` count of a process.
fn filters(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The guest installed its `listen()` filter (else its watches would poll, and
/// these tests would prove nothing about the events).
fn assert_listen_filter(h: &Harness) {
    assert_eq!(
        filters(&h.socket_owner().to_string()),
        filters("self") + 1,
        "the guest has its listen() filter"
    );
}

fn events_only() -> &'static [&'static str] {
    &["--no-main-pty", "--port-rescan-ms", "0"]
}

#[tokio::test]
async fn ports_on_every_address_are_announced_open_then_closed() {
    let h = Harness::start_with(events_only()).await;
    assert_listen_filter(&h);
    let s = Scratch::new();
    let mut w = guard(h.client.watch_ports()).await.unwrap();
    let mut argv = vec![
        "python3".to_owned(),
        s.program(),
        s.out("all").display().to_string(),
    ];
    argv.extend(["127.0.0.1", "0.0.0.0"].map(String::from));
    if has_ipv6() {
        argv.extend(["::1", "::"].map(String::from));
    }
    let _exec = guard(h.client.exec(ExecRequest::argv(argv))).await.unwrap();
    let l = listening(&s.out("all")).await;
    assert_eq!(l.ports.len(), if has_ipv6() { 4 } else { 2 });
    for p in &l.ports {
        assert!(!w.initial().contains(p));
    }
    announced(&mut w, &l.ports, true).await;
    let now = guard(h.client.list_ports()).await.unwrap();
    assert!(l.ports.iter().all(|p| now.contains(p)), "{now:?}");
    kill(l.pid);
    announced(&mut w, &l.ports, false).await;
}

#[tokio::test]
async fn ports_of_processes_started_every_way_are_announced() {
    let h = Harness::start_with(events_only()).await;
    assert_listen_filter(&h);
    let s = Scratch::new();
    let mut w = guard(h.client.watch_ports()).await.unwrap();
    let run = |tag: &str| format!("python3 {} {} 127.0.0.1", s.program(), s.out(tag).display());

    // exec, and a shell inside a shell inside exec.
    let _exec = guard(h.client.exec(ExecRequest::shell(run("exec"))))
        .await
        .unwrap();
    let nested = format!("bash -c \"sh -c '{}'\"", run("nested"));
    let _nested = guard(h.client.exec(ExecRequest::shell(nested)))
        .await
        .unwrap();
    // A service.
    guard(h.client.service_start(ServiceSpec {
        name: "web".into(),
        command: Command::Shell(run("service")),
        env: vec![],
        cwd: None,
        restart: RestartPolicy::Never,
    }))
    .await
    .unwrap();
    // A daemon: its parent exits, it is reparented to the guest.
    let daemon = format!(
        "python3 {} {} --daemon 127.0.0.1",
        s.program(),
        s.out("daemon").display()
    );
    let out = guard(async {
        h.client
            .exec(ExecRequest::shell(daemon))
            .await
            .unwrap()
            .output(1 << 20)
            .await
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut all = BTreeSet::new();
    let mut pids = Vec::new();
    for tag in ["exec", "nested", "service", "daemon"] {
        let l = listening(&s.out(tag)).await;
        all.extend(l.ports);
        pids.push(l.pid);
    }
    announced(&mut w, &all, true).await;
    for pid in pids {
        kill(pid);
    }
    announced(&mut w, &all, false).await;

    // Typed into a shell on a pty, and ended by ^C: the shell, not the guest, reaps it.
    let pty = guard(h.client.pty_attach("ports", Some(Default::default())))
        .await
        .unwrap();
    guard(pty.input(Bytes::from(format!("{}\r", run("pty")))))
        .await
        .unwrap();
    let l = listening(&s.out("pty")).await;
    announced(&mut w, &l.ports, true).await;
    guard(pty.input(Bytes::from_static(b"\x03"))).await.unwrap();
    announced(&mut w, &l.ports, false).await;
}

#[tokio::test]
async fn a_burst_of_fifty_ports_is_announced_whole() {
    let h = Harness::start_with(events_only()).await;
    assert_listen_filter(&h);
    let s = Scratch::new();
    let mut w = guard(h.client.watch_ports()).await.unwrap();
    let mut argv = vec![
        "python3".to_owned(),
        s.program(),
        s.out("burst").display().to_string(),
    ];
    argv.extend(std::iter::repeat_n("127.0.0.1".to_owned(), 50));
    let _exec = guard(h.client.exec(ExecRequest::argv(argv))).await.unwrap();
    let l = listening(&s.out("burst")).await;
    assert_eq!(l.ports.len(), 50);
    announced(&mut w, &l.ports, true).await;
    kill(l.pid);
    announced(&mut w, &l.ports, false).await;
}

#[tokio::test]
async fn children_never_hold_the_filters_listener() {
    let h = Harness::start_with(events_only()).await;
    assert_listen_filter(&h);
    let out = guard(async {
        h.client
            .exec(ExecRequest::shell("ls -l /proc/self/fd/ /proc/$$/fd/"))
            .await
            .unwrap()
            .output(1 << 20)
            .await
    })
    .await
    .unwrap();
    let fds = String::from_utf8_lossy(&out.stdout.to_bytes()).into_owned();
    assert!(out.status.success() && fds.contains("/dev/"), "{out:?}");
    assert!(!fds.contains("seccomp"), "{fds}");
}

#[tokio::test]
async fn listen_keeps_its_errors() {
    let h = Harness::start_with(events_only()).await;
    let out = guard(async {
        h.client
            .exec(ExecRequest::argv(["python3", "-c", BAD_LISTENS]))
            .await
            .unwrap()
            .output(1 << 20)
            .await
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let want = [libc::EBADF, libc::EBADF, libc::ENOTSOCK, libc::EOPNOTSUPP];
    let want: Vec<String> = want.iter().map(i32::to_string).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout.to_bytes()).trim(),
        want.join(" ")
    );
}

#[tokio::test]
async fn listeners_outside_the_guest_are_found_by_the_rescan() {
    // The test process is not the guest's child: its listen() is not reported.
    let h = Harness::start_with(&["--no-main-pty", "--port-rescan-ms", "50"]).await;
    let mut w = guard(h.client.watch_ports()).await.unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = PortInfo {
        addr: "127.0.0.1".parse().unwrap(),
        port: l.local_addr().unwrap().port(),
    };
    announced(&mut w, &BTreeSet::from([p]), true).await;
    drop(l);
    announced(&mut w, &BTreeSet::from([p]), false).await;
}

#[tokio::test]
async fn polling_still_sees_every_listener() {
    let h = Harness::start_with(&["--no-main-pty", "--port-poll"]).await;
    assert_eq!(filters(&h.socket_owner().to_string()), filters("self"));
    let mut w = guard(h.client.watch_ports()).await.unwrap();
    for host in ["127.0.0.1", "0.0.0.0"] {
        let l = std::net::TcpListener::bind(format!("{host}:0")).unwrap();
        let p = PortInfo {
            addr: host.parse::<IpAddr>().unwrap(),
            port: l.local_addr().unwrap().port(),
        };
        announced(&mut w, &BTreeSet::from([p]), true).await;
        drop(l);
        announced(&mut w, &BTreeSet::from([p]), false).await;
    }
}

#[tokio::test]
async fn the_initial_set_holds_ports_already_open() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = PortInfo {
        addr: "127.0.0.1".parse().unwrap(),
        port: l.local_addr().unwrap().port(),
    };
    let w = guard(h.client.watch_ports()).await.unwrap();
    assert!(w.initial().contains(&p), "{:?}", w.initial());
}
