//! Services kept with their session (`firepit service …`): they come back
//! with their port after a stop and start, and a fork runs its parent's;
//! terminals other than `main` are made and closed; `main`'s history is kept
//! across a stop and start.

use std::time::{Duration, Instant};

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::Daemon;
use crate::terminal::{attach, read_until};

/// Waits (a guard, not a measurement) until `check` holds for `firepit args`'s output.
fn until(d: &Daemon, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let out = d.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && check(&text) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} never came: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn line<'a>(ls: &'a str, name: &str) -> &'a str {
    ls.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {ls}"))
}

/// Starts in session `id` a kept service `web` that answers HTTP on `port`
/// and a kept service `idle`, stopped; waits for the port.
fn web_and_idle(d: &Daemon, id: &str, port: u16) {
    let server = format!("python3 -u -m http.server {port} --bind 127.0.0.1");
    d.ok(&[
        "service",
        "start",
        id,
        "web",
        "--restart",
        "on-failure",
        "--",
        &server,
    ]);
    d.ok(&["service", "start", id, "idle", "--", "exec sleep 1000"]);
    d.ok(&["service", "stop", id, "idle"]);
    let port = port.to_string();
    until(d, &["ports", id], &format!("port {port}"), |o| {
        o.contains(&port)
    });
    let ls = d.ok(&["service", "ls", id]);
    assert!(line(&ls, "web").contains("running"), "{ls}");
    assert!(line(&ls, "idle").contains("stopped"), "{ls}");
}

/// The HTTP status of `GET /` on `port` inside session `id`.
fn status(d: &Daemon, id: &str, port: u16) -> String {
    d.sh(
        id,
        &format!(
            "python3 -c 'import urllib.request;print(urllib.request.urlopen(\"http://127.0.0.1:{port}/\").status)'"
        ),
    )
    .trim()
    .to_owned()
}

#[test]
fn a_service_comes_back_with_its_port_after_stop_and_start() {
    let d = Daemon::start("sv1");
    let id = d.new_session(&[]);
    web_and_idle(&d, &id, 8123);

    d.ok(&["stop", &id]);
    // A stopped session lists what it keeps.
    let ls = d.ok(&["service", "ls", &id]);
    assert!(line(&ls, "web").contains("stopped"), "{ls}");
    d.ok(&["start", &id]);
    until(&d, &["ports", &id], "port 8123 after the start", |o| {
        o.contains("8123")
    });
    assert_eq!(status(&d, &id, 8123), "200");
    let ls = d.ok(&["service", "ls", &id]);
    assert!(line(&ls, "web").contains("running"), "{ls}");
    // What was stopped stays stopped, but can be started by name.
    assert!(line(&ls, "idle").contains("stopped"), "{ls}");
    d.ok(&["service", "start", &id, "idle"]);
    let ls = d.ok(&["service", "ls", &id]);
    assert!(line(&ls, "idle").contains("running"), "{ls}");

    // Restart: a new process with the kept spec.
    let pid = |ls: &str| {
        line(ls, "web")
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_owned()
    };
    let before = pid(&d.ok(&["service", "ls", &id]));
    d.ok(&["service", "restart", &id, "web"]);
    let after = pid(&d.ok(&["service", "ls", &id]));
    assert_ne!(before, after);

    // Logs, cleared.
    until(&d, &["service", "logs", &id, "web"], "the log", |o| {
        o.contains("Serving HTTP")
    });
    d.ok(&["service", "logs", &id, "web", "--clear"]);
    assert!(
        !d.ok(&["service", "logs", &id, "web"])
            .contains("Serving HTTP")
    );

    // Forgotten: gone from the list and not back after a stop and start.
    d.ok(&["service", "rm", &id, "web"]);
    let ls = d.ok(&["service", "ls", &id]);
    // The machine still tells of the process that ended.
    assert!(line(&ls, "web").contains("stopped"), "{ls}");
    d.ok(&["stop", &id]);
    d.ok(&["start", &id]);
    let ls = d.ok(&["service", "ls", &id]);
    assert!(!ls.contains("web"), "{ls}");
    assert!(line(&ls, "idle").contains("running"), "{ls}");

    // Clear errors for what is not there.
    let out = d.run(&["service", "start", &id, "nothing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no service \"nothing\""), "{err}");
    let out = d.run(&["service", "restart", &id, "nothing"]);
    assert!(!out.status.success());
}

#[test]
fn a_fork_keeps_and_runs_its_parents_services() {
    let d = Daemon::start("sv3");
    let id = d.new_session(&[]);
    web_and_idle(&d, &id, 8124);

    let child = d.ok(&["fork", &id]).trim().to_owned();
    assert_ne!(child, id);
    until(&d, &["ports", &child], "the child's port 8124", |o| {
        o.contains("8124")
    });
    let ls = d.ok(&["service", "ls", &child]);
    assert!(line(&ls, "web").contains("running"), "{ls}");
    // What the parent keeps stopped, the child keeps stopped.
    assert!(line(&ls, "idle").contains("stopped"), "{ls}");
    assert_eq!(status(&d, &child, 8124), "200");

    // The child's are its own from then on: they come back with it, and
    // forgetting one there leaves the parent's.
    d.ok(&["stop", &child]);
    d.ok(&["start", &child]);
    until(
        &d,
        &["ports", &child],
        "the child's port after its start",
        |o| o.contains("8124"),
    );
    d.ok(&["service", "rm", &child, "idle"]);
    assert!(!d.ok(&["service", "ls", &child]).contains("idle"));
    let ls = d.ok(&["service", "ls", &id]);
    assert!(line(&ls, "idle").contains("stopped"), "{ls}");
    assert!(line(&ls, "web").contains("running"), "{ls}");
}

#[tokio::test]
async fn terminals_beside_main_and_mains_history_across_stop_and_start() {
    let d = Daemon::start("sv2");
    let id = d.new_session(&[]);
    let http = d.http();
    let pty = |name: &str| format!("{}/v1/sessions/{id}/pty/{name}", d.url);

    // A second terminal is a shell of its own; it can be closed, `main` not.
    let mut second = d.websocket(&format!("/v1/sessions/{id}/pty/second")).await;
    second
        .send(Message::binary(b"echo second-$((2*3))\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut second, "second-6").await;
    let list: serde_json::Value = http
        .get(format!("{}/v1/sessions/{id}/pty", d.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"main") && names.contains(&"second"),
        "{list}"
    );
    let r = http.delete(pty("main")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "main_terminal");
    let r = http.delete(pty("second")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = http.delete(pty("second")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // `main`'s history comes back after a stop and start, marked.
    let mut main = attach(&d, &id).await;
    main.send(Message::binary(b"echo kept-$((6*7))\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut main, "kept-42").await;
    drop(main);
    d.ok(&["stop", &id]);
    d.ok(&["start", &id]);
    let mut main = attach(&d, &id).await;
    let seen = read_until(&mut main, "a new shell begins below").await;
    assert!(seen.contains("kept-42"), "{seen:?}");
    // The file is bounded and the daemon's own.
    let kept = d.data_dir().join("scrollback").join(&id);
    let meta = std::fs::metadata(&kept).unwrap();
    assert!(meta.len() <= 256 * 1024);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A flood in the shell keeps the file at its bound.
    main.send(Message::binary(
        b"head -c 3000000 /dev/zero | tr '\\0' x; echo; echo flood-$((5*5))\r".to_vec(),
    ))
    .await
    .unwrap();
    read_until(&mut main, "flood-25").await;
    drop(main);
    d.ok(&["stop", &id]);
    assert!(std::fs::metadata(&kept).unwrap().len() <= 256 * 1024);
    d.ok(&["rm", &id]);
    assert!(!kept.exists());
}
