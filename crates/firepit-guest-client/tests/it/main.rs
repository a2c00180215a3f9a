//! The client against a scripted in-memory guest (the real guest is exercised end to end
//! in `firepit-guest`'s tests).

mod hostile;

use std::time::Duration;

use bytes::BytesMut;
use firepit_guest_client::{ErrorKind, ExecEvent, ExecRequest, GuestClient, GuestInfo};
use firepit_wire::guest::{ExitStatus, Frame, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

pub(crate) async fn next_frame(io: &mut DuplexStream, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(f) = Frame::decode(buf).unwrap() {
            return Some(f);
        }
        if io.read_buf(buf).await.unwrap() == 0 {
            return None;
        }
    }
}

pub(crate) async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("hang guard")
}

#[tokio::test]
async fn info_and_exec_over_any_transport() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    let fake = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(f) = next_frame(&mut guest, &mut buf).await {
            let reply: Vec<Frame> = match f.parse::<Request>().unwrap() {
                Request::Info => vec![Frame::control(
                    f.stream,
                    &Response::Info(GuestInfo {
                        version: "x".into(),
                        protocol: firepit_wire::guest::PROTOCOL_VERSION,
                        pid: 1,
                        hostname: "m".into(),
                        uptime_ms: 5,
                    }),
                )],
                Request::Exec(_) => vec![
                    Frame::control(f.stream, &Response::Started { pid: 9 }),
                    Frame::data(f.stream, "out".into()),
                    Frame::stderr(f.stream, "err".into()),
                    Frame::control(
                        f.stream,
                        &Response::Exit(ExitStatus {
                            code: Some(0),
                            signal: None,
                            timed_out: false,
                        }),
                    ),
                ],
                _ => vec![],
            };
            for r in reply {
                guest.write_all(&r.to_bytes()).await.unwrap();
            }
        }
    });
    assert_eq!(guard(client.info()).await.unwrap().hostname, "m");
    let mut exec = guard(client.exec(ExecRequest::shell("x"))).await.unwrap();
    assert_eq!(exec.pid(), 9);
    assert_eq!(
        guard(exec.next_event()).await.unwrap(),
        Some(ExecEvent::Stdout("out".into()))
    );
    let out = guard(exec.output(1024)).await.unwrap();
    assert_eq!(out.stderr.to_bytes(), "err");
    assert!(out.status.success());
    drop(client);
    guard(fake).await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_fails_open_streams_and_new_calls() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    let pending = tokio::spawn({
        let c = client.clone();
        async move { c.info().await }
    });
    let mut buf = BytesMut::new();
    let f = guard(next_frame(&mut guest, &mut buf)).await.unwrap();
    assert_eq!(f.parse::<Request>().unwrap(), Request::Info);
    drop(guest);
    let err = guard(pending).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(
        guard(client.info()).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(client.is_closed());
}

#[tokio::test]
async fn a_guest_error_keeps_its_kind() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(f) = next_frame(&mut guest, &mut buf).await {
            let e = firepit_wire::guest::WireError::new(ErrorKind::NotFound, "no such pty: x");
            guest
                .write_all(&Frame::control(f.stream, &Response::Error(e)).to_bytes())
                .await
                .unwrap();
        }
    });
    let err = guard(client.pty_attach("x", None)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "no such pty: x");
}

#[tokio::test]
async fn a_socket_served_by_another_process_is_refused() {
    let path = std::env::temp_dir().join(format!("firepit-peer-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // This process listens: the peer a client sees is our own pid.
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let accept = tokio::spawn(async move {
        for _ in 0..2 {
            let _ = listener.accept().await;
        }
    });
    let ours = std::process::id();
    let client = guard(GuestClient::connect_unix_peer(&path, ours))
        .await
        .unwrap();
    assert!(!client.is_closed());
    let err = guard(GuestClient::connect_unix_peer(&path, ours + 1))
        .await
        .err()
        .expect("a peer that is not the guest is refused");
    assert!(
        matches!(err, firepit_guest_client::Error::WrongPeer { found: Some(p), .. } if p == ours as i32),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Closed);
    accept.abort();
    let _ = std::fs::remove_file(&path);
}
