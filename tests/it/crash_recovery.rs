//! Durability: SIGKILL the real binary while a load client posts Kannel MOs. Every message that
//! got a 2xx must be in the database with its case and a queued ack; after a restart with the
//! sender pointed at a stub bridge, every ack is sent exactly once.

use crate::common::{StubBridge, eventually, free_port, sigterm, wait_ready};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn spawn_gateway(port: u16, db: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("serve")
        .env("SWITCHBOARD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SWITCHBOARD__SERVER__PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env("SWITCHBOARD__DATABASE__URL", db)
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn switchboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_answered_2xx_and_acks_go_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/crash.db", dir.path().display());
    let port = free_port();
    let mut child = spawn_gateway(
        port,
        &db,
        &[("SWITCHBOARD__SMS__OUTBOUND__PAUSED", "true".into())],
    );
    wait_ready(port).await;

    // 16 clients post unique MOs (each from its own customer) until the server dies.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..16 {
        let acked = acked.clone();
        let client = client.clone();
        clients.spawn(async move {
            for i in 0..5_000u32 {
                let id = format!("crash-{c}-{i}");
                let url = format!(
                    "http://127.0.0.1:{port}/inbound/sms/kannel?id={id}&from=8613{c:02}{i:07}&to=10000&coding=0&charset=UTF-8&text=%E6%96%AD%E7%BD%91%E4%BA%86+{i}"
                );
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                    Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        });
    }
    // Kill once a good number of messages are in, while requests are in flight.
    eventually(Duration::from_secs(60), || async {
        (acked.lock().unwrap().len() >= 1500).then_some(())
    })
    .await
    .expect("load reached 1500 messages");
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    while clients.join_next().await.is_some() {}
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 1500);

    // Every 2xx message is there with its case and a queued ack.
    let store = switchboard::store::open(&db, 2, 8).await.unwrap();
    let ins = store.recent_messages("in", 1_000_000).await.unwrap();
    let by_id: HashMap<String, &switchboard::store::MessageRecord> = ins
        .iter()
        .filter_map(|m| m.external_id.clone().map(|e| (e, m)))
        .collect();
    let mut ack_ids = HashSet::new();
    for id in &acked {
        let m = by_id
            .get(id)
            .unwrap_or_else(|| panic!("message {id} answered 200 but not stored"));
        let case = m.case_id.unwrap_or_else(|| panic!("{id} has no case"));
        let msgs = store.case_messages(case).await.unwrap();
        let acks: Vec<_> = msgs
            .iter()
            .filter(|x| x.direction == "out" && x.kind.map(|k| k.as_str()) == Some("ack"))
            .collect();
        assert_eq!(acks.len(), 1, "{id}: exactly one ack queued");
        assert_eq!(acks[0].status, "queued");
        ack_ids.insert(acks[0].id.get());
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.outbox as usize, counts.messages_out as usize,
        "every stored ack is in the outbox"
    );
    assert!(counts.messages_in as usize >= acked.len());
    store.close().await;

    // Restart with a sender: every queued ack goes out exactly once.
    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let mut child = spawn_gateway(
        port,
        &db,
        &[
            (
                "SWITCHBOARD__SMS__OUTBOUND__URL",
                format!("{}/cgi-bin/sendsms", bridge.url),
            ),
            ("SWITCHBOARD__SMS__OUTBOUND__RATE_PER_SEC", "2000".into()),
            ("SWITCHBOARD__SMS__OUTBOUND__CONCURRENCY", "16".into()),
        ],
    );
    wait_ready(port).await;
    let total = counts.messages_out as usize;
    bridge.wait_for(total, Duration::from_secs(120)).await;
    let store = switchboard::store::open(&db, 2, 8).await.unwrap();
    eventually(Duration::from_secs(30), || async {
        (store.counts().await.unwrap().outbox == 0).then_some(())
    })
    .await
    .expect("outbox drained");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reqs = bridge.requests();
    let mut per_msg: HashMap<i64, usize> = HashMap::new();
    for r in &reqs {
        let dlr = r.param("dlr-url").expect("dlr-url");
        let msg: i64 = dlr
            .split("msg=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        *per_msg.entry(msg).or_default() += 1;
    }
    assert_eq!(reqs.len(), total, "one request per ack");
    assert!(per_msg.values().all(|&n| n == 1), "no ack sent twice");
    assert!(
        ack_ids.iter().all(|id| per_msg.contains_key(id)),
        "every 2xx message's ack was sent"
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM stops the gateway cleanly: {status:?}"
    );
    store.close().await;
}

/// A campaign survives SIGKILL in the middle of its dispatch: started on the real binary with
/// sending paused, killed while its recipients are being queued, restarted with a bridge:
/// every recipient gets exactly one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_campaign_and_restart_sends_exactly_one_message_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/camp.db", dir.path().display());
    let port = free_port();
    let quiet = [
        (
            "SWITCHBOARD__CAMPAIGNS__COMMERCIAL_QUIET_HOURS",
            "00:00-00:00".to_string(),
        ),
        (
            "SWITCHBOARD__CAMPAIGNS__SERVICE_QUIET_HOURS",
            "00:00-00:00".to_string(),
        ),
    ];
    let mut first = quiet.to_vec();
    first.push(("SWITCHBOARD__SMS__OUTBOUND__PAUSED", "true".into()));
    let mut child = spawn_gateway(port, &db, &first);
    wait_ready(port).await;
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "create", "--name", "mk", "--role", "marketing"])
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1/campaigns");
    let v: serde_json::Value = c
        .post(&base)
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "停机检修", "kind": "notice", "channel": "sms", "rate_per_sec": 400.0,
            "template": "{{ name }}您好，本小区今晚22点至24点网络检修。",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["campaign"]["id"].as_i64().expect("created");
    let n = 3_000;
    let mut csv = String::from("phone,name\n");
    for i in 0..n {
        csv.push_str(&format!("1370000{i:04},客户{i}\n"));
    }
    let r = c
        .post(format!("{base}/{id}/recipients"))
        .bearer_auth(&token)
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/{id}/start"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Kill once part of the campaign is queued.
    let store = switchboard::store::open(&db, 2, 8).await.unwrap();
    eventually(Duration::from_secs(30), || async {
        (store.counts().await.unwrap().outbox >= 600).then_some(())
    })
    .await
    .expect("the dispatcher queues");
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let queued_at_kill = store.counts().await.unwrap().outbox;
    assert!(
        queued_at_kill < n as i64,
        "killed mid-campaign ({queued_at_kill})"
    );
    store.close().await;

    let bridge = StubBridge::start(202, "0: Accepted for delivery").await;
    let mut second = quiet.to_vec();
    second.push((
        "SWITCHBOARD__SMS__OUTBOUND__URL",
        format!("{}/cgi-bin/sendsms", bridge.url),
    ));
    second.push(("SWITCHBOARD__SMS__OUTBOUND__RATE_PER_SEC", "2000".into()));
    second.push(("SWITCHBOARD__SMS__OUTBOUND__CONCURRENCY", "16".into()));
    let mut child = spawn_gateway(port, &db, &second);
    wait_ready(port).await;
    bridge.wait_for(n, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for r in bridge.requests() {
        *per.entry(r.param("to").unwrap()).or_default() += 1;
    }
    assert_eq!(per.len(), n, "everyone");
    assert!(per.values().all(|&k| k == 1), "nobody twice");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}
