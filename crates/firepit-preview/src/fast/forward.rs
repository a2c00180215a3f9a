//! Forwarding one exchange as bytes: the request head and body to the app,
//! the response head back (after any 1xx heads, passed on as they come),
//! then the body, framed as [`super::framing`] finds it.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::framing::Framing;
use super::parse::Plan;
use super::rewrite::{Sent, rewrite_response};
use super::{CHUNK, MAX_HEAD, MAX_HEADERS};
use crate::rules::Policy;

/// Why an exchange failed.
pub(super) enum Failed {
    /// The upstream closed or failed before sending anything.
    Stale,
    /// The upstream failed or sent something that is not HTTP.
    Upstream,
    /// The client went away.
    Client,
}

/// Sends the request (head and body) and the response's head on.
pub(super) async fn exchange(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    up: &mut TcpStream,
    up_buf: &mut BytesMut,
    plan: &Plan,
    policy: &Policy<'_>,
) -> Result<Sent, Failed> {
    // The head, with as much of the body as is here, in one write.
    let here = (buf.len() as u64).min(plan.body_len) as usize;
    let mut first = Vec::with_capacity(plan.out.len() + here);
    first.extend_from_slice(&plan.out);
    first.extend_from_slice(&buf[..here]);
    if up.write_all(&first).await.is_err() {
        return Err(Failed::Stale);
    }
    buf.advance(here);
    let mut left = plan.body_len - here as u64;
    while left > 0 {
        buf.reserve(CHUNK);
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Failed::Client),
            Ok(_) => {}
        }
        let n = (buf.len() as u64).min(left) as usize;
        up.write_all(&buf[..n])
            .await
            .map_err(|_| Failed::Upstream)?;
        buf.advance(n);
        left -= n as u64;
    }
    // The response head (after any 1xx heads, passed on as they come).
    let mut got_any = false;
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(up_buf) {
                Ok(httparse::Status::Complete(len)) => {
                    Some(rewrite_response(&resp, len, plan, policy).ok_or(Failed::Upstream)?)
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(Failed::Upstream),
            }
        };
        match parsed {
            Some((out, head_len, Some(mut sent))) => {
                up_buf.advance(head_len);
                let mut first = out;
                let body_here = sent.framing.consume(up_buf).ok_or(Failed::Upstream)?;
                first.extend_from_slice(&up_buf[..body_here]);
                client.write_all(&first).await.map_err(|_| Failed::Client)?;
                up_buf.advance(body_here);
                return Ok(sent);
            }
            Some((out, head_len, None)) => {
                // 1xx: on to the client, then the real head.
                up_buf.advance(head_len);
                client.write_all(&out).await.map_err(|_| Failed::Client)?;
                got_any = true;
                continue;
            }
            None if up_buf.len() >= MAX_HEAD => return Err(Failed::Upstream),
            None => {}
        }
        up_buf.reserve(CHUNK);
        match up.read_buf(up_buf).await {
            Ok(0) | Err(_) if up_buf.is_empty() && !got_any => return Err(Failed::Stale),
            Ok(0) | Err(_) => return Err(Failed::Upstream),
            Ok(_) => got_any = true,
        }
    }
}

/// Copies the rest of a response body from the app to the client.
pub(super) async fn copy_body(
    client: &mut TcpStream,
    up: &mut TcpStream,
    up_buf: &mut BytesMut,
    mut framing: Framing,
) -> std::io::Result<()> {
    let broken = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    while !framing.done() {
        up_buf.clear();
        up_buf.reserve(CHUNK);
        let n = up.read_buf(up_buf).await?;
        if n == 0 {
            return match framing {
                Framing::UntilClose => client.shutdown().await,
                _ => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            };
        }
        let used = framing.consume(up_buf).ok_or_else(broken)?;
        client.write_all(&up_buf[..used]).await?;
        up_buf.advance(used);
    }
    Ok(())
}
