//! `CampaignStore`: Outbound campaigns: definitions, recipients, imports, leases, dispatch and outcomes.

use super::*;
use async_trait::async_trait;

/// Outbound campaigns: definitions, recipients, imports, leases, dispatch and outcomes.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Takes or renews a running campaign's dispatch lease for `owner` until `until_ms`;
    /// false while another instance holds it.
    async fn lease_campaign(
        &self,
        campaign_id: CampaignId,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool>;
    /// A new campaign (status `draft`); its id.
    async fn create_campaign(&self, c: &NewCampaign) -> StoreResult<CampaignId>;
    async fn campaign(&self, id: CampaignId) -> StoreResult<Option<CampaignRecord>>;
    async fn campaigns(&self, limit: i64) -> StoreResult<Vec<CampaignRecord>>;
    /// Stores recipients (a duplicate of one already in the campaign is skipped); how many
    /// were new.
    async fn add_recipients(
        &self,
        campaign_id: CampaignId,
        rows: &[crate::campaigns::import::NewRecipient],
    ) -> StoreResult<u64>;
    /// Takes (`renew` false: only a draft or paused campaign with no import running) or
    /// renews the campaign's import hold until `until_ms`; false when not taken.
    async fn hold_import(
        &self,
        campaign_id: CampaignId,
        until_ms: i64,
        now_ms: i64,
        renew: bool,
    ) -> StoreResult<bool>;
    async fn end_import(&self, campaign_id: CampaignId) -> StoreResult<()>;
    /// An import that failed half-way taken back: its recipients (line numbers after
    /// `after_seq`) not yet dispatched are removed; how many.
    async fn remove_recipients_after(
        &self,
        campaign_id: CampaignId,
        after_seq: i64,
    ) -> StoreResult<u64>;
    /// The highest recipient line number so far (0: none); a later import numbers after it.
    async fn max_recipient_seq(&self, campaign_id: CampaignId) -> StoreResult<i64>;
    /// Messages among these (commercial, claimed) whose address opted out since they were
    /// queued: withdrawn (status `suppressed`, outbox row gone, recipient `opted_out`).
    async fn withdraw_opted_out(
        &self,
        message_ids: &[MessageId],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageId>>;
    /// (state, reason, message status, count) of a campaign's recipients.
    async fn campaign_counts(
        &self,
        campaign_id: CampaignId,
    ) -> StoreResult<Vec<(String, Option<String>, Option<String>, i64)>>;
    /// A campaign's status change (`campaigns::status_change`); `None` when it was in none
    /// of `change.from` (or an import holds it).
    async fn set_campaign_status(
        &self,
        id: CampaignId,
        change: &crate::campaigns::StatusChange<'_>,
        note: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<Option<CampaignRecord>>;
    /// Recurring campaigns whose next occurrence has come.
    async fn due_recurring(&self, now_ms: i64) -> StoreResult<Vec<CampaignRecord>>;
    /// One occurrence of a recurring campaign: a child campaign (running, starting at
    /// `occurrence`) with a copy of the recipients, and the parent's next occurrence moved from
    /// `occurrence` to `next`, in one transaction; `None` if another instance did it first.
    async fn spawn_run(
        &self,
        parent: &CampaignRecord,
        occurrence: i64,
        valid_until: Option<i64>,
        next: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<Option<CampaignId>>;
    /// Sets a recurring campaign's next occurrence (start, resume).
    async fn set_next_run(&self, id: CampaignId, next: Option<i64>) -> StoreResult<()>;
    /// Running campaigns whose start has come.
    async fn running_campaigns(&self, now_ms: i64) -> StoreResult<Vec<CampaignRecord>>;
    /// The next pending recipients of a campaign, by line (after `after_seq`).
    async fn pending_recipients(
        &self,
        campaign_id: CampaignId,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<RecipientRow>>;
    /// What is known of these addresses on a channel: opt-out / opt-in, the campaign messages
    /// (all, commercial) queued to them since `since_ms`, and the commercial texts sent to
    /// them since `texts_since_ms`.
    async fn standings(
        &self,
        channel: Channel,
        addresses: &[String],
        since_ms: i64,
        texts_since_ms: i64,
    ) -> StoreResult<HashMap<String, crate::campaigns::Standing>>;
    /// Applies the dispatcher's decisions in one transaction: each recipient only if still
    /// pending; a message is queued (in the lane of its kind, never sent after `not_after`)
    /// or the recipient suppressed with the reason. Returns how many were queued.
    async fn dispatch_recipients(&self, d: crate::campaigns::apply::Dispatch) -> StoreResult<u64>;
    /// An opt-out outside intake (one-click unsubscribe): recorded with the message as
    /// evidence, and the address's queued commercial messages withdrawn, in one transaction.
    async fn opt_out(
        &self,
        channel: Channel,
        address: &str,
        message_id: Option<MessageId>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The message a campaign queued to an address.
    async fn campaign_message(
        &self,
        campaign_id: CampaignId,
        address: &str,
    ) -> StoreResult<Option<MessageId>>;
    /// A campaign's sends finished since `since_ms`: (tried, failed).
    async fn campaign_outcomes(
        &self,
        campaign_id: CampaignId,
        since_ms: i64,
    ) -> StoreResult<(i64, i64)>;
}
