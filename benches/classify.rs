//! Classifier throughput on one core (criterion runs single-threaded):
//! - the default rules on ~70-character messages,
//! - a synthetic rule set with 5,000 keywords and 200 regexes.
//!
//! Each next to a naive baseline measured in the same run: every rule compiled to one regex
//! (its keywords and patterns as alternatives) and tried in turn on the folded text.
//!
//! Run: `cargo bench --bench classify` (release profile).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::Regex;
use std::hint::black_box;
use switchboard::classify::{Classifier, FoldTable, RulesFile};
use switchboard::domain::Category;

/// ~70-character messages cut from the labeled set.
fn messages() -> Vec<String> {
    let rows =
        switchboard::classify::eval::parse_csv(include_bytes!("../fixtures/classify/labeled.csv"))
            .unwrap();
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut t: String = r.text.chars().take(70).collect();
            while t.chars().count() < 60 {
                t.push_str(" 请尽快处理一下谢谢");
            }
            t.chars().take(70).collect()
        })
        .collect();
    out.truncate(512);
    out
}

/// The naive way: one regex per rule, each tried in turn.
struct Naive {
    fold: FoldTable,
    rules: Vec<(Category, f64, Regex)>,
    fallback: Category,
}

impl Naive {
    fn new(file: &RulesFile) -> Naive {
        let variants = file
            .variants
            .iter()
            .filter_map(|(a, b)| Some((a.chars().next()?, b.chars().next()?)))
            .collect();
        let fold = FoldTable::new(&variants);
        let rules = file
            .rules
            .iter()
            .map(|r| {
                let mut alts: Vec<String> = r
                    .keywords
                    .iter()
                    .map(|k| {
                        let mut f = String::new();
                        fold.fold_into(k, &mut f);
                        regex::escape(&f)
                    })
                    .collect();
                alts.extend(r.patterns.iter().cloned());
                (r.category, r.weight, Regex::new(&alts.join("|")).unwrap())
            })
            .collect();
        Naive {
            fold,
            rules,
            fallback: file.fallback,
        }
    }

    fn category(&self, text: &str) -> Category {
        let mut f = String::new();
        self.fold.fold_into(text, &mut f);
        let mut scores = [0.0f64; 3];
        for (c, w, re) in &self.rules {
            let n = re.find_iter(&f).count();
            scores[c.index()] += *w * n as f64;
        }
        let mut best = self.fallback;
        let mut best_s = 0.0;
        for c in Category::ALL {
            if scores[c.index()] > best_s {
                best = c;
                best_s = scores[c.index()];
            }
        }
        best
    }
}

/// 5,000 keywords and 200 regexes over three categories: the default rules' vocabulary plus
/// generated terms (as a large deployment's would look), deterministic.
fn big_rules() -> RulesFile {
    let mut file: RulesFile = toml::from_str(switchboard::classify::DEFAULT_RULES).unwrap();
    let syll = [
        "宽", "带", "网", "话", "费", "信", "号", "套", "餐", "投", "诉", "修", "机", "卡", "流",
        "量", "速", "慢", "停", "退",
    ];
    let mut n_kw: usize = file.rules.iter().map(|r| r.keywords.len()).sum();
    let mut n_re: usize = file.rules.iter().map(|r| r.patterns.len()).sum();
    let mut i = 0usize;
    let cats = [Category::Complaint, Category::Fault, Category::Inquiry];
    let mut extra = Vec::new();
    while n_kw < 5_000 || n_re < 200 {
        let cat = cats[i % 3];
        let mut kws = Vec::new();
        for j in 0..50 {
            if n_kw >= 5_000 {
                break;
            }
            let k = i * 50 + j;
            kws.push(format!(
                "{}{}{}x{k}",
                syll[k % 20],
                syll[(k / 20) % 20],
                syll[(k / 400) % 20]
            ));
            n_kw += 1;
        }
        let mut pats = Vec::new();
        for j in 0..2 {
            if n_re >= 200 {
                break;
            }
            pats.push(format!(
                r"{}\d{{2,4}}(号|次)?z{}",
                syll[(i + j) % 20],
                i * 2 + j
            ));
            n_re += 1;
        }
        if !kws.is_empty() || !pats.is_empty() {
            extra.push(switchboard::classify::RuleDef {
                id: format!("synthetic.{i}"),
                category: cat,
                weight: 1.0,
                keywords: kws,
                patterns: pats,
            });
        }
        i += 1;
    }
    file.rules.extend(extra);
    file
}

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let default_file: RulesFile = toml::from_str(switchboard::classify::DEFAULT_RULES).unwrap();
    let big_file = big_rules();
    // Before/after in one run: the rules file of the previous release (benches/rules_before.toml,
    // rules only), today's rules without their model, and with it.
    let before: RulesFile = toml::from_str(include_str!("rules_before.toml")).unwrap();
    {
        let shipped = Classifier::builtin();
        let mut no_model = default_file.clone();
        no_model.model = None;
        let mut always = default_file.clone();
        if let Some(m) = always.model.as_mut() {
            m.sure_margin = f64::INFINITY;
        }
        let variants = [
            (
                "before_rules_only",
                Classifier::compile(before, "before".into()).unwrap(),
            ),
            (
                "rules_only",
                Classifier::compile(no_model, "no-model".into()).unwrap(),
            ),
            ("rules_plus_model", shipped),
            (
                "model_on_every_message",
                Classifier::compile(always, "always".into()).unwrap(),
            ),
        ];
        let mut g = c.benchmark_group("shipped");
        g.throughput(Throughput::Elements(msgs.len() as u64));
        for (name, cl) in &variants {
            g.bench_function(*name, |b| {
                b.iter(|| {
                    for m in &msgs {
                        black_box(cl.category(black_box(m)));
                    }
                })
            });
        }
        g.finish();
    }
    let sets = [("default_rules", default_file), ("5000kw_200re", big_file)];
    for (name, file) in sets {
        let kw: usize = file.rules.iter().map(|r| r.keywords.len()).sum();
        let re: usize = file.rules.iter().map(|r| r.patterns.len()).sum();
        eprintln!(
            "{name}: {} rules, {kw} keywords, {re} patterns",
            file.rules.len()
        );
        let fast = Classifier::compile(file.clone(), name.into()).unwrap();
        let naive = Naive::new(&file);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(msgs.len() as u64));
        g.bench_function("switchboard", |b| {
            b.iter(|| {
                for m in &msgs {
                    black_box(fast.category(black_box(m)));
                }
            })
        });
        g.bench_function("naive_regex_per_rule", |b| {
            b.iter(|| {
                for m in &msgs {
                    black_box(naive.category(black_box(m)));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
