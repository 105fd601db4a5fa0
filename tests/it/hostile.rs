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
