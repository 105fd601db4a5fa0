//! The rules file as ops write it (`config/rules.toml`, serde with `deny_unknown_fields`):
//! rules, negations, variants, the intent words with their defaults, and the built-in file.

use crate::domain::Category;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Drop whitespace and punctuation between two Han characters before matching, so
    /// "投 诉", "投　诉", "投-诉" and "投诉" are the same text (sentence punctuation included).
    #[serde(default)]
    pub join_cjk: bool,
    /// Typos, homophones and pinyin that stand for a word (`"头诉" = "投诉"`): every keyword
    /// and negation phrase that contains the word also matches with the alias in its place
    /// (one substitution per variant); in patterns, a literal occurrence of the word becomes
    /// `(?:word|alias)` (not inside a character class, nor before a quantifier).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// The learned second opinion (character n-grams, softmax regression); absent: rules only.
    #[serde(default)]
    pub model: Option<ModelDef>,
    /// What a wrong category costs, used where the model decides.
    #[serde(default)]
    pub costs: Costs,
}

/// `[model]`: where the training rows come from and how much the rules count next to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDef {
    /// Labeled CSVs (`label,text`) the model is trained on when the rules compile:
    /// `builtin:labeled` and `builtin:tune` are the sets built into the binary, anything else
    /// a path (relative to the rules file's directory, else to the working directory).
    pub training: Vec<String>,
    /// The rules decide alone when their best score leads the runner-up by at least this much;
    /// below it (nothing matched, or a close call) the model's log-odds and the rule scores
    /// times `rules_scale` are added and the cheapest category under `[costs]` wins.
    #[serde(default = "default_sure")]
    pub sure_margin: f64,
    #[serde(default = "default_rules_scale")]
    pub rules_scale: f64,
    /// Training passes over the rows (fixed order, deterministic).
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// L2 penalty per update.
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Hashed feature buckets, log2 (16..=22).
    #[serde(default = "default_bits")]
    pub bits: u32,
    /// When the rules found nothing, the model decides only for a text of at least this many
    /// letters, digits and Han characters: a greeting (`你好`, `在吗`) carries no signal, and a
    /// model asked anyway guesses (it took `你好` for a complaint, `您好` for a fault).
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// …and only when its own probability for its choice reaches this; below it the rules'
    /// default stands.
    #[serde(default)]
    pub min_confidence: f64,
}

fn default_min_chars() -> usize {
    4
}

fn default_sure() -> f64 {
    6.0
}
fn default_rules_scale() -> f64 {
    0.3
}
fn default_epochs() -> u32 {
    12
}
fn default_l2() -> f64 {
    1e-5
}
fn default_bits() -> u32 {
    18
}

/// `[costs]`: a wrong category costs 1 unless listed here. Used where the model decides
/// (the category with the least expected cost wins) and reported by `rules eval`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// A complaint filed as an inquiry.
    #[serde(default = "one")]
    pub complaint_as_inquiry: f64,
    /// A complaint filed as a fault.
    #[serde(default = "one")]
    pub complaint_as_fault: f64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            complaint_as_inquiry: 1.0,
            complaint_as_fault: 1.0,
        }
    }
}

impl Costs {
    /// Cost of predicting `pred` when the truth is `truth`.
    pub fn cost(&self, truth: Category, pred: Category) -> f64 {
        match (truth, pred) {
            (a, b) if a == b => 0.0,
            (Category::Complaint, Category::Inquiry) => self.complaint_as_inquiry,
            (Category::Complaint, Category::Fault) => self.complaint_as_fault,
            _ => 1.0,
        }
    }
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

/// The rules shipped with switchboard (a copy of `config/rules.toml`).
pub const DEFAULT_RULES: &str = include_str!("../../config/rules.toml");
