//! `OutboxStore`: The outbox: claims, send results, deferrals, delivery reports, queued replies and bulk sends.

use super::*;
use async_trait::async_trait;

/// The outbox: claims, send results, deferrals, delivery reports, queued replies and bulk sends.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Leases due sends of `channel` until `now + lease_ms`: up to `limit`, plus at most a
    /// share (`lane_quota`) for each lower lane with due work, so a full urgent lane never
    /// starves them.
    async fn claim_outbox(
        &self,
        channel: Channel,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>> {
        self.claim_outbox_paced(channel, now_ms, lease_ms, limit, None)
            .await
    }
    /// The same, taking at most the tokens the channel's deployment-wide bucket holds (and
    /// taking them), when `rate` is given.
    async fn claim_outbox_paced(
        &self,
        channel: Channel,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        rate: Option<crate::outbound::rate::Rate>,
    ) -> StoreResult<Vec<OutboxItem>>;
    /// The earliest `not_before` of an unleased send, for the worker's wake-up timer.
    async fn next_outbox_due(&self, channel: Channel) -> StoreResult<Option<i64>>;
    /// A send's result and, for an ack this send rendered, its text: in one transaction on
    /// SQLite; PostgreSQL writes the text first (should the result then fail to be written,
    /// the send repeats with that stored text, which is what it sent).
    async fn record_send(&self, update: SendUpdate, rendered: Option<Rendered>) -> StoreResult<()>;
    async fn complete_send(
        &self,
        message_id: MessageId,
        provider_id: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.record_send(
            SendUpdate::Complete {
                message_id,
                provider_id: provider_id.map(str::to_string),
                now_ms,
            },
            None,
        )
        .await
    }
    async fn retry_send(
        &self,
        message_id: MessageId,
        next_at_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.record_send(
            SendUpdate::Retry {
                message_id,
                next_at_ms,
                error: error.to_string(),
                now_ms,
            },
            None,
        )
        .await
    }
    async fn fail_send(&self, message_id: MessageId, error: &str, now_ms: i64) -> StoreResult<()> {
        self.record_send(
            SendUpdate::Fail {
                message_id,
                error: error.to_string(),
                now_ms,
            },
            None,
        )
        .await
    }
    /// Returns leased sends to the queue (shutdown).
    async fn release_leases(&self, message_ids: &[MessageId]) -> StoreResult<()>;
    /// Puts claimed sends back until `not_before` (quiet hours), attempts unchanged.
    async fn defer_sends(&self, message_ids: &[MessageId], not_before: i64) -> StoreResult<()>;
    /// Records a delivery report; returns the message it applied to, if any.
    async fn apply_dlr(&self, dlr: &DlrUpdate) -> StoreResult<Option<MessageId>>;
    /// Queues outbound messages (each in the lane of its kind) in one transaction.
    async fn queue_outbound_bulk(
        &self,
        drafts: &[OutboundDraft],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageId>>;
    /// Queues an agent's reply on a case in one transaction: the outbound message, its outbox
    /// row, a `reply` case event naming `by`, and the case's first answer (`acked_at`, status
    /// `acknowledged` when it was `open`). `None` when the case does not exist.
    async fn queue_reply(
        &self,
        case_id: CaseId,
        draft: &OutboundDraft,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<Option<MessageId>>;
}
