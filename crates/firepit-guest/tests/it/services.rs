//! Services end to end.

use firepit_guest_client::{
    Command, ErrorKind, LogStream, OutputStream, RestartPolicy, ServiceEvent, ServiceSpec,
    ServiceState,
};

use crate::{Harness, guard};

fn spec(name: &str, line: &str, restart: RestartPolicy) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        command: Command::Shell(line.into()),
        env: vec![],
        cwd: None,
        restart,
    }
}

async fn read_until(logs: &mut LogStream, needle: &str) -> Vec<(OutputStream, String)> {
    let mut seen = Vec::new();
    guard(async {
        while !seen
            .iter()
            .any(|(_, s): &(OutputStream, String)| s.contains(needle))
        {
            let c = logs.next().await.unwrap().expect("log ended");
            seen.push((c.stream, String::from_utf8_lossy(&c.data).into_owned()));
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn on_failure_restarts_and_logs_follow() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let info = guard(h.client.service_start(spec(
        "flaky",
        "echo started; echo oops >&2; exit 1",
        RestartPolicy::OnFailure,
    )))
    .await
    .unwrap();
    assert_eq!(info.name, "flaky");
    let mut logs = guard(h.client.service_logs("flaky", None, true))
        .await
        .unwrap();
    let seen = read_until(&mut logs, "oops").await;
    assert!(
        seen.iter()
            .any(|(s, t)| *s == OutputStream::Stderr && t.contains("oops"))
    );
    assert!(
        seen.iter()
            .any(|(s, t)| *s == OutputStream::Stdout && t.contains("started"))
    );
    guard(async {
        loop {
            let l = h.client.service_list().await.unwrap();
            if l[0].restarts >= 2 {
                assert_eq!(l[0].last_exit.unwrap().code, Some(1));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    guard(h.client.service_stop("flaky")).await.unwrap();
    assert_eq!(
        h.client.service_list().await.unwrap()[0].state,
        ServiceState::Stopped
    );
}

#[tokio::test]
async fn stop_tail_and_errors() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    guard(h.client.service_start(spec(
        "web",
        "echo line1; echo line2; exec sleep 1000",
        RestartPolicy::Always,
    )))
    .await
    .unwrap();
    let err = guard(
        h.client
            .service_start(spec("web", "true", RestartPolicy::Never)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let mut logs = guard(h.client.service_logs("web", None, true))
        .await
        .unwrap();
    read_until(&mut logs, "line2").await;
    let mut tail = guard(h.client.service_logs("web", Some(6), false))
        .await
        .unwrap();
    let c = guard(tail.next()).await.unwrap().unwrap();
    assert_eq!(c.data, "line2\n");
    assert!(guard(tail.next()).await.unwrap().is_none());
    let l = h.client.service_list().await.unwrap();
    assert_eq!(l[0].state, ServiceState::Running);
    assert!(l[0].pid.is_some());
    guard(h.client.service_stop("web")).await.unwrap();
    let l = h.client.service_list().await.unwrap();
    assert_eq!(l[0].state, ServiceState::Stopped);
    assert_eq!(l[0].last_exit.unwrap().signal, Some(libc::SIGTERM));
    let err = guard(h.client.service_logs("nope", None, false))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = guard(
        h.client
            .service_start(spec("bad", "x", RestartPolicy::Never)),
    )
    .await;
    assert!(
        err.is_ok(),
        "a shell line starts sh; sh reports the missing command in the log"
    );
    let mut argv = spec("bad2", "", RestartPolicy::Never);
    argv.command = Command::Argv(vec!["no-such-program-xyz".into()]);
    assert_eq!(
        guard(h.client.service_start(argv))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn a_watch_sees_starts_restarts_and_exits() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let mut watch = guard(h.client.watch_services()).await.unwrap();
    let info = guard(
        h.client
            .service_start(spec("twice", "exit 3", RestartPolicy::OnFailure)),
    )
    .await
    .unwrap();
    let first_pid = info.pid.unwrap();
    // Started, exited, started again (a restart), exited again.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(guard(watch.next()).await.unwrap().expect("watch ended"));
    }
    assert_eq!(
        seen[0],
        ServiceEvent::Started {
            name: "twice".into(),
            pid: first_pid
        }
    );
    match &seen[1] {
        ServiceEvent::Exited { name, status } => {
            assert_eq!(name, "twice");
            assert_eq!(status.code, Some(3));
        }
        other => panic!("expected an exit, got {other:?}"),
    }
    assert!(
        matches!(&seen[2], ServiceEvent::Started { name, pid } if name == "twice" && *pid != first_pid),
        "{seen:?}"
    );
    assert!(matches!(&seen[3], ServiceEvent::Exited { .. }), "{seen:?}");
    guard(h.client.service_stop("twice")).await.unwrap();

    // A second service shows up on the same watch; stopping it is an exit by SIGTERM.
    guard(
        h.client
            .service_start(spec("sleeper", "exec sleep 1000", RestartPolicy::Never)),
    )
    .await
    .unwrap();
    let stopped = guard(async {
        loop {
            match watch.next().await.unwrap().expect("watch ended") {
                ServiceEvent::Started { name, .. } if name == "sleeper" => {
                    h.client.service_stop("sleeper").await.unwrap();
                }
                ServiceEvent::Exited { name, status } if name == "sleeper" => return status,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(stopped.signal, Some(libc::SIGTERM));
    drop(watch);
    // The connection still works after the watch was dropped (cancelled).
    assert_eq!(guard(h.client.service_list()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_cleared_log_starts_again_empty_while_the_service_runs() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    guard(h.client.service_start(spec(
        "talk",
        "echo before; exec sleep 100",
        RestartPolicy::Never,
    )))
    .await
    .unwrap();
    let mut logs = guard(h.client.service_logs("talk", None, true))
        .await
        .unwrap();
    read_until(&mut logs, "before").await;
    guard(h.client.service_clear_log("talk")).await.unwrap();
    let tail = guard(async {
        h.client
            .service_logs("talk", None, false)
            .await
            .unwrap()
            .read_tail(1 << 20)
            .await
            .unwrap()
    })
    .await;
    assert!(tail.is_empty(), "{:?}", String::from_utf8_lossy(&tail));
    let l = h.client.service_list().await.unwrap();
    assert_eq!(l[0].state, ServiceState::Running);
    let err = guard(h.client.service_clear_log("nope")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    guard(h.client.service_stop("talk")).await.unwrap();
}
