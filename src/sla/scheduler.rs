//! The SLA scheduler: one task that sleeps until the earliest clock falls due (one indexed
//! read, never a scan of the open cases), or until a change in this process wakes it, or at
//! most `sla.max_idle` (another instance may have opened a case). It claims what is due with
//! a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so instances share the work), decides each
//! step with [`super::fire`], renders the notices outside any transaction, and has the store
//! apply them in one transaction, each only if the clock and the case are still as claimed.
//! A step is taken exactly once: the clock's `fired` mask moves in the same transaction as the
//! tier, the case event and the notices.

use super::{CaseNow, SlaSettings, Step};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{CaseEventKind, CaseId, Category, Channel, Lang};
use crate::outbound::segment::{fit, segment};
use crate::store::{DueClock, DueVisit, OutboundDraft, SlaApply, Store, StoreResult, VisitApply};
use crate::templates::Templates;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Clocks claimed per round.
const BATCH: i64 = 1_000;
/// After a wake-up, how long the scheduler gathers further wake-ups before it looks.
const WAKE_GATHER_MS: u64 = 200;
/// A claimed clock not applied within this long is claimed again (a crashed instance).
const LEASE_MS: i64 = 60_000;

/// Renders deadline notices to the tier contacts (ops staff language:
/// `templates.default_lang`).
pub struct Notices {
    templates: Templates,
    lang: Lang,
    service_name: String,
    service_name_en: String,
    zone: chrono_tz::Tz,
    email_on: bool,
    email_from: String,
    sms_on: bool,
    sms_from: String,
    sms_driver: String,
    sms_part_cap: u32,
}

impl Notices {
    /// # Errors
    /// Templates that do not load.
    pub fn new(settings: &Settings) -> anyhow::Result<Notices> {
        Ok(Notices {
            templates: Templates::load(settings.templates.dir.as_deref())?,
            lang: settings.templates.default_lang,
            service_name: settings.templates.service_name.clone(),
            service_name_en: settings.templates.service_name_en.clone(),
            zone: settings.time.zone,
            email_on: settings.email.smtp.enabled,
            email_from: settings.email.from.clone(),
            sms_on: settings.sms.outbound.enabled,
            sms_from: settings.sms.outbound.from.clone(),
            sms_driver: format!("{:?}", settings.sms.outbound.driver).to_lowercase(),
            sms_part_cap: settings.sms.outbound.part_cap(),
        })
    }

    fn local(&self, ms: i64) -> String {
        use chrono::TimeZone;
        self.zone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    }

    /// The notices of one step to the contacts of `tier` in the case's city.
    pub fn render(
        &self,
        sla: &SlaSettings,
        c: &DueClock,
        category: Category,
        step: Option<Step>,
        tier: crate::domain::Tier,
        now: i64,
    ) -> Vec<OutboundDraft> {
        let contacts = sla.contacts(tier, sla.city_of(&c.customer));
        if contacts.is_empty() {
            tracing::warn!(
                case_id = c.case_id.get(),
                tier = tier.get(),
                step = step.map(Step::as_str).unwrap_or("escalated_by_hand"),
                "no SLA contact configured for this tier; nobody is told"
            );
            return Vec::new();
        }
        let due = match step {
            Some(Step::AnswerWarn | Step::AnswerBreach) => c.ack_due_at,
            _ => c.resolve_due_at,
        };
        let (step_zh, step_en) = match step {
            Some(Step::AnswerWarn) => ("即将超过答复时限", "answer deadline near"),
            Some(Step::AnswerBreach) => ("已超过答复时限", "answer deadline missed"),
            Some(Step::ResolveWarn) => ("即将超过处理时限", "resolve deadline near"),
            Some(Step::ResolveBreach) => ("已超过处理时限", "resolve deadline missed"),
            Some(Step::Tier2 | Step::Tier3 | Step::Tier4) => ("已升级", "escalated"),
            Some(Step::TierNotice) => ("已升级，请处理", "escalated, please act"),
            None => ("已人工升级", "escalated by hand"),
        };
        let values = minijinja::context! {
            service_name => self.service_name,
            service_name_en => self.service_name_en,
            case_no => c.case_id.number(),
            category => category.as_str(),
            category_zh => category.zh(),
            tier => tier,
            tier_zh => tier.name_zh(),
            tier_en => tier.name_en(),
            step => step.map(Step::as_str).unwrap_or("escalated_by_hand"),
            step_zh => step_zh,
            step_en => step_en,
            due => self.local(due),
            resolve_by => self.local(c.resolve_due_at),
        };
        let (text, subject) = match (
            self.templates
                .render("sla_notice", self.lang, values.clone()),
            self.templates
                .render("sla_notice_subject", self.lang, values),
        ) {
            (Ok(t), Ok(s)) => (t, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "SLA notice template failed; nobody is told of this step");
                return Vec::new();
            }
        };
        // A tier on office hours finds the notice when it comes in (`sla.calendar`).
        let open = sla.calendar.next_open(self.zone, tier, now);
        let not_before = (open > now).then_some(open);
        let mut out = Vec::new();
        for contact in contacts {
            if self.email_on {
                for to in &contact.email {
                    out.push(OutboundDraft {
                        channel: Channel::Email,
                        driver: "smtp".into(),
                        from: self.email_from.clone(),
                        to: to.clone().into(),
                        subject: Some(subject.clone()),
                        text: text.clone(),
                        html: None,
                        headers: None,
                        kind: crate::domain::MessageKind::SlaNotice,
                        encoding: "utf-8",
                        segments: 1,
                        not_before,
                        render: None,
                    });
                }
            }
            if self.sms_on {
                for to in &contact.sms {
                    let t = fit(&text, self.sms_part_cap);
                    let seg = segment(&t);
                    out.push(OutboundDraft {
                        channel: Channel::Sms,
                        driver: self.sms_driver.clone(),
                        from: self.sms_from.clone(),
                        to: to.clone().into(),
                        subject: None,
                        text: t,
                        html: None,
                        headers: None,
                        kind: crate::domain::MessageKind::SlaNotice,
                        encoding: seg.encoding.as_str(),
                        segments: seg.segments as i64,
                        not_before,
                        render: None,
                    });
                }
            }
        }
        out
    }
}

/// The scheduler; [`Scheduler::run_due`] is one round (tests drive it with a manual clock).
impl Notices {
    /// The return-visit survey of a resolved case, in the customer's language, on the case's
    /// channel; `None` when that channel does not send or the template fails.
    pub fn visit(&self, v: &DueVisit) -> Option<OutboundDraft> {
        let lang: Lang = v.lang.parse().unwrap_or(self.lang);
        let values = minijinja::context! {
            service_name => self.service_name,
            service_name_en => self.service_name_en,
            case_no => v.case_id.number(),
        };
        let text = match self.templates.render("return_visit", lang, values.clone()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "return_visit template failed; no survey sent");
                return None;
            }
        };
        let channel = if v.channel == "email" {
            Channel::Email
        } else {
            Channel::Sms
        };
        let Some(to) = crate::domain::Address::stored(channel, &v.customer) else {
            tracing::warn!(
                case_id = v.case_id.get(),
                "return visit: the case's stored address does not parse; no survey sent"
            );
            return None;
        };
        match v.channel.as_str() {
            "email" if self.email_on => {
                let subject = self
                    .templates
                    .render("return_visit_subject", lang, values)
                    .ok()?;
                Some(OutboundDraft {
                    channel: Channel::Email,
                    driver: "smtp".into(),
                    from: self.email_from.clone(),
                    to,
                    subject: Some(subject),
                    text,
                    html: None,
                    headers: None,
                    kind: crate::domain::MessageKind::ReturnVisit,
                    encoding: "utf-8",
                    segments: 1,
                    not_before: None,
                    render: None,
                })
            }
            "sms" if self.sms_on => {
                let t = fit(&text, self.sms_part_cap);
                let seg = segment(&t);
                Some(OutboundDraft {
                    channel: Channel::Sms,
                    driver: self.sms_driver.clone(),
                    from: self.sms_from.clone(),
                    to,
                    subject: None,
                    text: t,
                    html: None,
                    headers: None,
                    kind: crate::domain::MessageKind::ReturnVisit,
                    encoding: seg.encoding.as_str(),
                    segments: seg.segments as i64,
                    not_before: None,
                    render: None,
                })
            }
            _ => None,
        }
    }
}

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub sla: Arc<SlaSettings>,
    /// Return visits (`[cases.return_visit]`).
    pub cases: Arc<crate::cases::CaseSettings>,
    pub notices: Notices,
    /// Wakes the scheduler (a case opened or changed in this process).
    pub wake: Arc<Notify>,
    /// Wake the outbox workers once notices are queued.
    pub sms_notify: Arc<Notify>,
    pub email_notify: Arc<Notify>,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Steps taken (warnings, escalations, breaches, and silent ones).
    pub fired: usize,
    /// Notices queued.
    pub notices: usize,
    /// Clocks that changed under us (retried in a later round).
    pub conflicts: usize,
    /// Return visits sent, and visits otherwise moved on (skipped, expired, cancelled, later).
    pub visits_sent: usize,
    pub visits_other: usize,
}

impl Scheduler {
    /// Fires every step due now, a step that falls due through another (already past) too.
    ///
    /// # Errors
    /// The store's.
    pub async fn run_due(&self) -> StoreResult<Round> {
        let mut round = self.run_clocks().await?;
        self.run_visits(&mut round).await?;
        Ok(round)
    }

    /// Return visits due now: each decided by `crate::cases::visit::next` and applied in its
    /// own transaction, only if still as claimed.
    async fn run_visits(&self, round: &mut Round) -> StoreResult<()> {
        use crate::cases::visit::{VisitStep, next};
        loop {
            let now = self.clock.now_ms();
            let due = self.store.claim_visits(now, LEASE_MS, BATCH).await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut queued = false;
            let mut progressed = false;
            for v in &due {
                let cfg = &self.cases.return_visit;
                let mut a = VisitApply {
                    case_id: v.case_id,
                    state_before: v.state.clone(),
                    due_before: v.due_at,
                    state: String::new(),
                    due_at: None,
                    sent: false,
                    close_case: false,
                    need_resolved: true,
                    not_sent_since: None,
                    event: None,
                    survey: None,
                    now_ms: now,
                };
                match next(v, cfg, self.notices.zone, now) {
                    VisitStep::Send { answer_until } => match self.notices.visit(v) {
                        Some(d) => {
                            a.state = "sent".into();
                            a.due_at = Some(answer_until);
                            a.sent = true;
                            a.event = Some((
                                CaseEventKind::ReturnVisit,
                                format!("survey sent on {}", v.channel),
                            ));
                            a.survey = Some((d, answer_until));
                            a.not_sent_since = Some(now - cfg.once_per.ms());
                        }
                        None => {
                            a.state = "skipped".into();
                            a.close_case = true;
                            a.event = Some((
                                CaseEventKind::Closed,
                                format!("return visit: {} does not send; closed", v.channel),
                            ));
                        }
                    },
                    VisitStep::Later(at) => {
                        a.state = v.state.clone();
                        a.due_at = Some(at);
                    }
                    VisitStep::Skip(last) => {
                        a.state = "skipped".into();
                        a.close_case = true;
                        a.event = Some((
                            CaseEventKind::Closed,
                            format!(
                                "return visit skipped: the customer was asked {} days ago; closed",
                                (now - last) / 86_400_000
                            ),
                        ));
                    }
                    VisitStep::Cancel => {
                        a.state = "cancelled".into();
                        a.need_resolved = false;
                    }
                    VisitStep::Expire => {
                        a.state = "expired".into();
                        a.close_case = true;
                        a.event = Some((
                            CaseEventKind::Closed,
                            "no answer to the return visit; closed".into(),
                        ));
                    }
                }
                if self.store.apply_visit(&a).await? {
                    progressed = true;
                    if a.survey.is_some() {
                        round.visits_sent += 1;
                        queued = true;
                    } else {
                        round.visits_other += 1;
                    }
                }
            }
            if queued {
                self.sms_notify.notify_one();
                self.email_notify.notify_one();
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    async fn run_clocks(&self) -> StoreResult<Round> {
        let mut round = Round::default();
        loop {
            let now = self.clock.now_ms();
            let due = self.store.claim_sla(now, LEASE_MS, BATCH).await?;
            if due.is_empty() {
                return Ok(round);
            }
            let items: Vec<SlaApply> = due.iter().map(|c| self.decide(c, now)).collect();
            let notices: usize = items.iter().map(|a| a.notices.len()).sum();
            let done = self.store.apply_sla(&items).await?;
            let before = round.fired;
            for (a, ok) in items.iter().zip(&done) {
                if *ok {
                    round.fired += 1;
                    round.notices += a.notices.len();
                    if let Some((kind, detail)) = &a.event {
                        tracing::info!(case_id = a.case_id.get(), step = %a.step, kind = %kind, detail = %detail, "SLA step");
                    }
                } else {
                    round.conflicts += 1;
                }
            }
            if notices > 0 {
                self.sms_notify.notify_one();
                self.email_notify.notify_one();
            }
            // Steps past due behind the ones just taken (a category upgraded late) are
            // claimed in the next pass; a pass where everything changed under us ends it.
            if round.fired == before {
                return Ok(round);
            }
        }
    }

    /// What the due step of one clock does.
    fn decide(&self, c: &DueClock, now: i64) -> SlaApply {
        let category = c.category;
        let policy = self.sla.policy(category, &c.customer);
        let mut apply = SlaApply {
            case_id: c.case_id,
            step: c.step.clone(),
            fired_before: c.fired,
            due_before: c.due_at,
            fired_after: c.fired,
            next: None,
            remove: false,
            tier_before: c.tier,
            tier_after: c.tier,
            event: None,
            notices: Vec::new(),
            now_ms: now,
        };
        let Ok(step) = Step::parse(&c.step) else {
            // Not a step we know (a newer version wrote it): start the clock again from here.
            apply.next = super::next_step(policy, c.opened_at, c.fired, c.acked != 0)
                .map(|(s, d)| (s.as_str().to_string(), d));
            return apply;
        };
        let case = CaseNow {
            id: c.case_id,
            category,
            status: c.status,
            tier: c.tier,
            opened_ms: c.opened_at,
            answered: c.acked != 0,
        };
        let Some(f) = super::fire(&case, step) else {
            apply.remove = true;
            return apply;
        };
        apply.fired_after = c.fired | step.bit();
        apply.tier_after = f.tier;
        apply.next = super::next_step(policy, c.opened_at, apply.fired_after, case.answered)
            .map(|(s, d)| (s.as_str().to_string(), d));
        if let Some(tier) = f.notify_tier {
            apply.notices = self
                .notices
                .render(&self.sla, c, category, Some(step), tier, now);
        }
        apply.event = Some((f.event, f.detail));
        apply
    }

    /// Runs rounds until `stop`, sleeping until the next due instant in between. A wake-up
    /// costs one indexed read; the claim (a write) happens only when something is due, so the
    /// intake's wake-ups never compete with its own writer for the lock.
    /// Starts the clocks of active cases that have none (opened before clocks existed): the
    /// steps their policy already put in the past count as taken, silently (no burst of late
    /// notices); the rest fire on time. Returns how many clocks it started.
    ///
    /// # Errors
    /// The store's.
    pub async fn backfill(&self) -> StoreResult<usize> {
        let mut total = 0;
        let mut after = 0;
        loop {
            let rows = self.store.unclocked_cases(after, BATCH).await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let now = self.clock.now_ms();
            let clocks: Vec<(CaseId, String, Option<i64>, i64)> = rows
                .iter()
                .map(|(id, category, opened, answered, customer)| {
                    let policy = self.sla.policy(Category::from_column(category), customer);
                    let fired = super::past_steps(policy, *opened, now);
                    let (step, due) =
                        super::clock_row(super::next_step(policy, *opened, fired, *answered));
                    (*id, step.to_string(), due, fired)
                })
                .collect();
            self.store.start_clocks(&clocks).await?;
            total += clocks.len();
            after = rows.last().map(|r| r.0.get()).unwrap_or(after);
            if (rows.len() as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        match self.backfill().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                cases = n,
                "started the SLA clocks of cases opened before clocks existed"
            ),
            Err(e) => {
                tracing::warn!(error = %crate::domain::scrub(&e.to_string()), "starting the clocks of older cases failed; they are tried at the next start")
            }
        }
        let idle = self.sla.max_idle.ms();
        while !stop.is_cancelled() {
            let now = self.clock.now_ms();
            let next_due = match (
                self.store.next_sla_due(now).await,
                self.store.next_visit_due(now).await,
            ) {
                (Ok(a), Ok(b)) => Ok(match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            let wait = match next_due {
                Ok(Some(due)) if due <= now => match self.run_due().await {
                    // Due but nothing fired (changed under us, or another instance holds
                    // it): do not spin.
                    Ok(r) if r.fired == 0 && r.visits_sent + r.visits_other == 0 => 10,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %crate::domain::scrub(&e.to_string()), "SLA round failed; retrying in 1 s");
                        1_000
                    }
                },
                Ok(Some(due)) => (due - now).min(idle),
                Ok(None) => idle,
                Err(e) => {
                    tracing::warn!(error = %crate::domain::scrub(&e.to_string()), "reading the next SLA instant failed; retrying in 1 s");
                    1_000
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {
                    // Intake wakes us for every case it settles; under load that is thousands
                    // a second. Gather them: one look per WAKE_GATHER_MS (a new case's first
                    // step is minutes away; an upgraded one's is at most this much late).
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(WAKE_GATHER_MS)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

impl DueClock {
    /// A case as the notices need it, outside a clock step (an escalation by hand).
    pub fn of_case(c: &crate::store::CaseRecord) -> DueClock {
        DueClock {
            case_id: c.id,
            step: String::new(),
            due_at: 0,
            fired: 0,
            category: c.category,
            status: c.status,
            tier: c.tier,
            opened_at: c.clock_base(),
            acked: i64::from(c.answered_in_round()),
            customer: c.customer.clone(),
            channel: c.channel,
            ack_due_at: c.ack_due_at,
            resolve_due_at: c.resolve_due_at,
        }
    }
}
