//! One client connection: frame I/O and the table of open streams.
//!
//! A writer task owns the write half and drains a bounded queue of frames (so a slow
//! client slows the streams that feed it, not the guest). The reader loop decodes frames:
//! a control frame on an unknown stream id opens an operation (a task of its own, see
//! [`crate::ops`]); every other frame is forwarded to the operation that owns its id. When
//! the connection ends, every operation sees its inbound channel close and cleans up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{Frame, FrameKind, MAX_PAYLOAD, Request, Response, encode_batch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::Guest;

/// A frame from the client to an open operation.
#[derive(Debug)]
pub enum Inbound {
    /// A control message.
    Control(Request),
    /// Raw bytes.
    Data(Bytes),
}

type Table = Arc<Mutex<HashMap<u32, (u64, mpsc::Sender<Inbound>)>>>;

/// An operation's end of its stream.
pub struct Stream {
    id: u32,
    generation: u64,
    out: mpsc::Sender<Frame>,
    /// Frames the client sends on this stream; `None` once the connection is gone.
    pub rx: mpsc::Receiver<Inbound>,
    table: Table,
}

impl Stream {
    /// Sends a control message; false when the connection is gone.
    pub async fn send(&self, resp: &Response) -> bool {
        self.out.send(Frame::control(self.id, resp)).await.is_ok()
    }

    /// Sends bytes as data frames; false when the connection is gone.
    pub async fn data(&self, bytes: Bytes) -> bool {
        self.bytes(bytes, FrameKind::Data).await
    }

    /// Sends bytes as stderr frames; false when the connection is gone.
    pub async fn stderr(&self, bytes: Bytes) -> bool {
        self.bytes(bytes, FrameKind::Stderr).await
    }

    async fn bytes(&self, bytes: Bytes, kind: FrameKind) -> bool {
        for payload in firepit_wire::guest::chunks(bytes, MAX_PAYLOAD) {
            if self
                .out
                .send(Frame {
                    stream: self.id,
                    kind,
                    payload,
                })
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Ends the stream with a final response (its id is free again first).
    pub async fn finish(self, resp: Response) {
        self.unregister();
        let _ = self.out.send(Frame::control(self.id, &resp)).await;
    }

    fn unregister(&self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table
            .get(&self.id)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            table.remove(&self.id);
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Serves one connection until the client closes it or breaks the protocol.
pub async fn serve_connection<T>(io: T, guest: Arc<Guest>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        while let Some(frame) = out_rx.recv().await {
            encode_batch(&mut buf, frame, || out_rx.try_recv().ok());
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                break;
            }
            buf.clear();
        }
        let _ = wr.shutdown().await;
    });

    let table: Table = Arc::default();
    let mut generation = 0u64;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            let frame = match Frame::decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let existing = {
                let t = table.lock().unwrap_or_else(|e| e.into_inner());
                t.get(&frame.stream).map(|(_, tx)| tx.clone())
            };
            match (existing, frame.kind) {
                (Some(tx), FrameKind::Control) => {
                    let Ok(req) = frame.parse::<Request>() else {
                        break 'read;
                    };
                    let _ = tx.send(Inbound::Control(req)).await;
                }
                (Some(tx), _) => {
                    let _ = tx.send(Inbound::Data(frame.payload)).await;
                }
                (None, FrameKind::Control) => {
                    let Ok(req) = frame.parse::<Request>() else {
                        break 'read;
                    };
                    if is_follow_up(&req) {
                        continue; // for a stream that already ended
                    }
                    generation += 1;
                    let (tx, rx) = mpsc::channel(64);
                    table
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(frame.stream, (generation, tx));
                    let stream = Stream {
                        id: frame.stream,
                        generation,
                        out: out_tx.clone(),
                        rx,
                        table: table.clone(),
                    };
                    tokio::spawn(crate::ops::dispatch(req, stream, guest.clone()));
                }
                (None, _) => {} // data for a stream that already ended
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Closing every inbound channel tells the operations the client is gone.
    table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    drop(out_tx);
    drop(writer); // it ends once the operations drop their senders
}

fn is_follow_up(req: &Request) -> bool {
    matches!(
        req,
        Request::Cancel
            | Request::StdinClose
            | Request::Kill { .. }
            | Request::PtyResize { .. }
            | Request::WriteFinish
    )
}
