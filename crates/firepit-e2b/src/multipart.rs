//! A streaming `multipart/form-data` reader for `/files` uploads: parts come
//! out one at a time and their bodies chunk by chunk, so an upload is
//! written into the machine as it arrives and the reader holds no more than
//! one chunk and a delimiter's length, whatever the part's size.
//! Part headers are bounded ([`MAX_HEADERS`]).

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::Error;

/// The longest a part's headers may be.
pub const MAX_HEADERS: usize = 16 << 10;

/// A part's name and file name (from `Content-Disposition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field's name.
    pub name: String,
    /// The file name, if the part is a file.
    pub filename: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// Reads a multipart body from a stream of chunks.
pub struct Multipart<S> {
    body: S,
    buf: BytesMut,
    /// `\r\n--<boundary>`.
    delimiter: Vec<u8>,
    at: At,
    ended: bool,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
            .filter(|b| (1..=70).contains(&b.len()))
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

impl<S, E> Multipart<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// Reads `body`, whose parts `boundary` separates.
    pub fn new(body: S, boundary: &str) -> Multipart<S> {
        let mut buf = BytesMut::new();
        // So that a boundary on the first line matches like every other.
        buf.extend_from_slice(b"\r\n");
        Multipart {
            body,
            buf,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            at: At::Preamble,
            ended: false,
        }
    }

    async fn fill(&mut self) -> Result<(), Error> {
        if self.ended {
            return Err(Error::BadRequest("the multipart body ended early".into()));
        }
        match self.body.next().await {
            Some(Ok(b)) => self.buf.extend_from_slice(&b),
            Some(Err(e)) => {
                return Err(Error::BadRequest(format!("reading the upload failed: {e}")));
            }
            None => self.ended = true,
        }
        Ok(())
    }

    /// The next part's headers, skipping what is left of the current one;
    /// `None` after the last.
    pub async fn next_part(&mut self) -> Result<Option<Part>, Error> {
        loop {
            match self.at {
                At::Done => return Ok(None),
                At::Body => while self.next_chunk().await?.is_some() {},
                At::Preamble => match find(&self.buf, &self.delimiter) {
                    Some(i) => {
                        self.buf.advance(i + self.delimiter.len());
                        self.at = At::AfterDelimiter;
                    }
                    None => {
                        let keep = self.delimiter.len();
                        if self.buf.len() > keep {
                            self.buf.advance(self.buf.len() - keep);
                        }
                        self.fill().await?;
                    }
                },
                At::AfterDelimiter => {
                    if self.buf.len() < 2 {
                        self.fill().await?;
                        continue;
                    }
                    if self.buf.starts_with(b"--") {
                        self.at = At::Done;
                    } else if self.buf.starts_with(b"\r\n") {
                        self.buf.advance(2);
                        self.at = At::Headers;
                    } else {
                        return Err(Error::BadRequest(
                            "a multipart boundary is malformed".into(),
                        ));
                    }
                }
                At::Headers => {
                    let Some(i) = find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_HEADERS {
                            return Err(Error::BadRequest("a part's headers are too long".into()));
                        }
                        self.fill().await?;
                        continue;
                    };
                    let head = self.buf.split_to(i + 4);
                    let head = String::from_utf8_lossy(&head[..i]).into_owned();
                    self.at = At::Body;
                    let disposition = head
                        .split("\r\n")
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case("content-disposition")
                                .then(|| v.trim().to_owned())
                        })
                        .ok_or_else(|| {
                            Error::BadRequest("a part has no Content-Disposition".into())
                        })?;
                    return Ok(Some(Part {
                        name: param(&disposition, "name").unwrap_or_default(),
                        filename: param(&disposition, "filename"),
                    }));
                }
            }
        }
    }

    /// The next piece of the current part's body; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.at != At::Body {
            return Ok(None);
        }
        loop {
            if let Some(i) = find(&self.buf, &self.delimiter) {
                let data = self.buf.split_to(i).freeze();
                self.buf.advance(self.delimiter.len());
                self.at = At::AfterDelimiter;
                return Ok((!data.is_empty()).then_some(data));
            }
            // All but what could be the start of a delimiter is the part's.
            let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
            if safe > 0 {
                return Ok(Some(self.buf.split_to(safe).freeze()));
            }
            self.fill().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(body: &'static [u8], piece: usize) -> Vec<(Part, Vec<u8>)> {
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = body
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut m = Multipart::new(futures::stream::iter(chunks), "XyZ");
        let mut out = Vec::new();
        while let Some(p) = m.next_part().await.unwrap() {
            let mut data = Vec::new();
            while let Some(c) = m.next_chunk().await.unwrap() {
                data.extend_from_slice(&c);
            }
            out.push((p, data));
        }
        out
    }

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/a/b.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n--Xy world\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c\"\r\n\r\n\r\n--XyZ--\r\n";

    #[tokio::test]
    async fn parts_read_the_same_in_any_pieces() {
        for piece in [1, 2, 3, 7, 64, 1000] {
            let p = parts(BODY, piece).await;
            assert_eq!(p.len(), 2, "piece {piece}");
            assert_eq!(p[0].0.filename.as_deref(), Some("/a/b.txt"));
            assert_eq!(p[0].1, b"hello\r\n--Xy world");
            assert_eq!(p[1].0.name, "file");
            assert!(p[1].1.is_empty());
        }
    }

    #[tokio::test]
    async fn a_truncated_body_is_an_error() {
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> =
            vec![Ok(Bytes::from_static(&BODY[..80]))];
        let mut m = Multipart::new(futures::stream::iter(chunks), "XyZ");
        let r = async {
            while m.next_part().await?.is_some() {
                while m.next_chunk().await?.is_some() {}
            }
            Ok::<_, Error>(())
        }
        .await;
        assert!(r.is_err());
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("application/json"), None);
    }
}
