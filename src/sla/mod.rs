//! Service levels: the operator's promise (every complaint answered within 3 hours, handled
//! within 72) as a policy per category, the four-tier ladder, who is told, and the steps a
//! case's clock goes through. Pure: the scheduler (`scheduler.rs`) claims due steps from the
//! store and applies what [`fire`] decides.
//!
//! A case has one clock row in the database: its next step and when it falls due, plus a mask
//! of the steps already taken. After a step the next one is worked out again from the policy
//! of the case's category as it is then, so a category upgraded from inquiry to complaint gets
//! the complaint's (earlier) deadlines at once, and a step already past due fires at once.

pub mod apply;
pub mod calendar;
pub mod report;
pub mod scheduler;

use crate::domain::{Category, Tier};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// A duration as written in the configuration: `"90s"`, `"30m"`, `"3h"`, `"72h"`, `"2d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub i64);

impl Span {
    pub fn ms(self) -> i64 {
        self.0
    }

    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<Span, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?}: a duration needs a unit: s, m, h or d (\"3h\")"))?;
        let (n, unit) = t.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("{s:?}: a duration starts with a whole number (\"30m\")"))?;
        let per = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
        };
        n.checked_mul(per)
            .filter(|ms| *ms <= 366 * 86_400_000)
            .map(Span)
            .ok_or_else(|| format!("{s:?}: longer than a year"))
    }

    /// `3h`, `30m`, `90s` for messages; hours as a number for templates.
    pub fn hours(self) -> f64 {
        self.0 as f64 / 3_600_000.0
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Span::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One rung of the ladder: the case moves to `tier` once `after` has passed since it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    pub tier: Tier,
    pub after: Span,
}

/// The service level of one category.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A person (reply or logged contact) must answer within this; the automatic ack does not
    /// count. Missing it moves the case up one tier at once.
    pub answer_within: Span,
    pub resolve_within: Span,
    /// Warnings go to the case's tier this long before each deadline.
    pub warn_before: Span,
    /// Tiers 2–4, in order.
    #[serde(default)]
    pub escalate: Vec<Rung>,
}

/// A customer segment: who is in it and the categories whose policy it sets (the others keep
/// the default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    /// Number prefixes (`+8613900000`) or email domains (`@bigcorp.cn`).
    pub r#match: Vec<String>,
    #[serde(default)]
    pub complaint: Option<Policy>,
    #[serde(default)]
    pub fault: Option<Policy>,
    #[serde(default)]
    pub inquiry: Option<Policy>,
}

impl Segment {
    pub fn policy(&self, c: Category) -> Option<&Policy> {
        match c {
            Category::Complaint => self.complaint.as_ref(),
            Category::Fault => self.fault.as_ref(),
            Category::Inquiry => self.inquiry.as_ref(),
        }
    }
}

/// Who is told at one tier (tier 2 per city; a contact without a city serves every city).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub tier: Tier,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub email: Vec<crate::domain::EmailAddress>,
    /// In international form (`+86…`): a contact's number does not depend on
    /// `phone.default_country`.
    #[serde(default, deserialize_with = "international_numbers")]
    pub sms: Vec<crate::domain::PhoneNumber>,
}

fn international_numbers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<crate::domain::PhoneNumber>, D::Error> {
    use serde::de::Error;
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            if !s.trim_start().starts_with('+') {
                return Err(D::Error::custom(format!(
                    "sms contact {s:?}: write it in international form, +<country><number>"
                )));
            }
            crate::domain::PhoneNumber::parse(s, "86").map_err(D::Error::custom)
        })
        .collect()
}

/// `[sla]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaSettings {
    /// false: this instance runs no scheduler (another instance on the same database does, or
    /// a test drives the rounds itself).
    #[serde(default = "yes")]
    pub scheduler: bool,
    pub complaint: Policy,
    pub fault: Policy,
    pub inquiry: Policy,
    /// Longest time the scheduler sleeps without looking (another instance may have added a
    /// step; changes in this process wake it at once).
    #[serde(default = "default_idle")]
    pub max_idle: Span,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// The case's city when no prefix matches.
    #[serde(default = "default_city")]
    pub default_city: String,
    /// Number prefix (E.164, e.g. `+8620`, `+86755`, `+86138`) → city; the longest match wins.
    #[serde(default)]
    pub city_prefixes: BTreeMap<String, String>,
    /// Customer segments with their own policies (e.g. VIP lines answered within an hour).
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// Work hours of the tiers that do not work nights; their notices wait for them.
    #[serde(default)]
    pub calendar: calendar::Calendar,
}

fn yes() -> bool {
    true
}

fn default_idle() -> Span {
    Span(60_000)
}

fn default_city() -> String {
    "default".into()
}

impl SlaSettings {
    /// The policy of a category for a customer: their segment's, when they are in one that
    /// sets this category, else the default.
    pub fn policy(&self, c: Category, customer: &str) -> &Policy {
        self.segment_of(customer)
            .and_then(|s| s.policy(c))
            .unwrap_or_else(|| self.base(c))
    }

    /// The customer segment (`[[sla.segments]]`) a number or address is in: the first whose
    /// `match` list has a prefix of the number (`+86139`) or the address's domain (`@corp.cn`).
    pub fn segment_of(&self, customer: &str) -> Option<&Segment> {
        let customer = customer.to_ascii_lowercase();
        self.segments.iter().find(|s| {
            s.r#match.iter().any(|m| {
                let m = m.to_ascii_lowercase();
                if m.starts_with('@') {
                    customer.ends_with(&m)
                } else {
                    customer.starts_with(&m)
                }
            })
        })
    }

    /// The default policy of a category.
    pub fn base(&self, c: Category) -> &Policy {
        match c {
            Category::Complaint => &self.complaint,
            Category::Fault => &self.fault,
            Category::Inquiry => &self.inquiry,
        }
    }

    /// Start-up checks, naming the key and the reason.
    ///
    /// # Errors
    /// A policy whose deadlines or ladder are out of order, a tier outside 1–4.
    pub fn check(&self) -> Result<(), String> {
        let mut all: Vec<(String, &Policy)> = Category::ALL
            .iter()
            .map(|c| (format!("sla.{}", c.as_str()), self.base(*c)))
            .collect();
        for s in &self.segments {
            if s.name.is_empty()
                || s.r#match.is_empty()
                || s.r#match
                    .iter()
                    .any(|m| !(m.starts_with('+') || m.starts_with('@')) || m.len() < 2)
            {
                return Err(format!(
                    "sla.segments: segment {:?} needs a name and a match list of E.164 prefixes \
                     (\"+86139\") or email domains (\"@corp.cn\")",
                    s.name
                ));
            }
            for c in Category::ALL {
                if let Some(p) = s.policy(c) {
                    all.push((format!("sla.segments.{}.{}", s.name, c.as_str()), p));
                }
            }
        }
        for (key, p) in all {
            if p.answer_within.0 <= 0 || p.resolve_within < p.answer_within {
                return Err(format!("{key}: need 0 < answer_within <= resolve_within"));
            }
            if p.warn_before.0 < 0 || p.warn_before >= p.answer_within {
                return Err(format!(
                    "{key}.warn_before: must be shorter than answer_within"
                ));
            }
            let mut last = (Tier::WINDOW, 0);
            for r in &p.escalate {
                if r.tier == Tier::WINDOW {
                    return Err(format!("{key}.escalate: tier {} is not 2, 3 or 4", r.tier));
                }
                if r.tier <= last.0 || r.after.0 <= last.1 {
                    return Err(format!(
                        "{key}.escalate: the ladder is out of order at tier {} (tiers and \
                         times must both rise)",
                        r.tier
                    ));
                }
                if r.after > p.resolve_within {
                    return Err(format!(
                        "{key}.escalate: tier {} after {} h is past resolve_within",
                        r.tier,
                        r.after.hours()
                    ));
                }
                last = (r.tier, r.after.0);
            }
        }
        for c in &self.contacts {
            if c.email.is_empty() && c.sms.is_empty() {
                return Err(format!(
                    "sla.contacts: the tier {} contact has neither email nor sms",
                    c.tier
                ));
            }
        }
        self.calendar.check()?;
        if self.max_idle.0 < 1_000 {
            return Err("sla.max_idle: at least \"1s\"".into());
        }
        Ok(())
    }

    /// The city of a customer: the longest listed prefix of the number, else the default.
    pub fn city_of(&self, customer: &str) -> &str {
        self.city_prefixes
            .iter()
            .filter(|(p, _)| customer.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, c)| c.as_str())
            .unwrap_or(&self.default_city)
    }

    /// Who is told at `tier` about a case in `city`: the city's own contacts at that tier when
    /// there are any, else the tier's contacts without a city.
    pub fn contacts(&self, tier: Tier, city: &str) -> Vec<&Contact> {
        let at: Vec<&Contact> = self.contacts.iter().filter(|c| c.tier == tier).collect();
        let own: Vec<&Contact> = at
            .iter()
            .copied()
            .filter(|c| c.city.as_deref() == Some(city))
            .collect();
        if own.is_empty() {
            at.into_iter().filter(|c| c.city.is_none()).collect()
        } else {
            own
        }
    }
}

/// The step of a clock with no step left (`sla_clock.step`).
pub const CLOCK_DONE: &str = "done";

/// The `sla_clock` row's (step, due) for a clock's next step; `(CLOCK_DONE, None)` when no
/// step is left.
pub fn clock_row(next: Option<(Step, i64)>) -> (&'static str, Option<i64>) {
    next.map_or((CLOCK_DONE, None), |(s, d)| (s.as_str(), Some(d)))
}

/// A step on a case's clock. The discriminant is its bit in the clock's `fired` mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    AnswerWarn = 0,
    AnswerBreach = 1,
    Tier2 = 2,
    Tier3 = 3,
    Tier4 = 4,
    ResolveWarn = 5,
    ResolveBreach = 6,
    /// Not in any plan: tell the case's tier now (a customer asked for escalation, or a
    /// dissatisfied return visit reopened the case one tier up); then the plan goes on.
    TierNotice = 7,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::AnswerWarn,
        Step::AnswerBreach,
        Step::Tier2,
        Step::Tier3,
        Step::Tier4,
        Step::ResolveWarn,
        Step::ResolveBreach,
        Step::TierNotice,
    ];

    pub fn bit(self) -> i64 {
        1 << (self as i64)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::AnswerWarn => "answer_warning",
            Step::AnswerBreach => "answer_breach",
            Step::Tier2 => "tier_2",
            Step::Tier3 => "tier_3",
            Step::Tier4 => "tier_4",
            Step::ResolveWarn => "resolve_warning",
            Step::ResolveBreach => "resolve_breach",
            Step::TierNotice => "tier_notice",
        }
    }

    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Step, String> {
        Step::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown SLA step {s:?}"))
    }

    /// Steps about the first answer: moot once a person answered.
    pub fn is_answer(self) -> bool {
        matches!(self, Step::AnswerWarn | Step::AnswerBreach)
    }
}

/// Every step of a policy with its due instant, for a case opened at `opened_ms`.
pub fn plan(p: &Policy, opened_ms: i64) -> Vec<(Step, i64)> {
    let answer = opened_ms + p.answer_within.0;
    let resolve = opened_ms + p.resolve_within.0;
    let mut v = vec![(Step::AnswerBreach, answer), (Step::ResolveBreach, resolve)];
    // `warn_before = "0s"`: no warnings (they would fall on the breach itself).
    if p.warn_before.0 > 0 {
        v.push((Step::AnswerWarn, answer - p.warn_before.0));
        v.push((Step::ResolveWarn, resolve - p.warn_before.0));
    }
    for r in &p.escalate {
        let step = match r.tier {
            Tier::CITY => Step::Tier2,
            Tier::PROVINCE => Step::Tier3,
            _ => Step::Tier4,
        };
        v.push((step, opened_ms + r.after.0));
    }
    // Equal instants keep the order above (warning before breach).
    v.sort_by_key(|(s, due)| (*due, *s as i64));
    v
}

/// The clock of a case reopened at `now_ms` whose clock counts from `base_ms`: a new round from
/// the reopening when its resolution deadline has passed (the promise was broken once; the
/// customer gets an answer — a person's, given in the new round — and a resolution on the
/// clock, and the ladder is told again), else `None`: the clock goes on from `base_ms`, steps already past taken as done.
pub fn new_round(p: &Policy, base_ms: i64, now_ms: i64) -> Option<crate::store::Round> {
    (now_ms >= base_ms + p.resolve_within.0).then_some(crate::store::Round { base: now_ms })
}

/// The mask of the steps of a policy already past at `now_ms`: what a clock started late (a
/// case from before clocks existed, a reopened case) takes as done rather than firing late.
pub fn past_steps(p: &Policy, opened_ms: i64, now_ms: i64) -> i64 {
    plan(p, opened_ms)
        .into_iter()
        .filter(|(_, due)| *due <= now_ms)
        .fold(0, |m, (s, _)| m | s.bit())
}

/// The next step of a clock: the earliest step not taken yet; answer steps only while nobody
/// answered.
pub fn next_step(p: &Policy, opened_ms: i64, fired: i64, answered: bool) -> Option<(Step, i64)> {
    plan(p, opened_ms)
        .into_iter()
        .find(|(s, _)| fired & s.bit() == 0 && !(answered && s.is_answer()))
}

/// What a case looks like when one of its steps falls due.
#[derive(Debug, Clone)]
pub struct CaseNow {
    pub id: crate::domain::CaseId,
    pub category: Category,
    pub status: crate::domain::CaseStatus,
    pub tier: Tier,
    pub opened_ms: i64,
    pub answered: bool,
}

/// What a due step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub step: Step,
    /// The case's tier after the step (unchanged for warnings).
    pub tier: Tier,
    /// `case_events.kind`: `sla_warning`, `sla_breach`, `escalated`, `tier_notified` or
    /// `sla_skipped`.
    pub event: crate::domain::CaseEventKind,
    pub detail: String,
    /// `None`: the step passes silently (answered already, or the tier is already higher).
    pub notify_tier: Option<Tier>,
}

/// Decides what the due `step` does to the case. `None`: nothing, the step is moot (the case
/// is resolved or closed; the clock stops).
pub fn fire(case: &CaseNow, step: Step) -> Option<Fired> {
    if !case.status.is_active() {
        return None;
    }
    let quiet = |detail: String| Fired {
        step,
        tier: case.tier,
        event: crate::domain::CaseEventKind::SlaSkipped,
        detail,
        notify_tier: None,
    };
    Some(match step {
        Step::AnswerWarn | Step::AnswerBreach if case.answered => {
            quiet(format!("{}: answered in time", step.as_str()))
        }
        Step::AnswerWarn | Step::ResolveWarn => Fired {
            step,
            tier: case.tier,
            event: crate::domain::CaseEventKind::SlaWarning,
            detail: format!("{} at tier {}", step.as_str(), case.tier),
            notify_tier: Some(case.tier),
        },
        Step::AnswerBreach => {
            // A missed answer moves the case up one tier at once.
            let tier = case.tier.up();
            Fired {
                step,
                tier,
                event: crate::domain::CaseEventKind::SlaBreach,
                detail: format!("answer deadline missed; tier {} -> {tier}", case.tier),
                notify_tier: Some(tier),
            }
        }
        Step::ResolveBreach => Fired {
            step,
            tier: case.tier,
            event: crate::domain::CaseEventKind::SlaBreach,
            detail: format!("resolve deadline missed at tier {}", case.tier),
            notify_tier: Some(case.tier),
        },
        Step::TierNotice => Fired {
            step,
            tier: case.tier,
            event: crate::domain::CaseEventKind::TierNotified,
            detail: format!("tier {} told", case.tier),
            notify_tier: Some(case.tier),
        },
        Step::Tier2 | Step::Tier3 | Step::Tier4 => {
            let to = match step {
                Step::Tier2 => Tier::CITY,
                Step::Tier3 => Tier::PROVINCE,
                _ => Tier::NATIONAL,
            };
            if case.tier >= to {
                quiet(format!("{}: already at tier {}", step.as_str(), case.tier))
            } else {
                Fired {
                    step,
                    tier: to,
                    event: crate::domain::CaseEventKind::Escalated,
                    detail: format!("ladder: tier {} -> {to}", case.tier),
                    notify_tier: Some(to),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> crate::domain::Tier {
        crate::domain::Tier::new(n).unwrap()
    }

    const H: i64 = 3_600_000;

    fn complaint() -> Policy {
        Policy {
            answer_within: Span(3 * H),
            resolve_within: Span(72 * H),
            warn_before: Span(H / 2),
            escalate: vec![
                Rung {
                    tier: t(2),
                    after: Span(24 * H),
                },
                Rung {
                    tier: t(3),
                    after: Span(48 * H),
                },
                Rung {
                    tier: t(4),
                    after: Span(66 * H),
                },
            ],
        }
    }

    #[test]
    fn durations_parse_as_written_and_garbage_is_named() {
        assert_eq!(Span::parse("90s").unwrap().ms(), 90_000);
        assert_eq!(Span::parse("30m").unwrap().ms(), 1_800_000);
        assert_eq!(Span::parse("72h").unwrap().ms(), 72 * H);
        assert_eq!(Span::parse("2d").unwrap().ms(), 48 * H);
        for bad in ["3", "h", "3 hours", "-3h", "3H", "", "999999d"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_complaint_goes_warning_breach_tiers_warning_breach_in_time_order() {
        let steps: Vec<(Step, i64)> = plan(&complaint(), 0);
        assert_eq!(
            steps,
            vec![
                (Step::AnswerWarn, 5 * H / 2),
                (Step::AnswerBreach, 3 * H),
                (Step::Tier2, 24 * H),
                (Step::Tier3, 48 * H),
                (Step::Tier4, 66 * H),
                (Step::ResolveWarn, 72 * H - H / 2),
                (Step::ResolveBreach, 72 * H),
            ]
        );
    }

    #[test]
    fn no_warnings_without_warn_before() {
        let mut p = complaint();
        p.warn_before = Span(0);
        let steps: Vec<Step> = plan(&p, 0).into_iter().map(|(s, _)| s).collect();
        assert!(!steps.contains(&Step::AnswerWarn) && !steps.contains(&Step::ResolveWarn));
        assert_eq!(steps[0], Step::AnswerBreach);
    }

    #[test]
    fn the_next_step_skips_taken_steps_and_answer_steps_once_answered() {
        let p = complaint();
        assert_eq!(
            next_step(&p, 0, 0, false),
            Some((Step::AnswerWarn, 5 * H / 2))
        );
        let fired = Step::AnswerWarn.bit();
        assert_eq!(
            next_step(&p, 0, fired, false),
            Some((Step::AnswerBreach, 3 * H))
        );
        assert_eq!(next_step(&p, 0, 0, true), Some((Step::Tier2, 24 * H)));
        let all = Step::ALL.iter().fold(0, |m, s| m | s.bit());
        assert_eq!(next_step(&p, 0, all, false), None);
    }

    fn case(tier: Tier, answered: bool, status: &str) -> CaseNow {
        CaseNow {
            id: crate::domain::CaseId(1),
            category: Category::Complaint,
            status: crate::domain::CaseStatus::parse(status).unwrap(),
            tier,
            opened_ms: 0,
            answered,
        }
    }

    #[test]
    fn a_missed_answer_moves_one_tier_up_and_the_ladder_never_moves_down() {
        let f = fire(&case(t(1), false, "open"), Step::AnswerBreach).unwrap();
        assert_eq!(
            (f.tier, f.event, f.notify_tier),
            (t(2), crate::domain::CaseEventKind::SlaBreach, Some(t(2)))
        );
        let f = fire(&case(t(3), false, "open"), Step::Tier2).unwrap();
        assert_eq!((f.tier, f.notify_tier), (t(3), None));
        let f = fire(&case(t(2), true, "acknowledged"), Step::Tier3).unwrap();
        assert_eq!(
            (f.tier, f.event, f.notify_tier),
            (t(3), crate::domain::CaseEventKind::Escalated, Some(t(3)))
        );
        let f = fire(&case(t(4), false, "open"), Step::AnswerBreach).unwrap();
        assert_eq!(f.tier, t(4));
    }

    #[test]
    fn answered_cases_skip_answer_steps_and_resolved_cases_stop_the_clock() {
        let f = fire(&case(t(1), true, "acknowledged"), Step::AnswerWarn).unwrap();
        assert_eq!(f.notify_tier, None);
        assert!(fire(&case(t(1), false, "resolved"), Step::ResolveWarn).is_none());
        assert!(fire(&case(t(1), false, "closed"), Step::Tier2).is_none());
    }

    fn settings() -> SlaSettings {
        let t = r#"
            default_city = "guangzhou"
            city_prefixes = { "+8620" = "guangzhou", "+86755" = "shenzhen", "+86139" = "shenzhen" }
            [complaint]
            answer_within = "3h"
            resolve_within = "72h"
            warn_before = "30m"
            escalate = [{ tier = 2, after = "24h" }, { tier = 3, after = "48h" }]
            [fault]
            answer_within = "3h"
            resolve_within = "72h"
            warn_before = "30m"
            [inquiry]
            answer_within = "24h"
            resolve_within = "72h"
            warn_before = "1h"
            [[contacts]]
            tier = 2
            city = "shenzhen"
            email = ["sz@ops.test"]
            [[contacts]]
            tier = 2
            email = ["t2@ops.test"]
        "#;
        toml::from_str(t).unwrap()
    }

    #[test]
    fn a_contact_address_or_tier_that_does_not_parse_refuses_the_config() {
        for (bad, says) in [
            ("tier = 2\nemail = [\"ops at example.cn\"]", "whitespace"),
            (
                "tier = 2\nsms = [\"+86 138-ops\"]",
                "characters other than digits",
            ),
            ("tier = 2\nsms = [\"13800138000\"]", "international form"),
            (
                "tier = 5\nsms = [\"+8613800138000\"]",
                "tier 5 is not 1 to 4",
            ),
        ] {
            let e = toml::from_str::<Contact>(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let c: Contact = toml::from_str("tier = 3\nsms = [\"+86 138 0013 8000\"]").unwrap();
        assert_eq!(c.sms[0].as_str(), "+8613800138000");
    }

    #[test]
    fn cities_by_longest_prefix_and_contacts_by_tier_and_city() {
        let s = settings();
        s.check().unwrap();
        assert_eq!(s.city_of("+8675512345678"), "shenzhen");
        assert_eq!(s.city_of("+8613912345678"), "shenzhen");
        assert_eq!(s.city_of("+8613812345678"), "guangzhou");
        assert_eq!(s.contacts(t(2), "shenzhen")[0].email, ["sz@ops.test"]);
        assert_eq!(s.contacts(t(2), "guangzhou")[0].email, ["t2@ops.test"]);
        assert!(s.contacts(t(3), "guangzhou").is_empty());
    }

    #[test]
    fn a_ladder_out_of_order_or_a_bad_duration_is_refused_naming_the_key() {
        let mut s = settings();
        s.complaint.escalate = vec![
            Rung {
                tier: t(3),
                after: Span(24 * H),
            },
            Rung {
                tier: t(2),
                after: Span(48 * H),
            },
        ];
        assert!(s.check().unwrap_err().contains("sla.complaint.escalate"));
        let mut s = settings();
        s.fault.warn_before = Span(4 * H);
        assert!(s.check().unwrap_err().contains("sla.fault.warn_before"));
        let bad = toml::from_str::<Policy>(
            "answer_within = \"3 hours\"\nresolve_within = \"72h\"\nwarn_before = \"30m\"",
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("3 hours"), "{bad}");
    }
}
