//! Outbox workers: claim due sends with a lease, pace them per bridge, send, and record the
//! result (sent, retry later with exponential backoff and jitter, or failed). On shutdown the
//! worker stops claiming, lets in-flight sends finish and returns unsent leases.
//!
//! Layout: `segment` (GSM-7/UCS-2 maths), `sms/` (one driver per bridge), `retry` (policy).

pub mod email;
pub mod rate;
pub mod report;
pub mod retry;
pub mod segment;
pub mod sms;
pub mod smtp_pool;

use crate::clock::Clock;
use crate::domain::{Channel, MessageId, MessageKind};
use crate::store::{OutboxItem, Store};
use retry::{Backoff, SendResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Sends one message through one bridge.
#[async_trait::async_trait]
pub trait Sender: Send + Sync + 'static {
    async fn send(&self, item: &OutboxItem) -> SendResult;
    fn name(&self) -> &'static str;
}

/// Longest idle sleep of a worker with nothing due.
const MAX_IDLE_MS: i64 = 5_000;

/// Spaces sends at `1/rate` seconds on average. Sends whose turn is less than
/// [`PACER_SLACK`] away go at once: tokio's timer has millisecond resolution, so sleeping
/// 10 µs (one turn at 100,000/s) would really sleep a millisecond and cap every bridge at
/// ~1,000 messages a second. The schedule still advances one interval per send, so the rate
/// holds; only its grain is coarser than a millisecond.
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(rate_per_sec: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate_per_sec),
            next: Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let (at, now) = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            // A sleep that woke late does not push the schedule back: the turns it missed
            // (up to the slack) go at once, so the rate is kept, not lowered by timer lag.
            let at = (*next).max(now - PACER_SLACK);
            *next = at + self.interval;
            (at, now)
        };
        if at > now + PACER_SLACK {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// How far ahead of its turn a send may go (see [`Pacer`]).
pub const PACER_SLACK: Duration = Duration::from_millis(2);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub channel: Channel,
    pub concurrency: usize,
    pub rate_per_sec: f64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub lease_ms: i64,
    /// How long shutdown waits for in-flight sends.
    pub grace: Duration,
    /// SMS: the bridge's part cap; a longer message is failed, never handed over to be cut.
    pub max_parts: Option<usize>,
    /// Quiet hours of the service and bulk lanes: a claimed message of those lanes inside its
    /// window goes back to the queue until the window ends.
    pub quiet: Option<QuietGate>,
    /// Renders the acks the intake queued with their inputs only; without it such an ack
    /// fails.
    pub acks: Option<Arc<crate::intake::AckRenderer>>,
}

/// The quiet hours the workers keep for what is already queued (`[campaigns]`).
#[derive(Debug, Clone, Copy)]
pub struct QuietGate {
    pub zone: chrono_tz::Tz,
    pub service: crate::sla::calendar::Window,
    pub commercial: crate::sla::calendar::Window,
}

impl QuietGate {
    /// Until when a message of `kind` waits at `now`; `None`: it may go now.
    pub fn hold_until(&self, kind: MessageKind, now: i64) -> Option<i64> {
        let w = match kind.lane() {
            crate::domain::Lane::Urgent => return None,
            crate::domain::Lane::Service => self.service,
            crate::domain::Lane::Bulk => self.commercial,
        };
        let t = w.next_outside(self.zone, now);
        (t > now).then_some(t)
    }
}

impl WorkerConfig {
    /// The worker of `channel` paced by `p`. A lease outlives a send's timeout (twice, plus
    /// 30 s) and the time a claimed batch waits for its turn under the rate limit.
    pub fn new(channel: Channel, p: &crate::config::Pacing, grace: Duration) -> WorkerConfig {
        WorkerConfig {
            channel,
            concurrency: p.concurrency,
            rate_per_sec: p.rate_per_sec,
            max_attempts: p.max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(p.backoff_base_ms),
                max: Duration::from_millis(p.backoff_max_ms),
            },
            lease_ms: ((p.timeout_secs * 2 + 30) * 1000) as i64
                + (p.concurrency as f64 * 2.0 / p.rate_per_sec * 1000.0) as i64,
            grace,
            max_parts: None,
            quiet: None,
            acks: None,
        }
    }

    /// With the renderer of queued acks.
    pub fn with_acks(mut self, acks: Arc<crate::intake::AckRenderer>) -> WorkerConfig {
        self.acks = Some(acks);
        self
    }

    /// With the bridge's part cap (`sms.outbound.max_parts`).
    pub fn with_quiet(mut self, q: QuietGate) -> WorkerConfig {
        self.quiet = Some(q);
        self
    }

    pub fn with_part_cap(mut self, parts: u32) -> WorkerConfig {
        self.max_parts = Some(parts as usize);
        self
    }
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub sender: Arc<dyn Sender>,
    pub notify: Arc<Notify>,
    pub config: WorkerConfig,
    pub metrics: Arc<crate::http::Metrics>,
    /// Sends whose result is not yet recorded (the database failed): never claimed again by
    /// this worker while their result is being retried.
    pub unrecorded: Arc<std::sync::Mutex<std::collections::HashSet<MessageId>>>,
}

impl Worker {
    /// Runs until `stop` is cancelled, then drains.
    pub async fn run(self, stop: CancellationToken) {
        let cfg = self.config.clone();
        let pacer = Arc::new(Pacer::new(cfg.rate_per_sec));
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        let mut inflight = JoinSet::new();
        let batch = (cfg.concurrency * 2).max(1) as i64;
        let this = Arc::new(self);
        'outer: while !stop.is_cancelled() {
            while inflight.try_join_next().is_some() {}
            let now = this.clock.now_ms();
            let items = match this
                .store
                .claim_outbox_paced(
                    cfg.channel,
                    now,
                    cfg.lease_ms,
                    batch,
                    Some(rate::Rate::of(cfg.rate_per_sec)),
                )
                .await
            {
                Ok(mut v) => {
                    // A send whose result is still being recorded was sent: not again.
                    {
                        let unrecorded = this.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
                        if !unrecorded.is_empty() {
                            v.retain(|i| !unrecorded.contains(&i.message_id));
                        }
                    }
                    // An opt-out that came while a commercial message waited (or was being
                    // retried) wins over the send.
                    let commercial: Vec<MessageId> = v
                        .iter()
                        .filter(|i| i.kind.is_commercial())
                        .map(|i| i.message_id)
                        .collect();
                    if !commercial.is_empty() {
                        match this.store.withdraw_opted_out(&commercial, now).await {
                            Ok(gone) if !gone.is_empty() => {
                                v.retain(|i| !gone.contains(&i.message_id));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "checking opt-outs before sending failed; holding the commercial messages");
                                v.retain(|i| !commercial.contains(&i.message_id));
                            }
                        }
                    }
                    if let Some(q) = &cfg.quiet {
                        let mut held: std::collections::BTreeMap<i64, Vec<MessageId>> =
                            Default::default();
                        v.retain(|i| match q.hold_until(i.kind, now) {
                            Some(t) => {
                                held.entry(t).or_default().push(i.message_id);
                                false
                            }
                            None => true,
                        });
                        for (until, ids) in held {
                            if let Err(e) = this.store.defer_sends(&ids, until).await {
                                tracing::warn!(error = %e, "deferring sends to the end of quiet hours failed; their leases expire");
                            }
                        }
                    }
                    v
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming the outbox failed; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => {}
                    }
                    continue;
                }
            };
            if items.is_empty() {
                // Sleep until the next retry falls due or a new message wakes us; the cap only
                // bounds how late a message queued by another instance on the same database is
                // seen.
                let wait = match this.store.next_outbox_due(cfg.channel).await {
                    // Due now but nothing claimed: the bridge's bucket is empty (or another
                    // instance holds the rows); a claim waits for a batch of up to 8 tokens,
                    // which the bucket (a fifth of a second deep) refills in at most 0.2 s:
                    // look again after half of that, so no refill is lost at the brim.
                    Ok(Some(due)) => Duration::from_millis(
                        (due - this.clock.now_ms())
                            .max(((4.0 / cfg.rate_per_sec).min(0.1) * 1_000.0) as i64)
                            .clamp(10, MAX_IDLE_MS) as u64,
                    ),
                    Ok(None) => Duration::from_millis(MAX_IDLE_MS as u64),
                    Err(_) => Duration::from_secs(1),
                };
                tokio::select! {
                    _ = this.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            let mut pending: std::collections::VecDeque<OutboxItem> = items.into();
            while let Some(item) = pending.pop_front() {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = stop.cancelled() => { pending.push_front(item); break; }
                };
                tokio::select! {
                    _ = pacer.acquire() => {}
                    _ = stop.cancelled() => { pending.push_front(item); break; }
                }
                let w = this.clone();
                inflight.spawn(async move {
                    w.send_one(item).await;
                    drop(permit);
                });
            }
            if !pending.is_empty() {
                let ids: Vec<MessageId> = pending.iter().map(|i| i.message_id).collect();
                if let Err(e) = this.store.release_leases(&ids).await {
                    tracing::warn!(error = %e, "releasing leases failed; they expire by themselves");
                }
                break 'outer;
            }
        }
        // Graceful stop: let in-flight sends finish and record their results.
        let drain = async { while inflight.join_next().await.is_some() {} };
        if tokio::time::timeout(cfg.grace, drain).await.is_err() {
            tracing::warn!(
                "in-flight sends did not finish within the grace period; their leases expire"
            );
        }
    }

    #[tracing::instrument(skip_all, fields(message_id = item.message_id.get(), to = %item.to, driver = self.sender.name()))]
    async fn send_one(&self, mut item: OutboxItem) {
        let expired = item.not_after.is_some_and(|t| t <= self.clock.now_ms());
        // An ack queued with its inputs is rendered now, off the intake transaction; its text
        // is recorded with the result, so a later attempt sends the same text.
        let mut rendered = None;
        let mut unrenderable = None;
        if let Some(inputs) = item.render.take() {
            let r = match &self.config.acks {
                Some(acks) => acks.render_queued(item.message_id.get(), item.channel, &inputs),
                None => Err("no ack renderer on this worker".to_string()),
            };
            match r {
                Ok(r) => {
                    item.text.clone_from(&r.text);
                    item.subject.clone_from(&r.subject);
                    item.html.clone_from(&r.html);
                    rendered = Some(r);
                }
                Err(e) => unrenderable = Some(e),
            }
        }
        let result = match (self.config.max_parts, unrenderable) {
            _ if expired => {
                SendResult::Fail("expired: past its campaign's validity, never sent".to_string())
            }
            (_, Some(reason)) => SendResult::Fail(reason),
            (Some(cap), None) if segment::segment(&item.text).segments > cap => {
                SendResult::Fail(format!(
                    "needs {} SMS parts; the bridge sends at most {cap} (sms.outbound.max_parts) and \
                 would cut the text",
                    segment::segment(&item.text).segments
                ))
            }
            _ => {
                let started = std::time::Instant::now();
                let r = self.sender.send(&item).await;
                self.metrics.send_took(self.config.channel, started);
                r
            }
        };
        let attempt = item.attempts as u32 + 1;
        // A result that cannot be recorded is retried until it is: the send happened, and
        // letting the lease expire would send it again.
        let mut wait = Duration::from_millis(100);
        let mut first = true;
        loop {
            match self
                .record(&item, &result, rendered.clone(), attempt, first)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    if first {
                        self.unrecorded
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(item.message_id);
                    }
                    tracing::error!(error = %crate::domain::scrub(&e.to_string()), retry_in_ms = wait.as_millis() as u64, "recording the send result failed; retrying");
                    first = false;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        if !first {
            self.unrecorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&item.message_id);
        }
    }

    async fn record(
        &self,
        item: &OutboxItem,
        result: &SendResult,
        rendered: Option<crate::store::Rendered>,
        attempt: u32,
        count: bool,
    ) -> crate::store::StoreResult<()> {
        use crate::store::SendUpdate;
        let now = self.clock.now_ms();
        let ch = self.config.channel;
        let message_id = item.message_id;
        match result.clone() {
            SendResult::Sent { provider_id } => {
                if count {
                    self.metrics.sent(ch, crate::http::Sent::Sent);
                    tracing::info!(attempt, "sent");
                }
                let u = SendUpdate::Complete {
                    message_id,
                    provider_id,
                    now_ms: now,
                };
                self.store.record_send(u, rendered).await
            }
            SendResult::Retry(reason) if attempt < self.config.max_attempts => {
                let delay = self.config.backoff.delay(attempt);
                if count {
                    self.metrics.sent(ch, crate::http::Sent::Retry);
                    tracing::warn!(attempt, reason = %crate::domain::scrub(&reason), delay_ms = delay.as_millis() as u64, "send failed; will retry");
                }
                let u = SendUpdate::Retry {
                    message_id,
                    next_at_ms: now + delay.as_millis() as i64,
                    error: reason,
                    now_ms: now,
                };
                self.store.record_send(u, rendered).await?;
                // The run loop may have gone to sleep while this send was in flight (a leased
                // row is not "due"): wake it so it sleeps until this retry instead.
                self.notify.notify_one();
                Ok(())
            }
            SendResult::Retry(reason) => {
                if count {
                    self.metrics.sent(ch, crate::http::Sent::Failed);
                    tracing::error!(attempt, reason = %crate::domain::scrub(&reason), "send failed; attempts exhausted");
                }
                let error = format!("gave up after {attempt} attempts: {reason}");
                let u = SendUpdate::Fail {
                    message_id,
                    error,
                    now_ms: now,
                };
                self.store.record_send(u, rendered).await
            }
            SendResult::Fail(reason) => {
                if count {
                    self.metrics.sent(ch, crate::http::Sent::Failed);
                    tracing::error!(attempt, reason = %crate::domain::scrub(&reason), "send refused by the bridge; not retried");
                }
                let u = SendUpdate::Fail {
                    message_id,
                    error: reason,
                    now_ms: now,
                };
                self.store.record_send(u, rendered).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pacer;
    use std::time::Duration;
    use tokio::time::Instant;

    /// A fast pace is not held to the timer's millisecond: 1,000 sends at 100,000/s take
    /// about 10 ms (they took a second when each waited its 10 µs turn in a sleep).
    #[tokio::test(start_paused = true)]
    async fn a_fast_pace_is_not_capped_by_the_timer_resolution() {
        let p = Pacer::new(100_000.0);
        let t = Instant::now();
        for _ in 0..1_000 {
            p.acquire().await;
        }
        let took = t.elapsed();
        assert!(took <= Duration::from_millis(12), "{took:?}");
        assert!(
            took >= Duration::from_millis(7),
            "the rate still holds: {took:?}"
        );
    }

    /// A slow pace is kept: 11 sends at 10/s span a second.
    #[tokio::test(start_paused = true)]
    async fn a_slow_pace_is_kept() {
        let p = Pacer::new(10.0);
        let t = Instant::now();
        for _ in 0..11 {
            p.acquire().await;
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(990), "{took:?}");
        assert!(took <= Duration::from_millis(1_010), "{took:?}");
    }
}
