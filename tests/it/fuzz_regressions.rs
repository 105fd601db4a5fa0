//! Replays every input in `fixtures/fuzz/regressions/` (the crashes, hangs and broken properties
//! the fuzz targets in `fuzz/` found) through the same code the fuzzer ran: `fuzz/src/lib.rs`,
//! included here, so a regression checks the parser's result exactly as the fuzz target did.
//!
//! A file is named `<target>-<short-name>` (`email`, `kannel`, `jasmin`, `twilio`, `generic`,
//! `dlr`, `segment`, `rules`, `phone`); one whose name contains `-timeout-` was a hang and must
//! finish within [`HANG_BOUND`]. Each file has its own test below, and
//! `every_regression_file_has_a_test` fails for a file without one.
//!
//! Each input runs in a child process (this test binary again, running only `replay_child`)
//! on a thread with a 2 MiB stack, the size of the tokio threads the parsers run on in
//! production. A stack overflow aborts only the child, and shows up as the failure of the one
//! test named after the file, with the child's output.

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fuzz/regressions");
/// Set in the child: `<target>=<path>` to replay.
const CHILD_ENV: &str = "SB_FUZZ_REPLAY";
const CHILD_DONE: &str = "switchboard fuzz replay finished:";
/// tokio's worker and blocking threads have 2 MiB stacks.
const STACK: usize = 2 * 1024 * 1024;
/// A former hang must finish within this (it takes milliseconds once fixed; this is a debug
/// build and the machine may be busy).
const HANG_BOUND: Duration = Duration::from_secs(30);
/// Any other input: not a speed check, only so a new hang cannot stall the suite for ever.
const SAFETY_BOUND: Duration = Duration::from_secs(600);

macro_rules! regressions {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                replay_file($file);
            }
        )*
        const LISTED: &[&str] = &[$($file),*];
    };
}

regressions! {
    phone_short_code_2_digits => "phone-short-code-2-digits",
    email_html_nul_entity => "email-html-nul-entity",
}

/// The known stack overflow: a `message/rfc822` part nested 50,000 deep (about 1.5 MB, under the
/// 10 MiB cap), as `fixtures/fuzz/make_nested_email.py` writes it.
#[test]
fn email_nested_rfc822_50000_deep() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("email-nested-rfc822-50000.eml");
    std::fs::write(&path, nested_rfc822_email(50_000)).expect("write the input");
    replay("email", &path, SAFETY_BOUND);
}

/// The same input as `fixtures/fuzz/make_nested_email.py DEPTH`.
fn nested_rfc822_email(depth: usize) -> Vec<u8> {
    let mut m = b"From: a@example.com\nTo: b@example.com\nSubject: nested\n".to_vec();
    for _ in 0..depth {
        m.extend_from_slice(b"Content-Type: message/rfc822\n\n");
    }
    m.extend_from_slice(b"From: c@example.com\n\ninnermost\n");
    m
}

#[test]
fn every_regression_file_has_a_test() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(DIR).expect("fixtures/fuzz/regressions") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let target = name.split('-').next().unwrap_or_default();
        assert!(
            fuzz_checks::TARGETS.contains(&target),
            "{name}: does not start with a fuzz target name ({:?})",
            fuzz_checks::TARGETS
        );
        if !LISTED.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "add these to regressions! in tests/it/fuzz_regressions.rs: {missing:?}"
    );
}

/// The child's side: replays the input named by `SB_FUZZ_REPLAY`; without it (a normal test
/// run) there is nothing to do.
#[test]
fn replay_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (target, path) = spec.split_once('=').expect("<target>=<path>");
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let target = target.to_string();
    let run = std::thread::Builder::new()
        .name(format!("replay {path}"))
        .stack_size(STACK)
        .spawn(move || fuzz_checks::run(&target, &data))
        .expect("spawn the replay thread");
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
    println!("{CHILD_DONE} {path}");
}

fn replay_file(file: &str) {
    let path = Path::new(DIR).join(file);
    assert!(path.is_file(), "{} is missing", path.display());
    let target = file.split('-').next().unwrap_or_default();
    let bound = if file.contains("-timeout-") {
        HANG_BOUND
    } else {
        SAFETY_BOUND
    };
    replay(target, &path, bound);
}

/// Runs `target` on the input at `path` in a child process and fails, with the child's output,
/// unless it finished within `bound` without a panic, a failed check or an abort.
fn replay(target: &str, path: &Path, bound: Duration) {
    let exe: PathBuf = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "fuzz_regressions::replay_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{target}={}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the replay child");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let input = path.display();
    let what = match status {
        None => format!("did not finish within {bound:?} (a hang)"),
        Some(s) if s.success() && out.contains(CHILD_DONE) => return,
        Some(s) if s.success() => "the child ran no replay (test filter?)".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(101), _) => "a check failed or the parser panicked".to_string(),
            (_, Some(6)) => "the process aborted (SIGABRT; a stack overflow says so below)".into(),
            (_, Some(11)) => "the process crashed (SIGSEGV)".to_string(),
            (code, signal) => format!("the child failed: exit code {code:?}, signal {signal:?}"),
        },
    };
    let tail = |s: &str| -> String {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    panic!(
        "{target} on {input}: {what}\n--- child stderr (last lines) ---\n{}\n--- child stdout (last lines) ---\n{}",
        tail(&err),
        tail(&out)
    );
}
