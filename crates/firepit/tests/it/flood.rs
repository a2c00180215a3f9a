//! Floods: a command or a terminal that prints without end, read slowly by its client,
//! costs the daemon a bounded amount of memory (the guest protocol's windows hold the
//! output in the machine), however long it goes on.
//!
//! The bound is checked on the daemon's own memory: its peak resident set (`VmHWM`,
//! reset through `clear_refs` once the daemon is warm) against its resident set before
//! the flood.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::Daemon;
use crate::terminal::{attach, read_until};

/// How much the daemon may grow while a flood goes on.
const BOUND: u64 = 64 << 20;
/// How long the slow reader reads.
const FLOOD: Duration = Duration::from_secs(30);
/// The slow reader's pause between two reads.
const PAUSE: Duration = Duration::from_millis(50);

/// A field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// The daemon's memory from now on: its resident set now, and the peak from here.
struct Memory {
    pid: u32,
    before: u64,
    /// Whether the kernel's peak could be reset (else only samples count).
    hwm_reset: bool,
    sampled_peak: u64,
}

impl Memory {
    fn start(pid: u32) -> Memory {
        // "5" resets the peak resident set to the current one.
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let before = status_bytes(pid, "VmRSS:");
        Memory {
            pid,
            before,
            hwm_reset,
            sampled_peak: before,
        }
    }

    fn sample(&mut self) {
        self.sampled_peak = self.sampled_peak.max(status_bytes(self.pid, "VmRSS:"));
    }

    /// How far above the start the daemon's resident set went.
    fn growth(&mut self) -> u64 {
        self.sample();
        let mut peak = self.sampled_peak;
        if self.hwm_reset {
            peak = peak.max(status_bytes(self.pid, "VmHWM:"));
        }
        peak.saturating_sub(self.before)
    }
}

/// A session whose daemon has already run a command and attached a terminal, so that
/// what it sets up once does not count as growth.
async fn warm(d: &Daemon) -> String {
    let id = d.new_session(&[]);
    assert_eq!(d.sh(&id, "echo warm").trim(), "warm");
    let mut ws = attach(d, &id).await;
    ws.send(Message::binary(b"echo warm-$((1+1))\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut ws, "warm-2").await;
    drop(ws);
    id
}

#[tokio::test]
async fn yes_through_exec_to_a_slow_reader_keeps_the_daemon_small() {
    let d = Daemon::start("fl1");
    let id = warm(&d).await;
    let mut mem = Memory::start(d.pid());
    let resp = d
        .http()
        .post(format!("{}/v1/sessions/{id}/exec", d.url))
        .json(&serde_json::json!({"command": {"argv": ["yes"]}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut body = resp.bytes_stream();
    let (started, mut read) = (Instant::now(), 0usize);
    while started.elapsed() < FLOOD {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("the exec stream stalled")
            .expect("the exec stream ended")
            .unwrap();
        read += chunk.len();
        mem.sample();
        tokio::time::sleep(PAUSE).await;
    }
    let grown = mem.growth();
    assert!(read > 0);
    assert!(
        grown < BOUND,
        "the daemon grew by {} MiB while `yes` ran through exec ({read} bytes read)",
        grown >> 20
    );
    // The stream is intact: what arrived are NDJSON lines of `y`s.
    drop(body);
    assert_eq!(d.sh(&id, "echo after").trim(), "after");
}

#[tokio::test]
async fn yes_in_a_terminal_with_a_slow_reader_keeps_the_daemon_small() {
    let d = Daemon::start("fl2");
    let id = warm(&d).await;
    let mut mem = Memory::start(d.pid());
    let mut ws = attach(&d, &id).await;
    ws.send(Message::binary(b"yes\r".to_vec())).await.unwrap();
    let started = Instant::now();
    let (mut read, mut last_line, mut close) = (0usize, String::new(), None);
    while started.elapsed() < FLOOD && close.is_none() {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the terminal stalled");
        match msg {
            Some(Ok(Message::Binary(b))) => {
                read += b.len();
                last_line = String::from_utf8_lossy(&b).into_owned();
            }
            Some(Ok(Message::Close(frame))) => close = Some(frame),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the terminal failed: {e}"),
            None => panic!("the terminal ended without a close frame"),
        }
        mem.sample();
        tokio::time::sleep(PAUSE).await;
    }
    let grown = mem.growth();
    assert!(
        grown < BOUND,
        "the daemon grew by {} MiB while `yes` ran in a slowly read terminal ({read} bytes read)",
        grown >> 20
    );
    // The slow client is dropped with a reason, not fed from a growing queue: what is
    // left for it (at most the buffers on the way) ends with a last line and a close.
    let close = match close {
        Some(c) => c,
        None => tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        last_line = String::from_utf8_lossy(&b).into_owned();
                    }
                    Some(Ok(Message::Close(frame))) => return frame,
                    Some(Ok(_)) => {}
                    other => panic!("the terminal ended without a close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("the slow terminal was never closed"),
    };
    assert!(last_line.contains("fell too far behind"), "{last_line:?}");
    let close = close.expect("a close frame with a reason");
    assert_eq!(close.code, CloseCode::Again);
    assert!(close.reason.contains("fell too far behind"), "{close:?}");
    // The shell runs on: a new client gets it back and can stop the flood.
    let mut again = attach(&d, &id).await;
    again
        .send(Message::binary(b"\x03\recho after-$((2+3))\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut again, "after-5").await;
}
