//! The SLA scheduler on a large SQLite database (README, Performance):
//!
//! 1. 1,000,000 open cases, each with a clock; the cost of finding the next due instant
//!    (`Store::next_sla_due`, the one read the scheduler makes before it sleeps);
//! 2. 10,000 of them falling due together: one `Scheduler::run_due` round fires them all
//!    (tier change, case event, a notice queued each), timed;
//! 3. the lag from a due instant to its notice being queued, with the scheduler running on the
//!    system clock: 10,000 clocks due 2 s ahead, p50/p99/max of `created_at - due_at`.
//!
//!   cargo bench --bench sla               (release; about a minute; SB_SLA_CASES to change 1e6)

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::clock::{Clock, ManualClock, SystemClock};
use switchboard::config::Settings;
use switchboard::sla::Contact;
use switchboard::sla::scheduler::{Notices, Scheduler};

const HOUR: i64 = 3_600_000;

fn settings() -> Settings {
    let mut s = Settings::load_with_env(None, Vec::<(String, String)>::new()).expect("defaults");
    s.email.from = "service@gw.test".into();
    s.sla.contacts = vec![Contact {
        tier: switchboard::domain::Tier::CITY,
        city: None,
        email: vec![switchboard::domain::EmailAddress::parse("branch@ops.test").unwrap()],
        sms: vec![],
    }];
    s
}

/// `n` open complaints opened at `opened`, clocks at `due` (their next step, answer breach),
/// written in bulk straight into the database.
async fn fill(url: &str, n: i64, opened: i64, due: i64, first_id: i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
         INSERT INTO cases (id, channel, customer, category, status, tier, lang, subject, \
         rules_version, opened_at, last_message_at, ack_due_at, resolve_due_at) \
         SELECT i, 'sms', '+86138' || printf('%08d', i), 'complaint', 'open', 1, 'zh-CN', NULL, \
         'v1', $3, $3, $4, $3 + 72 * 3600000 FROM n",
    )
    .bind(first_id)
    .bind(first_id + n - 1)
    .bind(opened)
    .bind(due)
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sla_clock (case_id, step, due_at, fired) \
         SELECT id, 'answer_breach', $3, 1 FROM cases WHERE id BETWEEN $1 AND $2",
    )
    .bind(first_id)
    .bind(first_id + n - 1)
    .bind(due)
    .execute(&mut c)
    .await
    .unwrap();
}

fn scheduler(
    store: Arc<dyn switchboard::store::Store>,
    clock: Arc<dyn Clock>,
    s: &Settings,
) -> Arc<Scheduler> {
    Arc::new(Scheduler {
        store,
        clock,
        sla: Arc::new(s.sla.clone()),
        cases: Arc::new(s.cases.clone()),
        notices: Notices::new(s).unwrap(),
        wake: Default::default(),
        sms_notify: Default::default(),
        email_notify: Default::default(),
    })
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let cases: i64 = std::env::var("SB_SLA_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let due_now = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sla.db", dir.path().display());
    let s = settings();
    let store = switchboard::store::open(&url, 8, 512).await.unwrap();
    let t0 = SystemClock.now_ms();

    let started = Instant::now();
    // Far-away clocks for the bulk, 10,000 due at t0 + 3 h, 10,000 more later for the lag run.
    fill(&url, cases - 2 * due_now, t0, t0 + 30 * HOUR, 1).await;
    fill(&url, due_now, t0, t0 + 3 * HOUR, cases - 2 * due_now + 1).await;
    println!(
        "filled {cases} open cases with clocks in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 1. The next due instant.
    let mut took = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let next = store.next_sla_due(t0).await.unwrap();
        took.push(t.elapsed().as_micros() as i64);
        assert_eq!(next, Some(t0 + 3 * HOUR));
    }
    println!(
        "next due instant among {cases} clocks: p50 {} us, p99 {} us",
        pct(&mut took, 0.5),
        pct(&mut took, 0.99)
    );

    // 2. 10,000 escalations due together: one round.
    let clock = Arc::new(ManualClock::new(t0 + 3 * HOUR));
    let sched = scheduler(store.clone(), clock.clone(), &s);
    let t = Instant::now();
    let round = sched.run_due().await.unwrap();
    let fire = t.elapsed();
    assert_eq!(round.fired, due_now as usize, "{round:?}");
    assert_eq!(round.notices, due_now as usize);
    println!(
        "fired {} escalations due together (tier change, event, notice each) in {:.0} ms",
        round.fired,
        fire.as_secs_f64() * 1000.0
    );

    // 3. Lag on the system clock: 10,000 clocks due 2 s from now.
    fill(
        &url,
        due_now,
        t0,
        SystemClock.now_ms() + 2_000,
        cases - due_now + 1,
    )
    .await;
    let sched = scheduler(store.clone(), Arc::new(SystemClock), &s);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(sched.clone().run(stop.clone()));
    sched.wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lags: Vec<i64>;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let counts = store.counts().await.unwrap();
        if counts.outbox as i64 >= 2 * due_now || Instant::now() > deadline {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            lags = sqlx::query_scalar(
                "SELECT m.created_at - c.ack_due_at FROM messages m JOIN cases c ON c.id = m.case_id \
                 WHERE m.kind = 'sla_notice' AND c.id > $1",
            )
            .bind(cases - due_now)
            .fetch_all(&mut c)
            .await
            .unwrap();
            break;
        }
    }
    stop.cancel();
    let _ = task.await;
    assert_eq!(lags.len() as i64, due_now, "every clock fired");
    println!(
        "lag due -> notice queued over {} notices: p50 {} ms, p99 {} ms, max {} ms",
        lags.len(),
        pct(&mut lags, 0.5),
        pct(&mut lags, 0.99),
        pct(&mut lags, 1.0)
    );
    store.close().await;
}
