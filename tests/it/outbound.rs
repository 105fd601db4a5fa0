//! The outbox worker against a stub bridge on loopback: request formats (Kannel UCS-2 with
//! coding=2, Jasmin hex-content, generic JSON), retry with backoff on 5xx and connection
//! errors, no retry on 4xx, pacing, delivery reports, and graceful shutdown.

use crate::common::{self, StubBridge, enc, eventually, spawn_app};
use std::sync::Arc;
use std::time::Duration;
use switchboard::config::SmsDriver;
use switchboard::outbound::segment::from_utf16be;

async fn post_mo(app: &common::TestApp, id: &str, from: &str, text: &str) {
    assert_eq!(app.kannel_mo(id, from, text).await.0, 200);
}

async fn ack_status(app: &common::TestApp, to: &str) -> Option<switchboard::store::MessageRecord> {
    app.store()
        .recent_messages("out", 100)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.to_addr == to)
}

#[tokio::test]
async fn kannel_driver_sends_ucs2_with_coding_2_and_a_dlr_url_carrying_our_id() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.sms.outbound.username = "sb".into();
    })
    .await;
    post_mo(&app, "o-1", "13800138000", "宽带坏了").await;
    post_mo(&app, "o-2", "13800138001", "no signal in my flat").await;
    let reqs = bridge.wait_for(2, Duration::from_secs(10)).await;
    let zh = reqs
        .iter()
        .find(|r| r.param("to").as_deref() == Some("8613800138000"))
        .expect("zh ack");
    assert_eq!(zh.path, "/cgi-bin/sendsms");
    assert_eq!(zh.param("coding").as_deref(), Some("2"));
    assert_eq!(zh.param("charset").as_deref(), Some("UTF-16BE"));
    assert_eq!(zh.param("username").as_deref(), Some("sb"));
    assert_eq!(zh.param("from").as_deref(), Some("10000"));
    let text = from_utf16be(&zh.param_bytes("text").unwrap()).unwrap();
    assert!(text.contains("故障报修") && text.contains("SB"), "{text}");
    let ack = ack_status(&app, "+8613800138000").await.unwrap();
    let dlr = zh.param("dlr-url").unwrap();
    assert!(
        dlr.contains(&format!("/dlr/kannel?msg={}&type=%d", ack.id)),
        "{dlr}"
    );
    assert!(zh.param("dlr-mask").is_some());
    let en = reqs
        .iter()
        .find(|r| r.param("to").as_deref() == Some("8613800138001"))
        .expect("en ack");
    assert_eq!(en.param("coding").as_deref(), Some("0"));
    assert!(en.param("text").unwrap().contains("case SB"));
    // The send is recorded, then Kannel's delivery report moves it to delivered.
    let sent = eventually(Duration::from_secs(5), || async {
        ack_status(&app, "+8613800138000")
            .await
            .filter(|m| m.status == "sent")
    })
    .await
    .expect("marked sent");
    assert_eq!(sent.attempts, 1);
    let (st, _) = app.get(&format!("/dlr/kannel?msg={}&type=8", ack.id)).await;
    assert_eq!(st, 200);
    assert_eq!(
        ack_status(&app, "+8613800138000").await.unwrap().status,
        "accepted"
    );
    app.get(&format!("/dlr/kannel?msg={}&type=1", ack.id)).await;
    assert_eq!(
        ack_status(&app, "+8613800138000").await.unwrap().status,
        "delivered"
    );
    let (st, body) = app.get("/dlr/kannel?msg=abc&type=1").await;
    assert_eq!(st, 400, "{body}");
    app.shutdown().await;
}

/// An ack is queued with what it is rendered from, not its text (the intake transaction runs
/// no template; on SQLite it is the writer thread's). Read while queued, it shows the text its
/// send will render; the send renders that same text, hands it to the bridge, and records it
/// (text, encoding, parts) with the result, its inputs cleared.
async fn an_ack_is_rendered_when_sent_and_recorded_with_its_result(url: Option<String>) {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let burl = format!("{}/cgi-bin/sendsms", bridge.url);
    // First queued with the worker paused, then sent by an app on the same database.
    let dir = tempfile::tempdir().unwrap();
    let db = url.unwrap_or_else(|| format!("sqlite://{}/r.db", dir.path().display()));
    let (db1, burl1) = (db.clone(), burl.clone());
    let app = spawn_app(move |s, _| {
        s.database.url = switchboard::config::Secret::new(db1);
        s.sms.outbound.url = burl1;
        s.sms.outbound.paused = true;
    })
    .await;
    post_mo(&app, "r-1", "13800138000", "宽带坏了三天了，我要投诉").await;
    let raw = app
        .store()
        .recent_messages("out", 1)
        .await
        .unwrap()
        .remove(0);
    assert!(
        raw.body.is_empty(),
        "no text rendered in the intake: {raw:?}"
    );
    assert!(
        raw.render
            .as_deref()
            .is_some_and(|r| r.contains("\"template\":\"ack\""))
    );
    let shown = app.last_out().await;
    assert!(
        shown.body.contains("SB") && shown.body.contains("投诉"),
        "{}",
        shown.body
    );
    app.shutdown().await;

    let app = spawn_app(move |s, _| {
        s.database.url = switchboard::config::Secret::new(db);
        s.sms.outbound.url = burl;
    })
    .await;
    let reqs = bridge.wait_for(1, Duration::from_secs(10)).await;
    let sent_text = from_utf16be(&reqs[0].param_bytes("text").unwrap()).unwrap();
    assert_eq!(
        sent_text, shown.body,
        "the bridge got the text shown while queued"
    );
    let sent = eventually(Duration::from_secs(5), || async {
        ack_status(&app, "+8613800138000")
            .await
            .filter(|m| m.status == "sent")
    })
    .await
    .expect("marked sent");
    assert_eq!(sent.body, sent_text, "the text is recorded with the result");
    assert_eq!(sent.render, None, "inputs cleared: never rendered again");
    assert_eq!(
        (sent.encoding.as_deref(), sent.segments),
        (Some("ucs2"), Some(1))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_an_ack_is_rendered_when_sent_and_recorded_with_its_result() {
    an_ack_is_rendered_when_sent_and_recorded_with_its_result(None).await;
}

#[tokio::test]
async fn postgres_an_ack_is_rendered_when_sent_and_recorded_with_its_result() {
    let url = common::fresh_pg_database().await;
    an_ack_is_rendered_when_sent_and_recorded_with_its_result(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

/// A queued message of a kind this version does not know (a newer version queued it) goes out
/// under the strictest rules, as marketing: to a customer who opted out it is withdrawn at its
/// claim, never sent. (Read as a reply, as before, it went out in the urgent lane unchecked.)
async fn an_unknown_message_kind_to_an_opted_out_customer_is_withdrawn(url: Option<String>) {
    // Noon in Shanghai: outside every quiet hour, so only the opt-out can hold it.
    let clock = Arc::new(switchboard::clock::ManualClock::new(1_796_356_800_000));
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let burl = format!("{}/cgi-bin/sendsms", bridge.url);
    let dir = tempfile::tempdir().unwrap();
    let db = url.unwrap_or_else(|| format!("sqlite://{}/k.db", dir.path().display()));
    let db1 = db.clone();
    let (app, _) = common::spawn_app_with_clock(clock.clone(), move |s, _| {
        s.database.url = switchboard::config::Secret::new(db1);
        s.sms.outbound.paused = true;
    })
    .await;
    post_mo(&app, "k-1", "13800138000", "宽带坏了三天了，我要投诉").await;
    app.exec(
        "UPDATE messages SET kind = 'bulk_v9' WHERE direction = 'out' AND to_addr = '+8613800138000'",
    )
    .await;
    app.exec(
        "INSERT INTO contacts (channel, address, opted_out_at) VALUES ('sms', '+8613800138000', 1)",
    )
    .await;
    app.shutdown().await;

    let app = common::spawn_app_with_clock(clock, move |s, _| {
        s.database.url = switchboard::config::Secret::new(db);
        s.sms.outbound.url = burl;
    })
    .await
    .0;
    let gone = eventually(Duration::from_secs(10), || async {
        ack_status(&app, "+8613800138000")
            .await
            .filter(|m| m.status == "suppressed")
    })
    .await;
    let Some(gone) = gone else {
        let out = app.store().recent_messages("out", 10).await.unwrap();
        panic!(
            "not withdrawn: {:?}; the bridge got {}",
            out.iter()
                .map(|m| (&m.status, m.kind, &m.last_error))
                .collect::<Vec<_>>(),
            bridge.requests().len()
        );
    };
    assert_eq!(gone.last_error.as_deref(), Some("opted out"));
    assert!(bridge.requests().is_empty(), "{:?}", bridge.requests());
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_an_unknown_message_kind_to_an_opted_out_customer_is_withdrawn() {
    an_unknown_message_kind_to_an_opted_out_customer_is_withdrawn(None).await;
}

#[tokio::test]
async fn postgres_an_unknown_message_kind_to_an_opted_out_customer_is_withdrawn() {
    let url = common::fresh_pg_database().await;
    an_unknown_message_kind_to_an_opted_out_customer_is_withdrawn(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_sent_once() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    bridge.script(&[(503, "busy"), (500, "oops")]);
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| s.sms.outbound.url = url).await;
    post_mo(&app, "r-1", "13800138002", "我要投诉").await;
    let reqs = bridge.wait_for(3, Duration::from_secs(10)).await;
    let m = eventually(Duration::from_secs(5), || async {
        ack_status(&app, "+8613800138002")
            .await
            .filter(|m| m.status == "sent")
    })
    .await
    .expect("sent after retries");
    assert_eq!(m.attempts, 3);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_millis(20),
        "backoff between attempts"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bridge.requests().len(), 3, "no send after success");
    app.shutdown().await;
}

/// The worker goes idle while a send is in flight (a leased row is not due); the retry that
/// send schedules must wake it, not wait for the 5 s idle cap. (Before: the second attempt came
/// about 5 s after the first.)
#[tokio::test]
async fn a_retry_scheduled_by_a_send_in_flight_wakes_the_idle_worker() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    bridge.script(&[(503, "busy")]);
    bridge.set_delay(Duration::from_millis(400));
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| s.sms.outbound.url = url).await;
    post_mo(&app, "w-1", "13800138009", "hello").await;
    let reqs = bridge.wait_for(2, Duration::from_secs(10)).await;
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap < Duration::from_millis(2500),
        "second attempt {gap:?} after the first (backoff 50-200 ms + 400 ms answer)"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn client_errors_fail_without_retry_and_exhausted_retries_fail() {
    let bridge = StubBridge::start(400, "Missing receiver number, rejected").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.sms.outbound.max_attempts = 3;
    })
    .await;
    post_mo(&app, "f-1", "13800138003", "hello").await;
    let m = eventually(Duration::from_secs(5), || async {
        ack_status(&app, "+8613800138003")
            .await
            .filter(|m| m.status == "failed")
    })
    .await
    .expect("failed");
    assert!(m.last_error.unwrap().contains("400"));
    assert_eq!(bridge.requests().len(), 1);
    bridge.set_default(503, "down");
    post_mo(&app, "f-2", "13800138004", "hello").await;
    let m = eventually(Duration::from_secs(10), || async {
        ack_status(&app, "+8613800138004")
            .await
            .filter(|m| m.status == "failed")
    })
    .await
    .expect("gave up");
    assert_eq!(m.attempts, 3);
    assert!(m.last_error.unwrap().contains("gave up after 3 attempts"));
    assert_eq!(app.store().counts().await.unwrap().outbox, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn jasmin_driver_posts_hex_content_and_its_dlr_maps_back_by_uuid() {
    let bridge = StubBridge::start(200, "Success \"3f8d0a52-7c2b-4bc1-9b1f-0a0e3c4b5d6e\"").await;
    let url = format!("{}/send", bridge.url);
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.sms.outbound.driver = SmsDriver::Jasmin;
    })
    .await;
    post_mo(&app, "j-1", "13800138005", "手机打不通").await;
    let r = &bridge.wait_for(1, Duration::from_secs(10)).await[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/send"));
    assert_eq!(r.param("coding").as_deref(), Some("8"));
    let text = from_utf16be(&hex::decode(r.param("hex-content").unwrap()).unwrap()).unwrap();
    assert!(text.contains("SB"), "{text}");
    assert_eq!(r.param("dlr").as_deref(), Some("yes"));
    let m = eventually(Duration::from_secs(5), || async {
        ack_status(&app, "+8613800138005")
            .await
            .filter(|m| m.status == "sent")
    })
    .await
    .unwrap();
    assert_eq!(
        m.provider_id.as_deref(),
        Some("3f8d0a52-7c2b-4bc1-9b1f-0a0e3c4b5d6e")
    );
    let (st, body) = app
        .post(
            "/dlr/jasmin",
            "application/x-www-form-urlencoded",
            "id=3f8d0a52-7c2b-4bc1-9b1f-0a0e3c4b5d6e&message_status=DELIVRD&level=3&connector=smpp",
        )
        .await;
    assert_eq!((st, body.as_str()), (200, "ACK/Jasmin"));
    assert_eq!(
        ack_status(&app, "+8613800138005").await.unwrap().status,
        "delivered"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn generic_http_driver_posts_json_and_sends_are_paced() {
    let bridge = StubBridge::start(200, "{\"id\":\"x-1\"}").await;
    let url = format!("{}/sms", bridge.url);
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.sms.outbound.driver = SmsDriver::Http;
        s.sms.outbound.rate_per_sec = 10.0;
        s.sms.outbound.concurrency = 4;
    })
    .await;
    for i in 0..6 {
        post_mo(&app, &format!("p-{i}"), &format!("1380013801{i}"), "hello").await;
    }
    let reqs = bridge.wait_for(6, Duration::from_secs(10)).await;
    let v: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert!(v["text"].as_str().unwrap().contains("case SB"));
    assert!(v["to"].as_str().unwrap().starts_with("+86"));
    let mut at: Vec<_> = reqs.iter().map(|r| r.at).collect();
    at.sort();
    let span = at[5] - at[0];
    assert!(
        span >= Duration::from_millis(450),
        "6 sends at 10/s span at least 0.5 s, got {span:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_sends_finish_and_records_them() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    bridge.set_delay(Duration::from_millis(800));
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = crate::common::spawn_app_on(crate::common::Engine::Sqlite, move |s, _| {
        s.sms.outbound.url = url
    })
    .await;
    post_mo(&app, "s-1", "13800138020", "hello").await;
    // The bridge holds the request for 800 ms: the send is in flight when we stop.
    bridge.wait_for(1, Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    let dir = app.shutdown().await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "shutdown waited for the send"
    );
    let store = switchboard::store::open(&format!("sqlite://{}/sb.db", dir.path().display()), 2, 8)
        .await
        .unwrap();
    let m = store.recent_messages("out", 10).await.unwrap().remove(0);
    assert_eq!(
        m.status, "sent",
        "the in-flight send's result was recorded before exit"
    );
    assert_eq!(store.counts().await.unwrap().outbox, 0);
    assert_eq!(bridge.requests().len(), 1);
}

#[tokio::test]
async fn transport_errors_are_retried_and_never_record_the_bridge_password() {
    let app = spawn_app(|s, _| {
        s.sms.outbound.url = "http://127.0.0.1:9/cgi-bin/sendsms".into();
        s.sms.outbound.password = switchboard::config::Secret::new("s3cr3t-pw");
    })
    .await;
    post_mo(&app, "pw-1", "13800138040", "hello").await;
    let m = eventually(Duration::from_secs(5), || async {
        ack_status(&app, "+8613800138040")
            .await
            .filter(|m| m.attempts >= 1)
    })
    .await
    .expect("attempted");
    assert_eq!(m.status, "queued", "a refused connection is retried");
    let err = m.last_error.unwrap();
    assert!(err.contains("connection"), "{err}");
    assert!(!err.contains("s3cr3t-pw"), "{err}");
    app.shutdown().await;
}

/// An agent answers an SMS case through `POST /api/v1/cases/{id}/replies`: the reply goes out
/// through the bridge from the number the customer wrote to, is recorded on the case (kind
/// `reply`, case acknowledged) and shows in `GET /api/v1/cases/{id}`. Bad requests are refused
/// with the reason and queue nothing.
#[tokio::test]
async fn an_agent_reply_on_an_sms_case_goes_out_through_the_bridge() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| s.sms.outbound.url = url).await;
    let q = format!(
        "/inbound/sms/kannel?id=r-1&from=13800138000&to=10001&coding=0&charset=UTF-8&text={}",
        enc("宽带三天没修好，我要投诉")
    );
    assert_eq!(app.get(&q).await.0, 200);
    bridge.wait_for(1, Duration::from_secs(10)).await;
    let case_id = app.store().recent_messages("in", 1).await.unwrap()[0]
        .case_id
        .expect("a case");
    let agent = app.token("agent").await;
    let path = format!("/api/v1/cases/{}/replies", case_id.get());
    let text = "您好，维修师傅今天下午三点上门，请保持电话畅通。";
    let (status, body) = app
        .api_with(
            "POST",
            &path,
            Some(&agent),
            Some(serde_json::json!({ "text": text })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["to"], "+8613800138000");
    let reply_id = body["message_id"].as_i64().unwrap();

    let reqs = bridge.wait_for(2, Duration::from_secs(10)).await;
    let sent = from_utf16be(&reqs[1].param_bytes("text").unwrap()).unwrap();
    assert_eq!(sent, text);
    assert_eq!(reqs[1].param("from").as_deref(), Some("10001"));
    assert_eq!(reqs[1].param("to").as_deref(), Some("8613800138000"));
    let rec = app
        .store()
        .message(switchboard::domain::MessageId(reply_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            rec.kind.map(|k| k.as_str()),
            rec.case_id,
            rec.direction.as_str()
        ),
        (Some("reply"), Some(case_id), "out")
    );
    let case = app.store().case(case_id).await.unwrap().unwrap();
    assert_eq!(case.status, "acknowledged");
    // Both sends (the ack and the reply) are counted for the SMS channel, none for email.
    let metrics = eventually(Duration::from_secs(5), || async {
        let (_, m) = app.get("/metrics").await;
        m.contains("switchboard_outbound_total{channel=\"sms\",outcome=\"sent\"} 2")
            .then_some(m)
    })
    .await
    .expect("/metrics counts two SMS sends");
    assert!(
        metrics.contains("switchboard_outbound_total{channel=\"email\",outcome=\"sent\"} 0"),
        "{metrics}"
    );

    let r = app
        .client
        .get(format!("{}/api/v1/cases/{}", app.base, case_id.get()))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let shown: serde_json::Value = r.json().await.unwrap();
    let kinds: Vec<&str> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or("in"))
        .collect();
    assert_eq!(kinds, ["in", "ack", "reply"], "{shown}");

    // Refused, nothing queued: no token, a role that does not answer cases, an unknown case,
    // an empty text, an SMS too long, unknown fields, a case id that is not a number.
    let before = app.store().recent_messages("out", 100).await.unwrap().len();
    let marketing = app.token("marketing").await;
    let cases: [(Option<&str>, String, serde_json::Value, u16); 7] = [
        (None, path.clone(), serde_json::json!({ "text": "hi" }), 401),
        (
            Some(&marketing),
            path.clone(),
            serde_json::json!({ "text": "hi" }),
            403,
        ),
        (
            Some(&agent),
            "/api/v1/cases/999999/replies".into(),
            serde_json::json!({ "text": "hi" }),
            404,
        ),
        (
            Some(&agent),
            path.clone(),
            serde_json::json!({ "text": "  " }),
            422,
        ),
        (
            Some(&agent),
            path.clone(),
            serde_json::json!({ "text": "长".repeat(671) }),
            422,
        ),
        (
            Some(&agent),
            path.clone(),
            serde_json::json!({ "text": "hi", "cc": "x" }),
            400,
        ),
        (
            Some(&agent),
            "/api/v1/cases/abc/replies".into(),
            serde_json::json!({ "text": "hi" }),
            400,
        ),
    ];
    for (token, p, body, want) in cases {
        let (status, got) = app.api_with("POST", &p, token, Some(body.clone())).await;
        assert_eq!(status, want, "{p} {body}: {got}");
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{got}"
        );
    }
    let after = app.store().recent_messages("out", 100).await.unwrap().len();
    assert_eq!(before, after, "refused replies queue nothing");
    app.shutdown().await;
}

/// The agents' work queue over the API: open cases listed most urgent first, a case resolved
/// with a note (idempotent), filters and bad queries refused with the reason.
#[tokio::test]
async fn agents_list_open_cases_and_resolve_them() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| s.sms.outbound.url = url).await;
    post_mo(&app, "q-1", "13800138010", "宽带坏了").await;
    post_mo(&app, "q-2", "13800138011", "我要投诉，三天没人修").await;
    let agent = app.token("agent").await;
    let get = |path: String, token: String| {
        let c = app.client.clone();
        let base = app.base.clone();
        async move {
            let r = c
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = get("/api/v1/cases".into(), agent.clone()).await;
    assert_eq!(status, 200, "{body}");
    let cases = body["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2, "{body}");
    let due: Vec<i64> = cases
        .iter()
        .map(|c| c["resolve_due_at"].as_i64().unwrap())
        .collect();
    assert!(due[0] <= due[1], "most urgent first: {due:?}");
    let id = cases[0]["id"].as_i64().unwrap();

    let path = format!("/api/v1/cases/{id}/resolve");
    let (status, body) = app
        .api_with(
            "POST",
            &path,
            Some(&agent),
            Some(serde_json::json!({ "note": "line repaired", "code": "fixed" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["case"]["status"], "resolved");
    let resolved_at = body["case"]["resolved_at"].as_i64().expect("resolved_at");
    let (status, again) = app
        .api_with("POST", &path, Some(&agent), Some(serde_json::json!({})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["case"]["resolved_at"].as_i64(), Some(resolved_at));

    let (_, open) = get("/api/v1/cases?status=open".into(), agent.clone()).await;
    assert_eq!(open["cases"].as_array().unwrap().len(), 1, "{open}");
    let (_, done) = get(
        "/api/v1/cases?status=resolved&limit=5".into(),
        agent.clone(),
    )
    .await;
    assert_eq!(done["cases"][0]["id"].as_i64(), Some(id), "{done}");

    for bad in [
        "/api/v1/cases?status=lost",
        "/api/v1/cases?limit=0",
        "/api/v1/cases?limit=x",
        "/api/v1/cases?sort=id",
    ] {
        let (status, body) = get(bad.into(), agent.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (status, _) = app
        .api_with(
            "POST",
            "/api/v1/cases/999999/resolve",
            Some(&agent),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, 404);
    let marketing = app.token("marketing").await;
    let (status, _) = app
        .api_with("POST", &path, Some(&marketing), Some(serde_json::json!({})))
        .await;
    assert_eq!(status, 403);
    app.shutdown().await;
}

#[tokio::test]
async fn replies_longer_than_the_bridge_sends_are_refused_and_acks_are_cut_to_fit() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    // Kannel's own default: max-messages = 1, so the part cap is 1.
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.templates.service_name = "中国电信客户服务中心网上营业厅与客户服务热线联合受理部".into();
    })
    .await;
    let q = format!(
        "/inbound/sms/kannel?id=cap-1&from=13800138050&to=10000&coding=0&charset=UTF-8&text={}",
        enc("宽带三天没修好，我要投诉")
    );
    assert_eq!(app.get(&q).await.0, 200);
    let reqs = bridge.wait_for(1, Duration::from_secs(10)).await;
    let ack = from_utf16be(&reqs[0].param_bytes("text").unwrap()).unwrap();
    assert!(ack.ends_with('…'), "{ack}");
    assert!(ack.encode_utf16().count() <= 70, "{ack}");
    let case_id = app.store().recent_messages("in", 1).await.unwrap()[0]
        .case_id
        .unwrap();
    let agent = app.token("agent").await;
    let path = format!("/api/v1/cases/{}/replies", case_id.get());
    let long = "您好，".repeat(30);
    let (status, body) = app
        .api_with(
            "POST",
            &path,
            Some(&agent),
            Some(serde_json::json!({ "text": long })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("sms.outbound.max_parts") && msg.contains("at most 1"),
        "{msg}"
    );
    let (status, _) = app
        .api_with(
            "POST",
            &path,
            Some(&agent),
            Some(serde_json::json!({ "text": "维修师傅今天下午上门。" })),
        )
        .await;
    assert_eq!(status, 201);
    app.shutdown().await;
}

#[tokio::test]
async fn a_send_result_that_cannot_be_recorded_is_retried_and_nothing_is_sent_twice() {
    use sqlx::Connection;
    let db = common::fresh_pg_database().await;
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    bridge.set_delay(Duration::from_millis(1500));
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let db2 = db.clone();
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.database.url = switchboard::config::Secret::new(db2);
    })
    .await;
    post_mo(&app, "rec-1", "13800138060", "宽带坏了").await;
    // The bridge has the send; before it answers, the database loses the outbox.
    bridge.wait_for(1, Duration::from_secs(10)).await;
    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    sqlx::query("ALTER TABLE outbox RENAME TO outbox_away")
        .execute(&mut c)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sqlx::query("ALTER TABLE outbox_away RENAME TO outbox")
        .execute(&mut c)
        .await
        .unwrap();
    // The result is recorded once the database is back, long before the lease would expire.
    let m = eventually(Duration::from_secs(10), || async {
        ack_status(&app, "+8613800138060")
            .await
            .filter(|m| m.status == "sent")
    })
    .await;
    assert!(
        m.is_some(),
        "the send result was not recorded after the outage"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bridge.requests().len(), 1, "the ack was sent twice");
    app.shutdown().await;
    drop(c);
    common::drop_pg_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_ack_leaves_ahead_of_100000_queued_marketing_messages() {
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = spawn_app(move |s, _| {
        s.sms.outbound.url = url;
        s.sms.outbound.rate_per_sec = 200.0;
    })
    .await;
    let drafts: Vec<switchboard::store::OutboundDraft> = (0..100_000)
        .map(|i| switchboard::store::OutboundDraft {
            channel: switchboard::domain::Channel::Sms,
            driver: "kannel".into(),
            from: "10000".into(),
            to: format!("+86139{i:08}").parse().unwrap(),
            subject: None,
            text: "【客服中心】本月流量包八折，回复TD退订".into(),
            html: None,
            headers: None,
            kind: switchboard::domain::MessageKind::Marketing,
            encoding: "ucs2",
            segments: 1,
            not_before: None,
            render: None,
        })
        .collect();
    let now = app.state.intake.clock.now_ms();
    app.store().queue_outbound_bulk(&drafts, now).await.unwrap();
    // Marketing is flowing; then a complaint arrives.
    bridge.wait_for(20, Duration::from_secs(20)).await;
    let sent_before_post = bridge.requests().len();
    post_mo(&app, "lane-1", "13800138070", "我要投诉，宽带断网三天了").await;
    let ack_at = eventually(Duration::from_secs(10), || async {
        bridge
            .requests()
            .iter()
            .position(|r| r.param("to").as_deref() == Some("8613800138070"))
    })
    .await
    .expect("the complaint's ack was sent");
    let before = bridge.requests().len();
    // Sent with the next claimed batch (2 × concurrency = 8), not after 100,000 others.
    assert!(
        ack_at < sent_before_post + 40,
        "the ack left as send number {ack_at} of {before}"
    );
    app.shutdown().await;
}

/// Counts what it is given to send.
struct Counting(Arc<std::sync::atomic::AtomicU64>);

#[async_trait::async_trait]
impl switchboard::outbound::Sender for Counting {
    async fn send(
        &self,
        _item: &switchboard::store::OutboxItem,
    ) -> switchboard::outbound::retry::SendResult {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        switchboard::outbound::retry::SendResult::Sent { provider_id: None }
    }
    fn name(&self) -> &'static str {
        "counting"
    }
}

/// The bridge's rate is the deployment's: two instances' workers on one database, each set
/// to 20 messages a second, send about 20 a second together, not 40.
async fn two_workers_share_the_bridge_rate(url: String) {
    use switchboard::domain::Channel;
    use switchboard::outbound::{Worker, WorkerConfig};
    let s1 = switchboard::store::open(&url, 4, 64).await.unwrap();
    s1.migrate().await.unwrap();
    let s2 = switchboard::store::open(&url, 4, 64).await.unwrap();
    let clock: Arc<dyn switchboard::clock::Clock> = Arc::new(switchboard::clock::SystemClock);
    let drafts: Vec<_> = (0..300)
        .map(|i| switchboard::store::OutboundDraft {
            channel: Channel::Sms,
            driver: "kannel".into(),
            from: "10000".into(),
            to: format!("+86138000{i:05}").parse().unwrap(),
            subject: None,
            text: "您的话费余额不足".into(),
            html: None,
            headers: None,
            kind: switchboard::domain::MessageKind::Notice,
            encoding: "ucs2",
            segments: 1,
            not_before: None,
            render: None,
        })
        .collect();
    s1.queue_outbound_bulk(&drafts, clock.now_ms())
        .await
        .unwrap();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut settings =
        switchboard::config::Settings::load_with_env(None, Vec::<(String, String)>::new()).unwrap();
    settings.sms.outbound.rate_per_sec = 20.0;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    for store in [s1.clone(), s2.clone()] {
        let w = Worker {
            store,
            clock: clock.clone(),
            sender: Arc::new(Counting(count.clone())),
            notify: Default::default(),
            metrics: Default::default(),
            config: WorkerConfig::new(
                Channel::Sms,
                &settings.sms.outbound.pacing(),
                std::time::Duration::from_secs(2),
            ),
            unrecorded: Default::default(),
        };
        tasks.push(tokio::spawn(w.run(stop.clone())));
    }
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let sent = count.load(std::sync::atomic::Ordering::Relaxed);
    // 2 s at 20/s, plus the bucket's burst (a fifth of a second) and the lower lanes' share
    // of one claim; each worker alone would have sent ~40.
    assert!(sent <= 48, "two workers sent {sent} in 2 s at 20/s");
    eprintln!("two workers at 20/s sent {sent} in 2 s");
    assert!(sent >= 28, "they did send, near the rate: {sent}");
    s1.close().await;
    s2.close().await;
}

#[tokio::test]
async fn sqlite_two_workers_share_the_bridge_rate() {
    let dir = tempfile::tempdir().unwrap();
    two_workers_share_the_bridge_rate(format!("sqlite://{}/w.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_two_workers_share_the_bridge_rate() {
    let url = common::fresh_pg_database().await;
    two_workers_share_the_bridge_rate(url.clone()).await;
    common::drop_pg_database(&url).await;
}
