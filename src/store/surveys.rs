//! `SurveyStore`: Return visits and survey answers.

use super::*;
use async_trait::async_trait;

/// Return visits and survey answers.
#[async_trait]
pub trait SurveyStore: Send + Sync {
    /// The earliest instant a return visit falls due.
    async fn next_visit_due(&self, now_ms: i64) -> StoreResult<Option<i64>>;
    /// Leases up to `limit` visits due at `now_ms`.
    async fn claim_visits(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<DueVisit>>;
    /// Applies one decision in one transaction; false when the visit changed since the claim.
    async fn apply_visit(&self, a: &VisitApply) -> StoreResult<bool>;
    /// Records that a survey waits for this customer's answer until `expires_ms`.
    async fn await_survey(
        &self,
        channel: Channel,
        address: &str,
        survey: &str,
        case_id: Option<i64>,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<()>;
    /// Answers received for a survey: (address, answer).
    async fn survey_answers(&self, survey: &str) -> StoreResult<Vec<(String, String)>>;
}
