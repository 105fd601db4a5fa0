//! One conformance suite, run against both engines: SQLite (temp file) and PostgreSQL (a fresh
//! database on the server at SWITCHBOARD_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test).

use crate::common;

use std::sync::Arc;
use switchboard::domain::{CaseId, Category, Channel, Intent, Lang, MessageId};
use switchboard::store::{
    AckBuilder, AckContext, DeliveryStatus, DlrUpdate, IntakeOutcome, IntakeRequest, NewInbound,
    OutboundDraft, Store,
};

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_790_000_000_000;

struct TestAck;
impl AckBuilder for TestAck {
    fn build(&self, ctx: &AckContext) -> Option<OutboundDraft> {
        if ctx.intent == Intent::Automated {
            return None;
        }
        Some(OutboundDraft {
            channel: ctx.channel,
            driver: "kannel".into(),
            from: ctx.service_addr.clone(),
            to: ctx.customer.clone(),
            subject: None,
            text: format!(
                "ack {} new={} cat={} intent={} tier={}",
                ctx.case_id.map(|c| c.number()).unwrap_or_default(),
                ctx.new_case,
                ctx.category,
                ctx.intent.as_str(),
                ctx.tier
            ),
            html: None,
            headers: None,
            kind: switchboard::domain::MessageKind::Ack,
            encoding: "gsm7",
            segments: 1,
            not_before: None,
            render: None,
        })
    }
}

/// The built-in service levels (complaint and fault: answer 3 h, resolve 72 h).
fn sla() -> Arc<switchboard::sla::SlaSettings> {
    static SLA: std::sync::OnceLock<Arc<switchboard::sla::SlaSettings>> =
        std::sync::OnceLock::new();
    SLA.get_or_init(|| Arc::new(common::base_settings().sla))
        .clone()
}

fn req(
    from: &str,
    text: &str,
    id: Option<&str>,
    cat: Category,
    intent: Intent,
    now: i64,
) -> IntakeRequest {
    let msg = NewInbound {
        channel: Channel::Sms,
        dialect: "kannel",
        external_id: id.map(str::to_string),
        from: if from.contains('@') {
            switchboard::domain::EmailAddress::parse(from)
                .expect("a test address")
                .into()
        } else {
            switchboard::domain::PhoneNumber::parse(from, "86")
                .expect("a test number")
                .into()
        },
        to: "10000".into(),
        subject: None,
        text: text.into(),
        raw: b"raw".to_vec(),
        email: None,
        part: None,
    };
    IntakeRequest {
        backend: None,
        dedupe_key: id.map(|i| format!("kannel:{i}")),
        content_hash: switchboard::intake::content_hash(&msg),
        dedupe_window_ms: 600_000,
        category: cat,
        intent,
        query: None,
        survey_answer: switchboard::classify::survey_answer(text),
        rules_version: "v-test".into(),
        lang: Lang::ZhCn,
        now_ms: now,
        reply_window_ms: 72 * HOUR,
        sla: sla(),
        thread_message_ids: Vec::new(),
        case_ref: None,
        ack_limit: None,
        ack: Arc::new(TestAck),
        msg,
    }
}

fn stored(o: &IntakeOutcome) -> (MessageId, Option<CaseId>, bool, Option<MessageId>) {
    match o {
        IntakeOutcome::Stored {
            message_id,
            case_id,
            new_case,
            ack_message_id,
        } => (*message_id, *case_id, *new_case, *ack_message_id),
        other => panic!("expected Stored, got {other:?}"),
    }
}

async fn intake_opens_a_case_with_deadlines_and_queues_one_ack(s: Arc<dyn Store>) {
    let o = s
        .intake(req(
            "+8613800000001",
            "宽带断了",
            Some("a1"),
            Category::Fault,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap();
    let (mid, case, new_case, ack) = stored(&o);
    assert!(new_case);
    let case = s.case(case.unwrap()).await.unwrap().unwrap();
    assert_eq!(case.category, "fault");
    assert_eq!(case.status, "open");
    assert_eq!(case.tier, 1);
    assert_eq!(case.ack_due_at, T0 + 3 * HOUR);
    assert_eq!(case.resolve_due_at, T0 + 72 * HOUR);
    assert_eq!(case.rules_version, "v-test");
    let m = s.message(mid).await.unwrap().unwrap();
    assert_eq!(
        (m.direction.as_str(), m.body.as_str(), m.case_id),
        ("in", "宽带断了", Some(case.id))
    );
    let a = s.message(ack.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (a.direction.as_str(), a.status.as_str(), a.to_addr.as_str()),
        ("out", "queued", "+8613800000001")
    );
    assert!(
        a.body.contains(&format!("SB{:08}", case.id.get())),
        "{}",
        a.body
    );
    let c = s.counts().await.unwrap();
    assert_eq!(
        (c.messages_in, c.messages_out, c.cases, c.outbox),
        (1, 1, 1, 1)
    );
}

async fn a_repeated_bridge_id_is_a_duplicate_and_changes_nothing(s: Arc<dyn Store>) {
    let first = s
        .intake(req(
            "+8613800000002",
            "投诉",
            Some("dup"),
            Category::Complaint,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap();
    let (mid, ..) = stored(&first);
    let again = s
        .intake(req(
            "+8613800000002",
            "投诉",
            Some("dup"),
            Category::Complaint,
            Intent::Case,
            T0 + 1000,
        ))
        .await
        .unwrap();
    assert_eq!(again, IntakeOutcome::Duplicate { message_id: mid });
    let c = s.counts().await.unwrap();
    assert_eq!((c.messages_in, c.cases, c.outbox), (1, 1, 1));
}

async fn id_less_messages_dedupe_by_content_within_the_window_only(s: Arc<dyn Store>) {
    let a = s
        .intake(req(
            "+8613800000003",
            "hello",
            None,
            Category::Inquiry,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap();
    let (mid, ..) = stored(&a);
    let b = s
        .intake(req(
            "+8613800000003",
            "hello",
            None,
            Category::Inquiry,
            Intent::Case,
            T0 + 60_000,
        ))
        .await
        .unwrap();
    assert_eq!(b, IntakeOutcome::Duplicate { message_id: mid });
    let c = s
        .intake(req(
            "+8613800000003",
            "hello",
            None,
            Category::Inquiry,
            Intent::Case,
            T0 + 700_000,
        ))
        .await
        .unwrap();
    assert!(
        matches!(c, IntakeOutcome::Stored { .. }),
        "outside the window it is a new message"
    );
    let d = s
        .intake(req(
            "+8613800000003",
            "hello!",
            None,
            Category::Inquiry,
            Intent::Case,
            T0 + 60_000,
        ))
        .await
        .unwrap();
    assert!(
        matches!(d, IntakeOutcome::Stored { .. }),
        "other text is another message"
    );
}

async fn a_reply_within_the_window_attaches_and_never_downgrades(s: Arc<dyn Store>) {
    let (_, case1, ..) = stored(
        &s.intake(req(
            "+8613800000004",
            "我要投诉",
            Some("r1"),
            Category::Complaint,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    let (m2, case2, new2, ack2) = stored(
        &s.intake(req(
            "+8613800000004",
            "套餐多少钱",
            Some("r2"),
            Category::Inquiry,
            Intent::Case,
            T0 + HOUR,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(case1, case2);
    assert!(!new2);
    let case = s.case(case1.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        case.category, "complaint",
        "a reply never lowers the category"
    );
    assert_eq!(case.message_count, 2);
    assert_eq!(case.last_message_at, T0 + HOUR);
    // A reply that changed nothing about the case is its message, not an event too.
    assert_eq!(s.case_events(case.id).await.unwrap(), []);
    assert!(
        s.message(ack2.unwrap())
            .await
            .unwrap()
            .unwrap()
            .body
            .contains("new=false")
    );
    assert_eq!(
        s.case_messages(case.id)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.direction == "in")
            .count(),
        2
    );
    assert_eq!(s.message(m2).await.unwrap().unwrap().case_id, case1);
    // Another customer, or the same after the window, opens a new case.
    let (_, other, new_other, _) = stored(
        &s.intake(req(
            "+8613800000005",
            "套餐多少钱",
            Some("r3"),
            Category::Inquiry,
            Intent::Case,
            T0 + HOUR,
        ))
        .await
        .unwrap(),
    );
    assert!(new_other && other != case1);
    let (_, late, new_late, _) = stored(
        &s.intake(req(
            "+8613800000004",
            "again",
            Some("r4"),
            Category::Inquiry,
            Intent::Case,
            T0 + 200 * HOUR,
        ))
        .await
        .unwrap(),
    );
    assert!(new_late && late != case1);
}

async fn a_reply_upgrades_the_category_and_escalation_climbs_tiers(s: Arc<dyn Store>) {
    let (_, c, ..) = stored(
        &s.intake(req(
            "+8613800000006",
            "网速慢",
            Some("e1"),
            Category::Fault,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    stored(
        &s.intake(req(
            "+8613800000006",
            "太差了我要投诉",
            Some("e2"),
            Category::Complaint,
            Intent::Case,
            T0 + 1,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(
        s.case(c.unwrap()).await.unwrap().unwrap().category,
        "complaint"
    );
    // The reply that raised the category is an event saying so.
    let events = s.case_events(c.unwrap()).await.unwrap();
    let raised: Vec<_> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.detail.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        raised,
        [("reply", "category fault -> complaint, tier 1 -> 1")],
        "{events:?}"
    );
    for (i, want) in [(3, 2), (4, 3), (5, 4), (6, 4)] {
        stored(
            &s.intake(req(
                "+8613800000006",
                "升级处理",
                Some(&format!("e{i}")),
                Category::Inquiry,
                Intent::Escalate,
                T0 + i,
            ))
            .await
            .unwrap(),
        );
        assert_eq!(s.case(c.unwrap()).await.unwrap().unwrap().tier, want);
    }
}

async fn opt_out_records_consent_and_opens_no_case(s: Arc<dyn Store>) {
    let (m, case, _, ack) = stored(
        &s.intake(req(
            "+8613800000007",
            "TD",
            Some("o1"),
            Category::Inquiry,
            Intent::OptOut,
            T0,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(case, None);
    assert!(ack.is_some(), "the opt-out is confirmed");
    assert_eq!(
        s.message(m).await.unwrap().unwrap().intent.as_deref(),
        Some("opt_out")
    );
    assert!(s.opted_out(Channel::Sms, "+8613800000007").await.unwrap());
    stored(
        &s.intake(req(
            "+8613800000007",
            "START",
            Some("o2"),
            Category::Inquiry,
            Intent::OptIn,
            T0 + 1,
        ))
        .await
        .unwrap(),
    );
    assert!(!s.opted_out(Channel::Sms, "+8613800000007").await.unwrap());
    assert!(!s.opted_out(Channel::Sms, "+8613800000099").await.unwrap());
    assert_eq!(s.counts().await.unwrap().cases, 0);
}

async fn outbox_leases_retries_completes_and_fails(s: Arc<dyn Store>) {
    let mut acks = Vec::new();
    for i in 0..3 {
        let (_, _, _, a) = stored(
            &s.intake(req(
                &format!("+861380000010{i}"),
                "hi",
                Some(&format!("q{i}")),
                Category::Inquiry,
                Intent::Case,
                T0,
            ))
            .await
            .unwrap(),
        );
        acks.push(a.unwrap());
    }
    assert_eq!(s.next_outbox_due(Channel::Sms).await.unwrap(), Some(T0));
    assert!(
        s.claim_outbox(Channel::Email, T0, 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let got = s.claim_outbox(Channel::Sms, T0, 10_000, 2).await.unwrap();
    assert_eq!(
        got.iter().map(|i| i.message_id).collect::<Vec<_>>(),
        acks[..2].to_vec()
    );
    let rest = s.claim_outbox(Channel::Sms, T0, 10_000, 10).await.unwrap();
    assert_eq!(rest.len(), 1, "leased rows are not claimed twice");
    assert!(
        s.claim_outbox(Channel::Sms, T0 + 5_000, 10_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A lease that expires makes the row claimable again.
    assert_eq!(
        s.claim_outbox(Channel::Sms, T0 + 10_001, 10_000, 10)
            .await
            .unwrap()
            .len(),
        3
    );

    s.complete_send(acks[0], Some("prov-0"), T0 + 1)
        .await
        .unwrap();
    let m = s.message(acks[0]).await.unwrap().unwrap();
    assert_eq!(
        (m.status.as_str(), m.provider_id.as_deref(), m.attempts),
        ("sent", Some("prov-0"), 1)
    );

    s.retry_send(acks[1], T0 + 50_000, "HTTP 503", T0 + 2)
        .await
        .unwrap();
    let m = s.message(acks[1]).await.unwrap().unwrap();
    assert_eq!(
        (m.status.as_str(), m.last_error.as_deref(), m.attempts),
        ("queued", Some("HTTP 503"), 1)
    );
    assert!(
        s.claim_outbox(Channel::Sms, T0 + 40_000, 1000, 10)
            .await
            .unwrap()
            .iter()
            .all(|i| i.message_id != acks[1])
    );
    let again = s
        .claim_outbox(Channel::Sms, T0 + 50_000, 1000, 10)
        .await
        .unwrap();
    assert!(
        again
            .iter()
            .any(|i| i.message_id == acks[1] && i.attempts == 1)
    );

    s.fail_send(acks[2], "HTTP 400: bad", T0 + 3).await.unwrap();
    assert_eq!(s.message(acks[2]).await.unwrap().unwrap().status, "failed");
    s.release_leases(&[acks[1]]).await.unwrap();
    let c = s.counts().await.unwrap();
    assert_eq!(c.outbox, 1);
}

async fn delivery_reports_move_status_forward_only(s: Arc<dyn Store>) {
    let (_, _, _, a) = stored(
        &s.intake(req(
            "+8613800000020",
            "hi",
            Some("d1"),
            Category::Inquiry,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    let a = a.unwrap();
    s.claim_outbox(Channel::Sms, T0, 1000, 10).await.unwrap();
    s.complete_send(a, Some("jas-uuid"), T0).await.unwrap();
    let dlr = |status, id: Option<MessageId>, pid: Option<&str>| DlrUpdate {
        message_id: id,
        provider_id: pid.map(str::to_string),
        status,
        detail: "t".into(),
        now_ms: T0 + 5,
    };
    assert_eq!(
        s.apply_dlr(&dlr(DeliveryStatus::Accepted, Some(a), None))
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(s.message(a).await.unwrap().unwrap().status, "accepted");
    assert_eq!(
        s.apply_dlr(&dlr(DeliveryStatus::Delivered, None, Some("jas-uuid")))
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(s.message(a).await.unwrap().unwrap().status, "delivered");
    s.apply_dlr(&dlr(DeliveryStatus::Accepted, Some(a), None))
        .await
        .unwrap();
    s.apply_dlr(&dlr(DeliveryStatus::Failed, Some(a), None))
        .await
        .unwrap();
    assert_eq!(
        s.message(a).await.unwrap().unwrap().status,
        "delivered",
        "final states stay"
    );
    assert_eq!(
        s.apply_dlr(&dlr(
            DeliveryStatus::Delivered,
            Some(MessageId(999_999)),
            None
        ))
        .await
        .unwrap(),
        None
    );
    // A report that beats the send result is not overwritten by "sent".
    let (_, _, _, b) = stored(
        &s.intake(req(
            "+8613800000021",
            "hi",
            Some("d2"),
            Category::Inquiry,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    let b = b.unwrap();
    s.apply_dlr(&dlr(DeliveryStatus::Delivered, Some(b), None))
        .await
        .unwrap();
    s.complete_send(b, None, T0 + 6).await.unwrap();
    assert_eq!(s.message(b).await.unwrap().unwrap().status, "delivered");
}

async fn concurrent_intake_stores_each_message_once(s: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    // 40 customers x 5 messages, every message sent twice at the same time.
    for c in 0..40 {
        for m in 0..5 {
            for _ in 0..2 {
                let s = s.clone();
                tasks.spawn(async move {
                    s.intake(req(
                        &format!("+86139000{c:05}"),
                        &format!("msg {m}"),
                        Some(&format!("c{c}m{m}")),
                        Category::Fault,
                        Intent::Case,
                        T0 + m,
                    ))
                    .await
                    .unwrap()
                });
            }
        }
    }
    let mut dups = 0;
    while let Some(r) = tasks.join_next().await {
        if matches!(r.unwrap(), IntakeOutcome::Duplicate { .. }) {
            dups += 1;
        }
    }
    assert_eq!(dups, 200);
    let c = s.counts().await.unwrap();
    assert_eq!(
        (c.messages_in, c.cases, c.outbox),
        (200, 40, 200),
        "one case per customer, one ack per message"
    );
}

async fn rule_versions_and_tokens_round_trip(s: Arc<dyn Store>) {
    use switchboard::store::NewRuleVersion;
    assert!(s.active_rule_version().await.unwrap().is_none());
    let v = |sha: &str, src: &str| NewRuleVersion {
        created_at: T0,
        created_by: "ops-alice".into(),
        sha: sha.into(),
        source: src.into(),
        note: Some("n".into()),
        diff: None,
        macro_f1: Some(0.95),
    };
    let a = s
        .insert_rule_version(&v("aaa", "fallback = \"inquiry\""))
        .await
        .unwrap();
    let b = s.insert_rule_version(&v("bbb", "x")).await.unwrap();
    assert_eq!(
        s.insert_rule_version(&v("aaa", "fallback = \"inquiry\""))
            .await
            .unwrap(),
        a,
        "same content, same version"
    );
    s.activate_rule_version(a, "ops-alice", T0 + 1)
        .await
        .unwrap();
    s.activate_rule_version(b, "ops-bob", T0 + 2).await.unwrap();
    assert_eq!(s.active_rule_version().await.unwrap().unwrap().id, b);
    s.activate_rule_version(a, "ops-bob", T0 + 3).await.unwrap();
    let active = s.active_rule_version().await.unwrap().unwrap();
    assert_eq!(
        (active.id, active.v.source.as_str(), active.v.macro_f1),
        (a, "fallback = \"inquiry\"", Some(0.95))
    );
    let list = s.rule_versions().await.unwrap();
    assert_eq!(
        list.iter().map(|v| (v.id, v.active)).collect::<Vec<_>>(),
        vec![(b, false), (a, true)]
    );
    assert_eq!(list[1].activated_at, Some(T0 + 3));
    assert!(s.rule_version(9999).await.unwrap().is_none());

    s.insert_api_token("alice", "ops", "hash-1", T0)
        .await
        .unwrap();
    assert_eq!(
        s.api_token("hash-1").await.unwrap(),
        Some(("alice".into(), "ops".into()))
    );
    assert_eq!(s.api_token("hash-2").await.unwrap(), None);
    assert!(
        s.insert_api_token("mallory", "admin", "hash-1", T0)
            .await
            .is_err(),
        "token hashes are unique"
    );
}

async fn inbound_since_returns_the_window_oldest_first(s: Arc<dyn Store>) {
    for (i, t) in [(0, T0 - 10 * HOUR), (1, T0 - HOUR), (2, T0)] {
        stored(
            &s.intake(req(
                &format!("+861370000000{i}"),
                &format!("text {i}"),
                Some(&format!("w{i}")),
                Category::Fault,
                Intent::Case,
                t,
            ))
            .await
            .unwrap(),
        );
    }
    let got = s.inbound_since(T0 - 2 * HOUR, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["text 1", "text 2"]
    );
    assert_eq!(got[0].category.as_deref(), Some("fault"));
    assert_eq!(s.inbound_since(T0 - 20 * HOUR, 1).await.unwrap().len(), 1);
}

async fn survey_answers_count_only_while_a_survey_waits(s: Arc<dyn Store>) {
    // Without a waiting survey "5" is an ordinary message (a case).
    let (_, case, ..) = stored(
        &s.intake(req(
            "+8613600000001",
            "5",
            Some("s1"),
            Category::Inquiry,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    assert!(case.is_some());
    s.await_survey(
        Channel::Sms,
        "+8613600000002",
        "revisit-2026-11",
        Some(7),
        T0,
        T0 + HOUR,
    )
    .await
    .unwrap();
    let (m, case, _, ack) = stored(
        &s.intake(req(
            "+8613600000002",
            "非常满意",
            Some("s2"),
            Category::Inquiry,
            Intent::Case,
            T0 + 1,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(case, None, "an answer opens no case");
    assert!(ack.is_some());
    assert_eq!(
        s.message(m).await.unwrap().unwrap().intent.as_deref(),
        Some("survey_answer")
    );
    assert!(
        s.message(ack.unwrap())
            .await
            .unwrap()
            .unwrap()
            .body
            .contains("intent=survey_answer")
    );
    assert_eq!(
        s.survey_answers("revisit-2026-11").await.unwrap(),
        vec![("+8613600000002".to_string(), "very_satisfied".to_string())]
    );
    // Answered: the next "5" is a message again. An expired wait does not count either.
    let (_, case, ..) = stored(
        &s.intake(req(
            "+8613600000002",
            "5",
            Some("s3"),
            Category::Inquiry,
            Intent::Case,
            T0 + 2,
        ))
        .await
        .unwrap(),
    );
    assert!(case.is_some());
    s.await_survey(
        Channel::Sms,
        "+8613600000003",
        "revisit-2026-11",
        None,
        T0,
        T0 + 10,
    )
    .await
    .unwrap();
    let (_, case, ..) = stored(
        &s.intake(req(
            "+8613600000003",
            "4",
            Some("s4"),
            Category::Inquiry,
            Intent::Case,
            T0 + 20,
        ))
        .await
        .unwrap(),
    );
    assert!(case.is_some());
    assert_eq!(s.survey_answers("revisit-2026-11").await.unwrap().len(), 1);
}

async fn case_progress_is_answered_only_to_the_case_owner(s: Arc<dyn Store>) {
    struct ProgressAck;
    impl AckBuilder for ProgressAck {
        fn build(&self, ctx: &AckContext) -> Option<OutboundDraft> {
            let text = match &ctx.progress {
                Some(p) => format!("progress {} {} tier {}", p.id.get(), p.status, p.tier),
                None => "unknown".into(),
            };
            Some(OutboundDraft {
                channel: ctx.channel,
                driver: "kannel".into(),
                from: "10000".into(),
                to: ctx.customer.clone(),
                subject: None,
                text,
                html: None,
                headers: None,
                kind: switchboard::domain::MessageKind::Ack,
                encoding: "gsm7",
                segments: 1,
                not_before: None,
                render: None,
            })
        }
    }
    let (_, case, ..) = stored(
        &s.intake(req(
            "+8613600000010",
            "断网了",
            Some("p1"),
            Category::Fault,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    let case = case.unwrap();
    let ask = |from: &str, id: &str| {
        let mut r = req(
            from,
            "进度",
            Some(id),
            Category::Inquiry,
            Intent::SelfService,
            T0 + 5,
        );
        r.query = Some(switchboard::domain::Query::CaseProgress(case));
        r.ack = Arc::new(ProgressAck);
        r
    };
    let (_, c, _, ack) = stored(&s.intake(ask("+8613600000010", "p2")).await.unwrap());
    assert_eq!(c, None, "a query opens no case");
    assert_eq!(
        s.message(ack.unwrap()).await.unwrap().unwrap().body,
        format!("progress {} open tier 1", case.get())
    );
    let (_, _, _, ack) = stored(&s.intake(ask("+8613600000011", "p3")).await.unwrap());
    assert_eq!(
        s.message(ack.unwrap()).await.unwrap().unwrap().body,
        "unknown",
        "another customer's case is not disclosed"
    );
}

async fn email_threads_by_reference_or_case_number_and_acks_are_capped(s: Arc<dyn Store>) {
    let (_, case, _, ack) = stored(
        &s.intake(req(
            "alice@example.com",
            "broadband down",
            Some("e-1"),
            Category::Fault,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap(),
    );
    let (case, ack) = (case.unwrap(), ack.unwrap());
    // Outside the reply window, a reference to our ack still finds the case.
    let mut r = req(
        "alice@example.com",
        "still down",
        Some("e-2"),
        Category::Fault,
        Intent::Case,
        T0 + 500 * HOUR,
    );
    r.thread_message_ids = vec![ack];
    let (_, c, new_case, _) = stored(&s.intake(r).await.unwrap());
    assert_eq!((c, new_case), (Some(case), false));
    // A quoted case number works for its owner only.
    let mut r = req(
        "alice@example.com",
        "any news?",
        Some("e-3"),
        Category::Inquiry,
        Intent::Case,
        T0 + 1000 * HOUR,
    );
    r.case_ref = Some(case);
    assert_eq!(stored(&s.intake(r).await.unwrap()).1, Some(case));
    let mut r = req(
        "mallory@example.com",
        "any news?",
        Some("e-4"),
        Category::Inquiry,
        Intent::Case,
        T0 + 1000 * HOUR,
    );
    r.case_ref = Some(case);
    assert_ne!(stored(&s.intake(r).await.unwrap()).1, Some(case));
    // At most 2 email acks per sender per window.
    for i in 0..3 {
        let mut r = req(
            "bob@example.com",
            &format!("m{i}"),
            Some(&format!("b-{i}")),
            Category::Fault,
            Intent::Case,
            T0 + i,
        );
        r.msg.channel = Channel::Email;
        r.ack_limit = Some((2, HOUR));
        let (_, _, _, ack) = stored(&s.intake(r).await.unwrap());
        assert_eq!(ack.is_some(), i < 2, "message {i}");
    }
    // Machine mail is stored without case or ack.
    let (m, c, _, a) = stored(
        &s.intake(req(
            "bot@example.com",
            "out of office",
            Some("a-1"),
            Category::Inquiry,
            Intent::Automated,
            T0,
        ))
        .await
        .unwrap(),
    );
    assert_eq!((c, a), (None, None));
    assert_eq!(
        s.message(m).await.unwrap().unwrap().intent.as_deref(),
        Some("automated")
    );
}

async fn an_agent_reply_is_queued_on_its_case_or_refused_whole(s: Arc<dyn Store>) {
    let o = s
        .intake(req(
            "+8613800000077",
            "宽带坏了",
            Some("ar-1"),
            Category::Fault,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap();
    let (_, case, _, _) = stored(&o);
    let case = case.unwrap();
    let draft = OutboundDraft {
        channel: Channel::Sms,
        driver: "kannel".into(),
        from: "10000".into(),
        to: "+8613800000077".parse().unwrap(),
        subject: None,
        text: "师傅下午上门".into(),
        html: None,
        headers: None,
        kind: switchboard::domain::MessageKind::Reply,
        encoding: "ucs2",
        segments: 1,
        not_before: None,
        render: None,
    };
    let before = s.counts().await.unwrap();
    assert_eq!(
        s.queue_reply(CaseId(case.get() + 1000), &draft, "agent-1", T0 + 60_000)
            .await
            .unwrap(),
        None,
        "no such case: nothing written"
    );
    assert_eq!(s.counts().await.unwrap(), before);

    let id = s
        .queue_reply(case, &draft, "agent-1", T0 + 60_000)
        .await
        .unwrap()
        .expect("queued");
    let m = s.message(id).await.unwrap().unwrap();
    assert_eq!(
        (
            m.direction.as_str(),
            m.kind.map(|k| k.as_str()),
            m.case_id,
            m.status.as_str()
        ),
        ("out", Some("reply"), Some(case), "queued")
    );
    assert_eq!(m.body, "师傅下午上门");
    assert_eq!(s.case(case).await.unwrap().unwrap().status, "acknowledged");
    let claimed = s
        .claim_outbox(Channel::Sms, T0 + 60_000, 30_000, 10)
        .await
        .unwrap();
    assert!(
        claimed
            .iter()
            .any(|c| c.message_id == id && c.kind == "reply"),
        "{claimed:?}"
    );
    let after = s.counts().await.unwrap();
    assert_eq!(after.messages_out, before.messages_out + 1);
}

async fn cases_list_by_urgency_and_resolve_once(s: Arc<dyn Store>) {
    let o1 = s
        .intake(req(
            "+8613800000091",
            "宽带坏了",
            Some("rc-1"),
            Category::Fault,
            Intent::Case,
            T0,
        ))
        .await
        .unwrap();
    let o2 = s
        .intake(req(
            "+8613800000092",
            "我要投诉",
            Some("rc-2"),
            Category::Complaint,
            Intent::Case,
            T0 + HOUR,
        ))
        .await
        .unwrap();
    let (a, b) = (stored(&o1).1.unwrap(), stored(&o2).1.unwrap());
    let open = [switchboard::domain::CaseStatus::Open];
    let ids =
        |v: Vec<switchboard::store::CaseRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.cases(&open, 10).await.unwrap()),
        vec![a, b],
        "earliest deadline first"
    );
    assert_eq!(ids(s.cases(&open, 1).await.unwrap()), vec![a]);

    let r = s
        .resolve_case(
            a,
            &switchboard::store::Resolve {
                code: None,
                detail: switchboard::cases::resolve_detail("agent-1", None, Some("line repaired")),
                visit_due: None,
                now_ms: T0 + 2 * HOUR,
            },
        )
        .await
        .unwrap()
        .expect("the case");
    assert_eq!(
        (r.status.as_str(), r.resolved_at),
        ("resolved", Some(T0 + 2 * HOUR))
    );
    // Again, by an agent who saw it open: nothing changes.
    let again = s
        .resolve_case(
            a,
            &switchboard::store::Resolve {
                code: None,
                detail: switchboard::cases::resolve_detail("agent-2", None, None),
                visit_due: None,
                now_ms: T0 + 3 * HOUR,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.resolved_at, Some(T0 + 2 * HOUR));
    assert_eq!(
        s.resolve_case(
            CaseId(b.get() + 1000),
            &switchboard::store::Resolve {
                code: None,
                detail: switchboard::cases::resolve_detail("x", None, None),
                visit_due: None,
                now_ms: T0
            }
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(ids(s.cases(&open, 10).await.unwrap()), vec![b]);
    assert_eq!(
        ids(s
            .cases(&[switchboard::domain::CaseStatus::Resolved], 10)
            .await
            .unwrap()),
        vec![a]
    );
    assert_eq!(s.cases(&[], 10).await.unwrap().len(), 2);
    // The customer writes again: a resolved case is not reopened, a new one starts.
    let o3 = s
        .intake(req(
            "+8613800000091",
            "又断网了",
            Some("rc-3"),
            Category::Fault,
            Intent::Case,
            T0 + 4 * HOUR,
        ))
        .await
        .unwrap();
    let c = stored(&o3).1.unwrap();
    assert_ne!(c, a);
}

fn part(
    group: &str,
    seq: i64,
    id: Option<&str>,
    body: &str,
    at: i64,
) -> switchboard::store::NewPart {
    switchboard::store::NewPart {
        group_key: group.into(),
        seq,
        total: 3,
        dialect: "jasmin".into(),
        dedupe_key: id.map(|i| format!("jasmin:+8613800138000:{i}")),
        external_id: id.map(str::to_string),
        from: "+8613800138000".into(),
        to: "10000".into(),
        body: body.into(),
        raw: format!("raw {body}").into_bytes(),
        received_at: at,
    }
}

async fn sms_parts_group_dedupe_and_close(s: Arc<dyn Store>) {
    use switchboard::store::PartOutcome;
    let g = "jasmin:+8613800138000:10000:65537:3";
    // Out of order: 3 then 1.
    let PartOutcome::Stored { group, .. } = s
        .store_part(&part(g, 3, Some("p3"), "C", T0))
        .await
        .unwrap()
    else {
        panic!("first part not stored")
    };
    assert_eq!(group.len(), 1);
    let PartOutcome::Stored { group, .. } = s
        .store_part(&part(g, 1, Some("p1"), "A", T0 + 1))
        .await
        .unwrap()
    else {
        panic!("second part not stored")
    };
    assert_eq!(group.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(group[0].body, "A");
    assert_eq!(group[0].raw.as_deref(), Some(&b"raw A"[..]));
    // The same bridge id again, and the same place without an id: duplicates.
    assert!(matches!(
        s.store_part(&part(g, 1, Some("p1"), "A", T0 + 2))
            .await
            .unwrap(),
        PartOutcome::Duplicate
    ));
    assert!(matches!(
        s.store_part(&part(g, 3, None, "C", T0 + 2)).await.unwrap(),
        PartOutcome::Duplicate
    ));
    // Overdue by the first part's arrival.
    assert_eq!(
        s.overdue_part_groups(T0 + 1, 10).await.unwrap(),
        vec![g.to_string()]
    );
    assert!(s.overdue_part_groups(T0, 10).await.unwrap().is_empty());
    let ids: Vec<i64> = s
        .part_group(g)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids.len(), 2);
    s.close_parts(&ids, T0 - 1).await.unwrap();
    assert!(s.part_group(g).await.unwrap().is_empty());
    assert!(s.overdue_part_groups(T0 + 10, 10).await.unwrap().is_empty());
    // A late retry of a joined part is still a duplicate; a new message reusing the reference
    // starts a new group.
    assert!(matches!(
        s.store_part(&part(g, 1, Some("p1"), "A", T0 + 5))
            .await
            .unwrap(),
        PartOutcome::Duplicate
    ));
    let PartOutcome::Stored { group, .. } = s
        .store_part(&part(g, 1, Some("q1"), "X", T0 + 6))
        .await
        .unwrap()
    else {
        panic!("reused reference not stored")
    };
    assert_eq!(group.len(), 1);
    // Done parts are purged after the retention.
    s.close_parts(&[group[0].id], T0 + 100).await.unwrap();
    let PartOutcome::Stored { .. } = s
        .store_part(&part(g, 1, Some("p1"), "A", T0 + 7))
        .await
        .unwrap()
    else {
        panic!("purged part id not reusable")
    };
}

fn draft(kind: &'static str, to: &str) -> OutboundDraft {
    let kind = switchboard::domain::MessageKind::parse(kind).expect("a message kind");
    OutboundDraft {
        channel: Channel::Sms,
        driver: "kannel".into(),
        from: "10000".into(),
        to: to.parse().unwrap(),
        subject: None,
        text: kind.as_str().into(),
        html: None,
        headers: None,
        kind,
        encoding: "gsm7",
        segments: 1,
        not_before: None,
        render: None,
    }
}

async fn outbox_lanes_claim_urgent_first_and_never_starve_bulk(s: Arc<dyn Store>) {
    let bulk: Vec<OutboundDraft> = (0..20)
        .map(|i| draft("marketing", &format!("+8613900000{i:03}")))
        .collect();
    s.queue_outbound_bulk(&bulk, T0).await.unwrap();
    let service: Vec<OutboundDraft> = (0..3)
        .map(|i| draft("payment_reminder", &format!("+8613800000{i:03}")))
        .collect();
    s.queue_outbound_bulk(&service, T0 + 1).await.unwrap();
    let urgent: Vec<OutboundDraft> = (0..2)
        .map(|i| draft("ack", &format!("+8613700000{i:03}")))
        .collect();
    s.queue_outbound_bulk(&urgent, T0 + 2).await.unwrap();
    let got = s
        .claim_outbox(Channel::Sms, T0 + 10, 60_000, 8)
        .await
        .unwrap();
    let kinds: Vec<&str> = got.iter().map(|i| i.kind.as_str()).collect();
    // Urgent first (though queued last), then service, then bulk with what is left.
    assert_eq!(
        &kinds[..5],
        &[
            "ack",
            "ack",
            "payment_reminder",
            "payment_reminder",
            "payment_reminder"
        ]
    );
    assert_eq!(kinds.len(), 8);
    assert!(kinds[5..].iter().all(|k| *k == "marketing"));
    // A flood of urgent work still leaves each lower lane its share.
    let urgent: Vec<OutboundDraft> = (0..20)
        .map(|i| draft("reply", &format!("+8613600000{i:03}")))
        .collect();
    s.queue_outbound_bulk(&urgent, T0 + 20).await.unwrap();
    let got = s
        .claim_outbox(Channel::Sms, T0 + 30, 60_000, 8)
        .await
        .unwrap();
    let kinds: Vec<&str> = got.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "reply").count(), 8);
    assert_eq!(
        kinds.iter().filter(|k| **k == "marketing").count(),
        1,
        "{kinds:?}"
    );
}

/// All parts of a message arriving at once: exactly one of them sees the whole group, so the
/// message is joined once and at once (on PostgreSQL, each part alone would miss the other).
async fn parts_arriving_together_complete_their_group_once(s: Arc<dyn Store>) {
    use switchboard::store::PartOutcome;
    for g in 0..20 {
        let key = format!("jasmin:+8613800138000:10000:{g}:3");
        let tasks: Vec<_> = (1..=3)
            .map(|seq| {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move {
                    s.store_part(&part(&key, seq, None, &format!("p{seq}"), T0))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut complete = 0;
        for t in tasks {
            if let PartOutcome::Stored { group, .. } = t.await.unwrap()
                && group.len() == 3
            {
                complete += 1;
            }
        }
        assert_eq!(complete, 1, "group {g}");
    }
}

/// Two reports of one message at once (`accepted` and `delivered`, as Kannel sends them):
/// the message ends `delivered` whichever commits last.
async fn concurrent_delivery_reports_never_move_a_status_back(s: Arc<dyn Store>) {
    use switchboard::store::{DeliveryStatus, DlrUpdate};
    let mut ids = Vec::new();
    for i in 0..20 {
        let d = OutboundDraft {
            to: format!("+86138000{i:05}").parse().unwrap(),
            ..draft("ack", "+8613800000000")
        };
        ids.push(s.queue_outbound_bulk(&[d], T0).await.unwrap()[0]);
    }
    for &id in &ids {
        s.complete_send(id, Some(&format!("k-{id}")), T0)
            .await
            .unwrap();
    }
    let report = |id: MessageId, status| DlrUpdate {
        message_id: Some(id),
        provider_id: None,
        status,
        detail: String::new(),
        now_ms: T0 + 1,
    };
    for &id in &ids {
        let (a, b) = (s.clone(), s.clone());
        let (x, y) = tokio::join!(
            tokio::spawn(async move { a.apply_dlr(&report(id, DeliveryStatus::Accepted)).await }),
            tokio::spawn(async move { b.apply_dlr(&report(id, DeliveryStatus::Delivered)).await }),
        );
        x.unwrap().unwrap();
        y.unwrap().unwrap();
        let m = s.message(id).await.unwrap().unwrap();
        assert_eq!(m.status, "delivered", "message {id}");
    }
    // A send given up after its report came (the bridge took it after all) stays delivered.
    s.fail_send(ids[0], "timed out", T0 + 2).await.unwrap();
    let m = s.message(ids[0]).await.unwrap().unwrap();
    assert_eq!(m.status, "delivered");
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}/conf.db", dir.path().display());
                    let s = switchboard::store::open(&url, 4, 64).await.unwrap();
                    super::$name(s.clone()).await;
                    s.close().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let url = common::fresh_pg_database().await;
                    let s = switchboard::store::open(&url, 8, 64).await.unwrap();
                    super::$name(s.clone()).await;
                    s.close().await;
                    common::drop_pg_database(&url).await;
                }
            )*
        }
    };
}

suite!(
    intake_opens_a_case_with_deadlines_and_queues_one_ack,
    a_repeated_bridge_id_is_a_duplicate_and_changes_nothing,
    id_less_messages_dedupe_by_content_within_the_window_only,
    a_reply_within_the_window_attaches_and_never_downgrades,
    a_reply_upgrades_the_category_and_escalation_climbs_tiers,
    opt_out_records_consent_and_opens_no_case,
    outbox_leases_retries_completes_and_fails,
    delivery_reports_move_status_forward_only,
    concurrent_intake_stores_each_message_once,
    rule_versions_and_tokens_round_trip,
    inbound_since_returns_the_window_oldest_first,
    survey_answers_count_only_while_a_survey_waits,
    case_progress_is_answered_only_to_the_case_owner,
    email_threads_by_reference_or_case_number_and_acks_are_capped,
    an_agent_reply_is_queued_on_its_case_or_refused_whole,
    cases_list_by_urgency_and_resolve_once,
    sms_parts_group_dedupe_and_close,
    outbox_lanes_claim_urgent_first_and_never_starve_bulk,
    parts_arriving_together_complete_their_group_once,
    concurrent_delivery_reports_never_move_a_status_back,
);

/// A panic while the SQLite writer runs a batch (here: the ack renderer) rolls that batch back
/// and is answered as an error; the writer thread lives on and takes the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_survives_a_panic_in_a_batch() {
    struct PanickyAck;
    impl AckBuilder for PanickyAck {
        fn build(&self, ctx: &AckContext) -> Option<OutboundDraft> {
            if ctx.customer.as_str().ends_with("666") {
                panic!("renderer bug");
            }
            TestAck.build(ctx)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/panic.db", dir.path().display());
    let s = switchboard::store::open(&url, 4, 64).await.unwrap();
    let mut bad = req(
        "+8613800138666",
        "宽带坏了",
        Some("x-1"),
        Category::Fault,
        Intent::Case,
        T0,
    );
    bad.ack = Arc::new(PanickyAck);
    assert!(s.intake(bad).await.is_err());
    assert_eq!(
        s.counts().await.unwrap().messages_in,
        0,
        "the batch was rolled back"
    );
    s.ping().await.expect("the writer is still there");
    let good = req(
        "+8613800138001",
        "宽带坏了",
        Some("x-2"),
        Category::Fault,
        Intent::Case,
        T0,
    );
    assert!(matches!(
        s.intake(good).await.unwrap(),
        IntakeOutcome::Stored { .. }
    ));
    s.close().await;
}

/// A queued message whose stored recipient no longer parses (an older version's row, or one
/// edited by hand) fails at its claim with the reason, masked, and is neither handed to a
/// sender nor claimed again, nor does it take a send token; the other claimed message goes
/// out as usual. `corrupt` runs an UPDATE on the engine's own connection.
async fn a_recipient_that_no_longer_parses_fails_at_its_claim<F, Fut>(s: Arc<dyn Store>, corrupt: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ids = s
        .queue_outbound_bulk(
            &[
                draft("notice", "+8613800000401"),
                draft("notice", "+8613800000402"),
                draft("notice", "+8613800000403"),
            ],
            T0,
        )
        .await
        .unwrap();
    corrupt(format!(
        "UPDATE messages SET to_addr = 'call 12345678 pls' WHERE id = {}",
        ids[0].get()
    ))
    .await;
    // A national number parses (as +86…), but is not what this version stores: reading it
    // with a country could change who receives it, so it is refused too.
    corrupt(format!(
        "UPDATE messages SET to_addr = '13800000403' WHERE id = {}",
        ids[2].get()
    ))
    .await;
    // A paced claim: the bucket holds three tokens and refills at one in 1,000 s.
    let rate = Some(switchboard::outbound::rate::Rate {
        per_sec: 0.001,
        burst: 3.0,
    });
    let got = s
        .claim_outbox_paced(Channel::Sms, T0, 10_000, 10, rate)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|i| i.message_id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    assert_eq!(got[0].to.as_str(), "+8613800000402");
    // The refused rows took no token: two are left for the next claim at the same instant.
    let more = s
        .queue_outbound_bulk(
            &[
                draft("notice", "+8613800000404"),
                draft("notice", "+8613800000405"),
            ],
            T0,
        )
        .await
        .unwrap();
    let next = s
        .claim_outbox_paced(Channel::Sms, T0, 10_000, 2, rate)
        .await
        .unwrap();
    assert_eq!(next.iter().map(|i| i.message_id).collect::<Vec<_>>(), more);
    for id in [ids[0], ids[2]] {
        let failed = s.message(id).await.unwrap().unwrap();
        assert_eq!(failed.status, "failed");
        let why = failed.last_error.unwrap_or_default();
        assert!(why.contains("not a phone number"), "{why}");
        assert!(!why.contains("1234") && !why.contains("0403"), "{why}");
    }
    // Once the leases are over, the refused messages do not come back.
    let again = s
        .claim_outbox(Channel::Sms, T0 + 60_000, 10_000, 10)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|i| i.message_id).collect::<Vec<_>>(),
        vec![ids[1], more[0], more[1]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_recipient_that_no_longer_parses_fails_at_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/to.db", dir.path().display());
    let s = switchboard::store::open(&url, 4, 64).await.unwrap();
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    a_recipient_that_no_longer_parses_fails_at_its_claim(s.clone(), |sql| {
        let raw = raw.clone();
        async move {
            sqlx::query(&sql).execute(&raw).await.unwrap();
        }
    })
    .await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_recipient_that_no_longer_parses_fails_at_its_claim() {
    let url = common::fresh_pg_database().await;
    let s = switchboard::store::open(&url, 4, 64).await.unwrap();
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    a_recipient_that_no_longer_parses_fails_at_its_claim(s.clone(), |sql| {
        let raw = raw.clone();
        async move {
            sqlx::query(&sql).execute(&raw).await.unwrap();
        }
    })
    .await;
    raw.close().await;
    s.close().await;
    common::drop_pg_database(&url).await;
}

/// PostgreSQL proves the work queue's clause implies the partial index of active cases
/// (migration 0020) and can walk it in order: with sequential scans and sorts priced out, the
/// plan of each queue query (first page, after a cursor, with filters) names that index and
/// sorts nothing. (On a small table its planner rightly prefers a scan; what matters is that
/// the index is usable when the table is large.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_work_queue_can_walk_the_active_case_index() {
    use switchboard::domain::CaseStatus;
    use switchboard::store::sql::{Bind, case_filter};
    let url = common::fresh_pg_database().await;
    let s = switchboard::store::open(&url, 4, 64).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SET enable_sort = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let queue = switchboard::store::CaseFilter {
        statuses: CaseStatus::ACTIVE.to_vec(),
        ..Default::default()
    };
    for f in [
        queue.clone(),
        switchboard::store::CaseFilter {
            after: Some((1, 2)),
            ..queue.clone()
        },
        switchboard::store::CaseFilter {
            statuses: vec![CaseStatus::Open],
            category: Some("complaint".into()),
            text: Some("138".into()),
            after: Some((1, 2)),
            ..queue.clone()
        },
    ] {
        let (clause, vals) = case_filter(&f);
        let sql =
            format!("EXPLAIN SELECT id FROM cases {clause} ORDER BY resolve_due_at, id LIMIT $1");
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(50_i64);
        for v in vals {
            q = match v {
                Bind::Int(i) => q.bind(i),
                Bind::Text(t) => q.bind(t),
            };
        }
        let plan = q.fetch_all(&mut *conn).await.unwrap().join("\n");
        assert!(plan.contains("cases_active_due"), "{sql}\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}\n{plan}");
    }
    drop(conn);
    pool.close().await;
    s.close().await;
    common::drop_pg_database(&url).await;
}
