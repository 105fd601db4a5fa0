//! `impl Store` for an engine: compiled once per engine (`#[path]`) against its `Engine` type
//! and its `ops` module. The engine-specific methods are the engine's inherent `do_*` methods;
//! the rest forwards to the shared `ops` on the engine's pool.

use super::{Engine, ops};
use crate::domain::{CampaignId, CaseId, Channel, MessageId};
use crate::store::StoreResult;

#[async_trait::async_trait]
impl crate::store::EngineStore for Engine {
    async fn migrate(&self) -> StoreResult<()> {
        self.do_migrate().await
    }
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        self.engine_ready()
    }
    async fn app_secret(&self, name: &str) -> StoreResult<String> {
        ops::app_secret(&self.pool, name).await
    }
    async fn counts(&self) -> StoreResult<crate::store::Counts> {
        ops::counts(&self.pool).await
    }
    async fn outbox_depth(&self) -> StoreResult<Vec<(String, i64, i64)>> {
        ops::outbox_depth(&self.pool).await
    }
    async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait::async_trait]
impl crate::store::IntakeStore for Engine {
    async fn intake(
        &self,
        req: crate::store::IntakeRequest,
    ) -> StoreResult<crate::store::IntakeOutcome> {
        self.do_intake(req).await
    }
    async fn message(&self, id: MessageId) -> StoreResult<Option<crate::store::MessageRecord>> {
        ops::message(&self.pool, id).await
    }
    async fn recent_messages(
        &self,
        direction: &str,
        limit: i64,
    ) -> StoreResult<Vec<crate::store::MessageRecord>> {
        ops::recent_messages(&self.pool, direction, limit).await
    }
    async fn inbound_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::store::StoredText>> {
        ops::inbound_since(&self.pool, since_ms, limit).await
    }
    async fn opted_out(&self, channel: Channel, address: &str) -> StoreResult<bool> {
        ops::opted_out(&self.pool, channel.as_str(), address).await
    }
    async fn store_part(
        &self,
        p: &crate::store::NewPart,
    ) -> StoreResult<crate::store::PartOutcome> {
        ops::store_part(&self.pool, p).await
    }
    async fn part_group(&self, group_key: &str) -> StoreResult<Vec<crate::store::StoredPart>> {
        ops::part_group(&self.pool, group_key).await
    }
    async fn overdue_part_groups(&self, before: i64, limit: i64) -> StoreResult<Vec<String>> {
        ops::overdue_part_groups(&self.pool, before, limit).await
    }
    async fn close_parts(&self, ids: &[i64], purge_before: i64) -> StoreResult<()> {
        ops::close_parts(&self.pool, ids, purge_before).await
    }
}

#[async_trait::async_trait]
impl crate::store::OutboxStore for Engine {
    async fn claim_outbox_paced(
        &self,
        channel: Channel,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
        rate: Option<crate::outbound::rate::Rate>,
    ) -> StoreResult<Vec<crate::store::OutboxItem>> {
        let q = crate::store::ClaimQuery {
            channel,
            now_ms,
            lease_ms,
            limit,
            rate,
        };
        self.do_claim(q).await
    }
    async fn next_outbox_due(&self, channel: Channel) -> StoreResult<Option<i64>> {
        ops::next_outbox_due(&self.pool, channel.as_str()).await
    }
    async fn record_send(
        &self,
        update: crate::store::SendUpdate,
        rendered: Option<crate::store::Rendered>,
    ) -> StoreResult<()> {
        self.do_send_update(update, rendered).await
    }
    async fn defer_sends(&self, ids: &[MessageId], not_before: i64) -> StoreResult<()> {
        ops::defer_sends(&self.pool, ids, not_before).await
    }
    async fn release_leases(&self, ids: &[MessageId]) -> StoreResult<()> {
        ops::release_leases(&self.pool, ids).await
    }
    async fn apply_dlr(&self, dlr: &crate::store::DlrUpdate) -> StoreResult<Option<MessageId>> {
        self.do_apply_dlr(dlr).await
    }
    async fn queue_reply(
        &self,
        case_id: CaseId,
        draft: &crate::store::OutboundDraft,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<Option<MessageId>> {
        Ok(ops::queue_reply(&self.pool, case_id, draft, by, now_ms)
            .await?
            .map(MessageId))
    }
    async fn queue_outbound_bulk(
        &self,
        drafts: &[crate::store::OutboundDraft],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageId>> {
        let ids = ops::queue_outbound_bulk(&self.pool, drafts, now_ms).await?;
        Ok(ids.into_iter().map(MessageId).collect())
    }
}

#[async_trait::async_trait]
impl crate::store::CampaignStore for Engine {
    async fn lease_campaign(
        &self,
        campaign_id: CampaignId,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        self.do_lease_campaign(campaign_id.get(), owner, now_ms, until_ms)
            .await
    }
    async fn create_campaign(&self, c: &crate::store::NewCampaign) -> StoreResult<CampaignId> {
        ops::create_campaign(&self.pool, c).await.map(CampaignId)
    }
    async fn campaign(&self, id: CampaignId) -> StoreResult<Option<crate::store::CampaignRecord>> {
        ops::campaign(&self.pool, id).await
    }
    async fn campaigns(&self, limit: i64) -> StoreResult<Vec<crate::store::CampaignRecord>> {
        ops::campaigns(&self.pool, limit).await
    }
    async fn add_recipients(
        &self,
        campaign_id: CampaignId,
        rows: &[crate::campaigns::import::NewRecipient],
    ) -> StoreResult<u64> {
        ops::add_recipients(&self.pool, campaign_id, rows).await
    }
    async fn hold_import(
        &self,
        campaign_id: CampaignId,
        until_ms: i64,
        now_ms: i64,
        renew: bool,
    ) -> StoreResult<bool> {
        ops::hold_import(&self.pool, campaign_id, until_ms, now_ms, renew).await
    }
    async fn end_import(&self, campaign_id: CampaignId) -> StoreResult<()> {
        ops::end_import(&self.pool, campaign_id).await
    }
    async fn remove_recipients_after(
        &self,
        campaign_id: CampaignId,
        after_seq: i64,
    ) -> StoreResult<u64> {
        ops::remove_recipients_after(&self.pool, campaign_id, after_seq).await
    }
    async fn max_recipient_seq(&self, campaign_id: CampaignId) -> StoreResult<i64> {
        ops::max_recipient_seq(&self.pool, campaign_id).await
    }
    async fn withdraw_opted_out(
        &self,
        ids: &[MessageId],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageId>> {
        self.do_withdraw_opted_out(ids, now_ms).await
    }
    async fn campaign_counts(
        &self,
        campaign_id: CampaignId,
    ) -> StoreResult<Vec<(String, Option<String>, Option<String>, i64)>> {
        ops::campaign_counts(&self.pool, campaign_id).await
    }
    async fn set_campaign_status(
        &self,
        id: CampaignId,
        change: &crate::campaigns::StatusChange<'_>,
        note: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<Option<crate::store::CampaignRecord>> {
        ops::set_campaign_status(&self.pool, id, change, note, now_ms).await
    }
    async fn due_recurring(&self, now_ms: i64) -> StoreResult<Vec<crate::store::CampaignRecord>> {
        ops::due_recurring(&self.pool, now_ms).await
    }
    async fn spawn_run(
        &self,
        parent: &crate::store::CampaignRecord,
        occurrence: i64,
        valid_until: Option<i64>,
        next: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<Option<CampaignId>> {
        Ok(
            ops::spawn_run(&self.pool, parent, occurrence, valid_until, next, now_ms)
                .await?
                .map(CampaignId),
        )
    }
    async fn set_next_run(&self, id: CampaignId, next: Option<i64>) -> StoreResult<()> {
        ops::set_next_run(&self.pool, id, next).await
    }
    async fn running_campaigns(
        &self,
        now_ms: i64,
    ) -> StoreResult<Vec<crate::store::CampaignRecord>> {
        ops::running_campaigns(&self.pool, now_ms).await
    }
    async fn pending_recipients(
        &self,
        campaign_id: CampaignId,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::store::RecipientRow>> {
        ops::pending_recipients(&self.pool, campaign_id, after_seq, limit).await
    }
    async fn standings(
        &self,
        channel: crate::domain::Channel,
        addresses: &[String],
        since_ms: i64,
        texts_since_ms: i64,
    ) -> StoreResult<std::collections::HashMap<String, crate::campaigns::Standing>> {
        ops::standings(&self.pool, channel, addresses, since_ms, texts_since_ms).await
    }
    async fn dispatch_recipients(&self, d: crate::campaigns::apply::Dispatch) -> StoreResult<u64> {
        self.do_dispatch(d).await
    }
    async fn opt_out(
        &self,
        channel: crate::domain::Channel,
        address: &str,
        message_id: Option<MessageId>,
        now_ms: i64,
    ) -> StoreResult<()> {
        ops::opt_out(&self.pool, channel, address, message_id, now_ms).await
    }
    async fn campaign_message(
        &self,
        campaign_id: CampaignId,
        address: &str,
    ) -> StoreResult<Option<MessageId>> {
        Ok(ops::campaign_message(&self.pool, campaign_id, address)
            .await?
            .map(MessageId))
    }
    async fn campaign_outcomes(
        &self,
        campaign_id: CampaignId,
        since_ms: i64,
    ) -> StoreResult<(i64, i64)> {
        ops::campaign_outcomes(&self.pool, campaign_id, since_ms).await
    }
}

#[async_trait::async_trait]
impl crate::store::CaseStore for Engine {
    async fn find_cases(
        &self,
        filter: &crate::store::CaseFilter,
        limit: i64,
    ) -> StoreResult<Vec<crate::store::CaseRecord>> {
        ops::find_cases(&self.pool, filter, limit).await
    }
    async fn open_linked_case(
        &self,
        old_id: CaseId,
        deadlines: (i64, i64),
        next: Option<(crate::sla::Step, i64)>,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::open_linked_case(&self.pool, old_id, deadlines, next, by, now_ms).await
    }

    async fn recategorize(
        &self,
        c: &crate::store::Recategorize,
    ) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::recategorize(&self.pool, c).await
    }
    async fn corrections(&self, since_ms: i64) -> StoreResult<Vec<(String, String)>> {
        ops::corrections(&self.pool, since_ms).await
    }

    async fn resolve_case(
        &self,
        case_id: CaseId,
        r: &crate::store::Resolve<'_>,
    ) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::resolve_case(&self.pool, case_id, r).await
    }
    async fn case(&self, id: CaseId) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::case(&self.pool, id).await
    }
    async fn case_events(&self, case_id: CaseId) -> StoreResult<Vec<crate::store::CaseEvent>> {
        ops::case_events(&self.pool, case_id).await
    }
    async fn case_messages(
        &self,
        case_id: CaseId,
    ) -> StoreResult<Vec<crate::store::MessageRecord>> {
        ops::case_messages(&self.pool, case_id).await
    }
    async fn log_contact(
        &self,
        case_id: CaseId,
        channel: &str,
        note: &str,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::log_contact(&self.pool, case_id, channel, note, by, now_ms).await
    }
    async fn transition(
        &self,
        t: &crate::store::Transition,
    ) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::transition(&self.pool, t).await
    }
    async fn escalate_case(
        &self,
        e: &crate::store::Escalation<'_>,
    ) -> StoreResult<Option<crate::store::CaseRecord>> {
        ops::escalate_case(&self.pool, e).await
    }
}

#[async_trait::async_trait]
impl crate::store::SlaStore for Engine {
    async fn unclocked_cases(
        &self,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<(CaseId, String, i64, bool, String)>> {
        ops::unclocked_cases(&self.pool, after_id, limit).await
    }

    async fn start_clocks(&self, clocks: &[(CaseId, String, Option<i64>, i64)]) -> StoreResult<()> {
        ops::start_clocks(&self.pool, clocks).await
    }

    async fn case_clock(&self, case_id: CaseId) -> StoreResult<Option<(String, Option<i64>, i64)>> {
        ops::case_clock(&self.pool, case_id).await
    }
    async fn sla_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<crate::sla::report::SlaRow>> {
        ops::sla_rows(&self.pool, from_ms, to_ms).await
    }
    async fn next_sla_due(&self, now_ms: i64) -> StoreResult<Option<i64>> {
        ops::next_sla_due(&self.pool, now_ms).await
    }
    async fn claim_sla(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::store::DueClock>> {
        let ids = self.do_claim_sla(now_ms, lease_ms, limit).await?;
        ops::due_clocks(&self.pool, &ids).await
    }
    async fn apply_sla(&self, items: &[crate::store::SlaApply]) -> StoreResult<Vec<bool>> {
        self.do_apply_sla(items).await
    }
}

#[async_trait::async_trait]
impl crate::store::SurveyStore for Engine {
    async fn next_visit_due(&self, now_ms: i64) -> StoreResult<Option<i64>> {
        ops::next_visit_due(&self.pool, now_ms).await
    }

    async fn claim_visits(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::store::DueVisit>> {
        ops::claim_visits(&self.pool, now_ms, lease_ms, limit).await
    }

    async fn apply_visit(&self, a: &crate::store::VisitApply) -> StoreResult<bool> {
        ops::apply_visit(&self.pool, a).await
    }
    async fn await_survey(
        &self,
        channel: Channel,
        address: &str,
        survey: &str,
        case_id: Option<i64>,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<()> {
        ops::await_survey(
            &self.pool,
            channel.as_str(),
            address,
            survey,
            case_id,
            now_ms,
            expires_ms,
        )
        .await
    }
    async fn survey_answers(&self, survey: &str) -> StoreResult<Vec<(String, String)>> {
        ops::survey_answers(&self.pool, survey).await
    }
}

#[async_trait::async_trait]
impl crate::store::RuleStore for Engine {
    async fn insert_rule_version(&self, v: &crate::store::NewRuleVersion) -> StoreResult<i64> {
        ops::insert_rule_version(&self.pool, v).await
    }
    async fn activate_rule_version(&self, id: i64, by: &str, now_ms: i64) -> StoreResult<()> {
        ops::activate_rule_version(&self.pool, id, by, now_ms).await
    }
    async fn active_rule_version(&self) -> StoreResult<Option<crate::store::RuleVersion>> {
        ops::active_rule_version(&self.pool).await
    }
    async fn rule_version(&self, id: i64) -> StoreResult<Option<crate::store::RuleVersion>> {
        ops::rule_version(&self.pool, id).await
    }
    async fn rule_versions(&self) -> StoreResult<Vec<crate::store::RuleVersionSummary>> {
        ops::rule_versions(&self.pool).await
    }
}

#[async_trait::async_trait]
impl crate::store::TokenStore for Engine {
    async fn insert_api_token(
        &self,
        name: &str,
        role: &str,
        hash: &str,
        now_ms: i64,
    ) -> StoreResult<i64> {
        ops::insert_api_token(&self.pool, name, role, hash, now_ms).await
    }
    async fn api_token(&self, hash: &str) -> StoreResult<Option<(String, String)>> {
        ops::api_token(&self.pool, hash).await
    }
}
