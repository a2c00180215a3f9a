//! pty sessions end to end.

use bytes::Bytes;
use firepit_guest_client::{ErrorKind, Pty, PtyCreate, PtyEvent};

use crate::{Harness, guard};

/// Reads output until `needle` was seen; returns everything read.
async fn read_until(pty: &mut Pty, needle: &str) -> String {
    let mut seen = String::new();
    guard(async {
        while !seen.contains(needle) {
            match pty.next_event().await.unwrap() {
                Some(PtyEvent::Output(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                other => panic!("before {needle:?}: {other:?}; seen {seen:?}"),
            }
        }
    })
    .await;
    seen
}

fn sh(argv: &[&str]) -> PtyCreate {
    PtyCreate {
        argv: Some(argv.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

#[tokio::test]
async fn main_pty_exists_from_boot() {
    let h = Harness::start().await;
    let list = guard(async {
        loop {
            let l = h.client.pty_list().await.unwrap();
            if !l.is_empty() {
                return l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(list[0].name, "main");
    let mut main = guard(h.client.pty_attach("main", None)).await.unwrap();
    main.input(Bytes::from("echo hi-$((40+2))\n"))
        .await
        .unwrap();
    read_until(&mut main, "hi-42").await;
}

#[tokio::test]
async fn two_clients_share_output_and_a_late_one_gets_scrollback() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let mut a = guard(h.client.pty_attach("t", Some(sh(&["/bin/sh"]))))
        .await
        .unwrap();
    let mut b = guard(h.client.pty_attach("t", None)).await.unwrap();
    a.input(Bytes::from("echo one-$((1+1))\n")).await.unwrap();
    read_until(&mut a, "one-2").await;
    read_until(&mut b, "one-2").await;
    b.input(Bytes::from("echo two-$((2+1))\n")).await.unwrap();
    read_until(&mut a, "two-3").await;
    read_until(&mut b, "two-3").await;
    // A client on another connection attaching now first sees what came before.
    let other = firepit_guest_client::GuestClient::connect_unix(&h.socket)
        .await
        .unwrap();
    let mut late = guard(other.pty_attach("t", None)).await.unwrap();
    let seen = read_until(&mut late, "two-3").await;
    assert!(seen.contains("one-2"), "{seen:?}");
    assert_eq!(h.client.pty_list().await.unwrap()[0].clients, 3);
}

#[tokio::test]
async fn resize_is_seen_by_the_program() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let mut p = guard(h.client.pty_attach("r", Some(sh(&["/bin/sh"]))))
        .await
        .unwrap();
    p.resize(123, 45).await.unwrap();
    p.input(Bytes::from("stty size; echo x-$((1+1))\n"))
        .await
        .unwrap();
    let seen = read_until(&mut p, "x-2").await;
    assert!(seen.contains("45 123"), "{seen:?}");
    let info = h.client.pty_list().await.unwrap();
    assert_eq!((info[0].cols, info[0].rows), (123, 45));
}

#[tokio::test]
async fn exit_is_reported_and_unknown_pty_is_not_found() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let mut p = guard(
        h.client
            .pty_attach("e", Some(sh(&["/bin/sh", "-c", "echo bye; exit 7"]))),
    )
    .await
    .unwrap();
    let status = guard(async {
        loop {
            match p.next_event().await.unwrap() {
                Some(PtyEvent::Exit(st)) => return st,
                Some(PtyEvent::Output(_)) => {}
                None => panic!("ended without exit"),
            }
        }
    })
    .await;
    assert_eq!(status.code, Some(7));
    let err = guard(h.client.pty_attach("nope", None))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        guard(h.client.pty_close("nope")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn main_is_restarted_when_its_shell_exits() {
    let h = Harness::start().await;
    let mut main = guard(async {
        loop {
            if let Ok(p) = h.client.pty_attach("main", None).await {
                return p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let first = main.info().pid;
    main.input(Bytes::from("exit\n")).await.unwrap();
    guard(async {
        while let Some(ev) = main.next_event().await.unwrap() {
            if matches!(ev, PtyEvent::Exit(_)) {
                break;
            }
        }
    })
    .await;
    guard(async {
        loop {
            let l = h.client.pty_list().await.unwrap();
            if l.iter().any(|p| p.name == "main" && p.pid != first) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A pty never waits for a slow client: while one attachment is not read, the others go
/// on; the slow one gets at most a window of output, then `Overrun`, and can attach again.
///
/// The program prints 64 KiB each time the client that keeps up asks, so that client
/// never falls behind however busy the machine is, while the one that does not read
/// falls further behind with every round.
#[tokio::test]
async fn a_client_that_falls_behind_is_detached_and_the_pty_runs_on() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let script = "i=0; while read l; do i=$((i+1)); head -c 65536 /dev/zero | tr '\\0' y; echo; echo done-$i; done";
    let mut slow = guard(
        h.client
            .pty_attach("flood", Some(sh(&["sh", "-c", script]))),
    )
    .await
    .unwrap();
    let mut fast = guard(h.client.pty_attach("flood", None)).await.unwrap();
    // Far more pieces of output than the window and the backlog hold.
    let rounds = 2
        * (firepit_wire::guest::WINDOW as usize + firepit_guest::pty::BACKLOG * 16 * 1024)
        / 65536;
    for i in 1..=rounds {
        fast.input(Bytes::from("go\n")).await.unwrap();
        read_until(&mut fast, &format!("done-{i}\r")).await;
    }
    let mut slow_got = 0;
    let err = guard(async {
        loop {
            match slow.next_event().await {
                Ok(Some(PtyEvent::Output(b))) => slow_got += b.len(),
                Ok(other) => panic!("{other:?}"),
                Err(e) => return e,
            }
        }
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::Overrun, "{err}");
    assert!(err.to_string().contains("attach again"), "{err}");
    assert!(slow_got < rounds * 65536 / 2, "{slow_got}");
    // The pty runs on for the client that keeps up, and the slow one may come back.
    fast.input(Bytes::from("go\n")).await.unwrap();
    read_until(&mut fast, &format!("done-{}\r", rounds + 1)).await;
    let mut again = guard(h.client.pty_attach("flood", None)).await.unwrap();
    read_until(&mut again, &format!("done-{}\r", rounds + 1)).await;
    guard(h.client.pty_close("flood")).await.unwrap();
}

/// Typing into a program that never reads its terminal fills the pty's input buffer;
/// that holds up neither the attachment nor anything else on the connection.
#[tokio::test]
async fn input_nobody_reads_does_not_stall_the_connection() {
    let h = Harness::start_with(&["--no-main-pty"]).await;
    let deaf = guard(h.client.pty_attach(
        "deaf",
        Some(sh(&["sh", "-c", "stty raw -echo; sleep 1000"])),
    ))
    .await
    .unwrap();
    for _ in 0..200 {
        guard(deaf.input(Bytes::from(vec![b'a'; 16 * 1024])))
            .await
            .unwrap();
    }
    assert!(guard(h.client.info()).await.is_ok());
    let mut other = guard(h.client.pty_attach("t", Some(sh(&["/bin/sh"]))))
        .await
        .unwrap();
    other
        .input(Bytes::from("echo ok-$((3+4))\n"))
        .await
        .unwrap();
    read_until(&mut other, "ok-7").await;
    guard(h.client.pty_close("deaf")).await.unwrap();
}
