//! The multiplexed connection: stream ids, the demultiplexing reader, the writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{Frame, FrameKind, MAX_PAYLOAD, Request, Response, encode_batch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::Error;

/// Streams by id; `None` once the connection has ended.
type Table = Arc<Mutex<Option<HashMap<u32, mpsc::UnboundedSender<Frame>>>>>;

#[derive(Clone)]
pub(crate) struct Conn {
    out: mpsc::Sender<Frame>,
    table: Table,
    next_id: Arc<AtomicU32>,
}

impl Conn {
    pub(crate) fn start<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(io: T) -> Conn {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (out, mut out_rx) = mpsc::channel::<Frame>(64);
        let table: Table = Arc::new(Mutex::new(Some(HashMap::new())));

        tokio::spawn(async move {
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

        let reader_table = table.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            'read: loop {
                loop {
                    let frame = match Frame::decode(&mut buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(_) => break 'read,
                    };
                    let final_ = frame.kind == FrameKind::Control
                        && frame.parse::<Response>().is_ok_and(|r| r.is_final());
                    let mut t = reader_table.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(map) = t.as_mut() else { break 'read };
                    if final_ {
                        if let Some(tx) = map.remove(&frame.stream) {
                            let _ = tx.send(frame);
                        }
                    } else if let Some(tx) = map.get(&frame.stream) {
                        let _ = tx.send(frame);
                    }
                }
                buf.reserve(64 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Dropping every sender ends every open stream with `Closed`.
            reader_table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        });

        Conn {
            out,
            table,
            next_id: Arc::new(AtomicU32::new(1)),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
            || self.out.is_closed()
    }

    /// Opens a stream with `req` as its first message.
    pub(crate) async fn open(&self, req: &Request) -> Result<StreamHandle, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            let map = t.as_mut().ok_or(Error::Closed)?;
            let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
            while map.contains_key(&id) {
                id = self.next_id.fetch_add(1, Ordering::Relaxed);
            }
            map.insert(id, tx);
            id
        };
        let handle = StreamHandle {
            id,
            conn: self.clone(),
            rx,
            ended: false,
        };
        handle.send(Frame::control(id, req)).await?;
        Ok(handle)
    }
}

/// The client's end of one stream.
pub(crate) struct StreamHandle {
    id: u32,
    conn: Conn,
    rx: mpsc::UnboundedReceiver<Frame>,
    ended: bool,
}

impl StreamHandle {
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), Error> {
        self.conn.out.send(frame).await.map_err(|_| Error::Closed)
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

    /// The next frame; `Ok(None)` after the final response, `Closed` if the connection ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, Error> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(f) => {
                if f.kind == FrameKind::Control && f.parse::<Response>().is_ok_and(|r| r.is_final())
                {
                    self.ended = true;
                }
                Ok(Some(f))
            }
            None => {
                self.ended = true;
                Err(Error::Closed)
            }
        }
    }

    /// The next control message, skipping nothing: a data frame here is a protocol error.
    /// A guest `Error` becomes `Err`.
    pub(crate) async fn control(&mut self) -> Result<Response, Error> {
        match self.next().await? {
            Some(f) if f.kind == FrameKind::Control => into_result(parse(&f)?),
            Some(_) => Err(Error::Protocol("data before the answer".into())),
            None => Err(Error::Protocol("stream already ended".into())),
        }
    }

    pub(crate) fn ended(&self) -> bool {
        self.ended
    }
}

pub(crate) fn parse(f: &Frame) -> Result<Response, Error> {
    f.parse::<Response>()
        .map_err(|e| Error::Protocol(e.to_string()))
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
            if let Some(map) = self
                .conn
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                map.remove(&self.id);
            }
        }
    }
}
