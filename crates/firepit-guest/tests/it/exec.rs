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
            .output(1 << 20)
            .await
    })
    .await
    .unwrap();
    assert_eq!(out.stdout.to_bytes(), "out\n");
    assert_eq!(out.stderr.to_bytes(), "err\n");
    assert_eq!(out.status.code, Some(3));
    assert!(!out.status.timed_out);
}

#[tokio::test]
async fn exec_argv_env_and_cwd() {
    let h = Harness::start().await;
    let mut req = ExecRequest::argv(["sh", "-c", "echo $FOO; pwd; echo $LANG"]);
    req.env.push(("FOO".into(), "bar".into()));
    req.cwd = Some("/tmp".into());
    let out = guard(async { h.client.exec(req).await.unwrap().output(1 << 20).await })
        .await
        .unwrap();
    assert_eq!(out.stdout.to_bytes(), "bar\n/tmp\nC.UTF-8\n");
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
    let out = guard(exec.output(1 << 20)).await.unwrap();
    assert_eq!(out.status.signal, Some(libc::SIGTERM));
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_tree() {
    let h = Harness::start().await;
    let mut req = ExecRequest::shell("sleep 1000 & echo $!; wait");
    req.timeout_ms = Some(300);
    let out = guard(async { h.client.exec(req).await.unwrap().output(1 << 20).await })
        .await
        .unwrap();
    assert!(out.status.timed_out);
    assert_eq!(out.status.signal, Some(libc::SIGKILL));
    let child: i32 = String::from_utf8_lossy(out.stdout.head())
        .trim()
        .parse()
        .unwrap();
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
    let out = guard(exec.output(1 << 20)).await.unwrap();
    assert_eq!(out.stdout.to_bytes(), "hello world");
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
                .output(1 << 20)
                .await
                .unwrap();
            assert_eq!(out.stdout.to_bytes(), format!("{i}\n"));
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

/// Waits until process `pid` sleeps and has written nothing more for a while; returns
/// the bytes it had written.
async fn wait_until_blocked(pid: u32) -> u64 {
    let written = || {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let sleeping = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('S')
    };
    guard(async {
        let (mut last, mut still) = (written(), 0);
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let now = written();
            still = if now == last && sleeping() {
                still + 1
            } else {
                0
            };
            last = now;
            if still >= 25 {
                return now;
            }
        }
    })
    .await
}

/// A consumer that does not read holds the command up: the guest stops reading its
/// pipe once the stream's window is used, the pipe fills and the command blocks in
/// `write`. Nothing piles up in the client; once it reads, everything arrives.
#[tokio::test]
async fn a_consumer_that_does_not_read_blocks_the_command_not_memory() {
    const TOTAL: usize = 64 << 20;
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let req = ExecRequest::argv(["head", "-c", &TOTAL.to_string(), "/dev/zero"]);
    let mut exec = guard(h.client.exec(req)).await.unwrap();
    let written = wait_until_blocked(exec.pid()).await;
    // The window, the pipe and one read in flight: far from everything.
    assert!(
        written < 4 << 20,
        "the command wrote {written} bytes unread"
    );
    let mut got = 0;
    let status = guard(async {
        loop {
            match exec.next_event().await.unwrap() {
                Some(ExecEvent::Stdout(b)) => got += b.len(),
                Some(ExecEvent::Exit(st)) => return st,
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert!(status.success());
    assert_eq!(got, TOTAL);
}

/// Output kept by `output` stays within its limit however much the command prints.
#[tokio::test]
async fn output_keeps_head_and_tail_of_a_flood() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let req =
        ExecRequest::shell("echo first; head -c 20000000 /dev/zero | tr '\\0' x; echo; echo last");
    let out = guard(async { h.client.exec(req).await.unwrap().output(4096).await })
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.total(), 6 + 20_000_000 + 1 + 5);
    assert!(out.stdout.head().starts_with(b"first\nxxx"));
    assert!(out.stdout.tail().ends_with(b"xx\nlast\n"));
    assert_eq!(out.stdout.cut(), out.stdout.total() - 4096);
    assert!(
        out.stdout.text().contains("bytes (0 lines) cut"),
        "{}",
        out.stdout.text().len()
    );
}
