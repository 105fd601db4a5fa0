//! `IntakeStore`: Inbound messages: the intake transaction, concatenated SMS parts, reads of stored messages.

use super::*;
use async_trait::async_trait;

/// Inbound messages: the intake transaction, concatenated SMS parts, reads of stored messages.
#[async_trait]
pub trait IntakeStore: Send + Sync {
    /// Dedupe, case, message, ack and outbox row in ONE transaction, committed on return.
    async fn intake(&self, req: IntakeRequest) -> StoreResult<IntakeOutcome>;
    /// Stores one part of a concatenated SMS (committed before it returns).
    async fn store_part(&self, part: &NewPart) -> StoreResult<PartOutcome>;
    /// The open parts of a group, in order.
    async fn part_group(&self, group_key: &str) -> StoreResult<Vec<StoredPart>>;
    /// Groups whose first part arrived before `received_before`.
    async fn overdue_part_groups(
        &self,
        received_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
    /// Marks parts as joined into a message; forgets done parts older than `purge_before`.
    async fn close_parts(&self, ids: &[i64], purge_before: i64) -> StoreResult<()>;
    async fn message(&self, id: MessageId) -> StoreResult<Option<MessageRecord>>;
    /// Messages in one direction, newest first, for the API and tests.
    async fn recent_messages(&self, direction: &str, limit: i64)
    -> StoreResult<Vec<MessageRecord>>;
    /// Inbound messages received since `since_ms`, oldest first (rules backtest).
    async fn inbound_since(&self, since_ms: i64, limit: i64) -> StoreResult<Vec<StoredText>>;
    /// Whether a customer has opted out of commercial messages.
    async fn opted_out(&self, channel: Channel, address: &str) -> StoreResult<bool>;
}
