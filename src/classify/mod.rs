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
//! Layout: `normalize` folds text (full-width → half-width, case, listed Traditional →
//! Simplified variants, whitespace) keeping a map back to the original character positions.

mod backtest;
pub mod eval;
pub mod live;

pub use backtest::{BacktestReport, backtest};
mod normalize;

pub use normalize::{FoldTable, Folded};

use crate::domain::{CaseId, Category, Intent, Query};
use aho_corasick::automaton::Automaton;
use aho_corasick::{Anchored as AcAnchored, MatchKind, dfa, nfa};
use regex::{Regex, RegexSet, RegexSetBuilder};
use regex_automata::{Anchored, Input, meta};
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
    Keyword {
        rule: usize,
        kw: usize,
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

impl Scanner {
    /// Calls `found(pattern, start, end)` for every occurrence of every pattern, overlapping
    /// ones included, in order of their end.
    fn scan(&self, text: &str, found: impl FnMut(usize, usize, usize)) {
        match self {
            Scanner::Dfa(a) => scan_overlapping(a, text.as_bytes(), found),
            Scanner::Nfa(a) => scan_overlapping(a, text.as_bytes(), found),
        }
    }
}

/// The overlapping search as one tight loop over the automaton's transitions (the crate's
/// iterator re-enters its search once per match and keeps its position in memory). No pattern
/// is empty (compile refuses them), so the start state never matches.
#[inline(always)]
fn scan_overlapping<A: Automaton>(aut: &A, hay: &[u8], mut found: impl FnMut(usize, usize, usize)) {
    let Ok(mut sid) = aut.start_state(AcAnchored::No) else {
        return;
    };
    for (i, &b) in hay.iter().enumerate() {
        sid = aut.next_state(AcAnchored::No, sid, b);
        if aut.is_special(sid) && aut.is_match(sid) {
            let end = i + 1;
            for k in 0..aut.match_len(sid) {
                let pid = aut.match_pattern(sid, k);
                found(pid.as_usize(), end - aut.pattern_len(pid), end);
            }
        }
    }
}

/// One compiled pattern. When every match of it starts with one of a few literals (its
/// triggers), the Aho-Corasick scan finds the only places worth an anchored search; the
/// others go into the `RegexSet` run over the whole text.
struct Pattern {
    rule: usize,
    /// Index in the rule's `patterns`.
    index: usize,
    re: meta::Regex,
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
        let mut patterns_ac: Vec<Vec<u8>> = Vec::new();
        let mut terms = Vec::new();
        let mut folded_keywords = Vec::new();
        let mut regex_sources = Vec::new();
        let mut set_patterns = Vec::new();
        let mut patterns = Vec::new();
        let mut trigger_map: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
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
                patterns_ac.push(f.clone().into_bytes());
                terms.push(Term::Keyword { rule: ri, kw: ki });
                fk.push(f);
            }
            folded_keywords.push(fk);
            for (pi, pat) in rule.patterns.iter().enumerate() {
                let pat = &ascii_word_boundaries(pat);
                let re = meta::Regex::builder()
                    .configure(
                        meta::Config::new()
                            .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                            .onepass_size_limit(Some(REGEX_SIZE_LIMIT))
                            .hybrid_cache_capacity(REGEX_SIZE_LIMIT * 4),
                    )
                    .build(pat)
                    .map_err(|e| RulesError::Rule {
                        rule_id: rule.id.clone(),
                        reason: format!("pattern #{} {pat:?}: {}", pi + 1, regex_error(&e)),
                    })?;
                let triggers = trigger_literals(pat);
                if let Some((lits, _)) = &triggers {
                    for lit in lits {
                        trigger_map
                            .entry(lit.clone())
                            .or_default()
                            .push(patterns.len() as u32);
                    }
                } else {
                    set_patterns.push(patterns.len());
                    regex_sources.push(pat.clone());
                }
                patterns.push(Pattern {
                    rule: ri,
                    index: pi,
                    re,
                    exact: triggers.is_some_and(|(_, exact)| exact),
                });
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
                patterns_ac.push(f.into_bytes());
                terms.push(Term::Negation { neg: ni });
            }
        }
        let mut trigger_lists = Vec::new();
        for (lit, list) in trigger_map {
            terms.push(Term::Trigger {
                first: trigger_lists.len() as u32,
                len: list.len() as u32,
            });
            trigger_lists.extend(list);
            patterns_ac.push(lit);
        }
        let ac = if patterns_ac.is_empty() {
            None
        } else {
            let err = |e: aho_corasick::BuildError| RulesError::Rule {
                rule_id: "(keywords)".into(),
                reason: e.to_string(),
            };
            // A full DFA is the fastest overlapping search; past ~50k pattern bytes its memory
            // grows large, so big rule sets get the compact NFA.
            Some(
                if patterns_ac.iter().map(Vec::len).sum::<usize>() < 50_000 {
                    Scanner::Dfa(
                        dfa::Builder::new()
                            .match_kind(MatchKind::Standard)
                            .prefilter(false)
                            .build(&patterns_ac)
                            .map_err(err)?,
                    )
                } else {
                    Scanner::Nfa(
                        nfa::contiguous::Builder::new()
                            .match_kind(MatchKind::Standard)
                            .prefilter(false)
                            .build(&patterns_ac)
                            .map_err(err)?,
                    )
                },
            )
        };
        // A few ungated patterns are searched one by one: each regex alone can use its own
        // literal prefilter (an inner literal such as "time"), which a set cannot.
        let set = if regex_sources.len() <= MAX_SINGLY_SEARCHED {
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
            set_patterns,
            patterns,
            trigger_lists,
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
        let mut triggers: Vec<(u32, u32, u32)> = Vec::new();
        if let Some(ac) = &self.ac {
            ac.scan(&folded.text, |pid, start, end| match self.terms[pid] {
                Term::Keyword { rule, kw } => kw_hits.push((rule, kw, start, end)),
                Term::Trigger { first, len } => triggers.extend(
                    self.trigger_lists[first as usize..(first + len) as usize]
                        .iter()
                        .map(|&p| (p, start as u32, end as u32)),
                ),
                Term::Negation { neg } => {
                    neg_spans.push((self.source.negations[neg].category, neg, start, end))
                }
            });
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
        let negs: Vec<(Category, u32, u32)> = neg_spans
            .iter()
            .map(|&(c, _, s, e)| (c, s as u32, e as u32))
            .collect();
        // Leftmost first, so the explanation shows the first match of each pattern.
        triggers.sort_unstable_by_key(|&(p, s, e)| (s, e, p));
        let mut done = vec![0; self.patterns.len()];
        self.run_patterns(
            &folded.text,
            &triggers,
            &negs,
            true,
            &mut done,
            1,
            |p, s, e, counts| {
                let pat = &self.patterns[p];
                let r = &self.source.rules[pat.rule];
                let hit = Hit {
                    rule_id: r.id.clone(),
                    category: r.category,
                    term: r.patterns[pat.index].clone(),
                    matched: folded.original(clipped, s, e).to_string(),
                    start: folded.char_pos(s),
                    end: folded.char_end(e),
                };
                if counts {
                    scores[r.category.index()] += r.weight;
                    hits.push(hit);
                } else {
                    negated.push(hit);
                }
            },
        );
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
            s.trig.clear();
            if let Some(ac) = &self.ac {
                let (terms, negs, trig) = (&mut s.terms, &mut s.negs, &mut s.trig);
                ac.scan(&s.text, |pid, start, end| {
                    let (start, end) = (start as u32, end as u32);
                    match self.terms[pid] {
                        Term::Keyword { .. } => terms.push((pid as u32, start, end)),
                        Term::Negation { neg } => {
                            negs.push((self.source.negations[neg].category, start, end))
                        }
                        Term::Trigger { first, len } => trig.extend(
                            self.trigger_lists[first as usize..(first + len) as usize]
                                .iter()
                                .map(|&p| (p, start, end)),
                        ),
                    }
                });
            }
            let mut scores = [0.0f64; 3];
            // A new stamp marks what this call has counted (distinct keywords, patterns).
            s.stamp = s.stamp.wrapping_add(1);
            if s.stamp == 0 {
                s.term_seen.fill(0);
                s.pattern_done.fill(0);
                s.stamp = 1;
            }
            let stamp = s.stamp;
            s.term_seen
                .resize(s.term_seen.len().max(self.terms.len()), 0);
            s.pattern_done
                .resize(s.pattern_done.len().max(self.patterns.len()), 0);
            // Distinct keywords count once; negated occurrences do not count.
            for &(t, st, en) in &s.terms {
                if s.term_seen[t as usize] == stamp {
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
                s.term_seen[t as usize] = stamp;
            }
            self.run_patterns(
                &s.text,
                &s.trig,
                &s.negs,
                false,
                &mut s.pattern_done,
                stamp,
                |p, _, _, counts| {
                    if counts {
                        let r = &self.source.rules[self.patterns[p].rule];
                        scores[r.category.index()] += r.weight;
                    }
                },
            );
            self.decide(&scores)
        })
    }

    /// Runs the patterns over the folded `text`: a gated pattern anchored at each place one of
    /// its trigger literals starts (`triggers`: (pattern, start, end) in the order tried; for
    /// an exact pattern the trigger is the match), the others through the set. Calls
    /// `found(pattern, start, end, counts)` once per pattern that matches: with the first match
    /// tried outside a negation phrase of the rule's category (`counts`), or, when every match
    /// is negated, with the first negated one. `done[p] == stamp` marks counted patterns
    /// (`done` is as long as `patterns`). Without `positions`, a set match that no negation
    /// could cover reports (0, 0).
    #[allow(clippy::too_many_arguments)]
    fn run_patterns(
        &self,
        text: &str,
        triggers: &[(u32, u32, u32)],
        negs: &[(Category, u32, u32)],
        positions: bool,
        done: &mut [u32],
        stamp: u32,
        mut found: impl FnMut(usize, usize, usize, bool),
    ) {
        let negated = |c: Category, s: usize, e: usize| {
            negs.iter()
                .any(|&(nc, ns, ne)| nc == c && ns as usize <= s && e <= ne as usize)
        };
        // (pattern, start, end) of negated matches, reported for patterns that never count.
        let mut negated_first: Vec<(usize, usize, usize)> = Vec::new();
        for &(p, start, end) in triggers {
            let p = p as usize;
            if done[p] == stamp {
                continue;
            }
            let pat = &self.patterns[p];
            let m = if pat.exact {
                Some((start as usize, end as usize))
            } else {
                let input = Input::new(text)
                    .range(start as usize..)
                    .anchored(Anchored::Yes);
                pat.re.search(&input).map(|m| (m.start(), m.end()))
            };
            let Some((s, e)) = m else { continue };
            if negated(self.source.rules[pat.rule].category, s, e) {
                if !negated_first.iter().any(|n| n.0 == p) {
                    negated_first.push((p, s, e));
                }
            } else {
                done[p] = stamp;
                found(p, s, e, true);
            }
        }
        for (p, s, e) in negated_first {
            if done[p] != stamp {
                found(p, s, e, false);
            }
        }
        let set_matches;
        let matched: &mut dyn Iterator<Item = usize> = match &self.set {
            Some(set) => {
                set_matches = set.matches(text);
                &mut set_matches.iter().map(|i| self.set_patterns[i])
            }
            None => &mut self
                .set_patterns
                .iter()
                .copied()
                .filter(|&p| self.patterns[p].re.is_match(text)),
        };
        for p in matched {
            let pat = &self.patterns[p];
            let category = self.source.rules[pat.rule].category;
            if !positions && !negs.iter().any(|&(c, _, _)| c == category) {
                found(p, 0, 0, true);
                continue;
            }
            let mut first_negated = None;
            let mut counted = false;
            for m in pat.re.find_iter(text) {
                if negated(category, m.start(), m.end()) {
                    first_negated.get_or_insert((m.start(), m.end()));
                } else {
                    found(p, m.start(), m.end(), true);
                    counted = true;
                    break;
                }
            }
            if let (false, Some((s, e))) = (counted, first_negated) {
                found(p, s, e, false);
            }
        }
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

/// Up to this many patterns without triggers are searched one by one, more by a `RegexSet`.
const MAX_SINGLY_SEARCHED: usize = 16;

/// Most trigger literals one pattern may have; a pattern with more is searched by the set.
const MAX_TRIGGERS: usize = 256;

/// The literals every match of `pat` starts with, the shortest where one is a prefix of
/// another, and whether they are exact (each literal is itself a whole match, so no regex
/// search is needed: a finite pattern without look-around assertions, which the literal
/// extractor would count as empty). `None` when there are none, too many, or one shorter than
/// two bytes (it would fire on most texts), so the pattern goes into the set.
fn trigger_literals(pat: &str) -> Option<(Vec<Vec<u8>>, bool)> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new().build().parse(pat).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let exact = seq.is_exact() && hir.properties().look_set().is_empty();
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > MAX_TRIGGERS || lits.iter().any(|l| l.as_bytes().len() < 2) {
        return None;
    }
    let mut all: Vec<&[u8]> = lits.iter().map(|l| l.as_bytes()).collect();
    all.sort_unstable();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for lit in all {
        // Sorted, so a kept prefix of `lit` is the last one kept.
        if out.last().is_some_and(|k| lit.starts_with(k)) {
            continue;
        }
        out.push(lit.to_vec());
    }
    Some((out, exact))
}

/// A pattern's compile error in words: the size limit, or the syntax error.
fn regex_error(e: &meta::BuildError) -> String {
    if let Some(limit) = e.size_limit() {
        format!("compiled pattern exceeds the size limit of {limit} bytes")
    } else if let Some(se) = e.syntax_error() {
        se.to_string()
    } else {
        e.to_string()
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

/// A whole-message answer to a survey, normalised: a digit `1`..`5` as written (what it means
/// is the survey's own scale: a return visit's `1` is satisfied, `3` dissatisfied), a
/// satisfaction word (`very_satisfied`, `satisfied`, `neutral`, `dissatisfied`,
/// `very_dissatisfied`), `yes`, `no`. Counted as an answer only while a survey waits for the
/// sender (intake decides). Return visits and survey campaigns share this parser.
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
        "非常满意" | "很满意" | "非常滿意" | "verysatisfied" => "very_satisfied",
        "满意" | "滿意" | "satisfied" | "good" => "satisfied",
        "一般" | "还行" | "還行" | "neutral" | "ok" | "okay" => "neutral",
        "不满意" | "不滿意" | "dissatisfied" | "unsatisfied" | "bad" => "dissatisfied",
        "非常不满意" | "很不满意" | "非常不滿意" | "verydissatisfied" | "veryunsatisfied" => {
            "very_dissatisfied"
        }
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
    /// (pattern, start, end) of a pattern's trigger literal.
    trig: Vec<(u32, u32, u32)>,
    /// `term_seen[t] == stamp`: keyword term `t` already counted in this call;
    /// `pattern_done[p] == stamp`: pattern `p` likewise.
    term_seen: Vec<u32>,
    pattern_done: Vec<u32>,
    stamp: u32,
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

    /// Gating a pattern behind its trigger literals must not lose a match: on every labeled
    /// text, and on every suffix of it (so matches start at odd places), the patterns reported
    /// are exactly those whose regex matches somewhere.
    #[test]
    fn trigger_gated_patterns_find_every_match_the_regex_finds() {
        let c = Classifier::builtin();
        let gated = c.patterns.len() - c.set_patterns.len();
        assert!(
            gated * 10 >= c.patterns.len() * 8,
            "only {gated} of {} default patterns have trigger literals",
            c.patterns.len()
        );
        let rows = eval::parse_csv(include_bytes!("../../fixtures/classify/labeled.csv")).unwrap();
        let mut checked = 0;
        for r in &rows {
            let mut folded = String::new();
            c.fold.fold_into(&r.text, &mut folded);
            for (start, _) in folded.char_indices().step_by(7) {
                let text = &folded[start..];
                let mut triggers = Vec::new();
                c.ac.as_ref().unwrap().scan(text, |pid, start, end| {
                    if let Term::Trigger { first, len } = c.terms[pid] {
                        for &p in &c.trigger_lists[first as usize..(first + len) as usize] {
                            triggers.push((p, start as u32, end as u32));
                        }
                    }
                });
                let mut reported = Vec::new();
                let mut done = vec![0; c.patterns.len()];
                c.run_patterns(
                    text,
                    &triggers,
                    &[],
                    true,
                    &mut done,
                    1,
                    |p, _, _, counts| {
                        assert!(counts);
                        reported.push(p);
                    },
                );
                reported.sort_unstable();
                let expected: Vec<usize> = (0..c.patterns.len())
                    .filter(|&p| c.patterns[p].re.is_match(text))
                    .collect();
                assert_eq!(reported, expected, "line {}: {text}", r.line);
                checked += expected.len();
            }
        }
        assert!(checked > 500, "only {checked} pattern matches checked");
    }

    #[test]
    fn trigger_literals_are_prefixes_or_none() {
        let lits = |p: &str| {
            trigger_literals(p).map(|(v, _)| {
                v.into_iter()
                    .map(|l| String::from_utf8(l).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        let exact = |p: &str| trigger_literals(p).unwrap().1;
        assert!(exact("态度(太|很)?(差|恶劣)"));
        assert!(!exact("(还没|还没有)处+"));
        assert!(!exact(&ascii_word_boundaries(r"\blied\b")));
        assert_eq!(
            lits("态度(太|很)?(差|恶劣)").unwrap(),
            [
                "态度太差",
                "态度太恶劣",
                "态度差",
                "态度很差",
                "态度很恶劣",
                "态度恶劣"
            ]
        );
        // A prefix covers its extensions.
        assert_eq!(lits("(还没|还没有)处").unwrap(), ["还没处", "还没有处"]);
        assert_eq!(lits("ab(c)?").unwrap(), ["ab"]);
        // Anything may start a match, or a one-byte start: searched by the set.
        assert_eq!(lits("[^，。]{0,4}不符"), None);
        assert_eq!(lits(r"\d+次"), None);
        assert_eq!(lits("x?y"), None);
        assert_eq!(lits(&ascii_word_boundaries(r"\blied\b")).unwrap(), ["lied"]);
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
        assert_eq!(survey_answer("非常满意！"), Some("very_satisfied".into()));
        assert_eq!(survey_answer("不满意"), Some("dissatisfied".into()));
        assert_eq!(survey_answer("Unsatisfied."), Some("dissatisfied".into()));
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
