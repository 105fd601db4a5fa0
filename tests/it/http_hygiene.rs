//! The HTTP layer itself over raw TCP: every error answer, the framework's and hyper's own
//! included (404, 405, 413, 414, 431, a malformed request line), has the JSON error shape;
//! a half-sent head is dropped after `server.header_read_timeout_secs`, a stalled body gets
//! 408 after `server.body_read_timeout_secs`; a handler stuck on a locked database answers 503
//! at `server.request_timeout_secs` with nothing half stored, and the server goes on.

use crate::common::{enc, spawn_app};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        assert!(
            self.head
                .to_ascii_lowercase()
                .contains("\r\ncontent-type: application/json"),
            "not JSON: {}",
            self.head
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Asserts the JSON error shape with `code` and returns the message.
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{} {}", self.head, self.body);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        let m = v["error"]["message"]
            .as_str()
            .expect("a message")
            .to_string();
        assert!(!m.is_empty());
        m
    }
}

/// Reads one answer: the head, then `content-length` bytes of body.
async fn read_answer(s: &mut (impl AsyncRead + Unpin)) -> Option<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body =
        String::from_utf8_lossy(&buf[head_end..(head_end + len).min(buf.len())]).into_owned();
    Some(Answer { status, head, body })
}

/// Sends `request` (from a task, so a server that answers before reading it all does not block
/// us) and reads the answer.
async fn raw(port: u16, request: Vec<u8>) -> Answer {
    let (mut r, mut w) = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap()
        .into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        w
    });
    let a = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut r))
        .await
        .expect("an answer in time")
        .expect("an answer");
    writer.abort();
    a
}

/// Whether the server closes the connection (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn every_framework_error_has_the_json_shape() {
    let app = spawn_app(|_, _| {}).await;
    let port = app.port;

    // 404: no such route.
    let a = raw(port, get("/no/such/route")).await;
    a.error(404, "not_found");

    // 405: a route that exists, with the wrong method; Allow names the right one.
    let a = raw(
        port,
        b"DELETE /inbound/sms HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n".to_vec(),
    )
    .await;
    let m = a.error(405, "method_not_allowed");
    assert!(m.contains("DELETE") && m.contains("POST"), "{m}");
    assert!(
        a.head.to_ascii_lowercase().contains("\r\nallow: post"),
        "{}",
        a.head
    );

    // 414: a 100 KB URI.
    let a = raw(
        port,
        get(&format!("/inbound/sms/kannel?text={}", "a".repeat(100_000))),
    )
    .await;
    a.error(414, "uri_too_long");

    // 431: a 1 MB header.
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'x', 1_000_000));
    req.extend_from_slice(b"\r\n\r\n");
    raw(port, req).await.error(431, "headers_too_large");

    // 431: more header fields than hyper reads.
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n".to_vec();
    for i in 0..200 {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    raw(port, req).await.error(431, "headers_too_large");

    // 400: malformed request lines and heads.
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\nHost: gw\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 (a TLS hello)\r\n\r\n",
    ] {
        let a = raw(port, bad.to_vec()).await;
        a.error(400, "bad_request");
    }

    // 413: a body over server.max_body_bytes.
    let body = format!(
        r#"{{"from":"+8613800138000","to":"10000","text":"{}"}}"#,
        "x".repeat(100_000)
    );
    let req = format!(
        "POST /inbound/sms HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(port, req.into_bytes())
        .await
        .error(413, "payload_too_large");

    // 503 from /readyz is JSON too (checked with a healthy database: 200, plain).
    let a = raw(port, get("/readyz")).await;
    assert_eq!(a.status, 200);

    // The server is fine after all that.
    let (st, _) = app
        .get(&format!(
            "/inbound/sms/kannel?id=h-1&from=13800138000&to=10000&text={}",
            enc("宽带断网")
        ))
        .await;
    assert_eq!(st, 200);
    assert_eq!(app.store().counts().await.unwrap().messages_in, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_half_sent_head_is_closed_after_the_header_timeout() {
    let app = spawn_app(|s, _| s.server.header_read_timeout_secs = 1).await;
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "still open after 5 s"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A complete request on a fresh connection is served.
    assert_eq!(raw(app.port, get("/healthz")).await.status, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let app = spawn_app(|s, _| s.server.body_read_timeout_secs = 1).await;
    for (path, ctype) in [
        ("/inbound/sms", "application/json"),
        ("/inbound/email", "message/rfc822"),
        ("/inbound/email", "multipart/form-data; boundary=xyz"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let started = Instant::now();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: {ctype}\r\nContent-Length: 1000\r\n\r\n--xyz\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let a = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut s))
            .await
            .expect("answered in time")
            .expect("an answer");
        let took = started.elapsed();
        a.error(408, "request_timeout");
        assert!(took < Duration::from_secs(5), "{path} {ctype}: {took:?}");
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).await,
            "{path}: connection left open"
        );
    }
    assert_eq!(app.store().counts().await.unwrap().messages_in, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_handler_stuck_on_a_locked_database_answers_503_and_nothing_is_half_stored() {
    let app = crate::common::spawn_app_on(crate::common::Engine::Sqlite, |s, _| {
        s.server.request_timeout_secs = 1;
        // Keep the queued ack in the outbox.
        s.sms.outbound.rate_per_sec = 0.001;
    })
    .await;
    let db = app.dir.path().join("sb.db");
    let lock = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(3));
        c.execute_batch("ROLLBACK").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = format!(
        "/inbound/sms/kannel?id=lock-1&from=13800138000&to=10000&text={}",
        enc("我要投诉，宽带三天没修好")
    );
    let started = Instant::now();
    let a = raw(app.port, get(&q)).await;
    let took = started.elapsed();
    let m = a.error(503, "timeout");
    assert!(m.contains("server.request_timeout_secs"), "{m}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // The metrics and health routes still answer while the database is locked.
    assert_eq!(raw(app.port, get("/healthz")).await.status, 200);
    lock.join().unwrap();
    // Once the lock is gone the writer finishes (or drops) the transaction whole.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = app.store().counts().await.unwrap();
    assert!(
        (c.messages_in, c.cases, c.outbox) == (0, 0, 0)
            || (c.messages_in, c.cases, c.outbox) == (1, 1, 1),
        "half stored: {c:?}"
    );
    // Kannel retries: stored once, whatever happened before.
    let (st, _) = app.get(&q).await;
    assert_eq!(st, 200);
    let c = app.store().counts().await.unwrap();
    assert_eq!((c.messages_in, c.cases, c.outbox), (1, 1, 1));
    // And other traffic is served as usual.
    let (st, _) = app
        .get(&format!(
            "/inbound/sms/kannel?id=lock-2&from=13800138001&to=10000&text={}",
            enc("查话费")
        ))
        .await;
    assert_eq!(st, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_and_shutdown_still_drains() {
    let app = spawn_app(|_, _| {}).await;
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    for i in 0..50 {
        let q = format!(
            "GET /inbound/sms/kannel?id=ka-{i}&from=13800138000&to=10000&text={} HTTP/1.1\r\nHost: gw\r\n\r\n",
            enc("网速慢")
        );
        s.write_all(q.as_bytes()).await.unwrap();
        let a = read_answer(&mut s).await.expect("an answer");
        assert_eq!(a.status, 200, "{a:?}");
    }
    // A 404 on the same connection, then more requests: still open.
    s.write_all(&get("/nope")).await.unwrap();
    read_answer(&mut s).await.unwrap().error(404, "not_found");
    s.write_all(&get("/healthz")).await.unwrap();
    assert_eq!(read_answer(&mut s).await.unwrap().status, 200);
    assert_eq!(app.store().counts().await.unwrap().messages_in, 50);
    // Shutdown closes the idle keep-alive connection and returns.
    let started = Instant::now();
    app.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(closed_within(&mut s, Duration::from_secs(1)).await);
}
