//! The shared terminal's scrollback, kept on the host across a session's
//! stop and start.
//!
//! A machine's `main` PTY starts empty with each start. Before the daemon
//! stops a session (or restores it), it reads `main`'s scrollback from the
//! guest and keeps the last [`KEEP`] bytes of what it kept before and that,
//! in `<data dir>/scrollback/<session>` (0600, written whole or not at all).
//! A client attaching to `main` over the API gets that history first, with a
//! line saying where the new shell begins, then the guest's own scrollback.
//!
//! **Architecture Invariant:** what a machine prints cannot grow the daemon's
//! memory or disk beyond [`KEEP`] per session: the read takes at most
//! [`CAPTURE_WITHIN`], keeps only the last [`KEEP`] bytes of whatever the
//! guest sends (whatever length it claims), and the file holds [`KEEP`]
//! bytes at most. The bytes are the machine's: they only ever go back to a
//! terminal, as terminal output.

use std::path::PathBuf;
use std::time::Duration;

use firepit_guest_client::{GuestClient, PtyEvent};

use crate::App;

/// Bytes of the shared terminal's history kept per session.
pub const KEEP: usize = 256 * 1024;
/// How long reading the scrollback at a stop may take.
pub const CAPTURE_WITHIN: Duration = Duration::from_secs(2);
/// The shared terminal's name.
pub const MAIN: &str = "main";

/// Where a new shell begins in the replayed history: leaves an alternate
/// screen (mode 1047, whose reset does not move the cursor as 1049's does),
/// resets the colours, and says so.
pub const SEPARATOR: &[u8] = b"\x1b[?1047l\x1b[0m\r\n\x1b[2m[firepit: the session was stopped here; a new shell begins below]\x1b[0m\r\n";

fn path(app: &App, id: &str) -> Option<PathBuf> {
    crate::sessions::is_valid_id(id).then(|| app.config().data_dir.join("scrollback").join(id))
}

/// The last `max` bytes of `bytes`, starting after a line break when cut,
/// so the history does not begin inside an escape or a character.
pub fn tail(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let cut = &bytes[bytes.len() - max..];
    match cut.iter().position(|&b| b == b'\n') {
        Some(i) => &cut[i + 1..],
        None => cut,
    }
}

/// Keeps the last `max` bytes of `buf` once it holds twice that: appends
/// stay cheap and the buffer bounded.
fn bound(buf: &mut Vec<u8>, max: usize) {
    if buf.len() > 2 * max {
        buf.drain(..buf.len() - max);
    }
}

/// Reads `main`'s scrollback: what the guest sends on attach, as much as it
/// says it has, the last [`KEEP`] bytes kept.
async fn capture(guest: &GuestClient) -> Result<Vec<u8>, firepit_guest_client::Error> {
    let mut pty = guest.pty_attach(MAIN, None).await?;
    let claimed = pty.info().scrollback;
    let mut seen = 0u64;
    let mut buf = Vec::new();
    while seen < claimed {
        match pty.next_event().await? {
            Some(PtyEvent::Output(b)) => {
                seen += b.len() as u64;
                buf.extend_from_slice(&b);
                bound(&mut buf, KEEP);
            }
            _ => break,
        }
    }
    let kept = tail(&buf, KEEP).len();
    buf.drain(..buf.len() - kept);
    Ok(buf)
}

/// Before session `id` stops: adds `main`'s scrollback to what is kept.
/// Best effort: a machine that does not answer in time keeps what was kept.
pub(crate) async fn keep(app: &App, id: &str) {
    let Some(path) = path(app, id) else { return };
    let Some(guest) = app.live().get(id).and_then(|l| l.guest()) else {
        return;
    };
    let now = match tokio::time::timeout(CAPTURE_WITHIN, capture(&guest)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::debug!(session = %id, error = %e, "no scrollback to keep");
            return;
        }
        Err(_) => {
            tracing::warn!(session = %id, "the shared terminal's scrollback did not come in time; the kept history stays as it was");
            return;
        }
    };
    if now.is_empty() {
        return;
    }
    let before = kept(app, id);
    let mut all = before;
    if !all.is_empty() {
        all.extend_from_slice(SEPARATOR);
    }
    all.extend_from_slice(&now);
    let body = tail(&all, KEEP).to_vec();
    let written = tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        firepit_util::write_private(&path, &body)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(session = %id, error = %e, "could not keep the shared terminal's scrollback")
        }
        Err(e) => tracing::warn!(session = %id, error = %e, "could not keep the scrollback"),
    }
}

/// The history kept for session `id` (empty if none), at most [`KEEP`] bytes.
pub fn kept(app: &App, id: &str) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Some(path) = path(app, id) else {
        return Vec::new();
    };
    let Ok(mut f) = std::fs::File::open(&path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(KEEP as u64);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.take(KEEP as u64).read_to_end(&mut buf).is_err()
    {
        return Vec::new();
    }
    buf
}

/// What a client attaching to session `id`'s `main` gets before the guest's
/// own scrollback: the kept history and the separator, or nothing.
pub fn replay(app: &App, id: &str) -> Vec<u8> {
    let mut b = kept(app, id);
    if !b.is_empty() {
        b.extend_from_slice(SEPARATOR);
    }
    b
}

/// Deletes session `id`'s kept history (the session is destroyed).
pub(crate) fn forget(app: &App, id: &str) {
    if let Some(p) = path(app, id) {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_starts_after_a_line_break_and_is_bounded() {
        assert_eq!(tail(b"short", 10), b"short");
        assert_eq!(tail(b"abc\ndef\nghi", 6), b"ghi");
        assert_eq!(tail(b"abcdefghij", 4), b"ghij");
        let big = vec![b'x'; 3 * KEEP];
        assert_eq!(tail(&big, KEEP).len(), KEEP);
    }

    #[test]
    fn the_buffer_never_holds_more_than_twice_the_bound() {
        let mut buf = Vec::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'y'; 4096]);
            bound(&mut buf, KEEP);
            assert!(buf.len() <= 2 * KEEP + 4096);
        }
        assert!(buf.len() >= KEEP);
    }
}
