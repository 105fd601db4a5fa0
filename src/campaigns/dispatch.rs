//! The campaign dispatcher: one task that, every tick, takes each running campaign's next
//! recipients as its pace allows (a token bucket per campaign), decides each one (consent,
//! opt-out, daily caps: `super::admit`), renders its message, and has the store queue the
//! messages and mark the recipients in one transaction (a recipient moves only from
//! `pending`, so two instances never queue one twice). Outside the allowed hours of its class
//! a campaign waits (deferred, not dropped); past its validity its pending recipients are
//! suppressed as `expired`. The outbox workers then send in the service or bulk lane, behind
//! acks, replies and deadline notices, and keep the quiet hours for what is already queued.

use super::{CampaignSettings, Kind, Suppressed};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{CampaignStatus, Channel, MessageKind};
use crate::outbound::segment::segment;
use crate::store::{CampaignRecord, OutboundDraft, Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const TICK_MS: u64 = 100;
/// Most recipients one campaign takes in one tick.
const MAX_BATCH: usize = 1_000;
const DAY_MS: i64 = 86_400_000;
/// How long a dispatcher's hold on a campaign lasts without renewal (each tick renews it):
/// with several instances one paces each campaign, and another takes over this long after
/// it stopped.
pub const LEASE_MS: i64 = 3_000;

/// The survey name a survey campaign's answers are stored under.
pub fn survey_name(campaign_id: i64) -> String {
    format!("campaign:{campaign_id}")
}

pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: CampaignSettings,
    zone: chrono_tz::Tz,
    sms_on: bool,
    sms_from: String,
    sms_driver: String,
    sms_part_cap: u32,
    email_on: bool,
    email_from: String,
    pub sms_notify: Arc<Notify>,
    pub email_notify: Arc<Notify>,
    /// Per campaign: (last tick, credit in messages).
    buckets: Mutex<HashMap<i64, (i64, f64)>>,
    public_url: String,
    /// Per campaign: when its failure rate was last looked at.
    checked: Mutex<HashMap<i64, i64>>,
    /// The unsubscribe links' key (`app_secrets`), read on first use.
    unsub_key: tokio::sync::OnceCell<Vec<u8>>,
    /// This dispatcher's name in campaign leases.
    owner: String,
}

/// A campaign's template, compiled.
pub struct Compiled {
    env: minijinja::Environment<'static>,
    has_subject: bool,
}

impl Compiled {
    /// # Errors
    /// A syntax error, for a 422.
    pub fn new(c: &CampaignRecord) -> Result<Compiled, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(crate::templates::TEMPLATE_FUEL));
        env.add_template_owned("text", c.template.clone())
            .map_err(|e| format!("template: {e}"))?;
        if let Some(s) = &c.subject {
            env.add_template_owned("subject", s.clone())
                .map_err(|e| format!("subject: {e}"))?;
        }
        Ok(Compiled {
            env,
            has_subject: c.subject.is_some(),
        })
    }

    /// The variables the templates use that are not among `columns`.
    pub fn missing(&self, columns: &[String]) -> Vec<String> {
        let mut names: Vec<String> = ["text", "subject"]
            .iter()
            .filter_map(|n| self.env.get_template(n).ok())
            .flat_map(|t| t.undeclared_variables(false))
            .filter(|v| !columns.iter().any(|c| c == v) && v != "phone" && v != "email")
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// (text, subject) for one recipient's variables.
    ///
    /// # Errors
    /// The template failed (a variable missing in this row…).
    pub fn render(&self, vars: &str) -> Result<(String, Option<String>), String> {
        let v: serde_json::Value = serde_json::from_str(vars).map_err(|e| e.to_string())?;
        let r = |n: &str| {
            self.env
                .get_template(n)
                .and_then(|t| t.render(&v))
                .map_err(|e| e.to_string())
        };
        let text = r("text")?;
        if text.len() > crate::templates::MAX_RENDERED {
            return Err(format!(
                "the text rendered to {} bytes (at most {})",
                text.len(),
                crate::templates::MAX_RENDERED
            ));
        }
        let subject = if self.has_subject {
            Some(r("subject")?)
        } else {
            None
        };
        Ok((text.trim().to_string(), subject))
    }
}

impl Dispatcher {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sms_notify: Arc<Notify>,
        email_notify: Arc<Notify>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            clock,
            settings: settings.campaigns.clone(),
            zone: settings.time.zone,
            sms_on: settings.sms.outbound.enabled,
            sms_from: settings.sms.outbound.from.clone(),
            sms_driver: format!("{:?}", settings.sms.outbound.driver).to_lowercase(),
            sms_part_cap: settings.sms.outbound.part_cap(),
            email_on: settings.email.smtp.enabled,
            email_from: settings.email.from.clone(),
            sms_notify,
            email_notify,
            buckets: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashMap::new()),
            public_url: settings.server.public_url.trim_end_matches('/').to_string(),
            unsub_key: tokio::sync::OnceCell::new(),
            owner: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
        }
    }

    /// One message as a draft on the recipient's channel; `None` when that channel does not
    /// send.
    pub fn draft(
        &self,
        channel: Channel,
        to: &str,
        kind: MessageKind,
        text: String,
        subject: Option<String>,
    ) -> Option<OutboundDraft> {
        match channel {
            Channel::Sms if self.sms_on => {
                // Never cut a campaign message: its end (the opt-out footer) would be lost.
                let seg = segment(&text);
                if seg.segments > self.sms_part_cap as usize {
                    return None;
                }
                let t = text;
                Some(OutboundDraft {
                    channel,
                    driver: self.sms_driver.clone(),
                    from: self.sms_from.clone(),
                    to: crate::domain::Address::stored(channel, to)?,
                    subject: None,
                    text: t,
                    html: None,
                    headers: None,
                    kind,
                    encoding: seg.encoding.as_str(),
                    segments: seg.segments as i64,
                    not_before: None,
                    render: None,
                })
            }
            Channel::Email if self.email_on => Some(OutboundDraft {
                channel,
                driver: "smtp".into(),
                from: self.email_from.clone(),
                to: crate::domain::Address::stored(channel, to)?,
                subject: Some(subject.unwrap_or_default()),
                text,
                html: None,
                headers: None,
                kind,
                encoding: "utf-8",
                segments: 1,
                not_before: None,
                render: None,
            }),
            _ => None,
        }
    }

    /// The key that signs unsubscribe links.
    ///
    /// # Errors
    /// The store's.
    pub async fn unsubscribe_key(&self) -> StoreResult<&[u8]> {
        self.unsub_key
            .get_or_try_init(|| async {
                self.store
                    .app_secret("unsubscribe")
                    .await
                    .map(String::into_bytes)
            })
            .await
            .map(Vec::as_slice)
    }

    /// One tick over every running campaign; how many messages were queued.
    ///
    /// # Errors
    /// The store's.
    pub async fn run_once(&self) -> StoreResult<u64> {
        let now = self.clock.now_ms();
        // Recurring campaigns whose occurrence has come start a run (once, guarded).
        for p in self.store.due_recurring(now).await? {
            let (Some(cron), Some(at)) = (&p.cron, p.next_run_at) else {
                continue;
            };
            if p.valid_until.is_some_and(|v| at >= v) {
                // Past the campaign's validity: no more runs.
                self.store
                    .set_campaign_status(
                        p.id,
                        &super::status_change(&[CampaignStatus::Recurring], CampaignStatus::Done),
                        Some("validity ended"),
                        now,
                    )
                    .await?;
                continue;
            }
            let next = super::next_occurrence(cron, self.zone, at.max(now))
                .ok()
                .flatten();
            if let Some(child) = self
                .store
                .spawn_run(
                    &p,
                    at,
                    super::run_valid_until(p.start_at, p.valid_until, at),
                    next,
                    now,
                )
                .await?
            {
                tracing::info!(
                    campaign = p.id.get(),
                    run = child.get(),
                    "recurring campaign: a run starts"
                );
            }
        }
        let mut queued = 0;
        for c in self.store.running_campaigns(now).await? {
            queued += self.campaign_tick(&c, now).await?;
        }
        if queued > 0 {
            self.sms_notify.notify_one();
            self.email_notify.notify_one();
        }
        Ok(queued)
    }

    fn take_budget(&self, c: &CampaignRecord, now: i64) -> usize {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let rate = c.rate_per_sec.max(0.001);
        let e = b.entry(c.id.get()).or_insert((now - 1_000, 0.0));
        let elapsed = (now - e.0).max(0) as f64;
        // At most one second's worth banked (a paused or quiet campaign does not burst).
        e.1 = (e.1 + elapsed * rate / 1_000.0).min(rate.max(1.0));
        e.0 = now;
        (e.1.floor() as usize).min(MAX_BATCH)
    }

    fn spend(&self, id: i64, n: usize) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = b.get_mut(&id) {
            e.1 -= n as f64;
        }
    }

    async fn campaign_tick(&self, c: &CampaignRecord, now: i64) -> StoreResult<u64> {
        let kind = c.kind;
        // One instance paces a campaign at a time (its pace is the campaign's, not each
        // instance's); the others leave it alone while the lease lasts.
        if !self
            .store
            .lease_campaign(c.id, &self.owner, now, now + LEASE_MS)
            .await?
        {
            return Ok(0);
        }
        if c.valid_until.is_some_and(|v| v <= now) {
            return self.expire(c, now).await;
        }
        if let Some(w) = super::quiet_window(kind, c.urgent != 0, &self.settings)
            && w.next_outside(self.zone, now) > now
        {
            // Quiet hours: wait, and bank nothing meanwhile.
            self.buckets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(c.id.get(), (now, 0.0));
            return Ok(0);
        }
        // Too many failures lately: stop and let a person look (looked at every 5 s).
        let s = &self.settings;
        let look = {
            let mut m = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            let last = m.entry(c.id.get()).or_insert(i64::MIN);
            let due = now.saturating_sub(*last) >= 5_000;
            if due {
                *last = now;
            }
            due
        };
        let (tried, failed) = if look {
            self.store
                .campaign_outcomes(c.id, (now - s.failure_window.ms()).max(c.updated_at))
                .await?
        } else {
            (0, 0)
        };
        if tried >= s.failure_min_sends && failed as f64 > tried as f64 * s.failure_rate {
            let note = format!(
                "auto-paused: {failed} of the last {tried} sends failed (over {:.0}%)",
                s.failure_rate * 100.0
            );
            tracing::warn!(campaign = c.id.get(), "{note}");
            self.store
                .set_campaign_status(
                    c.id,
                    &super::status_change(&[CampaignStatus::Running], CampaignStatus::Paused),
                    Some(&note),
                    now,
                )
                .await?;
            return Ok(0);
        }
        let n = self.take_budget(c, now);
        if n == 0 {
            return Ok(0);
        }
        let rows = self.store.pending_recipients(c.id, 0, n as i64).await?;
        if rows.is_empty() {
            self.store
                .set_campaign_status(
                    c.id,
                    &super::status_change(&[CampaignStatus::Running], CampaignStatus::Done),
                    None,
                    now,
                )
                .await?;
            return Ok(0);
        }
        let compiled = match Compiled::new(c) {
            Ok(t) => t,
            Err(e) => {
                let note = format!("paused: {e}");
                self.store
                    .set_campaign_status(
                        c.id,
                        &super::status_change(&[CampaignStatus::Running], CampaignStatus::Paused),
                        Some(&note),
                        now,
                    )
                    .await?;
                return Ok(0);
            }
        };
        let mut standings = HashMap::new();
        for ch in [Channel::Sms, Channel::Email] {
            let addrs: Vec<String> = rows
                .iter()
                .filter(|r| r.channel == ch)
                .map(|r| r.address.clone())
                .collect();
            if !addrs.is_empty() {
                let texts_since = now - self.settings.repeat_after.ms();
                for (a, s) in self
                    .store
                    .standings(ch, &addrs, now - DAY_MS, texts_since)
                    .await?
                {
                    standings.insert((ch, a), s);
                }
            }
        }
        let msg_kind = kind.message_kind(c.urgent != 0);
        let key = if rows.iter().any(|r| r.channel == Channel::Email) {
            Some(self.unsubscribe_key().await?.to_vec())
        } else {
            None
        };
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let ch = r.channel;
            let st = standings
                .get(&(ch, r.address.clone()))
                .cloned()
                .unwrap_or_default();
            let consent = super::has_consent(r.consent.as_deref());
            let decision = super::admit(kind, consent, &st, &self.settings).and_then(|_| {
                let (text, subject) = compiled.render(&r.vars).map_err(|e| {
                    tracing::warn!(campaign = c.id.get(), line = r.seq, error = %e, "campaign template failed for a recipient");
                    Suppressed::Template
                })?;
                if kind.is_commercial() {
                    if super::check_commercial(&text, &self.settings).is_err() {
                        return Err(Suppressed::Template);
                    }
                    if st.recent_texts.contains(&super::text_hash(&text)) {
                        return Err(Suppressed::SameContent);
                    }
                }
                let mut d = self
                    .draft(ch, &r.address, msg_kind, text, subject)
                    .ok_or(if ch == Channel::Sms && self.sms_on {
                        Suppressed::TooLong
                    } else {
                        Suppressed::Template
                    })?;
                if let (Channel::Email, Some(key)) = (ch, &key) {
                    // RFC 8058: one click, no login, no confirmation page needed.
                    let url = format!(
                        "{}/unsubscribe/{}",
                        self.public_url,
                        super::unsubscribe::token(key, c.id.get(), &r.address)
                    );
                    d.text
                        .push_str(&format!("\n\n退订 / Unsubscribe: {url}\n"));
                    d.headers = Some(serde_json::json!({ "list_unsubscribe": url }).to_string());
                }
                Ok(d)
            });
            items.push((r.seq, decision));
        }
        self.spend(c.id.get(), items.len());
        let survey = (kind == Kind::Survey).then(|| {
            (
                survey_name(c.id.get()),
                now + self.settings.survey_answer_within.ms(),
            )
        });
        self.store
            .dispatch_recipients(super::apply::Dispatch {
                campaign_id: c.id,
                items,
                not_after: c.valid_until,
                survey,
                now_ms: now,
            })
            .await
    }

    /// Past its validity: nothing more goes out; the pending recipients are suppressed as
    /// expired and the campaign is done.
    async fn expire(&self, c: &CampaignRecord, now: i64) -> StoreResult<u64> {
        loop {
            // A long expiry keeps its hold on the campaign.
            let now_ms = self.clock.now_ms();
            if !self
                .store
                .lease_campaign(c.id, &self.owner, now_ms, now_ms + LEASE_MS)
                .await?
            {
                return Ok(0);
            }
            let rows = self.store.pending_recipients(c.id, 0, 1_000).await?;
            if rows.is_empty() {
                break;
            }
            let items: Vec<_> = rows
                .iter()
                .map(|r| (r.seq, Err(Suppressed::Expired)))
                .collect();
            self.store
                .dispatch_recipients(super::apply::Dispatch {
                    campaign_id: c.id,
                    items,
                    not_after: None,
                    survey: None,
                    now_ms: now,
                })
                .await?;
        }
        self.store
            .set_campaign_status(
                c.id,
                &super::status_change(&[CampaignStatus::Running], CampaignStatus::Done),
                Some("validity ended"),
                now,
            )
            .await?;
        Ok(0)
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %crate::domain::scrub(&e.to_string()), "campaign dispatch failed; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(TICK_MS)) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Compiled;
    use crate::store::CampaignRecord;

    fn campaign(template: &str) -> CampaignRecord {
        CampaignRecord {
            id: crate::domain::CampaignId(1),
            name: "t".into(),
            kind: crate::campaigns::Kind::Notice,
            channel: crate::campaigns::import::Target::Sms,
            template: template.into(),
            subject: None,
            status: crate::domain::CampaignStatus::Draft,
            start_at: 0,
            valid_until: None,
            rate_per_sec: 1.0,
            urgent: 0,
            created_by: "t".into(),
            created_at: 0,
            updated_at: 0,
            note: None,
            cron: None,
            parent_id: None,
            next_run_at: None,
        }
    }

    /// A template that would loop for hours, or render megabytes, fails for that recipient
    /// (suppressed as `template`) instead of holding the dispatcher.
    #[test]
    fn a_runaway_template_fails_instead_of_holding_the_dispatcher() {
        let t0 = std::time::Instant::now();
        let c = Compiled::new(&campaign(
            "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
        ))
        .unwrap();
        let e = c.render("{}").unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        let c = Compiled::new(&campaign("{{ name * 100000 }}")).unwrap();
        let e = c.render(r#"{"name": "张三"}"#).unwrap_err();
        assert!(e.contains("bytes"), "{e}");
        let ok = Compiled::new(&campaign("{{ name }}您好")).unwrap();
        assert_eq!(ok.render(r#"{"name": "张三"}"#).unwrap().0, "张三您好");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }
}
