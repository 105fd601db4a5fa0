//! The intake's decisions, written once: dedupe, survey answer or not, the self-service
//! answer, which case a message threads onto (our message it refers to, then a case number of
//! the customer's, then the customer's recent open case), the category merge (never
//! downgraded; an escalation request makes a complaint), the tier change, consent, and whether
//! an ack goes out (the per-sender email cap). They run inside the engine's transaction over
//! [`IntakeTx`], the narrow set of reads and writes an intake needs.
//!
//! Each engine implements [`IntakeTx`] with the statement text of `crate::store::sql`:
//! PostgreSQL with sqlx on the request's connection; SQLite on the writer thread with
//! rusqlite, where [`run_ready`] drives [`decide`] without a thread hop per statement
//! (its futures are always ready: each method runs its statement before returning).

use crate::cases::Rating;
use crate::domain::{
    CaseEventKind, CaseId, CaseStatus, Category, Channel, Intent, MessageId, Query, Tier,
};
use crate::store::{
    AckContext, CaseProgress, IntakeOutcome, IntakeRequest, OutboundDraft, StoreError, StoreResult,
};
use std::future::Future;

/// A case as intake sees it when a message may join it (an open case, or the resolved or
/// closed case a message refers to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCase {
    pub id: CaseId,
    pub category: Category,
    pub tier: Tier,
    pub status: CaseStatus,
}

/// The most recently touched of a customer's active cases (`IntakeTx::open_case`'s
/// `Recent` lookup): the latest `last_message_at`, the newer case on a tie.
pub fn latest(cases: impl IntoIterator<Item = (i64, OpenCase)>) -> Option<OpenCase> {
    cases
        .into_iter()
        .max_by_key(|(last, c)| (*last, c.id))
        .map(|(_, c)| c)
}

/// Where to look for the case a message joins.
#[derive(Debug, Clone, Copy)]
pub enum CaseLookup<'a> {
    /// The case of one of our outbound messages (email threading).
    OfOurMessage(MessageId),
    /// A case number the customer quoted, only their own.
    Numbered { case_id: CaseId, customer: &'a str },
    /// The customer's most recently touched open case on the channel since `since_ms`.
    Recent {
        customer: &'a str,
        channel: Channel,
        since_ms: i64,
    },
}

/// A new case (`status` open).
#[derive(Debug)]
pub struct NewCase<'a> {
    pub channel: Channel,
    pub customer: &'a str,
    pub category: Category,
    pub tier: Tier,
    pub lang: &'a str,
    pub subject: Option<&'a str>,
    pub rules_version: &'a str,
    pub now_ms: i64,
    pub ack_due_ms: i64,
    pub resolve_due_ms: i64,
    /// From the number's prefix (`sla.city_prefixes`); tier 2 is told per city.
    pub city: &'a str,
    /// The closed case this one was opened about.
    pub linked_case_id: Option<CaseId>,
}

/// What a case's clock has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaState {
    /// Steps taken (`crate::sla::Step::bit`).
    pub fired: i64,
    /// A person answered (`acked_at` set).
    pub answered: bool,
    /// When the clock counts from: the opening, or a reopening that began a new round.
    pub opened_ms: i64,
    /// false: the case has no clock (opened before clocks existed).
    pub has_clock: bool,
    pub tier: Tier,
    /// As stored; an unknown value counts as an inquiry.
    pub category: Category,
    pub status: crate::domain::CaseStatus,
}

/// An inbound message row (`direction` in, `status` received).
pub struct InboundRow<'a> {
    pub req: &'a IntakeRequest,
    pub intent: Intent,
    pub case_id: Option<CaseId>,
}

impl InboundRow<'_> {
    /// The dedupe key, or the content hash for id-less dialects (one of them is stored).
    pub fn dedupe(&self) -> (Option<&str>, Option<&str>) {
        match &self.req.dedupe_key {
            Some(k) => (Some(k.as_str()), None),
            None => (None, Some(self.req.content_hash.as_str())),
        }
    }
}

/// A survey answer to record (and the wait it ends).
#[derive(Debug)]
pub struct SurveyAnswer<'a> {
    pub survey: &'a str,
    pub channel: Channel,
    pub address: &'a str,
    pub case_id: Option<CaseId>,
    pub answer: &'a str,
    pub message_id: MessageId,
    pub now_ms: i64,
}

/// The reads and writes of one intake, inside one transaction of the engine. No method
/// decides anything: each runs the statement of `crate::store::sql` its name says.
#[allow(async_fn_in_trait)]
pub trait IntakeTx {
    async fn duplicate_by_key(&mut self, key: &str) -> StoreResult<Option<MessageId>>;
    async fn duplicate_by_hash(
        &mut self,
        hash: &str,
        since_ms: i64,
    ) -> StoreResult<Option<MessageId>>;
    /// (survey name, its case) waiting for an answer from this address.
    async fn survey_wait(
        &mut self,
        channel: Channel,
        address: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(String, Option<CaseId>)>>;
    async fn case_progress(
        &mut self,
        case_id: CaseId,
        customer: &str,
    ) -> StoreResult<Option<CaseProgress>>;
    async fn open_case(&mut self, lookup: CaseLookup<'_>) -> StoreResult<Option<OpenCase>>;
    async fn touch_case(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        category: Category,
        tier: Tier,
    ) -> StoreResult<()>;
    async fn case_event(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        kind: CaseEventKind,
        detail: &str,
    ) -> StoreResult<()>;
    async fn insert_case(&mut self, case: &NewCase<'_>) -> StoreResult<CaseId>;
    async fn insert_inbound(&mut self, row: &InboundRow<'_>) -> StoreResult<MessageId>;
    /// Records the answer and removes the wait.
    async fn survey_answer(&mut self, a: &SurveyAnswer<'_>) -> StoreResult<()>;
    /// Opted out (`true`) or back in, with the message as evidence.
    async fn set_consent(
        &mut self,
        channel: Channel,
        address: &str,
        opted_out: bool,
        now_ms: i64,
        message_id: MessageId,
    ) -> StoreResult<()>;
    async fn email_acks_since(&mut self, to: &str, since_ms: i64) -> StoreResult<i64>;
    /// Withdraws the commercial messages still queued to an address that opted out.
    async fn suppress_queued(
        &mut self,
        channel: Channel,
        address: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// A case's status and tier (a reopen, a close after a return visit); a reopen forgets
    /// the resolution (`forget_resolution`: its time and code).
    async fn set_status(
        &mut self,
        case_id: CaseId,
        status: CaseStatus,
        tier: Tier,
        now_ms: i64,
        forget_resolution: bool,
    ) -> StoreResult<()>;
    /// A return visit answered (`state` answered) with the rating.
    async fn finish_visit(
        &mut self,
        case_id: CaseId,
        state: &str,
        answer: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    async fn sla_state(&mut self, case_id: CaseId) -> StoreResult<Option<SlaState>>;
    async fn set_deadlines(
        &mut self,
        case_id: CaseId,
        answer_due_ms: i64,
        resolve_due_ms: i64,
    ) -> StoreResult<()>;
    /// A new round of the case's clock (a reopening past its resolution deadline).
    async fn set_clock_base(&mut self, case_id: CaseId, r: &crate::store::Round)
    -> StoreResult<()>;
    /// The case's next step and when (`None`: every step is taken), and the steps taken.
    async fn set_clock(
        &mut self,
        case_id: CaseId,
        next: Option<(crate::sla::Step, i64)>,
        fired: i64,
    ) -> StoreResult<()>;
    /// An outbound message and its outbox row (lane by kind); its id.
    async fn queue_outbound(
        &mut self,
        draft: &OutboundDraft,
        case_id: Option<CaseId>,
        now_ms: i64,
    ) -> StoreResult<MessageId>;
}

/// Category of a case after a message: never downgraded; an escalation request makes it a
/// complaint.
pub fn merged_category(existing: Category, incoming: Category, intent: Intent) -> Category {
    let incoming = if intent == Intent::Escalate {
        Category::Complaint
    } else {
        incoming
    };
    existing.max(incoming)
}

/// Whether a message with this intent opens or joins a case.
pub fn opens_case(intent: Intent) -> bool {
    matches!(intent, Intent::Case | Intent::Escalate)
}

/// Tier of a case after a message: a customer's escalation request moves it up one (at most
/// tier 4); a new case asked to be escalated starts at tier 2.
pub fn next_tier(current: Option<Tier>, intent: Intent) -> Tier {
    let escalate = intent == Intent::Escalate;
    match current {
        Some(t) if escalate => t.up(),
        Some(t) => t,
        None if escalate => Tier::CITY,
        None => Tier::WINDOW,
    }
}

/// The case a message settled on: (id, new, category, tier).
#[derive(Debug, Clone, Copy)]
struct Settled {
    id: CaseId,
    new: bool,
    category: Category,
    tier: Tier,
}

/// One intake, inside the caller's transaction.
///
/// # Errors
/// Whatever the engine's statements return.
pub async fn decide<T: IntakeTx>(tx: &mut T, req: &IntakeRequest) -> StoreResult<IntakeOutcome> {
    let m = &req.msg;
    let dup = match &req.dedupe_key {
        Some(key) => tx.duplicate_by_key(key).await?,
        None => {
            tx.duplicate_by_hash(&req.content_hash, req.now_ms - req.dedupe_window_ms)
                .await?
        }
    };
    if let Some(message_id) = dup {
        return Ok(IntakeOutcome::Duplicate { message_id });
    }

    // A survey answer only counts while a survey waits for this customer. While a return
    // visit waits, a complaint instead of a rating is the dissatisfied answer.
    let mut intent = req.intent;
    let mut survey: Option<(String, Option<CaseId>, String)> = None;
    let mut visit: Option<(CaseId, Rating)> = None;
    if intent == Intent::Case
        && (req.survey_answer.is_some() || req.category == Category::Complaint)
        && let Some((name, survey_case)) = tx
            .survey_wait(m.channel, m.from.as_str(), req.now_ms)
            .await?
    {
        if name == VISIT_SURVEY {
            let rating = match &req.survey_answer {
                Some(a) => Rating::of_visit_answer(a).map(|r| (r, r.as_str().to_string())),
                None => Some((Rating::Dissatisfied, "complaint".to_string())),
            };
            // Only while the case is still resolved: a late "1" must not close a case that
            // was reopened meanwhile (it is then an ordinary message).
            let resolved = match survey_case {
                Some(id) => tx
                    .sla_state(id)
                    .await?
                    .is_some_and(|s| s.status == "resolved"),
                None => false,
            };
            if let (Some((r, answer)), Some(case_id), true) = (rating, survey_case, resolved) {
                visit = Some((case_id, r));
                survey = Some((name, survey_case, answer));
            }
        } else if let Some(a) = &req.survey_answer {
            survey = Some((name, survey_case, a.clone()));
        }
        if survey.is_some() {
            intent = Intent::SurveyAnswer;
        }
    }
    let progress = match req.query {
        Some(Query::CaseProgress(id)) => tx.case_progress(id, m.from.as_str()).await?,
        _ => None,
    };

    let mut case: Option<Settled> = None;
    let mut case_change = None;
    if let Some((case_id, rating)) = visit {
        let (settled, change) = visit_answered(tx, req, case_id, rating).await?;
        case = settled;
        case_change = change;
    } else if opens_case(intent) {
        let mut found = thread_onto(tx, req).await?;
        let mut linked = None;
        if let Some(c) = found.as_ref().filter(|c| !c.status.is_active()) {
            if c.status == CaseStatus::Resolved {
                // The customer writes again about a resolved case: it is not done for them.
                let tier = next_tier(Some(c.tier), req.intent);
                reopen(
                    tx,
                    req,
                    c.id,
                    tier,
                    CaseEventKind::Reopened,
                    "the customer wrote again",
                )
                .await?;
                case_change = Some(CaseEventKind::Reopened);
                found = Some(OpenCase {
                    status: CaseStatus::Open,
                    ..c.clone()
                });
            } else {
                // Closed for good: a new case, linked to the old one.
                linked = Some(c.id);
                found = None;
            }
        }
        case = Some(match found {
            Some(open) => {
                let existing = open.category;
                let category = merged_category(existing, req.category, req.intent);
                let tier = next_tier(Some(open.tier), req.intent);
                tx.touch_case(open.id, req.now_ms, category, tier).await?;
                if category != existing {
                    reclock(tx, &req.sla, open.id, category, m.from.as_str(), req.now_ms).await?;
                }
                if tier > open.tier {
                    tell_tier_now(tx, open.id, req.now_ms).await?;
                }
                // A reply that changes nothing about the case is its message alone (the case
                // view lists its messages); one that raises the category, or asks to escalate
                // (the only way a reply moves the tier), is also an event saying what changed. (Each event is a row and
                // an entry at a random place of the events' case index: on the intake's write
                // path, one more page a message.)
                if category != existing || req.intent == Intent::Escalate {
                    let kind = if req.intent == Intent::Escalate {
                        CaseEventKind::Escalated
                    } else {
                        CaseEventKind::Reply
                    };
                    let detail = format!(
                        "category {} -> {}, tier {} -> {tier}",
                        existing.as_str(),
                        category.as_str(),
                        open.tier
                    );
                    tx.case_event(open.id, req.now_ms, kind, &detail).await?;
                }
                Settled {
                    id: open.id,
                    new: false,
                    category,
                    tier,
                }
            }
            None => {
                let category = merged_category(Category::Inquiry, req.category, req.intent);
                let tier = next_tier(None, req.intent);
                let policy = req.sla.policy(category, m.from.as_str());
                let id = tx
                    .insert_case(&NewCase {
                        channel: m.channel,
                        customer: m.from.as_str(),
                        category,
                        tier,
                        lang: req.lang.as_str(),
                        subject: m.subject.as_deref(),
                        rules_version: &req.rules_version,
                        now_ms: req.now_ms,
                        ack_due_ms: req.now_ms + policy.answer_within.ms(),
                        resolve_due_ms: req.now_ms + policy.resolve_within.ms(),
                        city: req.sla.city_of(m.from.as_str()),
                        linked_case_id: linked,
                    })
                    .await?;
                let next = crate::sla::next_step(policy, req.now_ms, 0, false);
                tx.set_clock(id, next, 0).await?;
                if let Some(old) = linked {
                    let new_no = id.number();
                    let old_no = old.number();
                    tx.case_event(
                        id,
                        req.now_ms,
                        CaseEventKind::Linked,
                        &format!("opened about closed case {old_no}"),
                    )
                    .await?;
                    tx.case_event(
                        old,
                        req.now_ms,
                        CaseEventKind::Linked,
                        &format!("the customer wrote again: new case {new_no}"),
                    )
                    .await?;
                    case_change = Some(CaseEventKind::Linked);
                }
                if tier > Tier::WINDOW {
                    // Asked to be escalated from the first message: that tier is told.
                    tell_tier_now(tx, id, req.now_ms).await?;
                }
                Settled {
                    id,
                    new: true,
                    category,
                    tier,
                }
            }
        });
    }

    let message_id = tx
        .insert_inbound(&InboundRow {
            req,
            intent,
            case_id: case.map(|c| c.id),
        })
        .await?;

    if let Some((name, survey_case, answer)) = &survey {
        tx.survey_answer(&SurveyAnswer {
            survey: name,
            channel: m.channel,
            address: m.from.as_str(),
            case_id: *survey_case,
            answer,
            message_id,
            now_ms: req.now_ms,
        })
        .await?;
    }

    if matches!(intent, Intent::OptOut | Intent::OptIn) {
        tx.set_consent(
            m.channel,
            m.from.as_str(),
            intent == Intent::OptOut,
            req.now_ms,
            message_id,
        )
        .await?;
        if intent == Intent::OptOut {
            // At once, also for what a campaign already queued.
            tx.suppress_queued(m.channel, m.from.as_str(), req.now_ms)
                .await?;
        }
    }

    let ctx = AckContext {
        case_id: case.map(|c| c.id),
        new_case: case.is_some_and(|c| c.new),
        category: case.map(|c| c.category).unwrap_or(req.category),
        intent,
        lang: req.lang,
        channel: m.channel,
        customer: m.from.clone(),
        service_addr: m.to.clone(),
        tier: case.map_or(Tier::WINDOW, |c| c.tier),
        query: req.query,
        progress,
        reply_to: m.email.as_ref().and_then(|e| e.reply_to.clone()),
        in_reply_to: m.external_id.clone().filter(|_| m.email.is_some()),
        subject: m.subject.clone(),
        backend: req.backend.clone(),
        case_change,
    };
    let mut ack_allowed = true;
    if let Some((limit, window)) = req.ack_limit {
        let to = ctx
            .reply_to
            .as_ref()
            .map_or(m.from.as_str(), |a| a.as_str());
        ack_allowed = tx.email_acks_since(to, req.now_ms - window).await? < limit;
    }
    let mut ack_message_id = None;
    if let Some(d) = req.ack.build(&ctx).filter(|_| ack_allowed) {
        ack_message_id = Some(
            tx.queue_outbound(&d, case.map(|c| c.id), req.now_ms)
                .await?,
        );
    }
    Ok(IntakeOutcome::Stored {
        message_id,
        case_id: case.map(|c| c.id),
        new_case: case.is_some_and(|c| c.new),
        ack_message_id,
    })
}

/// The survey name of the return visit (`survey_waits.survey`).
pub const VISIT_SURVEY: &str = "return_visit";

/// A return visit answered: satisfied or neutral closes the case; dissatisfied reopens it one
/// tier up, and that tier is told. The message is kept on the case either way.
async fn visit_answered<T: IntakeTx>(
    tx: &mut T,
    req: &IntakeRequest,
    case_id: CaseId,
    rating: Rating,
) -> StoreResult<(Option<Settled>, Option<CaseEventKind>)> {
    let Some(state) = tx.sla_state(case_id).await? else {
        return Ok((None, None));
    };
    tx.finish_visit(case_id, "answered", rating.as_str(), req.now_ms)
        .await?;
    let category = state.category;
    let settled = |tier| Settled {
        id: case_id,
        new: false,
        category,
        tier,
    };
    if rating == Rating::Dissatisfied {
        let tier = state.tier.up();
        reopen(
            tx,
            req,
            case_id,
            tier,
            CaseEventKind::Reopened,
            &format!("return visit: dissatisfied; tier {} -> {tier}", state.tier),
        )
        .await?;
        tell_tier_now(tx, case_id, req.now_ms).await?;
        return Ok((Some(settled(tier)), Some(CaseEventKind::Reopened)));
    }
    tx.set_status(case_id, CaseStatus::Closed, state.tier, req.now_ms, false)
        .await?;
    tx.case_event(
        case_id,
        req.now_ms,
        CaseEventKind::Closed,
        &format!("return visit: {}", rating.as_str()),
    )
    .await?;
    Ok((Some(settled(state.tier)), Some(CaseEventKind::Closed)))
}

/// A resolved or closed case back to work at `tier`: open again (acknowledged if a person had
/// answered it), its clock going on from its policy (steps already past taken as done).
async fn reopen<T: IntakeTx>(
    tx: &mut T,
    req: &IntakeRequest,
    case_id: CaseId,
    tier: Tier,
    event: CaseEventKind,
    why: &str,
) -> StoreResult<()> {
    let Some(state) = tx.sla_state(case_id).await? else {
        return Ok(());
    };
    let policy = req.sla.policy(state.category, req.msg.from.as_str());
    let round = crate::sla::new_round(policy, state.opened_ms, req.now_ms);
    // A new round is a new promise: answered only once a person answers in it.
    let answered = state.answered && round.is_none();
    let status = if answered {
        CaseStatus::Acknowledged
    } else {
        CaseStatus::Open
    };
    // Back to work: the resolution no longer holds.
    tx.set_status(case_id, status, tier, req.now_ms, true)
        .await?;
    tx.case_event(case_id, req.now_ms, event, why).await?;
    let mut base = state.opened_ms;
    if let Some(r) = round {
        tx.set_clock_base(case_id, &r).await?;
        base = r.base;
    }
    let fired = crate::sla::past_steps(policy, base, req.now_ms);
    let next = crate::sla::next_step(policy, base, fired, answered);
    tx.set_clock(case_id, next, fired).await
}

/// The case's clock fires a notice to its (new) tier at once, then goes on with its plan.
async fn tell_tier_now<T: IntakeTx>(tx: &mut T, case_id: CaseId, now_ms: i64) -> StoreResult<()> {
    let Some(state) = tx.sla_state(case_id).await? else {
        return Ok(());
    };
    tx.set_clock(
        case_id,
        Some((crate::sla::Step::TierNotice, now_ms)),
        state.fired,
    )
    .await
}

/// A case whose category changed takes the new category's deadlines, counted from when it
/// opened, and its clock goes on from the steps already taken: a step of the new policy that is
/// already past due fires at once.
async fn reclock<T: IntakeTx>(
    tx: &mut T,
    sla: &crate::sla::SlaSettings,
    case_id: CaseId,
    category: Category,
    customer: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let Some(state) = tx.sla_state(case_id).await? else {
        return Ok(());
    };
    let policy = sla.policy(category, customer);
    tx.set_deadlines(
        case_id,
        state.opened_ms + policy.answer_within.ms(),
        state.opened_ms + policy.resolve_within.ms(),
    )
    .await?;
    // A case from before clocks existed has taken no step; what its new policy put in the past
    // counts as taken, silently, rather than a burst of late notices.
    let fired = if state.has_clock {
        state.fired
    } else {
        crate::sla::past_steps(policy, state.opened_ms, now_ms)
    };
    let next = crate::sla::next_step(policy, state.opened_ms, fired, state.answered);
    tx.set_clock(case_id, next, fired).await
}

/// Threading: a reference to one of our messages first, then a quoted case number of this
/// customer, then the customer's recent open case on the channel.
async fn thread_onto<T: IntakeTx>(
    tx: &mut T,
    req: &IntakeRequest,
) -> StoreResult<Option<OpenCase>> {
    let m = &req.msg;
    for mid in &req.thread_message_ids {
        if let Some(c) = tx.open_case(CaseLookup::OfOurMessage(*mid)).await? {
            return Ok(Some(c));
        }
    }
    if let Some(case_id) = req.case_ref
        && let Some(c) = tx
            .open_case(CaseLookup::Numbered {
                case_id,
                customer: m.from.as_str(),
            })
            .await?
    {
        return Ok(Some(c));
    }
    tx.open_case(CaseLookup::Recent {
        customer: m.from.as_str(),
        channel: m.channel,
        since_ms: req.now_ms - req.reply_window_ms,
    })
    .await
}

/// Runs a future that never waits (an [`IntakeTx`] over a synchronous connection) to its end
/// on the calling thread. A future that does wait is a bug in the engine: it is refused, not
/// spun on.
///
/// # Errors
/// The future's own error, or [`StoreError::Other`] if it was not ready at once.
pub fn run_ready<F, T>(f: F) -> StoreResult<T>
where
    F: Future<Output = StoreResult<T>>,
{
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(StoreError::Other(
            "a synchronous intake transaction waited; the engine must never do that".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> crate::domain::Tier {
        crate::domain::Tier::new(n).unwrap()
    }

    #[test]
    fn a_message_joins_the_most_recently_touched_active_case() {
        let case = |id| OpenCase {
            id: CaseId(id),
            category: Category::Inquiry,
            tier: t(1),
            status: CaseStatus::Open,
        };
        assert_eq!(latest([]), None);
        assert_eq!(
            latest([(5, case(1)), (9, case(2)), (7, case(3))]).map(|c| c.id),
            Some(CaseId(2))
        );
        // Touched in the same millisecond: the newer case.
        assert_eq!(
            latest([(9, case(4)), (9, case(2))]).map(|c| c.id),
            Some(CaseId(4))
        );
    }

    #[test]
    fn categories_are_never_downgraded_and_escalation_makes_a_complaint() {
        use Category::*;
        assert_eq!(merged_category(Complaint, Inquiry, Intent::Case), Complaint);
        assert_eq!(merged_category(Inquiry, Fault, Intent::Case), Fault);
        assert_eq!(
            merged_category(Inquiry, Inquiry, Intent::Escalate),
            Complaint
        );
    }

    #[test]
    fn escalation_moves_one_tier_up_and_stops_at_four() {
        assert_eq!(next_tier(None, Intent::Case), t(1));
        assert_eq!(next_tier(None, Intent::Escalate), t(2));
        assert_eq!(next_tier(Some(t(3)), Intent::Case), t(3));
        assert_eq!(next_tier(Some(t(3)), Intent::Escalate), t(4));
        assert_eq!(next_tier(Some(t(4)), Intent::Escalate), t(4));
    }

    #[test]
    fn run_ready_refuses_a_future_that_waits() {
        assert_eq!(run_ready(async { Ok(7) }).unwrap(), 7);
        let pending = std::future::pending::<StoreResult<()>>();
        assert!(matches!(run_ready(pending), Err(StoreError::Other(_))));
    }
}
