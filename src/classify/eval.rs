//! Measuring a rule set on labeled data: accuracy, per-class precision/recall/F1, macro-F1,
//! the confusion matrix and the rows it gets wrong. Pure: rows in, report out.

use super::Classifier;
use crate::domain::Category;
use serde::Serialize;

/// One labeled example (`label,text` in the CSV).
#[derive(Debug, Clone)]
pub struct Labeled {
    /// 1-based line in the source file, for error messages and the misclassified list.
    pub line: usize,
    pub label: Category,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassScore {
    pub category: Category,
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub line: usize,
    pub label: Category,
    pub predicted: Category,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub classes: Vec<ClassScore>,
    /// `confusion[i][j]`: rows labeled `labels[i]` predicted as `labels[j]`.
    pub labels: Vec<Category>,
    pub confusion: Vec<Vec<usize>>,
    pub misclassified: Vec<Miss>,
    pub rules_version: String,
    /// Recall of complaints (a complaint filed as anything else is the costly miss).
    pub complaint_recall: f64,
    /// Mean cost per message under the rules' `[costs]`.
    pub mean_cost: f64,
    /// The rules alone, when the rules file has a model (the figures above are combined).
    pub rules_alone: Option<Summary>,
    /// K-fold: the model that judged each row never saw it.
    pub folds: Option<usize>,
    pub model_version: Option<String>,
}

/// Reads a `label,text` CSV (RFC 4180 quoting, header required).
///
/// # Errors
/// Unreadable file, invalid UTF-8, a missing header, an unknown label, naming the line.
pub fn read_csv(path: &std::path::Path) -> anyhow::Result<Vec<Labeled>> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse_csv(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// As [`read_csv`] from bytes.
///
/// # Errors
/// As [`read_csv`].
pub fn parse_csv(bytes: &[u8]) -> anyhow::Result<Vec<Labeled>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = rdr
        .byte_headers()
        .map_err(|e| anyhow::anyhow!("reading the header: {e}"))?
        .clone();
    let h: Vec<String> = headers
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_lowercase())
        .collect();
    let (li, ti) = match (
        h.iter().position(|x| x == "label"),
        h.iter().position(|x| x == "text"),
    ) {
        (Some(l), Some(t)) => (l, t),
        _ => anyhow::bail!("line 1: the header must name the columns label and text (got {h:?})"),
    };
    let mut rows = Vec::new();
    for rec in rdr.byte_records() {
        let rec = rec.map_err(|e| anyhow::anyhow!("{e}"))?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let field = |i: usize, name: &str| -> anyhow::Result<String> {
            let raw = rec
                .get(i)
                .ok_or_else(|| anyhow::anyhow!("line {line}: no {name} column"))?;
            String::from_utf8(raw.to_vec())
                .map_err(|_| anyhow::anyhow!("line {line}: {name} is not valid UTF-8"))
        };
        let label: Category = field(li, "label")?
            .parse()
            .map_err(|e| anyhow::anyhow!("line {line}: {e}"))?;
        rows.push(Labeled {
            line,
            label,
            text: field(ti, "text")?,
        });
    }
    if rows.is_empty() {
        anyhow::bail!("no rows after the header");
    }
    Ok(rows)
}

/// Accuracy, macro-F1 and complaint recall of one way of deciding.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub complaint_recall: f64,
    /// Mean cost per message under the rules' `[costs]`.
    pub mean_cost: f64,
}

/// Rules (and model, when the rules file has one) on every row.
pub fn evaluate(c: &Classifier, rows: &[Labeled]) -> EvalReport {
    let preds: Vec<Category> = rows.iter().map(|r| c.category(&r.text)).collect();
    let mut report = report_from(c, rows, &preds);
    if c.model().is_some() {
        report.rules_alone = Some(evaluate(&c.with_model(None), rows).summary());
    }
    report
}

/// K-fold: the rows are split into `k` folds (stratified by label, in file order); each fold
/// is classified by the rules with a model trained on the other folds plus the rules' own
/// training sets minus any text of `rows`, so no row is seen by the model that judges it.
/// Without a model this is [`evaluate`].
pub fn kfold(c: &Classifier, rows: &[Labeled], k: usize) -> EvalReport {
    if c.model().is_none() || k < 2 {
        let mut r = evaluate(c, rows);
        r.folds = None;
        return r;
    }
    let texts: std::collections::HashSet<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let base: Vec<Labeled> = c
        .training_rows()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !texts.contains(r.text.as_str()))
        .collect();
    let mut fold_of = vec![0usize; rows.len()];
    let mut per_label = [0usize; 3];
    for (i, r) in rows.iter().enumerate() {
        fold_of[i] = per_label[r.label.index()] % k;
        per_label[r.label.index()] += 1;
    }
    let mut preds = vec![Category::Inquiry; rows.len()];
    for f in 0..k {
        let mut train = base.clone();
        train.extend(
            rows.iter()
                .enumerate()
                .filter(|(i, _)| fold_of[*i] != f)
                .map(|(_, r)| r.clone()),
        );
        let cf = c.with_model(c.train_model(&train));
        for (i, r) in rows.iter().enumerate() {
            if fold_of[i] == f {
                preds[i] = cf.category(&r.text);
            }
        }
    }
    let mut report = report_from(c, rows, &preds);
    report.rules_alone = Some(evaluate(&c.with_model(None), rows).summary());
    report.folds = Some(k);
    report
}

fn report_from(c: &Classifier, rows: &[Labeled], preds: &[Category]) -> EvalReport {
    let labels = vec![Category::Complaint, Category::Fault, Category::Inquiry];
    let mut confusion = vec![vec![0usize; 3]; 3];
    let mut misclassified = Vec::new();
    let mut cost = 0.0;
    for (r, &p) in rows.iter().zip(preds) {
        confusion[r.label.index()][p.index()] += 1;
        cost += c.rules().costs.cost(r.label, p);
        if p != r.label {
            misclassified.push(Miss {
                line: r.line,
                label: r.label,
                predicted: p,
                text: r.text.clone(),
            });
        }
    }
    let n = rows.len();
    let correct: usize = (0..3).map(|i| confusion[i][i]).sum();
    let mut classes = Vec::new();
    for (i, cat) in labels.iter().enumerate() {
        let tp = confusion[i][i] as f64;
        let support: usize = confusion[i].iter().sum();
        let predicted: usize = (0..3).map(|r| confusion[r][i]).sum();
        let precision = if predicted == 0 {
            0.0
        } else {
            tp / predicted as f64
        };
        let recall = if support == 0 {
            0.0
        } else {
            tp / support as f64
        };
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        classes.push(ClassScore {
            category: *cat,
            support,
            precision,
            recall,
            f1,
        });
    }
    let present: Vec<&ClassScore> = classes.iter().filter(|c| c.support > 0).collect();
    let macro_f1 = if present.is_empty() {
        0.0
    } else {
        present.iter().map(|c| c.f1).sum::<f64>() / present.len() as f64
    };
    EvalReport {
        n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        macro_f1,
        classes,
        labels,
        confusion,
        misclassified,
        rules_version: c.version().to_string(),
        complaint_recall: 0.0,
        mean_cost: if n == 0 { 0.0 } else { cost / n as f64 },
        rules_alone: None,
        folds: None,
        model_version: c.model().map(|m| m.version.clone()),
    }
    .with_recall()
}

impl EvalReport {
    fn with_recall(mut self) -> EvalReport {
        self.complaint_recall = self
            .classes
            .iter()
            .find(|c| c.category == Category::Complaint)
            .map_or(0.0, |c| c.recall);
        self
    }

    pub fn summary(&self) -> Summary {
        Summary {
            accuracy: self.accuracy,
            macro_f1: self.macro_f1,
            complaint_recall: self.complaint_recall,
            mean_cost: self.mean_cost,
        }
    }

    /// The plain-text report `switchboard rules eval` prints.
    pub fn render(&self, show_misses: bool) -> String {
        let mut o = String::new();
        o.push_str(&format!("rules version {}", self.rules_version));
        if let Some(m) = &self.model_version {
            o.push_str(&format!(" (model {m})"));
        }
        o.push('\n');
        if let Some(k) = self.folds {
            o.push_str(&format!(
                "{k}-fold: each row judged by a model trained without it\n"
            ));
        }
        let who = if self.rules_alone.is_some() {
            "rules + model"
        } else {
            "rules"
        };
        o.push_str(&format!(
            "n = {}   {who:<14} accuracy = {:.4}   macro-F1 = {:.4}   complaint recall = {:.4}   mean cost = {:.4}\n",
            self.n, self.accuracy, self.macro_f1, self.complaint_recall, self.mean_cost
        ));
        if let Some(r) = &self.rules_alone {
            o.push_str(&format!(
                "n = {}   {:<14} accuracy = {:.4}   macro-F1 = {:.4}   complaint recall = {:.4}   mean cost = {:.4}\n",
                self.n, "rules alone", r.accuracy, r.macro_f1, r.complaint_recall, r.mean_cost
            ));
        }
        o.push('\n');
        o.push_str("class        precision  recall     F1   support\n");
        for c in &self.classes {
            o.push_str(&format!(
                "{:<12} {:>9.4} {:>7.4} {:>6.4} {:>9}\n",
                c.category.as_str(),
                c.precision,
                c.recall,
                c.f1,
                c.support
            ));
        }
        o.push_str("\nconfusion (rows = label, columns = predicted)\n");
        o.push_str(&format!("{:<12}", ""));
        for l in &self.labels {
            o.push_str(&format!("{:>10}", l.as_str()));
        }
        o.push('\n');
        for (i, l) in self.labels.iter().enumerate() {
            o.push_str(&format!("{:<12}", l.as_str()));
            for v in &self.confusion[i] {
                o.push_str(&format!("{v:>10}"));
            }
            o.push('\n');
        }
        if show_misses {
            o.push_str(&format!(
                "\nmisclassified ({}):\n",
                self.misclassified.len()
            ));
            for m in &self.misclassified {
                o.push_str(&format!(
                    "  line {:>4}  {} -> {}  {}\n",
                    m.line,
                    m.label.as_str(),
                    m.predicted.as_str(),
                    m.text
                ));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_a_hand_computed_example() {
        let c = Classifier::from_toml(
            r#"
fallback = "inquiry"
[[rules]]
id = "c"
category = "complaint"
keywords = ["complain"]
[[rules]]
id = "f"
category = "fault"
keywords = ["broken"]
"#,
            None,
        )
        .unwrap();
        let rows = parse_csv(
            "label,text\ncomplaint,I complain\ncomplaint,\"it is broken, I complain\"\nfault,broken\nfault,dead line\ninquiry,hello\n"
                .as_bytes(),
        )
        .unwrap();
        let r = evaluate(&c, &rows);
        assert_eq!(r.n, 5);
        assert!((r.accuracy - 0.8).abs() < 1e-9);
        // complaint P=1 R=1; fault P=1 R=0.5 F1=2/3; inquiry P=0.5 R=1 F1=2/3.
        assert!(
            (r.macro_f1 - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-9,
            "{}",
            r.macro_f1
        );
        assert_eq!(r.confusion[1], vec![0, 1, 1]);
        assert_eq!(r.misclassified.len(), 1);
        assert_eq!(r.misclassified[0].line, 5);
        assert!(r.render(true).contains("dead line"));
    }

    #[test]
    fn kfold_never_lets_the_model_see_the_row_it_judges() {
        let rules = format!(
            "{}\n[model]\ntraining = [\"builtin:labeled\"]\nsure_margin = 100.0\n",
            crate::classify::tests::RULES
        );
        let c = Classifier::from_toml(&rules, None).unwrap();
        let rows = parse_csv(include_bytes!("../../fixtures/classify/labeled.csv")).unwrap();
        let rows = &rows[..300];
        let seen = evaluate(&c, rows);
        let k = kfold(&c, rows, 3);
        assert_eq!(k.folds, Some(3));
        assert_eq!(k.n, 300);
        // Judged by models that never saw them, the rows score lower than by the model
        // trained on them, and the rules-alone figure is the same both ways.
        assert!(
            k.macro_f1 < seen.macro_f1,
            "{} vs {}",
            k.macro_f1,
            seen.macro_f1
        );
        assert!(k.macro_f1 > 0.6, "{}", k.macro_f1);
        assert_eq!(
            k.rules_alone.unwrap().macro_f1,
            seen.rules_alone.unwrap().macro_f1
        );
        assert!(k.render(false).contains("3-fold"));
        // Deterministic.
        assert_eq!(kfold(&c, rows, 3).macro_f1, k.macro_f1);
    }

    #[test]
    fn bad_csv_names_the_line() {
        let e = parse_csv(b"label,text\ncomplaint,ok\nbilling,x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("billing"), "{e}");
        let e = parse_csv(b"a,b\nc,d\n").unwrap_err().to_string();
        assert!(e.contains("header"), "{e}");
        let e = parse_csv(b"label,text\ncomplaint,\xff\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("UTF-8") && e.contains("line 2"), "{e}");
    }
}
