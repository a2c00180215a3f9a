//! `firepit shell ID`: attaches this terminal to a PTY of the session (the shared
//! `main` shell by default) over the daemon's WebSocket.
//!
//! Every attached terminal sees the same screen; a new one first gets the
//! scrollback. `Ctrl-]` detaches; the shell goes on.

use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};
use firepit_wire::api::PtyControl;
use futures::{SinkExt, StreamExt};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::Client;

/// The detach key, `Ctrl-]`.
const DETACH: u8 = 0x1d;

/// Puts the terminal in raw mode and restores it when dropped.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `struct winsize` through the pointer, which
    // points at a live, properly aligned `winsize` for the whole call.
    let rc =
        unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws as *mut nix::libc::winsize) };
    (rc == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// `firepit shell ID [--pty NAME]`
pub async fn shell(client: &Client, id: &str, pty: &str) -> Result<i32> {
    let url = format!(
        "{}/v1/sessions/{id}/pty/{pty}",
        client.url().replacen("http", "ws", 1)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .context("building the WebSocket request")?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", client.token())
            .parse()
            .context("the token is not a valid header")?,
    );
    let (ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let msg = serde_json::from_str::<firepit_wire::api::ErrorBody>(&body)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| format!("the daemon answered {}", resp.status()));
            bail!("{msg}");
        }
        Err(e) => bail!(
            "cannot reach the firepit daemon at {}: {e}; is it running?",
            client.url()
        ),
    };
    let (mut sink, mut source) = ws.split();
    if let Some((cols, rows)) = terminal_size() {
        let msg = serde_json::to_string(&PtyControl::Resize { cols, rows })?;
        sink.send(Message::text(msg)).await?;
    }
    let _raw = RawMode::enter();
    let mut stdin = tokio::io::stdin();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut buf = vec![0u8; 4096];
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            n = stdin.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    break;
                }
                if let Some(pos) = buf[..n].iter().position(|&b| b == DETACH) {
                    if pos > 0 {
                        sink.send(Message::binary(buf[..pos].to_vec())).await?;
                    }
                    break;
                }
                sink.send(Message::binary(buf[..n].to_vec())).await?;
            }
            _ = winch.recv() => {
                if let Some((cols, rows)) = terminal_size() {
                    sink.send(Message::text(serde_json::to_string(&PtyControl::Resize { cols, rows })?)).await?;
                }
            }
            msg = source.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b)?;
                    stdout.flush()?;
                }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(PtyControl::Exit { status }) = serde_json::from_str(&t) {
                        return Ok(status.code.unwrap_or(1));
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("the terminal connection broke: {e}"),
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    Ok(0)
}
