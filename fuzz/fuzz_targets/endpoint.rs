//! The server endpoint driven by a script read from the fuzzer's bytes:
//! datagrams from any address, virtual time steps, timers and sends; no
//! panic, and the server's invariants hold after every step (see
//! `tests/support/fuzz.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/support/fuzz.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::endpoint(data);
});
