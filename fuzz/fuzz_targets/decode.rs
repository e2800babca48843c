//! Any bytes into both datagram decoders: no panic, and whatever decodes
//! survives an encode/decode round trip (see `tests/support/fuzz.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/support/fuzz.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::decode(data));
