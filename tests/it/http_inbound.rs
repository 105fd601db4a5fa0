//! The SMS webhooks over real HTTP: every dialect stores, classifies, opens a case and queues
//! an ack; bad input gets a 4xx naming what is wrong and stores nothing; a database failure
//! answers 503.

use crate::common::{self, Engine, enc, enc_bytes, spawn_app, spawn_app_on};
use std::time::Duration;
use switchboard::config::Secret;
use switchboard::outbound::segment::utf16be;

fn outbox_off(s: &mut switchboard::config::Settings) {
    // Keep queued acks in the outbox so the tests can read them.
    s.sms.outbound.enabled = true;
    s.sms.outbound.rate_per_sec = 0.001;
}

#[tokio::test]
async fn kannel_get_utf8_stores_classifies_opens_case_and_queues_chinese_ack() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    let q = format!(
        "/inbound/sms/kannel?id=k-1&from={}&to=10000&ts=1795645874&coding=0&charset=UTF-8&text={}&smsc=fake&udh=",
        enc("+8613800138000"),
        enc("我要投诉，宽带三天没修好")
    );
    let (st, body) = app.get(&q).await;
    assert_eq!(
        (st, body.as_str()),
        (200, ""),
        "Kannel gets an empty body (it would send it as SMS)"
    );
    let store = app.store();
    let msgs = store.recent_messages("in", 10).await.unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(
        (
            m.from_addr.as_str(),
            m.to_addr.as_str(),
            m.category.as_deref()
        ),
        ("+8613800138000", "10000", Some("complaint"))
    );
    let case = store.case(m.case_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(case.category, "complaint");
    assert_eq!(case.ack_due_at - case.opened_at, 3 * 3_600_000);
    assert_eq!(case.resolve_due_at - case.opened_at, 72 * 3_600_000);
    let acks = app.recent_out(10).await;
    assert_eq!(acks.len(), 1);
    let a = &acks[0];
    assert!(
        a.body.contains(&format!("SB{:08}", case.id.get())),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("投诉") && a.body.starts_with('【'),
        "{}",
        a.body
    );
    assert_eq!((a.encoding.as_deref(), a.segments), (Some("ucs2"), Some(1)));
    assert_eq!(
        (a.from_addr.as_str(), a.to_addr.as_str()),
        ("10000", "+8613800138000")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn kannel_ucs2_without_mo_recode_and_post_url_are_decoded() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    let q = format!(
        "/inbound/sms/kannel?id=k-2&from=13800138001&to=10000&coding=2&charset=UTF-16BE&text={}",
        enc_bytes(&utf16be("手机没信号 😀"))
    );
    assert_eq!(app.get(&q).await.0, 200);
    // post-url: text in the body, no %I.
    let r = app
        .client
        .post(format!(
            "{}/inbound/sms/kannel?from=13800138002&to=10000&coding=0&charset=UTF-8",
            app.base
        ))
        .header("content-type", "text/plain; charset=\"UTF-8\"")
        .header("X-Kannel-To", "10000")
        .body("my broadband is down")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let store = app.store();
    let msgs = store.recent_messages("in", 10).await.unwrap();
    let texts: Vec<_> = msgs
        .iter()
        .map(|m| (m.from_addr.as_str(), m.body.as_str()))
        .collect();
    assert!(
        texts.contains(&("+8613800138001", "手机没信号 😀")),
        "{texts:?}"
    );
    assert!(
        texts.contains(&("+8613800138002", "my broadband is down")),
        "{texts:?}"
    );
    let en = app
        .recent_out(10)
        .await
        .into_iter()
        .find(|m| m.to_addr == "+8613800138002")
        .unwrap();
    assert!(
        en.body.contains("case SB"),
        "English message gets the English ack: {}",
        en.body
    );
    assert_eq!(en.encoding.as_deref(), Some("gsm7"));
    app.shutdown().await;
}

#[tokio::test]
async fn repeated_mo_is_acknowledged_but_makes_no_second_case() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    let q = format!(
        "/inbound/sms/kannel?id=same&from=13800138003&to=10000&text={}",
        enc("停机了")
    );
    for _ in 0..3 {
        assert_eq!(app.get(&q).await.0, 200);
    }
    // Jasmin retries the same id; the generic JSON without id dedupes by content.
    for _ in 0..2 {
        let (st, body) = app.jasmin("id=j-1&from=8613800138004&to=10000&origin-connector=smpp&coding=%08&binary=624B673A6CA14FE153F7").await;
        assert_eq!((st, body.as_str()), (200, "ACK/Jasmin"));
    }
    for _ in 0..2 {
        let (st, _) = app
            .generic(r#"{"from":"13800138005","to":"10000","text":"how much is the plan"}"#)
            .await;
        assert_eq!(st, 200);
    }
    let c = app.store().counts().await.unwrap();
    assert_eq!((c.messages_in, c.cases, c.messages_out), (3, 3, 3));
    let jm = app
        .store()
        .recent_messages("in", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.dialect == "jasmin")
        .unwrap();
    assert_eq!(jm.body, "手机没信号");
    app.shutdown().await;
}

#[tokio::test]
async fn generic_json_reports_the_case_and_twilio_answers_twiml() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    let (st, body) = app
        .generic(r#"{"id":"g-1","from":"+8613800138006","to":"10000","text":"网络太慢了"}"#)
        .await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "stored");
    assert!(v["case"].as_str().unwrap().starts_with("SB"));
    let (st, body) = app.twilio("MessageSid=SM1&AccountSid=AC1&From=%2B8613800138007&To=%2B10000&Body=no+signal+at+home&NumMedia=0").await;
    assert_eq!(st, 200);
    assert!(body.contains("<Response></Response>"), "{body}");
    assert_eq!(app.store().counts().await.unwrap().cases, 2);
    app.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_problem_and_stores_nothing() {
    let app = spawn_app(|s, _| {
        outbox_off(s);
        s.server.max_body_bytes = 4096;
    })
    .await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "GET",
            "/inbound/sms/kannel?to=10000&text=hi".into(),
            400,
            "from",
        ),
        (
            "GET",
            "/inbound/sms/kannel?from=13800138000&to=10000".into(),
            400,
            "text",
        ),
        (
            "GET",
            "/inbound/sms/kannel?from=not-a-number&to=10000&text=hi".into(),
            400,
            "from",
        ),
        (
            "GET",
            "/inbound/sms/kannel?from=13800138000&to=10000&coding=9&text=hi".into(),
            400,
            "coding",
        ),
        (
            "GET",
            "/inbound/sms/kannel?from=13800138000&to=10000&coding=2&text=%4F".into(),
            400,
            "odd number",
        ),
        (
            "GET",
            "/inbound/sms/kannel?from=13800138000&to=10000&text=%FF%FE".into(),
            400,
            "UTF-8",
        ),
        (
            "GET",
            "/inbound/sms/jasmin?from=13800138000&to=10000&coding=8&binary=XYZ".into(),
            400,
            "binary",
        ),
        (
            "GET",
            "/inbound/sms/jasmin?from=13800138000&to=10000&coding=%09&binary=00".into(),
            400,
            "coding",
        ),
    ];
    for (_, path, want, needle) in &cases {
        let (st, body) = app.get(path).await;
        assert_eq!(st, *want, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("JSON error body for {path}: {body}"));
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    let (st, body) = app.generic("{\"from\": 1").await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("error"));
    let (st, body) = app
        .generic(r#"{"from":"13800138000","to":"10000","text":"a\u0000b"}"#)
        .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = app
        .generic(format!(
            r#"{{"from":"13800138000","to":"10000","text":"{}"}}"#,
            "x".repeat(10_000)
        ))
        .await;
    assert_eq!(st, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    let (st, _) = app.get("/nope").await;
    assert_eq!(st, 404);
    let c = app.store().counts().await.unwrap();
    assert_eq!((c.messages_in, c.cases, c.outbox), (0, 0, 0));
    app.shutdown().await;
}

#[tokio::test]
async fn webhook_secrets_are_enforced_per_route() {
    let app = spawn_app(|s, _| {
        outbox_off(s);
        s.inbound.kannel_token = Some(Secret::new("k-secret"));
        s.inbound.generic_token = Some(Secret::new("g-secret"));
    })
    .await;
    let base = "/inbound/sms/kannel?from=13800138000&to=10000&text=hi";
    let (st, body) = app.get(base).await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(app.get(&format!("{base}&token=wrong")).await.0, 401);
    assert_eq!(app.get(&format!("{base}&token=k-secret")).await.0, 200);
    let r = app
        .client
        .post(format!("{}/inbound/sms", app.base))
        .header("X-Switchboard-Token", "g-secret")
        .body(r#"{"from":"13800138009","to":"10000","text":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The Kannel secret does not open the generic route.
    let r = app
        .client
        .post(format!("{}/inbound/sms?token=k-secret", app.base))
        .body(r#"{"from":"13800138008","to":"10000","text":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let stored = app.store().recent_messages("in", 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|m| !String::from_utf8_lossy(m.body.as_bytes()).contains("secret"))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn twilio_signature_is_checked_when_a_token_is_set() {
    let url = "https://gw.example.com/inbound/sms/twilio";
    let app = spawn_app(|s, _| {
        outbox_off(s);
        s.inbound.twilio_auth_token = Some(Secret::new("tw-token"));
        s.inbound.twilio_url = Some(url.into());
    })
    .await;
    let form = "MessageSid=SM9&From=%2B8613800138010&To=10000&Body=hello";
    let sig = switchboard::bridges::twilio::mo::signature("tw-token", url, form.as_bytes());
    let send = |sig: Option<String>| {
        let mut r = app
            .client
            .post(format!("{}/inbound/sms/twilio", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        if let Some(s) = sig {
            r = r.header("X-Twilio-Signature", s);
        }
        r.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("AAAA".into())).await.unwrap().status(), 401);
    assert_eq!(send(Some(sig)).await.unwrap().status(), 200);
    assert_eq!(app.store().counts().await.unwrap().messages_in, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn non_loopback_listen_without_secrets_is_refused() {
    let mut s = common::base_settings();
    let dir = tempfile::tempdir().unwrap();
    s.database.url = Secret::new(format!("sqlite://{}/x.db", dir.path().display()));
    s.server.listen = "0.0.0.0:0".parse().unwrap();
    let err = switchboard::app::Application::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("inbound.kannel_token"), "{err}");
}

/// `inbound.routes` switches route groups off: they answer 404 (JSON) and need no secret, so a
/// deployment that serves only Kannel starts on a public address with just the Kannel secret.
#[tokio::test]
async fn switched_off_routes_answer_404_and_need_no_secret() {
    use switchboard::config::WebhookRoute;
    let app = spawn_app(|s, _| {
        outbox_off(s);
        s.inbound.routes = vec![WebhookRoute::Kannel];
    })
    .await;
    let q = format!(
        "/inbound/sms/kannel?id=r-1&from=13800138000&to=10000&text={}",
        enc("宽带坏了")
    );
    assert_eq!(app.get(&q).await.0, 200);
    for path in [
        "/inbound/sms",
        "/inbound/email",
        "/dlr/generic",
        "/inbound/sms/twilio",
    ] {
        let (status, body) = app.post(path, "application/json", "{}").await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("no such route"), "{path}: {body}");
    }
    app.shutdown().await;

    let mut s = common::base_settings();
    let dir = tempfile::tempdir().unwrap();
    s.database.url = Secret::new(format!("sqlite://{}/x.db", dir.path().display()));
    s.server.listen = "0.0.0.0:0".parse().unwrap();
    s.inbound.routes = vec![WebhookRoute::Kannel];
    s.inbound.kannel_token = Some(Secret::new("k"));
    let built = switchboard::app::Application::build(s).await;
    assert!(built.is_ok(), "{:?}", built.err());
}

#[tokio::test]
async fn database_failure_answers_503_and_health_reports_it() {
    let url = common::fresh_pg_database().await;
    let u = url.clone();
    let app = spawn_app(move |s, _| {
        outbox_off(s);
        s.database.url = Secret::new(u);
    })
    .await;
    assert_eq!(app.get("/readyz").await.0, 200);
    assert_eq!(
        app.get("/inbound/sms/kannel?id=x1&from=13800138000&to=10000&text=hi")
            .await
            .0,
        200
    );
    common::drop_pg_database(&url).await;
    let (st, body) = app
        .get("/inbound/sms/kannel?id=x2&from=13800138000&to=10000&text=hi")
        .await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    assert_eq!(app.get("/readyz").await.0, 503);
    assert_eq!(app.get("/healthz").await.0, 200);
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains("switchboard_inbound_total{outcome=\"unavailable\"} 1"),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn classify_api_explains_the_category() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    let url = format!("{}/api/v1/classify", app.base);
    let body = serde_json::json!({"text": "我要投诉"});
    let r = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401, "the admin API needs a token");
    let token = app.token("agent").await;
    let r = app
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["category"], "complaint");
    assert!(!v["hits"].as_array().unwrap().is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn self_service_and_survey_answers_get_their_own_replies_and_no_case() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    let send = |id: &str, from: &str, text: &str| {
        format!(
            "/inbound/sms/kannel?id={id}&from={from}&to=10000&text={}",
            enc(text)
        )
    };
    assert_eq!(
        app.get(&send("q1", "13800138030", "我要投诉，宽带断了"))
            .await
            .0,
        200
    );
    let case = app.store().recent_messages("in", 1).await.unwrap()[0]
        .case_id
        .unwrap();
    let last_out = || async { app.last_out().await };
    assert_eq!(
        app.get(&send(
            "q2",
            "13800138030",
            &format!("查询工单SB{:08}进度", case.get())
        ))
        .await
        .0,
        200
    );
    let r = last_out().await;
    assert!(
        r.body.contains(&format!("SB{:08}", case.get())) && r.body.contains("当前状态"),
        "{}",
        r.body
    );
    assert_eq!(
        app.get(&send(
            "q3",
            "13800138031",
            &format!("SB{:08} progress", case.get())
        ))
        .await
        .0,
        200
    );
    let r = last_out().await;
    assert!(
        r.body.contains("found no case"),
        "another customer learns nothing: {}",
        r.body
    );
    assert_eq!(app.get(&send("q4", "13800138032", "查话费")).await.0, 200);
    // No billing backend configured: the answer says where to ask, never "text 10001".
    let fallback = last_out().await.body;
    assert!(
        fallback.contains("网上营业厅") && !fallback.contains("10001"),
        "{fallback}"
    );
    app.store()
        .await_survey(
            switchboard::domain::Channel::Sms,
            "+8613800138033",
            "revisit",
            Some(case.get()),
            0,
            i64::MAX / 2,
        )
        .await
        .unwrap();
    assert_eq!(app.get(&send("q5", "13800138033", "满意")).await.0, 200);
    assert!(last_out().await.body.contains("感谢您的评价"));
    assert_eq!(
        app.store().survey_answers("revisit").await.unwrap(),
        vec![("+8613800138033".to_string(), "satisfied".to_string())]
    );
    assert_eq!(
        app.store().counts().await.unwrap().cases,
        1,
        "only the complaint opened a case"
    );
    app.shutdown().await;
}

/// A Jasmin MO part with a 16-bit reference UDH (`06 08 04 ref ref total seq`): Jasmin passes
/// these through, as captured in fixtures/jasmin/.
fn jasmin_part(id: &str, from: &str, reference: u16, total: u8, seq: u8, text: &str) -> String {
    let mut b = vec![0x06, 0x08, 0x04];
    b.extend_from_slice(&reference.to_be_bytes());
    b.extend_from_slice(&[total, seq]);
    b.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    format!(
        "id={id}&from={from}&to=10000&origin-connector=smsc&coding=%08&binary={}",
        hex::encode(&b)
    )
}

#[tokio::test]
async fn concatenated_parts_out_of_order_and_repeated_make_one_message_and_one_ack() {
    for engine in Engine::BOTH {
        let app = spawn_app_on(engine, |s, _| outbox_off(s)).await;
        let parts = [
            jasmin_part("p3", "8613800138021", 0x1234, 3, 3, "三天了。"),
            jasmin_part("p1", "8613800138021", 0x1234, 3, 1, "我要投诉，"),
            jasmin_part("p1", "8613800138021", 0x1234, 3, 1, "我要投诉，"),
            jasmin_part("p2", "8613800138021", 0x1234, 3, 2, "宽带断网"),
            jasmin_part("p2", "8613800138021", 0x1234, 3, 2, "宽带断网"),
        ];
        for p in &parts {
            let (st, body) = app.jasmin(p.clone()).await;
            assert_eq!((st, body.as_str()), (200, "ACK/Jasmin"), "{p}");
        }
        let c = app.store().counts().await.unwrap();
        assert_eq!(
            (c.messages_in, c.cases, c.messages_out),
            (1, 1, 1),
            "{engine:?}"
        );
        let m = &app.store().recent_messages("in", 10).await.unwrap()[0];
        assert_eq!(m.body, "我要投诉，宽带断网三天了。");
        assert_eq!(m.category.as_deref(), Some("complaint"));
        app.shutdown().await;
    }
}

#[tokio::test]
async fn a_concatenated_message_missing_a_part_is_stored_after_the_timeout_and_acked_once() {
    let app = spawn_app(|s, _| {
        outbox_off(s);
        s.intake.concat_timeout_secs = 1;
    })
    .await;
    for p in [
        jasmin_part("q1", "8613800138022", 7, 3, 1, "网速太慢"),
        jasmin_part("q3", "8613800138022", 7, 3, 3, "请尽快处理"),
    ] {
        let (st, _) = app.jasmin(p).await;
        assert_eq!(st, 200);
    }
    assert_eq!(app.store().counts().await.unwrap().messages_in, 0);
    let store = app.store();
    common::eventually(Duration::from_secs(10), || {
        let store = store.clone();
        async move { (store.counts().await.unwrap().messages_in == 1).then_some(()) }
    })
    .await
    .expect("the parts that arrived are stored after the timeout");
    let m = &app.store().recent_messages("in", 10).await.unwrap()[0];
    assert_eq!(m.body, "网速太慢[…]请尽快处理");
    // The late part after the join opens nothing new while its id is remembered.
    let (st, _) = app
        .jasmin(jasmin_part("q1", "8613800138022", 7, 3, 1, "网速太慢"))
        .await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = app.store().counts().await.unwrap();
    assert_eq!((c.messages_in, c.messages_out), (1, 1));
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_bridge_id_from_another_sender_is_another_message() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    for from in ["8613800138031", "8613800138032"] {
        let (st, _) = app
            .jasmin(format!(
                "id=shared-1&from={from}&to=10000&coding=%00&content=hello"
            ))
            .await;
        assert_eq!(st, 200);
    }
    assert_eq!(app.store().counts().await.unwrap().messages_in, 2);
    app.shutdown().await;
}

/// Input no database can hold answers the same 4xx on both engines (it used to be a 503
/// forever on PostgreSQL), and long keys are stored (hashed), not refused by an index.
#[tokio::test]
async fn poison_input_is_a_4xx_on_both_engines_and_long_keys_are_stored() {
    for engine in Engine::BOTH {
        let app = spawn_app_on(engine, |s, _| outbox_off(s)).await;
        let form = "application/x-www-form-urlencoded";
        // NUL in an id, in a DLR field.
        let (st, body) = app
            .jasmin("id=a%00b&from=8613800138041&to=10000&coding=%00&content=hi")
            .await;
        assert_eq!(st, 400, "{engine:?}: {body}");
        assert!(body.contains("NUL"), "{body}");
        let (st, body) = app
            .post(
                "/dlr/jasmin",
                form,
                "id=x%00y&message_status=DELIVRD&level=1",
            )
            .await;
        assert_eq!(st, 400, "{engine:?}: {body}");
        let (st, _) = app
            .generic(r#"{"id":"a\u0000b","from":"13800138041","to":"10000","text":"hi"}"#)
            .await;
        assert_eq!(st, 400);
        // A 3,000-byte id: stored once, then a duplicate.
        let long = "i".repeat(3000);
        for _ in 0..2 {
            let (st, body) = app
                .jasmin(format!(
                    "id={long}&from=8613800138042&to=10000&coding=%00&content=hello"
                ))
                .await;
            assert_eq!((st, body.as_str()), (200, "ACK/Jasmin"), "{engine:?}");
        }
        // An email with NULs in To and Subject and a 3,000-byte Message-ID is stored.
        let mail = format!(
            "From: li@example.com\r\nTo: svc\0@example.com\r\nSubject: bro\0ken\r\nMessage-ID: <{}@example.com>\r\n\r\n我要投诉\r\n",
            "m".repeat(3000)
        );
        let (st, body) = app
            .post("/inbound/email", "message/rfc822", mail.into_bytes())
            .await;
        assert_eq!(st, 200, "{engine:?}: {body}");
        // A sender address no mail server would accept is refused.
        let mail = format!(
            "From: {}@example.com\r\nTo: svc@example.com\r\n\r\nhi\r\n",
            "l".repeat(3000)
        );
        let (st, body) = app
            .post("/inbound/email", "message/rfc822", mail.into_bytes())
            .await;
        assert_eq!(st, 400, "{engine:?}: {body}");
        let c = app.store().counts().await.unwrap();
        assert_eq!(c.messages_in, 2, "{engine:?}");
        app.shutdown().await;
    }
}

#[tokio::test]
async fn metrics_have_latency_histograms_outbox_depth_per_lane_and_requests_carry_an_id() {
    let app = spawn_app(|s, _| outbox_off(s)).await;
    for i in 0..2 {
        let (st, _) = app
            .get(&format!(
                "/inbound/sms/kannel?id=m-{i}&from=1380013800{i}&to=10000&text=hi"
            ))
            .await;
        assert_eq!(st, 200);
    }
    // The client's id is kept; without one the server makes one.
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "bridge-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "bridge-42");
    let r = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!made.is_empty() && made != "bridge-42", "{made}");

    let (st, m) = app.get("/metrics").await;
    assert_eq!(st, 200);
    for want in [
        "switchboard_inbound_total{outcome=\"stored\"} 2",
        "switchboard_outbox_depth{channel=\"sms\",lane=\"urgent\"} 2",
        "switchboard_outbox_depth{channel=\"sms\",lane=\"bulk\"} 0",
        "switchboard_intake_duration_seconds_count 2",
        "switchboard_http_request_duration_seconds_count{method=\"GET\",route=\"/inbound/sms/kannel\",status=\"200\"} 2",
        "switchboard_http_request_duration_seconds_bucket{le=\"0.0005\",method=\"GET\",route=\"/healthz\",status=\"200\"}",
    ] {
        assert!(m.contains(want), "missing {want}:\n{m}");
    }
    app.shutdown().await;
}

/// Fee and points queries ask the billing backend before the transaction: its answer is
/// rendered; a repeat within `cache_for` does not ask again; garbage, errors and timeouts give
/// the fallback (never "text 10001", here where the customer just texted 10001), and after
/// `breaker_failures` failures in a row the backend is left alone for `breaker_open_for`.
#[tokio::test]
async fn fee_and_points_queries_ask_the_backend_with_a_cache_a_timeout_and_a_breaker() {
    let backend = common::StubBridge::start(200, "{}").await;
    let url = backend.url.clone();
    let app = spawn_app(move |s, _| {
        outbox_off(s);
        s.self_service.backend_url = url;
        s.self_service.timeout = switchboard::sla::Span::parse("1s").unwrap();
        s.self_service.breaker_failures = 3;
        s.self_service.breaker_open_for = switchboard::sla::Span::parse("1h").unwrap();
    })
    .await;
    let ask = |id: &str, from: &str, text: &str| {
        let q = format!(
            "/inbound/sms/kannel?id={id}&from={from}&to=10001&text={}",
            enc(text)
        );
        let app = &app;
        async move {
            assert_eq!(app.get(&q).await.0, 200);
            app.last_out().await.body
        }
    };
    backend.set_default(
        200,
        r#"{"balance": "12.30", "used": 45.5, "note": {"x": 1}}"#,
    );
    let a = ask("f1", "13800138070", "查话费").await;
    assert!(a.contains("12.30") && a.contains("45.5"), "{a}");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/fees");
    assert_eq!(reqs[0].param("number").as_deref(), Some("+8613800138070"));
    // Cached for this number.
    assert!(ask("f2", "13800138070", "查话费").await.contains("12.30"));
    assert_eq!(backend.requests().len(), 1);
    assert_eq!(
        app.store().counts().await.unwrap().cases,
        0,
        "a query opens no case"
    );

    // Points: a field the template needs is missing -> fallback.
    let p = ask("p1", "13800138071", "查积分").await;
    assert!(p.contains("网上营业厅") && !p.contains("10001"), "{p}");
    assert_eq!(backend.requests().len(), 2);
    // Garbage, then a timeout: the third failure in a row opens the breaker.
    backend.set_default(200, "<html>oops</html>");
    let g = ask("f3", "13800138072", "查话费").await;
    assert!(g.contains("网上营业厅") && !g.contains("10001"), "{g}");
    backend.set_default(200, r#"{"balance": "1"}"#);
    backend.set_delay(std::time::Duration::from_secs(3));
    let t0 = std::time::Instant::now();
    let t = ask("f4", "13800138073", "查话费").await;
    assert!(t.contains("网上营业厅"), "{t}");
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(2_500),
        "the timeout held"
    );
    assert_eq!(backend.requests().len(), 4);
    // Open: not asked, fallback at once.
    backend.set_delay(std::time::Duration::ZERO);
    let o = ask("f5", "13800138074", "查话费").await;
    assert!(o.contains("网上营业厅"), "{o}");
    assert_eq!(backend.requests().len(), 4, "the breaker is open");
    app.shutdown().await;
}
