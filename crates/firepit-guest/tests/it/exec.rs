//! exec end to end.

use bytes::Bytes;
use firepit_guest_client::{ErrorKind, ExecEvent, ExecRequest};

use crate::{Harness, guard};

#[tokio::test]
async fn exec_streams_stdout_stderr_and_exit_code() {
    let h = Harness::start().await;
    let out = guard(async {
        h.client
            .exec(ExecRequest::shell("echo out; echo err >&2; exit 3"))
            .await
            .unwrap()
            .output()
            .await
    })
    .await
    .unwrap();
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.status.code, Some(3));
    assert!(!out.status.timed_out);
}

#[tokio::test]
async fn exec_argv_env_and_cwd() {
    let h = Harness::start().await;
    let mut req = ExecRequest::argv(["sh", "-c", "echo $FOO; pwd; echo $LANG"]);
    req.env.push(("FOO".into(), "bar".into()));
    req.cwd = Some("/tmp".into());
    let out = guard(async { h.client.exec(req).await.unwrap().output().await })
        .await
        .unwrap();
    assert_eq!(out.stdout, "bar\n/tmp\nC.UTF-8\n");
    assert!(out.status.success());
}

#[tokio::test]
async fn exec_command_not_found_is_a_clear_error() {
    let h = Harness::start().await;
    let err = guard(
        h.client
            .exec(ExecRequest::argv(["definitely-not-a-command-xyz"])),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "command not found: definitely-not-a-command-xyz"
    );
    let mut req = ExecRequest::argv(["true"]);
    req.cwd = Some("/no/such/dir".into());
    let err = guard(h.client.exec(req)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn exec_kill_signals_the_group() {
    let h = Harness::start().await;
    let mut exec = guard(h.client.exec(ExecRequest::shell("echo ready; sleep 1000")))
        .await
        .unwrap();
    assert_eq!(
        guard(exec.next_event()).await.unwrap(),
        Some(ExecEvent::Stdout(Bytes::from("ready\n")))
    );
    exec.kill(libc::SIGTERM).await.unwrap();
    let out = guard(exec.output()).await.unwrap();
    assert_eq!(out.status.signal, Some(libc::SIGTERM));
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_tree() {
    let h = Harness::start().await;
    let mut req = ExecRequest::shell("sleep 1000 & echo $!; wait");
    req.timeout_ms = Some(300);
    let out = guard(async { h.client.exec(req).await.unwrap().output().await })
        .await
        .unwrap();
    assert!(out.status.timed_out);
    assert_eq!(out.status.signal, Some(libc::SIGKILL));
    let child: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The background sleep was in the group: it is gone (or a zombie about to be reaped).
    guard(async {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn exec_stdin_is_streamed_and_closable() {
    let h = Harness::start().await;
    let mut req = ExecRequest::argv(["cat"]);
    req.stdin = true;
    let exec = guard(h.client.exec(req)).await.unwrap();
    exec.stdin_write(Bytes::from("hello ")).await.unwrap();
    exec.stdin_write(Bytes::from("world")).await.unwrap();
    exec.stdin_close().await.unwrap();
    let out = guard(exec.output()).await.unwrap();
    assert_eq!(out.stdout, "hello world");
    assert!(out.status.success());
}

#[tokio::test]
async fn many_execs_run_concurrently_on_one_connection() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = h.client.clone();
        tasks.push(tokio::spawn(async move {
            let out = c
                .exec(ExecRequest::shell(format!("echo {i}")))
                .await
                .unwrap()
                .output()
                .await
                .unwrap();
            assert_eq!(out.stdout, format!("{i}\n"));
        }));
    }
    for t in tasks {
        guard(t).await.unwrap();
    }
}

#[tokio::test]
async fn a_dropped_connection_ends_streams_with_an_error() {
    let mut h = Harness::start().await;
    let mut exec = guard(h.client.exec(ExecRequest::shell("sleep 1000")))
        .await
        .unwrap();
    // SAFETY: plain syscall on our child.
    unsafe { libc::kill(h.socket_owner(), libc::SIGKILL) };
    let err = guard(exec.next_event()).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(
        guard(h.client.info()).await.err().unwrap().kind(),
        ErrorKind::Closed
    );
    h.reap();
}
