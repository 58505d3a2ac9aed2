//! Ingest parsing, validation, masking and search-query parsing on
//! arbitrary bytes: `cargo +nightly fuzz run ingest` (see the README).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    custos_testkit::fuzz::ingest_input(data);
});
