//! Building the compiled form from a rules file: the variants become a fold table; keywords,
//! negation phrases and pattern triggers one Aho-Corasick automaton; patterns anchored regexes
//! (those without usable triggers searched one by one or by a `RegexSet`); intent words sets
//! of folded keys. A rule that cannot be compiled is refused, named.

use super::eval::{Labeled, parse_csv};
use super::intents::intent_key;
use super::learned::Model;
use super::{Classifier, DEFAULT_RULES, FoldTable, Folded, Pattern, RulesFile, Scanner, Term};
use aho_corasick::{MatchKind, dfa, nfa};
use regex::RegexSetBuilder;
use regex_automata::meta;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Training sets built into the binary, named `builtin:<name>` in `[model] training`.
pub const BUILTIN_TRAINING: &[(&str, &[u8])] = &[
    (
        "labeled",
        include_bytes!("../../fixtures/classify/labeled.csv"),
    ),
    (
        "tune",
        include_bytes!("../../fixtures/classify/independent/tune.csv"),
    ),
    // Greetings, thanks and acknowledgements: text with no case in it, so the model learns
    // that, instead of reading a complaint into `你` or a fault into `收到`.
    (
        "smalltalk",
        include_bytes!("../../fixtures/classify/smalltalk.csv"),
    ),
];

/// Trained models by the SHA-256 of their training bytes and settings: compiling the same
/// rules again (tests, reloads, k-fold folds reuse their own) does not train again.
fn model_cache() -> &'static Mutex<HashMap<Vec<u8>, Arc<Model>>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, Arc<Model>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Largest compiled size of one regex and of the whole set; larger patterns are refused.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Largest anchored DFA built for one gated pattern; a pattern whose DFA would be larger is
/// searched by its `meta::Regex`.
pub(super) const ANCHORED_DFA_LIMIT: usize = 512 * 1024;

/// What all of a rules file's anchored DFAs may take together, attempts that failed counted at
/// the limit: a file of many costly patterns compiles in bounded time and memory, the rest
/// searched by their regexes.
const ANCHORED_DFA_BUDGET: usize = 16 * ANCHORED_DFA_LIMIT;

/// A gated pattern as an anchored dense DFA (leftmost-first, as the `meta::Regex`), or `None`
/// when it would exceed [`ANCHORED_DFA_LIMIT`] or needs what a DFA cannot do (Unicode word
/// boundaries; `ascii_word_boundaries` has already made the usual ones ASCII).
fn anchored_dfa(
    pat: &str,
    budget: &mut usize,
) -> Option<regex_automata::dfa::dense::DFA<Vec<u32>>> {
    use regex_automata::dfa::{StartKind, dense};
    if *budget < ANCHORED_DFA_LIMIT {
        return None;
    }
    let built = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(ANCHORED_DFA_LIMIT))
                .determinize_size_limit(Some(2 * ANCHORED_DFA_LIMIT)),
        )
        .build(pat)
        .ok();
    *budget -= built.as_ref().map_or(ANCHORED_DFA_LIMIT, |d| {
        d.memory_usage().min(ANCHORED_DFA_LIMIT)
    });
    built
}
const REGEX_SET_SIZE_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("rules file{at}: {reason}")]
    Parse { at: String, reason: String },
    #[error("rule {rule_id:?}: {reason}")]
    Rule { rule_id: String, reason: String },
}

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
        let base = origin
            .map(Path::new)
            .filter(|p| p.is_file())
            .and_then(|p| p.parent())
            .map(Path::to_path_buf);
        let training = match &file.model {
            Some(m) => Some(read_training(&m.training, base.as_deref())?),
            None => None,
        };
        let version = {
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            if let Some((_, sha)) = &training {
                h.update(sha);
            }
            hex::encode(&h.finalize()[..6])
        };
        Classifier::compile_trained(file, version, training).map_err(|e| match e {
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
        let training = match &file.model {
            Some(m) => Some(read_training(&m.training, None)?),
            None => None,
        };
        Classifier::compile_trained(file, version, training)
    }

    /// Compiles the rules and trains (or takes from the cache) the model on `training`
    /// (rows and the SHA-256 of their bytes).
    fn compile_trained(
        file: RulesFile,
        version: String,
        training: Option<(Vec<Labeled>, Vec<u8>)>,
    ) -> Result<Classifier, RulesError> {
        let mut c = Classifier::compile_rules(file, version)?;
        if let (Some(_), Some((rows, sha))) = (&c.source.model, training) {
            c.model = Some(train_cached(&c.source, &c.fold, &rows, &sha));
        }
        Ok(c)
    }

    /// Trains a model for these rules on other rows (k-fold evaluation, `rules suggest`).
    pub fn train_model(&self, rows: &[Labeled]) -> Option<Arc<Model>> {
        self.source.model.as_ref()?;
        let mut h = Sha256::new();
        for r in rows {
            h.update(r.label.as_str().as_bytes());
            h.update([0]);
            h.update(r.text.as_bytes());
            h.update([0]);
        }
        Some(train_cached(&self.source, &self.fold, rows, &h.finalize()))
    }

    /// The training rows the rules file names (`[model] training`), paths relative to the
    /// working directory.
    ///
    /// # Errors
    /// An unreadable or bad CSV, an unknown `builtin:` name.
    pub fn training_rows(&self) -> Result<Vec<Labeled>, RulesError> {
        match &self.source.model {
            Some(m) => Ok(read_training(&m.training, None)?.0),
            None => Ok(Vec::new()),
        }
    }

    /// Compiles the rules alone (no model).
    pub(super) fn compile_rules(
        file: RulesFile,
        version: String,
    ) -> Result<Classifier, RulesError> {
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
        let table = FoldTable::new(&variants).with_join_cjk(file.join_cjk);
        let fold = |s: &str| Folded::new(s, &table).text;
        let mut aliases: Vec<(String, String)> = Vec::new();
        for (alias, word) in &file.aliases {
            let (a, w) = (fold(alias), fold(word));
            if a.trim().is_empty() || w.trim().is_empty() || a == w {
                return Err(RulesError::Rule {
                    rule_id: format!("aliases.{alias}"),
                    reason: format!(
                        "an alias and its word must be different and not empty; got {alias:?} = {word:?}"
                    ),
                });
            }
            aliases.push((a, w));
        }
        // The folded text and every alias spelling of it (one substitution each).
        let spellings = |f: &str| -> Vec<String> {
            let mut out = vec![f.to_string()];
            for (a, w) in &aliases {
                if f.contains(w.as_str()) {
                    let v = f.replace(w.as_str(), a);
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
            out
        };
        let mut slot: u32 = 0;

        let mut ids = HashSet::new();
        let mut patterns_ac: Vec<Vec<u8>> = Vec::new();
        let mut terms = Vec::new();
        let mut folded_keywords = Vec::new();
        let mut regex_sources = Vec::new();
        let mut set_patterns = Vec::new();
        let mut patterns = Vec::new();
        let mut dfa_budget = ANCHORED_DFA_BUDGET;
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
                for v in spellings(&f) {
                    patterns_ac.push(v.into_bytes());
                    terms.push(Term::Keyword {
                        rule: ri,
                        kw: ki,
                        slot,
                    });
                }
                slot += 1;
                fk.push(f);
            }
            folded_keywords.push(fk);
            for (pi, pat) in rule.patterns.iter().enumerate() {
                let pat = &with_aliases(&ascii_word_boundaries(pat), &aliases);
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
                let exact = triggers.as_ref().is_some_and(|(_, exact)| *exact);
                let anchored = (triggers.is_some() && !exact)
                    .then(|| anchored_dfa(pat, &mut dfa_budget))
                    .flatten();
                patterns.push(Pattern {
                    rule: ri,
                    index: pi,
                    re,
                    anchored,
                    exact,
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
                for v in spellings(&f) {
                    patterns_ac.push(v.into_bytes());
                    terms.push(Term::Negation { neg: ni });
                }
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
            model: None,
        })
    }
}

fn train_cached(file: &RulesFile, fold: &FoldTable, rows: &[Labeled], sha: &[u8]) -> Arc<Model> {
    let def = file.model.as_ref().expect("called with a model");
    let key = {
        let mut h = Sha256::new();
        h.update(sha);
        h.update(format!("{:?}", (def.bits, def.epochs, def.l2)).as_bytes());
        // The fold table shapes the features: same training rows, other variants or join
        // flag, another model.
        h.update(format!("{} {:?}", fold.joins_cjk(), file.variants).as_bytes());
        h.finalize().to_vec()
    };
    if let Some(m) = model_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return m.clone();
    }
    let m = Arc::new(Model::train(def, fold, rows, sha));
    let mut cache = model_cache().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > 64 {
        cache.clear();
    }
    cache.insert(key, m.clone());
    m
}

/// Reads the training sets `[model] training` names: their rows, in order, and the SHA-256
/// of their bytes.
fn read_training(
    names: &[String],
    base: Option<&Path>,
) -> Result<(Vec<Labeled>, Vec<u8>), RulesError> {
    let mut rows = Vec::new();
    let mut h = Sha256::new();
    for name in names {
        let bytes: Vec<u8> = if let Some(b) = name.strip_prefix("builtin:") {
            BUILTIN_TRAINING
                .iter()
                .find(|(n, _)| *n == b)
                .map(|(_, bytes)| bytes.to_vec())
                .ok_or_else(|| RulesError::Rule {
                    rule_id: "model.training".into(),
                    reason: format!(
                        "unknown built-in training set {name:?} (builtin:labeled, builtin:tune, builtin:smalltalk)"
                    ),
                })?
        } else {
            let p = match base {
                Some(b) if Path::new(name).is_relative() => b.join(name),
                _ => PathBuf::from(name),
            };
            std::fs::read(&p).map_err(|e| RulesError::Rule {
                rule_id: "model.training".into(),
                reason: format!("{}: {e}", p.display()),
            })?
        };
        h.update(&bytes);
        rows.extend(parse_csv(&bytes).map_err(|e| RulesError::Rule {
            rule_id: "model.training".into(),
            reason: format!("{name}: {e}"),
        })?);
    }
    if rows.is_empty() {
        return Err(RulesError::Rule {
            rule_id: "model.training".into(),
            reason: "the model needs at least one training set".into(),
        });
    }
    Ok((rows, h.finalize().to_vec()))
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
/// A pattern with `[aliases]` applied: each literal occurrence of an aliased word outside a
/// character class becomes `(?:word|alias…)`, so `投诉.{0,4}电话` also matches `头诉的电话`.
/// An occurrence followed by a quantifier (`投诉+` repeats only `诉`) or a word with regex
/// syntax in it is left as written.
fn with_aliases(pat: &str, aliases: &[(String, String)]) -> String {
    let mut words: Vec<(&str, Vec<&str>)> = Vec::new();
    for (a, w) in aliases {
        if regex_syntax::escape(w) != *w {
            continue;
        }
        match words.iter_mut().find(|(x, _)| x == w) {
            Some((_, v)) => v.push(a),
            None => words.push((w, vec![a])),
        }
    }
    // Longest word first, so `投诉电话` wins over `投诉`.
    words.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
    if words.is_empty() {
        return pat.to_string();
    }
    let mut out = String::with_capacity(pat.len() + 32);
    let mut i = 0;
    let mut class = 0usize;
    let b = pat.as_bytes();
    while i < pat.len() {
        let rest = &pat[i..];
        let c = rest.chars().next().unwrap_or('\0');
        if c == '\\' {
            // An escape and what it escapes, as written.
            let n = rest[1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&rest[..1 + n]);
            i += 1 + n;
            continue;
        }
        if class == 0 {
            let hit = words.iter().find(|(w, _)| {
                rest.starts_with(*w)
                    && !matches!(b.get(i + w.len()), Some(b'*' | b'+' | b'?' | b'{'))
            });
            if let Some((w, alts)) = hit {
                out.push_str("(?:");
                out.push_str(w);
                for a in alts {
                    out.push('|');
                    out.push_str(&regex_syntax::escape(a));
                }
                out.push(')');
                i += w.len();
                continue;
            }
        }
        match c {
            '[' => class += 1,
            ']' if class > 0 => class -= 1,
            _ => {}
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

pub(super) fn ascii_word_boundaries(pat: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::RULES;
    use crate::domain::Category;

    #[test]
    fn aliases_apply_to_patterns_outside_classes_and_quantified_characters() {
        let al = vec![
            ("头诉".to_string(), "投诉".to_string()),
            ("tousu".to_string(), "投诉".to_string()),
        ];
        assert_eq!(
            with_aliases("投诉.{0,4}电话", &al),
            "(?:投诉|头诉|tousu).{0,4}电话"
        );
        assert_eq!(with_aliases("[投诉]+", &al), "[投诉]+");
        assert_eq!(with_aliases("投诉+", &al), "投诉+");
        // An escaped character is not the start of a word.
        assert_eq!(with_aliases("\\投诉", &al), "\\投诉");
        assert_eq!(with_aliases("打不通", &al), "打不通");
        let c = Classifier::compile(
            toml::from_str(&format!(
                "{RULES}\n[[rules]]\nid = \"p\"\ncategory = \"complaint\"\nweight = 3.0\npatterns = [\"要.{{0,3}}投诉你们\"]\n[aliases]\n\"头诉\" = \"投诉\"\n"
            ))
            .unwrap(),
            "t".into(),
        )
        .unwrap();
        let e = c.classify("我要去头诉你们");
        assert!(e.hits.iter().any(|h| h.rule_id == "p"), "{:?}", e.hits);
    }

    #[test]
    fn builtin_rules_compile() {
        let b = Classifier::builtin();
        assert!(!b.rules().rules.is_empty());
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
}
