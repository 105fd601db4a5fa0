//! `SlaStore`: SLA clocks: start, claim and apply due steps, the report rows.

use super::*;
use async_trait::async_trait;

/// SLA clocks: start, claim and apply due steps, the report rows.
#[async_trait]
pub trait SlaStore: Send + Sync {
    /// Active cases without a clock (opened before clocks existed), by id after `after_id`:
    /// (id, category, opened at, answered, customer).
    async fn unclocked_cases(
        &self,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<(CaseId, String, i64, bool, String)>>;
    /// Starts those clocks: (case id, next step, due, steps taken); a clock set meanwhile wins.
    async fn start_clocks(&self, clocks: &[(CaseId, String, Option<i64>, i64)]) -> StoreResult<()>;
    /// A case's clock: (next step, due, steps taken mask).
    async fn case_clock(&self, case_id: CaseId) -> StoreResult<Option<(String, Option<i64>, i64)>>;
    /// One row per case opened in `[from_ms, to_ms)`, for the SLA report.
    async fn sla_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<crate::sla::report::SlaRow>>;
    /// The earliest instant a case clock falls due (leased clocks aside).
    async fn next_sla_due(&self, now_ms: i64) -> StoreResult<Option<i64>>;
    /// Leases up to `limit` clocks due at `now_ms` until `now + lease_ms`.
    async fn claim_sla(&self, now_ms: i64, lease_ms: i64, limit: i64)
    -> StoreResult<Vec<DueClock>>;
    /// Applies the scheduler's decisions in ONE transaction; per item whether it was applied
    /// (false: the clock or the case changed since the claim; its lease is released).
    async fn apply_sla(&self, items: &[SlaApply]) -> StoreResult<Vec<bool>>;
}
