//! No raw phone number or email address reaches a log: the real binary at `debug` level takes
//! an SMS and an email, sends the SMS ack to a bridge that refuses it while echoing the number
//! back, retries the email ack against a relay that is not there, and refuses a malformed
//! number; its whole stderr is searched for the raw addresses.

use crate::common::{StubBridge, free_port, sigterm, wait_ready};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_intake_send_and_failure_hold_no_raw_number_or_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/privacy.db", dir.path().display());
    let log = dir.path().join("stderr.log");
    // The bridge refuses, quoting the receiver the way some bridges do.
    let bridge = StubBridge::start(400, "Error: receiver 8613812345678 is barred").await;
    let port = free_port();
    let dead_smtp = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env("SWITCHBOARD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .env(
            "SWITCHBOARD__SMS__OUTBOUND__URL",
            format!("{}/cgi-bin/sendsms", bridge.url),
        )
        .env("SWITCHBOARD__EMAIL__SMTP__PORT", dead_smtp.to_string())
        .env("SWITCHBOARD__EMAIL__SMTP__BACKOFF_BASE_MS", "100")
        .env("SWITCHBOARD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn switchboard");
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(port).await;

    let r = c
        .get(format!(
            "{base}/inbound/sms/kannel?id=p-1&from=13812345678&to=10000&text=%E6%88%91%E8%A6%81%E6%8A%95%E8%AF%89"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mail = "From: Li Wei <li.wei@example.cn>\r\nTo: service@example.com\r\nSubject: 投诉\r\nMessage-ID: <p-2@example.cn>\r\n\r\n宽带断网三天了\r\n";
    let r = c
        .post(format!("{base}/inbound/email"))
        .header("content-type", "message/rfc822")
        .body(mail)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A malformed number is refused; the refusal is logged too.
    let r = c
        .get(format!(
            "{base}/inbound/sms/kannel?from=1381234567x8&to=10000&text=hi"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The SMS ack is refused by the bridge; the email ack is retried at least once.
    bridge.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sigterm(&child);
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("send refused"),
        "the failure was not logged:\n{text}"
    );
    assert!(
        text.contains("will retry") || text.contains("retry"),
        "{text}"
    );
    for raw in ["13812345678", "li.wei@example.cn", "li.wei", "1381234567x8"] {
        let hit = text.lines().find(|l| l.contains(raw));
        assert!(
            hit.is_none(),
            "raw {raw:?} in the log: {}",
            hit.unwrap_or_default()
        );
    }
}
