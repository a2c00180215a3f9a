//! The guest protocol's framing as a byte stream sees it: frames split at any point.

use bytes::{Bytes, BytesMut};
use firepit_wire::guest::{Frame, MAX_PAYLOAD, Request, Response, chunks};

#[test]
fn a_stream_cut_anywhere_decodes_to_the_same_frames() {
    let frames = vec![
        Frame::control(1, &Request::Info),
        Frame::data(2, Bytes::from(vec![0xAB; 70_000])),
        Frame::control(1, &Response::Done),
    ];
    let mut wire = BytesMut::new();
    for f in &frames {
        f.encode(&mut wire);
    }
    for step in [1, 7, 4096, wire.len()] {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames, "step {step}");
    }
}

#[test]
fn bulk_data_fits_in_frames() {
    let big = Bytes::from(vec![1u8; 3 * MAX_PAYLOAD + 5]);
    let mut wire = BytesMut::new();
    for c in chunks(big.clone(), MAX_PAYLOAD) {
        Frame::data(3, c).encode(&mut wire);
    }
    let mut total = 0;
    while let Some(f) = Frame::decode(&mut wire).unwrap() {
        total += f.payload.len();
    }
    assert_eq!(total, big.len());
}
