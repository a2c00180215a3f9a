//! The client never trusts the guest: oversized, truncated and malformed frames,
//! unknown streams, credit from the wrong side and floods beyond the window end the
//! connection with an error (or are dropped), and memory stays within the windows. A
//! guest that keeps to the windows is held up by a consumer that does not read.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use firepit_guest_client::{ErrorKind, ExecEvent, ExecRequest, GuestClient, GuestInfo};
use firepit_wire::guest::{
    ExitStatus, Frame, FrameKind, MAX_FRAME, PROTOCOL_VERSION, Request, Response, WINDOW, Window,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, mpsc};

use crate::{guard, next_frame};

fn info() -> Response {
    Response::Info(GuestInfo {
        version: "x".into(),
        protocol: PROTOCOL_VERSION,
        pid: 1,
        hostname: "m".into(),
        uptime_ms: 5,
    })
}

/// A guest that answers `Exec` with `Started` and then writes `after` as raw bytes, and
/// `Info` properly.
fn scripted(after: impl Fn(u32) -> Vec<u8> + Send + 'static) -> GuestClient {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(f) = next_frame(&mut guest, &mut buf).await {
            let bytes = match f.parse::<Request>() {
                Ok(Request::Info) => Frame::control(f.stream, &info()).to_bytes().to_vec(),
                Ok(Request::Exec(_)) => {
                    let mut b = Frame::control(f.stream, &Response::Started { pid: 9 })
                        .to_bytes()
                        .to_vec();
                    b.extend(after(f.stream));
                    b
                }
                _ => continue,
            };
            if guest.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    client
}

async fn protocol_error(client: &GuestClient) -> String {
    let mut exec = guard(client.exec(ExecRequest::shell("x"))).await.unwrap();
    let err = loop {
        match guard(exec.next_event()).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    // The connection is gone: new calls fail and say why.
    let again = guard(client.info()).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Protocol, "{again}");
    assert!(client.is_closed());
    err.to_string()
}

#[tokio::test]
async fn an_oversized_length_ends_the_connection() {
    for len in [MAX_FRAME as u32 + 1, u32::MAX] {
        let client = scripted(move |_| {
            let mut b = BytesMut::new();
            b.put_u32(len);
            b.put_u32(1);
            b.put_u8(1);
            b.to_vec()
        });
        let why = protocol_error(&client).await;
        assert!(why.contains("exceeds"), "{why}");
    }
}

#[tokio::test]
async fn malformed_frames_end_the_connection() {
    type Script = fn(u32) -> Vec<u8>;
    let cases: [(Script, &str); 4] = [
        (
            |s| {
                let mut b = BytesMut::new();
                b.put_u32(5);
                b.put_u32(s);
                b.put_u8(7);
                b.to_vec()
            },
            "unknown frame kind",
        ),
        (
            |s| {
                let f = Frame {
                    stream: s,
                    kind: FrameKind::Control,
                    payload: Bytes::from_static(b"{\"r\":\"exit\",\"code\":\"zero\"}"),
                };
                f.to_bytes().to_vec()
            },
            "malformed message",
        ),
        (
            |s| Frame::credit(s, u32::MAX).to_bytes().to_vec(),
            "credit frame",
        ),
        (
            |s| {
                let mut b = BytesMut::new();
                b.put_u32(2);
                b.put_u32(s);
                b.to_vec()
            },
            "shorter than its header",
        ),
    ];
    for (script, want) in cases {
        let client = scripted(script);
        let why = protocol_error(&client).await;
        assert!(why.contains(want), "{why} should say {want}");
    }
}

#[tokio::test]
async fn half_a_frame_is_waited_for_not_taken() {
    let client = scripted(|s| {
        let b = Frame::data(s, Bytes::from(vec![1u8; 1000])).to_bytes();
        b[..500].to_vec()
    });
    let mut exec = guard(client.exec(ExecRequest::shell("x"))).await.unwrap();
    // The fake guest keeps its end open: nothing arrives, and nothing is buffered
    // beyond the frame's own length. Dropping the exec must not hang.
    tokio::select! {
        e = exec.next_event() => panic!("got {e:?} from half a frame"),
        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
    }
    drop(exec);
    assert!(!client.is_closed());
}

#[tokio::test]
async fn frames_for_unknown_streams_are_dropped() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        while let Some(f) = next_frame(&mut guest, &mut buf).await {
            let mut out = Vec::new();
            for stranger in [0, 424242, u32::MAX] {
                out.extend(Frame::data(stranger, Bytes::from(vec![0u8; 60_000])).to_bytes());
                out.extend(Frame::control(stranger, &Response::Done).to_bytes());
                out.extend(Frame::control(stranger, &Response::LogsLive).to_bytes());
            }
            out.extend(Frame::control(f.stream, &info()).to_bytes());
            guest.write_all(&out).await.unwrap();
        }
    });
    for _ in 0..3 {
        assert_eq!(guard(client.info()).await.unwrap().hostname, "m");
    }
    assert!(!client.is_closed());
}

#[tokio::test]
async fn a_guest_that_ignores_the_window_is_cut_off() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let f = next_frame(&mut guest, &mut buf).await.unwrap();
        let start = Frame::control(f.stream, &Response::Started { pid: 9 });
        guest.write_all(&start.to_bytes()).await.unwrap();
        // Flood, never reading the client's credit.
        let mut sent = 0u64;
        let chunk = Frame::data(f.stream, Bytes::from(vec![b'y'; 16 * 1024])).to_bytes();
        while guest.write_all(&chunk).await.is_ok() {
            sent += chunk.len() as u64;
            if sent > 1 << 30 {
                break;
            }
        }
        sent_tx.send(sent).unwrap();
    });
    let mut exec = guard(client.exec(ExecRequest::shell("yes"))).await.unwrap();
    // The consumer does not read until the client has given up on the guest.
    let sent = guard(sent_rx.recv()).await.unwrap();
    // The window, plus what sat in the pipe and the client's read buffer when it
    // gave up (64 KiB each, and a frame's slack).
    assert!(
        sent <= u64::from(WINDOW) + 4 * (1 << 16),
        "the guest got {sent} bytes into the client"
    );
    let mut got = 0;
    let err = loop {
        match guard(exec.next_event()).await {
            Ok(Some(ExecEvent::Stdout(b))) => got += b.len(),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert!(got as u64 <= u64::from(WINDOW), "{got}");
    assert!(err.to_string().contains("window"), "{err}");
}

/// A guest that keeps to the window: it sends `total` bytes of output in 16 KiB frames
/// while its credit lasts, and reports each time it had to stop for credit (with what
/// it had sent by then), then the exit.
#[tokio::test]
async fn a_consumer_that_does_not_read_holds_the_guest_up() {
    const TOTAL: usize = 4 << 20;
    let (client_io, guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    let (mut rd, mut wr) = tokio::io::split(guest);
    let window = Arc::new(Window::new());
    let granted = Arc::new(Notify::new());
    let (stalls_tx, mut stalls) = mpsc::unbounded_channel::<usize>();
    let (id_tx, id_rx) = tokio::sync::oneshot::channel();
    {
        let (window, granted) = (window.clone(), granted.clone());
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut id_tx = Some(id_tx);
            loop {
                let mut one = [0u8; 4096];
                let f = loop {
                    if let Some(f) = Frame::decode(&mut buf).unwrap() {
                        break f;
                    }
                    let n = tokio::io::AsyncReadExt::read(&mut rd, &mut one)
                        .await
                        .unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&one[..n]);
                };
                match f.kind {
                    FrameKind::Credit => {
                        window.grant(f.credit_grant().unwrap());
                        granted.notify_one();
                    }
                    _ => {
                        if let Some(tx) = id_tx.take() {
                            tx.send(f.stream).unwrap();
                        }
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        let id = id_rx.await.unwrap();
        let started = Frame::control(id, &Response::Started { pid: 9 });
        window.take(started.cost());
        wr.write_all(&started.to_bytes()).await.unwrap();
        let mut sent = 0;
        while sent < TOTAL {
            if !window.open() {
                stalls_tx.send(sent).unwrap();
                while !window.open() {
                    granted.notified().await;
                }
            }
            let piece: Vec<u8> = (sent..sent + 16 * 1024).map(|i| (i % 251) as u8).collect();
            let f = Frame::data(id, Bytes::from(piece));
            assert!(window.take(f.cost()));
            wr.write_all(&f.to_bytes()).await.unwrap();
            sent += 16 * 1024;
        }
        let exit = ExitStatus {
            code: Some(0),
            signal: None,
            timed_out: false,
        };
        wr.write_all(&Frame::control(id, &Response::Exit(exit)).to_bytes())
            .await
            .unwrap();
    });

    let mut exec = guard(client.exec(ExecRequest::shell("yes"))).await.unwrap();
    // Not reading: the guest stops within one window.
    let first_stall = guard(stalls.recv()).await.unwrap();
    assert!(first_stall <= WINDOW as usize, "{first_stall}");
    // Reading: credit comes back and all of it arrives, in order.
    let mut got = Vec::with_capacity(TOTAL);
    loop {
        match guard(exec.next_event()).await.unwrap() {
            Some(ExecEvent::Stdout(b)) => got.extend_from_slice(&b),
            Some(ExecEvent::Exit(st)) => {
                assert!(st.success());
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.len(), TOTAL);
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert!(!client.is_closed());
    // Each stall waited for the consumer: there were many (the guest never ran ahead).
    let mut n = 1;
    while stalls.try_recv().is_ok() {
        n += 1;
    }
    assert!(n >= TOTAL / WINDOW as usize / 2, "{n} stalls");
}

#[tokio::test]
async fn service_events_with_impossible_names_are_refused() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let f = next_frame(&mut guest, &mut buf).await.unwrap();
        let mut out = Frame::control(f.stream, &Response::Ready)
            .to_bytes()
            .to_vec();
        let event = firepit_wire::guest::ServiceEvent::Started {
            name: "x".repeat(100_000),
            pid: 1,
        };
        out.extend(Frame::control(f.stream, &Response::ServiceEvent(event)).to_bytes());
        guest.write_all(&out).await.unwrap();
        // Keep the connection open.
        let _ = next_frame(&mut guest, &mut buf).await;
    });
    let mut watch = guard(client.watch_services()).await.unwrap();
    let err = guard(watch.next()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}

/// A file watch whose guest sends `report` after `Ready`.
fn file_watch_sending(report: firepit_wire::guest::FilesChanged) -> GuestClient {
    let (client_io, mut guest) = tokio::io::duplex(1 << 20);
    let client = GuestClient::over(client_io);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let f = next_frame(&mut guest, &mut buf).await.unwrap();
        let mut out = Frame::control(f.stream, &Response::Ready)
            .to_bytes()
            .to_vec();
        out.extend(Frame::control(f.stream, &Response::FilesChanged(report)).to_bytes());
        guest.write_all(&out).await.unwrap();
        let _ = next_frame(&mut guest, &mut buf).await;
    });
    client
}

#[tokio::test]
async fn file_watch_reports_beyond_the_bounds_are_refused() {
    use firepit_wire::guest::{FilesChanged, MAX_CHANGED_DIRS, MAX_WATCH_PATH};
    let bad = [
        (0..=MAX_CHANGED_DIRS).map(|i| format!("/d{i}")).collect(),
        vec![format!("/{}", "x".repeat(MAX_WATCH_PATH))],
        vec!["relative".to_owned()],
        vec!["/a/../etc".to_owned()],
    ];
    for dirs in bad {
        let client = file_watch_sending(FilesChanged {
            dirs,
            ..FilesChanged::default()
        });
        let mut watch = guard(client.watch_files(Some("/root"))).await.unwrap();
        let err = guard(watch.next()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    }
    // Within them, the report comes through as sent.
    let good = FilesChanged {
        dirs: vec!["/root".into(), "/root/src".into()],
        overflow: true,
        partial: false,
    };
    let client = file_watch_sending(good.clone());
    let mut watch = guard(client.watch_files(None)).await.unwrap();
    assert_eq!(guard(watch.next()).await.unwrap(), Some(good));
}

#[tokio::test]
async fn a_log_tail_keeps_what_was_asked_whatever_the_guest_sends() {
    let (client_io, mut guest) = tokio::io::duplex(1 << 16);
    let client = GuestClient::over(client_io);
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let f = next_frame(&mut guest, &mut buf).await.unwrap();
        let mut out = Frame::control(f.stream, &Response::Ready)
            .to_bytes()
            .to_vec();
        // Asked for 1000 bytes, it sends 200 000 in many pieces.
        for i in 0..100u8 {
            out.extend(Frame::data(f.stream, Bytes::from(vec![i; 2000])).to_bytes());
        }
        out.extend(Frame::control(f.stream, &Response::Done).to_bytes());
        guest.write_all(&out).await.unwrap();
        let _ = next_frame(&mut guest, &mut buf).await;
    });
    let logs = guard(client.service_logs("web", Some(1000), false))
        .await
        .unwrap();
    let tail = guard(logs.read_tail(1000)).await.unwrap();
    assert_eq!(&tail[..], &[99u8; 1000][..]);
}
