//! Outbound campaigns, time moved by hand: a 100,000-recipient marketing campaign with 10 %
//! opted out and 5 % without consent, crossing 20:00 (quiet until 08:00), paced, restarted in
//! the middle, with an opt-out reply and a complaint arriving mid-campaign; the same on
//! PostgreSQL at a smaller size; bad input refused before anything is created; the workers
//! keep quiet hours for what is already queued.

use crate::common::{self, spawn_app_with_clock};
use std::sync::Arc;
use switchboard::clock::{Clock, ManualClock};
use switchboard::config::{Secret, Settings};
use switchboard::domain::Channel;
use switchboard::sla::calendar::Window;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// 2026-12-04 11:59 UTC = 19:59 in Shanghai.
const T0: i64 = 1_796_349_600_000 + 9 * HOUR + 59 * MIN;

fn quiet(s: &mut Settings) {
    s.campaigns.commercial_quiet_hours = Window::parse("20:00-08:00").unwrap();
    s.campaigns.service_quiet_hours = Window::parse("21:00-08:00").unwrap();
    s.sms.outbound.paused = true;
}

/// `n` recipients: every 10th opted out, every 20th (of the rest) without consent.
fn csv(n: usize) -> String {
    let mut out = String::from("phone,name,consent\n");
    for i in 0..n {
        let consent = if i % 20 == 1 {
            ""
        } else {
            "2026-11-01 营业厅签约"
        };
        out.push_str(&format!("1380{:07},客户{i},{consent}\n", i));
    }
    out
}

fn opted_out(i: usize) -> bool {
    i.is_multiple_of(10)
}

async fn marketing(app: &common::TestApp, token: &str, rate: f64) -> i64 {
    let (st, v) = app
        .api(
            "POST",
            "/api/v1/campaigns",
            token,
            Some(serde_json::json!({
                "name": "5G 八折",
                "kind": "marketing",
                "channel": "sms",
                "template": "【某某通信】{{ name }}您好，5G套餐本月八折，回复TD退订",
                "rate_per_sec": rate,
            })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["campaign"]["id"].as_i64().unwrap()
}

async fn opt_out_directly(db: &str, n: usize) {
    if db.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(db).await.unwrap();
        for i in (0..n).filter(|i| opted_out(*i)) {
            sqlx::query(
                "INSERT INTO contacts (channel, address, opted_out_at) VALUES ('sms', $1, 1)",
            )
            .bind(format!("+861380{i:07}"))
            .execute(&pool)
            .await
            .unwrap();
        }
    } else {
        let pool = sqlx::PgPool::connect(db).await.unwrap();
        for i in (0..n).filter(|i| opted_out(*i)) {
            sqlx::query(
                "INSERT INTO contacts (channel, address, opted_out_at) VALUES ('sms', $1, 1)",
            )
            .bind(format!("+861380{i:07}"))
            .execute(&pool)
            .await
            .unwrap();
        }
    }
}

async fn progress(app: &common::TestApp, token: &str, id: i64) -> serde_json::Value {
    let (st, v) = app
        .api("GET", &format!("/api/v1/campaigns/{id}"), token, None)
        .await;
    assert_eq!(st, 200, "{v}");
    v["progress"].clone()
}

async fn big_campaign(n: usize, db: String) {
    let clock = Arc::new(ManualClock::new(T0));
    let db2 = db.clone();
    let (app, _) = spawn_app_with_clock(clock.clone(), move |s, _| {
        quiet(s);
        s.database.url = Secret::new(db2);
    })
    .await;
    opt_out_directly(&db, n).await;
    let token = app.token("marketing").await;
    let rate = (n / 100) as f64; // 100 s of sending
    let id = marketing(&app, &token, rate).await;
    let (st, v) = app
        .post_with(
            &format!("/api/v1/campaigns/{id}/recipients"),
            &token,
            "text/csv",
            csv(n),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["import"]["accepted"], n, "{v}");
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/campaigns/{id}/preview?n=3"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let pv = &v["preview"];
    let out = n.div_ceil(10) as i64;
    assert_eq!(pv["suppressed"]["opted_out"], out, "{pv}");
    assert!(
        pv["samples"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("【某某通信】")
    );
    assert_eq!(pv["samples"][0]["encoding"], "ucs2", "{pv}");
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/campaigns/{id}/start"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");

    let d = app.state.campaigns.clone();
    // 19:59:00 to 19:59:59: one second's pace per tick.
    let mut per_tick = Vec::new();
    for t in 0..60 {
        clock.set_ms(T0 + t * 1_000);
        let before = app.store().counts().await.unwrap().outbox;
        d.run_once().await.unwrap();
        per_tick.push(app.store().counts().await.unwrap().outbox - before);
    }
    // Pacing: what a tick takes is the pace (recipients, some suppressed), never more.
    let p = progress(&app, &token, id).await;
    let handled = n as i64 - p["pending"].as_i64().unwrap();
    let expect = 60.0 * rate;
    assert!(
        (handled as f64 - expect).abs() <= expect * 0.05,
        "60 s at {rate}/s handled {handled}"
    );
    assert!(per_tick.iter().all(|q| *q as f64 <= rate), "{per_tick:?}");

    // Mid-campaign: an opt-out reply withdraws that customer's queued message at once, and a
    // complaint's ack is claimed ahead of the whole batch.
    let victim = (1..n).find(|i| !opted_out(*i) && i % 20 != 1).unwrap();
    let number = format!("+861380{victim:07}");
    let (st, _) = app
        .get(&format!(
            "/inbound/sms/kannel?id=td-1&from={}&to=10000&text=TD",
            common::enc(&number)
        ))
        .await;
    assert_eq!(st, 200);
    let ack = app.last_out().await;
    assert!(
        ack.body.contains("退订"),
        "a Chinese confirmation for TD: {}",
        ack.body
    );
    let (st, _) = app
        .get("/inbound/sms/kannel?id=c-1&from=%2B8613999999999&to=10000&text=%E6%88%91%E8%A6%81%E6%8A%95%E8%AF%89%EF%BC%8C%E4%BF%A1%E5%8F%B7%E5%A4%AA%E5%B7%AE")
        .await;
    assert_eq!(st, 200);
    let claimed = app
        .store()
        .claim_outbox(Channel::Sms, clock.now_ms(), 1_000, 5)
        .await
        .unwrap();
    // The TD confirmation and the complaint's ack, both ahead of the queued batch.
    assert!(claimed[..2].iter().all(|c| c.kind == "ack"), "{claimed:?}");
    assert!(
        claimed[..2].iter().any(|c| c.to == "+8613999999999"),
        "{claimed:?}"
    );
    app.store()
        .release_leases(&claimed.iter().map(|c| c.message_id).collect::<Vec<_>>())
        .await
        .unwrap();

    // 20:00: quiet hours for marketing. Nothing more is queued.
    let q0 = progress(&app, &token, id).await;
    for t in 60..70 {
        clock.set_ms(T0 + t * 1_000);
        d.run_once().await.unwrap();
    }
    let q1 = progress(&app, &token, id).await;
    assert_eq!(q0["pending"], q1["pending"], "deferred in quiet hours");
    assert!(q1["pending"].as_i64().unwrap() > 0);

    // A restart in the middle changes nothing: pending stays pending, queued stays queued.
    let dir = app.shutdown().await;
    let db3 = db.clone();
    let (app, _) = spawn_app_with_clock(clock.clone(), move |s, _| {
        quiet(s);
        s.database.url = Secret::new(db3);
    })
    .await;
    drop(dir);
    let d = app.state.campaigns.clone();
    assert_eq!(progress(&app, &token, id).await["pending"], q1["pending"]);
    // 08:00 the next day: the rest goes out.
    let morning = T0 + 12 * HOUR + MIN;
    for t in 0..200 {
        clock.set_ms(morning + t * 1_000);
        d.run_once().await.unwrap();
    }
    let p = progress(&app, &token, id).await;
    assert_eq!(p["pending"], 0, "{p}");
    let (_, v) = app
        .api("GET", &format!("/api/v1/campaigns/{id}"), &token, None)
        .await;
    assert_eq!(v["campaign"]["status"], "done", "{v}");
    let no_consent = (0..n).filter(|i| !opted_out(*i) && i % 20 == 1).count() as i64;
    assert_eq!(
        p["suppressed"]["opted_out"],
        out + 1,
        "the TD reply too: {p}"
    );
    assert_eq!(p["suppressed"]["no_consent"], no_consent, "{p}");
    let queued = p["queued"].as_i64().unwrap();
    assert_eq!(queued, n as i64 - out - 1 - no_consent, "{p}");
    // Exactly one message each, to exactly the right people.
    let msgs = app
        .store()
        .recent_messages("out", (n * 2) as i64)
        .await
        .unwrap();
    let mut to: Vec<&str> = msgs
        .iter()
        .filter(|m| m.kind.map(|k| k.as_str()) == Some("marketing") && m.status != "suppressed")
        .map(|m| m.to_addr.as_str())
        .collect();
    assert_eq!(to.len() as i64, queued);
    to.sort_unstable();
    to.dedup();
    assert_eq!(to.len() as i64, queued, "nobody twice");
    assert!(
        !to.contains(&number.as_str()),
        "the opted-out customer got nothing"
    );
    assert!(!to.contains(&"+8613800000000"), "opted out before");
    assert!(!to.contains(&"+8613800000001"), "no consent");
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_a_100000_recipient_campaign_keeps_consent_opt_outs_pace_and_quiet_hours() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/c.db", dir.path().display());
    big_campaign(100_000, db).await;
}

#[tokio::test]
async fn postgres_a_campaign_keeps_consent_opt_outs_pace_and_quiet_hours() {
    let url = common::fresh_pg_database().await;
    big_campaign(4_000, url.clone()).await;
    common::drop_pg_database(&url).await;
}

/// Bad input is refused with the reason and nothing is half created.
#[tokio::test]
async fn bad_campaigns_and_files_are_refused_with_the_reason() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, _) = spawn_app_with_clock(clock.clone(), |_, _| {}).await;
    let token = app.token("marketing").await;
    let base = serde_json::json!({
        "name": "x", "kind": "notice", "channel": "sms",
        "template": "您的宽带将于{{ date }}检修", "rate_per_sec": 10.0,
    });
    for (patch, why) in [
        (serde_json::json!({"kind": "spam"}), "kind"),
        (serde_json::json!({"rate_per_sec": 0.0}), "rate_per_sec"),
        (serde_json::json!({"channel": "fax"}), "channel"),
        (serde_json::json!({"template": "{{ date"}), "template"),
        (
            serde_json::json!({"start_at": "2020-01-01T00:00:00Z"}),
            "past",
        ),
        (
            serde_json::json!({"valid_until": "2026-12-01 08:00"}),
            "valid_until",
        ),
        (serde_json::json!({"kind": "marketing"}), "signature"),
        (
            serde_json::json!({"kind": "marketing", "template": "【某某通信】五折"}),
            "footer",
        ),
        (
            serde_json::json!({"kind": "marketing", "urgent": true, "template": "【某某通信】五折回复TD退订"}),
            "urgent",
        ),
        (serde_json::json!({"cron": "every monday"}), "cron"),
        (
            serde_json::json!({"template": "@no_such_template"}),
            "no stored template",
        ),
    ] {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = app
            .api("POST", "/api/v1/campaigns", &token, Some(body))
            .await;
        assert_eq!(st, 422, "{patch}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(why), "{patch}: {m}");
    }
    assert!(
        app.store().campaigns(10).await.unwrap().is_empty(),
        "nothing created"
    );
    let agent = app.token("agent").await;
    assert_eq!(
        app.api("POST", "/api/v1/campaigns", &agent, Some(base.clone()))
            .await
            .0,
        403
    );

    let (st, v) = app
        .api("POST", "/api/v1/campaigns", &token, Some(base))
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["campaign"]["id"].as_i64().unwrap();
    let path = format!("/api/v1/campaigns/{id}/recipients");
    // The template needs `date`: refused before any row, naming it.
    let (st, v) = app
        .post_with(&path, &token, "text/csv", "phone,name\n13800138000,张三\n")
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("date"),
        "{v}"
    );
    // Neither UTF-8 nor GBK: refused naming the line.
    let (st, v) = app
        .post_with(
            &path,
            &token,
            "text/csv",
            b"phone,date\n13800138000,\xff\xfe\xfd\n".to_vec(),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 2"),
        "{v}"
    );
    assert_eq!(progress(&app, &token, id).await["recipients"], 0);
    // All or nothing: 6,000 good rows (more than one stored batch), then a line in neither
    // encoding: refused naming the line, and none of the file's rows stay.
    let mut big = b"phone,date\n".to_vec();
    for i in 0..6_000 {
        big.extend_from_slice(format!("1380000{i:04},12\u{6708}5\u{65e5}\n").as_bytes());
    }
    big.extend_from_slice(b"13900000000,\xff\xfe\xfd\n");
    let (st, v) = app.post_with(&path, &token, "text/csv", big).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 6002"),
        "{v}"
    );
    assert_eq!(progress(&app, &token, id).await["recipients"], 0);
    // One import at a time, and no start while one runs: another instance holds the import.
    hold_import_elsewhere(&app, id).await;
    let (st, v) = app
        .post_with(
            &path,
            &token,
            "text/csv",
            "phone,date\n13800138000,12月5日\n",
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("import"),
        "{v}"
    );
    app.store()
        .end_import(switchboard::domain::CampaignId(id))
        .await
        .unwrap();
    // Start without recipients: 409. GBK file with a bad row: imported, the row reported.
    assert_eq!(
        app.api(
            "POST",
            &format!("/api/v1/campaigns/{id}/start"),
            &token,
            None
        )
        .await
        .0,
        409
    );
    let (gbk, _, _) = encoding_rs::GBK
        .encode("phone,date\n13800138000,12月5日\nabc,12月5日\n13800138000,12月6日\n");
    let (st, v) = app
        .post_with(&path, &token, "text/csv", gbk.into_owned())
        .await;
    assert_eq!(st, 200, "{v}");
    let r = &v["import"];
    assert_eq!(
        (
            r["accepted"].as_i64(),
            r["invalid"].as_i64(),
            r["duplicates"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(r["errors"][0][0], 3, "{v}");
    assert_eq!(r["encoding"], "gb18030");
    // No start while an import runs.
    hold_import_elsewhere(&app, id).await;
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/campaigns/{id}/start"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("import"),
        "{v}"
    );
    app.store()
        .end_import(switchboard::domain::CampaignId(id))
        .await
        .unwrap();
    // Lifecycle: start, pause, resume, cancel; resume of a running one is 409.
    for (a, st) in [
        ("start", 200),
        ("resume", 409),
        ("pause", 200),
        ("resume", 200),
        ("cancel", 200),
        ("start", 409),
    ] {
        assert_eq!(
            app.api("POST", &format!("/api/v1/campaigns/{id}/{a}"), &token, None)
                .await
                .0,
            st,
            "{a}"
        );
    }
    app.shutdown().await;
}

/// What is already queued keeps quiet hours at the worker: a marketing message claimed at
/// 20:30 goes back to the queue until 08:00, while a complaint's ack goes at once.
#[tokio::test]
async fn the_worker_holds_bulk_messages_in_quiet_hours_and_sends_acks() {
    let bridge = common::StubBridge::start(200, "0: Accepted for delivery").await;
    let url = format!("{}/cgi-bin/sendsms", bridge.url);
    let clock = Arc::new(ManualClock::new(T0 + 31 * MIN)); // 20:30
    let (app, _) = spawn_app_with_clock(clock.clone(), move |s, _| {
        s.campaigns.commercial_quiet_hours = Window::parse("20:00-08:00").unwrap();
        s.sms.outbound.url = url;
    })
    .await;
    let d = switchboard::store::OutboundDraft {
        channel: Channel::Sms,
        driver: "kannel".into(),
        from: "10000".into(),
        to: "+8613800000099".parse().unwrap(),
        subject: None,
        text: "【某某通信】八折，回复TD退订".into(),
        html: None,
        headers: None,
        kind: switchboard::domain::MessageKind::Marketing,
        encoding: "ucs2",
        segments: 1,
        not_before: None,
        render: None,
    };
    let ids = app
        .store()
        .queue_outbound_bulk(&[d], clock.now_ms())
        .await
        .unwrap();
    app.state.intake.outbox_notify.notify_one();
    let (st, _) = app
        .get("/inbound/sms/kannel?id=q-1&from=%2B8613999999998&to=10000&text=%E6%8A%95%E8%AF%89")
        .await;
    assert_eq!(st, 200);
    let got = bridge.wait_for(1, std::time::Duration::from_secs(5)).await;
    assert_eq!(
        got[0]
            .param("to")
            .map(|t| t.trim_start_matches('+').to_string())
            .as_deref(),
        Some("8613999999998"),
        "the ack"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(bridge.requests().len(), 1, "the marketing message waits");
    let m = app.store().message(ids[0]).await.unwrap().unwrap();
    assert_eq!(m.status, "queued");
    assert_eq!(
        app.store().next_outbox_due(Channel::Sms).await.unwrap(),
        Some(T0 + 12 * HOUR + MIN),
        "deferred to 08:00"
    );
    app.shutdown().await;
}

async fn create(app: &common::TestApp, token: &str, body: serde_json::Value) -> i64 {
    let (st, v) = app
        .api("POST", "/api/v1/campaigns", token, Some(body))
        .await;
    assert_eq!(st, 201, "{v}");
    v["campaign"]["id"].as_i64().unwrap()
}

/// Another instance's import into campaign `id` is running (its hold is taken on real time,
/// as `manage::import` takes it).
async fn hold_import_elsewhere(app: &common::TestApp, id: i64) {
    let now = switchboard::clock::Clock::now_ms(&switchboard::clock::SystemClock);
    assert!(
        app.store()
            .hold_import(
                switchboard::domain::CampaignId(id),
                now + 60_000,
                now,
                false
            )
            .await
            .unwrap()
    );
}

async fn load_and_start(app: &common::TestApp, token: &str, id: i64, csv: String) {
    let (st, v) = app
        .post_with(
            &format!("/api/v1/campaigns/{id}/recipients"),
            token,
            "text/csv",
            csv,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/campaigns/{id}/start"),
            token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

/// A survey campaign's answers are read by the shared parser, stored per recipient and
/// counted; they open no case. A campaign whose sends fail too often pauses itself.
#[tokio::test]
async fn survey_answers_are_summarised_and_failing_campaigns_pause_themselves() {
    let clock = Arc::new(ManualClock::new(T0 - 8 * HOUR)); // 11:59
    let (app, _) = spawn_app_with_clock(clock.clone(), |s, _| {
        s.sms.outbound.paused = true;
    })
    .await;
    let token = app.token("marketing").await;
    let id = create(
        &app,
        &token,
        serde_json::json!({
            "name": "网络满意度", "kind": "survey", "channel": "sms", "rate_per_sec": 100.0,
            "template": "{{ name }}您好，您对本月网络质量满意吗？回复1-5分（5分最满意）",
        }),
    )
    .await;
    load_and_start(
        &app,
        &token,
        id,
        "phone,name\n13800000101,甲\n13800000102,乙\n13800000103,丙\n".into(),
    )
    .await;
    assert_eq!(app.state.campaigns.run_once().await.unwrap(), 3);
    for (n, text) in [("13800000101", "5"), ("13800000102", "不满意")] {
        let (st, _) = app
            .get(&format!(
                "/inbound/sms/kannel?id=s{n}&from={n}&to=10000&text={}",
                common::enc(text)
            ))
            .await;
        assert_eq!(st, 200);
    }
    let (st, v) = app
        .api(
            "GET",
            &format!("/api/v1/campaigns/{id}/answers"),
            &token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["answered"], 2, "{v}");
    assert_eq!(v["counts"]["5"], 1, "{v}");
    assert_eq!(v["counts"]["dissatisfied"], 1, "{v}");
    assert_eq!(progress(&app, &token, id).await["answered"], 2);
    assert_eq!(
        app.store().counts().await.unwrap().cases,
        0,
        "answers open no case"
    );

    // 100 notices; 30 of the sends fail: the campaign pauses itself on its next tick.
    let id = create(
        &app,
        &token,
        serde_json::json!({
            "name": "检修通知", "kind": "notice", "channel": "sms", "rate_per_sec": 1000.0,
            "template": "您好，本小区宽带将于今晚检修。",
        }),
    )
    .await;
    let mut csv = String::from("phone\n");
    for i in 0..200 {
        csv.push_str(&format!("1390000{i:04}\n"));
    }
    load_and_start(&app, &token, id, csv).await;
    clock.advance_ms(1_000);
    assert_eq!(app.state.campaigns.run_once().await.unwrap(), 200);
    let store = app.store();
    let sent: Vec<_> = store
        .recent_messages("out", 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind.map(|k| k.as_str()) == Some("notice"))
        .collect();
    for (i, m) in sent.iter().take(100).enumerate() {
        if i < 30 {
            store
                .fail_send(m.id, "bridge refused", clock.now_ms())
                .await
                .unwrap();
        } else {
            store
                .complete_send(m.id, None, clock.now_ms())
                .await
                .unwrap();
        }
    }
    // The failure rate is looked at every 5 s.
    clock.advance_ms(5_000);
    app.state.campaigns.run_once().await.unwrap();
    let (_, v) = app
        .api("GET", &format!("/api/v1/campaigns/{id}"), &token, None)
        .await;
    assert_eq!(v["campaign"]["status"], "paused", "{v}");
    assert!(
        v["campaign"]["note"]
            .as_str()
            .unwrap()
            .contains("auto-paused"),
        "{v}"
    );
    assert_eq!(v["progress"]["failed"], 30, "{v}");
    app.shutdown().await;
}

/// A recurring campaign (`cron` in time.zone) runs each occurrence once, as a child campaign
/// with a copy of the recipients; the parent waits for the next one.
#[tokio::test]
async fn a_monthly_reminder_runs_once_per_occurrence() {
    use chrono::TimeZone;
    let at = |y, m, d, h| {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_millis()
    };
    let clock = Arc::new(ManualClock::new(T0 - 8 * HOUR));
    let (app, _) = spawn_app_with_clock(clock.clone(), |s, _| {
        s.sms.outbound.paused = true;
    })
    .await;
    let token = app.token("marketing").await;
    let id = create(
        &app,
        &token,
        serde_json::json!({
            "name": "月度缴费提醒", "kind": "payment_reminder", "channel": "sms",
            "rate_per_sec": 100.0, "cron": "0 9 1 * *",
            "template": "{{ name }}您好，本月话费账单已出，请于20日前缴纳。",
        }),
    )
    .await;
    load_and_start(
        &app,
        &token,
        id,
        "phone,name\n13800000201,甲\n13800000202,乙\n".into(),
    )
    .await;
    let (_, v) = app
        .api("GET", &format!("/api/v1/campaigns/{id}"), &token, None)
        .await;
    assert_eq!(v["campaign"]["status"], "recurring", "{v}");
    let jan = at(2027, 1, 1, 9);
    assert_eq!(v["campaign"]["next_run_at"], jan, "{v}");
    clock.set_ms(jan - 1);
    assert_eq!(app.state.campaigns.run_once().await.unwrap(), 0);
    clock.set_ms(jan);
    assert_eq!(app.state.campaigns.run_once().await.unwrap(), 2);
    clock.advance_ms(1_000);
    assert_eq!(
        app.state.campaigns.run_once().await.unwrap(),
        0,
        "once per occurrence"
    );
    let all = app.store().campaigns(10).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|c| c.parent_id == Some(switchboard::domain::CampaignId(id)))
            .count(),
        1
    );
    let parent = all
        .iter()
        .find(|c| c.id == switchboard::domain::CampaignId(id))
        .unwrap();
    let feb = at(2027, 2, 1, 9);
    assert_eq!(parent.next_run_at, Some(feb));
    clock.set_ms(feb);
    assert_eq!(
        app.state.campaigns.run_once().await.unwrap(),
        2,
        "February's run"
    );
    app.shutdown().await;
}

/// A campaign whose stored kind or channel this version does not know (a newer version wrote
/// it, or a hand) is left alone, running or recurring: read as its fallback it would go out
/// under rules nobody chose for it, and its recipients could be suppressed for good. Its
/// recipients stay pending; the others go.
#[tokio::test]
async fn a_campaign_of_an_unknown_kind_or_channel_is_left_alone() {
    let clock = Arc::new(ManualClock::new(T0 - 8 * HOUR));
    let (app, _) = spawn_app_with_clock(clock.clone(), |s, _| {
        s.sms.outbound.paused = true;
    })
    .await;
    let token = app.token("marketing").await;
    let mut ids = Vec::new();
    for (i, cron) in [None, None, Some("0 9 1 * *"), None]
        .into_iter()
        .enumerate()
    {
        let mut body = serde_json::json!({
            "name": format!("notice {i}"), "kind": "notice", "channel": "sms",
            "rate_per_sec": 100.0, "template": "{{ name }}您好，明晚22点至24点网络维护。",
        });
        if let Some(c) = cron {
            body["cron"] = c.into();
        }
        let id = create(&app, &token, body).await;
        load_and_start(
            &app,
            &token,
            id,
            format!("phone,name\n1380000{i}301,甲\n1380000{i}302,乙\n"),
        )
        .await;
        ids.push(id);
    }
    app.exec(&format!(
        "UPDATE campaigns SET kind = 'sweepstakes' WHERE id = {}",
        ids[0]
    ))
    .await;
    app.exec(&format!(
        "UPDATE campaigns SET channel = 'fax' WHERE id = {}",
        ids[1]
    ))
    .await;
    app.exec(&format!(
        "UPDATE campaigns SET kind = 'sweepstakes' WHERE id = {}",
        ids[2]
    ))
    .await;
    // The recurring one is due too: its first occurrence comes, and no run is spawned.
    let (_, v) = app
        .api(
            "GET",
            &format!("/api/v1/campaigns/{}", ids[2]),
            &token,
            None,
        )
        .await;
    clock.set_ms(v["campaign"]["next_run_at"].as_i64().unwrap());
    assert_eq!(
        app.state.campaigns.run_once().await.unwrap(),
        2,
        "only the known campaign's two recipients are dispatched"
    );
    for id in &ids[..3] {
        let v = progress(&app, &token, *id).await;
        assert_eq!(v["pending"], 2, "campaign {id}: {v}");
        assert_eq!(v["suppressed"], serde_json::json!({}), "campaign {id}: {v}");
    }
    let v = progress(&app, &token, ids[3]).await;
    assert_eq!((&v["pending"], &v["queued"]), (&0.into(), &2.into()), "{v}");
    let runs = app.store().campaigns(20).await.unwrap();
    assert!(runs.iter().all(|c| c.parent_id.is_none()), "no run spawned");
    app.shutdown().await;
}

/// The same marketing text reaches a recipient at most once within `repeat_after`, even from
/// another campaign on another day; a different text the next day goes.
#[tokio::test]
async fn the_same_marketing_text_goes_to_a_recipient_once() {
    let clock = Arc::new(ManualClock::new(T0 - 8 * HOUR));
    let (app, _) = spawn_app_with_clock(clock.clone(), |s, _| {
        s.sms.outbound.paused = true;
    })
    .await;
    let token = app.token("marketing").await;
    let body = |t: &str| {
        serde_json::json!({
            "name": "促销", "kind": "marketing", "channel": "sms", "rate_per_sec": 100.0,
            "template": t,
        })
    };
    let csv = "phone,consent\n13800000301,web\n";
    let same = "【某某通信】5G套餐八折，回复TD退订";
    for (day, text, queued) in [
        (0, same, 1),
        (1, same, 0),
        (2, "【某某通信】宽带提速，回复TD退订", 1),
    ] {
        clock.set_ms(T0 - 8 * HOUR + day * 25 * HOUR);
        let id = create(&app, &token, body(text)).await;
        load_and_start(&app, &token, id, csv.into()).await;
        assert_eq!(
            app.state.campaigns.run_once().await.unwrap(),
            queued,
            "day {day}"
        );
        if queued == 0 {
            let p = progress(&app, &token, id).await;
            assert_eq!(p["suppressed"]["same_content"], 1, "{p}");
        }
    }
    app.shutdown().await;
}

/// From the review: a second file adds its rows (it does not collide with the first's line
/// numbers); a consent column saying no is no consent; an SMS too long for the bridge is
/// suppressed, never cut (it would lose the opt-out footer); an opt-out committed after the
/// dispatcher looked still wins inside the queueing transaction.
#[tokio::test]
async fn second_imports_consent_words_long_texts_and_late_opt_outs() {
    let clock = Arc::new(ManualClock::new(T0 - 8 * HOUR));
    let (app, _) = spawn_app_with_clock(clock.clone(), |s, _| {
        s.sms.outbound.paused = true;
        s.sms.outbound.max_parts = 1;
    })
    .await;
    let token = app.token("marketing").await;
    let id = create(
        &app,
        &token,
        serde_json::json!({
            "name": "促销", "kind": "marketing", "channel": "sms", "rate_per_sec": 100.0,
            "template": "【某某通信】{{ name }}您好，5G套餐八折，回复TD退订",
        }),
    )
    .await;
    let path = format!("/api/v1/campaigns/{id}/recipients");
    let (_, v) = app
        .post_with(
            &path,
            &token,
            "text/csv",
            "phone,name,consent\n13800000401,甲,web\n13800000402,乙,否\n",
        )
        .await;
    assert_eq!(v["import"]["accepted"], 2, "{v}");
    let long = "很".repeat(80);
    let (_, v) = app
        .post_with(
            &path,
            &token,
            "text/csv",
            format!("phone,name,consent\n13800000403,丙,web\n13800000404,{long},web\n13800000401,甲,web\n"),
        )
        .await;
    assert_eq!(
        (
            v["import"]["accepted"].as_i64(),
            v["import"]["duplicates"].as_i64()
        ),
        (Some(2), Some(1)),
        "{v}"
    );
    let p = progress(&app, &token, id).await;
    assert_eq!(p["recipients"], 4, "{p}");
    assert_eq!(
        app.api(
            "POST",
            &format!("/api/v1/campaigns/{id}/start"),
            &token,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(app.state.campaigns.run_once().await.unwrap(), 2);
    let p = progress(&app, &token, id).await;
    assert_eq!(p["suppressed"]["no_consent"], 1, "{p}");
    assert_eq!(p["suppressed"]["too_long"], 1, "{p}");
    // A draft decided before an opt-out is refused by the queueing transaction.
    let (st, _) = app
        .get("/inbound/sms/kannel?id=late-td&from=%2B8613800000405&to=10000&text=TD")
        .await;
    assert_eq!(st, 200);
    let id2 = create(
        &app,
        &token,
        serde_json::json!({
            "name": "促销二", "kind": "marketing", "channel": "sms", "rate_per_sec": 100.0,
            "template": "【某某通信】宽带提速，回复TD退订",
        }),
    )
    .await;
    app.post_with(
        &format!("/api/v1/campaigns/{id2}/recipients"),
        &token,
        "text/csv",
        "phone,consent\n13800000405,web\n",
    )
    .await;
    app.api(
        "POST",
        &format!("/api/v1/campaigns/{id2}/start"),
        &token,
        None,
    )
    .await;
    let draft = app.state.campaigns.draft(
        Channel::Sms,
        "+8613800000405",
        switchboard::domain::MessageKind::Marketing,
        "【某某通信】宽带提速，回复TD退订".into(),
        None,
    );
    let queued = app
        .store()
        .dispatch_recipients(switchboard::campaigns::apply::Dispatch {
            campaign_id: switchboard::domain::CampaignId(id2),
            items: vec![(2, Ok(draft.unwrap()))],
            not_after: None,
            survey: None,
            now_ms: clock.now_ms(),
        })
        .await
        .unwrap();
    assert_eq!(queued, 0, "the opt-out wins");
    let p = progress(&app, &token, id2).await;
    assert_eq!(p["suppressed"]["opted_out"], 1, "{p}");
    app.shutdown().await;
}

/// A campaign can take a stored template by name, in Chinese or English.
#[tokio::test]
async fn a_campaign_takes_a_stored_template_by_name() {
    let clock = Arc::new(ManualClock::new(T0 - 8 * HOUR));
    let (app, _) = spawn_app_with_clock(clock.clone(), |s, _| {
        s.sms.outbound.paused = true;
    })
    .await;
    let token = app.token("marketing").await;
    for (lang, word) in [("zh-CN", "元"), ("en", "yuan")] {
        let (st, v) = app
            .api(
                "POST",
                "/api/v1/campaigns",
                &token,
                Some(serde_json::json!({
                    "name": "账单提醒", "kind": "payment_reminder", "channel": "sms",
                    "rate_per_sec": 10.0, "template": "@payment_reminder", "lang": lang,
                })),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let t = v["campaign"]["template"].as_str().unwrap();
        assert!(t.contains("{{ amount }}") && t.contains(word), "{t}");
    }
    app.shutdown().await;
}

/// Two instances on one PostgreSQL database: a campaign is paced once for the deployment
/// (one dispatcher holds its lease at a time), everyone gets exactly one message, and when
/// the instance holding it stops, the other takes the campaign over after the lease.
#[tokio::test]
async fn two_instances_pace_a_campaign_once_and_send_each_message_once() {
    let url = common::fresh_pg_database().await;
    let clock = Arc::new(ManualClock::new(T0 - 2 * HOUR));
    let (u1, u2) = (url.clone(), url.clone());
    let (a, _) = spawn_app_with_clock(clock.clone(), move |s, _| {
        s.database.url = Secret::new(u1);
        s.sms.outbound.paused = true;
    })
    .await;
    let (b, _) = spawn_app_with_clock(clock.clone(), move |s, _| {
        s.database.url = Secret::new(u2);
        s.sms.outbound.paused = true;
    })
    .await;
    let token = a.token("marketing").await;
    let n = 1_000;
    let rate = 50.0;
    let id = marketing(&a, &token, rate).await;
    load_and_start(&a, &token, id, csv(n)).await;
    let (da, db) = (a.state.campaigns.clone(), b.state.campaigns.clone());
    let mut t = clock.now_ms();
    let mut per_tick = Vec::new();
    for _ in 0..10 {
        t += 1_000;
        clock.set_ms(t);
        let (qa, qb) = tokio::join!(da.run_once(), db.run_once());
        per_tick.push((qa.unwrap(), qb.unwrap()));
    }
    // One second's pace a tick for the deployment (never one per instance), all by one.
    assert!(
        per_tick.iter().all(|(x, y)| (*x + *y) as f64 <= rate),
        "{per_tick:?}"
    );
    assert!(
        per_tick.iter().all(|(x, _)| *x == 0) || per_tick.iter().all(|(_, y)| *y == 0),
        "one instance holds the campaign: {per_tick:?}"
    );
    // The holder stops dispatching (say it died): the other takes over after the lease.
    let (holder, other) = if per_tick.iter().any(|(x, _)| *x > 0) {
        (&da, &db)
    } else {
        (&db, &da)
    };
    let _ = holder;
    t += switchboard::campaigns::dispatch::LEASE_MS / 2;
    clock.set_ms(t);
    assert_eq!(other.run_once().await.unwrap(), 0, "the lease still holds");
    t += switchboard::campaigns::dispatch::LEASE_MS;
    clock.set_ms(t);
    assert!(other.run_once().await.unwrap() > 0, "taken over");
    // Both run to the end: exactly one message to each admitted recipient.
    for _ in 0..200 {
        t += 1_000;
        clock.set_ms(t);
        let (x, y) = tokio::join!(da.run_once(), db.run_once());
        x.unwrap();
        y.unwrap();
    }
    let p = progress(&a, &token, id).await;
    assert_eq!(p["pending"], 0, "{p}");
    let msgs = a.store().recent_messages("out", 5_000).await.unwrap();
    let mut to: Vec<&str> = msgs
        .iter()
        .filter(|m| m.kind.map(|k| k.as_str()) == Some("marketing"))
        .map(|m| m.to_addr.as_str())
        .collect();
    let sent = to.len();
    to.sort_unstable();
    to.dedup();
    assert_eq!(to.len(), sent, "nobody twice");
    assert_eq!(sent as i64, p["queued"].as_i64().unwrap(), "{p}");
    a.shutdown().await;
    b.shutdown().await;
    common::drop_pg_database(&url).await;
}
