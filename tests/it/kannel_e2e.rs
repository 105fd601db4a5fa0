//! End to end through a real Kannel 1.4.5: fakesmsc injects MOs, bearerbox + smsbox call our
//! webhook, intake opens a case, the outbox worker sends the acknowledgement through Kannel's
//! sendsms, and fakesmsc receives it; Kannel's delivery reports come back to /dlr/kannel.
//! Needs Debian `kannel` and `kannel-extras` (installed by .ci/run); fails loudly without them.

use crate::common::{HeldPort, eventually, spawn_app_held};
use crate::support::kannel;
use kannel::Kannel;
use std::sync::Arc;
use std::time::Duration;

const GET_URL_QUERY: &str = "id=%I&from=%p&to=%P&ts=%T&coding=%c&charset=%C&text=%b&smsc=%i&udh=%u";

async fn start_kannel(gateway_port: u16, mo_recode: bool) -> Arc<Kannel> {
    let url = format!("http://127.0.0.1:{gateway_port}/inbound/sms/kannel?{GET_URL_QUERY}");
    let k = tokio::task::spawn_blocking(move || Kannel::start(&url, mo_recode))
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("starting Kannel failed (apt-get install kannel kannel-extras): {e}")
        });
    Arc::new(k)
}

async fn wait_mts(k: &Arc<Kannel>, n: usize) -> Vec<kannel::ReceivedMt> {
    let k = k.clone();
    tokio::task::spawn_blocking(move || k.wait_for_mts(n, Duration::from_secs(20)))
        .await
        .unwrap()
}

async fn run_end_to_end(mo_recode: bool) {
    // Kannel's get-url needs the gateway's port and the gateway's sender needs Kannel's:
    // hold a port for the gateway, start Kannel, then serve the gateway on it.
    let held = HeldPort::new();
    let gateway_port = held.port;
    let k = start_kannel(gateway_port, mo_recode).await;
    let (user, pass, url) = (
        k.username().to_string(),
        k.password().to_string(),
        k.sendsms_url(),
    );
    let app = spawn_app_held(held, move |s, _| {
        s.sms.outbound.url = url;
        s.sms.outbound.username = user;
        s.sms.outbound.password = switchboard::config::Secret::new(pass);
        s.sms.outbound.dlr_mask = 31;
    })
    .await;

    k.inject_ucs2("8613800138000", "10000", "我要投诉，宽带断网三天了");
    k.inject_text(
        "8613900139000",
        "10000",
        "My phone has no signal since yesterday",
    );
    let mts = wait_mts(&k, 2).await;
    assert_eq!(mts.len(), 2, "{mts:?}\n{}", k.logs());

    let store = app.store();
    let cases = eventually(Duration::from_secs(5), || async {
        let c = store.counts().await.unwrap();
        (c.cases == 2).then_some(c)
    })
    .await
    .expect("two cases");
    assert_eq!(cases.messages_in, 2);

    let ins = store.recent_messages("in", 10).await.unwrap();
    let zh_in = ins
        .iter()
        .find(|m| m.from_addr == "+8613800138000")
        .expect("Chinese MO stored");
    assert_eq!(zh_in.body, "我要投诉，宽带断网三天了");
    assert_eq!(zh_in.category.as_deref(), Some("complaint"));
    let en_in = ins
        .iter()
        .find(|m| m.from_addr == "+8613900139000")
        .expect("English MO stored");
    assert_eq!(en_in.body, "My phone has no signal since yesterday");
    assert_eq!(en_in.category.as_deref(), Some("fault"));
    assert!(
        en_in
            .external_id
            .as_deref()
            .is_some_and(|id| id.len() == 36),
        "Kannel %I is a UUID"
    );

    let zh_mt = mts
        .iter()
        .find(|m| m.to == "8613800138000")
        .expect("ack to the Chinese customer");
    assert_eq!(zh_mt.from, "10000");
    assert_eq!(zh_mt.kind, "ucs-2");
    let zh_case = format!("SB{:08}", zh_in.case_id.unwrap().get());
    assert!(
        zh_mt.text.contains(&zh_case) && zh_mt.text.contains("投诉已受理"),
        "{}",
        zh_mt.text
    );
    let en_mt = mts
        .iter()
        .find(|m| m.to == "8613900139000")
        .expect("ack to the English customer");
    assert_eq!(en_mt.kind, "text");
    let en_case = format!("SB{:08}", en_in.case_id.unwrap().get());
    assert!(
        en_mt.text.contains(&format!("case {en_case}")) && en_mt.text.contains("fault"),
        "{}",
        en_mt.text
    );

    // Kannel's fake SMSC reports delivery: the ack ends up delivered.
    let delivered = eventually(Duration::from_secs(10), || async {
        let outs = store.recent_messages("out", 10).await.unwrap();
        outs.iter().all(|m| m.status == "delivered").then_some(outs)
    })
    .await;
    assert!(
        delivered.is_some(),
        "acks delivered: {:?}",
        store.recent_messages("out", 10).await.unwrap()
    );

    // The same customer writing again makes no second case: the message joins the open case.
    k.inject_ucs2("8613800138000", "10000", "我要投诉，宽带断网三天了");
    let mts = wait_mts(&k, 3).await;
    assert_eq!(mts.len(), 3);
    let reply = &mts[2];
    assert!(
        reply.text.contains(&zh_case),
        "reply ack names the same case: {}",
        reply.text
    );
    let c = store.counts().await.unwrap();
    assert_eq!((c.cases, c.messages_in), (2, 3));
    let case = store.case(zh_in.case_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(case.message_count, 2);
    app.shutdown().await;
    drop(k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_ucs2_mo_without_recode_gets_an_ack_back_through_kannel() {
    run_end_to_end(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_mo_recode_utf8_gets_an_ack_back_through_kannel() {
    run_end_to_end(true).await;
}
