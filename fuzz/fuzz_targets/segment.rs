//! Fuzz target `segment`: see `switchboard_fuzz::segment_target` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::segment_target(data)
});
