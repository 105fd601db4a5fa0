//! Fuzz target `generic`: see `switchboard_fuzz::generic` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::generic(data)
});
