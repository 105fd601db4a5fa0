//! Fuzz target `dlr`: see `switchboard_fuzz::dlr` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::dlr(data)
});
