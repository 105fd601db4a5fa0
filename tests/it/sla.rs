//! Cases on the clock, time moved by hand (`ManualClock`), on SQLite and PostgreSQL: a
//! complaint crosses the answer warning, the missed answer (one tier up at once), the ladder
//! and the resolve deadline with exactly one notice each, to the right tier and city; a restart
//! between steps changes nothing; an answered case skips the answer steps; a resolved case
//! stops its clock; a case upgraded from inquiry to complaint takes the complaint's deadlines;
//! two instances on one PostgreSQL take each step once; of many open cases only the due ones
//! fire.

use crate::common::{self, spawn_app_with_clock};
use std::sync::Arc;
use switchboard::clock::{Clock, ManualClock};
use switchboard::config::{Secret, Settings};
use switchboard::domain::CaseId;
use switchboard::sla::Contact;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// 2026-12-04 02:00 UTC (10:00 in Shanghai).
const T0: i64 = 1_796_349_600_000;

fn contact(tier: i64, city: Option<&str>, email: &[&str], sms: &[&str]) -> Contact {
    Contact {
        tier: switchboard::domain::Tier::new(tier).expect("a tier"),
        city: city.map(str::to_string),
        email: email
            .iter()
            .map(|s| switchboard::domain::EmailAddress::parse(s).unwrap())
            .collect(),
        sms: sms
            .iter()
            .map(|s| switchboard::domain::PhoneNumber::parse(s, "86").unwrap())
            .collect(),
    }
}

/// Tier 1 and 3 and 4 by email; tier 2 per city (Shenzhen by SMS, the rest by email).
fn ladder(s: &mut Settings) {
    s.sla.contacts = vec![
        contact(1, None, &["window@ops.test"], &[]),
        contact(2, Some("shenzhen"), &[], &["+8613900000002"]),
        contact(2, None, &["branch@ops.test"], &[]),
        contact(3, None, &["province@ops.test"], &[]),
        contact(4, None, &["national@ops.test"], &[]),
    ];
    s.sla.city_prefixes = [("+86755".to_string(), "shenzhen".to_string())].into();
    // The test runs the rounds itself, after moving the clock.
    s.sla.scheduler = false;
    s.email.from = "service@gw.test".into();
    // Notices stay in the outbox where the test reads them.
    s.sms.outbound.paused = true;
    s.email.smtp.enabled = true;
    s.email.smtp.port = 9;
    s.email.smtp.backoff_base_ms = 3_600_000;
}

async fn mo(app: &common::TestApp, id: &str, from: &str, text: &str) -> CaseId {
    let (st, body) = app.kannel_mo(id, from, text).await;
    assert_eq!(st, 200, "{body}");
    app.store().recent_messages("in", 1).await.unwrap()[0]
        .case_id
        .expect("a case")
}

/// (to, text) of every SLA notice queued so far, oldest first.
async fn notices(app: &common::TestApp) -> Vec<(String, String)> {
    let mut v: Vec<_> = app
        .store()
        .recent_messages("out", 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind.map(|k| k.as_str()) == Some("sla_notice"))
        .map(|m| (m.to_addr, m.body))
        .collect();
    v.reverse();
    v
}

async fn kinds(app: &common::TestApp, case_id: CaseId) -> Vec<String> {
    app.store()
        .case_events(case_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .filter(|k| k.starts_with("sla") || k == "escalated")
        .collect()
}

async fn complaint_crosses_every_step_once_with_a_restart_between(url: Option<String>) {
    let clock = Arc::new(ManualClock::new(T0));
    let dir = tempfile::tempdir().unwrap();
    let db = url.unwrap_or_else(|| format!("sqlite://{}/sla.db", dir.path().display()));
    let db2 = db.clone();
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.database.url = Secret::new(db2);
    })
    .await;
    let case = mo(
        &app,
        "c-1",
        "+8675512345678",
        "我要投诉，宽带三天没修好，太差了",
    )
    .await;
    let c = app.store().case(case).await.unwrap().unwrap();
    assert_eq!((c.category.as_str(), c.tier.get()), ("complaint", 1));
    assert_eq!(c.ack_due_at, T0 + 3 * HOUR);

    let step = |at: i64| {
        clock.set_ms(T0 + at);
        sla.run_due()
    };
    assert_eq!(step(2 * HOUR + 29 * MIN).await.unwrap().fired, 0);
    let r = step(2 * HOUR + 30 * MIN).await.unwrap();
    assert_eq!((r.fired, r.notices), (1, 1), "answer warning");
    assert_eq!(step(2 * HOUR + 31 * MIN).await.unwrap().fired, 0, "once");
    let n = notices(&app).await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].0, "window@ops.test");
    assert!(
        n[0].1.contains("SB") && n[0].1.contains("首次答复时限"),
        "{}",
        n[0].1
    );

    // Missed answer: tier 2 at once, told to Shenzhen's branch by SMS (the customer's city).
    let r = step(3 * HOUR).await.unwrap();
    assert_eq!((r.fired, r.notices), (1, 1));
    assert_eq!(app.store().case(case).await.unwrap().unwrap().tier, 2);
    assert_eq!(notices(&app).await[1].0, "+8613900000002");
    // The ladder's tier 2 at 24 h finds it there already: silent.
    let r = step(24 * HOUR).await.unwrap();
    assert_eq!((r.fired, r.notices), (1, 0));
    let r = step(48 * HOUR).await.unwrap();
    assert_eq!((r.fired, r.notices), (1, 1));
    assert_eq!(app.store().case(case).await.unwrap().unwrap().tier, 3);
    assert_eq!(notices(&app).await[2].0, "province@ops.test");

    // A restart between steps: the clock is in the database.
    let keep = app.shutdown().await;
    let db3 = db.clone();
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.database.url = Secret::new(db3);
    })
    .await;
    let step = |at: i64| {
        clock.set_ms(T0 + at);
        sla.run_due()
    };
    assert_eq!(
        step(48 * HOUR + MIN).await.unwrap().fired,
        0,
        "nothing again"
    );
    assert_eq!(step(66 * HOUR).await.unwrap().notices, 1);
    assert_eq!(app.store().case(case).await.unwrap().unwrap().tier, 4);
    assert_eq!(step(71 * HOUR + 30 * MIN).await.unwrap().notices, 1);
    assert_eq!(step(72 * HOUR).await.unwrap().notices, 1);
    assert_eq!(
        step(200 * HOUR).await.unwrap().fired,
        0,
        "the clock has ended"
    );
    let to: Vec<String> = notices(&app).await.into_iter().map(|n| n.0).collect();
    assert_eq!(
        to,
        [
            "window@ops.test",
            "+8613900000002",
            "province@ops.test",
            "national@ops.test",
            "national@ops.test",
            "national@ops.test"
        ]
    );
    assert_eq!(
        kinds(&app, case).await,
        [
            "sla_warning",
            "sla_breach",
            "sla_skipped",
            "escalated",
            "escalated",
            "sla_warning",
            "sla_breach"
        ]
    );
    // The SLA report sees the missed answer, the two breaches and where the case ended.
    let agent = app.token("agent").await;
    let r = app
        .client
        .get(format!(
            "{}/api/v1/reports/sla?from=2026-12-01&to=2026-12-31",
            app.base
        ))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let line = &v["lines"][0];
    assert_eq!(line["category"], "complaint", "{v}");
    assert_eq!(line["tier"], 4);
    assert_eq!(line["cases"], 1);
    assert_eq!(line["breaches"], 2);
    assert_eq!(line["answered_in_time_pct"], 0.0);
    let csv = app
        .client
        .get(format!("{}/api/v1/reports/sla", app.base))
        .bearer_auth(&agent)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("category,tier,cases,"), "{csv}");
    assert!(csv.contains("\ncomplaint,4,1,0.0,"), "{csv}");
    let r = app
        .client
        .get(format!("{}/api/v1/reports/sla?from=last+week", app.base))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("from: \"last week\""), "{m}");
    app.shutdown().await;
    drop(keep);
}

#[tokio::test]
async fn sqlite_complaint_crosses_every_step_once_with_a_restart_between() {
    complaint_crosses_every_step_once_with_a_restart_between(None).await;
}

#[tokio::test]
async fn postgres_complaint_crosses_every_step_once_with_a_restart_between() {
    let url = common::fresh_pg_database().await;
    complaint_crosses_every_step_once_with_a_restart_between(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

#[tokio::test]
async fn an_answered_case_skips_the_answer_steps_and_a_resolved_case_stops_its_clock() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), |s, _| ladder(s)).await;
    let answered = mo(&app, "a-1", "+8613800000001", "投诉：宽带断网一整天").await;
    let resolved = mo(&app, "a-2", "+8613800000002", "投诉：话费乱扣").await;
    app.state
        .intake
        .reply(answered, "您好，我们已安排师傅上门。", "agent-1")
        .await
        .unwrap();
    app.store()
        .resolve_case(
            resolved,
            &switchboard::store::Resolve {
                code: None,
                detail: switchboard::cases::resolve_detail("agent-1", None, None),
                visit_due: None,
                now_ms: clock.now_ms(),
            },
        )
        .await
        .unwrap();
    clock.set_ms(T0 + 3 * HOUR);
    let r = sla.run_due().await.unwrap();
    assert_eq!(
        (r.fired, r.notices),
        (1, 0),
        "the answer warning passes silently"
    );
    assert_eq!(app.store().case(answered).await.unwrap().unwrap().tier, 1);
    clock.set_ms(T0 + 24 * HOUR);
    let r = sla.run_due().await.unwrap();
    assert_eq!((r.fired, r.notices), (1, 1), "the ladder still climbs");
    assert!(kinds(&app, resolved).await.is_empty());
    assert_eq!(app.store().case(answered).await.unwrap().unwrap().tier, 2);
    app.shutdown().await;
}

#[tokio::test]
async fn an_inquiry_upgraded_to_a_complaint_takes_the_complaints_deadlines_at_once() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), |s, _| ladder(s)).await;
    let case = mo(&app, "u-1", "+8613800000003", "请问宽带套餐怎么办理").await;
    let c = app.store().case(case).await.unwrap().unwrap();
    assert_eq!(c.category, "inquiry");
    assert_eq!(c.ack_due_at, T0 + 24 * HOUR);
    clock.set_ms(T0 + 4 * HOUR);
    assert_eq!(sla.run_due().await.unwrap().fired, 0);
    let again = mo(
        &app,
        "u-2",
        "+8613800000003",
        "等了四个小时没人理，我要投诉",
    )
    .await;
    assert_eq!(again, case, "joins the case");
    let c = app.store().case(case).await.unwrap().unwrap();
    assert_eq!(
        (c.category.as_str(), c.ack_due_at),
        ("complaint", T0 + 3 * HOUR)
    );
    // Both answer steps of the complaint are past: they fire now, the breach moving it up.
    let r = sla.run_due().await.unwrap();
    assert_eq!(r.fired, 2);
    assert_eq!(kinds(&app, case).await, ["sla_warning", "sla_breach"]);
    assert_eq!(app.store().case(case).await.unwrap().unwrap().tier, 2);
    app.shutdown().await;
}

/// Two instances on one PostgreSQL, each with its own pool and scheduler, both running rounds
/// over 60 due clocks at once: every step is taken once and told once.
#[tokio::test]
async fn two_instances_on_one_postgres_take_each_step_once() {
    let url = common::fresh_pg_database().await;
    let clock = Arc::new(ManualClock::new(T0));
    let u = url.clone();
    let (a, sla_a) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.database.url = Secret::new(u);
    })
    .await;
    let u = url.clone();
    let (b, sla_b) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.database.url = Secret::new(u);
    })
    .await;
    for i in 0..60 {
        let app = if i % 2 == 0 { &a } else { &b };
        mo(
            app,
            &format!("p-{i}"),
            &format!("+86138000100{i:02}"),
            "投诉：信号太差",
        )
        .await;
    }
    clock.set_ms(T0 + 2 * HOUR + 30 * MIN);
    let (ra, rb) = tokio::join!(sla_a.run_due(), sla_b.run_due());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.fired + rb.fired, 60, "{ra:?} {rb:?}");
    assert_eq!(notices(&a).await.len(), 60);
    let (ra, rb) = tokio::join!(sla_a.run_due(), sla_b.run_due());
    assert_eq!(ra.unwrap().fired + rb.unwrap().fired, 0);
    a.shutdown().await;
    b.shutdown().await;
    common::drop_pg_database(&url).await;
}

/// Agents' actions on the clock: a logged phone call is the answer (the answer steps pass
/// silently); an escalation by hand moves one tier up and tells that tier; tier 4 and a
/// resolved case answer 409 saying why; bad input 422; unknown case 404.
#[tokio::test]
async fn a_logged_contact_answers_the_case_and_an_escalation_by_hand_tells_the_next_tier() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), |s, _| ladder(s)).await;
    let case = mo(&app, "h-1", "+8613800000004", "投诉：装机三天没人来").await;
    let agent = app.token("agent").await;
    let post = |path: String, body: serde_json::Value| {
        let c = app.client.clone();
        let url = format!("{}{path}", app.base);
        let agent = agent.clone();
        async move {
            let r = c
                .post(url)
                .bearer_auth(agent)
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (st, v) = post(
        format!("/api/v1/cases/{}/contacts", case.get()),
        serde_json::json!({"channel": "phone", "note": "约了明天上午上门"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["case"]["status"], "acknowledged");
    assert!(v["case"]["acked_at"].is_i64());
    let (st, v) = post(
        format!("/api/v1/cases/{}/contacts", case.get()),
        serde_json::json!({"channel": "carrier pigeon"}),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    clock.set_ms(T0 + 3 * HOUR);
    let r = sla.run_due().await.unwrap();
    assert_eq!(
        (r.fired, r.notices),
        (1, 0),
        "answered by phone: no warning"
    );

    for (tier, to) in [
        (2, "branch@ops.test"),
        (3, "province@ops.test"),
        (4, "national@ops.test"),
    ] {
        let (st, v) = post(
            format!("/api/v1/cases/{}/escalate", case.get()),
            serde_json::json!({"reason": "客户要求上级处理"}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["case"]["tier"], tier);
        assert_eq!(notices(&app).await.last().unwrap().0, to);
    }
    let (st, v) = post(
        format!("/api/v1/cases/{}/escalate", case.get()),
        serde_json::json!({"reason": "again"}),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("tier 4"),
        "{v}"
    );
    let (st, _) = post(
        "/api/v1/cases/999999/escalate".into(),
        serde_json::json!({"reason": "x"}),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = post(
        format!("/api/v1/cases/{}/escalate", case.get()),
        serde_json::json!({"reason": "  "}),
    )
    .await;
    assert_eq!(st, 422);
    app.store()
        .resolve_case(
            case,
            &switchboard::store::Resolve {
                code: None,
                detail: switchboard::cases::resolve_detail("agent-1", None, None),
                visit_due: None,
                now_ms: clock.now_ms(),
            },
        )
        .await
        .unwrap();
    let (st, v) = post(
        format!("/api/v1/cases/{}/contacts", case.get()),
        serde_json::json!({"channel": "visit"}),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("resolved"),
        "{v}"
    );
    let events = kinds(&app, case).await;
    assert_eq!(
        events.iter().filter(|k| *k == "escalated").count(),
        3,
        "{events:?}"
    );
    app.shutdown().await;
}

/// 100,000 open cases, of which 10 are due: a round fires exactly those 10 (the scheduler
/// reads the clocks by due instant; it never walks the open cases).
#[tokio::test]
async fn of_100000_open_cases_only_the_10_due_fire() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = crate::common::spawn(clock.clone(), crate::common::Engine::Sqlite, |s, _| {
        ladder(s)
    })
    .await;
    let url = format!("sqlite://{}/sb.db", app.dir.path().display());
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             INSERT INTO cases (id, channel, customer, category, status, tier, lang, rules_version, \
             opened_at, last_message_at, ack_due_at, resolve_due_at) \
             SELECT i, 'sms', '+86138' || printf('%08d', i), 'complaint', 'open', 1, 'zh-CN', 'v1', \
             $1, $1, $1 + 3 * 3600000, $1 + 72 * 3600000 FROM n",
        )
        .bind(T0)
        .execute(&mut c)
        .await
        .unwrap();
        // Ten clocks due at 2 h 30 m (the answer warning), the rest days away.
        sqlx::query(
            "INSERT INTO sla_clock (case_id, step, due_at, fired) \
             SELECT id, CASE WHEN id % 10000 = 0 THEN 'answer_warning' ELSE 'tier_2' END, \
             CASE WHEN id % 10000 = 0 THEN $1 + 9000000 ELSE $1 + 86400000 END, \
             CASE WHEN id % 10000 = 0 THEN 0 ELSE 3 END FROM cases",
        )
        .bind(T0)
        .execute(&mut c)
        .await
        .unwrap();
    }
    clock.set_ms(T0 + 2 * HOUR + 30 * MIN);
    let r = sla.run_due().await.unwrap();
    assert_eq!((r.fired, r.notices), (10, 10));
    let fired: Vec<i64> = {
        let mut v = Vec::new();
        for id in (10_000..=100_000).step_by(10_000) {
            if kinds(&app, CaseId(id)).await == ["sla_warning"] {
                v.push(id);
            }
        }
        v
    };
    assert_eq!(fired.len(), 10, "{fired:?}");
    assert!(kinds(&app, CaseId(12_345)).await.is_empty());
    assert_eq!(sla.run_due().await.unwrap().fired, 0);
    app.shutdown().await;
}

async fn work_queue_filters_and_pages(url: Option<String>) {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        if let Some(u) = url {
            s.database.url = Secret::new(u);
        }
    })
    .await;
    let complaint = mo(&app, "f-1", "+8613800000011", "投诉：信号太差，话费乱扣").await;
    let fault = mo(&app, "f-2", "+8613800000012", "宽带断网了，光猫红灯").await;
    let inquiry = mo(&app, "f-3", "+8613800000013", "请问套餐怎么改").await;
    let odd = mo(&app, "f-4", "+8613800000014", "投诉：营业厅态度差").await;
    clock.set_ms(T0 + 3 * HOUR);
    sla.run_due().await.unwrap(); // complaint, fault and odd: answer breach, tier 2
    let agent = app.token("agent").await;
    let get = |q: &str| {
        let url = format!("{}/api/v1/cases?{q}", app.base);
        let c = app.client.clone();
        let agent = agent.clone();
        async move {
            let r = c.get(url).bearer_auth(agent).send().await.unwrap();
            let st = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            let ids: Vec<CaseId> = v["cases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| CaseId(c["id"].as_i64().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            (st, ids, v)
        }
    };
    assert_eq!(get("category=complaint").await.1, [complaint, odd]);
    assert_eq!(get("breached=true&tier=2").await.1, [complaint, fault, odd]);
    assert_eq!(get("breached=false").await.1, [inquiry]);
    assert_eq!(get("q=0000012").await.1, [fault]);
    assert_eq!(
        get("q=%25").await.1,
        Vec::<CaseId>::new(),
        "% matches itself only"
    );
    // Two a page, following `next`.
    let (_, first, v) = get("limit=2").await;
    let next = v["next"].as_str().unwrap().to_string();
    let (_, second, v) = get(&format!("limit=2&after={next}")).await;
    assert_eq!(first.len() + second.len(), 4);
    assert!(first.iter().all(|i| !second.contains(i)));
    assert!(v["next"].is_string());
    let (_, third, v) = get(&format!("limit=2&after={}", v["next"].as_str().unwrap())).await;
    assert!(third.is_empty() && v["next"].is_null());
    for bad in ["category=urgent", "tier=9", "after=x", "due_before=soon"] {
        let (st, _, v) = get(bad).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_work_queue_filters_by_category_tier_breach_text_and_pages() {
    work_queue_filters_and_pages(None).await;
}

#[tokio::test]
async fn postgres_work_queue_filters_by_category_tier_breach_text_and_pages() {
    let url = common::fresh_pg_database().await;
    work_queue_filters_and_pages(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

/// A step decided on a clock that was re-planned meanwhile (its case upgraded from inquiry to
/// complaint between the claim and the apply) is refused, and the next round decides again
/// with the new policy.
#[tokio::test]
async fn a_step_decided_before_a_re_plan_is_refused_and_decided_again() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), |s, _| ladder(s)).await;
    let case = mo(&app, "r-1", "+8613800000021", "请问宽带怎么续费").await;
    clock.set_ms(T0 + 23 * HOUR);
    let claimed = app
        .store()
        .claim_sla(clock.now_ms(), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!((c.case_id, c.step.as_str()), (case, "answer_warning"));
    // The customer complains before the stale decision lands: re-planned as a complaint.
    mo(&app, "r-2", "+8613800000021", "一天了没人回复，我要投诉").await;
    let stale = switchboard::store::SlaApply {
        case_id: c.case_id,
        step: c.step.clone(),
        fired_before: c.fired,
        due_before: c.due_at,
        fired_after: c.fired | 1,
        next: Some(("answer_breach".into(), T0 + 24 * HOUR)),
        remove: false,
        tier_before: c.tier,
        tier_after: c.tier,
        event: Some((
            switchboard::domain::CaseEventKind::SlaWarning,
            "stale".into(),
        )),
        notices: Vec::new(),
        now_ms: clock.now_ms(),
    };
    assert_eq!(app.store().apply_sla(&[stale]).await.unwrap(), [false]);
    assert!(kinds(&app, case).await.is_empty());
    // Decided again as a complaint: its answer warning and breach are long past.
    let r = sla.run_due().await.unwrap();
    assert_eq!(r.fired, 2);
    assert_eq!(kinds(&app, case).await, ["sla_warning", "sla_breach"]);
    assert_eq!(app.store().case(case).await.unwrap().unwrap().tier, 2);
    app.shutdown().await;
}

/// Resolved by an agent straight through the store (no code, no return visit).
async fn resolve_by_store(app: &common::TestApp, case: CaseId, now_ms: i64) {
    app.store()
        .resolve_case(
            case,
            &switchboard::store::Resolve {
                code: Some("fixed"),
                detail: switchboard::cases::resolve_detail("li.wei", Some("fixed"), None),
                visit_due: None,
                now_ms,
            },
        )
        .await
        .unwrap();
}

async fn lifecycle_with_notes_assign_close_reopen(url: Option<String>) {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        if let Some(u) = url {
            s.database.url = Secret::new(u);
        }
    })
    .await;
    let case = mo(&app, "l-1", "+8613800000031", "投诉：宽带总掉线").await;
    let agent = app.token("agent").await;
    let call = |method: &str, path: String, body: serde_json::Value| {
        let c = app.client.clone();
        let url = format!("{}{path}", app.base);
        let agent = agent.clone();
        let post = method == "POST";
        async move {
            let r = if post {
                c.post(url)
                    .bearer_auth(agent)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
            } else {
                c.get(url).bearer_auth(agent).send().await.unwrap()
            };
            let st = r.status().as_u16();
            (st, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let p = |a: &str| format!("/api/v1/cases/{}/{a}", case.get());
    let (st, v) = call(
        "POST",
        p("notes"),
        serde_json::json!({"text": "客户要求晚上联系"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = call("POST", p("assign"), serde_json::json!({"to": "li.wei"})).await;
    assert_eq!(
        (st, v["case"]["assignee"].as_str()),
        (200, Some("li.wei")),
        "{v}"
    );
    let (_, v) = call(
        "GET",
        "/api/v1/cases?assignee=li.wei".into(),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(v["cases"][0]["id"], case.get(), "{v}");
    // An open case cannot be closed: the 409 says what it allows.
    let (st, v) = call("POST", p("close"), serde_json::Value::Null).await;
    assert_eq!(st, 409, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("allowed: reply, contact, note, assign, escalate, start, resolve"),
        "{m}"
    );
    resolve_by_store(&app, case, clock.now_ms()).await;
    let resolved = app.store().case(case).await.unwrap().unwrap();
    assert_eq!(resolved.resolution_code.as_deref(), Some("fixed"));
    let (st, v) = call("POST", p("close"), serde_json::Value::Null).await;
    assert_eq!(
        (st, v["case"]["status"].as_str()),
        (200, Some("closed")),
        "{v}"
    );
    let (st, v) = call("POST", p("assign"), serde_json::json!({"to": "zhang"})).await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed: note, reopen")
    );
    // Two agents at once: the one who saw `resolved` is too late.
    let stale = switchboard::store::Transition {
        case_id: case,
        from: switchboard::domain::CaseStatus::Resolved,
        to: switchboard::domain::CaseStatus::Closed,
        resolved_at: None,
        assignee: None,
        event: switchboard::domain::CaseEventKind::Closed,
        detail: "late".into(),
        clock: switchboard::store::ClockChange::Keep,
        now_ms: clock.now_ms(),
    };
    assert!(app.store().transition(&stale).await.unwrap().is_none());
    // Reopened an hour in: the clock goes on, the answer warning at 2 h 30 m still fires.
    clock.set_ms(T0 + HOUR);
    let (st, v) = call(
        "POST",
        p("reopen"),
        serde_json::json!({"reason": "客户说还是掉线"}),
    )
    .await;
    assert_eq!(
        (st, v["case"]["status"].as_str()),
        (200, Some("open")),
        "{v}"
    );
    assert!(v["case"]["resolved_at"].is_null());
    // The resolution no longer holds, its code neither (as when the customer writes again).
    assert!(v["case"]["resolution_code"].is_null(), "{v}");
    let (st, _) = call("POST", p("reopen"), serde_json::json!({"reason": ""})).await;
    assert_eq!(st, 422);
    clock.set_ms(T0 + 2 * HOUR + 30 * MIN);
    assert_eq!(sla.run_due().await.unwrap().notices, 1);
    let all: Vec<String> = app
        .store()
        .case_events(case)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .collect();
    for k in [
        "note",
        "assigned",
        "resolved",
        "closed",
        "reopened",
        "sla_warning",
    ] {
        assert!(all.iter().any(|e| e == k), "{k} missing from {all:?}");
    }
    // Resolved again, and reopened 80 hours after it opened, past its 72-hour deadline: a
    // new round from the reopening, with its own deadlines, and the clock fires again (before,
    // every step was behind it: no deadline, nobody told). It was answered first (a call).
    let (st, v) = call(
        "POST",
        p("contacts"),
        serde_json::json!({"channel": "phone", "note": "已电话联系"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    resolve_by_store(&app, case, clock.now_ms()).await;
    let later = T0 + 80 * HOUR;
    clock.set_ms(later);
    let first_due = app
        .store()
        .case(case)
        .await
        .unwrap()
        .unwrap()
        .resolve_due_at;
    let (st, v) = call(
        "POST",
        p("reopen"),
        serde_json::json!({"reason": "又掉线了"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["case"]["sla_base_at"], later, "{v}");
    // It had been answered (a logged call, below the resolve): the new round is open until a
    // person answers in it, and its answer steps fire.
    assert_eq!(v["case"]["status"], "open", "{v}");
    // The stored deadlines stay the first promise's (the SLA report judges by them).
    assert_eq!(v["case"]["resolve_due_at"], first_due, "{v}");
    let (_, view) = call(
        "GET",
        format!("/api/v1/cases/{}", case.get()),
        serde_json::Value::Null,
    )
    .await;
    assert!(
        view["deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["due_at"].as_i64().unwrap() > later),
        "{view}"
    );
    let warnings = |evs: &[switchboard::store::CaseEvent]| {
        evs.iter().filter(|e| e.kind == "sla_warning").count()
    };
    let before = warnings(&app.store().case_events(case).await.unwrap());
    clock.set_ms(later + 2 * HOUR + 30 * MIN);
    assert!(sla.run_due().await.unwrap().notices >= 1);
    assert_eq!(
        warnings(&app.store().case_events(case).await.unwrap()),
        before + 1,
        "the new round's answer warning"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_lifecycle_notes_assign_close_reopen_and_409_with_the_allowed_actions() {
    lifecycle_with_notes_assign_close_reopen(None).await;
}

#[tokio::test]
async fn postgres_lifecycle_notes_assign_close_reopen_and_409_with_the_allowed_actions() {
    let url = common::fresh_pg_database().await;
    lifecycle_with_notes_assign_close_reopen(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

/// Return-visit settings for the tests: one hour after the resolution, two hours to answer.
fn visits(s: &mut Settings) {
    let v = &mut s.cases.return_visit;
    v.enabled = true;
    v.delay = switchboard::sla::Span::parse("1h").unwrap();
    v.answer_within = switchboard::sla::Span::parse("2h").unwrap();
    v.once_per = switchboard::sla::Span::parse("30d").unwrap();
}

/// (to, text) of the return-visit surveys queued so far.
async fn surveys(app: &common::TestApp) -> Vec<(String, String)> {
    let mut v: Vec<_> = app
        .store()
        .recent_messages("out", 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind.map(|k| k.as_str()) == Some("return_visit"))
        .map(|m| (m.to_addr, m.body))
        .collect();
    v.reverse();
    v
}

async fn all_kinds(app: &common::TestApp, case_id: CaseId) -> Vec<String> {
    app.store()
        .case_events(case_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .collect()
}

/// A resolved complaint gets its survey an hour later; `3` reopens it one tier up and tells
/// that tier; resolved again inside a month it closes without a second survey. `1` closes a
/// case; silence closes one after the answer time; a case resolved in the evening is asked the
/// next morning, not at night.
async fn return_visits(url: Option<String>) {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        visits(s);
        if let Some(u) = url {
            s.database.url = Secret::new(u);
        }
    })
    .await;
    let agent = app.token("agent").await;
    let resolve = |case: CaseId, code: &str| {
        let (app, agent) = (&app, agent.clone());
        let body = serde_json::json!({ "code": code, "note": "宽带已修复" });
        async move {
            app.api(
                "POST",
                &format!("/api/v1/cases/{}/resolve", case.get()),
                &agent,
                Some(body),
            )
            .await
        }
    };
    let a = mo(&app, "v-1", "+8613800000041", "投诉：宽带三天没修好").await;
    // No code, or one not on the list: 422 naming the codes.
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/cases/{}/resolve", a.get()),
            &agent,
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("fixed"));
    assert_eq!(resolve(a, "fixed-ish").await.0, 422);
    let (st, v) = resolve(a, "fixed").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["case"]["status"].as_str(),
            v["case"]["resolution_code"].as_str()
        ),
        (Some("resolved"), Some("fixed"))
    );

    clock.set_ms(T0 + 59 * MIN);
    assert_eq!(sla.run_due().await.unwrap().visits_sent, 0, "not yet");
    clock.set_ms(T0 + HOUR);
    assert_eq!(sla.run_due().await.unwrap().visits_sent, 1);
    assert_eq!(sla.run_due().await.unwrap().visits_sent, 0, "once");
    let sent = surveys(&app).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "+8613800000041");
    assert!(sent[0].1.contains("回复1满意"), "{}", sent[0].1);

    // "3": dissatisfied. The case is open again at tier 2, and tier 2 is told.
    clock.set_ms(T0 + HOUR + 10 * MIN);
    let before = notices(&app).await.len();
    let (st, _) = app
        .get("/inbound/sms/kannel?id=v-2&from=%2B8613800000041&to=10000&text=3")
        .await;
    assert_eq!(st, 200);
    let c = app.store().case(a).await.unwrap().unwrap();
    assert_eq!((c.status.as_str(), c.tier.get()), ("open", 2), "{c:?}");
    assert!(app.last_out().await.body.contains("重新处理"));
    assert_eq!(
        app.store().survey_answers("return_visit").await.unwrap(),
        vec![("+8613800000041".to_string(), "dissatisfied".to_string())]
    );
    let r = sla.run_due().await.unwrap();
    assert_eq!(r.fired, 1, "{r:?}");
    let n = notices(&app).await;
    assert_eq!(n.len(), before + 1, "{n:?}");
    assert_eq!(n.last().unwrap().0, "branch@ops.test");
    assert!(
        all_kinds(&app, a)
            .await
            .contains(&"tier_notified".to_string())
    );

    // Resolved again the same day: the customer was asked this month; closed unasked.
    clock.set_ms(T0 + 2 * HOUR);
    assert_eq!(resolve(a, "fixed").await.0, 200);
    clock.set_ms(T0 + 3 * HOUR);
    let r = sla.run_due().await.unwrap();
    assert_eq!((r.visits_sent, r.visits_other), (0, 1), "{r:?}");
    assert_eq!(surveys(&app).await.len(), 1);
    assert_eq!(app.store().case(a).await.unwrap().unwrap().status, "closed");

    // "1": satisfied closes the case. Silence closes another after the answer time.
    let b = mo(&app, "v-3", "+8613800000042", "投诉：营业员态度很差").await;
    let c = mo(
        &app,
        "v-4",
        "+8613800000043",
        "宽带断网了，修了也没用，投诉",
    )
    .await;
    assert_eq!(resolve(b, "explained").await.0, 200);
    assert_eq!(resolve(c, "fixed").await.0, 200);
    clock.set_ms(T0 + 4 * HOUR);
    assert_eq!(sla.run_due().await.unwrap().visits_sent, 2);
    let (st, _) = app
        .get("/inbound/sms/kannel?id=v-5&from=%2B8613800000042&to=10000&text=%E6%BB%A1%E6%84%8F")
        .await;
    assert_eq!(st, 200);
    assert_eq!(app.store().case(b).await.unwrap().unwrap().status, "closed");
    assert!(app.last_out().await.body.contains("感谢"));
    clock.set_ms(T0 + 6 * HOUR - 1);
    assert_eq!(sla.run_due().await.unwrap().visits_other, 0);
    assert_eq!(
        app.store().case(c).await.unwrap().unwrap().status,
        "resolved"
    );
    clock.set_ms(T0 + 6 * HOUR);
    assert_eq!(sla.run_due().await.unwrap().visits_other, 1);
    assert_eq!(app.store().case(c).await.unwrap().unwrap().status, "closed");

    // Resolved at 20:30 Shanghai: due 21:30, inside quiet hours: asked at 08:00.
    let d = mo(&app, "v-6", "+8613800000044", "投诉：乱扣费").await;
    clock.set_ms(T0 + 10 * HOUR + 30 * MIN);
    assert_eq!(resolve(d, "refunded").await.0, 200);
    clock.set_ms(T0 + 11 * HOUR + 30 * MIN);
    sla.run_due().await.unwrap();
    clock.set_ms(T0 + 21 * HOUR + 59 * MIN);
    assert_eq!(
        sla.run_due().await.unwrap().visits_sent,
        0,
        "07:59 is quiet"
    );
    clock.set_ms(T0 + 22 * HOUR);
    assert_eq!(sla.run_due().await.unwrap().visits_sent, 1, "08:00");
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_return_visits_reopen_one_tier_up_close_on_satisfied_or_silence_and_keep_quiet_hours()
 {
    return_visits(None).await;
}

#[tokio::test]
async fn postgres_return_visits_reopen_one_tier_up_close_on_satisfied_or_silence_and_keep_quiet_hours()
 {
    let url = common::fresh_pg_database().await;
    return_visits(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

/// An agent's reply to a closed case opens a new case linked to it; a customer's email that
/// quotes a closed case's number does too, and one that quotes a resolved case reopens it.
/// `start` puts a case in progress; the queue filters by city.
async fn closed_cases_link_and_in_progress(url: Option<String>) {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, _sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.cases.return_visit.enabled = false;
        if let Some(u) = url {
            s.database.url = Secret::new(u);
        }
    })
    .await;
    let agent = app.token("agent").await;
    let sz = mo(&app, "k-1", "+8675512345001", "投诉：信号太差").await;
    let gz = mo(&app, "k-2", "+8613800000051", "宽带坏了").await;
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/cases/{}/start", sz.get()),
            &agent,
            None,
        )
        .await;
    assert_eq!(
        (st, v["case"]["status"].as_str()),
        (200, Some("in_progress")),
        "{v}"
    );
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/cases/{}/start", sz.get()),
            &agent,
            None,
        )
        .await;
    assert_eq!(st, 409, "{v}");
    let (_, v) = app
        .api("GET", "/api/v1/cases?city=shenzhen", &agent, None)
        .await;
    let ids: Vec<CaseId> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| CaseId(c["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(ids, vec![sz], "{v}");
    let (_, v) = app
        .api("GET", "/api/v1/cases?status=in_progress", &agent, None)
        .await;
    assert_eq!(v["cases"].as_array().unwrap().len(), 1, "{v}");
    // A reply keeps it in progress; resolve, close; a reply now opens a linked case.
    let (st, _) = app
        .api(
            "POST",
            &format!("/api/v1/cases/{}/replies", sz.get()),
            &agent,
            Some(serde_json::json!({"text": "我们已安排工程师"})),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(
        app.store().case(sz).await.unwrap().unwrap().status,
        "in_progress"
    );
    for (action, body) in [
        ("resolve", serde_json::json!({"code": "fixed"})),
        ("close", serde_json::Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (st, v) = app
            .api(
                "POST",
                &format!("/api/v1/cases/{}/{action}", sz.get()),
                &agent,
                body,
            )
            .await;
        assert_eq!(st, 200, "{action}: {v}");
    }
    let (st, v) = app
        .api(
            "POST",
            &format!("/api/v1/cases/{}/replies", sz.get()),
            &agent,
            Some(serde_json::json!({"text": "回访：信号已恢复吗？"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let new = CaseId(v["case_id"].as_i64().unwrap());
    assert_ne!(new, sz);
    assert_eq!(v["linked_from"].as_i64(), Some(sz.get()));
    let n = app.store().case(new).await.unwrap().unwrap();
    assert_eq!(
        (n.linked_case_id, n.status.as_str(), n.tier.get()),
        (Some(sz), "acknowledged", 1)
    );
    assert_eq!(
        app.store().case(sz).await.unwrap().unwrap().status,
        "closed"
    );
    assert!(all_kinds(&app, sz).await.contains(&"linked".to_string()));

    // Email: quoting a resolved case's number reopens it; a closed one's opens a linked case.
    let email = |id: &str, subject: &str| {
        format!(
            "From: Li <li@example.cn>\r\nTo: service@gw.test\r\nSubject: {subject}\r\nMessage-ID: <{id}@example.cn>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n还是不行，网速很慢\r\n"
        )
    };
    let first = {
        let (st, b) = app
            .post("/inbound/email", "message/rfc822", email("e1", "宽带故障"))
            .await;
        assert_eq!(st, 200, "{b}");
        app.store().recent_messages("in", 1).await.unwrap()[0]
            .case_id
            .unwrap()
    };
    let no = first.number();
    let (st, _) = app
        .api(
            "POST",
            &format!("/api/v1/cases/{}/resolve", first.get()),
            &agent,
            Some(serde_json::json!({"code": "fixed"})),
        )
        .await;
    assert_eq!(st, 200);
    // The reply comes 30 days later, long past the case's deadlines: a new round from it.
    let at = clock.now_ms() + 30 * 24 * HOUR;
    clock.set_ms(at);
    let (st, b) = app
        .post(
            "/inbound/email",
            "message/rfc822",
            email("e2", &format!("Re: [{no}] 宽带故障")),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let c = app.store().case(first).await.unwrap().unwrap();
    assert_eq!(
        c.status, "open",
        "a resolved case is reopened by the customer's reply"
    );
    assert_eq!(c.sla_base_at, Some(at), "{c:?}");
    assert!(
        c.resolve_due_at < at,
        "the first promise's deadline is kept: {c:?}"
    );
    assert!(!c.answered_in_round(), "{c:?}");
    assert!(
        all_kinds(&app, first)
            .await
            .contains(&"reopened".to_string())
    );
    for (action, body) in [
        ("resolve", Some(serde_json::json!({"code": "fixed"}))),
        ("close", None),
    ] {
        assert_eq!(
            app.api(
                "POST",
                &format!("/api/v1/cases/{}/{action}", first.get()),
                &agent,
                body
            )
            .await
            .0,
            200
        );
    }
    let (st, b) = app
        .post(
            "/inbound/email",
            "message/rfc822",
            email("e3", &format!("Re: [{no}] 宽带故障")),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let linked = app.store().recent_messages("in", 1).await.unwrap()[0]
        .case_id
        .unwrap();
    assert_ne!(linked, first);
    assert_eq!(
        app.store()
            .case(linked)
            .await
            .unwrap()
            .unwrap()
            .linked_case_id,
        Some(first)
    );
    assert_eq!(
        app.store().case(first).await.unwrap().unwrap().status,
        "closed"
    );
    let _ = gz;
    app.shutdown().await;
}

#[tokio::test]
async fn sqlite_closed_cases_link_new_ones_and_cases_go_in_progress() {
    closed_cases_link_and_in_progress(None).await;
}

#[tokio::test]
async fn postgres_closed_cases_link_new_ones_and_cases_go_in_progress() {
    let url = common::fresh_pg_database().await;
    closed_cases_link_and_in_progress(Some(url.clone())).await;
    common::drop_pg_database(&url).await;
}

/// Tier 2 keeps office hours (08:30–12:00 here): a missed answer at 13:00 on a Friday moves the
/// case to tier 2 at once, but tier 2's notice waits in the outbox for Monday 08:30.
#[tokio::test]
async fn a_tier_on_office_hours_gets_its_notice_when_it_comes_in() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.sla.calendar.tiers = vec![switchboard::domain::Tier::CITY];
        s.sla.calendar.hours = switchboard::sla::calendar::Window::parse("08:30-12:00").unwrap();
    })
    .await;
    let case = mo(&app, "o-1", "+8613800000061", "投诉：扣费不明").await;
    clock.set_ms(T0 + 3 * HOUR);
    sla.run_due().await.unwrap();
    assert_eq!(app.store().case(case).await.unwrap().unwrap().tier, 2);
    let to_branch = |items: Vec<switchboard::store::OutboxItem>| {
        items
            .into_iter()
            .filter(|i| i.to == "branch@ops.test")
            .count()
    };
    let store = app.store();
    let claim = |at: i64| {
        let store = store.clone();
        async move {
            store
                .claim_outbox(switchboard::domain::Channel::Email, at, 1, 100)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        to_branch(claim(T0 + 3 * HOUR).await),
        0,
        "Friday 13:00: after hours"
    );
    // Monday 2026-12-07 08:30 Shanghai = T0 + 70.5 h.
    assert_eq!(to_branch(claim(T0 + 70 * HOUR + 29 * MIN).await), 0);
    assert_eq!(to_branch(claim(T0 + 70 * HOUR + 30 * MIN).await), 1);
    app.shutdown().await;
}

/// Cases opened before clocks existed get one at start-up: the steps already past count as
/// taken (no burst of late notices), the rest fire on time.
#[tokio::test]
async fn cases_without_a_clock_get_one_and_only_future_steps_fire() {
    let clock = Arc::new(ManualClock::new(T0));
    // On the default engine (both in tests/run.sh's two passes).
    let (app, sla) = spawn_app_with_clock(clock.clone(), |s, _| ladder(s)).await;
    let a = mo(&app, "g-1", "+8613800000071", "投诉：宽带一直断").await;
    let b = mo(&app, "g-2", "+8613800000072", "投诉：乱收费").await;
    // Cases from before clocks existed: none has one.
    let db = app.state.settings.database.url.expose().to_string();
    if db.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query("DELETE FROM sla_clock")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db).await.unwrap();
        sqlx::query("DELETE FROM sla_clock")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    clock.set_ms(T0 + 4 * HOUR);
    assert_eq!(sla.backfill().await.unwrap(), 2);
    assert_eq!(sla.backfill().await.unwrap(), 0, "once");
    let (step, due, _) = app.store().case_clock(a).await.unwrap().unwrap();
    assert_eq!((step.as_str(), due), ("tier_2", Some(T0 + 24 * HOUR)));
    let before = notices(&app).await.len();
    assert_eq!(sla.run_due().await.unwrap().fired, 0, "no burst");
    assert_eq!(notices(&app).await.len(), before);
    clock.set_ms(T0 + 24 * HOUR);
    assert_eq!(sla.run_due().await.unwrap().fired, 2);
    assert_eq!(app.store().case(b).await.unwrap().unwrap().tier, 2);
    app.shutdown().await;
}

/// A customer segment with its own complaint policy: a VIP line's complaint is due in one hour
/// and breaches then; everyone else keeps the default three hours. A segment policy out of
/// order stops start-up naming its key.
#[tokio::test]
async fn a_segment_has_its_own_deadlines() {
    let clock = Arc::new(ManualClock::new(T0));
    let vip: switchboard::sla::Segment = toml::from_str(
        r#"
name = "vip"
match = ["+8613900000", "@bigcorp.cn"]
complaint = { answer_within = "1h", resolve_within = "24h", warn_before = "10m" }
"#,
    )
    .unwrap();
    let seg = vip.clone();
    let (app, sla) = spawn_app_with_clock(clock.clone(), move |s, _| {
        ladder(s);
        s.sla.segments = vec![seg];
    })
    .await;
    let v = mo(&app, "s-1", "+8613900000123", "投诉：网速太慢").await;
    let n = mo(&app, "s-2", "+8613800000123", "投诉：网速太慢").await;
    let cv = app.store().case(v).await.unwrap().unwrap();
    let cn = app.store().case(n).await.unwrap().unwrap();
    assert_eq!(cv.ack_due_at, T0 + HOUR);
    assert_eq!(cv.resolve_due_at, T0 + 24 * HOUR);
    assert_eq!(cn.ack_due_at, T0 + 3 * HOUR);
    clock.set_ms(T0 + HOUR);
    sla.run_due().await.unwrap();
    assert_eq!(
        app.store().case(v).await.unwrap().unwrap().tier,
        2,
        "VIP breach at 1h"
    );
    assert_eq!(app.store().case(n).await.unwrap().unwrap().tier, 1);
    let agent = app.token("agent").await;
    let (_, body) = app
        .api("GET", &format!("/api/v1/cases/{}", v.get()), &agent, None)
        .await;
    assert_eq!(body["segment"], "vip", "{body}");
    app.shutdown().await;

    let mut bad = vip;
    bad.complaint.as_mut().unwrap().warn_before = switchboard::sla::Span::parse("2h").unwrap();
    let mut s = Settings::load(None).unwrap();
    s.sla.segments = vec![bad];
    let e = s.sla.check().unwrap_err();
    assert!(e.contains("sla.segments.vip.complaint"), "{e}");
}

/// An agent corrects a case's category: the deadlines follow (an inquiry turned complaint
/// four hours in breaches its answer deadline at once), the change is an event, and the
/// correction comes out as a labeled row for the classifier.
#[tokio::test]
async fn a_category_correction_moves_the_deadlines_and_is_kept_as_a_labeled_row() {
    let clock = Arc::new(ManualClock::new(T0));
    let (app, sla) = spawn_app_with_clock(clock.clone(), |s, _| ladder(s)).await;
    let agent = app.token("agent").await;
    let ops = app.token("ops").await;
    let case = mo(&app, "r-1", "+8613800000081", "请问你们的宽带套餐怎么收费").await;
    let c = app.store().case(case).await.unwrap().unwrap();
    assert_eq!(c.category, "inquiry");
    let path = format!("/api/v1/cases/{}/category", case.get());
    for (body, st) in [
        (serde_json::json!({"category": "spam", "reason": "x"}), 422),
        (
            serde_json::json!({"category": "complaint", "reason": " "}),
            422,
        ),
        (
            serde_json::json!({"category": "inquiry", "reason": "same"}),
            409,
        ),
    ] {
        assert_eq!(
            app.api("POST", &path, &agent, Some(body.clone())).await.0,
            st,
            "{body}"
        );
    }
    clock.set_ms(T0 + 4 * HOUR);
    let (st, v) = app
        .api(
            "POST",
            &path,
            &agent,
            Some(serde_json::json!({"category": "complaint", "reason": "客户在电话里投诉收费不透明"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["case"]["category"], "complaint");
    assert_eq!(v["case"]["ack_due_at"], T0 + 3 * HOUR);
    let r = sla.run_due().await.unwrap();
    assert!(r.fired >= 1, "{r:?}");
    assert_eq!(
        app.store().case(case).await.unwrap().unwrap().tier,
        2,
        "answer breached at once"
    );
    assert!(
        all_kinds(&app, case)
            .await
            .contains(&"recategorized".to_string())
    );
    assert_eq!(
        app.api("GET", "/api/v1/corrections", &agent, None).await.0,
        403
    );
    let r = app
        .client
        .get(format!("{}/api/v1/corrections?since=1d", app.base))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("label,text\n"), "{csv}");
    assert!(
        csv.contains("complaint,请问你们的宽带套餐怎么收费"),
        "{csv}"
    );
    app.shutdown().await;
}
