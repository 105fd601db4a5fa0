//! The keyword classifier: the rules file model (`config/rules.toml`, serde with
//! `deny_unknown_fields`), its compiled form (one Aho-Corasick automaton for every keyword and
//! negation phrase, one `RegexSet` for every pattern) and [`Classifier::classify`], a pure
//! function from text to a category with the evidence for it.
//!
//! Layout: `normalize` folds text (full-width → half-width, case, listed Traditional →
//! Simplified variants, whitespace) keeping a map back to the original character positions.

mod backtest;
pub mod eval;
pub mod live;

pub use backtest::{BacktestReport, backtest};
mod normalize;

pub use normalize::{FoldTable, Folded};

use crate::domain::{CaseId, Category, Intent, Query};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Largest compiled size of one regex and of the whole set; larger patterns are refused.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
const REGEX_SET_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// Whole-message intent words (opt-out, survey answers, fees...) are at most this long.
const MAX_WORD_BYTES: usize = 256;
/// Text beyond this many characters is not classified (the message is still stored whole).
pub const MAX_CLASSIFY_CHARS: usize = 4096;

/// The rules file as ops write it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Category given when no rule matches.
    pub fallback: Category,
    /// Order that breaks equal scores; categories not listed come last.
    #[serde(default = "default_tie_break")]
    pub tie_break: Vec<Category>,
    /// Single characters folded before matching (Traditional → Simplified and the like).
    #[serde(default)]
    pub variants: BTreeMap<String, String>,
    #[serde(default)]
    pub rules: Vec<RuleDef>,
    #[serde(default)]
    pub negations: Vec<NegationDef>,
    /// Words that make a whole message an intent instead of a case.
    #[serde(default)]
    pub intents: IntentDefs,
}

fn default_tie_break() -> Vec<Category> {
    vec![Category::Complaint, Category::Fault, Category::Inquiry]
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Unique id, reported in explanations and stored with classifications.
    pub id: String,
    pub category: Category,
    /// Added once per distinct keyword or pattern of this rule that matches.
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Rust regex syntax, matched against the folded text.
    #[serde(default)]
    pub patterns: Vec<String>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NegationDef {
    pub id: String,
    pub category: Category,
    /// A keyword hit of `category` inside a matched phrase does not count ("不是投诉").
    pub phrases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntentDefs {
    /// Whole-message words (punctuation and spaces ignored) that opt the sender out.
    #[serde(default = "default_opt_out")]
    pub opt_out: Vec<String>,
    #[serde(default = "default_opt_in")]
    pub opt_in: Vec<String>,
    /// Phrases anywhere in the message asking for escalation.
    #[serde(default = "default_escalate")]
    pub escalate: Vec<String>,
    /// Whole-message self-service queries for fees / balance.
    #[serde(default = "default_fees")]
    pub fees: Vec<String>,
    /// Whole-message self-service queries for loyalty points.
    #[serde(default = "default_points")]
    pub points: Vec<String>,
    /// Words that, next to a case number (SB00000042), ask for its progress.
    #[serde(default = "default_progress")]
    pub progress: Vec<String>,
}

impl Default for IntentDefs {
    fn default() -> Self {
        IntentDefs {
            opt_out: default_opt_out(),
            opt_in: default_opt_in(),
            escalate: default_escalate(),
            fees: default_fees(),
            points: default_points(),
            progress: default_progress(),
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn default_opt_out() -> Vec<String> {
    strings(&[
        "TD",
        "T",
        "R",
        "N",
        "退订",
        "退定",
        "STOP",
        "UNSUBSCRIBE",
        "取消订阅",
    ])
}
fn default_opt_in() -> Vec<String> {
    strings(&["START", "恢复", "UNSTOP"])
}
fn default_fees() -> Vec<String> {
    strings(&[
        "话费",
        "查话费",
        "话费查询",
        "查询话费",
        "余额",
        "查余额",
        "余额查询",
        "查询余额",
        "账单",
        "查账单",
        "本月话费",
        "cxye",
        "cxhf",
        "balance",
        "bill",
        "my bill",
        "fees",
    ])
}
fn default_points() -> Vec<String> {
    strings(&[
        "积分",
        "查积分",
        "积分查询",
        "查询积分",
        "我的积分",
        "points",
        "my points",
    ])
}
fn default_progress() -> Vec<String> {
    strings(&[
        "进度",
        "查询",
        "状态",
        "怎么样了",
        "進度",
        "progress",
        "status",
    ])
}
fn default_escalate() -> Vec<String> {
    strings(&["升级处理", "要求升级", "越级投诉", "escalate"])
}

/// One piece of evidence for a category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub rule_id: String,
    pub category: Category,
    /// The keyword or pattern as written in the rules file.
    pub term: String,
    /// What matched, as it stands in the original text.
    pub matched: String,
    /// Character offsets (not bytes) into the original text, end exclusive.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub category: Category,
    pub intent: Intent,
    /// Score per category, in the order complaint, fault, inquiry.
    pub scores: BTreeMap<Category, f64>,
    pub hits: Vec<Hit>,
    /// Negated hits, reported so ops see why a keyword did not count.
    pub negated: Vec<Hit>,
    pub rules_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("rules file{at}: {reason}")]
    Parse { at: String, reason: String },
    #[error("rule {rule_id:?}: {reason}")]
    Rule { rule_id: String, reason: String },
}

#[derive(Debug, Clone, Copy)]
enum Term {
    Keyword { rule: usize, kw: usize },
    Negation { neg: usize },
}

/// The compiled rule set. Cheap to share (`Arc`), immutable; a new version is a new value.
pub struct Classifier {
    source: RulesFile,
    version: String,
    fold: FoldTable,
    ac: Option<AhoCorasick>,
    terms: Vec<Term>,
    folded_keywords: Vec<Vec<String>>,
    set: Option<RegexSet>,
    /// (rule index, pattern index) per regex in `set`, and the regex itself for positions.
    regexes: Vec<(usize, usize, Regex)>,
    tie_rank: [usize; 3],
    fees: HashSet<String>,
    points: HashSet<String>,
    progress: Vec<String>,
    opt_out: HashSet<String>,
    opt_in: HashSet<String>,
    escalate: Vec<String>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("version", &self.version)
            .field("rules", &self.source.rules.len())
            .finish()
    }
}

/// The rules shipped with switchboard (a copy of `config/rules.toml`).
pub const DEFAULT_RULES: &str = include_str!("../../config/rules.toml");

impl Classifier {
    /// The built-in rule set.
    ///
    /// # Panics
    /// Never in a released build: a unit test compiles the built-in rules.
    pub fn builtin() -> Classifier {
        Classifier::from_toml(DEFAULT_RULES, None).expect("built-in rules compile")
    }

    /// Reads and compiles a rules file.
    ///
    /// # Errors
    /// Unreadable file, invalid UTF-8, TOML errors with line and column, unknown keys, bad
    /// rules (named by id).
    pub fn from_path(path: &Path) -> Result<Classifier, RulesError> {
        let bytes = std::fs::read(path).map_err(|e| RulesError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
            RulesError::Read {
                path: path.display().to_string(),
                reason: format!("invalid UTF-8 at line {line}"),
            }
        })?;
        Classifier::from_toml(&text, Some(&path.display().to_string()))
    }

    /// Parses and compiles rules from TOML text.
    ///
    /// # Errors
    /// As [`Classifier::from_path`].
    pub fn from_toml(text: &str, origin: Option<&str>) -> Result<Classifier, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Parse {
            at: origin.map(|o| format!(" {o}")).unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let version = {
            let digest = Sha256::digest(text.as_bytes());
            hex::encode(&digest[..6])
        };
        Classifier::compile(file, version).map_err(|e| match e {
            RulesError::Rule { rule_id, reason } => {
                let line = text
                    .lines()
                    .position(|l| l.contains(&format!("\"{rule_id}\"")))
                    .map(|i| format!(" (line {})", i + 1))
                    .unwrap_or_default();
                RulesError::Rule {
                    rule_id: format!("{rule_id}{line}"),
                    reason,
                }
            }
            other => other,
        })
    }

    /// Compiles a parsed rules file.
    ///
    /// # Errors
    /// Duplicate ids, empty keywords, bad variants, regexes that do not compile or exceed the
    /// size limit.
    pub fn compile(file: RulesFile, version: String) -> Result<Classifier, RulesError> {
        let mut variants = std::collections::HashMap::new();
        for (from, to) in &file.variants {
            let (mut f, mut t) = (from.chars(), to.chars());
            match (f.next(), f.next(), t.next(), t.next()) {
                (Some(a), None, Some(b), None) => {
                    variants.insert(a, b);
                }
                _ => {
                    return Err(RulesError::Rule {
                        rule_id: format!("variants.{from}"),
                        reason: format!(
                            "variants map one character to one character; got {from:?} = {to:?}"
                        ),
                    });
                }
            }
        }
        let table = FoldTable::new(&variants);
        let fold = |s: &str| Folded::new(s, &table).text;

        let mut ids = HashSet::new();
        let mut patterns_ac: Vec<String> = Vec::new();
        let mut terms = Vec::new();
        let mut folded_keywords = Vec::new();
        let mut regex_sources = Vec::new();
        let mut regexes = Vec::new();
        for (ri, rule) in file.rules.iter().enumerate() {
            if !ids.insert(rule.id.clone()) {
                return Err(RulesError::Rule {
                    rule_id: rule.id.clone(),
                    reason: "duplicate rule id".into(),
                });
            }
            if !(rule.weight.is_finite() && rule.weight > 0.0) {
                return Err(RulesError::Rule {
                    rule_id: rule.id.clone(),
                    reason: format!("weight must be a positive number, got {}", rule.weight),
                });
            }
            if rule.keywords.is_empty() && rule.patterns.is_empty() {
                return Err(RulesError::Rule {
                    rule_id: rule.id.clone(),
                    reason: "a rule needs keywords or patterns".into(),
                });
            }
            let mut fk = Vec::new();
            for (ki, kw) in rule.keywords.iter().enumerate() {
                let f = fold(kw);
                if f.trim().is_empty() {
                    return Err(RulesError::Rule {
                        rule_id: rule.id.clone(),
                        reason: format!("keyword #{} is empty", ki + 1),
                    });
                }
                patterns_ac.push(f.clone());
                terms.push(Term::Keyword { rule: ri, kw: ki });
                fk.push(f);
            }
            folded_keywords.push(fk);
            for (pi, pat) in rule.patterns.iter().enumerate() {
                let pat = &ascii_word_boundaries(pat);
                let re = RegexBuilder::new(pat)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT * 4)
                    .build()
                    .map_err(|e| RulesError::Rule {
                        rule_id: rule.id.clone(),
                        reason: format!("pattern #{} {pat:?}: {e}", pi + 1),
                    })?;
                regex_sources.push(pat.clone());
                regexes.push((ri, pi, re));
            }
        }
        for (ni, neg) in file.negations.iter().enumerate() {
            if !ids.insert(neg.id.clone()) {
                return Err(RulesError::Rule {
                    rule_id: neg.id.clone(),
                    reason: "duplicate rule id".into(),
                });
            }
            for p in &neg.phrases {
                let f = fold(p);
                if f.trim().is_empty() {
                    return Err(RulesError::Rule {
                        rule_id: neg.id.clone(),
                        reason: "empty negation phrase".into(),
                    });
                }
                patterns_ac.push(f);
                terms.push(Term::Negation { neg: ni });
            }
        }
        let ac = if patterns_ac.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    // A full DFA is the fastest overlapping search; past ~50k pattern bytes its
                    // memory grows large, so big rule sets let the crate choose.
                    .kind(
                        (patterns_ac.iter().map(String::len).sum::<usize>() < 50_000)
                            .then_some(AhoCorasickKind::DFA),
                    )
                    .build(&patterns_ac)
                    .map_err(|e| RulesError::Rule {
                        rule_id: "(keywords)".into(),
                        reason: e.to_string(),
                    })?,
            )
        };
        let set = if regex_sources.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&regex_sources)
                    .size_limit(REGEX_SET_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SET_SIZE_LIMIT)
                    .build()
                    .map_err(|e| RulesError::Rule {
                        rule_id: "(patterns)".into(),
                        reason: format!("the patterns together are too large or invalid: {e}"),
                    })?,
            )
        };
        let mut tie_rank = [usize::MAX; 3];
        for (i, c) in file.tie_break.iter().enumerate() {
            if tie_rank[c.index()] == usize::MAX {
                tie_rank[c.index()] = i;
            }
        }
        let word_set =
            |v: &[String]| -> HashSet<String> { v.iter().map(|w| intent_key(&fold(w))).collect() };
        Ok(Classifier {
            fees: word_set(&file.intents.fees),
            points: word_set(&file.intents.points),
            progress: file.intents.progress.iter().map(|w| fold(w)).collect(),
            opt_out: word_set(&file.intents.opt_out),
            opt_in: word_set(&file.intents.opt_in),
            escalate: file.intents.escalate.iter().map(|w| fold(w)).collect(),
            source: file,
            version,
            fold: table,
            ac,
            terms,
            folded_keywords,
            set,
            regexes,
            tie_rank,
        })
    }

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

    /// Classifies a text. Pure: no I/O, no clock.
    pub fn classify(&self, text: &str) -> Classification {
        let clipped: &str = match text.char_indices().nth(MAX_CLASSIFY_CHARS) {
            Some((b, _)) => &text[..b],
            None => text,
        };
        let folded = Folded::new(clipped, &self.fold);
        let intent = self.intent(&folded.text);

        let mut kw_hits: Vec<(usize, usize, usize, usize)> = Vec::new(); // rule, kw, start, end (bytes in folded)
        let mut neg_spans: Vec<(Category, usize, usize, usize)> = Vec::new();
        if let Some(ac) = &self.ac {
            for m in ac.find_overlapping_iter(&folded.text) {
                match self.terms[m.pattern().as_usize()] {
                    Term::Keyword { rule, kw } => kw_hits.push((rule, kw, m.start(), m.end())),
                    Term::Negation { neg } => neg_spans.push((
                        self.source.negations[neg].category,
                        neg,
                        m.start(),
                        m.end(),
                    )),
                }
            }
        }
        let mut scores = [0.0f64; 3];
        let mut hits = Vec::new();
        let mut negated = Vec::new();
        let mut seen: HashSet<(usize, usize)> = HashSet::new();
        for (rule, kw, s, e) in kw_hits {
            let r = &self.source.rules[rule];
            let hit = Hit {
                rule_id: r.id.clone(),
                category: r.category,
                term: r.keywords[kw].clone(),
                matched: folded.original(clipped, s, e).to_string(),
                start: folded.char_pos(s),
                end: folded.char_end(e),
            };
            let is_negated = neg_spans
                .iter()
                .any(|&(c, _, ns, ne)| c == r.category && ns <= s && e <= ne);
            if is_negated {
                negated.push(hit);
                continue;
            }
            if seen.insert((rule, kw)) {
                scores[r.category.index()] += r.weight;
            }
            hits.push(hit);
        }
        if let Some(set) = &self.set {
            for idx in set.matches(&folded.text).iter() {
                let (rule, pi, re) = &self.regexes[idx];
                let r = &self.source.rules[*rule];
                // The first match outside a negation counts; negated ones are reported.
                let mut negated_hit = None;
                for m in re.find_iter(&folded.text) {
                    let is_negated = neg_spans
                        .iter()
                        .any(|&(c, _, ns, ne)| c == r.category && ns <= m.start() && m.end() <= ne);
                    let hit = Hit {
                        rule_id: r.id.clone(),
                        category: r.category,
                        term: r.patterns[*pi].clone(),
                        matched: folded.original(clipped, m.start(), m.end()).to_string(),
                        start: folded.char_pos(m.start()),
                        end: folded.char_end(m.end()),
                    };
                    if is_negated {
                        negated_hit.get_or_insert(hit);
                    } else {
                        scores[r.category.index()] += r.weight;
                        hits.push(hit);
                        negated_hit = None;
                        break;
                    }
                }
                if let Some(h) = negated_hit {
                    negated.push(h);
                }
            }
        }
        let category = self.decide(&scores);
        hits.sort_by_key(|h| (h.start, h.end));
        Classification {
            category,
            intent,
            scores: Category::ALL
                .iter()
                .map(|c| (*c, scores[c.index()]))
                .collect(),
            hits,
            negated,
            rules_version: self.version.clone(),
        }
    }

    /// Category only, for bulk work (intake, eval, backtest, benchmarks): the same decision as
    /// [`Classifier::classify`] without building the explanation, on reused buffers.
    pub fn category(&self, text: &str) -> Category {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            let clipped: &str = match text.char_indices().nth(MAX_CLASSIFY_CHARS) {
                Some((b, _)) => &text[..b],
                None => text,
            };
            self.fold.fold_into(clipped, &mut s.text);
            s.terms.clear();
            s.negs.clear();
            if let Some(ac) = &self.ac {
                for m in ac.find_overlapping_iter(&s.text) {
                    match self.terms[m.pattern().as_usize()] {
                        Term::Keyword { .. } => {
                            s.terms
                                .push((m.pattern().as_u32(), m.start() as u32, m.end() as u32))
                        }
                        Term::Negation { neg } => s.negs.push((
                            self.source.negations[neg].category,
                            m.start() as u32,
                            m.end() as u32,
                        )),
                    }
                }
            }
            let mut scores = [0.0f64; 3];
            // Distinct keywords count once: sort by term, skip negated occurrences.
            s.terms.sort_unstable();
            let mut last_counted = u32::MAX;
            for &(t, st, en) in &s.terms {
                if t == last_counted {
                    continue;
                }
                let Term::Keyword { rule, .. } = self.terms[t as usize] else {
                    continue;
                };
                let r = &self.source.rules[rule];
                if s.negs
                    .iter()
                    .any(|&(c, ns, ne)| c == r.category && ns <= st && en <= ne)
                {
                    continue;
                }
                scores[r.category.index()] += r.weight;
                last_counted = t;
            }
            if let Some(set) = &self.set {
                let matches = set.matches(&s.text);
                for idx in matches.iter() {
                    let (rule, _, re) = &self.regexes[idx];
                    let r = &self.source.rules[*rule];
                    let counts = if s.negs.iter().any(|&(c, _, _)| c == r.category) {
                        re.find_iter(&s.text).any(|m| {
                            !s.negs.iter().any(|&(c, ns, ne)| {
                                c == r.category
                                    && ns as usize <= m.start()
                                    && m.end() <= ne as usize
                            })
                        })
                    } else {
                        true
                    };
                    if counts {
                        scores[r.category.index()] += r.weight;
                    }
                }
            }
            self.decide(&scores)
        })
    }

    fn decide(&self, scores: &[f64; 3]) -> Category {
        let mut best: Option<Category> = None;
        for c in Category::ALL {
            let s = scores[c.index()];
            if s <= 0.0 {
                continue;
            }
            best = match best {
                None => Some(c),
                Some(b) => {
                    let bs = scores[b.index()];
                    if s > bs || (s == bs && self.tie_rank[c.index()] < self.tie_rank[b.index()]) {
                        Some(c)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        best.unwrap_or(self.source.fallback)
    }

    /// The intent of a text (opt-out, opt-in, escalation, or a case).
    pub fn intent_of(&self, text: &str) -> Intent {
        let mut buf = String::with_capacity(text.len().min(4 * MAX_CLASSIFY_CHARS));
        let clipped: &str = match text.char_indices().nth(MAX_CLASSIFY_CHARS) {
            Some((b, _)) => &text[..b],
            None => text,
        };
        self.fold.fold_into(clipped, &mut buf);
        self.intent(&buf)
    }

    fn intent(&self, folded: &str) -> Intent {
        // Whole-message words are short; a long text cannot be one (and folding it into a key
        // would cost more than classifying it).
        let key = if folded.len() <= MAX_WORD_BYTES {
            intent_key(folded)
        } else {
            String::new()
        };
        if folded.trim().is_empty() {
            return Intent::Case;
        }
        if self.opt_out.contains(&key) {
            return Intent::OptOut;
        }
        if self.opt_in.contains(&key) {
            return Intent::OptIn;
        }
        if self.escalate.iter().any(|p| folded.contains(p.as_str())) {
            return Intent::Escalate;
        }
        if self.query_folded(folded).is_some() {
            return Intent::SelfService;
        }
        Intent::Case
    }

    /// The self-service query of a text, if it is one.
    pub fn query_of(&self, text: &str) -> Option<Query> {
        let mut buf = String::new();
        let clipped: &str = match text.char_indices().nth(MAX_CLASSIFY_CHARS) {
            Some((b, _)) => &text[..b],
            None => text,
        };
        self.fold.fold_into(clipped, &mut buf);
        self.query_folded(&buf)
    }

    fn query_folded(&self, folded: &str) -> Option<Query> {
        static CASE_NO: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
            Regex::new(r"(?-u:\b)sb\s*0*([1-9][0-9]{0,11})(?-u:\b)").expect("valid")
        });
        let key = if folded.len() <= MAX_WORD_BYTES {
            intent_key(folded)
        } else {
            String::new()
        };
        if let Some(c) = CASE_NO.captures(folded) {
            let n: i64 = c[1].parse().ok()?;
            let bare = key.trim_start_matches("sb").trim_start_matches('0') == &c[1];
            if bare || self.progress.iter().any(|w| folded.contains(w.as_str())) {
                return Some(Query::CaseProgress(CaseId(n)));
            }
        }
        if self.fees.contains(&key) {
            return Some(Query::Fees);
        }
        if self.points.contains(&key) {
            return Some(Query::Points);
        }
        None
    }

    /// The folded keywords of each rule (for eval reports and benchmarks).
    pub fn folded_keywords(&self) -> &[Vec<String>] {
        &self.folded_keywords
    }
}

/// Makes `\b`/`\B` ASCII word boundaries. Unicode boundaries force the regex engine off
/// its DFA onto the much slower PikeVM for non-ASCII text (most of ours); for the English
/// words patterns anchor on, ASCII boundaries mean the same (a Han character is not an ASCII
/// word character, so `\bfee` matches in `话费fee`).
fn ascii_word_boundaries(pat: &str) -> String {
    let mut out = String::with_capacity(pat.len() + 16);
    let mut chars = pat.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(b @ ('b' | 'B')) => {
                    out.push_str("(?-u:\\");
                    out.push(b);
                    out.push(')');
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A whole-message answer to a survey, normalised: `1`..`5` (digits or satisfaction words,
/// 5 = very satisfied), `yes`, `no`. Counted as an answer only while a survey waits for the
/// sender (the store decides).
pub fn survey_answer(text: &str) -> Option<String> {
    if text.len() > MAX_WORD_BYTES {
        return None;
    }
    let t: String = text
        .chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    let v = match t.as_str() {
        "1" | "2" | "3" | "4" | "5" => t.as_str(),
        "非常满意" | "很满意" | "verysatisfied" => "5",
        "满意" | "滿意" | "satisfied" | "good" => "4",
        "一般" | "还行" | "neutral" | "ok" | "okay" => "3",
        "不满意" | "不滿意" | "dissatisfied" | "unsatisfied" | "bad" => "2",
        "非常不满意" | "很不满意" | "verydissatisfied" => "1",
        "是" | "是的" | "yes" | "y" => "yes",
        "否" | "不是" | "no" => "no",
        _ => return None,
    };
    Some(v.to_string())
}

/// Buffers reused by [`Classifier::category`] on each thread.
#[derive(Default)]
struct Scratch {
    text: String,
    /// (term id, start, end) of keyword hits in the folded text.
    terms: Vec<(u32, u32, u32)>,
    /// (category, start, end) of negation phrases.
    negs: Vec<(Category, u32, u32)>,
}

/// A whole-message intent word with spaces and punctuation removed ("T D!" → "td").
fn intent_key(folded: &str) -> String {
    folded.chars().filter(|c| c.is_alphanumeric()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
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

    fn c() -> Classifier {
        Classifier::from_toml(RULES, None).unwrap()
    }

    #[test]
    fn builtin_rules_compile() {
        let b = Classifier::builtin();
        assert!(!b.rules().rules.is_empty());
    }

    #[test]
    fn complaint_outranks_fault_outranks_inquiry() {
        let c = c();
        assert_eq!(c.category("家里断网了，我要投诉"), Category::Complaint);
        assert_eq!(c.category("断网了，想问问套餐"), Category::Fault);
        assert_eq!(c.category("套餐多少钱"), Category::Inquiry);
        assert_eq!(c.category("你好"), Category::Inquiry, "fallback");
    }

    #[test]
    fn equal_scores_follow_the_tie_break_order() {
        let rules = RULES.replace("weight = 3.0", "weight = 2.0");
        let c = Classifier::from_toml(&rules, None).unwrap();
        assert_eq!(c.category("断网 投诉"), Category::Complaint);
        let rules = rules.replace(
            r#"tie_break = ["complaint", "fault", "inquiry"]"#,
            r#"tie_break = ["fault", "complaint", "inquiry"]"#,
        );
        let c = Classifier::from_toml(&rules, None).unwrap();
        assert_eq!(c.category("断网 投诉"), Category::Fault);
    }

    #[test]
    fn folding_handles_full_width_case_traditional_and_spaces() {
        let c = c();
        let r = c.classify("我要投訴！NO   SIGNAL");
        assert_eq!(r.category, Category::Complaint);
        let terms: Vec<_> = r.hits.iter().map(|h| h.term.as_str()).collect();
        assert_eq!(terms, vec!["投诉", "no signal"]);
        // Positions are characters of the original text.
        assert_eq!((r.hits[0].start, r.hits[0].end), (2, 4));
        assert_eq!(r.hits[0].matched, "投訴");
        assert_eq!(r.hits[1].matched, "NO   SIGNAL");
        assert_eq!(c.category("ｎｏ ｓｉｇｎａｌ"), Category::Fault);
    }

    #[test]
    fn negated_keywords_do_not_count() {
        let c = c();
        let r = c.classify("不是投诉，想问套餐多少钱");
        assert_eq!(r.category, Category::Inquiry);
        assert_eq!(r.negated.len(), 1);
        assert_eq!(c.category("This is not a complaint"), Category::Inquiry);
        assert_eq!(
            c.category("不是投诉，但我要投诉客服态度"),
            Category::Complaint
        );
    }

    #[test]
    fn patterns_match_and_report_positions() {
        let r = c().classify("最近网络太慢");
        assert_eq!(r.category, Category::Fault);
        assert_eq!(r.hits[0].matched, "网络太慢");
        assert_eq!(r.hits[0].start, 2);
    }

    #[test]
    fn intents_are_whole_message_words() {
        let c = c();
        assert_eq!(c.classify("TD").intent, Intent::OptOut);
        assert_eq!(c.classify(" td。").intent, Intent::OptOut);
        assert_eq!(c.classify("退订").intent, Intent::OptOut);
        assert_eq!(c.classify("我要退订流量包").intent, Intent::Case);
        assert_eq!(c.classify("START").intent, Intent::OptIn);
        assert_eq!(c.classify("请升级处理我的投诉").intent, Intent::Escalate);
        assert_eq!(c.classify("").intent, Intent::Case);
    }

    #[test]
    fn bad_rules_are_refused_with_the_rule_named() {
        let bad = RULES.replace("'网络?(很|太)?慢'", "'网络(('");
        let e = Classifier::from_toml(&bad, None).unwrap_err().to_string();
        assert!(e.contains("fault.zh"), "{e}");
        let huge = RULES.replace("'网络?(很|太)?慢'", r"'\w{1000}\w{1000}\w{1000}'");
        let e = Classifier::from_toml(&huge, None).unwrap_err().to_string();
        assert!(e.contains("fault.zh"), "{e}");
        let unknown = format!("{RULES}\nsurprise = 1\n");
        let e = Classifier::from_toml(&unknown, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("surprise"), "{e}");
        let dup = RULES.replace("id = \"inquiry.zh\"", "id = \"fault.zh\"");
        let e = Classifier::from_toml(&dup, None).unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn word_boundaries_become_ascii_and_still_anchor_english_words() {
        assert_eq!(ascii_word_boundaries(r"\bfee\b"), r"(?-u:\b)fee(?-u:\b)");
        assert_eq!(ascii_word_boundaries(r"a\\b\Bc"), r"a\\b(?-u:\B)c");
        let rules = RULES.replace("'网络?(很|太)?慢'", r"'\bslow\b'");
        let c = Classifier::from_toml(&rules, None).unwrap();
        assert_eq!(c.category("网络slow了"), Category::Fault);
        assert_eq!(c.category("so slow"), Category::Fault);
        assert_eq!(c.category("slowly"), Category::Inquiry);
    }

    #[test]
    fn the_fast_path_agrees_with_the_explained_path_on_the_labeled_set() {
        let c = Classifier::builtin();
        let rows = eval::parse_csv(include_bytes!("../../fixtures/classify/labeled.csv")).unwrap();
        for r in &rows {
            assert_eq!(
                c.category(&r.text),
                c.classify(&r.text).category,
                "line {}: {}",
                r.line,
                r.text
            );
        }
    }

    #[test]
    fn self_service_queries_and_survey_answers_are_recognised() {
        let c = c();
        assert_eq!(c.query_of("查话费"), Some(Query::Fees));
        assert_eq!(c.query_of("余额？"), Some(Query::Fees));
        assert_eq!(c.query_of("积分"), Some(Query::Points));
        assert_eq!(
            c.query_of("查询工单SB00000042的进度"),
            Some(Query::CaseProgress(CaseId(42)))
        );
        assert_eq!(
            c.query_of("ＳＢ００００００４２"),
            Some(Query::CaseProgress(CaseId(42)))
        );
        assert_eq!(
            c.query_of("status of sb42 please"),
            Some(Query::CaseProgress(CaseId(42)))
        );
        assert_eq!(
            c.query_of("乱扣话费，我要投诉"),
            None,
            "a complaint about fees is not a query"
        );
        assert_eq!(
            c.query_of("SB00000042 还是没修好"),
            None,
            "a case number alone in a complaint is a reply"
        );
        assert_eq!(c.classify("积分").intent, Intent::SelfService);
        assert_eq!(survey_answer("5"), Some("5".into()));
        assert_eq!(survey_answer("５"), Some("5".into()));
        assert_eq!(survey_answer("非常满意！"), Some("5".into()));
        assert_eq!(survey_answer("不满意"), Some("2".into()));
        assert_eq!(survey_answer("Yes"), Some("yes".into()));
        assert_eq!(survey_answer("6"), None);
        assert_eq!(survey_answer("宽带坏了"), None);
    }

    #[test]
    fn huge_and_empty_texts_do_not_break_it() {
        let c = c();
        let big = "投诉".repeat(500_000);
        assert_eq!(c.category(&big), Category::Complaint);
        assert_eq!(c.category(""), Category::Inquiry);
    }
}
