//! How the store applies the scheduler's decisions, written once for both engines over
//! [`SlaTx`] (PostgreSQL on a sqlx transaction; SQLite on the writer thread, with the intake's
//! group commit): each item under a savepoint, only if the clock is still at the step and mask
//! it was claimed with and the case still at the tier it had; else that item alone is rolled
//! back and its lease released, to be claimed again with fresh state.

use crate::domain::{CaseId, MessageId};
use crate::store::{OutboundDraft, SlaApply, StoreError, StoreResult};

/// The statements one applied step needs (text in `crate::store::sql`).
#[allow(async_fn_in_trait)]
pub trait SlaTx: crate::intake::decide::IntakeTx {
    /// Takes the case row's lock before the clock's (PostgreSQL; nothing on SQLite), the
    /// order the intake takes them in, so the two never deadlock.
    async fn lock_case(&mut self, case_id: CaseId) -> StoreResult<()>;
    async fn savepoint(&mut self) -> StoreResult<()>;
    async fn rollback_to_savepoint(&mut self) -> StoreResult<()>;
    async fn release_savepoint(&mut self) -> StoreResult<()>;
    /// Moves the clock from (`step`, `fired_before`) on; rows changed.
    async fn move_clock(
        &mut self,
        a: &SlaApply,
        next_step: &str,
        next_due: Option<i64>,
    ) -> StoreResult<u64>;
    /// Removes the clock if still at (`step`, `fired_before`); rows changed.
    async fn remove_clock(&mut self, a: &SlaApply) -> StoreResult<u64>;
    /// The case's tier from `tier_before` to `tier_after`; rows changed.
    async fn set_tier(&mut self, a: &SlaApply) -> StoreResult<u64>;
    async fn release_lease(&mut self, case_id: CaseId) -> StoreResult<()>;
    /// A case event, as the intake writes them.
    async fn sla_event(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        kind: crate::domain::CaseEventKind,
        detail: &str,
    ) -> StoreResult<()> {
        self.case_event(case_id, now_ms, kind, detail).await
    }
    /// A notice queued on the case, as the intake queues its messages.
    async fn sla_notice(
        &mut self,
        d: &OutboundDraft,
        case_id: CaseId,
        now_ms: i64,
    ) -> StoreResult<MessageId> {
        self.queue_outbound(d, Some(case_id), now_ms).await
    }
}

/// Applies `items` in the caller's transaction; per item whether it was applied. An item
/// whose statements fail with anything but an outage is rolled back alone and keeps its lease
/// (it is tried again when the lease ends), so one bad clock cannot stop the others.
///
/// # Errors
/// An outage (the whole batch is then rolled back by the caller).
pub async fn apply_all<T: SlaTx>(tx: &mut T, items: &[SlaApply]) -> StoreResult<Vec<bool>> {
    let mut done = Vec::with_capacity(items.len());
    for a in items {
        tx.savepoint().await?;
        match apply_one(tx, a).await {
            Ok(true) => {
                tx.release_savepoint().await?;
                done.push(true);
            }
            Ok(false) => {
                tx.rollback_to_savepoint().await?;
                tx.release_lease(a.case_id).await?;
                tx.release_savepoint().await?;
                done.push(false);
            }
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::error!(case_id = a.case_id.get(), step = %a.step, error = %crate::domain::scrub(&e.to_string()), "SLA step could not be applied; retried when its lease ends");
                tx.rollback_to_savepoint().await?;
                tx.release_savepoint().await?;
                done.push(false);
            }
        }
    }
    Ok(done)
}

/// One item: false when the clock or the case changed since the claim.
async fn apply_one<T: SlaTx>(tx: &mut T, a: &SlaApply) -> StoreResult<bool> {
    tx.lock_case(a.case_id).await?;
    let moved = if a.remove {
        tx.remove_clock(a).await?
    } else {
        let (step, due) = a
            .next
            .as_ref()
            .map_or((super::CLOCK_DONE, None), |(s, d)| (s.as_str(), Some(*d)));
        tx.move_clock(a, step, due).await?
    };
    if moved != 1 {
        return Ok(false);
    }
    if a.tier_after != a.tier_before && tx.set_tier(a).await? != 1 {
        return Ok(false);
    }
    if let Some((kind, detail)) = &a.event {
        tx.sla_event(a.case_id, a.now_ms, *kind, detail).await?;
    }
    for d in &a.notices {
        tx.sla_notice(d, a.case_id, a.now_ms).await?;
    }
    Ok(true)
}
