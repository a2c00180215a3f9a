//! Output kept within a bound: the first bytes, the last bytes, and a count of what was
//! cut between them, however much a command prints.

use std::collections::VecDeque;

use bytes::Bytes;

/// The note that stands where output was cut.
pub fn cut_note(bytes: u64, lines: u64) -> String {
    format!("[… {bytes} bytes ({lines} lines) cut from the middle of this output …]")
}

/// Bytes captured within `limit`: about two thirds of it from the start, the rest from
/// the end. Holds at most `limit` bytes whatever is pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    lines: u64,
}

impl Default for Captured {
    fn default() -> Captured {
        Captured::new(0)
    }
}

fn count_lines(b: impl IntoIterator<Item = u8>) -> u64 {
    b.into_iter().filter(|&c| c == b'\n').count() as u64
}

impl Captured {
    /// An empty capture that keeps at most `limit` bytes.
    pub fn new(limit: usize) -> Captured {
        let head_cap = limit * 2 / 3;
        Captured {
            head_cap,
            tail_cap: limit - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            lines: 0,
        }
    }

    /// Adds bytes at the end.
    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        self.lines += count_lines(data.iter().copied());
        let to_head = data.len().min(self.head_cap - self.head.len());
        self.head.extend_from_slice(&data[..to_head]);
        data = &data[to_head..];
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            let over = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..over);
            self.tail.extend(data);
        }
    }

    /// Bytes pushed in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes cut from the middle (0 when everything was kept).
    pub fn cut(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// Lines (newlines) in what was cut.
    pub fn cut_lines(&self) -> u64 {
        self.lines - count_lines(self.head.iter().copied()) - count_lines(self.tail.iter().copied())
    }

    /// Whether everything pushed was kept.
    pub fn is_whole(&self) -> bool {
        self.cut() == 0
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The kept start.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The kept end (after the head; empty while everything fits in the head).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// What was kept, with [`cut_note`] on a line of its own where bytes were cut.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.head.len() + self.tail.len() + 80);
        v.extend_from_slice(&self.head);
        if !self.is_whole() {
            if !v.is_empty() && !v.ends_with(b"\n") {
                v.push(b'\n');
            }
            v.extend_from_slice(cut_note(self.cut(), self.cut_lines()).as_bytes());
            v.push(b'\n');
        }
        v.extend(self.tail.iter());
        Bytes::from(v)
    }

    /// [`Captured::to_bytes`] as text, invalid UTF-8 replaced. A character split by the
    /// cut is dropped rather than shown as two replacement marks.
    pub fn text(&self) -> String {
        if self.is_whole() {
            return String::from_utf8_lossy(&self.to_bytes()).into_owned();
        }
        let mut head = &self.head[..];
        if let Err(e) = std::str::from_utf8(head)
            && e.error_len().is_none()
        {
            head = &head[..e.valid_up_to()];
        }
        let tail = self.tail();
        let skip = tail
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xc0 == 0x80)
            .count();
        let mut s = String::from_utf8_lossy(head).into_owned();
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&cut_note(self.cut(), self.cut_lines()));
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(&tail[skip..]));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Captured::new(100);
        c.push(b"hello\n");
        c.push(b"world");
        assert!(c.is_whole());
        assert_eq!(c.to_bytes(), "hello\nworld");
        assert_eq!(c.text(), "hello\nworld");
    }

    #[test]
    fn a_flood_keeps_head_and_tail_within_the_limit() {
        let mut c = Captured::new(3000);
        for i in 0..100_000 {
            c.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(c.head().len() + c.tail().len(), 3000);
        assert!(c.head().starts_with(b"line 0\n"));
        assert!(c.tail().ends_with(b"line 99999\n"));
        let total: u64 = (0..100_000)
            .map(|i| format!("line {i}\n").len() as u64)
            .sum();
        assert_eq!(c.total(), total);
        assert_eq!(c.cut(), total - 3000);
        let t = c.text();
        assert!(t.contains(&format!("[… {} bytes (", total - 3000)), "{t}");
        let kept_lines = t.matches('\n').count() as u64;
        // Every newline pushed is either shown or counted as cut (the note adds up to two).
        assert!(c.cut_lines() + kept_lines >= 100_000 && c.cut_lines() + kept_lines <= 100_002);
        // One huge push behaves as many small ones.
        let mut d = Captured::new(3000);
        let all: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        d.push(&all);
        assert_eq!(d, c);
    }

    #[test]
    fn split_characters_are_dropped_at_the_cut() {
        let mut c = Captured::new(10);
        c.push("ééééééééééééééééééé".as_bytes());
        let t = c.text();
        assert!(!t.contains('\u{fffd}'), "{t}");
        assert!(t.starts_with("ééé"), "{t}");
        assert!(t.ends_with("éé"), "{t}");
        let mut z = Captured::new(0);
        z.push(b"anything");
        assert_eq!(z.cut(), 8);
        assert!(z.text().starts_with("[… 8 bytes"));
    }
}
