//! Matching: one Aho-Corasick scan of the folded text finds keywords, negation phrases and
//! pattern triggers; patterns are searched where their triggers start (or through the set);
//! matches add their rule's weight to its category and the highest score wins. With the
//! evidence ([`Classifier::classify`]) or without it, on reused buffers
//! ([`Classifier::category`]).

use super::learned::Feature;
use super::{Classifier, Folded, Scanner, Term};
use crate::domain::{Category, Intent};
use aho_corasick::Anchored as AcAnchored;
use aho_corasick::automaton::Automaton;
use regex_automata::{Anchored, Input};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

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
    /// What the rules alone say (the same as `category` unless the model decided).
    pub rules_category: Category,
    /// `rules` (their best score led by at least `[model] sure_margin`, or there is no
    /// model) or `model` (nothing matched or a close call: model log-odds plus the scaled rule
    /// scores, cheapest category under `[costs]`).
    pub decided_by: &'static str,
    /// The model's opinion, when the rules file has a model (also when the rules decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelOpinion>,
}

/// What the learned model says about a text.
#[derive(Debug, Clone, Serialize)]
pub struct ModelOpinion {
    pub version: String,
    /// Its own probabilities, before the rule scores and costs.
    pub probabilities: BTreeMap<Category, f64>,
    /// The n-grams that pushed hardest toward the chosen category.
    pub top_features: Vec<Feature>,
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

impl Classifier {
    /// Classifies a text. Pure: no I/O, no clock.
    pub fn classify(&self, text: &str) -> Classification {
        let clipped: &str = super::clip(text);
        let folded = Folded::new(clipped, &self.fold);
        let intent = self.intent(&folded.text);

        let mut kw_hits: Vec<(usize, usize, usize, usize)> = Vec::new(); // rule, kw, start, end (bytes in folded)
        let mut neg_spans: Vec<(Category, usize, usize, usize)> = Vec::new();
        let mut triggers: Vec<(u32, u32, u32)> = Vec::new();
        if let Some(ac) = &self.ac {
            ac.scan(&folded.text, |pid, start, end| match self.terms[pid] {
                Term::Keyword { rule, kw, .. } => kw_hits.push((rule, kw, start, end)),
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
        let rules_category = self.decide(&scores);
        let mut chars = Vec::new();
        let (category, by_model) = self.combine(&scores, &folded.text, &mut chars);
        let model = self.model.as_ref().map(|m| {
            let lp = m.log_probs_folded(&folded.text, &mut chars);
            ModelOpinion {
                version: m.version.clone(),
                probabilities: Category::ALL
                    .iter()
                    .map(|c| (*c, lp[c.index()].exp()))
                    .collect(),
                top_features: m.top_features(&folded.text, category, 8),
            }
        });
        hits.sort_by_key(|h| (h.start, h.end));
        Classification {
            rules_category,
            decided_by: if by_model { "model" } else { "rules" },
            model,
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
            let clipped: &str = super::clip(text);
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
                let Term::Keyword { rule, slot, .. } = self.terms[t as usize] else {
                    continue;
                };
                if s.term_seen[slot as usize] == stamp {
                    continue;
                }
                let r = &self.source.rules[rule];
                if s.negs
                    .iter()
                    .any(|&(c, ns, ne)| c == r.category && ns <= st && en <= ne)
                {
                    continue;
                }
                scores[r.category.index()] += r.weight;
                s.term_seen[slot as usize] = stamp;
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
            self.combine(&scores, &s.text, &mut s.chars).0
        })
    }

    /// The final decision: the rules' own when there is no model or their best score leads
    /// by at least `sure_margin`; otherwise the model's log-probabilities plus the rule scores
    /// times `rules_scale`, as probabilities, and the category with the least expected cost
    /// under `[costs]` (ties by `tie_break`). Returns whether the model decided.
    fn combine(&self, scores: &[f64; 3], folded: &str, chars: &mut Vec<u32>) -> (Category, bool) {
        let (Some(m), Some(def)) = (&self.model, &self.source.model) else {
            return (self.decide(scores), false);
        };
        let mut sorted = *scores;
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        if sorted[0] > 0.0 && sorted[0] - sorted[1] >= def.sure_margin {
            return (self.decide(scores), false);
        }
        let nothing_matched = sorted[0] <= 0.0;
        if nothing_matched
            && folded
                .chars()
                .filter(|c| c.is_alphanumeric())
                .take(def.min_chars)
                .count()
                < def.min_chars
        {
            return (self.decide(scores), false);
        }
        let lp = m.log_probs_folded(folded, chars);
        let z: [f64; 3] = std::array::from_fn(|i| lp[i] + def.rules_scale * scores[i]);
        let mx = z[0].max(z[1]).max(z[2]);
        let e: [f64; 3] = std::array::from_fn(|i| (z[i] - mx).exp());
        let sum = e[0] + e[1] + e[2];
        if nothing_matched && e.iter().all(|x| x / sum < def.min_confidence) {
            return (self.decide(scores), false);
        }
        let costs = &self.source.costs;
        let mut best = Category::Inquiry;
        let mut best_cost = f64::INFINITY;
        for pred in Category::ALL {
            let cost: f64 = Category::ALL
                .iter()
                .map(|&t| e[t.index()] / sum * costs.cost(t, pred))
                .sum();
            if cost < best_cost
                || (cost == best_cost && self.tie_rank[pred.index()] < self.tie_rank[best.index()])
            {
                best = pred;
                best_cost = cost;
            }
        }
        (best, true)
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
            } else if let Some(dfa) = &pat.anchored {
                let input = Input::new(text)
                    .range(start as usize..)
                    .anchored(Anchored::Yes);
                match regex_automata::dfa::Automaton::try_search_fwd(dfa, &input) {
                    Ok(m) => m.map(|h| (start as usize, h.offset())),
                    // The DFA gave up (it cannot); the regex engine decides.
                    Err(_) => pat.re.search(&input).map(|m| (m.start(), m.end())),
                }
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
    /// The model's character buffer.
    chars: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::eval;
    use crate::classify::tests::{RULES, c};

    /// A gated pattern's anchored DFA finds the same match as its regex, at every character
    /// of real customer texts (the shipped rules, labeled and tune rows, folded).
    #[test]
    fn anchored_dfas_agree_with_their_regexes() {
        let c = Classifier::builtin();
        let with_dfa = c.patterns.iter().filter(|p| p.anchored.is_some()).count();
        assert!(with_dfa >= 40, "only {with_dfa} gated patterns have a DFA");
        let mut rows =
            eval::parse_csv(include_bytes!("../../fixtures/classify/labeled.csv")).unwrap();
        rows.extend(
            eval::parse_csv(include_bytes!(
                "../../fixtures/classify/independent/tune.csv"
            ))
            .unwrap(),
        );
        let mut folded = String::new();
        let mut matches = 0;
        for row in rows.iter().step_by(3) {
            c.fold.fold_into(&row.text, &mut folded);
            for pat in c.patterns.iter() {
                let Some(dfa) = &pat.anchored else { continue };
                for (b, _) in folded.char_indices() {
                    let input = Input::new(folded.as_str())
                        .range(b..)
                        .anchored(Anchored::Yes);
                    let want = pat.re.search(&input).map(|m| (m.start(), m.end()));
                    let got = regex_automata::dfa::Automaton::try_search_fwd(dfa, &input)
                        .unwrap()
                        .map(|h| (b, h.offset()));
                    assert_eq!(got, want, "{:?} at {b} of {folded:?}", pat.re);
                    matches += usize::from(want.is_some());
                }
            }
        }
        assert!(
            matches > 50,
            "only {matches} matches: the texts do not exercise the patterns"
        );
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
    fn aliases_match_typos_and_pinyin_and_count_once() {
        let rules = format!(
            "join_cjk = true\n{RULES}\n[aliases]\n\"头诉\" = \"投诉\"\n\"tousu\" = \"投诉\"\n\"断往\" = \"断网\"\n"
        );
        let c = Classifier::from_toml(&rules, None).unwrap();
        assert_eq!(c.category("我要头诉"), Category::Complaint);
        assert_eq!(c.category("wo yao tousu"), Category::Complaint);
        assert_eq!(c.category("家里断往了"), Category::Fault);
        assert_eq!(c.category("投 - 诉"), Category::Complaint, "join_cjk");
        // A keyword and its alias are one keyword: counted once.
        let r = c.classify("投诉 头诉");
        assert_eq!(r.scores[&Category::Complaint], 3.0);
        assert_eq!(c.category("投诉 头诉"), r.category);
        // Negation phrases get the aliases too.
        assert_eq!(c.category("不是头诉，套餐多少钱"), Category::Inquiry);
        let bad = format!("{RULES}\n[aliases]\n\"投诉\" = \"投诉\"\n");
        assert!(Classifier::from_toml(&bad, None).is_err());
    }

    fn with_model(extra: &str) -> Classifier {
        Classifier::from_toml(
            &format!(
                "{RULES}\n[model]\ntraining = [\"builtin:labeled\", \"builtin:tune\"]\n{extra}"
            ),
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_model_decides_when_rules_find_nothing_and_rules_decide_when_sure() {
        let c = with_model("sure_margin = 2.0\n");
        assert!(c.model().is_some());
        // Nothing matches the small rule set: the model decides.
        let r = c.classify("光猫上那个灯一直红的");
        assert_eq!(r.decided_by, "model");
        assert_eq!(r.rules_category, Category::Inquiry);
        assert_eq!(r.category, Category::Fault);
        let m = r.model.as_ref().unwrap();
        assert!(!m.top_features.is_empty());
        assert_eq!(c.category("光猫上那个灯一直红的"), Category::Fault);
        // A sure rule hit stands whatever the model thinks.
        let r = c.classify("投诉");
        assert_eq!((r.decided_by, r.category), ("rules", Category::Complaint));
        // The version covers the training data: the same rules without a model differ.
        assert_ne!(
            c.version(),
            Classifier::from_toml(RULES, None).unwrap().version()
        );
        let bad = format!("{RULES}\n[model]\ntraining = [\"builtin:nope\"]\n");
        let e = Classifier::from_toml(&bad, None).unwrap_err().to_string();
        assert!(e.contains("builtin:nope"), "{e}");
    }

    #[test]
    fn costs_lean_unsure_messages_toward_complaint() {
        let rows = eval::parse_csv(include_bytes!(
            "../../fixtures/classify/independent/tune.csv"
        ))
        .unwrap();
        let cheap = with_model("sure_margin = 100.0\n");
        let costly = Classifier::from_toml(
            &format!(
                "{RULES}\n[model]\ntraining = [\"builtin:labeled\"]\nsure_margin = 100.0\n[costs]\ncomplaint_as_inquiry = 5.0\ncomplaint_as_fault = 5.0\n"
            ),
            None,
        )
        .unwrap();
        let base = Classifier::from_toml(
            &format!("{RULES}\n[model]\ntraining = [\"builtin:labeled\"]\nsure_margin = 100.0\n"),
            None,
        )
        .unwrap();
        let count = |c: &Classifier| {
            rows.iter()
                .filter(|r| c.category(&r.text) == Category::Complaint)
                .count()
        };
        assert!(
            count(&costly) > count(&base),
            "{} vs {}",
            count(&costly),
            count(&base)
        );
        let _ = cheap;
        let r = eval::evaluate(&costly, &rows);
        assert!(r.complaint_recall >= eval::evaluate(&base, &rows).complaint_recall);
    }

    /// The shipped rules and model on the labeled set (the gate) and on the independent sets.
    #[test]
    fn shipped_rules_and_model_meet_the_targets() {
        let c = Classifier::builtin();
        assert!(c.model().is_some());
        let labeled =
            eval::parse_csv(include_bytes!("../../fixtures/classify/labeled.csv")).unwrap();
        let r = eval::evaluate(&c, &labeled);
        assert!(r.macro_f1 >= 0.95, "labeled macro-F1 {}", r.macro_f1);
        assert!(r.rules_alone.unwrap().macro_f1 >= 0.95);
        // The kept-apart set (never used for rules or model): the issue's targets, met when
        // this was written (0.9323 / 0.9796; with `min_confidence` and the small-talk rows
        // 0.9352 / 0.9745). Aggregates only.
        let heldout = eval::parse_csv(include_bytes!(
            "../../fixtures/classify/independent/heldout.csv"
        ))
        .unwrap();
        let h = eval::evaluate(&c, &heldout);
        assert!(h.macro_f1 >= 0.90, "heldout macro-F1 {}", h.macro_f1);
        assert!(
            h.complaint_recall >= 0.95,
            "heldout complaint recall {}",
            h.complaint_recall
        );
    }

    /// Text with no case in it is no complaint: the model does not guess on a greeting, and
    /// knows thanks and acknowledgements (it once took `你好` for a complaint, `您好` for a
    /// fault). What carries a case still does.
    #[test]
    fn greetings_and_thanks_open_no_complaint_or_fault() {
        let c = Classifier::builtin();
        for t in [
            "你好",
            "您好",
            "喂，你好",
            "在吗",
            "在不在",
            "谢谢你们",
            "好的收到",
            "hello",
            "ok",
            "嗯",
            "？",
        ] {
            assert_eq!(c.category(t), Category::Inquiry, "{t}");
            assert_eq!(c.classify(t).category, Category::Inquiry, "{t}");
        }
        assert_eq!(c.category("我要投诉你们"), Category::Complaint);
        assert_eq!(c.category("宽带又断了"), Category::Fault);
    }

    #[test]
    fn huge_and_empty_texts_do_not_break_it() {
        let c = c();
        let big = "投诉".repeat(500_000);
        assert_eq!(c.category(&big), Category::Complaint);
        assert_eq!(c.category(""), Category::Inquiry);
    }
}
