//! Campaigns (issue 12; README, Performance):
//!
//! 1. Import: a 1,000,000-row CSV (`phone,name,amount,consent`, generated into a temp dir) into
//!    a draft campaign on SQLite through `campaigns::manage::import`, the path the CLI and the
//!    API use (1 MiB buffered reader like `switchboard campaign import`). Wall time, and the peak
//!    RSS (`VmHWM`) of a child process that does only that. Baselines, each in its own child
//!    process on the same file: the bare `csv` crate reading every record (no decoding, no
//!    database), and the import's own row reader (`import::Rows`: decoding, E.164,
//!    duplicates, JSON variables) without the database.
//! 2. Dispatch: a marketing campaign (consent, opt-out, daily caps, signature and footer
//!    checked) of 200,000 recipients, every 10th opted out and every 20th without consent,
//!    rate `campaigns.max_rate_per_sec` raised to 100,000; `Dispatcher::run_once` driven by hand
//!    with a `ManualClock` moved 1 s per tick, so each tick takes a full batch. Messages queued
//!    per second of wall time (and one batch's two reads timed on their own, once).
//! 3. End to end: a fresh 50,000-recipient campaign, the dispatcher on its own loop and the SMS
//!    outbox worker (generic `http` driver, `sms.outbound.rate_per_sec` 100,000) sending to a
//!    stub HTTP bridge in the same process, until every admitted message is `sent`.
//!
//!   cargo bench --bench campaigns      (release; about two minutes on 2 cores)
//!
//! Sizes: SB_IMPORT_ROWS (1e6), SB_DISPATCH_RECIPIENTS (2e5), SB_E2E_RECIPIENTS (5e4);
//! SB_CAMPAIGN_PARTS=import,dispatch,e2e picks parts; SB_DROP_INDEX=messages_campaign_to runs
//! parts 2 and 3 without that index (the before of README's figures).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::campaigns::import::{Rows, Target};
use switchboard::campaigns::manage::{self, CreateRequest};
use switchboard::clock::{Clock, ManualClock, SystemClock};
use switchboard::config::{Secret, Settings, SmsDriver};
use switchboard::store::Store;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as usize)
        .unwrap_or(d)
}

/// 2026-12-04 10:00 in Shanghai: inside the hours commercial messages may go.
fn t0() -> i64 {
    use chrono::TimeZone;
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
        .unwrap()
        .timestamp_millis()
}

/// The system clock moved to `t0()` when the bench starts a run (quiet hours stay out of it
/// whatever the time of day).
struct Shifted(i64);

impl Clock for Shifted {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.0
    }
}

fn settings(bridge: &str) -> Settings {
    let mut s = Settings::load_with_env(None, Vec::<(String, String)>::new()).expect("defaults");
    s.campaigns.max_rate_per_sec = 100_000.0;
    let o = &mut s.sms.outbound;
    o.driver = SmsDriver::Http;
    o.url = bridge.to_string();
    o.dlr = false;
    o.rate_per_sec = 100_000.0;
    o.concurrency = env_usize("SB_SMS_CONCURRENCY", 32);
    o.timeout_secs = 10;
    s
}

/// Row `i` of the generated file: every 1,000th row repeats the number before it, every
/// 1,000th (offset 500) has a number too short; every 20th has no consent.
fn row(i: usize, out: &mut impl Write) {
    let phone = if i % 1000 == 999 {
        format!("138{:08}", i - 1)
    } else if i % 1000 == 500 {
        format!("{}", 10_000 + i % 1000)
    } else {
        format!("138{i:08}")
    };
    let consent = if i % 20 == 1 {
        ""
    } else {
        "2026-11-01 营业厅签约"
    };
    writeln!(out, "{phone},客户{i},{}.{:02},{consent}", i % 500, i % 100).unwrap();
}

fn write_csv(path: &std::path::Path, n: usize) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    writeln!(w, "phone,name,amount,consent").unwrap();
    for i in 0..n {
        row(i, &mut w);
    }
    w.flush().unwrap();
}

/// Peak resident set of this process, kB.
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn request(kind: &str, template: &str, rate: f64) -> CreateRequest {
    CreateRequest {
        name: format!("bench {kind}"),
        kind: kind.into(),
        channel: "sms".into(),
        template: template.into(),
        subject: None,
        start_at: None,
        valid_until: None,
        rate_per_sec: rate,
        urgent: false,
        cron: None,
        lang: None,
    }
}

const REMINDER: &str = "{{ name }}您好，您本月话费{{ amount }}元，请于月底前缴纳。";
const MARKETING: &str = "【某某通信】{{ name }}您好，5G套餐本月八折，回复TD退订";

/// A child process: one phase, then `secs rows rss_kb` on stdout.
async fn child(phase: &str) {
    let csv = std::env::var("SB_CHILD_CSV").unwrap();
    let started;
    let rows;
    match phase {
        "csv" => {
            let f = std::fs::File::open(&csv).unwrap();
            started = Instant::now();
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(std::io::BufReader::with_capacity(1 << 20, f));
            let mut rec = csv::ByteRecord::new();
            let mut n = 0u64;
            let mut bytes = 0usize;
            while r.read_byte_record(&mut rec).unwrap() {
                n += 1;
                bytes += rec.as_slice().len();
            }
            assert!(bytes > 0);
            rows = n - 1;
        }
        "rows" => {
            let f = std::fs::File::open(&csv).unwrap();
            started = Instant::now();
            let mut r = Rows::new(
                std::io::BufReader::with_capacity(1 << 20, f),
                Target::Sms,
                "86",
            )
            .unwrap();
            let mut n = 0u64;
            while let Some(b) = r.next_batch(5_000).unwrap() {
                n += b.len() as u64;
            }
            assert_eq!(n, r.report.accepted);
            rows = r.report.rows;
        }
        "import" => {
            let db = std::env::var("SB_CHILD_DB").unwrap();
            let s = settings("http://127.0.0.1:9/");
            let store = switchboard::store::open(&db, 8, 512).await.unwrap();
            let now = t0();
            let templates = switchboard::templates::Templates::load(None).unwrap();
            let c = manage::create(
                store.as_ref(),
                &templates,
                &s.campaigns,
                s.time.zone,
                &request("payment_reminder", REMINDER, 100.0),
                "bench",
                now,
            )
            .await
            .unwrap();
            let f = std::fs::File::open(&csv).unwrap();
            started = Instant::now();
            let r = manage::import(
                store.as_ref(),
                c.id,
                std::io::BufReader::with_capacity(1 << 20, f),
                "86",
                |_| {},
            )
            .await
            .unwrap();
            rows = r.rows;
            eprintln!(
                "  import report: {} rows, {} accepted, {} duplicates, {} invalid",
                r.rows, r.accepted, r.duplicates, r.invalid
            );
            let p = manage::progress(store.as_ref(), c.id).await.unwrap();
            assert_eq!(p.pending as u64, r.accepted);
            store.close().await;
        }
        other => panic!("unknown phase {other}"),
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{secs} {rows} {}", vm_hwm_kb());
}

fn run_child(phase: &str, csv: &std::path::Path, db: &str) -> (f64, u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SB_CAMPAIGN_CHILD", phase)
        .env("SB_CHILD_CSV", csv)
        .env("SB_CHILD_DB", db)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "child {phase} failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<&str> = text.split_whitespace().collect();
    (
        v[0].parse().unwrap(),
        v[1].parse().unwrap(),
        v[2].parse().unwrap(),
    )
}

fn import_part(dir: &std::path::Path) {
    let n = env_usize("SB_IMPORT_ROWS", 1_000_000);
    let csv = dir.join("recipients.csv");
    let t = Instant::now();
    write_csv(&csv, n);
    let size = std::fs::metadata(&csv).unwrap().len();
    println!(
        "generated {n} rows ({:.1} MB) in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let db = format!("sqlite://{}/import.db", dir.display());
    for (phase, what) in [
        ("csv", "baseline: csv crate, every record read, no DB"),
        ("rows", "import::Rows (decode, E.164, dedupe, JSON), no DB"),
        ("import", "manage::import into SQLite (the CLI's path)"),
    ] {
        let (secs, rows, rss) = run_child(phase, &csv, &db);
        println!(
            "{what:<52} {rows} rows in {secs:>6.2} s ({:>9.0} rows/s), peak RSS {:>4} MB",
            rows as f64 / secs,
            rss / 1024
        );
    }
    let _ = std::fs::remove_file(&csv);
}

/// A campaign of `n` recipients (every 10th opted out, every 20th without consent), started.
async fn marketing_campaign(
    store: &Arc<dyn Store>,
    s: &Settings,
    url: &str,
    n: usize,
    now: i64,
) -> switchboard::domain::CampaignId {
    let templates = switchboard::templates::Templates::load(None).unwrap();
    let c = manage::create(
        store.as_ref(),
        &templates,
        &s.campaigns,
        s.time.zone,
        &request("marketing", MARKETING, s.campaigns.max_rate_per_sec),
        "bench",
        now,
    )
    .await
    .unwrap();
    let mut csv = Vec::with_capacity(n * 50);
    writeln!(csv, "phone,name,amount,consent").unwrap();
    for i in 0..n {
        // No duplicates or bad numbers here: every row is a recipient.
        let consent = if i % 20 == 1 {
            ""
        } else {
            "2026-11-01 营业厅签约"
        };
        writeln!(csv, "138{i:08},客户{i},{}.00,{consent}", i % 500).unwrap();
    }
    let r = manage::import(store.as_ref(), c.id, &csv[..], "86", |_| {})
        .await
        .unwrap();
    assert_eq!(r.accepted as usize, n);
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 10 FROM k WHERE i + 10 < $1) \
         INSERT OR IGNORE INTO contacts (channel, address, opted_out_at) \
         SELECT 'sms', '+86138' || printf('%08d', i), 1 FROM k",
    )
    .bind(n as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    if let Ok(index) = std::env::var("SB_DROP_INDEX") {
        // Before/after comparisons: the same run without one index.
        sqlx::query(&format!("DROP INDEX {index}"))
            .execute(&mut conn)
            .await
            .unwrap();
        println!("(index {index} dropped for this run)");
    }
    manage::transition(
        store.as_ref(),
        chrono_tz::Asia::Shanghai,
        c.id,
        "start",
        now,
    )
    .await
    .unwrap();
    c.id
}

/// Admitted by the rules: not opted out (every 10th) and with consent (not every 20th + 1).
fn admitted(n: usize) -> u64 {
    (0..n).filter(|i| i % 10 != 0 && i % 20 != 1).count() as u64
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn dispatch_part(dir: &std::path::Path) {
    use switchboard::campaigns::dispatch::Dispatcher;
    let n = env_usize("SB_DISPATCH_RECIPIENTS", 200_000);
    let url = format!("sqlite://{}/dispatch.db", dir.display());
    let s = settings("http://127.0.0.1:9/");
    let store = switchboard::store::open(&url, 8, 512).await.unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let t = Instant::now();
    let id = marketing_campaign(&store, &s, &url, n, clock.now_ms()).await;
    println!(
        "dispatch: {n} recipients imported, opt-outs recorded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let d = Dispatcher::new(
        &s,
        store.clone(),
        clock.clone(),
        Default::default(),
        Default::default(),
    );
    // One batch's reads on their own (the rest of a tick: rendering, and the transaction that
    // queues the messages and marks the recipients).
    let t = Instant::now();
    let rows = store.pending_recipients(id, 0, 1_000).await.unwrap();
    let read_ms = t.elapsed().as_secs_f64() * 1000.0;
    let addrs: Vec<String> = rows.iter().map(|r| r.address.clone()).collect();
    let t = Instant::now();
    store
        .standings(
            switchboard::domain::Channel::Sms,
            &addrs,
            clock.now_ms() - 86_400_000,
            clock.now_ms() - 30 * 86_400_000,
        )
        .await
        .unwrap();
    println!(
        "dispatch: one batch of 1,000: pending_recipients {read_ms:.1} ms, standings {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let mut ticks = Vec::new();
    let mut queued = 0;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    loop {
        clock.advance_ms(1_000);
        let t = Instant::now();
        let q = d.run_once().await.unwrap();
        ticks.push(t.elapsed().as_secs_f64() * 1000.0);
        queued += q;
        let c = store.campaign(id).await.unwrap().unwrap();
        if c.status == "done" || Instant::now() > deadline {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let p = manage::progress(store.as_ref(), id).await.unwrap();
    assert_eq!(queued, admitted(n), "{p:?}");
    let slow: Vec<f64> = ticks.iter().copied().filter(|t| *t > 250.0).collect();
    println!(
        "dispatch: {} ticks over 250 ms, {:.1} s of the {secs:.1} s",
        slow.len(),
        slow.iter().sum::<f64>() / 1000.0
    );
    println!(
        "dispatch: {queued} queued, suppressed {:?}, {} ticks in {secs:.2} s: \
         {:.0} queued/s, {:.0} recipients decided/s; tick p50 {:.0} ms, p99 {:.0} ms",
        p.suppressed,
        ticks.len(),
        queued as f64 / secs,
        n as f64 / secs,
        pct(&mut ticks, 0.5),
        pct(&mut ticks, 0.99),
    );
    store.close().await;
}

/// A bridge that takes every message (200, a JSON id), counting them.
async fn stub_bridge() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move || {
        let c = c.clone();
        async move {
            let id = c.fetch_add(1, Ordering::Relaxed);
            format!("{{\"id\":\"stub-{id}\"}}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

async fn e2e_part(dir: &std::path::Path) {
    use switchboard::campaigns::dispatch::Dispatcher;
    use switchboard::domain::Channel;
    use switchboard::outbound::{Worker, WorkerConfig};
    let n = env_usize("SB_E2E_RECIPIENTS", 50_000);
    let (bridge, count) = stub_bridge().await;
    let url = format!("sqlite://{}/e2e.db", dir.display());
    let mut s = settings(&bridge);
    s.database.url = Secret::new(url.clone());
    let store = switchboard::store::open(&url, 8, 512).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(Shifted(t0() - SystemClock.now_ms()));
    let id = marketing_campaign(&store, &s, &url, n, clock.now_ms()).await;
    let want = admitted(n);
    let notify: Arc<tokio::sync::Notify> = Default::default();
    let d = Arc::new(Dispatcher::new(
        &s,
        store.clone(),
        clock.clone(),
        notify.clone(),
        Default::default(),
    ));
    let o = &s.sms.outbound;
    let worker = Worker {
        store: store.clone(),
        clock: clock.clone(),
        sender: switchboard::outbound::sms::driver(&s),
        notify: notify.clone(),
        metrics: Default::default(),
        config: WorkerConfig::new(Channel::Sms, &o.pacing(), Duration::from_secs(5))
            .with_part_cap(o.part_cap()),
        unrecorded: Default::default(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let tasks = [
        tokio::spawn(d.clone().run(stop.clone())),
        tokio::spawn(worker.run(stop.clone())),
    ];
    let deadline = started + Duration::from_secs(180);
    let mut queued_at = None;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if queued_at.is_none() && store.pending_recipients(id, 0, 1).await.unwrap().is_empty() {
            queued_at = Some(started.elapsed().as_secs_f64());
        }
        let sent = count.load(std::sync::atomic::Ordering::Relaxed);
        if sent >= want || Instant::now() > deadline {
            break;
        }
    }
    let bridge_secs = started.elapsed().as_secs_f64();
    // Every result recorded (the writer's group commit) before stopping.
    let recorded_deadline = Instant::now() + Duration::from_secs(30);
    let mut recorded;
    loop {
        recorded = manage::progress(store.as_ref(), id).await.unwrap().sent;
        if recorded as u64 >= want || Instant::now() > recorded_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let sent = count.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sent, want, "every admitted message reached the bridge once");
    assert_eq!(recorded as u64, want);
    println!(
        "end to end: {n} recipients, {want} messages: all queued after {:.2} s, all at the \
         bridge after {bridge_secs:.2} s, all recorded sent after {secs:.2} s: {:.0} sent/s \
         (http driver, concurrency {}, stub bridge in-process)",
        queued_at.unwrap_or(f64::NAN),
        want as f64 / secs,
        o.concurrency,
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    if let Ok(phase) = std::env::var("SB_CAMPAIGN_CHILD") {
        child(&phase).await;
        return;
    }
    let parts = std::env::var("SB_CAMPAIGN_PARTS").unwrap_or("import,dispatch,e2e".into());
    let dir = tempfile::tempdir().unwrap();
    if parts.contains("import") {
        import_part(dir.path());
    }
    if parts.contains("dispatch") {
        dispatch_part(dir.path()).await;
    }
    if parts.contains("e2e") {
        e2e_part(dir.path()).await;
    }
}
