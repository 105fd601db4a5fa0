//! The case lifecycle: which action a case in a status allows, and the status it leads to.
//! Pure; the API checks here before it asks the store (which applies a change only if the case
//! is still in the status seen, so of two agents acting at once one wins and the other gets
//! 409).
//!
//! ```text
//! open ──reply/contact──> acknowledged ──start──> in_progress ──resolve──> resolved ──close──> closed
//!   │                         │  (answered)                                │  │
//!   └──start──> in_progress   └──────────────resolve───────────────────────┘  └──reopen──> open / acknowledged
//!   └──────────────────────resolve─────────────────────────────────────────┘     (from closed too)
//! ```
//!
//! `acknowledged` is the issue's "answered": a person replied or logged a contact (the automatic
//! ack does not count). A customer's message about a closed case opens a new case linked to it;
//! a dissatisfied return-visit answer reopens a resolved case one tier up (`crate::intake`).

pub mod visit;

use crate::domain::Category;
use crate::sla::Span;
use crate::sla::calendar::Window;
use serde::Deserialize;

/// `[cases]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSettings {
    /// The codes an agent picks from when resolving (`POST /cases/{id}/resolve` `{code}`).
    pub resolution_codes: Vec<String>,
    pub return_visit: ReturnVisit,
}

/// `[cases.return_visit]`: the survey a resolved case gets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnVisit {
    pub enabled: bool,
    /// Categories whose resolved cases get a visit.
    pub categories: Vec<Category>,
    /// After the resolution, then moved out of `quiet_hours`.
    pub delay: Span,
    /// An unanswered visit closes the case after this.
    pub answer_within: Span,
    /// At most one visit per customer in this long; a case resolved inside it closes unasked.
    pub once_per: Span,
    /// No visit goes out in this local window.
    pub quiet_hours: Window,
}

impl CaseSettings {
    /// # Errors
    /// Naming the key and the reason.
    pub fn check(&self) -> Result<(), String> {
        if self.resolution_codes.is_empty() {
            return Err("cases.resolution_codes: list at least one code".into());
        }
        if let Some(c) = self.resolution_codes.iter().find(|c| {
            c.is_empty()
                || c.len() > 40
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        }) {
            return Err(format!(
                "cases.resolution_codes: {c:?}: use 1 to 40 of a-z, 0-9 and _"
            ));
        }
        let v = &self.return_visit;
        if v.answer_within.ms() <= 0 {
            return Err("cases.return_visit.answer_within: must be longer than 0s".into());
        }
        Ok(())
    }

    /// When the visit of a case resolved at `resolved_ms` goes out, or `None` (no visit).
    pub fn visit_due(
        &self,
        category: Category,
        zone: chrono_tz::Tz,
        resolved_ms: i64,
    ) -> Option<i64> {
        let v = &self.return_visit;
        if !v.enabled || !v.categories.contains(&category) {
            return None;
        }
        Some(v.quiet_hours.next_outside(zone, resolved_ms + v.delay.ms()))
    }
}

/// A return-visit answer, on the operator's 3-point scale (`1` satisfied, `2` neutral, `3`
/// dissatisfied; or the words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    Satisfied,
    Neutral,
    Dissatisfied,
}

impl Rating {
    /// From the shared survey parser's normalised answer of a return visit: a digit is the
    /// visit's own scale (1 satisfied … 3 dissatisfied); words are what they say.
    pub fn of_visit_answer(answer: &str) -> Option<Rating> {
        match answer {
            "1" | "satisfied" | "very_satisfied" | "yes" => Some(Rating::Satisfied),
            "2" | "neutral" => Some(Rating::Neutral),
            "3" | "dissatisfied" | "very_dissatisfied" | "no" => Some(Rating::Dissatisfied),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Satisfied => "satisfied",
            Rating::Neutral => "neutral",
            Rating::Dissatisfied => "dissatisfied",
        }
    }
}

/// What an agent can do to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reply,
    Contact,
    Note,
    Assign,
    Escalate,
    Resolve,
    Close,
    Reopen,
    /// An agent starts working on the case (`in_progress`).
    Start,
}

/// The statuses a case can be in, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    /// Answered by a person.
    Acknowledged,
    InProgress,
    Resolved,
    Closed,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 5] = [
        CaseStatus::Open,
        CaseStatus::Acknowledged,
        CaseStatus::InProgress,
        CaseStatus::Resolved,
        CaseStatus::Closed,
    ];
    /// Still being worked on: its clock runs, new messages join it.
    pub const ACTIVE: [CaseStatus; 3] = [
        CaseStatus::Open,
        CaseStatus::Acknowledged,
        CaseStatus::InProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Acknowledged => "acknowledged",
            CaseStatus::InProgress => "in_progress",
            CaseStatus::Resolved => "resolved",
            CaseStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// `(status = 'open' OR …)` over [`CaseStatus::ACTIVE`], `status` prefixed by `alias`
    /// (`"c."` or empty): the predicate of the partial indexes `cases_customer_active`
    /// (migration 0019) and `cases_active_due` (0020), which a query must repeat word for
    /// word for SQLite to use them. Equalities, not
    /// IN: SQLite builds a temporary table for an IN list of more than two constants.
    pub fn active_predicate(alias: &str) -> String {
        crate::domain::any_of(
            &format!("{alias}status"),
            CaseStatus::ACTIVE.map(|s| s.as_str()),
        )
    }

    pub fn is_active(self) -> bool {
        CaseStatus::ACTIVE.contains(&self)
    }
}

// `Display` and `PartialEq<&str>` come with its column impl (`text_column!` in `domain`).

/// What an entry of a case's history records (`case_events.kind`; the JSON of the case view
/// has the same text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseEventKind {
    /// A customer's reply that raised the category, or an agent's reply.
    Reply,
    /// A tier up: the customer asked, the clock's ladder, or by hand.
    Escalated,
    /// A new case about a closed one (on both cases).
    Linked,
    Reopened,
    Started,
    Note,
    Assigned,
    Contact,
    Recategorized,
    Resolved,
    Closed,
    /// The return-visit survey went out.
    ReturnVisit,
    /// The case's tier was told now (not a step of its plan).
    TierNotified,
    SlaWarning,
    SlaBreach,
    /// A due step passed silently (answered already, or the tier already higher).
    SlaSkipped,
}

impl CaseEventKind {
    pub const ALL: [CaseEventKind; 16] = [
        CaseEventKind::Reply,
        CaseEventKind::Escalated,
        CaseEventKind::Linked,
        CaseEventKind::Reopened,
        CaseEventKind::Started,
        CaseEventKind::Note,
        CaseEventKind::Assigned,
        CaseEventKind::Contact,
        CaseEventKind::Recategorized,
        CaseEventKind::Resolved,
        CaseEventKind::Closed,
        CaseEventKind::ReturnVisit,
        CaseEventKind::TierNotified,
        CaseEventKind::SlaWarning,
        CaseEventKind::SlaBreach,
        CaseEventKind::SlaSkipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseEventKind::Reply => "reply",
            CaseEventKind::Escalated => "escalated",
            CaseEventKind::Linked => "linked",
            CaseEventKind::Reopened => "reopened",
            CaseEventKind::Started => "started",
            CaseEventKind::Note => "note",
            CaseEventKind::Assigned => "assigned",
            CaseEventKind::Contact => "contact",
            CaseEventKind::Recategorized => "recategorized",
            CaseEventKind::Resolved => "resolved",
            CaseEventKind::Closed => "closed",
            CaseEventKind::ReturnVisit => "return_visit",
            CaseEventKind::TierNotified => "tier_notified",
            CaseEventKind::SlaWarning => "sla_warning",
            CaseEventKind::SlaBreach => "sla_breach",
            CaseEventKind::SlaSkipped => "sla_skipped",
        }
    }

    pub fn parse(s: &str) -> Option<CaseEventKind> {
        CaseEventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reply => "reply",
            Action::Contact => "contact",
            Action::Note => "note",
            Action::Assign => "assign",
            Action::Escalate => "escalate",
            Action::Resolve => "resolve",
            Action::Close => "close",
            Action::Reopen => "reopen",
            Action::Start => "start",
        }
    }
}

/// The actions a case in `status` allows.
pub fn allowed(status: CaseStatus) -> &'static [Action] {
    use Action::*;
    match status {
        CaseStatus::Open | CaseStatus::Acknowledged => {
            &[Reply, Contact, Note, Assign, Escalate, Start, Resolve]
        }
        CaseStatus::InProgress => &[Reply, Contact, Note, Assign, Escalate, Resolve],
        CaseStatus::Resolved => &[Note, Close, Reopen],
        CaseStatus::Closed => &[Note, Reopen],
    }
}

/// The status `action` leads to from `status`; `None`: not allowed. `answered`: a person has
/// answered the case before (a reopened case goes back to `acknowledged` then).
pub fn target(status: CaseStatus, action: Action, answered: bool) -> Option<CaseStatus> {
    if !allowed(status).contains(&action) {
        return None;
    }
    Some(match action {
        Action::Reply | Action::Contact if status == CaseStatus::InProgress => {
            CaseStatus::InProgress
        }
        Action::Reply | Action::Contact => CaseStatus::Acknowledged,
        Action::Start => CaseStatus::InProgress,
        Action::Resolve => CaseStatus::Resolved,
        Action::Close => CaseStatus::Closed,
        Action::Reopen if answered => CaseStatus::Acknowledged,
        Action::Reopen => CaseStatus::Open,
        Action::Note | Action::Assign | Action::Escalate => status,
    })
}

/// What a move from `from` to `to` does to the case's `resolved_at`: `Some(Some(now))` when
/// it becomes resolved, `Some(None)` (cleared) when it is active again, `None` (kept)
/// otherwise: a note on a resolved case, or its close, keeps the time it was resolved (the
/// SLA report judges the resolve by it).
pub fn resolved_at(from: CaseStatus, to: CaseStatus, now_ms: i64) -> Option<Option<i64>> {
    match to {
        CaseStatus::Resolved if from != CaseStatus::Resolved => Some(Some(now_ms)),
        s if s.is_active() => Some(None),
        _ => None,
    }
}

/// The `resolved` event's detail: who, the resolution code, the note.
pub fn resolve_detail(by: &str, code: Option<&str>, note: Option<&str>) -> String {
    let mut detail = format!("by {by}");
    if let Some(c) = code {
        detail.push_str(&format!(" [{c}]"));
    }
    if let Some(n) = note {
        detail.push_str(&format!(": {n}"));
    }
    detail
}

/// The one status a reply (or a logged contact) changes by itself, and what it becomes: an
/// open case is acknowledged; any other keeps its status (`target` for `Action::Reply`).
pub const REPLY_MOVES: (CaseStatus, CaseStatus) = (CaseStatus::Open, CaseStatus::Acknowledged);

/// Where a case opened about a closed one starts: open, at the service window, with its own
/// clock.
pub const LINKED_START: (CaseStatus, crate::domain::Tier) =
    (CaseStatus::Open, crate::domain::Tier::WINDOW);

/// The `linked` events of a new case opened by `by` about closed case `old_id`: (case,
/// detail) for the new case and for the old one.
pub fn link_details(old_id: i64, new_id: i64, by: &str) -> [(i64, String); 2] {
    let (old_no, new_no) = (
        crate::domain::CaseId(old_id).number(),
        crate::domain::CaseId(new_id).number(),
    );
    [
        (new_id, format!("opened by {by} about closed case {old_no}")),
        (
            old_id,
            format!("{by} wrote after the close: new case {new_no}"),
        ),
    ]
}

/// "open allows reply, contact, …" for a 409.
pub fn allowed_list(status: CaseStatus) -> String {
    allowed(status)
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolving_stamps_reopening_clears_closing_keeps_the_resolve_time() {
        use CaseStatus::*;
        assert_eq!(resolved_at(InProgress, Resolved, 7), Some(Some(7)));
        for s in CaseStatus::ACTIVE {
            assert_eq!(resolved_at(Resolved, s, 7), Some(None), "{s}");
            assert_eq!(resolved_at(s, s, 7), Some(None), "{s}");
        }
        // A note on a resolved case keeps when it was resolved; so does its close.
        assert_eq!(resolved_at(Resolved, Resolved, 7), None);
        assert_eq!(resolved_at(Resolved, Closed, 7), None);
        assert_eq!(resolved_at(Closed, Closed, 7), None);
        assert_eq!(
            resolve_detail("agent-1", Some("fixed"), Some("line repaired")),
            "by agent-1 [fixed]: line repaired"
        );
        assert_eq!(resolve_detail("agent-1", None, None), "by agent-1");
        assert_eq!(
            link_details(42, 43, "agent-2"),
            [
                (
                    43,
                    "opened by agent-2 about closed case SB00000042".to_string()
                ),
                (
                    42,
                    "agent-2 wrote after the close: new case SB00000043".to_string()
                ),
            ]
        );
        assert_eq!(
            LINKED_START,
            (CaseStatus::Open, crate::domain::Tier::WINDOW)
        );
    }

    #[test]
    fn each_status_allows_its_actions_and_leads_where_it_should() {
        use CaseStatus::*;
        assert_eq!(target(Open, Action::Resolve, false), Some(Resolved));
        assert_eq!(
            target(Acknowledged, Action::Assign, true),
            Some(Acknowledged)
        );
        assert_eq!(target(Resolved, Action::Close, true), Some(Closed));
        assert_eq!(target(Resolved, Action::Reopen, true), Some(Acknowledged));
        assert_eq!(target(Closed, Action::Reopen, false), Some(Open));
        assert_eq!(target(Open, Action::Close, false), None, "resolve first");
        assert_eq!(target(Closed, Action::Assign, false), None);
        assert_eq!(target(Resolved, Action::Reply, false), None);
        assert_eq!(allowed_list(Resolved), "note, close, reopen");
        assert_eq!(target(Acknowledged, Action::Start, true), Some(InProgress));
        assert_eq!(target(InProgress, Action::Reply, true), Some(InProgress));
        assert_eq!(target(InProgress, Action::Start, true), None);
        assert_eq!(target(InProgress, Action::Resolve, true), Some(Resolved));
        assert!(InProgress.is_active() && !Resolved.is_active());
        assert_eq!(CaseStatus::parse("bogus"), None);
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.as_str()), Some(s));
        }
    }
}
