//! Test helpers: spawn the app on port 0 with a fresh database, a stub HTTP bridge that
//! records requests, fresh PostgreSQL databases, and polling with a deadline.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use std::collections::VecDeque;
use std::future::Future;
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

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub state: AppState,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

/// Spawns the application with a fresh SQLite database (unless `customize` sets another URL).
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
    let dir = tempfile::tempdir().unwrap();
    let mut s = base_settings();
    s.database.url = Secret::new(format!("sqlite://{}/sb.db", dir.path().display()));
    // By default sends go nowhere useful; tests that send point this at a stub.
    s.sms.outbound.url = "http://127.0.0.1:9/cgi-bin/sendsms".into();
    customize(&mut s, dir.path());
    let app = Application::build_with_clock(s, clock)
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
    };
    (app, sla)
}

impl TestApp {
    /// Stops like SIGTERM does and returns the data directory (kept until dropped).
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean stop");
        }
        self.dir
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

    /// An admin API call with a bearer token: (status, JSON body; `null` when not JSON).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            other => panic!("method {other}"),
        }
        .bearer_auth(token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(serde_json::Value::Null))
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
        (st, r.json().await.unwrap_or(serde_json::Value::Null))
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
