//! The daemon's scan of a service's log (what a machine writes): any text, in any pieces,
//! gives problems within their size limits and never panics.
#![no_main]

use firepit_problems::{DETAIL_LIMIT, LogScanner, SUMMARY_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let mut scanner = LogScanner::new("service:web");
    let mut problems = Vec::new();
    let piece = 1 + usize::from(split) * 13;
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let mut at = piece.min(rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        problems.extend(scanner.push(&rest[..at]));
        rest = &rest[at..];
    }
    problems.extend(scanner.flush());
    for p in problems {
        assert!(p.summary.len() <= SUMMARY_LIMIT + 8, "{}", p.summary.len());
        assert!(p.detail.len() <= DETAIL_LIMIT + 64, "{}", p.detail.len());
    }
});
