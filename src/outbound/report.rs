//! Applying a delivery report (a bridge's DLR, an email DSN) to its message, written once over
//! [`DeliveryTx`]; each engine runs the statements of `crate::store::sql` (SQLite on the writer
//! thread, PostgreSQL in a sqlx transaction).
//!
//! The rules: every report is kept (also one that matches no message, as evidence); a report
//! never moves a message backwards (`status_rank`), and delivered or failed stay final; a
//! failure ends the sending, so a retry still queued is dropped.

use crate::domain::MessageId;
use crate::store::{DeliveryStatus, DlrUpdate, StoreResult};

/// The statements of one delivery report, inside one transaction. No method decides anything.
#[allow(async_fn_in_trait)]
pub trait DeliveryTx {
    /// (id, status) of our outbound message with this id.
    async fn outbound_by_id(&mut self, id: MessageId) -> StoreResult<Option<(MessageId, String)>>;
    /// (id, status) of the newest outbound message the bridge knows by this id.
    async fn outbound_by_provider_id(
        &mut self,
        pid: &str,
    ) -> StoreResult<Option<(MessageId, String)>>;
    async fn insert_report(
        &mut self,
        message_id: Option<MessageId>,
        dlr: &DlrUpdate,
    ) -> StoreResult<()>;
    /// Moves the status only if it is still `was`; rows changed.
    async fn set_delivery_status(
        &mut self,
        id: MessageId,
        status: &str,
        error: Option<&str>,
        now_ms: i64,
        was: &str,
    ) -> StoreResult<u64>;
    async fn drop_from_outbox(&mut self, id: MessageId) -> StoreResult<()>;
}

/// Applies one report; the message it matched.
///
/// # Errors
/// The engine's.
pub async fn apply<T: DeliveryTx>(tx: &mut T, dlr: &DlrUpdate) -> StoreResult<Option<MessageId>> {
    let found = match (dlr.message_id, &dlr.provider_id) {
        (Some(id), _) => tx.outbound_by_id(id).await?,
        (None, Some(pid)) => tx.outbound_by_provider_id(pid).await?,
        (None, None) => None,
    };
    tx.insert_report(found.as_ref().map(|f| f.0), dlr).await?;
    let Some((id, mut current)) = found else {
        return Ok(None);
    };
    let new = dlr.status.as_str();
    // Status moves forward only. Two reports of one message may be applied at once (on
    // PostgreSQL, in two transactions): the move is a compare-and-set on the status read, and
    // a report that lost the race reads again and decides again, so `accepted` never
    // overwrites a `delivered` that committed in between.
    for _ in 0..8 {
        let cur = status_rank(&current);
        if cur >= 3 || status_rank(new) < cur {
            break;
        }
        let failed = dlr.status == DeliveryStatus::Failed;
        let err = failed.then_some(dlr.detail.as_str());
        if tx
            .set_delivery_status(id, new, err, dlr.now_ms, &current)
            .await?
            == 1
        {
            if failed {
                tx.drop_from_outbox(id).await?;
            }
            break;
        }
        match tx.outbound_by_id(id).await? {
            Some((_, now)) => current = now,
            None => break,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One message whose status another report moves to `racer` between this report's read
    /// and its write (the first write is refused, as the compare-and-set would be).
    struct Racing {
        status: String,
        racer: Option<&'static str>,
        writes: Vec<String>,
    }

    impl DeliveryTx for Racing {
        async fn outbound_by_id(
            &mut self,
            id: MessageId,
        ) -> StoreResult<Option<(MessageId, String)>> {
            Ok(Some((id, self.status.clone())))
        }
        async fn outbound_by_provider_id(
            &mut self,
            _: &str,
        ) -> StoreResult<Option<(MessageId, String)>> {
            Ok(None)
        }
        async fn insert_report(&mut self, _: Option<MessageId>, _: &DlrUpdate) -> StoreResult<()> {
            Ok(())
        }
        async fn set_delivery_status(
            &mut self,
            _: MessageId,
            status: &str,
            _: Option<&str>,
            _: i64,
            was: &str,
        ) -> StoreResult<u64> {
            if let Some(r) = self.racer.take() {
                self.status = r.to_string();
            }
            if was != self.status {
                return Ok(0);
            }
            self.status = status.to_string();
            self.writes.push(status.to_string());
            Ok(1)
        }
        async fn drop_from_outbox(&mut self, _: MessageId) -> StoreResult<()> {
            Ok(())
        }
    }

    fn report(status: DeliveryStatus) -> DlrUpdate {
        DlrUpdate {
            message_id: Some(crate::domain::MessageId(7)),
            provider_id: None,
            status,
            detail: String::new(),
            now_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_report_that_loses_a_race_reads_again_and_never_moves_the_status_back() {
        // `delivered` commits between this `accepted` report's read and write.
        let mut tx = Racing {
            status: "sent".into(),
            racer: Some("delivered"),
            writes: Vec::new(),
        };
        apply(&mut tx, &report(DeliveryStatus::Accepted))
            .await
            .unwrap();
        assert_eq!(tx.status, "delivered");
        assert!(tx.writes.is_empty(), "{:?}", tx.writes);
        // `accepted` committed in between: `delivered` still moves it forward.
        let mut tx = Racing {
            status: "sent".into(),
            racer: Some("accepted"),
            writes: Vec::new(),
        };
        apply(&mut tx, &report(DeliveryStatus::Delivered))
            .await
            .unwrap();
        assert_eq!((tx.status.as_str(), tx.writes.len()), ("delivered", 1));
    }
}
