//! Outbound batches (呼出服务): payment reminders, notices, surveys, research and marketing.
//! A campaign is a template, a kind, a channel, a schedule, a pace and a validity; its
//! recipients come from a CSV (`import.rs`); the dispatcher (`dispatch.rs`) queues their
//! messages in the outbox's service or bulk lane, paced, and only where the rules of the
//! message class allow (this file, pure):
//!
//! * `marketing` and `research` are commercial: the text starts with a registered signature
//!   `【名称】` (2–12 characters, none inside the body) and carries the opt-out footer
//!   (`回复TD退订`); they go only to recipients with consent on record (opted in, or a consent
//!   column naming when and how), never to opted-out ones, only inside the allowed hours
//!   (default 08:00–20:00), and within the per-recipient daily cap across campaigns.
//! * `payment_reminder`, `notice` and `survey` are service messages: a marketing opt-out does
//!   not stop them, but they still keep the night quiet (21:00–08:00) unless the campaign is
//!   urgent; a daily cap across campaigns applies too.

pub mod apply;
pub mod dispatch;
pub mod import;
pub mod manage;
pub mod unsubscribe;

use crate::domain::MessageKind;
use crate::sla::calendar::Window;
use serde::{Deserialize, Serialize};

/// `[campaigns]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    /// false: this instance dispatches no campaigns (another does, or a test drives it).
    pub dispatcher: bool,
    /// Commercial messages (marketing, research) only go out outside this local window.
    pub commercial_quiet_hours: Window,
    /// Service messages (reminders, notices, surveys) likewise, unless the campaign is urgent.
    pub service_quiet_hours: Window,
    /// Most commercial messages one recipient gets in 24 hours, across campaigns.
    pub commercial_per_day: i64,
    /// Most campaign messages of any kind one recipient gets in 24 hours.
    pub per_day: i64,
    /// The same commercial text goes to a recipient at most once in this long.
    pub repeat_after: crate::sla::Span,
    /// The opt-out footer every commercial message carries.
    pub opt_out_footer: String,
    /// Signature length in characters (between 【 and 】).
    pub signature_min: usize,
    pub signature_max: usize,
    /// A survey campaign's answers count while they come within this after the question.
    pub survey_answer_within: crate::sla::Span,
    /// A running campaign pauses itself when more than this share of its sends in the last
    /// `failure_window` failed (and at least `failure_min_sends` were tried).
    pub failure_rate: f64,
    pub failure_window: crate::sla::Span,
    pub failure_min_sends: i64,
    /// Highest pace a campaign may ask for (messages per second); the bridge's own pacing
    /// (`sms.outbound.rate_per_sec`) still applies to the whole deployment.
    pub max_rate_per_sec: f64,
}

impl CampaignSettings {
    /// # Errors
    /// Naming the key and the reason.
    pub fn check(&self) -> Result<(), String> {
        if self.commercial_per_day < 1 || self.per_day < self.commercial_per_day {
            return Err("campaigns: need 1 <= commercial_per_day <= per_day".into());
        }
        if self.opt_out_footer.trim().is_empty() {
            return Err("campaigns.opt_out_footer: must not be empty".into());
        }
        if self.signature_min == 0 || self.signature_max < self.signature_min {
            return Err("campaigns: need 1 <= signature_min <= signature_max".into());
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err("campaigns.failure_rate: between 0 and 1".into());
        }
        if !self.max_rate_per_sec.is_finite() || self.max_rate_per_sec <= 0.0 {
            return Err("campaigns.max_rate_per_sec: must be above 0".into());
        }
        Ok(())
    }
}

/// The SQL predicate over `campaigns` of what the dispatcher may take up (run or spawn runs
/// of): a campaign whose kind and channel this version knows. One written by a newer version
/// (or by hand) is left alone, as it was before these columns were typed: read as its fallback
/// (`marketing`, `sms`), it would go out under rules its author did not choose, and recipients
/// suppressed that way stay suppressed.
pub fn dispatchable_predicate() -> String {
    format!(
        "{} AND {}",
        crate::domain::any_of("kind", Kind::ALL.map(Kind::as_str)),
        crate::domain::any_of("channel", import::Target::ALL.map(import::Target::as_str))
    )
}

/// What a campaign sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PaymentReminder,
    Notice,
    Survey,
    Research,
    Marketing,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::PaymentReminder,
        Kind::Notice,
        Kind::Survey,
        Kind::Research,
        Kind::Marketing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PaymentReminder => "payment_reminder",
            Kind::Notice => "notice",
            Kind::Survey => "survey",
            Kind::Research => "research",
            Kind::Marketing => "marketing",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Marketing and research: consent, opt-out, signature, footer, daytime only.
    pub fn is_commercial(self) -> bool {
        matches!(self, Kind::Research | Kind::Marketing)
    }

    /// The outbox message kind (its lane follows: service or bulk; an urgent service
    /// campaign goes in the urgent lane, which keeps no quiet hours).
    pub fn message_kind(self, urgent: bool) -> MessageKind {
        match self {
            Kind::Notice | Kind::PaymentReminder | Kind::Survey if urgent => {
                MessageKind::UrgentNotice
            }
            Kind::PaymentReminder => MessageKind::PaymentReminder,
            Kind::Notice => MessageKind::Notice,
            Kind::Survey => MessageKind::Survey,
            Kind::Research => MessageKind::Research,
            Kind::Marketing => MessageKind::Marketing,
        }
    }
}

/// A campaign's status (`campaigns.status`, its text column; JSON as that text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Created, recipients being imported; nothing goes out.
    Draft,
    /// Its recipients are being dispatched.
    Running,
    /// A cron campaign: each occurrence starts a run of its own.
    Recurring,
    Paused,
    /// Every recipient dispatched, or its validity ended.
    Done,
    Cancelled,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 6] = [
        CampaignStatus::Draft,
        CampaignStatus::Running,
        CampaignStatus::Recurring,
        CampaignStatus::Paused,
        CampaignStatus::Done,
        CampaignStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Running => "running",
            CampaignStatus::Recurring => "recurring",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Done => "done",
            CampaignStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignStatus> {
        CampaignStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A campaign's move from one of `from` to `to`, with what it does besides the status
/// (`status_change`); the store applies it in one transaction, only if the campaign is still
/// in one of `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange<'a> {
    pub from: &'a [CampaignStatus],
    pub to: CampaignStatus,
    /// A recurring campaign keeps its next occurrence; any other status clears it.
    pub keep_next_run: bool,
    /// Starting waits for a running import into the campaign (`import_until`) to end.
    pub after_import: bool,
    /// A recurring campaign's runs follow it (pause, cancel).
    pub runs_follow: bool,
    /// Queued messages not yet claimed are withdrawn (cancel): nothing more goes out.
    pub withdraw_queued: bool,
}

/// What moving a campaign to `to` does.
pub fn status_change(from: &[CampaignStatus], to: CampaignStatus) -> StatusChange<'_> {
    use CampaignStatus::*;
    StatusChange {
        from,
        to,
        keep_next_run: to == Recurring,
        after_import: matches!(to, Running | Recurring),
        runs_follow: matches!(to, Paused | Cancelled),
        withdraw_queued: to == Cancelled,
    }
}

/// When a run of a recurring campaign stops being valid: as long after its occurrence as the
/// campaign's own window, and never past the campaign's end. `None`: no end.
pub fn run_valid_until(start_at: i64, valid_until: Option<i64>, occurrence: i64) -> Option<i64> {
    valid_until.map(|v| (occurrence + (v - start_at).max(0)).min(v))
}

/// The next occurrence of a cron (`"0 9 1 * *"`: 09:00 on the 1st) after `after_ms`, read in
/// `zone`; `None` when it has none.
///
/// # Errors
/// A cron that does not parse, for a 422.
pub fn next_occurrence(
    cron: &str,
    zone: chrono_tz::Tz,
    after_ms: i64,
) -> Result<Option<i64>, String> {
    use chrono::TimeZone;
    let c: croner::Cron = cron.parse().map_err(|e| format!("cron {cron:?}: {e}"))?;
    // Whole seconds: an occurrence is at :00 however far into a second we ask.
    let Some(start) = zone
        .timestamp_millis_opt(after_ms.div_euclid(1000) * 1000)
        .single()
    else {
        return Ok(None);
    };
    Ok(c.find_next_occurrence(&start, false)
        .ok()
        .map(|t| t.timestamp_millis().div_euclid(1000) * 1000))
}

/// Checks a commercial template: a signature `【…】` first, 2–12 characters by default, none
/// inside the body, and the opt-out footer.
///
/// # Errors
/// What is missing or wrong, for a 422.
pub fn check_commercial(text: &str, s: &CampaignSettings) -> Result<(), String> {
    let t = text.trim_start();
    let Some(rest) = t.strip_prefix('【') else {
        return Err(
            "a marketing or research message starts with its registered signature, e.g. 【某某通信】"
                .into(),
        );
    };
    let Some(end) = rest.find('】') else {
        return Err("the signature 【…】 is not closed".into());
    };
    let name = &rest[..end];
    let n = name.chars().count();
    if n < s.signature_min || n > s.signature_max {
        return Err(format!(
            "the signature 【{name}】 has {n} characters; {} to {} are allowed",
            s.signature_min, s.signature_max
        ));
    }
    if rest[end..].contains('【') {
        return Err("only one signature, at the start: the body has another 【…】".into());
    }
    if !text.contains(s.opt_out_footer.trim()) {
        return Err(format!(
            "a marketing or research message carries the opt-out footer {:?}",
            s.opt_out_footer.trim()
        ));
    }
    Ok(())
}

/// Whether a row's consent column records consent: a value, but not one that says no.
pub fn has_consent(v: Option<&str>) -> bool {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return false;
    };
    let k = v.to_lowercase();
    !matches!(
        k.as_str(),
        "0" | "n"
            | "no"
            | "false"
            | "none"
            | "null"
            | "-"
            | "否"
            | "无"
            | "不同意"
            | "未同意"
            | "拒绝"
    )
}

/// What we know of one recipient at dispatch time.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// Opted out (TD…) and not back in since.
    pub opted_out: bool,
    /// Opted in by message (START…) at some time.
    pub opted_in: bool,
    /// Campaign messages in the last 24 hours, and of those commercial ones.
    pub sent_today: i64,
    pub commercial_today: i64,
    /// Hashes of the commercial texts sent within `repeat_after`.
    pub recent_texts: Vec<u64>,
}

/// The hash `Standing::recent_texts` holds.
pub fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // An email's unsubscribe line differs per campaign; the content is what comes before.
    let body = text.split("\n\n退订 / Unsubscribe:").next().unwrap_or(text);
    body.trim().hash(&mut h);
    h.finish()
}

/// Why a recipient gets nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppressed {
    OptedOut,
    NoConsent,
    FrequencyCap,
    SameContent,
    Template,
    /// Longer than the bridge sends: cut, it would lose its end (the opt-out footer).
    TooLong,
    Expired,
}

impl Suppressed {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppressed::OptedOut => "opted_out",
            Suppressed::NoConsent => "no_consent",
            Suppressed::FrequencyCap => "frequency_cap",
            Suppressed::SameContent => "same_content",
            Suppressed::Template => "template",
            Suppressed::TooLong => "too_long",
            Suppressed::Expired => "expired",
        }
    }
}

/// Whether a recipient may get this campaign's message now (quiet hours are the dispatcher's:
/// they defer, they do not suppress).
pub fn admit(
    kind: Kind,
    has_consent_column: bool,
    st: &Standing,
    s: &CampaignSettings,
) -> Result<(), Suppressed> {
    if kind.is_commercial() {
        if st.opted_out {
            return Err(Suppressed::OptedOut);
        }
        if !(has_consent_column || st.opted_in) {
            return Err(Suppressed::NoConsent);
        }
        if st.commercial_today >= s.commercial_per_day {
            return Err(Suppressed::FrequencyCap);
        }
    }
    if st.sent_today >= s.per_day {
        return Err(Suppressed::FrequencyCap);
    }
    Ok(())
}

/// The quiet window of a campaign's messages, `None` for an urgent service campaign.
pub fn quiet_window(kind: Kind, urgent: bool, s: &CampaignSettings) -> Option<Window> {
    if kind.is_commercial() {
        Some(s.commercial_quiet_hours)
    } else if urgent {
        None
    } else {
        Some(s.service_quiet_hours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_change_says_what_it_does_besides_the_status() {
        let c = status_change(&[CampaignStatus::Draft], CampaignStatus::Recurring);
        assert!(c.keep_next_run && c.after_import && !c.runs_follow && !c.withdraw_queued);
        let c = status_change(&[CampaignStatus::Paused], CampaignStatus::Running);
        assert!(!c.keep_next_run && c.after_import && !c.runs_follow);
        let c = status_change(
            &[CampaignStatus::Running, CampaignStatus::Recurring],
            CampaignStatus::Paused,
        );
        assert!(c.runs_follow && !c.withdraw_queued && !c.after_import);
        let c = status_change(&[CampaignStatus::Running], CampaignStatus::Cancelled);
        assert!(c.runs_follow && c.withdraw_queued);
        assert_eq!(c.from, [CampaignStatus::Running]);
        let c = status_change(&[CampaignStatus::Running], CampaignStatus::Done);
        assert!(!c.runs_follow && !c.withdraw_queued && !c.keep_next_run);
    }

    #[test]
    fn a_run_is_valid_for_the_campaigns_window_and_never_past_its_end() {
        const D: i64 = 86_400_000;
        // A campaign valid for 2 days from its start, ending on day 30.
        assert_eq!(run_valid_until(0, Some(30 * D), 10 * D), Some(30 * D));
        assert_eq!(run_valid_until(28 * D, Some(30 * D), 29 * D), Some(30 * D));
        assert_eq!(run_valid_until(0, Some(2 * D), D), Some(2 * D));
        assert_eq!(run_valid_until(5 * D, Some(7 * D), 5 * D), Some(7 * D));
        assert_eq!(run_valid_until(5 * D, Some(7 * D), 6 * D), Some(7 * D));
        assert_eq!(run_valid_until(5 * D, Some(9 * D), 6 * D), Some(9 * D));
        assert_eq!(run_valid_until(5 * D, Some(20 * D), 6 * D), Some(20 * D));
        // An occurrence before the campaign's start keeps the window's length.
        assert_eq!(run_valid_until(10 * D, Some(12 * D), 9 * D), Some(11 * D));
        assert_eq!(run_valid_until(0, None, D), None);
    }

    fn settings() -> CampaignSettings {
        CampaignSettings {
            dispatcher: false,
            repeat_after: crate::sla::Span(30 * 86_400_000),
            survey_answer_within: crate::sla::Span(3 * 86_400_000),
            failure_rate: 0.2,
            failure_window: crate::sla::Span(300_000),
            failure_min_sends: 50,
            commercial_quiet_hours: Window::parse("20:00-08:00").unwrap(),
            service_quiet_hours: Window::parse("21:00-08:00").unwrap(),
            commercial_per_day: 1,
            per_day: 50,
            opt_out_footer: "回复TD退订".into(),
            signature_min: 2,
            signature_max: 12,
            max_rate_per_sec: 500.0,
        }
    }

    #[test]
    fn commercial_text_needs_one_signature_first_and_the_footer() {
        let s = settings();
        assert!(check_commercial("【某某通信】5G套餐八折，回复TD退订", &s).is_ok());
        for (bad, why) in [
            ("5G套餐八折，回复TD退订", "starts with"),
            ("【某】5G套餐八折，回复TD退订", "1 characters"),
            ("【某某通信】5G套餐八折", "footer"),
            ("【某某通信】5G【好】套餐，回复TD退订", "only one"),
            ("【某某通信5G套餐，回复TD退订", "not closed"),
        ] {
            let e = check_commercial(bad, &s).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn commercial_messages_need_consent_and_respect_opt_out_and_caps_service_ones_do_not() {
        let s = settings();
        let ok = Standing::default();
        assert_eq!(
            admit(Kind::Marketing, false, &ok, &s),
            Err(Suppressed::NoConsent)
        );
        assert_eq!(admit(Kind::Marketing, true, &ok, &s), Ok(()));
        let out = Standing {
            opted_out: true,
            ..Standing::default()
        };
        assert_eq!(
            admit(Kind::Research, true, &out, &s),
            Err(Suppressed::OptedOut)
        );
        assert_eq!(admit(Kind::PaymentReminder, false, &out, &s), Ok(()));
        let busy = Standing {
            opted_in: true,
            commercial_today: 1,
            sent_today: 1,
            ..Standing::default()
        };
        assert_eq!(
            admit(Kind::Marketing, false, &busy, &s),
            Err(Suppressed::FrequencyCap)
        );
        assert_eq!(admit(Kind::Notice, false, &busy, &s), Ok(()));
        let capped = Standing {
            sent_today: 50,
            ..Standing::default()
        };
        assert_eq!(
            admit(Kind::Notice, false, &capped, &s),
            Err(Suppressed::FrequencyCap)
        );
        assert!(quiet_window(Kind::Notice, true, &s).is_none());
        assert_eq!(Kind::Notice.message_kind(true), "urgent_notice");
        assert_eq!(
            Kind::Marketing.message_kind(false).lane(),
            crate::domain::Lane::Bulk
        );
        assert_eq!(
            Kind::Notice.message_kind(true).lane(),
            crate::domain::Lane::Urgent
        );
    }
}
