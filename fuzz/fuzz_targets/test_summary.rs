//! The summary of a test run's output (what a machine printed): any text gives a summary
//! with a bounded list of failures, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&code, data)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let code = (code != 255).then_some(i32::from(code));
    let s = firepit_problems::tests::summarize(&text, code);
    assert!(s.failures.len() <= 50);
    let _ = s.line(code);
});
