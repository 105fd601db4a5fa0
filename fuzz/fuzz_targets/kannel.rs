//! Fuzz target `kannel`: see `switchboard_fuzz::kannel` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::kannel(data)
});
