//! Percentiles of measured durations (nearest-rank), and their summary.

use std::time::Duration;

use serde::Serialize;

/// The nearest-rank `p`-th percentile (`0 < p <= 100`) of `samples`, which
/// need not be sorted; `None` when there are none.
///
/// Nearest rank: the smallest sample such that at least `p` % of the samples
/// are at or below it, so the result is always a measured value.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    // Rank in 1..=n; the cast is exact for any realistic sample count.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50 and p95 of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, milliseconds.
    pub p95_ms: f64,
}

impl Summary {
    /// Summarizes `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        Some(Summary {
            n: samples.len(),
            p50_ms: ms(percentile(samples, 50.0)?),
            p95_ms: ms(percentile(samples, 95.0)?),
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn empty_has_no_percentile() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let s = ms_list(&[7]);
        assert_eq!(percentile(&s, 1.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(7)));
    }

    #[test]
    fn nearest_rank_on_unsorted_input() {
        // 1..=10 shuffled.
        let s = ms_list(&[5, 1, 9, 3, 10, 2, 8, 4, 7, 6]);
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&s, 95.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&s, 90.0), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&s, 10.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn p95_of_thirty_is_the_29th() {
        let s: Vec<Duration> = (1..=30).map(Duration::from_millis).collect();
        // ceil(0.95 * 30) = 29.
        assert_eq!(percentile(&s, 95.0), Some(Duration::from_millis(29)));
        // ceil(0.5 * 30) = 15.
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(15)));
    }

    #[test]
    fn out_of_range_percentiles_are_rejected() {
        let s = ms_list(&[1, 2]);
        assert_eq!(percentile(&s, 0.0), None);
        assert_eq!(percentile(&s, 101.0), None);
        assert_eq!(percentile(&s, f64::NAN), None);
    }

    #[test]
    fn summary_is_in_milliseconds() {
        let s = Summary::of(&[Duration::from_micros(1500), Duration::from_micros(2500)]).unwrap();
        assert_eq!(s.n, 2);
        assert!((s.p50_ms - 1.5).abs() < 1e-9);
        assert!((s.p95_ms - 2.5).abs() < 1e-9);
    }
}
