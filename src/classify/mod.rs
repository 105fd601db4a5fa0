//! The keyword classifier: the rules file model (`config/rules.toml`, serde with
//! `deny_unknown_fields`), its compiled form and [`Classifier::classify`], a pure function from
//! text to a category with the evidence for it.
//!
//! Compiled form: one Aho-Corasick automaton over every keyword, negation phrase and pattern
//! *trigger* (the literals every match of a pattern starts with, extracted by `regex-syntax`).
//! One scan finds them all; a pattern is then searched only where one of its triggers starts,
//! anchored there, and a pattern that is a finite set of literals is matched by the scan alone.
//! Patterns without usable triggers are searched one by one, or by a `RegexSet` when there are
//! many.
//!
//! Layout: `mod.rs` the compiled form's types ([`Classifier`] and what it holds); `model.rs`
//! the rules file (serde types, the built-in [`DEFAULT_RULES`]); `compile.rs` builds the
//! compiled form and names what is wrong with a rules file ([`RulesError`]); `scan.rs` the
//! matching, scoring and explanations ([`Classifier::classify`], [`Classifier::category`]);
//! `intents.rs` whole-message intents, self-service queries and [`survey_answer`];
//! `normalize` folds text (full-width → half-width, case, listed Traditional → Simplified
//! variants, whitespace) keeping a map back to the original character positions; `eval`
//! metrics on a labeled set, `backtest` stored messages through candidate rules, `live` the
//! stored rule versions.

mod backtest;
mod compile;
pub mod eval;
mod intents;
pub mod learned;
pub mod live;
mod model;
mod normalize;
mod scan;
pub mod suggest;

pub use backtest::{BacktestReport, backtest};
pub use compile::RulesError;
pub use intents::survey_answer;
pub use model::{Costs, DEFAULT_RULES, IntentDefs, ModelDef, NegationDef, RuleDef, RulesFile};
pub use normalize::{FoldTable, Folded};
pub use scan::{Classification, Hit, ModelOpinion};

use aho_corasick::{dfa, nfa};
use regex::RegexSet;
use regex_automata::meta;
use std::collections::HashSet;
use std::sync::Arc;

/// Text beyond this many characters is not classified (the message is still stored whole).
pub const MAX_CLASSIFY_CHARS: usize = 4096;

/// The first [`MAX_CLASSIFY_CHARS`] characters of `text` (a text of no more bytes than that
/// is returned without counting its characters).
#[inline]
fn clip(text: &str) -> &str {
    if text.len() <= MAX_CLASSIFY_CHARS {
        return text;
    }
    match text.char_indices().nth(MAX_CLASSIFY_CHARS) {
        Some((b, _)) => &text[..b],
        None => text,
    }
}

#[derive(Debug, Clone, Copy)]
enum Term {
    /// `slot` numbers the keyword across rules: a keyword and its aliases share it, so
    /// they count once together.
    Keyword {
        rule: usize,
        kw: usize,
        slot: u32,
    },
    Negation {
        neg: usize,
    },
    /// A literal every match of some patterns begins with: `trigger_lists[first..first+len]`
    /// are those patterns (indices into `patterns`).
    Trigger {
        first: u32,
        len: u32,
    },
}

/// The Aho-Corasick automaton over keywords, negation phrases and pattern triggers.
enum Scanner {
    Dfa(dfa::DFA),
    Nfa(nfa::contiguous::NFA),
}

/// One compiled pattern. When every match of it starts with one of a few literals (its
/// triggers), the Aho-Corasick scan finds the only places worth an anchored search; the
/// others go into the `RegexSet` run over the whole text.
struct Pattern {
    rule: usize,
    /// Index in the rule's `patterns`.
    index: usize,
    re: meta::Regex,
    /// The same pattern as a small anchored DFA, when it builds within
    /// [`compile::ANCHORED_DFA_LIMIT`]: a search at a trigger is then a walk over a few
    /// bytes, without the regex engine's per-search set-up.
    anchored: Option<regex_automata::dfa::dense::DFA<Vec<u32>>>,
    /// Its triggers are whole matches: a trigger hit is a match, no search needed.
    exact: bool,
}

/// The compiled rule set. Cheap to share (`Arc`), immutable; a new version is a new value.
pub struct Classifier {
    source: RulesFile,
    version: String,
    fold: FoldTable,
    ac: Option<Scanner>,
    terms: Vec<Term>,
    folded_keywords: Vec<Vec<String>>,
    /// The patterns that have no trigger literals, searched together when there are many.
    set: Option<RegexSet>,
    /// Index in `patterns` of each regex in `set`.
    set_patterns: Vec<usize>,
    patterns: Vec<Pattern>,
    trigger_lists: Vec<u32>,
    tie_rank: [usize; 3],
    fees: HashSet<String>,
    points: HashSet<String>,
    progress: Vec<String>,
    opt_out: HashSet<String>,
    opt_in: HashSet<String>,
    escalate: Vec<String>,
    /// The learned second opinion, when the rules file has a `[model]`.
    model: Option<Arc<learned::Model>>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("version", &self.version)
            .field("rules", &self.source.rules.len())
            .finish()
    }
}

impl Classifier {
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Names this rule set by its stored version (`v3`) instead of its content hash.
    pub fn set_version(&mut self, v: String) {
        self.version = v;
    }

    pub fn rules(&self) -> &RulesFile {
        &self.source
    }

    /// The learned model, if the rules file has one.
    pub fn model(&self) -> Option<&Arc<learned::Model>> {
        self.model.as_ref()
    }

    /// The same rules with another model (or none): k-fold evaluation, rules-alone figures.
    pub fn with_model(&self, model: Option<Arc<learned::Model>>) -> Classifier {
        let mut c = Classifier::compile_rules(self.source.clone(), self.version.clone())
            .expect("a compiled rules file compiles again");
        c.model = model;
        c
    }

    /// Folds a text the way the rules see it.
    pub fn fold_text(&self, text: &str) -> String {
        let mut s = String::new();
        self.fold.fold_into(text, &mut s);
        s
    }

    /// The folded keywords of each rule (for eval reports and benchmarks).
    pub fn folded_keywords(&self) -> &[Vec<String>] {
        &self.folded_keywords
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const RULES: &str = r#"
fallback = "inquiry"
tie_break = ["complaint", "fault", "inquiry"]
[variants]
"訴" = "诉"
"網" = "网"
[[rules]]
id = "complaint.zh"
category = "complaint"
weight = 3.0
keywords = ["投诉", "complain"]
[[rules]]
id = "fault.zh"
category = "fault"
weight = 2.0
keywords = ["断网", "没信号", "no signal"]
patterns = ['网络?(很|太)?慢']
[[rules]]
id = "inquiry.zh"
category = "inquiry"
weight = 1.0
keywords = ["套餐", "多少钱"]
[[negations]]
id = "complaint.neg"
category = "complaint"
phrases = ["不是投诉", "not a complaint"]
"#;

    pub(super) fn c() -> Classifier {
        Classifier::from_toml(RULES, None).unwrap()
    }
}
