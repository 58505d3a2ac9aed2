//! Every query-parameter parser of the engine on arbitrary bytes:
//! `cargo +nightly fuzz run query` (see the README).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_testkit::fuzz::query_input(data);
});
