//! Fuzz target `rules`: see `switchboard_fuzz::rules` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::rules(data)
});
