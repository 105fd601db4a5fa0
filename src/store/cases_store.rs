//! `CaseStore`: Cases: reads, the work queue, agents' actions and category corrections.

use super::*;
use async_trait::async_trait;

/// Cases: reads, the work queue, agents' actions and category corrections.
#[async_trait]
pub trait CaseStore: Send + Sync {
    async fn case(&self, id: CaseId) -> StoreResult<Option<CaseRecord>>;
    async fn case_messages(&self, case_id: CaseId) -> StoreResult<Vec<MessageRecord>>;
    /// A case's history, oldest first.
    async fn case_events(&self, case_id: CaseId) -> StoreResult<Vec<CaseEvent>>;
    /// Cases in `statuses` (all when empty), the most urgent first (earliest resolve deadline).
    async fn cases(
        &self,
        statuses: &[crate::domain::CaseStatus],
        limit: i64,
    ) -> StoreResult<Vec<CaseRecord>> {
        let filter = CaseFilter {
            statuses: statuses.to_vec(),
            ..CaseFilter::default()
        };
        self.find_cases(&filter, limit).await
    }
    /// Cases matching `filter`, the earliest resolve deadline first, after `filter.after`.
    async fn find_cases(&self, filter: &CaseFilter, limit: i64) -> StoreResult<Vec<CaseRecord>>;
    /// Marks a case resolved by `by` (a `resolved` case event with the note); `None` when it
    /// does not exist. Resolving a resolved case changes nothing and records nothing.
    /// An open case resolved (with its code, and its return visit scheduled), in one
    /// transaction. `Err(Rejected)`-free: `None` when no case; a case not active (closed) is
    /// returned unchanged.
    async fn resolve_case(
        &self,
        case_id: CaseId,
        r: &Resolve<'_>,
    ) -> StoreResult<Option<CaseRecord>>;
    /// A new case opened about a closed one (an agent replies to a closed case): same customer,
    /// channel, category, language and subject, tier 1, `linked_case_id` the old one, its clock
    /// set to `next`; a `linked` event on both. `None`: no such case.
    async fn open_linked_case(
        &self,
        old_id: CaseId,
        deadlines: (i64, i64),
        next: Option<(crate::sla::Step, i64)>,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<Option<CaseRecord>>;
    /// An agent's correction of a case's category, only if it is still `c.from`: the new
    /// category, its deadlines and clock, a `recategorized` event and a `corrections` row (the
    /// case's first message as the text), in one transaction. `None`: changed meanwhile.
    async fn recategorize(&self, c: &Recategorize) -> StoreResult<Option<CaseRecord>>;
    /// Corrections since `since_ms`: (to category, text), oldest first.
    async fn corrections(&self, since_ms: i64) -> StoreResult<Vec<(String, String)>>;
    /// A contact an agent logged (phone call, visit…): the case's first answer if it had none
    /// (`acked_at`, status `acknowledged`), and a `contact` event. `None`: no open or
    /// acknowledged case with this id.
    async fn log_contact(
        &self,
        case_id: CaseId,
        channel: &str,
        note: &str,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<Option<CaseRecord>>;
    /// A lifecycle change, only if the case is still in `t.from`; `None` otherwise.
    async fn transition(&self, t: &Transition) -> StoreResult<Option<CaseRecord>>;
    /// An escalation by hand: the tier from `tier_before` to `tier_after` (only if the case
    /// is still at `tier_before` and in `status`, both as the caller saw them), an
    /// `escalated` event, the notices. `None`: the case changed meanwhile.
    async fn escalate_case(
        &self,
        e: &crate::store::Escalation<'_>,
    ) -> StoreResult<Option<CaseRecord>>;
}
