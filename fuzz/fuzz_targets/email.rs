//! Fuzz target `email`: see `switchboard_fuzz::email` (fuzz/src/lib.rs).
//!
//! `email::parse` runs mail-parser under `catch_unwind` on purpose (README "Email"),
//! so a panic it contains is not a crash here: the first few are printed and the run goes on.
//! A panic that escapes `parse` still aborts (libfuzzer-sys's own `catch_unwind`), and so do a
//! stack overflow, a hang and an out-of-memory. With `SB_FUZZ_STRICT_PANICS=1` contained
//! panics crash too (libfuzzer-sys's aborting hook is kept): that finds mail-parser's bugs.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};

static CONTAINED: AtomicUsize = AtomicUsize::new(0);

libfuzzer_sys::fuzz_target!(
    init: {
        switchboard_fuzz::init();
        if std::env::var_os("SB_FUZZ_STRICT_PANICS").is_none() {
            std::panic::set_hook(Box::new(|info| {
                if CONTAINED.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("panic (contained by email::parse unless an abort follows): {info}");
                }
            }));
        }
    },
    |data: &[u8]| switchboard_fuzz::email(data)
);
