//! The multiplexed connection: stream ids, the demultiplexing reader, the writer, and
//! the client's half of flow control.
//!
//! The reader never waits for a consumer and never trusts the guest. Each frame is
//! decoded (a length over the limit, an unknown kind, a control payload that is not a
//! [`Response`], a `Credit` frame from the guest all end the connection with an error),
//! its payload copied out of the read buffer (so a small frame never keeps a large
//! buffer alive), its cost taken from its stream's [`Window`] (a frame beyond the window
//! ends the connection) and queued for the stream's consumer in a bounded channel that
//! the window keeps from ever filling. The consumer gives credit back as it takes frames
//! ([`StreamHandle::next`]), so a consumer that stops reading stops its stream in the
//! guest, and what the client holds stays within one window per stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{
    FRAME_COST, Frame, FrameKind, MAX_PAYLOAD, Request, Response, WINDOW, Window, encode_batch,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use crate::Error;

/// Frames a stream's queue can hold: as many as its window admits (every frame costs at
/// least [`FRAME_COST`]), one that overshoots it, and the final answer.
pub(crate) const QUEUE: usize = WINDOW as usize / FRAME_COST + 2;

/// What a stream's consumer receives.
#[derive(Debug)]
pub(crate) enum Item {
    /// A control message (boxed: most items are bytes).
    Response(Box<Response>),
    /// Bytes of a data frame.
    Data(Bytes),
    /// Bytes of a stderr frame.
    Stderr(Bytes),
}

/// A queued item and its cost against the window (0 for the final answer).
type Queued = (Item, u64);

struct Slot {
    tx: mpsc::Sender<Queued>,
    window: Arc<Window>,
}

#[derive(Default)]
struct Shared {
    /// Streams by id; `None` once the connection has ended.
    table: Mutex<Option<HashMap<u32, Slot>>>,
    /// Why the connection ended, when the guest broke the protocol.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u32, Slot>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The error a stream or call sees once the connection is gone.
    fn closed(&self) -> Error {
        match self.failure() {
            Some(why) => Error::Protocol(why),
            None => Error::Closed,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Conn {
    out: mpsc::Sender<Frame>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU32>,
}

/// What the reader does with one frame from the guest.
enum Verdict {
    /// Hand it to its stream (or drop it: the stream ended).
    Go,
    /// The guest broke the protocol: end the connection with this reason.
    Break(String),
}

/// Takes one decoded frame from the guest into the table.
fn route(shared: &Shared, frame: Frame) -> Verdict {
    let stream = frame.stream;
    // Copy the payload out of the read buffer, so that it holds just what it needs.
    let payload = Bytes::copy_from_slice(&frame.payload);
    let cost = frame.cost();
    let item = match frame.kind {
        FrameKind::Data => Item::Data(payload),
        FrameKind::Stderr => Item::Stderr(payload),
        FrameKind::Credit => {
            return Verdict::Break(format!("the guest sent a credit frame on stream {stream}"));
        }
        FrameKind::Control => match serde_json::from_slice::<Response>(&payload) {
            Ok(r) => Item::Response(Box::new(r)),
            Err(e) => {
                return Verdict::Break(format!(
                    "the guest sent a malformed message on stream {stream}: {e}"
                ));
            }
        },
    };
    let final_ = matches!(&item, Item::Response(r) if r.is_final());
    let mut table = shared.table();
    let Some(map) = table.as_mut() else {
        return Verdict::Go;
    };
    let Some(slot) = map.get(&stream) else {
        return Verdict::Go; // a stream that ended: its late frames are dropped
    };
    if final_ {
        let slot = map.remove(&stream).expect("looked up");
        // The queue always has room for the final answer (see `QUEUE`).
        let _ = slot.tx.try_send((item, 0));
        return Verdict::Go;
    }
    if !slot.window.take(cost) {
        return Verdict::Break(format!(
            "the guest sent more on stream {stream} than its window allows"
        ));
    }
    match slot.tx.try_send((item, cost)) {
        Ok(()) => Verdict::Go,
        Err(mpsc::error::TrySendError::Closed(_)) => {
            map.remove(&stream);
            Verdict::Go
        }
        Err(mpsc::error::TrySendError::Full(_)) => Verdict::Break(format!(
            "the guest sent more frames on stream {stream} than its window allows"
        )),
    }
}

impl Conn {
    pub(crate) fn start<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(io: T) -> Conn {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (out, mut out_rx) = mpsc::channel::<Frame>(64);
        let shared = Arc::new(Shared {
            table: Mutex::new(Some(HashMap::new())),
            failure: Mutex::default(),
        });

        // The reader ends the writer too, so that the whole connection closes (and the
        // guest sees it) once the guest broke the protocol or went away.
        let reader_done = Arc::new(Notify::new());
        let writer_stop = reader_done.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                let frame = tokio::select! {
                    f = out_rx.recv() => match f {
                        Some(f) => f,
                        None => break,
                    },
                    _ = writer_stop.notified() => break,
                };
                encode_batch(&mut buf, frame, || out_rx.try_recv().ok());
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                buf.clear();
            }
            let _ = wr.shutdown().await;
        });

        let reader = shared.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let failure = 'read: loop {
                loop {
                    let frame = match Frame::decode(&mut buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => break 'read Some(format!("the guest sent a bad frame: {e}")),
                    };
                    if let Verdict::Break(why) = route(&reader, frame) {
                        break 'read Some(why);
                    }
                }
                buf.reserve(64 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break None,
                    Ok(_) => {}
                }
            };
            if let Some(why) = failure {
                *reader.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            }
            // Dropping every sender ends every open stream.
            reader.table().take();
            reader_done.notify_one();
        });

        Conn {
            out,
            shared,
            next_id: Arc::new(AtomicU32::new(1)),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.table().is_none() || self.out.is_closed()
    }

    /// Opens a stream with `req` as its first message.
    pub(crate) async fn open(&self, req: &Request) -> Result<StreamHandle, Error> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let window = Arc::new(Window::new());
        let id = {
            let mut t = self.shared.table();
            let Some(map) = t.as_mut() else {
                return Err(self.shared.closed());
            };
            let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
            while map.contains_key(&id) {
                id = self.next_id.fetch_add(1, Ordering::Relaxed);
            }
            map.insert(
                id,
                Slot {
                    tx,
                    window: window.clone(),
                },
            );
            id
        };
        let handle = StreamHandle {
            id,
            conn: self.clone(),
            rx,
            window,
            unacked: 0,
            ended: false,
        };
        handle.send(Frame::control(id, req)).await?;
        Ok(handle)
    }
}

/// Sends input on a stream without owning it (the pty's input half).
#[derive(Clone)]
pub(crate) struct StreamSender {
    id: u32,
    out: mpsc::Sender<Frame>,
}

impl StreamSender {
    pub(crate) async fn request(&self, req: &Request) -> Result<(), Error> {
        self.out
            .send(Frame::control(self.id, req))
            .await
            .map_err(|_| Error::Closed)
    }

    pub(crate) async fn data(&self, data: Bytes) -> Result<(), Error> {
        for chunk in firepit_wire::guest::chunks(data, MAX_PAYLOAD) {
            self.out
                .send(Frame::data(self.id, chunk))
                .await
                .map_err(|_| Error::Closed)?;
        }
        Ok(())
    }
}

/// The client's end of one stream.
pub(crate) struct StreamHandle {
    id: u32,
    conn: Conn,
    rx: mpsc::Receiver<Queued>,
    window: Arc<Window>,
    /// Cost of frames taken but not yet given back as credit.
    unacked: u64,
    ended: bool,
}

impl StreamHandle {
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), Error> {
        self.conn
            .out
            .send(frame)
            .await
            .map_err(|_| self.conn.shared.closed())
    }

    pub(crate) fn sender(&self) -> StreamSender {
        StreamSender {
            id: self.id,
            out: self.conn.out.clone(),
        }
    }

    pub(crate) async fn request(&self, req: &Request) -> Result<(), Error> {
        self.send(Frame::control(self.id, req)).await
    }

    pub(crate) async fn data(&self, data: Bytes) -> Result<(), Error> {
        for chunk in firepit_wire::guest::chunks(data, MAX_PAYLOAD) {
            self.send(Frame::data(self.id, chunk)).await?;
        }
        Ok(())
    }

    /// The next item; `Ok(None)` after the final response, `Closed` (or the guest's
    /// protocol error) if the connection ended. Taking an item gives its cost back to
    /// the guest as credit, in batches of half a window.
    pub(crate) async fn next(&mut self) -> Result<Option<Item>, Error> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some((item, cost)) => {
                if matches!(&item, Item::Response(r) if r.is_final()) {
                    self.ended = true;
                } else {
                    self.unacked += cost;
                    if self.unacked >= u64::from(WINDOW / 2) {
                        let grant = u32::try_from(self.unacked).unwrap_or(u32::MAX);
                        self.unacked -= u64::from(grant);
                        // Counted first, so our count never trails the guest's.
                        self.window.grant(grant);
                        let _ = self.conn.out.send(Frame::credit(self.id, grant)).await;
                    }
                }
                Ok(Some(item))
            }
            None => {
                self.ended = true;
                Err(self.conn.shared.closed())
            }
        }
    }

    /// The next control message, skipping nothing: data here is a protocol error.
    /// A guest `Error` becomes `Err`.
    pub(crate) async fn control(&mut self) -> Result<Response, Error> {
        match self.next().await? {
            Some(Item::Response(r)) => into_result(*r),
            Some(_) => Err(Error::Protocol("data before the answer".into())),
            None => Err(Error::Protocol("stream already ended".into())),
        }
    }

    pub(crate) fn ended(&self) -> bool {
        self.ended
    }
}

pub(crate) fn into_result(r: Response) -> Result<Response, Error> {
    match r {
        Response::Error(e) => Err(Error::Guest(e)),
        r => Ok(r),
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        if !self.ended {
            // Tell the guest we are gone (detach, stop a watch, abort a transfer).
            let cancel = Frame::control(self.id, &Request::Cancel);
            if let Err(mpsc::error::TrySendError::Full(cancel)) = self.conn.out.try_send(cancel)
                && let Ok(rt) = tokio::runtime::Handle::try_current()
            {
                let out = self.conn.out.clone();
                rt.spawn(async move { out.send(cancel).await });
            }
            if let Some(map) = self.conn.shared.table().as_mut() {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_with(id: u32) -> (Arc<Shared>, mpsc::Receiver<Queued>) {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut map = HashMap::new();
        map.insert(
            id,
            Slot {
                tx,
                window: Arc::new(Window::new()),
            },
        );
        *shared.table() = Some(map);
        (shared, rx)
    }

    #[test]
    fn a_guest_that_ignores_the_window_is_cut_off_within_it() {
        let (shared, _rx) = shared_with(1);
        let mut held = 0u64;
        let why = loop {
            let f = Frame::data(1, Bytes::from(vec![0u8; 1000]));
            let cost = f.cost();
            match route(&shared, f) {
                Verdict::Go => held += cost,
                Verdict::Break(why) => break why,
            }
        };
        assert!(why.contains("window"), "{why}");
        assert!(held <= u64::from(WINDOW) + 1064, "{held}");
    }

    #[test]
    fn empty_frames_cost_too() {
        let (shared, rx) = shared_with(1);
        let mut n = 0usize;
        while let Verdict::Go = route(&shared, Frame::data(1, Bytes::new())) {
            n += 1;
        }
        assert_eq!(n, WINDOW as usize / FRAME_COST);
        assert_eq!(rx.len(), n);
    }

    #[test]
    fn the_final_answer_fits_after_a_full_window() {
        let (shared, mut rx) = shared_with(1);
        // Leave the window with one byte, then overshoot it with a large frame.
        let first = Frame::data(1, Bytes::from(vec![0u8; WINDOW as usize - 1 - FRAME_COST]));
        assert!(matches!(route(&shared, first), Verdict::Go));
        let big = Frame::data(1, Bytes::from(vec![0u8; MAX_PAYLOAD]));
        assert!(matches!(route(&shared, big), Verdict::Go));
        let done = Frame::control(1, &Response::Done);
        assert!(matches!(route(&shared, done), Verdict::Go));
        assert_eq!(rx.len(), 3);
        assert!(shared.table().as_ref().unwrap().is_empty(), "stream ended");
        let _ = rx.try_recv();
    }

    #[test]
    fn malformed_and_unexpected_frames_end_the_connection() {
        let (shared, _rx) = shared_with(1);
        let bad_json = Frame {
            stream: 1,
            kind: FrameKind::Control,
            payload: Bytes::from_static(b"{\"r\":\"no_such\"}"),
        };
        assert!(matches!(route(&shared, bad_json), Verdict::Break(_)));
        assert!(matches!(
            route(&shared, Frame::credit(1, u32::MAX)),
            Verdict::Break(_)
        ));
        // Unknown streams are dropped, whatever they carry.
        assert!(matches!(
            route(&shared, Frame::data(77, Bytes::from_static(b"x"))),
            Verdict::Go
        ));
        assert!(matches!(
            route(&shared, Frame::control(77, &Response::Done)),
            Verdict::Go
        ));
    }
}
