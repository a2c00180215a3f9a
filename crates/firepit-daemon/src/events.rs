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
//!
//! Events a machine's own processes can cause at will (ports, services,
//! problems in logs: [`is_rate_limited`]) go through
//! [`EventLog::append_limited`], a token bucket per session ([`RateLimit`]):
//! what comes faster than the bucket allows is not stored, and one `note`
//! event says how many were dropped ("N events dropped: rate limit") once
//! [`RateLimit::summary_after`] has passed since the first of them. Lifecycle
//! events (state changes), the agent's, shares and the rest always pass.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_wire::events::{Event, EventKind};
use futures::Stream;
use tokio::sync::broadcast;

use crate::{Error, Store};

/// Live events a subscriber may fall behind by before it re-reads the store.
const LIVE_BACKLOG: usize = 256;
/// Stored events read at a time.
const PAGE: usize = 500;

/// How fast a session's machine may add events to its log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Events at once, after a quiet time.
    pub burst: u32,
    /// Events a second, in the long run.
    pub per_second: f64,
    /// How long after the first dropped event the summary of the drops is
    /// logged.
    pub summary_after: Duration,
}

impl Default for RateLimit {
    /// Bursts of 200, 20 a second, drops summed up every 5 s.
    fn default() -> Self {
        RateLimit {
            burst: 200,
            per_second: 20.0,
            summary_after: Duration::from_secs(5),
        }
    }
}

/// Whether events of this kind count against their session's [`RateLimit`]:
/// the kinds a machine's processes cause at will (binding ports, starting
/// and crashing services, writing errors to logs).
pub fn is_rate_limited(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::PortOpened { .. }
            | EventKind::PortClosed { .. }
            | EventKind::ServiceStarted { .. }
            | EventKind::ServiceExited { .. }
            | EventKind::Problem { .. }
            | EventKind::FilesChanged { .. }
    )
}

/// A session's token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: tokio::time::Instant,
    /// Events dropped since the last summary.
    dropped: u64,
    /// When the summary of `dropped` is due.
    summary_at: Option<tokio::time::Instant>,
}

/// The session event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog(Arc<Inner>);

struct Inner {
    store: Arc<Store>,
    /// Live subscribers per session. Appends hold this lock from the insert
    /// to the publish; subscribers join under it.
    live: Mutex<HashMap<String, broadcast::Sender<Event>>>,
    rate: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

use firepit_util::now_ms;

impl EventLog {
    /// A log kept in `store`, with the default [`RateLimit`].
    pub fn new(store: Arc<Store>) -> EventLog {
        EventLog::with_rate(store, RateLimit::default())
    }

    /// A log kept in `store` whose sessions' machines add events at `rate`.
    pub fn with_rate(store: Arc<Store>, rate: RateLimit) -> EventLog {
        EventLog(Arc::new(Inner {
            store,
            live: Mutex::default(),
            rate,
            buckets: Mutex::default(),
        }))
    }

    /// Appends an event like [`EventLog::append`] if the session's rate limit
    /// lets it pass ([`is_rate_limited`] kinds only; others always pass);
    /// else counts it as dropped and returns `None`. The first drop schedules
    /// the summary `note`.
    pub fn append_limited(&self, session: &str, kind: EventKind) -> Result<Option<Event>, Error> {
        if !is_rate_limited(&kind) {
            return self.append(session, kind).map(Some);
        }
        let now = tokio::time::Instant::now();
        self.summarize_due(session, now)?;
        let rate = self.0.rate;
        let schedule = {
            let mut buckets = self.0.buckets.lock().expect("event buckets");
            let b = buckets.entry(session.to_owned()).or_insert_with(|| Bucket {
                tokens: f64::from(rate.burst),
                at: now,
                dropped: 0,
                summary_at: None,
            });
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
            b.at = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                None
            } else {
                b.dropped += 1;
                match b.summary_at {
                    Some(_) => Some(false),
                    None => {
                        b.summary_at = Some(now + rate.summary_after);
                        Some(true)
                    }
                }
            }
        };
        match schedule {
            None => self.append(session, kind).map(Some),
            Some(first) => {
                if first && let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let (log, session) = (self.clone(), session.to_owned());
                    rt.spawn(async move {
                        tokio::time::sleep(log.0.rate.summary_after).await;
                        let now = tokio::time::Instant::now();
                        if let Err(e) = log.summarize_due(&session, now) {
                            tracing::debug!(session, error = %crate::error::chain(&e), "no summary of dropped events");
                        }
                    });
                }
                Ok(None)
            }
        }
    }

    /// Logs the summary of a session's dropped events if it is due.
    fn summarize_due(&self, session: &str, now: tokio::time::Instant) -> Result<(), Error> {
        let dropped = {
            let mut buckets = self.0.buckets.lock().expect("event buckets");
            match buckets.get_mut(session) {
                Some(b) if b.summary_at.is_some_and(|at| at <= now) => {
                    b.summary_at = None;
                    std::mem::take(&mut b.dropped)
                }
                _ => return Ok(()),
            }
        };
        let rate = self.0.rate;
        self.append(
            session,
            EventKind::Note {
                text: format!(
                    "{dropped} events dropped: rate limit (this session's ports, services and problems may add {} a second, {} at once)",
                    rate.per_second, rate.burst
                ),
            },
        )?;
        Ok(())
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
        self.0
            .buckets
            .lock()
            .expect("event buckets")
            .remove(session);
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

    fn problem(i: usize) -> EventKind {
        EventKind::Problem {
            source: "service:app".into(),
            kind: "python_exception".into(),
            summary: format!("error {i}"),
            detail: String::new(),
            count: 1,
        }
    }

    fn summaries(log: &EventLog, session: &str) -> Vec<String> {
        log.list(session, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Note { text } if text.contains("dropped") => Some(text),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_machine_events_is_cut_to_the_rate_and_summed_up_once() {
        let rate = RateLimit {
            burst: 5,
            per_second: 2.0,
            summary_after: Duration::from_secs(5),
        };
        let log = EventLog::with_rate(Arc::new(crate::store::test_store(&["a", "b"])), rate);
        let flood = |log: &EventLog| {
            (0..50)
                .filter(|&i| log.append_limited("a", problem(i)).unwrap().is_some())
                .count()
        };
        assert_eq!(flood(&log), 5, "the burst passes, the rest is dropped");
        // Lifecycle events and other sessions are not held back.
        let state = EventKind::SessionState {
            state: firepit_wire::api::SessionState::Stopped,
            error: None,
        };
        assert!(log.append_limited("a", state).unwrap().is_some());
        assert!(log.append_limited("b", problem(0)).unwrap().is_some());
        assert!(summaries(&log, "a").is_empty(), "summed up too early");

        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            summaries(&log, "a"),
            [
                "45 events dropped: rate limit (this session's ports, services and problems may add 2 a second, 5 at once)"
            ]
        );
        let stored = log.list("a", 0, 10_000).unwrap().len();
        assert_eq!(stored, 5 + 1 + 1, "{stored} events stored");

        // The bucket refilled: the next flood passes a burst again, and gets
        // a summary of its own.
        assert_eq!(flood(&log), 5);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(summaries(&log, "a").len(), 2);
        assert!(summaries(&log, "a")[1].starts_with("45 events dropped"));
        // A steady trickle under the rate loses nothing.
        tokio::time::sleep(Duration::from_secs(10)).await;
        for i in 0..20 {
            assert!(
                log.append_limited("a", problem(i)).unwrap().is_some(),
                "{i}"
            );
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        assert_eq!(summaries(&log, "a").len(), 2);
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
