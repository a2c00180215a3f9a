//! Port watching inside real machines: the guest's `listen()` filter is in
//! every process of the machine (stacked on the machine's own), and ports
//! opened by processes started every way are announced open and closed, a
//! burst of fifty whole, while `listen()` keeps its errors.
//!
//! The test talks to the session's guest directly (its socket in the daemon's
//! run dir), like the daemon's own watcher does. That the events alone (no
//! rescan) find every port is proven by the guest's tests; the bench measures
//! how fast they do inside machines.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use firepit_guest_client::{
    Command, Exec, ExecRequest, GuestClient, PortEvent, PortInfo, PortWatch, RestartPolicy,
    ServiceSpec,
};

use crate::harness::Daemon;

const GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting: {what}"))
}

/// The guest tests' listener (see there): listens, says where, sleeps.
const LISTENER: &str = include_str!("../../../firepit-guest/tests/it/listener.py");

/// `listen()` on a bad descriptor, a file and a UDP socket: the errnos, in order.
const BAD_LISTENS: &str = include_str!("../../../firepit-guest/tests/it/bad_listens.py");

/// Runs a shell line in the machine; its stdout, insisting on success.
async fn sh(g: &GuestClient, line: &str) -> String {
    let out = guard(line, async {
        g.exec(ExecRequest::shell(line))
            .await
            .unwrap()
            .output(1 << 20)
            .await
            .unwrap()
    })
    .await;
    assert!(out.status.success(), "{line}: {out:?}");
    String::from_utf8_lossy(&out.stdout.to_bytes()).into_owned()
}

/// Waits until the listener wrote `/tmp/<tag>`; its pid and ports.
async fn listening(g: &GuestClient, tag: &str) -> (u32, BTreeSet<PortInfo>) {
    let text = guard(tag, async {
        loop {
            if let Ok(b) = g.read_file_all(&format!("/tmp/{tag}"), 1 << 20).await {
                return String::from_utf8(b.to_vec()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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
    (pid, ports)
}

/// Waits until every one of `want` was announced opened (or closed).
async fn announced(w: &mut PortWatch, want: &BTreeSet<PortInfo>, opened: bool) {
    let mut left = want.clone();
    guard(&format!("{want:?} announced (opened: {opened})"), async {
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

/// Puts the listener program in the machine, starts a port watch, and runs
/// the listener (by exec, tagged `tag`) on 127.0.0.1 and 0.0.0.0, and on ::1
/// and :: where the machine has IPv6: the watch, whether it has, and the
/// running exec.
async fn watch_and_listen(g: &GuestClient, tag: &str) -> (PortWatch, bool, Exec) {
    guard(
        "writing the listener",
        g.write_file_all(
            "/tmp/listener.py",
            Bytes::from_static(LISTENER.as_bytes()),
            Default::default(),
        ),
    )
    .await
    .unwrap();
    let w = guard("the watch", g.watch_ports()).await.unwrap();
    let v6 = sh(
        g,
        "python3 -c \"import socket; socket.socket(socket.AF_INET6).bind(('::1', 0))\" && echo yes || true",
    )
    .await
    .contains("yes");
    let addrs = if v6 {
        "127.0.0.1 0.0.0.0 ::1 ::"
    } else {
        "127.0.0.1 0.0.0.0"
    };
    let exec = guard(
        "exec",
        g.exec(ExecRequest::shell(format!(
            "python3 /tmp/listener.py /tmp/{tag} {addrs}"
        ))),
    )
    .await
    .unwrap();
    (w, v6, exec)
}

fn run(tag: &str) -> String {
    format!("python3 /tmp/listener.py /tmp/{tag} 127.0.0.1")
}

#[tokio::test]
async fn ports_opened_every_way_inside_a_machine_are_announced() {
    let d = Daemon::start("pt1");
    let id = d.new_session(&[]);
    let sock = d.data_dir().join("run").join(&id).join("guest.sock");
    let g = GuestClient::connect_unix(&sock).await.unwrap();

    // Every process of the machine carries the machine's filter and the guest's.
    let status = sh(&g, "grep Seccomp_filters /proc/self/status").await;
    assert_eq!(status.split_whitespace().nth(1), Some("2"), "{status}");
    assert!(
        !d.guest_logs().contains("cannot be reported"),
        "{}",
        d.guest_logs()
    );
    // The filter's listener is the guest's alone: no child holds it, and the
    // guest's descriptors are out of the machine's reach.
    let fds = sh(&g, "ls -l /proc/self/fd/ /proc/$$/fd/").await;
    assert!(!fds.contains("seccomp"), "{fds}");
    let guest_fds = sh(
        &g,
        "for f in /proc/1/fd/*; do readlink $f || echo refused; cat $f </dev/null >/dev/null 2>&1 && echo opened; done 2>/dev/null; true",
    )
    .await;
    assert!(
        guest_fds.lines().count() > 3 && guest_fds.lines().all(|l| l == "refused"),
        "{guest_fds}"
    );

    // Every address; IPv6 where the machine has it.
    let (mut w, v6, _exec) = watch_and_listen(&g, "exec").await;
    // A shell inside a shell.
    let nested = format!("bash -c \"sh -c '{}'\"", run("nested"));
    let _nested = guard("nested", g.exec(ExecRequest::shell(nested)))
        .await
        .unwrap();
    // A service.
    guard(
        "service",
        g.service_start(ServiceSpec {
            name: "web".into(),
            command: Command::Shell(run("service")),
            env: vec![],
            cwd: None,
            restart: RestartPolicy::Never,
        }),
    )
    .await
    .unwrap();
    // A daemon: fork, setsid, fork; reparented to the guest.
    sh(
        &g,
        "python3 /tmp/listener.py /tmp/daemon --daemon 127.0.0.1",
    )
    .await;
    // The shared shell, ended by ^C below (bash reaps it, not the guest).
    let pty = guard("main pty", g.pty_attach("main", None)).await.unwrap();
    guard(
        "typing",
        pty.input(Bytes::from(format!("{}\r", run("pty")))),
    )
    .await
    .unwrap();

    let mut all = BTreeSet::new();
    let mut pids = Vec::new();
    for tag in ["exec", "nested", "service", "daemon"] {
        let (pid, ports) = listening(&g, tag).await;
        all.extend(ports);
        pids.push(pid.to_string());
    }
    let (_, typed) = listening(&g, "pty").await;
    all.extend(typed.iter().copied());
    assert_eq!(all.len(), if v6 { 8 } else { 6 }, "{all:?}");
    announced(&mut w, &all, true).await;
    sh(&g, &format!("kill {}", pids.join(" "))).await;
    guard("^C", pty.input(Bytes::from_static(b"\x03")))
        .await
        .unwrap();
    announced(&mut w, &all, false).await;

    // Fifty at once.
    let burst = format!(
        "python3 /tmp/listener.py /tmp/burst{}",
        " 127.0.0.1".repeat(50)
    );
    let _burst = guard("burst", g.exec(ExecRequest::shell(burst)))
        .await
        .unwrap();
    let (pid, ports) = listening(&g, "burst").await;
    assert_eq!(ports.len(), 50);
    announced(&mut w, &ports, true).await;
    sh(&g, &format!("kill {pid}")).await;
    announced(&mut w, &ports, false).await;

    // listen() keeps the kernel's answers.
    guard(
        "writing the listen() checks",
        g.write_file_all(
            "/tmp/bad.py",
            Bytes::from_static(BAD_LISTENS.as_bytes()),
            Default::default(),
        ),
    )
    .await
    .unwrap();
    let errs = sh(&g, "python3 /tmp/bad.py").await;
    use nix::errno::Errno;
    let want: Vec<String> = [
        Errno::EBADF,
        Errno::EBADF,
        Errno::ENOTSOCK,
        Errno::EOPNOTSUPP,
    ]
    .iter()
    .map(|e| (*e as i32).to_string())
    .collect();
    assert_eq!(errs.trim(), want.join(" "));
}

/// Sibling sessions of the crowded test: `FIREPIT_TEST_SIBLINGS`, default 200.
fn siblings() -> usize {
    std::env::var("FIREPIT_TEST_SIBLINGS").map_or(200, |v| {
        v.parse()
            .expect("FIREPIT_TEST_SIBLINGS is a number of sessions")
    })
}

#[tokio::test]
async fn ports_are_announced_in_a_machine_with_hundreds_of_siblings() {
    // A subnet of its own that holds more than an instance's /24.
    let d = Daemon::start_with("pt2", &[("FIREPIT_SUBNET", "10.241.0.0/20")]);
    let http = d.http();
    let create = |http: reqwest::Client, url: String| async move {
        let r = http
            .post(format!("{url}/v1/sessions"))
            .json(&serde_json::json!({ "network": "nat" }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A few at a time: the daemon makes them side by side.
    let mut ids = Vec::new();
    let count = siblings();
    while ids.len() < count {
        let batch = (count - ids.len()).min(8);
        let made =
            futures::future::join_all((0..batch).map(|_| create(http.clone(), d.url.clone())))
                .await;
        ids.extend(made);
    }
    let id = create(http.clone(), d.url.clone()).await;
    let sock = d.data_dir().join("run").join(&id).join("guest.sock");
    let g = GuestClient::connect_unix(&sock).await.unwrap();
    // Loopback and every address, IPv4 and IPv6 (where the machine has it).
    let (mut w, v6, _exec) = watch_and_listen(&g, "crowded").await;
    let (pid, ports) = listening(&g, "crowded").await;
    assert_eq!(ports.len(), if v6 { 4 } else { 2 }, "{ports:?}");
    announced(&mut w, &ports, true).await;
    // The daemon's own watch, among hundreds, logs each as opened.
    let logged = |opened: bool| {
        let (http, url, id, ports) = (http.clone(), d.url.clone(), id.clone(), ports.clone());
        async move {
            let kind = if opened { "port_opened" } else { "port_closed" };
            loop {
                let events: Vec<serde_json::Value> = http
                    .get(format!("{url}/v1/sessions/{id}/events"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let seen: BTreeSet<(String, u64)> = events
                    .iter()
                    .filter(|e| e["type"] == kind)
                    .map(|e| {
                        (
                            e["addr"].as_str().unwrap_or_default().to_owned(),
                            e["port"].as_u64().unwrap_or_default(),
                        )
                    })
                    .collect();
                if ports
                    .iter()
                    .all(|p| seen.contains(&(p.addr.to_string(), u64::from(p.port))))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    guard("the daemon logged the ports opened", logged(true)).await;
    sh(&g, &format!("kill {pid}")).await;
    announced(&mut w, &ports, false).await;
    guard("the daemon logged the ports closed", logged(false)).await;
    // Every sibling at once: each destroy answers.
    let destroys = ids.iter().map(|sid| {
        let (http, url) = (http.clone(), d.url.clone());
        async move {
            let r = http
                .delete(format!("{url}/v1/sessions/{sid}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT, "{sid}");
        }
    });
    guard(
        "destroying the siblings",
        futures::future::join_all(destroys),
    )
    .await;
    let left: Vec<serde_json::Value> = http
        .get(format!("{}/v1/sessions", d.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
}
