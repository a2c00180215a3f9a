//! The frame decoder on bytes from a machine, delivered in pieces of any size: it never
//! panics, never yields a payload over the limit, never holds much more than one frame,
//! and every control payload parses or fails cleanly.
#![no_main]

use bytes::BytesMut;
use firepit_wire::guest::{Frame, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the bytes are split, as a socket might deliver them.
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let piece = 1 + usize::from(split) * 97;
    let mut buf = BytesMut::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match Frame::decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= MAX_PAYLOAD);
                    let _ = f.parse::<Response>();
                    let _ = f.parse::<Request>();
                    let _ = f.credit_grant();
                    let _ = f.cost();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= HEADER_LEN + MAX_FRAME + piece);
        assert!(buf.capacity() <= 2 * (HEADER_LEN + MAX_FRAME + piece));
    }
});
