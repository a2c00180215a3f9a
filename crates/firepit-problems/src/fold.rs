//! Folding repeats: one crash loop is one event, not a thousand.
//!
//! A problem's fingerprint is its source, kind and summary with the parts that
//! change between repeats taken out (numbers, hex addresses, Erlang pids).
//! [`Folder::observe`] says whether to report a sighting: the first, and then
//! the 10th, 100th, 1000th … (with the count), so the log grows with the
//! logarithm of the repeats. The folder keeps at most [`Folder::CAPACITY`]
//! fingerprints, forgetting the oldest.

use std::collections::{HashMap, VecDeque};

use crate::Problem;

/// The fingerprint of a problem (see the module docs).
pub fn fingerprint(p: &Problem) -> String {
    let mut out = format!("{}|{}|", p.source, p.kind);
    let mut digits = false;
    let mut chars = p.summary.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '0' && chars.peek() == Some(&'x') {
            chars.next();
            while chars.peek().is_some_and(char::is_ascii_hexdigit) {
                chars.next();
            }
            out.push('#');
            digits = false;
        } else if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

/// Counts sightings of problems and says which to report.
#[derive(Debug, Default)]
pub struct Folder {
    counts: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl Folder {
    /// Most fingerprints kept.
    pub const CAPACITY: usize = 4096;

    /// Records a sighting of `p`; returns the count to report with it, or
    /// `None` when it is folded into an earlier report.
    pub fn observe(&mut self, p: &Problem) -> Option<u64> {
        let key = fingerprint(p);
        let count = match self.counts.get_mut(&key) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                if self.order.len() >= Self::CAPACITY
                    && let Some(old) = self.order.pop_front()
                {
                    self.counts.remove(&old);
                }
                self.order.push_back(key.clone());
                self.counts.insert(key, 1);
                1
            }
        };
        is_power_of_ten(count).then_some(count)
    }

    /// How often `p` was seen.
    pub fn count(&self, p: &Problem) -> u64 {
        self.counts.get(&fingerprint(p)).copied().unwrap_or(0)
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(summary: &str) -> Problem {
        Problem::new("service:web", "elixir_exception", summary, "")
    }

    #[test]
    fn a_crash_loop_is_folded() {
        let mut f = Folder::default();
        let reported: Vec<u64> = (0..1000)
            .filter_map(|i| {
                f.observe(&p(&format!(
                    "#PID<0.{i}.0> ** (RuntimeError) boom at 0x7f{i:x}"
                )))
            })
            .collect();
        assert_eq!(reported, vec![1, 10, 100, 1000]);
        assert_eq!(
            f.count(&p("#PID<0.1.0> ** (RuntimeError) boom at 0xff")),
            1000
        );
    }

    #[test]
    fn different_problems_are_apart() {
        let mut f = Folder::default();
        assert_eq!(f.observe(&p("boom")), Some(1));
        assert_eq!(f.observe(&p("bang")), Some(1));
        let other_source = Problem::new("browser", "elixir_exception", "boom", "");
        assert_eq!(f.observe(&other_source), Some(1));
        assert_eq!(f.observe(&p("boom")), None);
    }

    #[test]
    fn memory_is_bounded() {
        let mut f = Folder::default();
        for i in 0..(Folder::CAPACITY + 10) {
            f.observe(&p(&format!(
                "error {}",
                "x".repeat(i % 50) + &i.to_string().replace(|c: char| c.is_ascii_digit(), "a")
            )));
        }
        assert!(f.counts.len() <= Folder::CAPACITY);
    }
}
