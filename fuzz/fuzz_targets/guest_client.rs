//! The whole client against a hostile guest: the input becomes what the "guest" writes
//! (frames aimed at the streams the client opened, with answers it might expect, and
//! raw garbage), while the client runs an exec, a pty, a file read, watches and logs at
//! once and reads them all. It must never panic or hang: every operation ends (with its
//! answer, an error, or the connection closed), and the connection is closed when the
//! guest breaks the protocol.
#![no_main]

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use firepit_guest_client::{ExecRequest, GuestClient};
use firepit_wire::guest::{
    ErrorKind, ExitStatus, FileKind, FileStat, Frame, FrameKind, GuestInfo, PortInfo, PtyInfo,
    Response, ServiceEvent, WireError,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers the client may be waiting for, so the input gets past the first step.
fn answer(pick: u8) -> Response {
    let exit = ExitStatus {
        code: Some(i32::from(pick)),
        signal: None,
        timed_out: false,
    };
    let port = PortInfo {
        addr: "127.0.0.1".parse().unwrap(),
        port: u16::from(pick) * 257,
    };
    match pick % 16 {
        0 => Response::Done,
        1 => Response::Started { pid: 9 },
        2 => Response::Exit(exit),
        3 => Response::PtyAttached(PtyInfo {
            name: "main".into(),
            pid: 2,
            argv: vec!["sh".into()],
            cols: 80,
            rows: 24,
            clients: 1,
        }),
        4 => Response::FileSize {
            size: u64::from(pick) << 40,
        },
        5 => Response::Ready,
        6 => Response::Ports { ports: vec![port] },
        7 => Response::PortOpened(port),
        8 => Response::PortClosed(port),
        9 => Response::LogsLive,
        10 => Response::ServiceEvent(ServiceEvent::Started {
            name: "web".into(),
            pid: 3,
        }),
        11 => Response::Error(WireError::new(ErrorKind::NotFound, "no")),
        12 => Response::Info(GuestInfo {
            version: "x".into(),
            protocol: 2,
            pid: 1,
            hostname: "m".into(),
            uptime_ms: 1,
        }),
        13 => Response::Stat(FileStat {
            kind: FileKind::File,
            size: 1,
            mode: 0o644,
            mtime: 0,
        }),
        14 => Response::ServiceEvent(ServiceEvent::Exited {
            name: "web".into(),
            status: exit,
        }),
        _ => Response::Services { services: vec![] },
    }
}

/// Turns the input into the bytes the guest writes.
fn script(mut data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let take = |n: usize, data: &mut &[u8]| {
        let (a, b) = data.split_at(n.min(data.len()));
        *data = b;
        a.to_vec()
    };
    while let [op, stream, arg, ..] = *data {
        data = &data[3..];
        let stream = u32::from(stream % 10);
        let len = usize::from(arg) * 97;
        match op % 8 {
            0 => out.extend_from_slice(&take(usize::from(arg), &mut data)),
            1 | 2 => Frame::control(stream, &answer(arg)).encode(&mut out),
            3 => Frame::data(stream, take(len, &mut data).into()).encode(&mut out),
            4 => Frame::stderr(stream, vec![b'e'; len].into()).encode(&mut out),
            5 => {
                // A control payload that is almost an answer.
                let mut json = serde_json::to_vec(&answer(arg)).unwrap();
                let cut = usize::from(op) % (json.len() + 1);
                json.truncate(cut);
                json.extend(take(2, &mut data));
                Frame {
                    stream,
                    kind: FrameKind::Control,
                    payload: json.into(),
                }
                .encode(&mut out);
            }
            6 => {
                // A header whose length says anything.
                out.put_u32(u32::from_be_bytes([arg, op, arg, op]));
                out.put_u32(stream);
                out.put_u8(op % 5);
            }
            _ => Frame::credit(stream, u32::from(arg)).encode(&mut out),
        }
    }
    out.to_vec()
}

fuzz_target!(|data: &[u8]| {
    let bytes = script(data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client_io, guest_io) = tokio::io::duplex(1 << 16);
        let client = GuestClient::over(client_io);
        let (mut rd, mut wr) = tokio::io::split(guest_io);
        // The guest reads whatever the client sends (so the client never waits on it),
        // writes the script, and hangs up.
        tokio::spawn(async move {
            let mut sink = [0u8; 4096];
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            let _ = wr.shutdown().await;
        });
        let c = &client;
        let all = async {
            tokio::join!(
                async {
                    let _ = c.info().await;
                },
                async {
                    if let Ok(mut e) = c.exec(ExecRequest::shell("x")).await {
                        while let Ok(Some(_)) = e.next_event().await {}
                    }
                },
                async {
                    if let Ok(mut p) = c.pty_attach("main", None).await {
                        while let Ok(Some(_)) = p.next_event().await {}
                    }
                },
                async {
                    if let Ok(r) = c.read_file("/a").await {
                        let _ = r.read_all(1 << 20).await;
                    }
                },
                async {
                    if let Ok(mut w) = c.watch_ports().await {
                        while let Ok(Some(_)) = w.next().await {}
                    }
                },
                async {
                    if let Ok(mut w) = c.watch_services().await {
                        while let Ok(Some(_)) = w.next().await {}
                    }
                },
                async {
                    if let Ok(mut l) = c.service_logs("web", None, true).await {
                        while let Ok(Some(_)) = l.next().await {}
                    }
                },
                async {
                    if let Ok(e) = c.exec(ExecRequest::shell("y")).await {
                        let _ = e.output(4096).await;
                    }
                },
                async {
                    let _ = c.stat("/a").await;
                },
            )
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("an operation hung on a hostile guest");
    });
});
