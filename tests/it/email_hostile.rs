//! Hostile email: nesting 50,000 deep (message/rfc822 and multipart), 100,000 parts, 100,000
//! headers, a 10 MB header line. Over HTTP each gets an answer (a clear 4xx naming the limit,
//! or stored with the value capped) and the gateway goes on serving SMS; `ingest-email` exits
//! 65 for such mail, 75 when its child crashes, and never anything but 0, 65 or 75.

use crate::common::{self, ingest_email, spawn_app};
use std::time::{Duration, Instant};

/// A message/rfc822 nested `n` deep (~30 bytes a level: 50,000 levels are ~1.5 MB).
fn nested_rfc822(n: usize) -> Vec<u8> {
    let mut v = b"From: attacker@example.com\nSubject: deep\n".to_vec();
    for _ in 0..n {
        v.extend_from_slice(b"Content-Type: message/rfc822\n\n");
    }
    v.extend_from_slice(b"From: a@example.com\n\nhello\n");
    v
}

fn nested_multipart(n: usize) -> Vec<u8> {
    let mut v = b"From: attacker@example.com\nSubject: deep multipart\n".to_vec();
    for i in 0..n {
        v.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary={i}\n\n--{i}\n").as_bytes(),
        );
    }
    v.extend_from_slice(b"Content-Type: text/plain\n\nhello\n");
    for i in (0..n).rev() {
        v.extend_from_slice(format!("--{i}--\n").as_bytes());
    }
    v
}

fn many_parts(n: usize) -> Vec<u8> {
    let mut v =
        b"From: attacker@example.com\nContent-Type: multipart/mixed; boundary=p\n\n".to_vec();
    for _ in 0..n {
        v.extend_from_slice(b"--p\n\nx\n");
    }
    v.extend_from_slice(b"--p--\n");
    v
}

fn many_headers(n: usize) -> Vec<u8> {
    let mut v = b"From: attacker@example.com\n".to_vec();
    for i in 0..n {
        v.extend_from_slice(format!("X-H{i}: v\n").as_bytes());
    }
    v.extend_from_slice(b"\nbody\n");
    v
}

fn long_subject(bytes: usize) -> Vec<u8> {
    let mut v = b"From: customer@example.com\nSubject: ".to_vec();
    v.extend(std::iter::repeat_n(b'x', bytes));
    v.extend_from_slice(b"\n\nmy broadband is down\n");
    v
}

/// An SMS still goes through: the process is alive and serving.
async fn sms_works(app: &common::TestApp, id: &str) {
    let (st, body) = app.kannel_mo(id, "13800138000", "宽带断网了").await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test]
async fn hostile_mail_over_http_is_answered_and_the_gateway_lives_on() {
    let app = spawn_app(|s, _| {
        s.email.from = "service@gw.test".into();
        s.email.smtp.port = 9;
        s.email.smtp.backoff_base_ms = 60_000;
    })
    .await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "message/rfc822 nested 50,000 deep",
            nested_rfc822(50_000),
            "email.max_mime_depth",
        ),
        (
            "multipart nested 50,000 deep",
            nested_multipart(50_000),
            "email.max_mime_depth",
        ),
        ("100,000 parts", many_parts(100_000), "email.max_parts"),
        (
            "100,000 headers",
            many_headers(100_000),
            "email.max_headers",
        ),
    ];
    for (i, (name, raw, want)) in cases.into_iter().enumerate() {
        let started = Instant::now();
        let (st, v) = app.email(raw).await;
        let took = started.elapsed();
        assert_eq!(st, 400, "{name}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{name}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(want) && m.contains("refused"), "{name}: {m}");
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        sms_works(&app, &format!("after-{i}")).await;
    }
    assert_eq!(
        app.store().counts().await.unwrap().messages_in,
        4,
        "only the SMS are stored"
    );

    // A 10 MB header line: bounded work, stored, the subject capped.
    let (st, v) = app.email(long_subject(10_000_000)).await;
    assert_eq!(st, 200, "{v}");
    let m = app
        .store()
        .recent_messages("in", 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(m.channel, "email");
    assert_eq!(m.subject.as_deref().unwrap().chars().count(), 1000);
    sms_works(&app, "after-long").await;
    app.shutdown().await;
}

fn stored(db: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = switchboard::store::open(db, 2, 8).await.unwrap();
        let n = s.counts().await.unwrap().messages_in;
        s.close().await;
        n
    })
}

#[test]
fn ingest_email_refuses_the_nested_mail_with_65_never_134() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingest.db", dir.path().display());
    for (name, raw) in [
        ("rfc822 nested 50,000 deep", nested_rfc822(50_000)),
        ("multipart nested 50,000 deep", nested_multipart(50_000)),
        ("100,000 parts", many_parts(100_000)),
    ] {
        let (code, err) = ingest_email(&db, &raw, &[], &[]);
        assert_eq!(code, 65, "{name}: {err}");
        assert!(err.contains("refused"), "{name}: {err}");
    }
    // Ordinary mail right after: stored.
    let ok = b"From: Li Si <lisi@example.cn>\nTo: cs@gw.test\nSubject: fault\nMessage-ID: <ok-1@example.cn>\n\nno signal\n";
    assert_eq!(ingest_email(&db, ok, &[], &[]).0, 0);
    assert_eq!(stored(&db), 1);
}

#[test]
fn ingest_email_exits_75_when_its_child_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingest.db", dir.path().display());
    let ok = b"From: Li Si <lisi@example.cn>\nTo: cs@gw.test\nSubject: fault\nMessage-ID: <crash-1@example.cn>\n\nno signal\n";
    let (code, err) = ingest_email(&db, ok, &[(switchboard::cli::TEST_ABORT_INGEST, "1")], &[]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("signal 6"), "{err}");
    assert!(
        !err.trim_start().starts_with(|c: char| c.is_ascii_digit()),
        "Postfix would read a leading status code: {err}"
    );
    // The redelivery (Postfix deferred it) is stored once.
    assert_eq!(ingest_email(&db, ok, &[], &[]).0, 0);
    assert_eq!(stored(&db), 1);
}

#[test]
fn ingest_email_exits_75_on_a_bad_command_line() {
    let (code, err) = ingest_email("sqlite::memory:", b"", &[], &["--no-such-flag"]);
    assert_eq!(code, 75, "{err}");
}
