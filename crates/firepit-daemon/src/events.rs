//! The session event log: what happened in each session, in order, kept.
//!
//! [`EventLog::append`] writes an event to the store with the session's next
//! sequence number and commits it, and only then publishes it to the session's
//! live subscribers (an in-memory broadcast). Appends are serialised, so live
//! events go out in `seq` order.
//!
//! [`EventLog::subscribe`] gives every stored event after a cursor, then live
//! ones, each exactly once: it subscribes to the broadcast *before* it reads the
//! store (under the same lock appends publish under), so an event appended
//! during the switch-over is either read from the store or received live, and
//! a live event at or below the last `seq` seen is skipped. A subscriber that
//! falls behind the broadcast (or sees a gap) reads the store again from its
//! last `seq`. Because the store is the source, a client that reconnects from
//! its cursor, even to a restarted daemon, misses nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use firepit_wire::events::{Event, EventKind};
use futures::Stream;
use tokio::sync::broadcast;

use crate::{Error, Store};

/// Live events a subscriber may fall behind by before it re-reads the store.
const LIVE_BACKLOG: usize = 256;
/// Stored events read at a time.
const PAGE: usize = 500;

/// The session event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog(Arc<Inner>);

struct Inner {
    store: Arc<Store>,
    /// Live subscribers per session. Appends hold this lock from the insert
    /// to the publish; subscribers join under it.
    live: Mutex<HashMap<String, broadcast::Sender<Event>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl EventLog {
    /// A log kept in `store`.
    pub fn new(store: Arc<Store>) -> EventLog {
        EventLog(Arc::new(Inner {
            store,
            live: Mutex::default(),
        }))
    }

    /// Appends an event to `session`'s log (stored and committed), then sends
    /// it to the session's subscribers. A session the store does not know is
    /// [`Error::SessionNotFound`].
    pub fn append(&self, session: &str, kind: EventKind) -> Result<Event, Error> {
        let mut live = self.0.live.lock().expect("event log lock");
        let event = self.0.store.append_event(session, now_ms(), &kind)?;
        if let Some(tx) = live.get(session)
            && tx.send(event.clone()).is_err()
        {
            // Nobody listens any more.
            live.remove(session);
        }
        Ok(event)
    }

    /// The seq of `session`'s newest event (0 when it has none): a cursor for
    /// following only what happens from now on.
    pub fn last_seq(&self, session: &str) -> Result<u64, Error> {
        self.0.store.last_event_seq(session)
    }

    /// Stored events of `session` after `since`, oldest first, at most `limit`.
    pub fn list(&self, session: &str, since: u64, limit: usize) -> Result<Vec<Event>, Error> {
        self.0.store.events_after(session, since, limit)
    }

    /// Ends the live streams of a session that is gone (its events went with it
    /// from the store).
    pub fn forget(&self, session: &str) {
        self.0.live.lock().expect("event log lock").remove(session);
    }

    /// Every event of `session` after `since`, then live ones as they are
    /// appended, each exactly once, in `seq` order. The stream ends when the
    /// session is forgotten, or after the first error.
    pub fn subscribe(
        &self,
        session: &str,
        since: u64,
    ) -> impl Stream<Item = Result<Event, Error>> + Send + use<> {
        let rx = self
            .0
            .live
            .lock()
            .expect("event log lock")
            .entry(session.to_owned())
            .or_insert_with(|| broadcast::channel(LIVE_BACKLOG).0)
            .subscribe();
        let sub = Subscription {
            log: self.clone(),
            session: session.to_owned(),
            last: since,
            backlog: VecDeque::new(),
            read_store: true,
            rx,
            done: false,
        };
        futures::stream::unfold(sub, |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        })
    }
}

struct Subscription {
    log: EventLog,
    session: String,
    /// The last `seq` delivered (or the cursor).
    last: u64,
    backlog: VecDeque<Event>,
    /// Whether the store may hold events after `last` that `backlog` lacks.
    read_store: bool,
    rx: broadcast::Receiver<Event>,
    done: bool,
}

impl Subscription {
    async fn next(&mut self) -> Option<Result<Event, Error>> {
        if self.done {
            return None;
        }
        loop {
            if self.backlog.is_empty() && self.read_store {
                match self.log.list(&self.session, self.last, PAGE) {
                    Ok(page) => {
                        self.read_store = page.len() == PAGE;
                        self.backlog.extend(page);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.seq;
                return Some(Ok(event));
            }
            match self.rx.recv().await {
                Ok(event) if event.seq <= self.last => continue,
                Ok(event) if event.seq == self.last + 1 => {
                    self.last = event.seq;
                    return Some(Ok(event));
                }
                // A gap (the cursor was ahead) or fell behind: the store has it all.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.read_store = true,
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    fn log_with(ids: &[&str]) -> EventLog {
        EventLog::new(Arc::new(crate::store::test_store(ids)))
    }

    fn note(i: usize) -> EventKind {
        EventKind::Note {
            text: i.to_string(),
        }
    }

    async fn take(stream: impl Stream<Item = Result<Event, Error>>, n: usize) -> Vec<u64> {
        tokio::time::timeout(Duration::from_secs(20), async {
            stream
                .take(n)
                .map(|e| e.unwrap().seq)
                .collect::<Vec<_>>()
                .await
        })
        .await
        .expect("hang guard")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_from_tasks_count_1_to_n() {
        let log = log_with(&["a"]);
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..40 {
                        seqs.push(log.append("a", note(t * 100 + i)).unwrap().seq);
                        tokio::task::yield_now().await;
                    }
                    seqs
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (1..=320).collect::<Vec<_>>());
        let stored: Vec<_> = log.list("a", 0, 1000).unwrap();
        assert_eq!(
            stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=320).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn subscribing_while_appending_sees_each_event_once() {
        const N: usize = 2000;
        let log = log_with(&["a"]);
        for i in 0..50 {
            log.append("a", note(i)).unwrap();
        }
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 50..N {
                    log.append("a", note(i)).unwrap();
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        // Subscribers join at different points of the writing, from different
        // cursors; each must see exactly the events after its cursor.
        let mut readers = Vec::new();
        for k in 0..6u64 {
            let log = log.clone();
            readers.push(tokio::spawn(async move {
                let since = k * 10;
                (
                    since,
                    take(log.subscribe("a", since), N - since as usize).await,
                )
            }));
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        for r in readers {
            let (since, seqs) = r.await.unwrap();
            assert_eq!(seqs, (since + 1..=N as u64).collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_reads_the_store_again() {
        let log = log_with(&["a"]);
        let stream = log.subscribe("a", 0);
        // Far more than the live backlog, before the subscriber reads anything.
        for i in 0..(LIVE_BACKLOG * 3 + PAGE) {
            log.append("a", note(i)).unwrap();
        }
        let n = LIVE_BACKLOG * 3 + PAGE;
        assert_eq!(take(stream, n).await, (1..=n as u64).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn forgetting_a_session_ends_its_streams() {
        let log = log_with(&["a", "b"]);
        log.append("a", note(0)).unwrap();
        log.append("b", note(0)).unwrap();
        let mut stream = Box::pin(log.subscribe("a", 0));
        assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
        log.0.store.delete_session("a").unwrap();
        log.forget("a");
        assert!(stream.next().await.is_none());
        assert!(log.list("a", 0, 10).unwrap().is_empty());
        assert!(matches!(
            log.append("a", note(1)),
            Err(Error::SessionNotFound(_))
        ));
        assert_eq!(log.list("b", 0, 10).unwrap().len(), 1);
    }
}
