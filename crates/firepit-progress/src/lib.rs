//! Progress of long work (image builds, benchmark loops), on standard error.
//!
//! On a terminal it is one live line, rewritten in place (a carriage return,
//! then the line, then "erase to the end of the line"), cut to the
//! terminal's width so it never wraps: a bar and a count for counted work
//! ([`Progress::counter`]), the latest message for work in phases
//! ([`Progress::phases`]). Anywhere else (a log file, a pipe, CI) it is plain
//! lines, and few of them: counted work prints a line when it starts, at
//! every tenth of the way, at least every [`PLAIN_EVERY`] while the count
//! moves, and at the end; work in phases prints each message once. A log
//! never gets a run of fragments on one line.
//!
//! Lines that must stay (a warning in the middle of the work) go through
//! [`Progress::println`], which clears the live line first and draws it again
//! after.
#![warn(missing_docs)]

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// Away from a terminal, counted work prints a line at least this often
/// while its count moves (and at every tenth of the way).
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// On a terminal, the live line is drawn at most this often (and always for
/// the last step).
const LIVE_EVERY: Duration = Duration::from_millis(50);

/// Width of the bar, in characters.
const BAR: usize = 20;

/// Width assumed when a terminal does not say.
const DEFAULT_WIDTH: usize = 80;

/// Progress of one piece of work. Dropping it finishes it.
pub struct Progress {
    out: Box<dyn Write + Send>,
    live: bool,
    width: usize,
    label: String,
    /// `None`: work in phases.
    total: Option<u64>,
    done: u64,
    message: String,
    started: Instant,
    /// Plain mode: when the last line was printed, the count it said, and
    /// the tenths of the way it had reached.
    last_line: Instant,
    last_count: Option<u64>,
    last_tenth: u64,
    /// Live mode: when the line was last drawn, and whether it is on screen.
    last_draw: Option<Instant>,
    drawn: bool,
    finished: bool,
}

impl Progress {
    /// Counted work of `total` steps, reported on standard error.
    pub fn counter(label: impl Into<String>, total: u64) -> Progress {
        let (live, width) = stderr_terminal();
        Progress::new(
            Box::new(io::stderr()),
            live,
            width,
            label.into(),
            Some(total),
            Instant::now(),
        )
    }

    /// Work that moves through phases, each told by [`Progress::message`],
    /// reported on standard error.
    pub fn phases(label: impl Into<String>) -> Progress {
        let (live, width) = stderr_terminal();
        Progress::new(
            Box::new(io::stderr()),
            live,
            width,
            label.into(),
            None,
            Instant::now(),
        )
    }

    /// Progress written to `out`: a live line of at most `width` characters
    /// when `live`, plain lines otherwise. `total` is the count of steps, or
    /// `None` for work in phases.
    pub fn to_writer(
        out: impl Write + Send + 'static,
        live: bool,
        width: usize,
        label: impl Into<String>,
        total: Option<u64>,
    ) -> Progress {
        Progress::new(
            Box::new(out),
            live,
            width,
            label.into(),
            total,
            Instant::now(),
        )
    }

    fn new(
        out: Box<dyn Write + Send>,
        live: bool,
        width: usize,
        label: String,
        total: Option<u64>,
        now: Instant,
    ) -> Progress {
        let mut p = Progress {
            out,
            live,
            width: width.max(10),
            label,
            total,
            done: 0,
            message: String::new(),
            started: now,
            last_line: now,
            last_count: None,
            last_tenth: 0,
            last_draw: None,
            drawn: false,
            finished: false,
        };
        if p.total.is_some() {
            if p.live {
                p.draw(now);
            } else {
                p.plain_line(now);
            }
        }
        p
    }

    /// One more step done.
    pub fn inc(&mut self) {
        self.set(self.done + 1);
    }

    /// `done` steps done (at most the total).
    pub fn set(&mut self, done: u64) {
        self.set_at(done, Instant::now());
    }

    fn set_at(&mut self, done: u64, now: Instant) {
        let total = self.total.unwrap_or(u64::MAX);
        self.done = done.min(total);
        if self.live {
            let last = self.done == total;
            if last || self.last_draw.is_none_or(|t| now - t >= LIVE_EVERY) {
                self.draw(now);
            }
            return;
        }
        let tenth = (self.done * 10).checked_div(total).unwrap_or(10);
        let moved = self.last_count != Some(self.done);
        if moved && (tenth > self.last_tenth || now - self.last_line >= PLAIN_EVERY) {
            self.plain_line(now);
        }
    }

    /// Says what the work is doing now. For work in phases this is its
    /// report: the live line, or a plain line of its own; for counted work
    /// it follows the count.
    pub fn message(&mut self, text: impl Into<String>) {
        self.message_at(text.into(), Instant::now());
    }

    fn message_at(&mut self, text: String, now: Instant) {
        self.message = text;
        if self.live {
            self.draw(now);
        } else if self.total.is_none() {
            let line = format!("{}: {}\n", self.label, self.message);
            self.write(&line);
        }
    }

    /// Prints a line that stays (a warning, an error) without breaking the
    /// live line.
    pub fn println(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        if self.live && self.drawn {
            let line = format!("\r\x1b[K{text}\n");
            self.write(&line);
            self.draw(Instant::now());
        } else {
            self.write(&format!("{text}\n"));
        }
    }

    /// Ends the report: the live line stays as it last was, and a plain
    /// report says where the count ended. Dropping does the same.
    pub fn finish(&mut self) {
        self.finish_at(Instant::now());
    }

    fn finish_at(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.live {
            if self.drawn || self.total.is_some() {
                self.draw(now);
                self.write("\n");
            }
        } else if self.total.is_some() && self.last_count != Some(self.done) {
            self.plain_line(now);
        }
        let _ = self.out.flush();
    }

    /// The text of the report now, without control characters.
    fn text(&self, now: Instant) -> String {
        let secs = (now - self.started).as_secs_f64();
        let Some(total) = self.total else {
            return format!("{}: {}", self.label, self.message);
        };
        let mut s = if self.live {
            let filled = (self.done as usize * BAR)
                .checked_div(total as usize)
                .unwrap_or(BAR);
            format!(
                "{} [{}{}] {}/{} {:.0}s",
                self.label,
                "#".repeat(filled),
                "-".repeat(BAR - filled),
                self.done,
                total,
                secs
            )
        } else {
            format!("{}: {}/{} ({:.1} s)", self.label, self.done, total, secs)
        };
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    fn draw(&mut self, now: Instant) {
        let text: String = self.text(now).chars().take(self.width - 1).collect();
        self.write(&format!("\r{text}\x1b[K"));
        self.drawn = true;
        self.last_draw = Some(now);
    }

    fn plain_line(&mut self, now: Instant) {
        let line = format!("{}\n", self.text(now));
        self.write(&line);
        self.last_line = now;
        self.last_count = Some(self.done);
        if let Some(total) = self.total {
            self.last_tenth = (self.done * 10).checked_div(total).unwrap_or(10);
        }
    }

    fn write(&mut self, s: &str) {
        // Progress is a courtesy: a closed or full stderr never stops the work.
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Whether standard error is a terminal that takes control sequences, and
/// its width.
fn stderr_terminal() -> (bool, usize) {
    let live = io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
    (live, if live { width(2) } else { DEFAULT_WIDTH })
}

/// The width of the terminal on `fd`, or [`DEFAULT_WIDTH`].
fn width(fd: libc::c_int) -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live, writable one; a bad fd makes it fail, not write.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        DEFAULT_WIDTH
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn progress(live: bool, total: Option<u64>, t0: Instant) -> (Progress, Buf) {
        let buf = Buf::default();
        let p = Progress::new(
            Box::new(buf.clone()),
            live,
            60,
            "bench: machines".into(),
            total,
            t0,
        );
        (p, buf)
    }

    #[test]
    fn plain_counts_print_tenths_not_every_step() {
        let t0 = Instant::now();
        let (mut p, buf) = progress(false, Some(1000), t0);
        for i in 1..=1000 {
            // 1 ms a step: 1 s in all, so no line is due to time.
            p.set_at(i, t0 + Duration::from_millis(i));
        }
        p.finish_at(t0 + Duration::from_secs(1));
        let text = buf.text();
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        // The start, then 100, 200, … 1000: the end was said already.
        assert_eq!(lines.len(), 11, "{text}");
        assert_eq!(lines[0], "bench: machines: 0/1000 (0.0 s)");
        assert_eq!(lines[1], "bench: machines: 100/1000 (0.1 s)");
        assert_eq!(lines[10], "bench: machines: 1000/1000 (1.0 s)");
    }

    #[test]
    fn plain_counts_print_every_few_seconds_while_slow() {
        let t0 = Instant::now();
        let (mut p, buf) = progress(false, Some(100), t0);
        // One step every 2 s: a tenth takes 20 s, so time says more.
        for i in 1..=20 {
            p.set_at(i, t0 + Duration::from_secs(2 * i));
        }
        // Work that stops moving prints nothing more.
        p.set_at(20, t0 + Duration::from_secs(60));
        drop(p);
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "bench: machines: 0/100 (0.0 s)",
                "bench: machines: 3/100 (6.0 s)",
                "bench: machines: 6/100 (12.0 s)",
                "bench: machines: 9/100 (18.0 s)",
                "bench: machines: 10/100 (20.0 s)",
                "bench: machines: 13/100 (26.0 s)",
                "bench: machines: 16/100 (32.0 s)",
                "bench: machines: 19/100 (38.0 s)",
                "bench: machines: 20/100 (40.0 s)",
            ],
        );
        // Dropped after the last line: the end is not said twice, but a
        // count the last line did not say is.
        let t0 = Instant::now();
        let (mut p, buf) = progress(false, Some(100), t0);
        p.set_at(4, t0 + Duration::from_secs(1));
        p.finish_at(t0 + Duration::from_secs(2));
        assert_eq!(
            buf.text(),
            "bench: machines: 0/100 (0.0 s)\nbench: machines: 4/100 (2.0 s)\n"
        );
    }

    #[test]
    fn live_counts_rewrite_one_line() {
        let t0 = Instant::now();
        let (mut p, buf) = progress(true, Some(4), t0);
        for i in 1..=4 {
            p.set_at(i, t0 + Duration::from_secs(i));
        }
        p.println("bench: a warning");
        p.finish_at(t0 + Duration::from_secs(5));
        let text = buf.text();
        // One line on screen: every draw starts with \r and erases the rest;
        // the only newlines are the warning's and the end's.
        assert_eq!(text.matches('\n').count(), 2, "{text:?}");
        assert!(text.ends_with("\x1b[K\n"), "{text:?}");
        assert!(
            text.contains("\rbench: machines [##########----------] 2/4 2s\x1b[K"),
            "{text:?}"
        );
        assert!(
            text.contains("\r\x1b[Kbench: a warning\n\rbench: machines [####################] 4/4")
        );
    }

    #[test]
    fn live_lines_are_drawn_at_a_bounded_rate_and_never_wrap() {
        let t0 = Instant::now();
        let (mut p, buf) = progress(true, Some(100_000), t0);
        for i in 1..=100_000 {
            // 100 000 steps in 1 s: at most one draw each 50 ms, plus the last.
            p.set_at(i, t0 + Duration::from_micros(10 * i));
        }
        p.message_at("x".repeat(200), t0 + Duration::from_secs(1));
        drop(p);
        let text = buf.text();
        let draws = text.matches('\r').count();
        assert!(draws <= 1 + 21 + 2, "{draws} draws");
        for draw in text.split('\r').filter(|d| !d.is_empty()) {
            let visible = draw.trim_end_matches('\n').trim_end_matches("\x1b[K");
            assert!(visible.chars().count() < 60, "{visible:?}");
        }
    }

    #[test]
    fn phases_are_lines_or_one_live_line() {
        let t0 = Instant::now();
        let (mut p, buf) = progress(false, None, t0);
        p.message_at("downloading".into(), t0);
        p.message_at("installing".into(), t0);
        drop(p);
        assert_eq!(
            buf.text(),
            "bench: machines: downloading\nbench: machines: installing\n"
        );

        let (mut p, buf) = progress(true, None, t0);
        p.message_at("downloading".into(), t0);
        p.message_at("installing".into(), t0);
        drop(p);
        assert_eq!(
            buf.text(),
            "\rbench: machines: downloading\x1b[K\rbench: machines: installing\x1b[K\
             \rbench: machines: installing\x1b[K\n"
        );

        // Phases that never began leave nothing behind.
        let (p, buf) = progress(true, None, t0);
        drop(p);
        assert_eq!(buf.text(), "");
    }

    #[test]
    fn an_empty_count_ends_cleanly() {
        let t0 = Instant::now();
        let (mut p, buf) = progress(false, Some(0), t0);
        p.inc();
        drop(p);
        assert_eq!(buf.text(), "bench: machines: 0/0 (0.0 s)\n");
    }
}
