//! The test app and its helpers, shared by every test module: spawn the app on port 0 with a
//! fresh database on either engine ([`spawn_app`], [`spawn_app_on`], [`spawn_app_with_clock`]),
//! admin tokens and API calls ([`TestApp::token`], [`TestApp::api`]), one typed call per
//! inbound dialect ([`TestApp::kannel_mo`], [`TestApp::jasmin`], [`TestApp::twilio`],
//! [`TestApp::generic`], [`TestApp::email`]), a stub HTTP bridge that records requests, fresh
//! PostgreSQL databases, the real binary ([`wait_ready`], [`sigterm`], [`ingest_email`]), and
//! polling with a deadline.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::app::Application;
use switchboard::config::{Secret, Settings};
use switchboard::http::AppState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_URL.to_string())
}

/// Creates an empty PostgreSQL database and returns its URL. Fails loudly when the server is
/// not there: the suite never skips a backend.
pub async fn fresh_pg_database() -> String {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required at {admin} (set SWITCHBOARD_TEST_PG_URL); connecting failed: {e}")
    });
    let name = format!("sb_test_{}", rand_suffix());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin.clone());
    format!("{base}/{name}")
}

/// Drops a database made by [`fresh_pg_database`], closing its connections.
pub async fn drop_pg_database(url: &str) {
    use sqlx::Connection;
    let name = url.rsplit('/').next().unwrap_or_default().to_string();
    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().r#gen();
    format!("{n:016x}")
}

pub fn base_settings() -> Settings {
    let mut s =
        Settings::load_with_env(None, Vec::<(String, String)>::new()).expect("defaults load");
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.shutdown_grace_secs = 5;
    s.sms.outbound.backoff_base_ms = 50;
    s.sms.outbound.backoff_max_ms = 200;
    s.sms.outbound.rate_per_sec = 500.0;
    s.sms.outbound.timeout_secs = 3;
    // Tests run at any hour: no quiet hours unless a test sets them; campaign ticks are run
    // by the tests that want them.
    let always = switchboard::sla::calendar::Window::parse("00:00-00:00").unwrap();
    s.campaigns.commercial_quiet_hours = always;
    s.campaigns.service_quiet_hours = always;
    s.campaigns.dispatcher = false;
    s
}

/// The two store engines. HTTP tests that touch the store run on both:
/// `for engine in Engine::BOTH { let app = spawn_app_on(engine, |s, _| ...).await; ... }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A fresh SQLite file in the app's temp dir.
    Sqlite,
    /// A fresh database on the server at `SWITCHBOARD_TEST_PG_URL` (never skipped).
    Postgres,
}

/// The engine of [`spawn_app`]: SQLite unless `SWITCHBOARD_TEST_ENGINE=postgres`.
pub fn default_engine() -> Engine {
    match std::env::var("SWITCHBOARD_TEST_ENGINE").as_deref() {
        Ok("postgres") => Engine::Postgres,
        Ok("sqlite") | Err(_) => Engine::Sqlite,
        Ok(other) => panic!("SWITCHBOARD_TEST_ENGINE={other:?}: sqlite or postgres"),
    }
}

impl Engine {
    pub const BOTH: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

    pub fn label(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub state: AppState,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database made by [`spawn_app_on`]; dropped by [`TestApp::shutdown`].
    pg_database: Option<String>,
}

/// Spawns the application on `engine` with a fresh database. A PostgreSQL database made here is
/// dropped by [`TestApp::shutdown`]; `customize` must leave `database.url` alone.
pub async fn spawn_app_on(
    engine: Engine,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> TestApp {
    spawn(Arc::new(switchboard::clock::SystemClock), engine, customize)
        .await
        .0
}

/// Spawns the application with a fresh database on [`default_engine`] (unless `customize`
/// sets another URL). `SWITCHBOARD_TEST_ENGINE=postgres` (tests/run.sh's second pass) puts
/// every such app on a fresh PostgreSQL database.
pub async fn spawn_app(customize: impl FnOnce(&mut Settings, &std::path::Path)) -> TestApp {
    spawn_app_with_clock(Arc::new(switchboard::clock::SystemClock), customize)
        .await
        .0
}

/// As [`spawn_app`], reading time from `clock`; also hands back the SLA scheduler so a test can
/// run its rounds after moving the clock.
pub async fn spawn_app_with_clock(
    clock: Arc<dyn switchboard::clock::Clock>,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> (TestApp, Arc<switchboard::sla::scheduler::Scheduler>) {
    spawn(clock, default_engine(), customize).await
}

/// The app on `engine` reading time from `clock`: a fresh SQLite file in its temp dir, or a
/// fresh PostgreSQL database, unless `customize` sets another `database.url`. A test that
/// reads the SQLite file itself asks for `Engine::Sqlite`.
pub async fn spawn(
    clock: Arc<dyn switchboard::clock::Clock>,
    engine: Engine,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> (TestApp, Arc<switchboard::sla::scheduler::Scheduler>) {
    spawn_on(clock, engine, None, customize).await
}

/// The app on the port `held` has held since it was picked (a peer was told it first), on the
/// default engine.
pub async fn spawn_app_held(
    held: HeldPort,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> TestApp {
    let port = held.port;
    spawn_on(
        Arc::new(switchboard::clock::SystemClock),
        default_engine(),
        Some(held.listener),
        move |s, dir| {
            s.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
            s.server.public_url = format!("http://127.0.0.1:{port}");
            customize(s, dir)
        },
    )
    .await
    .0
}

/// [`spawn`], serving on `listener` when given one.
async fn spawn_on(
    clock: Arc<dyn switchboard::clock::Clock>,
    engine: Engine,
    listener: Option<std::net::TcpListener>,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> (TestApp, Arc<switchboard::sla::scheduler::Scheduler>) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = base_settings();
    let sqlite = format!("sqlite://{}/sb.db", dir.path().display());
    s.database.url = Secret::new(sqlite.clone());
    // By default sends go nowhere useful; tests that send point this at a stub.
    s.sms.outbound.url = "http://127.0.0.1:9/cgi-bin/sendsms".into();
    customize(&mut s, dir.path());
    let mut pg_database = None;
    if engine == Engine::Postgres && s.database.url.expose() == sqlite {
        let url = fresh_pg_database().await;
        s.database.url = Secret::new(url.clone());
        pg_database = Some(url);
    }
    let app = Application::build_on(s, clock, listener)
        .await
        .expect("app builds");
    let sla = app.sla();
    let port = app.port();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let app = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        state,
        client: reqwest::Client::new(),
        stop: Some(tx),
        handle: Some(handle),
        dir,
        pg_database,
    };
    (app, sla)
}

impl TestApp {
    /// Stops like SIGTERM does and returns the data directory (kept until dropped). A
    /// PostgreSQL database made by [`spawn_app_on`] is dropped.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean stop");
        }
        if let Some(url) = self.pg_database.take() {
            drop_pg_database(&url).await;
        }
        self.dir
    }

    /// Runs one SQL statement on the app's own database, either engine (for a row no API
    /// writes: a newer version's, a hand-edited one).
    pub async fn exec(&self, sql: &str) {
        let url = self.state.settings.database.url.expose().to_string();
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    pub fn store(&self) -> Arc<dyn switchboard::store::Store> {
        self.state.intake.store.clone()
    }

    /// Creates an admin API token with `role` and returns it.
    pub async fn token(&self, role: &str) -> String {
        let token = format!("test-{role}-{}", rand_suffix());
        self.store()
            .insert_api_token(role, role, &switchboard::http::api::hash_token(&token), 0)
            .await
            .unwrap();
        token
    }

    /// An admin API call with a bearer token: (status, JSON body; the text as a JSON string
    /// when it is not JSON).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.api_with(method, path, Some(token), body).await
    }

    /// As [`TestApp::api`], with or without a bearer token.
    pub async fn api_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            other => panic!("method {other}"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        (st, json_or_text(r.text().await.unwrap()))
    }

    /// A POST with a bearer token and a raw body: (status, JSON body).
    pub async fn post_with(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, json_or_text(r.text().await.unwrap()))
    }

    /// The latest outbound message.
    /// The newest `n` outbound messages, newest first, as they read (queued acks with the
    /// text their sends will render).
    #[allow(dead_code)]
    pub async fn recent_out(&self, n: i64) -> Vec<switchboard::store::MessageRecord> {
        let mut v = self.store().recent_messages("out", n).await.unwrap();
        let acks = self.state.intake.acks();
        v.iter_mut().for_each(|m| acks.show(m));
        v
    }

    /// The newest outbound message, as it reads (a queued ack with the text its send will
    /// render).
    pub async fn last_out(&self) -> switchboard::store::MessageRecord {
        let mut m = self
            .store()
            .recent_messages("out", 1)
            .await
            .unwrap()
            .remove(0);
        self.state.intake.acks().show(&mut m);
        m
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.text().await.unwrap())
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.text().await.unwrap())
    }

    /// Kannel's GET: an MO `id` from `from` to 10000 with UTF-8 `text` (each value
    /// form-encoded): (status, body).
    pub async fn kannel_mo(&self, id: &str, from: &str, text: &str) -> (u16, String) {
        self.get(&format!(
            "/inbound/sms/kannel?id={}&from={}&to=10000&text={}",
            enc(id),
            enc(from),
            enc(text)
        ))
        .await
    }

    /// Jasmin's POST: `form` as Jasmin sends it (`id=..&from=..&to=..&coding=%00&content=..`):
    /// (status, body; `ACK/Jasmin` when taken).
    pub async fn jasmin(&self, form: impl Into<reqwest::Body>) -> (u16, String) {
        self.post("/inbound/sms/jasmin", FORM, form).await
    }

    /// Twilio's form POST, unsigned: (status, TwiML or error body).
    pub async fn twilio(&self, form: impl Into<reqwest::Body>) -> (u16, String) {
        self.post("/inbound/sms/twilio", FORM, form).await
    }

    /// The generic JSON webhook; `json` is sent as is, so it may be malformed: (status, body).
    pub async fn generic(&self, json: impl Into<reqwest::Body>) -> (u16, String) {
        self.post("/inbound/sms", "application/json", json).await
    }

    /// A raw email (`message/rfc822`) to `POST /inbound/email`: (status, JSON answer). Every
    /// answer of this route, error or not, must be JSON.
    pub async fn email(&self, raw: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}/inbound/email", self.base))
            .header("content-type", "message/rfc822")
            .body(raw)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let t = r.text().await.unwrap();
        assert_eq!(ct.as_deref(), Some("application/json"), "{st} {t}");
        (st, serde_json::from_str(&t).unwrap())
    }
}

/// The content type of Kannel's POST, Jasmin's and Twilio's webhooks.
pub const FORM: &str = "application/x-www-form-urlencoded";

fn json_or_text(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// A file of `fixtures/email/`.
pub fn email_fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/email")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// A port that was free a moment ago (for the real binary and peers, which bind it themselves).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A gateway port picked as [`free_ports`] picks them and held (bound, listening) until
/// [`spawn_app_held`] serves it, for a test that must tell a peer the port (Kannel's or
/// Jasmin's MO URL) before the gateway starts: nothing else can take it meanwhile.
pub struct HeldPort {
    pub port: u16,
    listener: std::net::TcpListener,
}

impl HeldPort {
    #[allow(clippy::new_without_default)]
    pub fn new() -> HeldPort {
        let listener = pick_listeners(1).pop().expect("one");
        HeldPort {
            port: listener.local_addr().unwrap().port(),
            listener,
        }
    }

    /// `port` bound now (a test that left it closed on purpose until this moment).
    pub fn bind(port: u16) -> HeldPort {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
        HeldPort { port, listener }
    }
}

/// `n` distinct ports that were free a moment ago, for servers that bind them themselves (the
/// real binary, Kannel, Jasmin). They are taken *below* the kernel's ephemeral range: a port
/// from `bind(0)` lies inside it, so an outgoing connection (Jasmin's to Redis, say) could be
/// handed the same port between this check and the server's bind — a CI run lost a test to
/// "Address already in use" that way. Random, so parallel test processes rarely meet; checked
/// free; never handed out twice by one process.
pub fn free_ports(n: usize) -> Vec<u16> {
    pick_listeners(n)
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Listeners on `n` distinct ports picked as [`free_ports`] describes.
fn pick_listeners(n: usize) -> Vec<std::net::TcpListener> {
    use rand::Rng;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let low = ephemeral_low();
    let lo = low.saturating_sub(12_000).max(10_000);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut rng = rand::thread_rng();
    for _ in 0..100_000 {
        if held.len() == n {
            break;
        }
        let l = if lo < low {
            let p = rng.gen_range(lo..low);
            if given.contains(&p) {
                continue;
            }
            std::net::TcpListener::bind(("127.0.0.1", p))
        } else {
            // An ephemeral range reaching down to 10,000: nothing lies below it to pick from.
            std::net::TcpListener::bind("127.0.0.1:0")
        };
        if let Ok(l) = l {
            given.insert(l.local_addr().unwrap().port());
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "found no {n} free ports in {lo}..{low}");
    held
}

/// The low end of the kernel's ephemeral port range (Linux's default when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Waits up to 20 s until the real binary on 127.0.0.1:`port` answers `/readyz` with a 2xx.
pub async fn wait_ready(port: u16) {
    let c = reqwest::Client::new();
    eventually(Duration::from_secs(20), || {
        let c = c.clone();
        let url = format!("http://127.0.0.1:{port}/readyz");
        async move {
            c.get(url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await
    .expect("gateway ready");
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends SIGTERM to a child process (the real binary's graceful stop).
pub fn sigterm(child: &Child) {
    // SAFETY: plain kill(2) on our own, not yet reaped, child pid.
    unsafe {
        kill(child.id() as i32, 15);
    }
}

/// Runs `switchboard ingest-email` on `db` with `input` on stdin, extra `env` and `args`:
/// (exit code, or -1 on a signal; stderr).
pub fn ingest_email(db: &str, input: &[u8], env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("ingest-email")
        .args(args)
        .env("SWITCHBOARD__DATABASE__URL", db)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // The child may exit before reading everything (an abort, a bad flag).
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One request the stub bridge received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    /// Query parameters (form-decoded, lossy).
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .chain(url::form_urlencoded::parse(&self.body))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
    /// A parameter's raw bytes (percent-decoded, not UTF-8 checked).
    pub fn param_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.query.split('&').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k == name)
                .then(|| percent_encoding::percent_decode_str(&v.replace('+', " ")).collect())
        })
    }
}

#[derive(Clone)]
struct StubState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
    default: Arc<Mutex<(u16, String)>>,
    delay: Arc<Mutex<Duration>>,
}

/// A stand-in SMS bridge on loopback: records every request and answers from a script, then
/// with a default answer.
pub struct StubBridge {
    pub url: String,
    state: StubState,
    _task: JoinHandle<()>,
}

impl StubBridge {
    pub async fn start(default_status: u16, default_body: &str) -> StubBridge {
        let state = StubState {
            requests: Arc::default(),
            script: Arc::default(),
            default: Arc::new(Mutex::new((default_status, default_body.to_string()))),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
        };
        let app = axum::Router::new()
            .fallback(stub_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StubBridge {
            url: format!("http://127.0.0.1:{port}"),
            state,
            _task: task,
        }
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, answers: &[(u16, &str)]) {
        let mut s = self.state.script.lock().unwrap();
        for (st, b) in answers {
            s.push_back((*st, b.to_string()));
        }
    }

    pub fn set_default(&self, status: u16, body: &str) {
        *self.state.default.lock().unwrap() = (status, body.to_string());
    }

    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        eventually(timeout, || async {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "stub bridge: expected {n} requests, got {}",
                self.requests().len()
            )
        })
    }
}

async fn stub_handler(
    State(s): State<StubState>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    s.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: q.unwrap_or_default(),
        body: body.to_vec(),
        at: Instant::now(),
    });
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (st, b) = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| s.default.lock().unwrap().clone());
    (StatusCode::from_u16(st).unwrap(), b)
}

/// Polls `f` every 20 ms until it yields `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Percent-encodes raw bytes for a query string.
pub fn enc_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02X}")).collect()
}
