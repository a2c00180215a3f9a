//! The bounded collector of a command's output: whatever is pushed, in whatever pieces,
//! it holds at most its limit, counts every byte, and keeps exactly the head and the tail.
#![no_main]

use firepit_guest_client::Captured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[limit, split], data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = usize::from(limit) * 3;
    let piece = 1 + usize::from(split);
    let mut c = Captured::new(limit);
    for chunk in data.chunks(piece) {
        c.push(chunk);
    }
    assert_eq!(c.total(), data.len() as u64);
    assert!(c.head().len() + c.tail().len() <= limit);
    assert!(data.starts_with(c.head()));
    assert!(data.ends_with(&c.tail()));
    if c.is_whole() {
        assert_eq!(&c.to_bytes()[..], data);
    } else {
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        assert!(c.cut_lines() <= lines);
    }
    let _ = c.text();
});
