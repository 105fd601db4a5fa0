//! Fuzz target `phone`: see `switchboard_fuzz::phone` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::phone(data)
});
