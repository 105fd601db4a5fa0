//! The writes of the campaign dispatcher and of the outbox's opt-out check, written once over
//! [`CampaignTx`], which each engine implements with the statement text of
//! `crate::store::sql` (PostgreSQL in a sqlx transaction; SQLite on the writer thread, inside
//! its group commit, like the intake's `decide`).
//!
//! The dispatcher decides each recipient outside the transaction (consent, caps, template:
//! `super::dispatch`); this checks again what may have changed meanwhile: the campaign paused
//! or cancelled, the recipient opted out, or another instance moved the recipient first.

use super::Suppressed;
use crate::domain::{CampaignId, Channel, MessageId};
use crate::intake::decide::IntakeTx;
use crate::store::{OutboundDraft, StoreResult};
use std::collections::HashSet;

/// A tick's decided recipients of one campaign: each `(seq, draft or why not)`.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub campaign_id: CampaignId,
    pub items: Vec<(i64, Result<OutboundDraft, Suppressed>)>,
    /// Never sent after this (the campaign's validity).
    pub not_after: Option<i64>,
    /// A survey campaign: the survey's name and until when an answer counts.
    pub survey: Option<(String, i64)>,
    pub now_ms: i64,
}

/// The statements of a dispatch and of the opt-out check, inside one transaction. No method
/// decides anything.
#[allow(async_fn_in_trait)]
pub trait CampaignTx: IntakeTx {
    async fn campaign_status(&mut self, campaign_id: CampaignId) -> StoreResult<Option<String>>;
    /// Of these addresses, the (channel, address) pairs opted out now.
    async fn opted_out_among(&mut self, addresses: &[&str]) -> StoreResult<Vec<(String, String)>>;
    /// A `pending` recipient to `state` (`queued` or `suppressed`, with why); rows moved (0
    /// when it was not pending any more).
    async fn move_recipient(
        &mut self,
        campaign_id: CampaignId,
        seq: i64,
        state: &str,
        reason: Option<&str>,
    ) -> StoreResult<u64>;
    async fn set_not_after(&mut self, message_id: MessageId, not_after: i64) -> StoreResult<()>;
    async fn link_recipient(
        &mut self,
        campaign_id: CampaignId,
        seq: i64,
        message_id: MessageId,
    ) -> StoreResult<()>;
    /// The survey now waits for this address's answer (a return visit still waiting keeps
    /// its place).
    async fn wait_survey(
        &mut self,
        channel: Channel,
        address: &str,
        survey: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<()>;
    /// Whether a queued message's recipient opted out (the caller asks only of commercial ones).
    async fn message_opted_out(&mut self, message_id: MessageId) -> StoreResult<bool>;
    /// A queued message withdrawn (suppressed as opted out; its outbox row and recipient too).
    async fn withdraw_message(&mut self, message_id: MessageId, now_ms: i64) -> StoreResult<()>;
}

/// Queues or suppresses a tick's recipients; how many messages were queued. Nothing is
/// queued unless the campaign is still running (an expiry's suppressions still count).
///
/// # Errors
/// The engine's.
pub async fn dispatch<T: CampaignTx>(tx: &mut T, d: &Dispatch) -> StoreResult<u64> {
    let status = tx.campaign_status(d.campaign_id).await?;
    let expiring = d
        .items
        .iter()
        .all(|(_, r)| matches!(r, Err(Suppressed::Expired)));
    if status.as_deref() != Some("running") && !expiring {
        return Ok(0);
    }
    let commercial: Vec<&str> = d
        .items
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|r| r.kind.is_commercial())
        .map(|r| r.to.as_str())
        .collect();
    let mut opted_out: HashSet<(String, String)> = HashSet::new();
    for chunk in commercial.chunks(400) {
        opted_out.extend(tx.opted_out_among(chunk).await?);
    }
    let mut queued = 0;
    for (seq, decision) in &d.items {
        let decision = match decision {
            Ok(m)
                if opted_out
                    .contains(&(m.channel.as_str().to_string(), m.to.as_str().to_string())) =>
            {
                &Err(Suppressed::OptedOut)
            }
            other => other,
        };
        let (state, reason) = match decision {
            Ok(_) => ("queued", None),
            Err(r) => ("suppressed", Some(r.as_str())),
        };
        if tx
            .move_recipient(d.campaign_id, *seq, state, reason)
            .await?
            != 1
        {
            continue;
        }
        let Ok(m) = decision else { continue };
        let id = tx.queue_outbound(m, None, d.now_ms).await?;
        if let Some(t) = d.not_after {
            tx.set_not_after(id, t).await?;
        }
        tx.link_recipient(d.campaign_id, *seq, id).await?;
        if let Some((name, expires)) = &d.survey {
            // The answer counts while this waits (intake reads it).
            tx.wait_survey(m.channel, m.to.as_str(), name, d.now_ms, *expires)
                .await?;
        }
        queued += 1;
    }
    Ok(queued)
}

/// Of claimed commercial messages (the caller picks them by `MessageKind::is_commercial`),
/// those whose recipient opted out while they waited: withdrawn, and returned.
///
/// # Errors
/// The engine's.
pub async fn withdraw_opted_out<T: CampaignTx>(
    tx: &mut T,
    ids: &[MessageId],
    now_ms: i64,
) -> StoreResult<Vec<MessageId>> {
    let mut out = Vec::new();
    for &id in ids {
        if tx.message_opted_out(id).await? {
            tx.withdraw_message(id, now_ms).await?;
            out.push(id);
        }
    }
    Ok(out)
}
