//! Fuzz target `jasmin`: see `switchboard_fuzz::jasmin` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::jasmin(data)
});
