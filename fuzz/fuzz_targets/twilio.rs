//! Fuzz target `twilio`: see `switchboard_fuzz::twilio` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(init: switchboard_fuzz::init(), |data: &[u8]| {
    switchboard_fuzz::twilio(data)
});
