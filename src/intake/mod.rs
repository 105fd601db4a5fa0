//! Intake: the one path every inbound message takes. Dedupe key, intent, category and
//! language are worked out here before any I/O; [`decide`] then settles dedupe, case, message,
//! acknowledgement and outbox row in ONE transaction of the engine, committed before the
//! webhook answers. `decide.rs` holds every business rule of that transaction, once for both
//! engines.

pub mod decide;
pub mod selfservice;

use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{CaseId, Channel, Intent, Lang, MessageId, Query};
use crate::outbound::segment::segment;
use crate::store::{
    AckBuilder, AckContext, IntakeOutcome, IntakeRequest, NewInbound, OutboundDraft, Store,
    StoreResult,
};
use crate::templates::Templates;
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

impl std::fmt::Debug for AckRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckRenderer").finish_non_exhaustive()
    }
}

/// Renders acknowledgements from templates once the store has settled the case.
pub struct AckRenderer {
    templates: Templates,
    service_name: String,
    service_name_en: String,
    sms_from: String,
    sms_driver: String,
    sla: crate::sla::SlaSettings,
    ack_replies: bool,
    sms_enabled: bool,
    /// The bridge's part cap (`sms.outbound.max_parts`).
    sms_part_cap: u32,
    email_enabled: bool,
    email_from: String,
    zone: chrono_tz::Tz,
}

impl AckRenderer {
    /// # Errors
    /// Templates that do not load.
    pub fn new(settings: &Settings) -> anyhow::Result<AckRenderer> {
        Ok(AckRenderer {
            templates: Templates::load(settings.templates.dir.as_deref())?,
            service_name: settings.templates.service_name.clone(),
            service_name_en: settings.templates.service_name_en.clone(),
            sms_from: settings.sms.outbound.from.clone(),
            sms_driver: format!("{:?}", settings.sms.outbound.driver).to_lowercase(),
            sla: settings.sla.clone(),
            ack_replies: settings.intake.ack_replies,
            sms_enabled: settings.sms.outbound.enabled,
            sms_part_cap: settings.sms.outbound.part_cap(),
            email_enabled: settings.email.smtp.enabled,
            email_from: settings.email.from.clone(),
            zone: settings.time.zone,
        })
    }

    /// An outbound mail's subject (template `subject_template`) and HTML part (`email`), the
    /// body text wrapped in the letter with the case number.
    fn email_parts(
        &self,
        subject_template: &str,
        lang: Lang,
        case_no: &str,
        subject: &str,
        body: &str,
    ) -> Result<(String, String), minijinja::Error> {
        let values = minijinja::context! {
            case_no => case_no,
            subject => subject,
            body => body,
            service_name => self.service_name,
            service_name_en => self.service_name_en,
        };
        let subject = self
            .templates
            .render(subject_template, lang, values.clone())?;
        let html = self.templates.render_html("email", lang, values)?;
        Ok((subject, html))
    }

    /// An instant as customers read it, in the configured zone.
    fn local_time(&self, ms: i64) -> String {
        use chrono::TimeZone;
        match self.zone.timestamp_millis_opt(ms).single() {
            Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
            None => String::new(),
        }
    }

    /// What the acknowledgement for `ctx` is rendered from, or `None` when nothing is to be
    /// sent. Cheap (no template runs): it is worked out inside the intake transaction.
    pub fn inputs(&self, ctx: &AckContext) -> Option<AckRender> {
        let name = match (ctx.intent, ctx.new_case) {
            (Intent::Automated, _) => return None,
            (Intent::OptOut, _) => "opt_out",
            (Intent::OptIn, _) => "opt_in",
            (Intent::Escalate, _) => "escalate",
            (Intent::SurveyAnswer, _)
                if ctx.case_change == Some(crate::domain::CaseEventKind::Reopened) =>
            {
                "visit_reopened"
            }
            (Intent::SurveyAnswer, _) => "survey_thanks",
            (Intent::SelfService, _) => match (ctx.query, &ctx.progress) {
                (Some(Query::Fees), _) if ctx.backend.is_some() => "fees",
                (Some(Query::Fees), _) => "fees_unavailable",
                (Some(Query::Points), _) if ctx.backend.is_some() => "points",
                (Some(Query::Points), _) => "points_unavailable",
                (Some(Query::CaseProgress(_)), Some(_)) => "progress",
                _ => "progress_unknown",
            },
            (Intent::Case, true) => "ack",
            (Intent::Case, false) if self.ack_replies => "reply",
            (Intent::Case, false) => return None,
        };
        let tier = ctx.progress.as_ref().map(|p| p.tier).unwrap_or(ctx.tier);
        let policy = self.sla.policy(ctx.category, ctx.customer.as_str());
        let progress = ctx.progress.as_ref();
        Some(AckRender {
            template: name.to_string(),
            lang: ctx.lang,
            subject: ctx.subject.clone().unwrap_or_default(),
            values: AckValues {
                service_name: self.service_name.clone(),
                service_name_en: self.service_name_en.clone(),
                case_no: ctx.case_id.map(|c| c.number()).unwrap_or_default(),
                category: ctx.category.as_str().to_string(),
                category_zh: ctx.category.zh().to_string(),
                ack_hours: fmt_hours(policy.answer_within.hours()),
                resolve_hours: fmt_hours(policy.resolve_within.hours()),
                tier,
                tier_zh: tier.name_zh().to_string(),
                tier_en: tier.name_en().to_string(),
                asked_case: match ctx.query {
                    Some(Query::CaseProgress(id)) => id.number(),
                    _ => String::new(),
                },
                status_zh: progress
                    .map(|p| status_zh(p.status))
                    .unwrap_or_default()
                    .to_string(),
                status: progress
                    .map(|p| p.status.as_str().to_string())
                    .unwrap_or_default(),
                resolve_by: progress
                    .map(|p| self.local_time(p.resolve_due_at))
                    .unwrap_or_default(),
                backend: ctx.backend.as_deref().cloned().unwrap_or_default(),
            },
        })
    }

    /// The text of the acknowledgement for `ctx`, or `None` when nothing is to be sent or its
    /// template fails.
    pub fn text(&self, ctx: &AckContext) -> Option<String> {
        let inputs = self.inputs(ctx)?;
        match self.render_text(&inputs) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(template = inputs.template, error = %e, "acknowledgement template failed");
                None
            }
        }
    }

    fn render_text(&self, inputs: &AckRender) -> Result<String, minijinja::Error> {
        self.templates.render(
            &inputs.template,
            inputs.lang,
            minijinja::Value::from_serialize(&inputs.values),
        )
    }

    /// A stored message as it reads: a queued ack not sent yet gets the text (subject,
    /// encoding, parts) its send will render, so agents see what the customer will get. A
    /// message whose inputs do not render keeps its empty body.
    pub fn show(&self, m: &mut crate::store::MessageRecord) {
        // Only a queued ack: one whose send failed was never sent, whatever it renders to now.
        let Some(inputs) = m.render.as_deref().filter(|_| m.status == "queued") else {
            return;
        };
        if let Ok(r) = self.render_queued(m.id.get(), m.channel, inputs) {
            m.body = r.text;
            m.subject = r.subject;
            m.encoding = Some(r.encoding.to_string());
            m.segments = Some(r.segments);
        }
    }

    /// Renders a queued ack when its send takes it (off the intake transaction, so the SQLite
    /// writer thread runs nothing but SQL): an SMS is fitted to the bridge's part cap and its
    /// parts counted; an email gets its subject and HTML letter.
    ///
    /// # Errors
    /// Inputs that do not parse or a template that fails: the send fails with this reason.
    pub fn render_queued(
        &self,
        message_id: i64,
        channel: Channel,
        inputs: &str,
    ) -> Result<crate::store::Rendered, String> {
        let inputs: AckRender =
            serde_json::from_str(inputs).map_err(|e| format!("ack inputs do not parse: {e}"))?;
        let text = self
            .render_text(&inputs)
            .map_err(|e| format!("ack template {:?} failed: {e}", inputs.template))?;
        match channel {
            Channel::Sms => {
                // Never more parts than the bridge sends: it would cut the text silently.
                let text = crate::outbound::segment::fit(&text, self.sms_part_cap);
                let seg = segment(&text);
                Ok(crate::store::Rendered {
                    message_id: crate::domain::MessageId(message_id),
                    text,
                    subject: None,
                    html: None,
                    encoding: seg.encoding.as_str(),
                    segments: seg.segments as i64,
                })
            }
            Channel::Email => {
                let (subject, html) = self
                    .email_parts(
                        "email_subject",
                        inputs.lang,
                        &inputs.values.case_no,
                        &inputs.subject,
                        &text,
                    )
                    .map_err(|e| format!("ack email templates failed: {e}"))?;
                Ok(crate::store::Rendered {
                    message_id: crate::domain::MessageId(message_id),
                    text,
                    subject: Some(subject),
                    html: Some(html),
                    encoding: "utf-8",
                    segments: 1,
                })
            }
        }
    }
}

/// What a queued ack is rendered from when it is sent (`messages.render`, JSON): everything
/// the intake transaction knew, so the text is the same whenever it is rendered. Fields added
/// later must have defaults: acks queued by an older version are rendered by a newer one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AckRender {
    pub template: String,
    pub lang: Lang,
    /// The customer's subject (email: the letter's `Re:` line).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    #[serde(default)]
    pub values: AckValues,
}

/// The values an ack template sees (a missing one is empty). Empty ones are left out of the
/// stored inputs (`messages.render`, written inside the intake transaction): a smaller row and
/// less to encode on the writer thread.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AckValues {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_name_en: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub case_no: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub category_zh: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ack_hours: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resolve_hours: String,
    pub tier: crate::domain::Tier,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tier_zh: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tier_en: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub asked_case: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_zh: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resolve_by: String,
    /// The self-service backend's answer (fees, points).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub backend: serde_json::Map<String, serde_json::Value>,
}

/// The language of an opt-out / opt-in keyword's confirmation.
pub fn keyword_lang(text: &str, default: Lang) -> Lang {
    let k: String = text
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    const ENGLISH: &[&str] = &[
        "stop",
        "start",
        "unsubscribe",
        "subscribe",
        "cancel",
        "end",
        "quit",
        "unstop",
        "optout",
        "optin",
    ];
    if ENGLISH.contains(&k.as_str()) {
        Lang::En
    } else if k.is_ascii() {
        Lang::ZhCn
    } else {
        Lang::detect(text, default)
    }
}

/// The domain of our address, which names our Message-IDs (`<sb-42@domain>`).
pub fn email_domain(from: &str) -> String {
    from.rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "switchboard.local".into())
}

/// Our outbound message id from a Message-ID we generated (`sb-42@domain`).
pub fn our_message_id(id: &str, domain: &str) -> Option<MessageId> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, d) = id.rsplit_once('@')?;
    if !d.eq_ignore_ascii_case(domain) {
        return None;
    }
    local.strip_prefix("sb-")?.parse().ok().map(MessageId)
}

fn status_zh(s: crate::domain::CaseStatus) -> &'static str {
    use crate::domain::CaseStatus::*;
    match s {
        Open => "已受理，等待处理",
        Acknowledged => "已答复，处理中",
        InProgress => "处理中",
        Resolved => "已处理完毕",
        Closed => "已关闭",
    }
}

fn fmt_hours(h: f64) -> String {
    // Whole hours (3, 72) as an integer, others as `Display` does ("1.5"; it never writes an
    // exponent or a trailing ".0"). A precision (`{h:.0}`) took the slow exact path
    // (`dragon`), twice an ack, on the writer thread.
    if h.fract() == 0.0 && h.abs() < 1e15 {
        (h as i64).to_string()
    } else {
        h.to_string()
    }
}

impl AckBuilder for AckRenderer {
    /// Whether an ack goes out and to whom; its text is rendered when it is sent
    /// ([`AckRenderer::render_queued`]), so the draft carries the inputs and no text yet.
    fn build(&self, ctx: &AckContext) -> Option<OutboundDraft> {
        let (driver, from, to) = match ctx.channel {
            Channel::Sms => {
                if !self.sms_enabled {
                    return None;
                }
                // Reply from the number the customer wrote to (10000, 10001...); fall back to
                // the configured sender.
                let from = if ctx.service_addr.is_empty() {
                    self.sms_from.clone()
                } else {
                    ctx.service_addr.clone()
                };
                (self.sms_driver.clone(), from, ctx.customer.clone())
            }
            Channel::Email => {
                if !self.email_enabled {
                    return None;
                }
                // RFC 3834: only to a real return path; never to machines.
                let to = ctx.reply_to.as_ref()?;
                (
                    "smtp".to_string(),
                    self.email_from.clone(),
                    to.clone().into(),
                )
            }
        };
        let inputs = self.inputs(ctx)?;
        let headers = ctx
            .in_reply_to
            .as_ref()
            .filter(|_| ctx.channel == Channel::Email)
            .map(|id| serde_json::json!({ "in_reply_to": id, "references": [id] }).to_string());
        Some(OutboundDraft {
            channel: ctx.channel,
            driver,
            from,
            to,
            subject: None,
            text: String::new(),
            html: None,
            headers,
            kind: crate::domain::MessageKind::Ack,
            encoding: "",
            segments: 0,
            not_before: None,
            render: Some(serde_json::to_string(&inputs).ok()?),
        })
    }
}

/// Longest agent reply: SMS are cut into at most 10 concatenated parts by most SMSCs; an email
/// reply is a letter, not an attachment.
const MAX_SMS_REPLY_CHARS: usize = 670;
const MAX_EMAIL_REPLY_CHARS: usize = 100_000;

/// Why an agent reply was not queued.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("case {} does not exist", .0.get())]
    NoCase(CaseId),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Disabled(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A customer's address as the store holds it, for a reply: it was parsed when the message
/// came in, so it parses again; if not (a hand-edited row), the reply is refused.
fn stored_address(channel: Channel, s: &str) -> Result<crate::domain::Address, ReplyError> {
    crate::domain::Address::stored(channel, s).ok_or_else(|| {
        ReplyError::Invalid(format!(
            "the case's {} address is not one we can send to",
            channel.as_str()
        ))
    })
}

impl AckRenderer {
    /// An agent's reply on a case, on the case's channel: an SMS from the number the customer
    /// wrote to, or an email (to where our last mail on the case went) threaded onto the
    /// customer's messages (In-Reply-To the latest,
    /// References up to ten), subject `Re: [SB00000042] …`, plain text and HTML. A person's
    /// reply, so no `Auto-Submitted`.
    pub fn reply_draft(
        &self,
        case: &crate::store::CaseRecord,
        thread: &[crate::store::MessageRecord],
        text: &str,
    ) -> Result<OutboundDraft, ReplyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ReplyError::Invalid("text is empty".into()));
        }
        if text.contains('\0') {
            return Err(ReplyError::Invalid("text contains a NUL character".into()));
        }
        let inbound: Vec<&crate::store::MessageRecord> = thread
            .iter()
            .filter(|m| m.direction == crate::domain::Direction::In)
            .collect();
        let chars = text.chars().count();
        match case.channel {
            Channel::Sms => {
                if !self.sms_enabled {
                    return Err(ReplyError::Disabled("sms.outbound.enabled is false".into()));
                }
                if chars > MAX_SMS_REPLY_CHARS {
                    return Err(ReplyError::Invalid(format!(
                        "an SMS reply is at most {MAX_SMS_REPLY_CHARS} characters, got {chars}"
                    )));
                }
                let seg = segment(text);
                if seg.segments > self.sms_part_cap as usize {
                    return Err(ReplyError::Invalid(format!(
                        "this reply needs {} SMS parts ({} {}); the bridge ({}) sends at most {} \
                         (sms.outbound.max_parts): shorten it",
                        seg.segments,
                        chars,
                        seg.encoding.as_str(),
                        self.sms_driver,
                        self.sms_part_cap
                    )));
                }
                let from = inbound
                    .last()
                    .map(|m| m.to_addr.clone())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| self.sms_from.clone());
                Ok(OutboundDraft {
                    channel: Channel::Sms,
                    driver: self.sms_driver.clone(),
                    from,
                    to: stored_address(Channel::Sms, &case.customer)?,
                    subject: None,
                    text: text.to_string(),
                    html: None,
                    headers: None,
                    kind: crate::domain::MessageKind::Reply,
                    encoding: seg.encoding.as_str(),
                    segments: seg.segments as i64,
                    not_before: None,
                    render: None,
                })
            }
            Channel::Email => {
                if !self.email_enabled {
                    return Err(ReplyError::Disabled("email.smtp.enabled is false".into()));
                }
                if chars > MAX_EMAIL_REPLY_CHARS {
                    return Err(ReplyError::Invalid(format!(
                        "an email reply is at most {MAX_EMAIL_REPLY_CHARS} characters, got {chars}"
                    )));
                }
                let lang = if case.lang == Lang::En.as_str() {
                    Lang::En
                } else {
                    Lang::ZhCn
                };
                let (subject, html) = self
                    .email_parts(
                        "reply_subject",
                        lang,
                        &case.id.number(),
                        case.subject.as_deref().unwrap_or_default(),
                        text,
                    )
                    .map_err(|e| ReplyError::Invalid(format!("email templates: {e}")))?;
                let ids: Vec<&str> = inbound
                    .iter()
                    .filter_map(|m| m.external_id.as_deref())
                    .collect();
                let headers = ids.last().map(|last| {
                    let refs = &ids[ids.len().saturating_sub(10)..];
                    serde_json::json!({ "in_reply_to": last, "references": refs }).to_string()
                });
                // Where our last ack or reply to the customer on this case went (the ack
                // honoured the return path), else the customer's address. Deadline notices
                // to support staff are on the case too, and never count.
                let to = thread
                    .iter()
                    .rev()
                    .filter(|m| {
                        m.direction == crate::domain::Direction::Out
                            && m.channel == Channel::Email
                            && matches!(
                                m.kind,
                                Some(
                                    crate::domain::MessageKind::Ack
                                        | crate::domain::MessageKind::Reply
                                )
                            )
                    })
                    .find_map(|m| crate::domain::Address::stored(Channel::Email, &m.to_addr));
                let to = match to {
                    Some(a) => a,
                    None => stored_address(Channel::Email, &case.customer)?,
                };
                Ok(OutboundDraft {
                    channel: Channel::Email,
                    driver: "smtp".into(),
                    from: self.email_from.clone(),
                    to,
                    subject: Some(subject.trim().to_string()),
                    text: text.to_string(),
                    html: Some(html),
                    headers,
                    kind: crate::domain::MessageKind::Reply,
                    encoding: "utf-8",
                    segments: 1,
                    not_before: None,
                    render: None,
                })
            }
        }
    }
}

/// The intake service shared by every inbound route.
pub struct Intake {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    classifier: RwLock<Arc<Classifier>>,
    acks: Arc<AckRenderer>,
    /// Wakes the outbound workers when an ack was queued.
    pub outbox_notify: Arc<Notify>,
    dedupe_window_ms: i64,
    reply_window_ms: i64,
    concat_timeout_ms: i64,
    sla: Arc<crate::sla::SlaSettings>,
    default_lang: Lang,
    email_domain: String,
    email_ack_limit: (i64, i64),
    /// Wakes the email worker (the SMS worker uses `outbox_notify`).
    pub email_notify: Arc<Notify>,
    /// Wakes the SLA scheduler when a case opened or changed.
    pub sla_notify: Arc<Notify>,
    /// Fee and points queries.
    backend: selfservice::Backend,
}

impl Intake {
    /// The renderer of acks and replies (the outbound workers render queued acks with it).
    pub fn acks(&self) -> Arc<AckRenderer> {
        self.acks.clone()
    }

    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        classifier: Arc<Classifier>,
        acks: Arc<AckRenderer>,
        outbox_notify: Arc<Notify>,
    ) -> Intake {
        Intake {
            backend: selfservice::Backend::new(&settings.self_service, Arc::clone(&clock)),
            store,
            clock,
            classifier: RwLock::new(classifier),
            acks,
            outbox_notify,
            dedupe_window_ms: settings.intake.dedupe_window_secs as i64 * 1000,
            reply_window_ms: settings.intake.reply_window_secs as i64 * 1000,
            concat_timeout_ms: settings.intake.concat_timeout_secs as i64 * 1000,
            sla: Arc::new(settings.sla.clone()),
            default_lang: settings.templates.default_lang,
            email_domain: email_domain(&settings.email.from),
            email_ack_limit: (
                settings.email.ack_limit as i64,
                settings.email.ack_window_secs as i64 * 1000,
            ),
            email_notify: Arc::new(Notify::new()),
            sla_notify: Arc::new(Notify::new()),
        }
    }

    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Replaces the live rule set (the old one keeps serving requests already running).
    pub fn set_classifier(&self, c: Arc<Classifier>) {
        match self.classifier.write() {
            Ok(mut g) => *g = c,
            Err(p) => *p.into_inner() = c,
        }
    }

    /// Queues an agent's reply on case `case_id` (see [`AckRenderer::reply_draft`]) and wakes
    /// the worker of its channel. Returns the outbound message id.
    ///
    /// # Errors
    /// No such case, an empty or oversize text, the channel's sending disabled, the store.
    pub async fn reply(
        &self,
        case_id: CaseId,
        text: &str,
        by: &str,
    ) -> Result<MessageId, ReplyError> {
        Ok(self.reply_on(case_id, text, by).await?.0)
    }

    /// [`Intake::reply`], and the case it went on: a reply to a closed case opens a new case
    /// linked to it (its own clock, tier 1) and goes there.
    ///
    /// # Errors
    /// As [`Intake::reply`].
    pub async fn reply_on(
        &self,
        case_id: CaseId,
        text: &str,
        by: &str,
    ) -> Result<(MessageId, CaseId), ReplyError> {
        let mut case = self
            .store
            .case(case_id)
            .await?
            .ok_or(ReplyError::NoCase(case_id))?;
        // The reply is checked (and threaded) against the case it answers, before anything
        // is created: a refused reply opens no linked case.
        let thread = self.store.case_messages(case_id).await?;
        let draft = self.acks.reply_draft(&case, &thread, text)?;
        if case.status == "closed" {
            let now = self.clock.now_ms();
            let category = case.category;
            let policy = self.sla.policy(category, &case.customer);
            let deadlines = (
                now + policy.answer_within.ms(),
                now + policy.resolve_within.ms(),
            );
            let next = crate::sla::next_step(policy, now, 0, false);
            case = self
                .store
                .open_linked_case(case_id, deadlines, next, by, now)
                .await?
                .ok_or(ReplyError::NoCase(case_id))?;
            self.sla_notify.notify_one();
        }
        let case_id = case.id;
        let id = self
            .store
            .queue_reply(case_id, &draft, by, self.clock.now_ms())
            .await?
            .ok_or(ReplyError::NoCase(case_id))?;
        match draft.channel {
            Channel::Email => self.email_notify.notify_one(),
            Channel::Sms => self.outbox_notify.notify_one(),
        }
        Ok((id, case_id))
    }

    /// Everything decided before the transaction.
    pub fn plan(&self, msg: NewInbound) -> IntakeRequest {
        let now_ms = self.clock.now_ms();
        let classifier = self.classifier();
        let body_for_rules = msg
            .email
            .as_ref()
            .map(|e| e.text_for_rules.as_str())
            .unwrap_or(msg.text.as_str());
        let text_for_rules = match &msg.subject {
            Some(s) if !s.is_empty() => format!("{s}\n{body_for_rules}"),
            _ => body_for_rules.to_string(),
        };
        let category = classifier.category(&text_for_rules);
        let automated = msg.email.as_ref().and_then(|e| e.automated).is_some();
        let intent = if automated {
            Intent::Automated
        } else {
            classifier.intent_of(body_for_rules)
        };
        let thread_message_ids: Vec<MessageId> = msg
            .email
            .as_ref()
            .map(|e| {
                e.refs
                    .iter()
                    .filter_map(|r| our_message_id(r, &self.email_domain))
                    .collect()
            })
            .unwrap_or_default();
        let case_ref = msg.email.as_ref().and_then(|e| e.case_ref);
        let ack_limit = msg.email.as_ref().map(|_| self.email_ack_limit);
        let query = (intent == Intent::SelfService)
            .then(|| classifier.query_of(body_for_rules))
            .flatten();
        let survey_answer = (intent == Intent::Case)
            .then(|| crate::classify::survey_answer(body_for_rules))
            .flatten();
        let lang = match intent {
            // `TD`, `T`, `R` are Chinese operators' keywords written in Latin letters: their
            // senders read Chinese. `STOP`, `START`, `UNSUBSCRIBE` are English ones.
            Intent::OptOut | Intent::OptIn => keyword_lang(&msg.text, self.default_lang),
            _ => Lang::detect(&msg.text, self.default_lang),
        };
        let dedupe_key = msg
            .external_id
            .as_ref()
            .filter(|id| !id.is_empty())
            .map(|id| dedupe_key(msg.dialect, msg.from.as_str(), id));
        // Only id-less messages dedupe by content; hashing a 20 KB email for nothing costs.
        let content_hash = if dedupe_key.is_none() {
            content_hash(&msg)
        } else {
            String::new()
        };
        IntakeRequest {
            dedupe_key,
            content_hash,
            dedupe_window_ms: self.dedupe_window_ms,
            category,
            intent,
            query,
            survey_answer,
            rules_version: classifier.version().to_string(),
            lang,
            now_ms,
            reply_window_ms: self.reply_window_ms,
            sla: self.sla.clone(),
            thread_message_ids,
            case_ref,
            ack_limit,
            ack: self.acks.clone(),
            backend: None,
            msg,
        }
    }

    /// Stores and settles one inbound message; returns only after the commit.
    ///
    /// # Errors
    /// The store's error; the caller answers 503 so the bridge retries.
    #[tracing::instrument(skip_all, fields(dialect = msg.dialect, from = %msg.from))]
    pub async fn accept(&self, msg: NewInbound) -> StoreResult<IntakeOutcome> {
        if let Some(part) = msg.part {
            return self.accept_part(msg, part).await;
        }
        let channel = msg.channel;
        let mut req = self.plan(msg);
        if let Some(q) = req.query.filter(|_| req.intent == Intent::SelfService) {
            // Before the transaction: never I/O inside it.
            req.backend = self.backend.ask(q, req.msg.from.as_str()).await;
        }
        let category = req.category;
        let outcome = self.store.intake(req).await?;
        if let IntakeOutcome::Stored {
            ack_message_id: Some(_),
            ..
        } = outcome
        {
            // Only the worker of the ack's channel; a stored permit, so a worker between its
            // claim and its wait does not miss it.
            match channel {
                Channel::Email => self.email_notify.notify_one(),
                Channel::Sms => self.outbox_notify.notify_one(),
            }
        }
        if let IntakeOutcome::Stored {
            case_id: Some(_), ..
        } = outcome
        {
            // The case's clock may now fall due before the scheduler's current sleep ends.
            self.sla_notify.notify_one();
        }
        tracing::debug!(?outcome, %category, "intake committed");
        Ok(outcome)
    }
}

impl Intake {
    /// Keeps one part of a concatenated SMS; the part that completes its group runs intake on
    /// the joined text (so the customer is acknowledged once) and answers with that outcome.
    async fn accept_part(
        &self,
        msg: NewInbound,
        part: crate::bridges::smpp::Part,
    ) -> StoreResult<IntakeOutcome> {
        let np = crate::store::NewPart {
            group_key: format!(
                "{}:{}:{}:{}:{}",
                msg.dialect,
                msg.from.as_str(),
                msg.to,
                part.reference,
                part.total
            ),
            seq: i64::from(part.seq),
            total: i64::from(part.total),
            dialect: msg.dialect.to_string(),
            dedupe_key: msg
                .external_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map(|id| dedupe_key(msg.dialect, msg.from.as_str(), id)),
            external_id: msg.external_id.clone(),
            from: msg.from.into(),
            to: msg.to,
            body: msg.text,
            raw: msg.raw,
            received_at: self.clock.now_ms(),
        };
        match self.store.store_part(&np).await? {
            crate::store::PartOutcome::Duplicate => Ok(IntakeOutcome::Duplicate {
                message_id: MessageId(0),
            }),
            crate::store::PartOutcome::Stored { part_id, group } => {
                if group.len() as i64 >= np.total {
                    return self.join_parts(group).await;
                }
                Ok(IntakeOutcome::Part {
                    part_id,
                    received: group.len() as i64,
                    total: np.total,
                })
            }
        }
    }

    /// Runs intake once on a group's parts (complete, or what arrived by the timeout: missing
    /// parts marked `[…]`), then marks them done. Idempotent: the joined message's id is
    /// derived from its first part, so a crash between the two steps repeats nothing.
    async fn join_parts(&self, group: Vec<crate::store::StoredPart>) -> StoreResult<IntakeOutcome> {
        let Some(first) = group.first().cloned() else {
            return Ok(IntakeOutcome::Duplicate {
                message_id: MessageId(0),
            });
        };
        let mut text = String::new();
        let mut raw = Vec::new();
        let mut next = 1;
        for p in &group {
            if p.seq > next {
                text.push_str("[…]");
            }
            text.push_str(&p.body);
            if !raw.is_empty() {
                raw.extend_from_slice(b"\n\n");
            }
            raw.extend_from_slice(p.raw.as_deref().unwrap_or_default());
            next = p.seq + 1;
        }
        if next <= first.total {
            text.push_str("[…]");
        }
        let dialect = match first.dialect.as_str() {
            "jasmin" => "jasmin",
            "kannel" => "kannel",
            _ => "generic",
        };
        let min_id = group.iter().map(|p| p.id).min().unwrap_or(first.id);
        // The parts were stored from a parsed number, so it parses again.
        let from =
            crate::domain::Address::stored(Channel::Sms, &first.from_addr).ok_or_else(|| {
                crate::store::StoreError::Rejected(format!(
                    "part {min_id}: stored sender is not a number"
                ))
            })?;
        let joined = NewInbound {
            channel: Channel::Sms,
            dialect,
            external_id: Some(format!("parts-{min_id}")),
            from,
            to: first.to_addr.clone(),
            subject: None,
            text,
            raw,
            email: None,
            part: None,
        };
        let outcome = Box::pin(self.accept(joined)).await?;
        let ids: Vec<i64> = group.iter().map(|p| p.id).collect();
        self.store
            .close_parts(&ids, self.clock.now_ms() - 86_400_000)
            .await?;
        Ok(outcome)
    }

    /// Joins the groups whose first part waited longer than `intake.concat_timeout_secs`.
    /// Returns how many were joined.
    ///
    /// # Errors
    /// The store's.
    pub async fn join_overdue_parts(&self) -> StoreResult<usize> {
        let before = self.clock.now_ms() - self.concat_timeout_ms;
        let keys = self.store.overdue_part_groups(before, 100).await?;
        let mut n = 0;
        for key in keys {
            let group = self.store.part_group(&key).await?;
            if !group.is_empty() {
                tracing::info!(
                    parts = group.len(),
                    total = group[0].total,
                    "concatenated SMS timed out; storing the parts that arrived"
                );
                self.join_parts(group).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// RFC 5321: a path is at most 256 octets; 320 leaves room for display forms.
const MAX_ADDRESS_BYTES: usize = 320;

/// Text without NUL characters (no database keeps them in text).
fn no_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

/// At most `max` bytes, cut at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The dedupe key of a message with a bridge id: the same id from another sender is another
/// message. Long keys are hashed (an index row has a size limit on PostgreSQL).
pub fn dedupe_key(dialect: &str, from: &str, id: &str) -> String {
    let key = format!("{dialect}:{from}:{id}");
    if key.len() <= 200 {
        return key;
    }
    format!(
        "{dialect}:sha256:{}",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

/// Why an email was not stored.
#[derive(Debug, thiserror::Error)]
pub enum EmailRefused {
    /// Not an email, empty, over the size cap: a retry cannot help.
    #[error("{0}")]
    Bad(#[from] crate::inbound::BadInput),
    /// The database failed: a retry can help.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl Intake {
    /// Parses a raw RFC 5322 message (off the async threads, a parser panic contained), applies
    /// a delivery-status report to the outbound message it names, and runs intake. Machine
    /// mail (auto-replies, lists, bulk, bounces) is stored but opens no case and gets no ack.
    ///
    /// # Errors
    /// [`EmailRefused::Bad`] for input that is not an acceptable email, `Store` for database errors.
    pub async fn accept_email(
        &self,
        raw: Vec<u8>,
        max_bytes: usize,
    ) -> Result<IntakeOutcome, EmailRefused> {
        let (parsed, raw) = tokio::task::spawn_blocking(move || {
            let p = crate::email::parse(&raw, max_bytes);
            (p, raw)
        })
        .await
        .map_err(|_| crate::inbound::BadInput::new("email", "the message could not be parsed"))?;
        let p = parsed?;
        if let Some(dsn) = &p.dsn
            && let Some(orig) = dsn.original_message_id.as_deref()
            && let Some(id) = our_message_id(orig, &self.email_domain)
        {
            for r in &dsn.recipients {
                let status = if r.status.starts_with('5') || r.action.eq_ignore_ascii_case("failed")
                {
                    crate::store::DeliveryStatus::Failed
                } else if r.status.starts_with('4') || r.action.eq_ignore_ascii_case("delayed") {
                    crate::store::DeliveryStatus::Delayed
                } else if r.action.eq_ignore_ascii_case("delivered") {
                    crate::store::DeliveryStatus::Delivered
                } else {
                    continue;
                };
                let detail = no_nul(&format!(
                    "DSN {} {} for {}{}",
                    r.action,
                    r.status,
                    r.final_recipient,
                    r.diagnostic
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ));
                self.store
                    .apply_dlr(&crate::store::DlrUpdate {
                        message_id: Some(id),
                        provider_id: None,
                        status,
                        detail,
                        now_ms: self.clock.now_ms(),
                    })
                    .await?;
            }
        }
        // Stored safely whatever the mail holds: NULs removed (the raw bytes keep them), the
        // sender a checked address (no control characters, at most 254 bytes: the parser
        // refuses any other), a return path that is no address gets no ack, a recipient list
        // cut to its first 320 bytes.
        let reply_to = match &p.return_path {
            Some(rp) if rp.is_empty() => None,
            Some(rp) => crate::domain::EmailAddress::parse(rp).ok(),
            None => Some(p.from.clone()),
        };
        let mut refs: Vec<String> = p.in_reply_to.iter().map(|r| no_nul(r)).collect();
        refs.extend(p.references.iter().map(|r| no_nul(r)));
        let msg = NewInbound {
            channel: Channel::Email,
            dialect: "email",
            external_id: p.message_id.as_deref().map(no_nul),
            from: p.from.clone().into(),
            to: cut(&no_nul(&p.to), MAX_ADDRESS_BYTES),
            subject: Some(no_nul(&p.subject)).filter(|s| !s.is_empty()),
            text: no_nul(&p.text),
            raw,
            email: Some(crate::store::EmailMeta {
                text_for_rules: no_nul(&p.text_for_classification),
                reply_to,
                refs,
                case_ref: p.case_ref,
                automated: p.auto,
            }),
            part: None,
        };
        Ok(self.accept(msg).await?)
    }
}

/// Identity of an id-less message: same channel, sender, receiver and text.
pub fn content_hash(msg: &NewInbound) -> String {
    let mut h = Sha256::new();
    for part in [
        msg.channel.as_str(),
        msg.from.as_str(),
        msg.to.as_str(),
        msg.subject.as_deref().unwrap_or(""),
        msg.text.as_str(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> crate::domain::Tier {
        crate::domain::Tier::new(n).unwrap()
    }
    use crate::domain::{CaseId, Category};
    use crate::store::{AckContext, CaseProgress};

    #[test]
    fn hours_print_as_the_customer_reads_them() {
        assert_eq!(fmt_hours(3.0), "3");
        assert_eq!(fmt_hours(72.0), "72");
        assert_eq!(fmt_hours(0.0), "0");
        assert_eq!(fmt_hours(1.5), "1.5");
        assert_eq!(fmt_hours(0.25), "0.25");
        assert_eq!(fmt_hours(1e16), "10000000000000000");
        for h in [1.0, 24.0, 168.0, 8760.0, 1e14] {
            assert_eq!(fmt_hours(h), format!("{h:.0}"));
        }
    }

    #[test]
    fn every_acknowledgement_renders_in_both_languages_and_both_channels() {
        let settings = Settings::load_with_env(None, Vec::<(String, String)>::new()).unwrap();
        let r = AckRenderer::new(&settings).unwrap();
        let progress = CaseProgress {
            id: crate::domain::CaseId(42),
            status: crate::domain::CaseStatus::Open,
            category: crate::domain::Category::Fault,
            tier: t(2),
            resolve_due_at: 1_790_000_000_000,
        };
        let cases: Vec<(Intent, bool, Option<Query>, Option<CaseProgress>)> = vec![
            (Intent::Case, true, None, None),
            (Intent::Case, false, None, None),
            (Intent::Escalate, false, None, None),
            (Intent::OptOut, false, None, None),
            (Intent::OptIn, false, None, None),
            (Intent::SurveyAnswer, false, None, None),
            (Intent::SelfService, false, Some(Query::Fees), None),
            (Intent::SelfService, false, Some(Query::Points), None),
            (
                Intent::SelfService,
                false,
                Some(Query::CaseProgress(CaseId(42))),
                Some(progress.clone()),
            ),
            (
                Intent::SelfService,
                false,
                Some(Query::CaseProgress(CaseId(43))),
                None,
            ),
        ];
        for lang in [Lang::ZhCn, Lang::En] {
            for channel in [Channel::Sms, Channel::Email] {
                for (intent, new_case, query, progress) in &cases {
                    let ctx = AckContext {
                        case_id: Some(CaseId(42)),
                        new_case: *new_case,
                        category: Category::Fault,
                        intent: *intent,
                        lang,
                        channel,
                        customer: crate::domain::EmailAddress::parse("c@example.com")
                            .unwrap()
                            .into(),
                        service_addr: "10000".into(),
                        tier: t(1),
                        query: *query,
                        progress: progress.clone(),
                        reply_to: Some(
                            crate::domain::EmailAddress::parse("c@example.com").unwrap(),
                        ),
                        in_reply_to: Some("m1@example.com".into()),
                        subject: Some("宽带断了".into()),
                        backend: None,
                        case_change: None,
                    };
                    let d = r
                        .build(&ctx)
                        .unwrap_or_else(|| panic!("{intent:?} {lang:?} {channel:?}"));
                    // Queued with its inputs only; the send renders it.
                    assert!(d.text.is_empty() && d.html.is_none() && d.subject.is_none());
                    let inputs = d.render.as_deref().expect("inputs");
                    let out = r.render_queued(7, channel, inputs).unwrap();
                    assert_eq!(out.message_id, crate::domain::MessageId(7));
                    assert!(
                        !out.text.is_empty() && !out.text.contains("{{"),
                        "{}",
                        out.text
                    );
                    assert!(out.segments >= 1);
                    assert_eq!(
                        Some(out.text.clone()),
                        r.text(&ctx),
                        "rendered when sent = rendered at once"
                    );
                    if channel == Channel::Email {
                        let html = out.html.unwrap();
                        assert!(html.contains("SB00000042"));
                        assert!(html.contains("<p>") && !html.contains("{{"), "{html}");
                        assert!(out.subject.unwrap().contains("SB00000042"));
                        assert_eq!(out.encoding, "utf-8");
                    } else {
                        assert!(out.subject.is_none() && out.html.is_none());
                        assert!(matches!(out.encoding, "gsm7" | "ucs2"), "{}", out.encoding);
                    }
                }
            }
        }
    }

    #[test]
    fn our_message_ids_are_recognised_only_for_our_domain() {
        assert_eq!(
            super::our_message_id("<sb-42@gw.test>", "gw.test"),
            Some(MessageId(42))
        );
        assert_eq!(
            super::our_message_id("sb-42@GW.test", "gw.test"),
            Some(MessageId(42))
        );
        assert_eq!(super::our_message_id("sb-42@other.test", "gw.test"), None);
        assert_eq!(super::our_message_id("abc@gw.test", "gw.test"), None);
        assert_eq!(super::email_domain("Service <service@gw.test>"), "gw.test");
    }
}
