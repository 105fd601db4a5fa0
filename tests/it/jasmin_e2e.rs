//! End to end through a real Jasmin 0.11.0: the SMSC simulator (tests/jasmin/smsc.py) sends
//! MO deliver_sm to Jasmin's SMPP client connector, Jasmin's deliver_sm thrower posts them to
//! our /inbound/sms/jasmin (configured by config/examples/jasmin.txt through jCli), intake
//! opens a case, the outbox worker sends the acknowledgement through Jasmin's /send, the
//! simulator receives the submit_sm and answers with a delivery receipt, and Jasmin's DLR
//! thrower posts it to our /dlr/jasmin. Needs `bash tests/jasmin/setup.sh` (run by
//! tests/run.sh); fails loudly without it.

use crate::common::{HeldPort, TestApp, eventually, free_port, spawn_app_held};
use crate::support::jasmin;
use jasmin::{Concat, Jasmin, Submit};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::config::{Secret, SmsDriver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MO_TOKEN: &str = "jasmin-mo-secret";
const DLR_TOKEN: &str = "jasmin-dlr-secret";
const ZH_CUSTOMER: &str = "8613800138000";
const EN_CUSTOMER: &str = "8613900139000";
const SERVICE: &str = "10000";

fn mo_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/inbound/sms/jasmin?token={MO_TOKEN}")
}

async fn start_jasmin(url: String) -> Arc<Jasmin> {
    let j = tokio::task::spawn_blocking(move || Jasmin::start(&url))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("starting Jasmin failed (bash tests/jasmin/setup.sh): {e}"));
    Arc::new(j)
}

/// The gateway on the port `held` has held since Jasmin was told it, sending through this
/// Jasmin's /send with DLRs requested.
async fn start_gateway(j: &Jasmin, held: HeldPort) -> TestApp {
    let (user, pass, url) = (
        j.username().to_string(),
        j.password().to_string(),
        j.send_url(),
    );
    spawn_app_held(held, move |s, _| {
        s.inbound.jasmin_token = Some(Secret::new(MO_TOKEN.to_string()));
        s.inbound.dlr_token = Some(Secret::new(DLR_TOKEN.to_string()));
        s.sms.outbound.driver = SmsDriver::Jasmin;
        s.sms.outbound.url = url;
        s.sms.outbound.username = user;
        s.sms.outbound.password = Secret::new(pass);
        s.sms.outbound.dlr = true;
    })
    .await
}

async fn blocking<T: Send + 'static>(
    j: &Arc<Jasmin>,
    f: impl FnOnce(&Jasmin) -> T + Send + 'static,
) -> T {
    let j = j.clone();
    tokio::task::spawn_blocking(move || f(&j)).await.unwrap()
}

async fn inject_ucs2(j: &Arc<Jasmin>, from: &'static str, text: &'static str) {
    let st = blocking(j, move |j| j.inject_ucs2(from, SERVICE, text)).await;
    assert_eq!(st.unwrap(), 0, "Jasmin acks the MO deliver_sm");
}

async fn inject_gsm7(j: &Arc<Jasmin>, from: &'static str, text: &'static str) {
    let st = blocking(j, move |j| j.inject_gsm7(from, SERVICE, text)).await;
    assert_eq!(st.unwrap(), 0, "Jasmin acks the MO deliver_sm");
}

/// Wait for `n` messages (concatenated parts joined) at the SMSC.
async fn wait_acks(j: &Arc<Jasmin>, n: usize, timeout: Duration) -> Vec<Vec<Submit>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let msgs = jasmin::messages(&blocking(j, |j| j.submits()).await);
        let complete = msgs
            .iter()
            .filter(|m| m[0].concat_info().is_none_or(|c| m.len() == c.1 as usize))
            .count();
        if complete >= n || std::time::Instant::now() > deadline {
            return msgs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ack_to<'a>(msgs: &'a [Vec<Submit>], to: &str) -> &'a [Submit] {
    msgs.iter()
        .find(|m| m[0].destination_addr == to)
        .unwrap_or_else(|| panic!("no ack to {to}: {msgs:?}"))
}

async fn wait_cases(app: &TestApp, n: i64, j: &Jasmin) -> switchboard::store::Counts {
    let store = app.store();
    let got = eventually(Duration::from_secs(20), || async {
        let c = store.counts().await.unwrap();
        (c.cases >= n).then_some(c)
    })
    .await;
    match got {
        Some(c) => c,
        None => panic!(
            "expected {n} cases, have {:?}\nmessages in: {:?}\n{}",
            store.counts().await.unwrap(),
            store.recent_messages("in", 10).await.unwrap(),
            j.logs()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jasmin_ucs2_and_gsm7_mos_each_open_a_case_and_their_acks_reach_the_smsc() {
    let held = HeldPort::new();
    let port = held.port;
    let j = start_jasmin(mo_url(port)).await;
    let app = start_gateway(&j, held).await;

    inject_ucs2(&j, ZH_CUSTOMER, "我要投诉，宽带断网三天了").await;
    inject_gsm7(&j, EN_CUSTOMER, "My phone has no signal since yesterday").await;

    let c = wait_cases(&app, 2, &j).await;
    assert_eq!((c.cases, c.messages_in), (2, 2), "{}", j.logs());
    let store = app.store();
    let ins = store.recent_messages("in", 10).await.unwrap();
    let zh = ins
        .iter()
        .find(|m| m.from_addr == "+8613800138000")
        .expect("Chinese MO stored");
    assert_eq!(zh.body, "我要投诉，宽带断网三天了");
    assert_eq!(zh.to_addr, SERVICE);
    assert_eq!(zh.dialect, "jasmin");
    assert_eq!(zh.category.as_deref(), Some("complaint"));
    assert!(
        zh.external_id.as_deref().is_some_and(|id| id.len() == 36),
        "Jasmin's MO id is a UUID: {:?}",
        zh.external_id
    );
    let en = ins
        .iter()
        .find(|m| m.from_addr == "+8613900139000")
        .expect("English MO stored");
    assert_eq!(en.body, "My phone has no signal since yesterday");
    assert_eq!(en.category.as_deref(), Some("fault"));
    assert_ne!(zh.case_id, en.case_id);

    let msgs = wait_acks(&j, 2, Duration::from_secs(20)).await;
    let zh_ack = ack_to(&msgs, ZH_CUSTOMER);
    assert_eq!(zh_ack[0].source_addr, SERVICE);
    assert_eq!(zh_ack[0].data_coding, 8, "Chinese ack is UCS-2: {zh_ack:?}");
    assert_eq!(
        zh_ack[0].registered_delivery & 1,
        1,
        "a receipt is requested"
    );
    let zh_text = jasmin::join_submits(zh_ack);
    let zh_case = format!("SB{:08}", zh.case_id.unwrap().get());
    assert!(
        zh_text.contains(&zh_case) && zh_text.contains("投诉已受理"),
        "{zh_text}"
    );
    let en_ack = ack_to(&msgs, EN_CUSTOMER);
    assert_eq!(en_ack[0].data_coding, 0, "English ack is GSM 7-bit");
    let en_text = jasmin::join_submits(en_ack);
    let en_case = format!("SB{:08}", en.case_id.unwrap().get());
    assert!(
        en_text.contains(&format!("case {en_case}")) && en_text.contains("fault"),
        "{en_text}"
    );
    assert_eq!(msgs.len(), 2, "exactly one ack per MO: {msgs:?}");
    app.shutdown().await;
    drop(j);
}

/// One call through the proxy: (request bytes, the gateway's response bytes, relayed?).
type Seen = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>, bool)>>>;

/// Forwards Jasmin's webhook calls to the gateway; for the first `drop_first` calls it reads
/// the gateway's answer and then closes Jasmin's connection without relaying it (the ack is
/// lost on the way back), so Jasmin throws the same MO id again.
struct LossyProxy {
    port: u16,
    seen: Seen,
}

impl LossyProxy {
    async fn start(upstream: u16, drop_first: usize) -> LossyProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let s2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = listener.accept().await else {
                    return;
                };
                let seen = s2.clone();
                tokio::spawn(async move {
                    let req = read_http_request(&mut c).await;
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return; // gateway down: Jasmin sees the connection close
                    };
                    // One request per connection toward the gateway.
                    let req = force_close(&req);
                    up.write_all(&req).await.unwrap();
                    let mut resp = Vec::new();
                    let _ = up.read_to_end(&mut resp).await;
                    let relay = {
                        let mut s = seen.lock().unwrap();
                        let relay = s.len() >= drop_first;
                        s.push((req.clone(), resp.clone(), relay));
                        relay
                    };
                    if relay {
                        let _ = c.write_all(&resp).await;
                    }
                    let _ = c.shutdown().await;
                });
            }
        });
        LossyProxy { port, seen }
    }

    fn seen(&self) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_http_request(c: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match c.read(&mut tmp).await {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// The request with `Connection: close` (Jasmin sends it already; make sure).
fn force_close(req: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(req);
    if text
        .to_ascii_lowercase()
        .contains("\r\nconnection: close\r\n")
    {
        return req.to_vec();
    }
    let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    [&req[..end], b"\r\nConnection: close", &req[end..]].concat()
}

fn form_field(req: &[u8], name: &str) -> Option<String> {
    let end = req.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body = &req[end + 4..];
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jasmin_rethrowing_the_same_mo_id_after_a_lost_ack_adds_no_message_case_or_ack() {
    let held = HeldPort::new();
    let port = held.port;
    let proxy = LossyProxy::start(port, 1).await;
    let j = start_jasmin(format!(
        "http://127.0.0.1:{}/inbound/sms/jasmin?token={MO_TOKEN}",
        proxy.port
    ))
    .await;
    let app = start_gateway(&j, held).await;

    inject_gsm7(&j, EN_CUSTOMER, "My phone has no signal since yesterday").await;

    // Jasmin saw its connection close without an answer and threw the same id again (retry_delay 1 s).
    let seen = eventually(Duration::from_secs(20), || async {
        let s = proxy.seen();
        (s.len() >= 2).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("no second throw: {:?}\n{}", proxy.seen(), j.logs()));
    let id1 = form_field(&seen[0].0, "id").expect("id in first throw");
    let id2 = form_field(&seen[1].0, "id").expect("id in second throw");
    assert_eq!(id1, id2, "Jasmin retries with the same id");
    for (req, resp, _) in &seen[..2] {
        let resp = String::from_utf8_lossy(resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("ACK/Jasmin"),
            "the gateway acks both throws: {resp}\nrequest: {}",
            String::from_utf8_lossy(req)
        );
    }
    assert!(!seen[0].2 && seen[1].2, "first ack lost, second relayed");

    let c = wait_cases(&app, 1, &j).await;
    let msgs = wait_acks(&j, 1, Duration::from_secs(20)).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    // Give a wrongly duplicated intake time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c2 = app.store().counts().await.unwrap();
    assert_eq!((c.cases, c.messages_in), (1, 1));
    assert_eq!(
        (c2.cases, c2.messages_in),
        (1, 1),
        "the retry is a duplicate"
    );
    let ins = app.store().recent_messages("in", 10).await.unwrap();
    assert_eq!(ins[0].external_id.as_deref(), Some(id1.as_str()));
    let msgs = jasmin::messages(&blocking(&j, |j| j.submits()).await);
    assert_eq!(msgs.len(), 1, "one ack only: {msgs:?}");
    assert_eq!(proxy.seen().len(), 2, "acked on the second throw: no third");
    app.shutdown().await;
    drop(j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jasmin_mo_thrown_while_switchboard_is_down_arrives_on_a_later_attempt() {
    let port = free_port(); // nothing listens here until the gateway starts
    let j = start_jasmin(mo_url(port)).await;

    inject_ucs2(&j, ZH_CUSTOMER, "我要投诉，宽带断网三天了").await;
    // Wait until Jasmin's first throw failed (connection refused) and it was requeued.
    let failed = eventually(Duration::from_secs(15), || async {
        let log = blocking(&j, |j| j.mo_thrower_log()).await;
        log.iter()
            .any(|l| l.contains("Throwing message") && l.contains("ERROR"))
            .then_some(log)
    })
    .await;
    assert!(failed.is_some(), "no failed throw logged:\n{}", j.logs());

    let app = start_gateway(&j, HeldPort::bind(port)).await;
    let c = wait_cases(&app, 1, &j).await;
    assert_eq!((c.cases, c.messages_in), (1, 1));
    let ins = app.store().recent_messages("in", 10).await.unwrap();
    assert_eq!(ins[0].body, "我要投诉，宽带断网三天了");
    let msgs = wait_acks(&j, 1, Duration::from_secs(20)).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0][0].destination_addr, ZH_CUSTOMER);
    app.shutdown().await;
    drop(j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jasmin_delivery_receipts_mark_acks_delivered_or_failed() {
    let held = HeldPort::new();
    let port = held.port;
    let j = start_jasmin(mo_url(port)).await;
    let app = start_gateway(&j, held).await;
    let store = app.store();

    inject_ucs2(&j, ZH_CUSTOMER, "我要投诉，宽带断网三天了").await;
    wait_acks(&j, 1, Duration::from_secs(20)).await;
    let delivered = eventually(Duration::from_secs(20), || async {
        let outs = store.recent_messages("out", 10).await.unwrap();
        outs.first().filter(|m| m.status == "delivered").cloned()
    })
    .await;
    let Some(out) = delivered else {
        panic!(
            "ack not delivered: {:?}\n{}",
            store.recent_messages("out", 10).await.unwrap(),
            j.logs()
        )
    };
    assert!(
        out.provider_id.as_deref().is_some_and(|id| id.len() == 36),
        "the /send uuid is kept: {:?}",
        out.provider_id
    );
    // Both of Jasmin's DLRs (level 1 ESME_ROK, level 2 DELIVRD) were acked by /dlr/jasmin.
    // The thrower logs a DLR after our answer reaches it, which can be after the test saw
    // the status our commit set: wait for its line.
    let thrown = |l: &Vec<String>| l.iter().filter(|l| l.contains("Throwed DLR")).count() >= 2;
    let dlr_log = eventually(Duration::from_secs(10), || {
        let j = j.clone();
        async move { Some(blocking(&j, |j| j.dlr_thrower_log()).await).filter(thrown) }
    })
    .await;
    let dlr_log = match dlr_log {
        Some(l) => l,
        None => blocking(&j, |j| j.dlr_thrower_log()).await,
    };
    assert!(
        dlr_log.iter().filter(|l| l.contains("Throwed DLR")).count() >= 2
            && !dlr_log.iter().any(|l| l.contains("ERROR")),
        "{}",
        dlr_log.join("\n")
    );

    // An undeliverable receipt fails the next ack.
    blocking(&j, |j| j.set_receipts("UNDELIV", "001"))
        .await
        .unwrap();
    inject_gsm7(&j, EN_CUSTOMER, "My phone has no signal since yesterday").await;
    wait_acks(&j, 2, Duration::from_secs(20)).await;
    let failed = eventually(Duration::from_secs(20), || async {
        let outs = store.recent_messages("out", 10).await.unwrap();
        outs.into_iter()
            .find(|m| m.to_addr == "+8613900139000" && m.status == "failed")
    })
    .await;
    assert!(
        failed.is_some(),
        "ack to the English customer failed: {:?}\n{}",
        store.recent_messages("out", 10).await.unwrap(),
        j.logs()
    );
    app.shutdown().await;
    drop(j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jasmin_reassembles_long_mos_with_8bit_udh_or_sar_into_one_message_each() {
    let held = HeldPort::new();
    let port = held.port;
    let j = start_jasmin(mo_url(port)).await;
    let app = start_gateway(&j, held).await;

    let zh = "我要投诉，宽带断网三天了，客服电话一直打不通，请尽快派人上门维修，谢谢。这是第二次投诉了。";
    let en = "My phone has had no signal since yesterday morning and the shop says it is a network fault, please send someone to check the tower near my house today";
    let zh_parts = jasmin::long_mo_parts(
        ZH_CUSTOMER,
        SERVICE,
        8,
        &jasmin::ucs2(zh),
        60,
        Concat::Udh8(0x2A),
    );
    let en_parts = jasmin::long_mo_parts(
        EN_CUSTOMER,
        SERVICE,
        0,
        &jasmin::gsm7(en),
        80,
        Concat::Sar(0x1234),
    );
    assert!(zh_parts.len() >= 2 && en_parts.len() >= 2);
    let st = blocking(&j, move |j| {
        let mut st = j.inject_parts(&zh_parts, &(0..zh_parts.len()).collect::<Vec<_>>())?;
        st.extend(j.inject_parts(&en_parts, &(0..en_parts.len()).collect::<Vec<_>>())?);
        Ok::<_, std::io::Error>(st)
    })
    .await
    .unwrap();
    assert!(st.iter().all(|&s| s == 0), "{st:?}");

    let c = wait_cases(&app, 2, &j).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c2 = app.store().counts().await.unwrap();
    assert_eq!((c.cases, c.messages_in), (2, 2));
    assert_eq!(
        (c2.cases, c2.messages_in),
        (2, 2),
        "one message per long MO"
    );
    let ins = app.store().recent_messages("in", 10).await.unwrap();
    let body = |from: &str| {
        ins.iter()
            .find(|m| m.from_addr == from)
            .map(|m| m.body.clone())
    };
    assert_eq!(body("+8613800138000").as_deref(), Some(zh));
    assert_eq!(body("+8613900139000").as_deref(), Some(en));
    app.shutdown().await;
    drop(j);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jasmin_passes_16bit_udh_parts_through_and_switchboard_joins_them_out_of_order() {
    let held = HeldPort::new();
    let port = held.port;
    let j = start_jasmin(mo_url(port)).await;
    let app = start_gateway(&j, held).await;

    // Jasmin 0.11.0 reassembles only 8-bit-reference UDH and SAR; these come one by one,
    // each with its own id and the UDH inside content.
    let zh = "我要投诉，宽带断网三天了，客服电话一直打不通，请尽快派人上门维修，谢谢。这是第二次投诉了。";
    let parts = jasmin::long_mo_parts(
        ZH_CUSTOMER,
        SERVICE,
        8,
        &jasmin::ucs2(zh),
        60,
        Concat::Udh16(0x012C),
    );
    assert_eq!(parts.len(), 2);
    let st = blocking(&j, move |j| j.inject_parts(&parts, &[1, 0]))
        .await
        .unwrap();
    assert_eq!(st, vec![0, 0]);

    let c = wait_cases(&app, 1, &j).await;
    let msgs = wait_acks(&j, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c2 = app.store().counts().await.unwrap();
    assert_eq!(
        (c.cases, c.messages_in),
        (1, 1),
        "one message for two parts"
    );
    assert_eq!((c2.cases, c2.messages_in), (1, 1));
    let ins = app.store().recent_messages("in", 10).await.unwrap();
    assert_eq!(ins[0].body, zh);
    let msgs_now = jasmin::messages(&blocking(&j, |j| j.submits()).await);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs_now.len(), 1, "acknowledged once: {msgs_now:?}");
    app.shutdown().await;
    drop(j);
}
