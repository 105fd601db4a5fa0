//! Email intake over HTTP without outside peers: raw MIME, SendGrid and Mailgun multipart,
//! threading, DSN bounces, bad input; and `ingest-email`'s exit codes for the MTA.

use crate::common::{email_fixture as fixture, ingest_email, spawn_app};
use switchboard::config::Secret;

fn no_smtp(s: &mut switchboard::config::Settings) {
    // Acks stay queued in the outbox (nothing listens on port 9).
    s.email.from = "service@gw.test".into();
    s.email.smtp.port = 9;
    s.email.smtp.backoff_base_ms = 60_000;
}

#[tokio::test]
async fn a_gbk_complaint_opens_a_case_and_a_reply_to_our_ack_joins_it() {
    let app = spawn_app(|s, _| no_smtp(s)).await;
    let (st, v) = app.email(fixture("gbk_complaint.eml")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["new_case"], true);
    let store = app.store();
    let m = store.recent_messages("in", 1).await.unwrap().remove(0);
    assert_eq!(
        (m.channel.as_str(), m.category.as_deref()),
        ("email", Some("complaint"))
    );
    assert!(m.subject.as_deref().unwrap().contains("投诉"));
    let case = m.case_id.unwrap();
    let ack = app.last_out().await;
    assert_eq!(ack.to_addr, m.from_addr);
    assert!(
        ack.subject
            .as_deref()
            .unwrap()
            .contains(&format!("SB{:08}", case.get()))
    );
    // The customer answers our ack days later, from the same thread.
    let reply = format!(
        "From: Zhang San <{}>\nTo: customer-service@gw.test\nSubject: Re: {}\nMessage-ID: <r1@example.cn>\nIn-Reply-To: <sb-{}@gw.test>\nReferences: <sb-{}@gw.test>\nContent-Type: text/plain; charset=utf-8\n\n还是没有修好。\n\n> 您的投诉已受理\n",
        m.from_addr,
        ack.subject.as_deref().unwrap(),
        ack.id,
        ack.id
    );
    let (st, v) = app.email(reply.into_bytes()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["case"], format!("SB{:08}", case.get()));
    assert_eq!(v["new_case"], false);
    // A resend of the same Message-ID is a duplicate.
    let (_, v) = app.email(fixture("gbk_complaint.eml")).await;
    assert_eq!(v["status"], "duplicate");
    app.shutdown().await;
}

/// The ack goes to the return path when it is an address, to From without one, and nowhere
/// when the return path is null (`<>`) or not an address; the message is stored each time.
#[tokio::test]
async fn the_ack_goes_to_a_real_return_path_only() {
    let app = spawn_app(|s, _| no_smtp(s)).await;
    let mail = |n: u32, return_path: Option<&str>| {
        format!(
            "{}From: Li Si <LiSi{n}@Example.cn>\nTo: customer-service@gw.test\nSubject: 宽带断了\nMessage-ID: <rp{n}@example.cn>\nContent-Type: text/plain; charset=utf-8\n\n家里宽带从昨天开始断网，请尽快处理。\n",
            return_path.map(|r| format!("Return-Path: {r}\n")).unwrap_or_default()
        )
        .into_bytes()
    };
    let cases = [
        (None, Some("lisi1@example.cn")),
        (
            Some("<Bounce+LiSi2@Example.cn>"),
            Some("bounce+lisi2@example.cn"),
        ),
        (Some("<>"), None),
        (Some("<not an address>"), None),
        (Some("<nobody>"), None),
    ];
    for (n, (rp, ack_to)) in (1..).zip(cases) {
        let (st, v) = app.email(mail(n, rp)).await;
        assert_eq!(st, 200, "{v}");
        let m = app
            .store()
            .recent_messages("in", 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(m.from_addr, format!("lisi{n}@example.cn"));
        let ack = app
            .recent_out(10)
            .await
            .into_iter()
            .find(|o| o.case_id == m.case_id);
        assert_eq!(ack.map(|a| a.to_addr).as_deref(), ack_to, "{rp:?}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_dsn_fails_our_outbound_message_and_opens_no_case() {
    let app = spawn_app(|s, _| {
        no_smtp(s);
        s.email.from = "service@switchboard.local".into();
    })
    .await;
    // Outbound message 2 will be the ack of this first mail.
    let (st, _) = app.email(fixture("big5_inquiry.eml")).await;
    assert_eq!(st, 200);
    let ack = app
        .store()
        .recent_messages("out", 1)
        .await
        .unwrap()
        .remove(0);
    let dsn = String::from_utf8(fixture("dsn_failed_5xx.eml"))
        .unwrap()
        .replace(
            "out-7@switchboard.local",
            &format!("sb-{}@switchboard.local", ack.id),
        );
    let (st, v) = app.email(dsn.into_bytes()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["case"], serde_json::Value::Null);
    let m = app.store().message(ack.id).await.unwrap().unwrap();
    assert_eq!(m.status, "failed");
    assert!(m.last_error.unwrap().contains("5.1.1"));
    assert_eq!(app.store().counts().await.unwrap().cases, 1);
    // Nothing is sent again to an address that bounced for good.
    assert_eq!(app.store().counts().await.unwrap().outbox, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn sendgrid_and_mailgun_multipart_with_signature() {
    let app = spawn_app(|s, _| {
        no_smtp(s);
        s.inbound.mailgun_signing_key = Some(Secret::new("mg-key"));
        s.inbound.email_token = Some(Secret::new("em-tok"));
    })
    .await;
    let url = format!("{}/inbound/email", app.base);
    let sendgrid_url = format!("{url}?token=em-tok");
    let form = reqwest::multipart::Form::new()
        .text(
            "envelope",
            r#"{"to":["customer-service@gw.test"],"from":"li@example.com"}"#,
        )
        .part(
            "email",
            reqwest::multipart::Part::bytes(fixture("gb18030_fault.eml")),
        );
    let r = app
        .client
        .post(&sendgrid_url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sig = switchboard_mailgun_sig("mg-key", "1700000000", "tok");
    let mg = |sig: String| {
        reqwest::multipart::Form::new()
            .text("timestamp", "1700000000")
            .text("token", "tok")
            .text("signature", sig)
            .part(
                "body-mime",
                reqwest::multipart::Part::bytes(fixture("multipart_alternative_utf8.eml")),
            )
    };
    assert_eq!(
        app.client
            .post(&url)
            .multipart(mg("00".repeat(32)))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.client
            .post(&url)
            .multipart(mg(sig.clone()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let not_email = reqwest::multipart::Form::new()
        .text("timestamp", "1700000000")
        .text("token", "tok")
        .text("signature", sig)
        .part(
            "body-mime",
            reqwest::multipart::Part::bytes(fixture("not_an_email.eml")),
        );
    assert_eq!(
        app.client
            .post(&url)
            .multipart(not_email)
            .send()
            .await
            .unwrap()
            .status(),
        406,
        "Mailgun must not retry garbage"
    );
    assert_eq!(app.store().counts().await.unwrap().messages_in, 2);
    app.shutdown().await;
}

fn switchboard_mailgun_sig(key: &str, ts: &str, token: &str) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(ts.as_bytes());
    m.update(token.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

#[tokio::test]
async fn bad_email_input_gets_a_clear_4xx_and_malformed_mail_is_kept() {
    let app = spawn_app(|s, _| {
        no_smtp(s);
        s.email.max_bytes = 2_000_000;
    })
    .await;
    let (st, v) = app.email(Vec::new()).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("empty"),
        "{v}"
    );
    let (st, v) = app.email(fixture("not_an_email.eml")).await;
    assert_eq!(st, 400, "{v}");
    let mut big = fixture("gbk_complaint.eml");
    big.extend(std::iter::repeat_n(b'a', 3_000_000));
    let (st, v) = app.email(big).await;
    assert_eq!(st, 413, "{v}");
    assert_eq!(app.store().counts().await.unwrap().messages_in, 0);
    for f in [
        "broken_boundary.eml",
        "bad_base64.eml",
        "bad_encoded_word.eml",
        "nul_bytes.eml",
        "many_headers.eml",
    ] {
        let (st, v) = app.email(fixture(f)).await;
        assert_eq!(st, 200, "{f}: {v}");
    }
    let stored = app.store().recent_messages("in", 10).await.unwrap();
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|m| !m.body.contains('\0')));
    app.shutdown().await;
}

#[test]
fn ingest_email_exits_0_stored_65_not_an_email_75_database_down() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/ingest.db", dir.path().display());
    assert_eq!(
        ingest_email(&db, &fixture("gbk_complaint.eml"), &[], &[]).0,
        0
    );
    assert_eq!(
        ingest_email(&db, &fixture("gbk_complaint.eml"), &[], &[]).0,
        0,
        "a redelivery is a duplicate, still 0"
    );
    let (code, err) = ingest_email(&db, &fixture("not_an_email.eml"), &[], &[]);
    assert_eq!(code, 65, "{err}");
    assert_eq!(ingest_email(&db, b"", &[], &[]).0, 65);
    // An unreachable database must defer (75), never bounce.
    let (code, err) = ingest_email(
        "postgres://postgres@127.0.0.1:1/none",
        &fixture("gbk_complaint.eml"),
        &[],
        &[],
    );
    assert_eq!(code, 75, "{err}");
    assert!(
        !err.trim_start().starts_with(|c: char| c.is_ascii_digit()),
        "Postfix would read a leading status code: {err}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = switchboard::store::open(&db, 2, 8).await.unwrap();
        let c = s.counts().await.unwrap();
        assert_eq!((c.messages_in, c.cases, c.outbox), (1, 1, 1));
    });
}

#[tokio::test]
async fn a_mailgun_key_alone_takes_only_signed_mailgun_posts() {
    let app = spawn_app(|s, _| {
        no_smtp(s);
        s.inbound.mailgun_signing_key = Some(Secret::new("mg-key"));
        s.inbound.email_token = None;
    })
    .await;
    let url = format!("{}/inbound/email", app.base);
    // Raw and SendGrid posts have no signature to check: refused, nothing stored.
    let r = app
        .client
        .post(&url)
        .header("content-type", "message/rfc822")
        .body(fixture("gb18030_fault.eml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let form = reqwest::multipart::Form::new().part(
        "email",
        reqwest::multipart::Part::bytes(fixture("gb18030_fault.eml")),
    );
    let r = app.client.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("inbound.email_token"));
    assert_eq!(app.store().counts().await.unwrap().messages_in, 0);
    // A signed Mailgun post is taken.
    let sig = switchboard_mailgun_sig("mg-key", "1700000000", "tok");
    let form = reqwest::multipart::Form::new()
        .text("timestamp", "1700000000")
        .text("token", "tok")
        .text("signature", sig)
        .part(
            "body-mime",
            reqwest::multipart::Part::bytes(fixture("gb18030_fault.eml")),
        );
    let r = app.client.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.store().counts().await.unwrap().messages_in, 1);
    app.shutdown().await;
}
