//! Durable state behind one trait, [`Store`], with a SQLite implementation (embedded default,
//! one writer task doing group commit) and a PostgreSQL one (several instances, leases with
//! `FOR UPDATE SKIP LOCKED`). The backend is chosen by the URL scheme. Both pass the same
//! conformance suite (`tests/it/store_conformance.rs`).
//!
//! Layout: `mod.rs` types and the trait; `sqlite.rs`, `postgres.rs` the engines;
//! `migrations/{sqlite,postgres}/` their schemas.

mod engine;
pub use engine::EngineStore;
mod intake_store;
pub use intake_store::IntakeStore;
mod outbox;
pub use outbox::OutboxStore;
mod campaigns_store;
pub use campaigns_store::CampaignStore;
mod cases_store;
pub use cases_store::CaseStore;
mod sla_store;
pub use sla_store::SlaStore;
mod surveys;
pub use surveys::SurveyStore;
mod rules_store;
pub use rules_store::RuleStore;
mod tokens;
pub use tokens::TokenStore;
mod postgres;
pub mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{
    CampaignId, CaseId, Category, Channel, EmailAddress, Intent, Lang, MessageId, MessageKind,
    Query,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed; the caller answers 503 so the peer retries.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refuses this input and always will (a value it cannot hold, a row over a
    /// size limit): a 4xx, never a 503 the peer would retry forever.
    #[error("the database cannot store this input: {0}")]
    Rejected(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db) if is_poison(db.code().as_deref()) => {
                StoreError::Rejected(db.message().to_string())
            }
            sqlx::Error::Encode(_) => StoreError::Rejected(e.to_string()),
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// Database error codes that mean "this input can never be stored": PostgreSQL SQLSTATE class
/// 22 (data exception: a NUL in text, a value out of range) and 54 (program limit exceeded: an
/// index row over its size limit); SQLite SQLITE_TOOBIG (18) and SQLITE_MISMATCH (20).
fn is_poison(code: Option<&str>) -> bool {
    match code {
        Some(c) if c.len() == 5 => c.starts_with("22") || c.starts_with("54"),
        Some("18") | Some("20") => true,
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How many of a claim of `limit` each lane may take, lowest lane first: the urgent lane may
/// fill the whole batch, and each lower lane still gets an eighth of it (at least one) when it
/// has due work, so nothing starves; capacity a lane leaves unused passes down.
pub fn lane_quota(lane: crate::domain::Lane, limit: i64, claimed_so_far: i64) -> i64 {
    let share = (limit / 8).max(1);
    match lane {
        crate::domain::Lane::Urgent => limit,
        _ => (limit - claimed_so_far).max(share),
    }
}

/// An inbound message as the edge parsed it.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub channel: Channel,
    pub dialect: &'static str,
    /// The bridge's message id, when the dialect has one.
    pub external_id: Option<String>,
    /// The customer: a number or a mailbox, parsed at the edge.
    pub from: crate::domain::Address,
    /// Our number or address the message was sent to, as the peer gave it.
    pub to: String,
    pub subject: Option<String>,
    pub text: String,
    /// The payload as received (query string or body).
    pub raw: Vec<u8>,
    /// Email only: threading and loop information.
    pub email: Option<EmailMeta>,
    /// SMS: one part of a concatenated message the bridge did not reassemble.
    pub part: Option<crate::bridges::smpp::Part>,
}

/// What intake needs to know about an email beyond its text.
#[derive(Debug, Clone, Default)]
pub struct EmailMeta {
    /// The text with quoted history removed: what the classifier sees.
    pub text_for_rules: String,
    /// Where an acknowledgement goes (Return-Path, else From); None: never acknowledge.
    pub reply_to: Option<EmailAddress>,
    /// Message-IDs from In-Reply-To and References (without <>).
    pub refs: Vec<String>,
    /// A case number found in the subject.
    pub case_ref: Option<CaseId>,
    /// Why no automatic reply may be sent (RFC 3834: auto-submitted, list, bulk, bounce...).
    pub automated: Option<&'static str>,
}

/// Everything intake decided before touching the database; the store applies it in one
/// transaction.
pub struct IntakeRequest {
    pub msg: NewInbound,
    /// `dialect:external_id`; `None` for id-less messages, which dedupe by `content_hash`.
    pub dedupe_key: Option<String>,
    pub content_hash: String,
    pub dedupe_window_ms: i64,
    pub category: Category,
    pub intent: Intent,
    /// The self-service query when `intent` is `SelfService`.
    pub query: Option<Query>,
    /// A normalised survey answer candidate; it becomes one only if a survey waits.
    pub survey_answer: Option<String>,
    pub rules_version: String,
    pub lang: Lang,
    pub now_ms: i64,
    pub reply_window_ms: i64,
    /// Service levels: a new case's deadlines and clock come from its category's policy.
    pub sla: Arc<crate::sla::SlaSettings>,
    /// Our outbound message ids this message refers to (email threading: `<sb-42@domain>`).
    pub thread_message_ids: Vec<MessageId>,
    /// A case number the customer quoted (email subject).
    pub case_ref: Option<CaseId>,
    /// (limit, window ms), email only: no ack when the sender already got `limit` email acks in
    /// the window.
    pub ack_limit: Option<(i64, i64)>,
    pub ack: Arc<dyn AckBuilder>,
    /// The self-service backend's answer to a fee or points query (`None`: the fallback).
    pub backend: Option<crate::intake::selfservice::Answer>,
}

/// What the store knows once the case is settled; the ack is rendered from it.
#[derive(Debug, Clone)]
pub struct AckContext {
    pub case_id: Option<CaseId>,
    pub new_case: bool,
    pub category: Category,
    pub intent: Intent,
    pub lang: Lang,
    pub channel: Channel,
    /// Customer address (reply goes here) and our address (reply comes from it).
    pub customer: crate::domain::Address,
    pub service_addr: String,
    pub tier: crate::domain::Tier,
    pub query: Option<Query>,
    /// The asked-for case when it exists and belongs to the customer.
    pub progress: Option<CaseProgress>,
    /// Email: the address acks go to and the customer's Message-ID we reply to.
    pub reply_to: Option<EmailAddress>,
    pub in_reply_to: Option<String>,
    pub subject: Option<String>,
    /// The self-service backend's answer (`None`: none configured, or it could not answer).
    pub backend: Option<crate::intake::selfservice::Answer>,
    /// What this message did to its case beyond joining it: `reopened` (a dissatisfied
    /// return visit, a message on a resolved case), `closed` (a satisfied return visit),
    /// `linked` (a new case for a message about a closed one).
    pub case_change: Option<crate::domain::CaseEventKind>,
}

/// What a customer may learn about their own case by self-service.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseProgress {
    pub id: CaseId,
    pub status: crate::domain::CaseStatus,
    pub category: crate::domain::Category,
    pub tier: crate::domain::Tier,
    pub resolve_due_at: i64,
}

/// A message to queue in the outbox.
#[derive(Debug, Clone)]
pub struct OutboundDraft {
    pub channel: Channel,
    pub driver: String,
    pub from: String,
    /// The customer or contact it goes to (masked in logs; bound as its raw text).
    pub to: crate::domain::Address,
    pub subject: Option<String>,
    pub text: String,
    /// Email: the HTML alternative and threading headers (JSON).
    pub html: Option<String>,
    pub headers: Option<String>,
    pub kind: MessageKind,
    pub encoding: &'static str,
    pub segments: i64,
    /// Not sent before this instant (a notice to a tier that is off work); `None`: now.
    pub not_before: Option<i64>,
    /// An ack rendered when it is sent: its inputs (`crate::intake::AckRender`, JSON); `text`,
    /// `subject` and `html` are empty until then.
    pub render: Option<String>,
}

impl OutboundDraft {
    /// When its outbox row may be claimed: its `not_before`, never before `now_ms`.
    pub fn queue_at(&self, now_ms: i64) -> i64 {
        self.not_before.unwrap_or(now_ms).max(now_ms)
    }
}

/// Renders the acknowledgement for a settled intake; `None` sends nothing.
pub trait AckBuilder: Send + Sync {
    fn build(&self, ctx: &AckContext) -> Option<OutboundDraft>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IntakeOutcome {
    Duplicate {
        message_id: MessageId,
    },
    Stored {
        message_id: MessageId,
        case_id: Option<CaseId>,
        new_case: bool,
        ack_message_id: Option<MessageId>,
    },
    /// One part of a concatenated SMS kept until the rest arrives.
    Part {
        part_id: i64,
        received: i64,
        total: i64,
    },
}

/// A claimed send, leased to one worker until `lease_until`. Its `Debug` masks the
/// recipient and leaves out the texts, so logging an item never writes a number, an address
/// or what was said.
#[derive(Clone)]
pub struct OutboxItem {
    pub message_id: MessageId,
    pub channel: Channel,
    pub from: String,
    /// Parsed again from the stored text when claimed (`OutboxRow::into_item`).
    pub to: crate::domain::Address,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// JSON: {"in_reply_to": "...", "references": ["..."]}.
    pub headers: Option<String>,
    pub kind: MessageKind,
    /// An ack not rendered yet: its rendering inputs (`crate::intake::AckRender`, JSON).
    pub render: Option<String>,
    pub attempts: i64,
    /// Never sent after this (a campaign's validity).
    pub not_after: Option<i64>,
}

impl std::fmt::Debug for OutboxItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxItem")
            .field("message_id", &self.message_id)
            .field("channel", &self.channel)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("kind", &self.kind)
            .field("text_chars", &self.text.chars().count())
            .field("rendered", &self.render.is_none())
            .field("attempts", &self.attempts)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// One outbox claim: `limit` due sends of `channel`, leased until `now_ms + lease_ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimQuery {
    pub channel: Channel,
    pub now_ms: i64,
    pub lease_ms: i64,
    pub limit: i64,
    pub rate: Option<crate::outbound::rate::Rate>,
}

/// The row behind an [`OutboxItem`], as both engines select it.
#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub message_id: MessageId,
    pub attempts: i64,
    pub from_addr: String,
    pub to_addr: String,
    pub subject: Option<String>,
    pub body: String,
    pub body_html: Option<String>,
    pub headers: Option<String>,
    pub kind: Option<MessageKind>,
    pub render: Option<String>,
    pub not_after: Option<i64>,
}

/// A claimed send whose stored recipient no longer parses as an address of its channel
/// (written by an older version or by hand): the claim fails it at once, so it is neither
/// sent to the bridge nor claimed again.
pub(crate) struct Unsendable {
    pub message_id: MessageId,
    pub error: String,
}

impl OutboxRow {
    pub fn into_item(self, channel: Channel) -> Result<OutboxItem, Unsendable> {
        // Only a number in the form this version stores (E.164 or a short code) goes out:
        // parsing anything else could change who receives it (a national number read with
        // the wrong country). A mailbox may differ in case only (older rows kept it). The
        // reason does not quote the value: masking assumes a well-formed address.
        let Some(to) =
            crate::domain::Address::stored(channel, &self.to_addr).filter(|a| match channel {
                Channel::Sms => a.as_str() == self.to_addr,
                Channel::Email => a.as_str().eq_ignore_ascii_case(&self.to_addr),
            })
        else {
            return Err(Unsendable {
                message_id: self.message_id,
                error: format!(
                    "the stored recipient is not a {} in the form switchboard stores; \
                     nothing was sent (queue the message again with a valid recipient)",
                    match channel {
                        Channel::Sms => "phone number (E.164 or a short code)",
                        Channel::Email => "valid email address",
                    }
                ),
            });
        };
        Ok(OutboxItem {
            message_id: self.message_id,
            channel,
            from: self.from_addr,
            to,
            subject: self.subject,
            text: self.body,
            html: self.body_html,
            headers: self.headers,
            kind: self.kind.unwrap_or(MessageKind::Reply),
            render: self.render,
            attempts: self.attempts,
            not_after: self.not_after,
        })
    }
}

/// The result of one send attempt, as the outbox records it.
#[derive(Debug, Clone)]
pub enum SendUpdate {
    /// Sent: status `sent`, outbox row gone.
    Complete {
        message_id: MessageId,
        provider_id: Option<String>,
        now_ms: i64,
    },
    /// Try again at `next_at_ms`.
    Retry {
        message_id: MessageId,
        next_at_ms: i64,
        error: String,
        now_ms: i64,
    },
    /// Given up: status `failed`, outbox row gone.
    Fail {
        message_id: MessageId,
        error: String,
        now_ms: i64,
    },
}

/// A queued ack as its send rendered it (`sql::SET_RENDERED`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub message_id: MessageId,
    pub text: String,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub encoding: &'static str,
    pub segments: i64,
}

/// Delivery state of an outbound message as a bridge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Accepted by the SMSC / queued there.
    Accepted,
    /// A transient bounce (DSN 4.x.x): still trying somewhere.
    Delayed,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Delayed => "delayed",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One part of a concatenated SMS, to be kept until its group is complete.
#[derive(Debug, Clone)]
pub struct NewPart {
    pub group_key: String,
    pub seq: i64,
    pub total: i64,
    pub dialect: String,
    pub dedupe_key: Option<String>,
    pub external_id: Option<String>,
    pub from: String,
    pub to: String,
    pub body: String,
    pub raw: Vec<u8>,
    pub received_at: i64,
}

/// A stored part of an open group.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredPart {
    pub id: i64,
    pub seq: i64,
    pub total: i64,
    pub dialect: String,
    pub external_id: Option<String>,
    pub from_addr: String,
    pub to_addr: String,
    pub body: String,
    pub raw: Option<Vec<u8>>,
    pub received_at: i64,
}

/// What storing a part did.
#[derive(Debug, Clone)]
pub enum PartOutcome {
    /// The bridge sent this part before (same id, or same place in the open group).
    Duplicate,
    /// Stored; the open group's parts so far, in order.
    Stored {
        part_id: i64,
        group: Vec<StoredPart>,
    },
}

#[derive(Debug, Clone)]
pub struct DlrUpdate {
    /// Our message id when the report carries it (we put it in the dlr-url).
    pub message_id: Option<MessageId>,
    /// The bridge's id (Jasmin's message uuid) as fallback.
    pub provider_id: Option<String>,
    pub status: DeliveryStatus,
    pub detail: String,
    pub now_ms: i64,
}

/// A stored message for the API, which shows its addresses and text to agents; its `Debug`
/// masks the addresses and leaves out subject, text and error, so a log never holds them.
#[derive(Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: MessageId,
    pub direction: crate::domain::Direction,
    pub channel: crate::domain::Channel,
    pub dialect: String,
    pub external_id: Option<String>,
    pub from_addr: String,
    pub to_addr: String,
    pub subject: Option<String>,
    pub body: String,
    pub category: Option<String>,
    pub intent: Option<String>,
    pub rules_version: Option<String>,
    pub case_id: Option<CaseId>,
    pub kind: Option<MessageKind>,
    pub status: String,
    pub encoding: Option<String>,
    pub segments: Option<i64>,
    pub attempts: i64,
    pub provider_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// A queued ack not sent yet: what it is rendered from (`crate::intake::AckRender`);
    /// [`crate::intake::AckRenderer::show`] fills in its text for a reader.
    #[serde(skip)]
    pub render: Option<String>,
}

impl std::fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRecord")
            .field("id", &self.id)
            .field("direction", &self.direction)
            .field("channel", &self.channel)
            .field("dialect", &self.dialect)
            .field("from_addr", &crate::domain::mask(&self.from_addr))
            .field("to_addr", &crate::domain::mask(&self.to_addr))
            .field("body_chars", &self.body.chars().count())
            .field("case_id", &self.case_id)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What the agents' work queue filters by. Empty or `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub statuses: Vec<crate::domain::CaseStatus>,
    pub category: Option<String>,
    pub tier: Option<crate::domain::Tier>,
    /// Resolve deadline before this instant.
    pub due_before: Option<i64>,
    /// Only cases with (true) or without (false) an `sla_breach` event.
    pub breached: Option<bool>,
    pub assignee: Option<String>,
    pub city: Option<String>,
    /// Customer or subject contains this (case-sensitive; `%` and `_` match themselves).
    pub text: Option<String>,
    /// Keyset cursor: cases after (resolve_due_at, id).
    pub after: Option<(i64, i64)>,
}

/// One entry of a case's history (opened, reply, escalated, sla_warning, sla_breach, resolved…).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct CaseEvent {
    pub id: i64,
    pub at: i64,
    pub kind: crate::domain::CaseEventKind,
    pub detail: Option<String>,
}

/// A case clock claimed by the SLA scheduler, with the case as it is now (`Debug` masks the
/// customer).
#[derive(Clone, sqlx::FromRow)]
pub struct DueClock {
    pub case_id: CaseId,
    pub step: String,
    pub due_at: i64,
    /// Steps taken (`crate::sla::Step::bit`).
    pub fired: i64,
    pub category: crate::domain::Category,
    pub status: crate::domain::CaseStatus,
    pub tier: crate::domain::Tier,
    pub opened_at: i64,
    /// 1 once a person answered (`acked_at` set).
    pub acked: i64,
    pub customer: String,
    pub channel: crate::domain::Channel,
    pub ack_due_at: i64,
    pub resolve_due_at: i64,
}

impl std::fmt::Debug for DueClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueClock")
            .field("case_id", &self.case_id)
            .field("step", &self.step)
            .field("due_at", &self.due_at)
            .field("fired", &self.fired)
            .field("category", &self.category)
            .field("status", &self.status)
            .field("tier", &self.tier)
            .field("customer", &crate::domain::mask(&self.customer))
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// What the SLA scheduler decided for one due clock; the store applies it as given, only if
/// the clock and the case are still as they were when claimed (else nothing of it).
#[derive(Debug, Clone)]
pub struct SlaApply {
    pub case_id: CaseId,
    /// The clock as claimed (guard).
    pub step: String,
    pub fired_before: i64,
    pub due_before: i64,
    /// The clock after: the next step and when (`None`: every step taken), or removed.
    pub fired_after: i64,
    pub next: Option<(String, i64)>,
    pub remove: bool,
    /// The case's tier as claimed (guard) and after.
    pub tier_before: crate::domain::Tier,
    pub tier_after: crate::domain::Tier,
    /// A case event (kind, detail).
    pub event: Option<(crate::domain::CaseEventKind, String)>,
    pub notices: Vec<OutboundDraft>,
    pub now_ms: i64,
}

/// A case for the API; its `Debug` masks the customer and leaves out the subject.
#[derive(Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: CaseId,
    pub channel: crate::domain::Channel,
    pub customer: String,
    pub category: crate::domain::Category,
    pub status: crate::domain::CaseStatus,
    pub tier: crate::domain::Tier,
    pub lang: String,
    pub subject: Option<String>,
    pub rules_version: String,
    pub opened_at: i64,
    pub last_message_at: i64,
    pub ack_due_at: i64,
    pub resolve_due_at: i64,
    pub message_count: i64,
    /// First answer by a person (an agent's reply).
    pub acked_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// The agent (token name) the case is assigned to.
    pub assignee: Option<String>,
    /// Why it was resolved (`cases.resolution_codes`).
    pub resolution_code: Option<String>,
    /// From the number's prefix when it opened (`sla.city_prefixes`).
    pub city: Option<String>,
    /// The closed case the customer wrote about when this one opened.
    pub linked_case_id: Option<CaseId>,
    /// When its SLA clock counts from, if not from its opening: a reopening after the
    /// resolution deadline (a new round).
    pub sla_base_at: Option<i64>,
    /// When a person last answered (`acked_at` is the first time).
    pub answered_at: Option<i64>,
}

impl std::fmt::Debug for CaseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRecord")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("customer", &crate::domain::mask(&self.customer))
            .field("category", &self.category)
            .field("status", &self.status)
            .field("tier", &self.tier)
            .field("opened_at", &self.opened_at)
            .field("ack_due_at", &self.ack_due_at)
            .field("resolve_due_at", &self.resolve_due_at)
            .field("acked_at", &self.acked_at)
            .field("resolved_at", &self.resolved_at)
            .field("assignee", &self.assignee)
            .field("linked_case_id", &self.linked_case_id)
            .finish_non_exhaustive()
    }
}

impl CaseRecord {
    /// When the case's SLA clock counts from.
    pub fn clock_base(&self) -> i64 {
        self.sla_base_at.unwrap_or(self.opened_at)
    }

    /// A person answered in the clock's current round (its answer steps are moot).
    pub fn answered_in_round(&self) -> bool {
        self.acked_at.is_some()
            && self
                .sla_base_at
                .is_none_or(|b| self.answered_at.is_some_and(|a| a >= b))
    }
}

/// A campaign to create.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub kind: crate::campaigns::Kind,
    pub channel: crate::campaigns::import::Target,
    pub template: String,
    pub subject: Option<String>,
    pub start_at: i64,
    pub valid_until: Option<i64>,
    pub rate_per_sec: f64,
    pub urgent: bool,
    pub created_by: String,
    pub now_ms: i64,
    pub cron: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub name: String,
    pub kind: crate::campaigns::Kind,
    pub channel: crate::campaigns::import::Target,
    pub template: String,
    pub subject: Option<String>,
    pub status: crate::domain::CampaignStatus,
    pub start_at: i64,
    pub valid_until: Option<i64>,
    pub rate_per_sec: f64,
    pub urgent: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub note: Option<String>,
    pub cron: Option<String>,
    pub parent_id: Option<CampaignId>,
    pub next_run_at: Option<i64>,
}

/// A recipient waiting for the dispatcher.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipientRow {
    pub seq: i64,
    pub channel: crate::domain::Channel,
    pub address: String,
    pub vars: String,
    pub consent: Option<String>,
}

/// An agent correcting a case's category.
#[derive(Debug, Clone)]
pub struct Recategorize {
    pub case_id: CaseId,
    pub from: crate::domain::Category,
    pub to: crate::domain::Category,
    pub answer_due: i64,
    pub resolve_due: i64,
    pub clock: ClockChange,
    pub by: String,
    pub reason: String,
    pub now_ms: i64,
}

/// An agent resolving a case.
#[derive(Debug, Clone)]
pub struct Resolve<'a> {
    pub code: Option<&'a str>,
    /// The `resolved` event's detail (`cases::resolve_detail`).
    pub detail: String,
    /// When its return visit goes out (`None`: no visit).
    pub visit_due: Option<i64>,
    pub now_ms: i64,
}

/// A return visit the scheduler claimed, with its case as it is now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueVisit {
    pub case_id: CaseId,
    /// `scheduled` (the survey is due) or `sent` (the answer time is up).
    pub state: String,
    pub due_at: i64,
    pub channel: crate::domain::Channel,
    pub customer: String,
    pub status: crate::domain::CaseStatus,
    pub category: crate::domain::Category,
    pub tier: crate::domain::Tier,
    pub lang: String,
    pub subject: Option<String>,
    /// When this customer's latest visit went out (this case's earlier one too, if it was
    /// resolved before).
    pub last_sent: Option<i64>,
}

/// What the scheduler decided for one visit; applied only if the visit is still as claimed.
#[derive(Debug, Clone)]
pub struct VisitApply {
    pub case_id: CaseId,
    pub state_before: String,
    pub due_before: i64,
    pub state: String,
    pub due_at: Option<i64>,
    /// The survey went out now (sets `sent_at`).
    pub sent: bool,
    /// Close the case (if still resolved).
    pub close_case: bool,
    /// Applied only while the case is still resolved.
    pub need_resolved: bool,
    /// Sending: applied only if no other visit went to this customer since then.
    pub not_sent_since: Option<i64>,
    pub event: Option<(crate::domain::CaseEventKind, String)>,
    /// The survey message, and until when its answer is waited for.
    pub survey: Option<(OutboundDraft, i64)>,
    pub now_ms: i64,
}

/// What a lifecycle change does to a case's SLA clock.
#[derive(Debug, Clone)]
pub enum ClockChange {
    Keep,
    Remove,
    /// Next step (name), due instant (`None`: every step taken), steps taken.
    Set {
        step: String,
        due: Option<i64>,
        fired: i64,
        /// A new round: the clock counts from here, with these deadlines.
        round: Option<Round>,
    },
}

/// A new round of a case's clock, counted from `base`. Its deadlines are the clock's and the
/// case view's; the case's stored `ack_due_at` / `resolve_due_at` stay the first round's, so
/// the SLA report judges the case by its first promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub base: i64,
}

/// An escalation by hand: one tier up, its event and its notices.
#[derive(Debug, Clone)]
pub struct Escalation<'a> {
    pub case_id: CaseId,
    /// The tier the caller saw: the case moves only if it is still at it (and active).
    pub tier_before: crate::domain::Tier,
    pub tier_after: crate::domain::Tier,
    pub detail: String,
    pub notices: &'a [OutboundDraft],
    pub now_ms: i64,
}

/// A case going from one status to another (the same for a note or an assignment), with its
/// event; applied only if the case is still in `from`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub case_id: CaseId,
    pub from: crate::domain::CaseStatus,
    pub to: crate::domain::CaseStatus,
    /// `resolved_at` after the move (`cases::resolved_at`): `None` keeps it.
    pub resolved_at: Option<Option<i64>>,
    /// Set the assignee (None: keep).
    pub assignee: Option<String>,
    pub event: crate::domain::CaseEventKind,
    pub detail: String,
    pub clock: ClockChange,
    pub now_ms: i64,
}

/// A rule set as stored (without its id).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NewRuleVersion {
    pub created_at: i64,
    pub created_by: String,
    pub sha: String,
    pub source: String,
    pub note: Option<String>,
    pub diff: Option<String>,
    pub macro_f1: Option<f64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RuleVersion {
    pub id: i64,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub v: NewRuleVersion,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RuleVersionSummary {
    pub id: i64,
    pub created_at: i64,
    pub created_by: String,
    pub sha: String,
    pub note: Option<String>,
    pub macro_f1: Option<f64>,
    /// Last time it was activated, if ever.
    pub activated_at: Option<i64>,
    pub active: bool,
}

/// A stored inbound message as the classifier saw it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredText {
    pub id: MessageId,
    pub subject: Option<String>,
    pub body: String,
    pub category: Option<String>,
    pub rules_version: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub messages_in: i64,
    pub messages_out: i64,
    pub cases: i64,
    pub outbox: i64,
}

/// The whole store, one trait per aggregate (each in its file beside this one); an engine
/// implements them all and is a `Store`. Bring the aggregates' methods into scope with
/// `use crate::store::prelude::*`.
pub trait Store:
    EngineStore
    + IntakeStore
    + OutboxStore
    + CampaignStore
    + CaseStore
    + SlaStore
    + SurveyStore
    + RuleStore
    + TokenStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: EngineStore
        + IntakeStore
        + OutboxStore
        + CampaignStore
        + CaseStore
        + SlaStore
        + SurveyStore
        + RuleStore
        + TokenStore
        + Send
        + Sync
        + 'static
{
}

/// The aggregate traits, for `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::{
        CampaignStore, CaseStore, EngineStore, IntakeStore, OutboxStore, RuleStore, SlaStore,
        Store, SurveyStore, TokenStore,
    };
}

/// Sets SQLite up before its first use in this process (it applies only before SQLite
/// initialises, so it runs once, before the first connection; later it would be refused
/// with `SQLITE_MISUSE`, which is harmless):
/// - memory statistics off. With them on, every allocation SQLite makes takes a global mutex
///   (`perf` under load: ~7 % of the samples in `pthread_mutex_lock`/`unlock`, most on the
///   writer thread); nothing here reads them.
/// - the page cache wrapper of [`sqlite::pcache`], which spares the writer a walk of its
///   whole page cache at nearly every commit.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` is documented safe to call before `sqlite3_initialize`
        // with no other thread using SQLite; `Once` makes this the only call, and it runs
        // before this process opens any SQLite connection (the engine is opened here first).
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialised already; memory statistics stay on"
            );
        }
        let rc = sqlite::pcache::install();
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialised already; its page cache stays unwrapped"
            );
        }
    });
}

/// Opens the backend named by the URL scheme and migrates it.
///
/// # Errors
/// Unknown scheme, unreachable database, failed migration.
pub async fn open(
    url: &str,
    max_connections: u32,
    group_commit_max: usize,
) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        configure_sqlite();
        Arc::new(SqliteStore::open(url, max_connections, group_commit_max).await?)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Arc::new(PgStore::open(url, max_connections).await?)
    } else {
        anyhow::bail!("database.url: unsupported scheme (use sqlite:// or postgres://)");
    };
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migrating the database: {e}"))?;
    Ok(store)
}

#[cfg(test)]
mod memstatus_tests {
    /// In a fresh process (this test binary run again for the child test alone), opening the
    /// SQLite engine's way turns SQLite's memory statistics off: SQLite then counts nothing,
    /// so no allocation takes the statistics mutex.
    #[test]
    fn sqlite_memory_statistics_are_off() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::memstatus_tests::memstatus_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SB_MEMSTATUS_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("memstatus child: used 0"), "{text}");
    }

    #[test]
    fn memstatus_child() {
        if std::env::var("SB_MEMSTATUS_CHILD").is_err() {
            return;
        }
        super::configure_sqlite();
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a'), ('b');")
            .unwrap();
        // SAFETY: a plain read of a counter.
        let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
        println!("memstatus child: used {used}");
        assert_eq!(used, 0);
    }
}

#[cfg(test)]
mod outbox_item_tests {
    use super::*;

    fn row(to: &str) -> OutboxRow {
        OutboxRow {
            message_id: MessageId(3),
            attempts: 0,
            from_addr: "10000".into(),
            to_addr: to.into(),
            subject: None,
            body: "hi".into(),
            body_html: None,
            headers: None,
            kind: Some(MessageKind::Notice),
            render: None,
            not_after: None,
        }
    }

    #[test]
    fn records_in_a_log_show_neither_addresses_nor_texts() {
        let m = MessageRecord {
            id: MessageId(1),
            direction: crate::domain::Direction::In,
            channel: Channel::Email,
            dialect: "email".into(),
            external_id: None,
            from_addr: "zhangsan@example.cn".into(),
            to_addr: "service@example.cn".into(),
            subject: Some("line at 12 Long Road".into()),
            body: "my number is 13800138000".into(),
            category: None,
            intent: None,
            rules_version: None,
            case_id: Some(CaseId(2)),
            kind: None,
            status: "received".into(),
            encoding: None,
            segments: None,
            attempts: 0,
            provider_id: None,
            last_error: Some("relay refused zhangsan@example.cn".into()),
            created_at: 0,
            updated_at: 0,
            render: None,
        };
        let c = CaseRecord {
            id: CaseId(2),
            channel: Channel::Sms,
            customer: "+8613800138000".into(),
            category: crate::domain::Category::Complaint,
            status: crate::domain::CaseStatus::Open,
            tier: crate::domain::Tier::WINDOW,
            lang: "zh".into(),
            subject: Some("Long Road".into()),
            rules_version: "v1".into(),
            opened_at: 0,
            last_message_at: 0,
            ack_due_at: 0,
            resolve_due_at: 0,
            message_count: 1,
            acked_at: None,
            resolved_at: None,
            assignee: None,
            resolution_code: None,
            city: None,
            linked_case_id: None,
            sla_base_at: None,
            answered_at: None,
        };
        let shown = format!("{m:?} {c:?} {:?}", Some(&c));
        assert!(
            shown.contains("z***@example.cn") && shown.contains("+86138****8000"),
            "{shown}"
        );
        for secret in ["zhangsan", "13800138000", "Long Road"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn a_claimed_recipient_goes_out_only_as_it_was_stored() {
        let to = |t: &str, ch| row(t).into_item(ch).map(|i| i.to.as_str().to_string());
        assert_eq!(
            to("+8613800138000", Channel::Sms).ok().as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(to("10086", Channel::Sms).ok().as_deref(), Some("10086"));
        // A national number would be read with a country: refused, not guessed.
        assert!(to("13800138000", Channel::Sms).is_err());
        assert!(to("07700900123", Channel::Sms).is_err());
        assert!(to("zhangsan@example.cn", Channel::Sms).is_err());
        // A mailbox may differ in case (older rows kept it).
        assert_eq!(
            to("ZhangSan@Example.cn", Channel::Email).ok().as_deref(),
            Some("zhangsan@example.cn")
        );
        assert!(to("Ops <ops@example.cn>", Channel::Email).is_err());
        let Err(u) = row("13800138000").into_item(Channel::Sms) else {
            panic!("accepted")
        };
        assert_eq!(u.message_id, MessageId(3));
        assert!(!u.error.contains("0013"), "{}", u.error);
    }

    #[test]
    fn an_outbox_item_in_a_log_shows_neither_the_recipient_nor_the_text() {
        let item = OutboxItem {
            message_id: MessageId(7),
            channel: Channel::Sms,
            from: "10000".into(),
            to: "+8613800138000".parse().unwrap(),
            subject: Some("your case about the line at 12 Long Road".into()),
            text: "Dear Zhang San, your case C-7 is open".into(),
            html: Some("<p>Dear Zhang San</p>".into()),
            headers: None,
            kind: MessageKind::Reply,
            render: None,
            attempts: 1,
            not_after: None,
        };
        let shown = format!("{item:?}");
        assert!(shown.contains("+86138****8000"), "{shown}");
        for secret in ["13800138000", "Zhang", "Long Road"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
