//! Process set-up for the fuzz targets (not used by the regression test).
//!
//! * The parsers run on tokio threads in production (worker and `spawn_blocking` threads,
//!   2 MiB stacks); libFuzzer runs them on the main thread, whose stack may grow to 8 MiB.
//!   The main thread's stack limit is lowered to 2 MiB (`SB_FUZZ_STACK_KB` to change it) so
//!   that recursion too deep for production is found at the input sizes we fuzz.
//! * libFuzzer's C++ `main` skips Rust's runtime start-up, so there is no stack-overflow
//!   handler, and libFuzzer's SIGSEGV handler runs on the exhausted stack and dies before it
//!   can save the input. A handler on an alternate stack is installed first (libFuzzer chains
//!   it): it says what happened and aborts, and libFuzzer's SIGABRT handler, running on that
//!   same alternate stack, saves the input as `crash-*` as usual.

use std::ptr;

const ALT_STACK: usize = 1 << 20;

extern "C" fn on_segv(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // Only async-signal-safe calls here.
    let msg: &[u8] = b"\n==switchboard-fuzz== SIGSEGV: a stack overflow (recursion too deep for a \
2 MiB stack) unless the address below is not near the stack\n";
    let addr = unsafe { (*info).si_addr() } as usize;
    let mut hex = *b"==switchboard-fuzz== fault address 0x0000000000000000\n";
    let start = hex.len() - 17;
    for i in 0..16 {
        let nibble = (addr >> ((15 - i) * 4)) & 0xF;
        hex[start + i] = b"0123456789abcdef"[nibble];
    }
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::write(2, hex.as_ptr().cast(), hex.len());
        libc::abort();
    }
}

/// Call once from `fuzz_target!(init: ...)`.
pub fn init() {
    let kb: u64 = std::env::var("SB_FUZZ_STACK_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_STACK, &mut lim) == 0 {
            lim.rlim_cur = (kb * 1024).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_STACK, &lim);
        }
        let sp = libc::mmap(
            ptr::null_mut(),
            ALT_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(sp, libc::MAP_FAILED, "mmap of the signal stack");
        let ss = libc::stack_t {
            ss_sp: sp,
            ss_flags: 0,
            ss_size: ALT_STACK,
        };
        assert_eq!(libc::sigaltstack(&ss, ptr::null_mut()), 0, "sigaltstack");
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, ptr::null_mut()), 0);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, ptr::null_mut()), 0);
    }
}
