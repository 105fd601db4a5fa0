//! Hostile input over HTTP on both engines: every field of every webhook route replaced in
//! turn by a NUL byte, a 3,000-byte value, bytes that are not UTF-8, a lone UTF-16 surrogate,
//! control characters, an empty value, and the field left out. No answer may be a 5xx (these
//! are not outages), every 4xx has the JSON error shape, and the gateway still takes a valid
//! message at the end.

use crate::common::{self, Engine, spawn_app_on};

/// A route and a valid form/query for it, as `(name, value)` pairs.
struct Route {
    method: &'static str,
    path: &'static str,
    /// Fields go in the query (GET) or a urlencoded body (POST form), or a JSON object.
    json: bool,
    fields: Vec<(&'static str, String)>,
}

fn routes() -> Vec<Route> {
    let kannel = vec![
        ("id", "k-1".to_string()),
        ("from", "13800138000".into()),
        ("to", "10000".into()),
        ("ts", "1795645874".into()),
        ("coding", "0".into()),
        ("charset", "UTF-8".into()),
        ("text", "%E6%88%91%E8%A6%81%E6%8A%95%E8%AF%89".into()),
        ("smsc", "fake".into()),
        ("udh", "".into()),
    ];
    let jasmin = vec![
        ("id", "2fd7025b-8e32-423a-afb4-02d7e69028c2".to_string()),
        ("from", "8613800138000".into()),
        ("to", "10000".into()),
        ("origin-connector", "smsc".into()),
        ("content", "O%60Y%7D".into()),
        ("binary", "4f60597d".into()),
        ("priority", "0".into()),
        ("coding", "%08".into()),
    ];
    vec![
        Route {
            method: "GET",
            path: "/inbound/sms/kannel",
            json: false,
            fields: kannel.clone(),
        },
        Route {
            method: "POST",
            path: "/inbound/sms/kannel",
            json: false,
            fields: kannel,
        },
        Route {
            method: "GET",
            path: "/inbound/sms/jasmin",
            json: false,
            fields: jasmin.clone(),
        },
        Route {
            method: "POST",
            path: "/inbound/sms/jasmin",
            json: false,
            fields: jasmin,
        },
        Route {
            method: "POST",
            path: "/inbound/sms/twilio",
            json: false,
            fields: vec![
                ("MessageSid", "SM1".into()),
                ("From", "%2B8613800138000".into()),
                ("To", "10000".into()),
                ("Body", "hello".into()),
            ],
        },
        Route {
            method: "POST",
            path: "/inbound/sms",
            json: true,
            fields: vec![
                ("id", "g-1".into()),
                ("from", "13800138000".into()),
                ("to", "10000".into()),
                ("text", "hello".into()),
            ],
        },
        Route {
            method: "GET",
            path: "/dlr/kannel",
            json: false,
            fields: vec![
                ("msg", "1".into()),
                ("type", "1".into()),
                ("reply", "ACK%2F".into()),
                ("smsc_id", "abc".into()),
            ],
        },
        Route {
            method: "POST",
            path: "/dlr/jasmin",
            json: false,
            fields: vec![
                ("id", "edc7cdb1-5e61-4ecb-8a3b-4f24eea2b938".into()),
                ("level", "3".into()),
                ("message_status", "DELIVRD".into()),
                ("connector", "smsc".into()),
                ("id_smsc", "8F7ABFFB0001".into()),
                ("err", "000".into()),
                ("text", "hi".into()),
            ],
        },
        Route {
            method: "POST",
            path: "/dlr/generic",
            json: true,
            fields: vec![
                ("id", "1".into()),
                ("status", "delivered".into()),
                ("detail", "ok".into()),
            ],
        },
    ]
}

/// Hostile replacements, urlencoded for forms; `None` leaves the field out.
fn hostile_form_values() -> Vec<(&'static str, Option<String>)> {
    vec![
        ("nul", Some("a%00b".into())),
        ("long", Some("9".repeat(3000))),
        ("not-utf8", Some("%FF%FE%C0".into())),
        ("lone-surrogate-ucs2", Some("%D8%3D".into())),
        ("controls", Some("%01%02%1B%7F".into())),
        ("empty", Some(String::new())),
        ("percent-garbage", Some("%ZZ%".into())),
        ("missing", None),
    ]
}

fn hostile_json_values() -> Vec<(&'static str, Option<serde_json::Value>)> {
    vec![
        ("nul", Some("a\u{0}b".into())),
        ("long", Some("9".repeat(3000).into())),
        (
            "lone-surrogate",
            Some(serde_json::Value::String("\u{FFFD}".into())),
        ),
        ("controls", Some("\u{1}\u{1b}".into())),
        ("empty", Some("".into())),
        ("number", Some(serde_json::json!(12345678901234567890u64))),
        ("object", Some(serde_json::json!({"x": [1, 2]}))),
        ("missing", None),
    ]
}

async fn send(app: &common::TestApp, r: &Route, body: Vec<u8>, json: bool) -> (u16, String) {
    let url = if r.method == "GET" {
        format!("{}{}?{}", app.base, r.path, String::from_utf8_lossy(&body))
    } else {
        format!("{}{}", app.base, r.path)
    };
    let req = if r.method == "GET" {
        app.client.get(&url)
    } else {
        let ct = if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        app.client.post(&url).header("content-type", ct).body(body)
    };
    let resp = req.send().await.expect("the gateway answers");
    let st = resp.status().as_u16();
    (st, resp.text().await.unwrap_or_default())
}

async fn attack(app: &common::TestApp, label: &str) -> usize {
    let mut n = 0;
    for r in routes() {
        for (i, (field, _)) in r.fields.iter().enumerate() {
            let cases: Vec<(String, Vec<u8>)> = if r.json {
                hostile_json_values()
                    .into_iter()
                    .map(|(what, v)| {
                        let mut o = serde_json::Map::new();
                        for (j, (k, good)) in r.fields.iter().enumerate() {
                            let val = if j == i {
                                v.clone()
                            } else if *k == "id" && r.path == "/dlr/generic" {
                                Some(serde_json::json!(1))
                            } else {
                                Some(serde_json::Value::String(good.clone()))
                            };
                            if let Some(val) = val {
                                o.insert((*k).to_string(), val);
                            }
                        }
                        (what.to_string(), serde_json::to_vec(&o).unwrap())
                    })
                    .collect()
            } else {
                hostile_form_values()
                    .into_iter()
                    .map(|(what, v)| {
                        let parts: Vec<String> = r
                            .fields
                            .iter()
                            .enumerate()
                            .filter_map(|(j, (k, good))| {
                                if j == i {
                                    v.as_ref().map(|v| format!("{k}={v}"))
                                } else {
                                    Some(format!("{k}={good}"))
                                }
                            })
                            .collect();
                        (what.to_string(), parts.join("&").into_bytes())
                    })
                    .collect()
            };
            for (what, body) in cases {
                let (st, text) = send(app, &r, body, r.json).await;
                n += 1;
                assert!(
                    st < 500,
                    "{label}: {} {} with {field}={what} answered {st}: {text}",
                    r.method,
                    r.path
                );
                if st >= 400 {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                        panic!(
                            "{label}: {} {} {field}={what}: {st} without the JSON shape: {text:?}",
                            r.method, r.path
                        )
                    });
                    assert!(v["error"]["message"].is_string(), "{text}");
                }
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_every_route_survives_hostile_values_on_both_engines() {
    for engine in Engine::BOTH {
        let app = spawn_app_on(engine, |s, _| {
            s.sms.outbound.enabled = true;
            s.sms.outbound.rate_per_sec = 0.001;
        })
        .await;
        let label = engine.label();
        let n = attack(&app, label).await;
        assert!(n > 300, "only {n} hostile requests");
        // Alive, and a valid message is still taken.
        let (st, body) = app
            .generic(r#"{"id":"after-1","from":"13800138099","to":"10000","text":"我要投诉"}"#)
            .await;
        assert_eq!(st, 200, "{label}: {body}");
        assert_eq!(app.get("/healthz").await.0, 200);
        app.shutdown().await;
    }
}

/// The database going away under traffic: every connection of the gateway's PostgreSQL
/// database is terminated three times while 8 senders post Kannel MOs. An MO may be refused
/// (503, so the bridge retries) but never for long: each refused one, retried as a bridge
/// does, is taken within 10 s. Every MO answered 2xx is stored, each once, and the gateway is
/// ready afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_killed_under_traffic_lose_nothing_and_recover() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let bridge = common::StubBridge::start(202, "0: Accepted for delivery").await;
    let burl = format!("{}/cgi-bin/sendsms", bridge.url);
    let app = Arc::new(
        spawn_app_on(Engine::Postgres, move |s, _| {
            s.sms.outbound.url = burl;
            s.sms.outbound.rate_per_sec = 2000.0;
            s.sms.outbound.dlr = true;
        })
        .await,
    );
    let url = app.state.settings.database.url.expose().to_string();
    let db = url.rsplit('/').next().unwrap().to_string();
    let taken = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for w in 0..8 {
        let (app, taken, refused, stop) =
            (app.clone(), taken.clone(), refused.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("kill-{w}-{i}");
                let from = format!("1380013{w}{:03}", i % 1000);
                let (st, body) = app.kannel_mo(&id, &from, "宽带断网了，投诉").await;
                match st {
                    200..=299 => {
                        taken.lock().unwrap().insert(id);
                    }
                    503 => refused.lock().unwrap().push((id, from)),
                    other => panic!("{id}: {other} {body}"),
                }
                i += 1;
            }
        }));
    }
    let admin = sqlx::PgPool::connect(&common::pg_admin_url())
        .await
        .unwrap();
    let mut killed = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let n: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(&db)
        .fetch_all(&admin)
        .await
        .unwrap();
        killed += n.len();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(killed > 0, "no connection was terminated");
    // Each refused MO, retried as a bridge retries it, is taken soon.
    let retry = refused.lock().unwrap().clone();
    for (id, from) in &retry {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (st, body) = app.kannel_mo(id, from, "宽带断网了，投诉").await;
            if (200..300).contains(&st) {
                taken.lock().unwrap().insert(id.clone());
                break;
            }
            assert!(
                st == 503 && Instant::now() < deadline,
                "{id} still refused: {st} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let taken = taken.lock().unwrap().clone();
    assert!(taken.len() > 50, "only {} MOs went through", taken.len());
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT external_id FROM messages WHERE direction = 'in' ORDER BY external_id",
    )
    .fetch_all(&admin_pool(&url).await)
    .await
    .unwrap();
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "an MO stored twice");
    assert_eq!(unique, taken, "stored MOs differ from those answered 2xx");
    let (st, body) = app.get("/readyz").await;
    assert_eq!(st, 200, "{body}");
    // The outbox worker lived through it: every queued ack goes out, each once.
    let store = app.store();
    let drained = common::eventually(Duration::from_secs(30), || async {
        let c = store.counts().await.unwrap();
        (c.outbox == 0).then_some(c)
    })
    .await
    .expect("the outbox drains within 30 s");
    assert!(drained.messages_out > 0);
    let sent = bridge.requests();
    let ids: BTreeSet<String> = sent
        .iter()
        .map(|r| r.param("dlr-url").expect("dlr-url carries the message id"))
        .collect();
    assert_eq!(ids.len(), sent.len(), "an ack sent twice");
    assert_eq!(
        sent.len() as i64,
        drained.messages_out,
        "acks queued vs sent"
    );
    eprintln!(
        "{} MOs taken, {} refused first and taken on retry, {killed} connections terminated",
        taken.len(),
        retry.len()
    );
    Arc::into_inner(app).unwrap().shutdown().await;
}

async fn admin_pool(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.unwrap()
}
