//! A control payload from a machine: it parses as a `Response` or fails cleanly, and one
//! that parses says the same after a round trip.
#![no_main]

use firepit_wire::guest::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Response>(data) {
        let again: Response = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(again, r);
        let _ = r.is_final();
    }
});
