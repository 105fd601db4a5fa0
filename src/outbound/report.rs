//! Applying a delivery report (a bridge's DLR, an email DSN) to its message, written once over
//! [`DeliveryTx`]; each engine runs the statements of `crate::store::sql` (SQLite on the writer
//! thread, PostgreSQL in a sqlx transaction).
//!
//! The rules: every report is kept (also one that matches no message, as evidence); a report
//! never moves a message backwards (`status_rank`), and delivered or failed stay final; a
//! failure ends the sending, so a retry still queued is dropped.

use crate::store::{DeliveryStatus, DlrUpdate, StoreResult};

/// The statements of one delivery report, inside one transaction. No method decides anything.
#[allow(async_fn_in_trait)]
pub trait DeliveryTx {
    /// (id, status) of our outbound message with this id.
    async fn outbound_by_id(&mut self, id: i64) -> StoreResult<Option<(i64, String)>>;
    /// (id, status) of the newest outbound message the bridge knows by this id.
    async fn outbound_by_provider_id(&mut self, pid: &str) -> StoreResult<Option<(i64, String)>>;
    async fn insert_report(&mut self, message_id: Option<i64>, dlr: &DlrUpdate) -> StoreResult<()>;
    async fn set_delivery_status(
        &mut self,
        id: i64,
        status: &str,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
    async fn drop_from_outbox(&mut self, id: i64) -> StoreResult<()>;
}

/// Applies one report; the message it matched.
///
/// # Errors
/// The engine's.
pub async fn apply<T: DeliveryTx>(tx: &mut T, dlr: &DlrUpdate) -> StoreResult<Option<i64>> {
    let found = match (dlr.message_id, &dlr.provider_id) {
        (Some(id), _) => tx.outbound_by_id(id).await?,
        (None, Some(pid)) => tx.outbound_by_provider_id(pid).await?,
        (None, None) => None,
    };
    tx.insert_report(found.as_ref().map(|f| f.0), dlr).await?;
    let Some((id, current)) = found else {
        return Ok(None);
    };
    let new = dlr.status.as_str();
    let cur = status_rank(&current);
    if cur < 3 && status_rank(new) >= cur {
        let failed = dlr.status == DeliveryStatus::Failed;
        let err = failed.then_some(dlr.detail.as_str());
        tx.set_delivery_status(id, new, err, dlr.now_ms).await?;
        if failed {
            tx.drop_from_outbox(id).await?;
        }
    }
    Ok(Some(id))
}

/// How far an outbound status has come; a report never moves a message backwards, and the
/// final states stay final.
pub fn status_rank(s: &str) -> i32 {
    match s {
        "queued" => 0,
        "sent" => 1,
        "accepted" | "delayed" => 2,
        "delivered" | "failed" => 3,
        _ => 0,
    }
}
