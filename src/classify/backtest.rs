//! Replaying stored messages through a candidate rule set: which categories would change.

use super::Classifier;
use crate::store::StoredText;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub message_id: i64,
    pub old: String,
    pub new: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub replayed: usize,
    pub changed: usize,
    /// `"old -> new"` → count.
    pub transitions: BTreeMap<String, usize>,
    pub changes: Vec<Change>,
    pub candidate_version: String,
}

/// Classifies each stored message (subject and body, as intake does) with `candidate`.
pub fn backtest(candidate: &Classifier, msgs: &[StoredText]) -> BacktestReport {
    let mut changes = Vec::new();
    let mut transitions = BTreeMap::new();
    for m in msgs {
        let text = match &m.subject {
            Some(s) if !s.is_empty() => format!("{s}\n{}", m.body),
            _ => m.body.clone(),
        };
        let new = candidate.category(&text);
        let old = m.category.clone().unwrap_or_else(|| "none".into());
        if old != new.as_str() {
            *transitions.entry(format!("{old} -> {new}")).or_insert(0) += 1;
            changes.push(Change {
                message_id: m.id.get(),
                old,
                new: new.as_str().to_string(),
                text: m.body.chars().take(200).collect(),
            });
        }
    }
    BacktestReport {
        replayed: msgs.len(),
        changed: changes.len(),
        transitions,
        changes,
        candidate_version: candidate.version().to_string(),
    }
}

impl BacktestReport {
    pub fn render(&self) -> String {
        let mut o = String::new();
        for c in &self.changes {
            o.push_str(&format!(
                "#{:<8} {:>9} -> {:<9}  {}\n",
                c.message_id,
                c.old,
                c.new,
                c.text.replace('\n', " ")
            ));
        }
        o.push_str(&format!(
            "\nreplayed {} messages with rules {}; {} would change\n",
            self.replayed, self.candidate_version, self.changed
        ));
        for (t, n) in &self.transitions {
            o.push_str(&format!("  {t}: {n}\n"));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_changes_and_counts_transitions() {
        let c = Classifier::from_toml(
            "fallback = \"inquiry\"\n[[rules]]\nid = \"c\"\ncategory = \"complaint\"\nkeywords = [\"complain\"]\n",
            None,
        )
        .unwrap();
        let m = |id, body: &str, cat: &str| StoredText {
            id: crate::domain::MessageId(id),
            subject: None,
            body: body.into(),
            category: Some(cat.into()),
            rules_version: None,
            created_at: 0,
        };
        let r = backtest(
            &c,
            &[
                m(1, "I complain", "fault"),
                m(2, "hello", "inquiry"),
                m(3, "complain!", "inquiry"),
            ],
        );
        assert_eq!((r.replayed, r.changed), (3, 2));
        assert_eq!(r.transitions["fault -> complaint"], 1);
        assert_eq!(r.transitions["inquiry -> complaint"], 1);
        assert!(r.render().contains("#1"));
    }
}
