//! `switchboard rules suggest`: keywords and patterns proposed from the rows the classifier
//! gets wrong (on the labeled set, and on a corrections CSV when given), each measured by
//! adding it as a rule of its own and evaluating again: the macro-F1 change on the labeled
//! set and on the corrections. Pure: rows in, proposals out.

use super::eval::{Labeled, evaluate};
use super::{Classifier, RuleDef};
use crate::domain::Category;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub category: Category,
    /// `keyword` or `pattern`.
    pub kind: &'static str,
    pub term: String,
    /// The weight the trial rule had (the heaviest of the category's rules).
    pub weight: f64,
    /// Misclassified rows of `category` that contain it.
    pub fixes: usize,
    /// Rows of other categories that contain it.
    pub elsewhere: usize,
    pub delta_labeled: f64,
    pub delta_corrections: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuggestReport {
    pub labeled_macro_f1: f64,
    pub corrections_macro_f1: Option<f64>,
    pub misclassified: usize,
    pub suggestions: Vec<Suggestion>,
}

/// Candidate terms of a folded text: runs of 2 to 4 Han characters, and ASCII words of four
/// letters or more (and pairs of words).
fn candidates(folded: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let chars: Vec<char> = folded.chars().collect();
    for i in 0..chars.len() {
        for n in 2..=4 {
            if i + n > chars.len() {
                break;
            }
            let w = &chars[i..i + n];
            if w.iter().all(|&c| super::normalize::is_han(c)) {
                out.insert(w.iter().collect());
            }
        }
    }
    let words: Vec<&str> = folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && w.is_ascii())
        .collect();
    for (i, w) in words.iter().enumerate() {
        if w.len() >= 4 && !w.chars().all(|c| c.is_ascii_digit()) {
            out.insert(w.to_string());
        }
        if let Some(n) = words.get(i + 1)
            && w.len() >= 2
            && n.len() >= 2
        {
            out.insert(format!("{w} {n}"));
        }
    }
    out
}

/// Proposals, best first (at most `top`), each with its measured macro-F1 changes. Only those
/// that raise the sum of the changes are kept.
pub fn suggest(
    c: &Classifier,
    labeled: &[Labeled],
    corrections: &[Labeled],
    top: usize,
) -> SuggestReport {
    let base_l = evaluate(c, labeled).macro_f1;
    let base_c = (!corrections.is_empty()).then(|| evaluate(c, corrections).macro_f1);
    let all: Vec<(&Labeled, String)> = labeled
        .iter()
        .chain(corrections)
        .map(|r| (r, c.fold_text(&r.text)))
        .collect();
    let misses: Vec<&(&Labeled, String)> = all
        .iter()
        .filter(|(r, _)| c.category(&r.text) != r.label)
        .collect();
    // term -> misses of each category containing it
    let mut fixes: HashMap<(String, Category), usize> = HashMap::new();
    let mut per_miss: Vec<Vec<String>> = Vec::new();
    for (r, f) in &misses {
        let cands = candidates(f);
        for t in &cands {
            *fixes.entry((t.clone(), r.label)).or_default() += 1;
        }
        per_miss.push(cands.into_iter().collect());
    }
    let elsewhere = |t: &str, cat: Category| -> usize {
        all.iter()
            .filter(|(r, f)| r.label != cat && f.contains(t))
            .count()
    };
    let mut kw: Vec<(String, Category, usize, usize)> = fixes
        .iter()
        .map(|((t, cat), &n)| (t.clone(), *cat, n, elsewhere(t, *cat)))
        .filter(|(_, _, n, e)| *e * 2 < *n + 1)
        .collect();
    kw.sort_by(|a, b| {
        (b.2 as i64 - 2 * b.3 as i64)
            .cmp(&(a.2 as i64 - 2 * a.3 as i64))
            .then(b.0.chars().count().cmp(&a.0.chars().count()))
            .then(a.0.cmp(&b.0))
    });
    kw.truncate(top * 3);
    // Patterns: two Han terms of one missed row, a few characters apart, where each alone
    // also appears elsewhere.
    let mut pats: BTreeMap<(String, Category), (usize, usize)> = BTreeMap::new();
    for ((r, f), cands) in misses.iter().zip(&per_miss) {
        let mut two: Vec<&String> = cands
            .iter()
            .filter(|t| t.chars().count() == 2 && t.chars().all(super::normalize::is_han))
            .collect();
        two.sort();
        for a in &two {
            for b in &two {
                let (Some(ia), Some(ib)) = (f.find(a.as_str()), f.find(b.as_str())) else {
                    continue;
                };
                if ib <= ia + a.len() || f[ia + a.len()..ib].chars().count() > 6 {
                    continue;
                }
                let p = format!("{a}[^,.!?]{{0,6}}{b}");
                pats.entry((p, r.label)).or_default().0 += 1;
            }
        }
    }
    let mut pat_list: Vec<(String, Category, usize, usize)> = pats
        .into_iter()
        .filter(|(_, (n, _))| *n >= 2)
        .map(|((p, cat), (n, _))| {
            let re = regex::Regex::new(&p).expect("built from Han characters");
            let e = all
                .iter()
                .filter(|(r, f)| r.label != cat && re.is_match(f))
                .count();
            (p, cat, n, e)
        })
        .filter(|(_, _, n, e)| *e * 2 < *n + 1)
        .collect();
    pat_list.sort_by(|a, b| {
        (b.2 as i64 - 2 * b.3 as i64)
            .cmp(&(a.2 as i64 - 2 * a.3 as i64))
            .then(a.0.cmp(&b.0))
    });
    pat_list.truncate(top);

    let weight_of = |cat: Category| -> f64 {
        c.source
            .rules
            .iter()
            .filter(|r| r.category == cat)
            .map(|r| r.weight)
            .fold(1.0, f64::max)
    };
    let mut out = Vec::new();
    let trials = kw
        .into_iter()
        .map(|k| ("keyword", k))
        .chain(pat_list.into_iter().map(|p| ("pattern", p)));
    for (kind, (term, cat, n, e)) in trials {
        let mut file = c.source.clone();
        let weight = weight_of(cat);
        file.rules.push(RuleDef {
            id: "suggested.trial".into(),
            category: cat,
            weight,
            keywords: if kind == "keyword" {
                vec![term.clone()]
            } else {
                Vec::new()
            },
            patterns: if kind == "pattern" {
                vec![term.clone()]
            } else {
                Vec::new()
            },
        });
        let Ok(mut trial) = Classifier::compile_rules(file, c.version.clone()) else {
            continue;
        };
        trial.model = c.model.clone();
        let dl = evaluate(&trial, labeled).macro_f1 - base_l;
        let dc = base_c.map(|b| evaluate(&trial, corrections).macro_f1 - b);
        if dl + dc.unwrap_or(0.0) > 1e-9 {
            out.push(Suggestion {
                category: cat,
                kind,
                term,
                weight,
                fixes: n,
                elsewhere: e,
                delta_labeled: dl,
                delta_corrections: dc,
            });
        }
    }
    out.sort_by(|a, b| {
        (b.delta_labeled + b.delta_corrections.unwrap_or(0.0))
            .total_cmp(&(a.delta_labeled + a.delta_corrections.unwrap_or(0.0)))
            .then(a.term.cmp(&b.term))
    });
    out.truncate(top);
    SuggestReport {
        labeled_macro_f1: base_l,
        corrections_macro_f1: base_c,
        misclassified: misses.len(),
        suggestions: out,
    }
}

impl SuggestReport {
    pub fn render(&self) -> String {
        let mut o = format!(
            "macro-F1 now: labeled {:.4}{}; {} rows misclassified\n",
            self.labeled_macro_f1,
            self.corrections_macro_f1
                .map(|c| format!(", corrections {c:.4}"))
                .unwrap_or_default(),
            self.misclassified
        );
        if self.suggestions.is_empty() {
            o.push_str("no keyword or pattern improves macro-F1\n");
        }
        for s in &self.suggestions {
            o.push_str(&format!(
                "{:<10} {:<8} {:<28} weight {:<5} fixes {:>3} elsewhere {:>3}  Δlabeled {:+.4}{}\n",
                s.category.as_str(),
                s.kind,
                format!("{:?}", s.term),
                s.weight,
                s.fixes,
                s.elsewhere,
                s.delta_labeled,
                s.delta_corrections
                    .map(|d| format!("  Δcorrections {d:+.4}"))
                    .unwrap_or_default()
            ));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::eval::parse_csv;
    use crate::classify::tests::c;

    #[test]
    fn proposes_a_keyword_that_fixes_misses_and_measures_it() {
        let c = c();
        let labeled = parse_csv(
            "label,text\ncomplaint,我要投诉\nfault,断网了\ninquiry,套餐多少钱\nfault,光猫红灯一直亮\nfault,早上起光猫红灯\ninquiry,营业时间\n"
                .as_bytes(),
        )
        .unwrap();
        let corrections = parse_csv("label,text\nfault,我家光猫红灯了\n".as_bytes()).unwrap();
        let r = suggest(&c, &labeled, &corrections, 5);
        assert_eq!(r.misclassified, 3);
        let best = &r.suggestions[0];
        assert_eq!(best.category, Category::Fault);
        assert!(
            best.term.contains("红灯") || best.term.contains("光猫"),
            "{best:?}"
        );
        assert!(best.delta_labeled > 0.0);
        assert!(best.delta_corrections.unwrap() > 0.0);
        assert!(r.render().contains("Δlabeled"));
        // Nothing to fix, nothing proposed.
        let ok =
            parse_csv("label,text\ncomplaint,我要投诉\ninquiry,套餐多少钱\n".as_bytes()).unwrap();
        assert!(suggest(&c, &ok, &[], 5).suggestions.is_empty());
    }
}
