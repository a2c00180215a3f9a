//! One client connection: frame I/O and the table of open streams.
//!
//! A writer task owns the write half and drains a bounded queue of frames (so a slow
//! client slows the streams that feed it, not the guest). The reader loop decodes frames:
//! a control frame on an unknown stream id opens an operation (a task of its own, see
//! [`crate::ops`]); `Credit` frames add to the stream's window ([`Credit`]); every other
//! frame is forwarded to the operation that owns its id. When the connection ends, every
//! operation sees its inbound channel close and cleans up.
//!
//! Flow control (the protocol's windows): every frame an operation sends, except its final
//! answer, waits until the stream's window is open. A `Cancel` from the client, or the
//! connection's end, also shuts the stream's [`Credit`] for good, so an operation waiting
//! for credit learns at once that nobody reads it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{
    DATA_CHUNK, ErrorKind, Frame, FrameKind, MAX_PAYLOAD, Request, Response, Window, WireError,
    encode_batch,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use crate::Guest;

/// A frame from the client to an open operation.
#[derive(Debug)]
pub enum Inbound {
    /// A control message.
    Control(Request),
    /// Raw bytes.
    Data(Bytes),
}

/// A stream's credit as the guest counts it, and whether anyone still reads the stream.
#[derive(Debug, Default)]
pub struct Credit {
    window: Window,
    closed: AtomicBool,
    changed: Notify,
}

impl Credit {
    /// Adds a grant from the client.
    pub fn grant(&self, bytes: u32) {
        self.window.grant(bytes);
        self.changed.notify_waiters();
    }

    /// Nobody reads the stream any more (cancelled, or the connection ended).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Whether the stream was cancelled or its connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Credit left.
    pub fn available(&self) -> i64 {
        self.window.available()
    }

    /// Whether a frame may be sent now.
    pub fn open(&self) -> bool {
        self.window.open()
    }

    /// Waits until a frame may be sent (`true`) or the stream is closed (`false`).
    pub async fn wait(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_closed() {
                return false;
            }
            if self.open() {
                return true;
            }
            changed.await;
        }
    }

    /// Waits until the credit changes or the stream closes.
    pub async fn changed(&self) {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if self.open() || self.is_closed() {
            return;
        }
        changed.await;
    }
}

struct Entry {
    generation: u64,
    tx: mpsc::Sender<Inbound>,
    credit: Arc<Credit>,
}

type Table = Arc<Mutex<HashMap<u32, Entry>>>;

/// A control frame for `resp`; an answer too large for one frame becomes an error.
fn control(stream: u32, resp: &Response) -> Frame {
    let f = Frame::control(stream, resp);
    if f.payload.len() <= MAX_PAYLOAD {
        return f;
    }
    Frame::control(
        stream,
        &Response::Error(WireError::new(
            ErrorKind::Io,
            format!(
                "the answer ({} bytes) is larger than a frame ({MAX_PAYLOAD} bytes)",
                f.payload.len()
            ),
        )),
    )
}

/// An operation's end of its stream.
pub struct Stream {
    id: u32,
    generation: u64,
    out: mpsc::Sender<Frame>,
    /// Frames the client sends on this stream; `None` once the connection is gone.
    pub rx: mpsc::Receiver<Inbound>,
    credit: Arc<Credit>,
    table: Table,
}

impl Stream {
    /// The stream's credit (for operations that wait for it alongside other work).
    pub fn credit(&self) -> Arc<Credit> {
        self.credit.clone()
    }

    /// Sends `frame` once the window is open; false when nobody reads the stream.
    async fn send_frame(&self, frame: Frame) -> bool {
        if !self.credit.wait().await {
            return false;
        }
        self.credit.window.take(frame.cost());
        self.out.send(frame).await.is_ok()
    }

    /// Sends a control message; false when the connection is gone.
    pub async fn send(&self, resp: &Response) -> bool {
        self.send_frame(control(self.id, resp)).await
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
        for payload in firepit_wire::guest::chunks(bytes, DATA_CHUNK) {
            let frame = Frame {
                stream: self.id,
                kind,
                payload,
            };
            if !self.send_frame(frame).await {
                return false;
            }
        }
        true
    }

    /// Ends the stream with a final response (its id is free again first). A final
    /// answer costs no credit.
    pub async fn finish(self, resp: Response) {
        self.unregister();
        let _ = self.out.send(control(self.id, &resp)).await;
    }

    fn unregister(&self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table
            .get(&self.id)
            .is_some_and(|e| e.generation == self.generation)
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
                t.get(&frame.stream)
                    .map(|e| (e.tx.clone(), e.credit.clone()))
            };
            match (existing, frame.kind) {
                (Some((_, credit)), FrameKind::Credit) => match frame.credit_grant() {
                    Ok(n) => credit.grant(n),
                    Err(_) => break 'read,
                },
                (None, FrameKind::Credit) => {
                    if frame.credit_grant().is_err() {
                        break 'read;
                    }
                    // for a stream that already ended
                }
                (Some((tx, credit)), FrameKind::Control) => {
                    let Ok(req) = frame.parse::<Request>() else {
                        break 'read;
                    };
                    if req == Request::Cancel {
                        credit.close();
                    }
                    let _ = tx.send(Inbound::Control(req)).await;
                }
                (Some((tx, _)), _) => {
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
                    let credit = Arc::new(Credit::default());
                    table.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        frame.stream,
                        Entry {
                            generation,
                            tx,
                            credit: credit.clone(),
                        },
                    );
                    let stream = Stream {
                        id: frame.stream,
                        generation,
                        out: out_tx.clone(),
                        rx,
                        credit,
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
    // Closing every inbound channel and window tells the operations the client is gone.
    for (_, e) in table.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        e.credit.close();
    }
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
