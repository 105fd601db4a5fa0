//! The case lifecycle: which action a case in a status allows, and the status it leads to.
//! Pure; the API checks here before it asks the store (which applies a change only if the case
//! is still in the status seen, so of two agents acting at once one wins and the other gets
//! 409).
//!
//! ```text
//! open ──reply/contact──> acknowledged ──resolve──> resolved ──close──> closed
//!   └──────────────resolve──────────────────────────┘   │ └──reopen──> open / acknowledged
//!                                                       └──reopen (from closed too)
//! ```

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
        }
    }
}

/// The actions a case in `status` allows.
pub fn allowed(status: &str) -> &'static [Action] {
    use Action::*;
    match status {
        "open" | "acknowledged" => &[Reply, Contact, Note, Assign, Escalate, Resolve],
        "resolved" => &[Note, Close, Reopen],
        "closed" => &[Note, Reopen],
        _ => &[Note],
    }
}

/// The status `action` leads to from `status`; `None`: not allowed. `answered`: a person has
/// answered the case before (a reopened case goes back to `acknowledged` then).
pub fn target(status: &str, action: Action, answered: bool) -> Option<&'static str> {
    if !allowed(status).contains(&action) {
        return None;
    }
    Some(match action {
        Action::Reply | Action::Contact => "acknowledged",
        Action::Resolve => "resolved",
        Action::Close => "closed",
        Action::Reopen if answered => "acknowledged",
        Action::Reopen => "open",
        Action::Note | Action::Assign | Action::Escalate => match status {
            "open" => "open",
            "acknowledged" => "acknowledged",
            "resolved" => "resolved",
            _ => "closed",
        },
    })
}

/// "open allows reply, contact, …" for a 409.
pub fn allowed_list(status: &str) -> String {
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
    fn each_status_allows_its_actions_and_leads_where_it_should() {
        assert_eq!(target("open", Action::Resolve, false), Some("resolved"));
        assert_eq!(
            target("acknowledged", Action::Assign, true),
            Some("acknowledged")
        );
        assert_eq!(target("resolved", Action::Close, true), Some("closed"));
        assert_eq!(
            target("resolved", Action::Reopen, true),
            Some("acknowledged")
        );
        assert_eq!(target("closed", Action::Reopen, false), Some("open"));
        assert_eq!(target("open", Action::Close, false), None, "resolve first");
        assert_eq!(target("closed", Action::Assign, false), None);
        assert_eq!(target("resolved", Action::Reply, false), None);
        assert_eq!(allowed_list("resolved"), "note, close, reopen");
    }
}
