//! Where a body ends, found without decoding it: by its length, by
//! scanning chunked encoding (sizes, extensions, trailers) byte by byte as
//! it streams through, or at the connection's end.

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// This many bytes (left).
    Length(u64),
    /// Chunked encoding, scanned.
    Chunked(Chunks),
    /// Until the app closes the connection.
    UntilClose,
}

impl Framing {
    /// How many of the bytes at the front of `bytes` belong to the body,
    /// counting them as gone by; `None` when they break chunked encoding.
    pub(super) fn consume(&mut self, bytes: &[u8]) -> Option<usize> {
        Some(match self {
            Framing::Empty => 0,
            Framing::Length(left) => {
                let used = (bytes.len() as u64).min(*left);
                *left -= used;
                used as usize
            }
            Framing::Chunked(c) => c.scan(bytes)?.0,
            Framing::UntilClose => bytes.len(),
        })
    }

    pub(super) fn done(&self) -> bool {
        match self {
            Framing::Empty => true,
            Framing::Length(n) => *n == 0,
            Framing::Chunked(c) => c.done(),
            Framing::UntilClose => false,
        }
    }
}

/// Where a chunked body's scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far, whether a digit was seen,
    /// whether in an extension.
    Size { size: u64, digits: bool, ext: bool },
    /// After the size line's CR.
    SizeLf { size: u64 },
    /// In chunk data: bytes left.
    Data(u64),
    /// After chunk data: expecting CR.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// In the trailer section: at the start of a line or not.
    Trailer { line_start: bool },
    /// Expecting LF after a trailer line's CR; whether that line was empty.
    TrailerLf { empty: bool },
    /// The body ended.
    Done,
}

/// A scanner that finds where a chunked body ends, without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Chunks {
    state: ChunkState,
}

impl Chunks {
    pub(super) fn new() -> Chunks {
        Chunks {
            state: ChunkState::Size {
                size: 0,
                digits: false,
                ext: false,
            },
        }
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Scans `bytes`; how many belong to the body and whether it ended
    /// there, or `None` when they are not chunked encoding.
    fn scan(&mut self, bytes: &[u8]) -> Option<(usize, bool)> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                Done => return Some((i, true)),
                Size { size, digits, ext } => match b {
                    b'\r' if digits => SizeLf { size },
                    _ if ext => Size { size, digits, ext },
                    b';' | b' ' | b'\t' if digits => Size {
                        size,
                        digits,
                        ext: true,
                    },
                    _ => {
                        let d = (b as char).to_digit(16)? as u64;
                        Size {
                            size: size.checked_mul(16)?.checked_add(d)?,
                            digits: true,
                            ext,
                        }
                    }
                },
                SizeLf { size } if b == b'\n' => {
                    if size == 0 {
                        Trailer { line_start: true }
                    } else {
                        Data(size)
                    }
                }
                SizeLf { .. } => return None,
                Data(left) => {
                    let n = ((bytes.len() - i) as u64).min(left);
                    i += n as usize;
                    self.state = if n == left { DataCr } else { Data(left - n) };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size {
                    size: 0,
                    digits: false,
                    ext: false,
                },
                DataCr | DataLf => return None,
                Trailer { line_start } => match b {
                    b'\r' => TrailerLf { empty: line_start },
                    _ => Trailer { line_start: false },
                },
                TrailerLf { empty } if b == b'\n' => {
                    if empty {
                        Done
                    } else {
                        Trailer { line_start: true }
                    }
                }
                TrailerLf { .. } => return None,
            };
            i += 1;
        }
        Some((i, self.state == Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        let mut c = Chunks::new();
        assert_eq!(c.scan(body), Some((end, true)));
        // Byte by byte, the same end.
        let mut c = Chunks::new();
        for (i, b) in body.iter().enumerate() {
            let (used, done) = c.scan(std::slice::from_ref(b)).unwrap();
            if i < end {
                assert_eq!((used, done), (1, i == end - 1), "byte {i}");
            } else {
                assert_eq!((used, done), (0, true));
            }
        }
        let mut c = Chunks::new();
        assert_eq!(c.scan(b"0\r\n\r\n"), Some((5, true)));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"0\rX",
            b"ffffffffffffffffff\r\n",
        ] {
            assert_eq!(
                Chunks::new().scan(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
