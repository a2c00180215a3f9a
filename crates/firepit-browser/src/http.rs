//! A tiny HTTP/1.1 client for Chromium's DevTools JSON endpoints
//! (`/json/version`, `/json/list`, `/json/new`), over a stream the caller
//! dialed. One request per connection (`Connection: close`), bounded in size.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Error;

/// Largest answer read.
const MAX_BODY: usize = 1 << 20;

/// Sends `method path` and returns the body of a 200 answer.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
) -> Result<String, Error> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let io = |e: std::io::Error| Error::DevTools(format!("{method} {path}: {e}"));
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_BODY {
            return Err(Error::DevTools(format!("{path}: the answer is over 1 MiB")));
        }
        if let Some(body) = complete(&buf) {
            return body.map_err(|m| Error::DevTools(format!("{path}: {m}")));
        }
    }
    complete(&buf)
        .unwrap_or_else(|| parse(&buf, true))
        .map_err(|m| Error::DevTools(format!("{path}: {m}")))
}

/// The body once the whole answer (by `Content-Length`) is in `buf`.
fn complete(buf: &[u8]) -> Option<Result<String, String>> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    })?;
    (buf.len() >= end + 4 + len).then(|| parse(&buf[..end + 4 + len], false))
}

fn parse(buf: &[u8], eof: bool) -> Result<String, String> {
    let end = find(buf, b"\r\n\r\n").ok_or(if eof {
        "the connection closed before an answer"
    } else {
        "no header end"
    })?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
    if status != "200" {
        return Err(format!("answered {status}: {}", body.trim()));
    }
    Ok(body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_body_by_length_and_refuses_errors() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut req = [0u8; 256];
            let n = b.read(&mut req).await.unwrap();
            assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /json/list HTTP/1.1\r\n"));
            b.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                .await
                .unwrap();
            // Kept open: the length ends the answer.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        });
        assert_eq!(request(a, "GET", "/json/list").await.unwrap(), "[]");
        server.abort();

        let (a, mut b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut req = [0u8; 256];
            let _ = b.read(&mut req).await.unwrap();
            b.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\nUsing unsafe HTTP verb GET")
                .await
                .unwrap();
        });
        let e = request(a, "GET", "/json/new")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("405") && e.contains("unsafe HTTP verb"), "{e}");
    }
}
