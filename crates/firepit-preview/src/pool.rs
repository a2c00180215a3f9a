//! Upstream connections kept alive between requests, per session and port,
//! shared by both paths: the fast path and the full path take connections
//! from the one [`Pool`] and put them back once a response has been read to
//! its end, and [`Pool::forget`] empties a session's share when it stops.
//!
//! A connection goes back only when nothing more is expected on it: its
//! last response ended where its framing said, and no byte beyond it was
//! read. One the app has closed meanwhile is dropped when it is taken (the
//! closing is seen without a system call when the runtime has seen it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio::net::TcpStream;

/// Idle upstream connections kept per session and port.
pub const MAX_IDLE: usize = 64;

/// Idle upstream connections, by session and port.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, HashMap<u16, Vec<TcpStream>>>>,
}

impl Pool {
    /// An idle connection to `port` of `session` that the app has not
    /// closed, if there is one.
    pub fn take(&self, session: &str, port: u16) -> Option<TcpStream> {
        let mut idle = self.idle.lock().expect("pool");
        let list = idle.get_mut(session)?.get_mut(&port)?;
        while let Some(stream) = list.pop() {
            if quiet(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream`, idle, for the next request to `port` of `session`
    /// (dropped when [`MAX_IDLE`] are kept already, or when the app has
    /// closed it: a machine that stopped leaves nothing behind).
    pub fn put(&self, session: &str, port: u16, stream: TcpStream) {
        if !quiet(&stream) {
            return;
        }
        let mut idle = self.idle.lock().expect("pool");
        let list = match idle.get_mut(session) {
            Some(ports) => ports.entry(port).or_default(),
            None => idle
                .entry(session.to_owned())
                .or_default()
                .entry(port)
                .or_default(),
        };
        if list.len() < MAX_IDLE {
            list.push(stream);
        }
    }

    /// Drops the idle connections of `session` (it stopped).
    pub fn forget(&self, session: &str) {
        self.idle.lock().expect("pool").remove(session);
    }

    /// How many idle connections `session` has.
    pub fn idle(&self, session: &str) -> usize {
        self.idle
            .lock()
            .expect("pool")
            .get(session)
            .map_or(0, |ports| ports.values().map(Vec::len).sum())
    }
}

/// Whether an idle connection has nothing to read: the app neither closed it
/// nor sent anything unasked. Readiness the runtime has not seen counts as
/// quiet (the request sent on it then fails as on any closed connection).
fn quiet(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    matches!(stream.poll_peek(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        (c, l.accept().await.unwrap().0)
    }

    #[tokio::test]
    async fn closed_connections_are_not_handed_out_and_forget_empties() {
        let pool = Pool::default();
        let (a, _a_peer) = pair().await;
        let (b, mut b_peer) = pair().await;
        let (c, c_peer) = pair().await;
        pool.put("s", 80, a);
        pool.put("s", 80, b);
        pool.put("s", 80, c);
        pool.put("t", 80, pair().await.0);
        drop(c_peer);
        b_peer.write_all(b"unasked").await.unwrap();
        // On loopback both arrived when the calls returned; parking once on
        // the runtime's driver (any sleep does) lets it see them.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        assert!(pool.take("s", 80).is_some());
        assert!(pool.take("s", 80).is_none());
        assert!(pool.take("s", 81).is_none());
        pool.forget("t");
        assert_eq!(pool.idle("t"), 0);
    }
}
