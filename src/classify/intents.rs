//! Intents: whole-message words (opt-out, opt-in, punctuation and spaces ignored), escalation
//! phrases, self-service queries (fees, points, a case's progress) and survey answers.

use super::{Classifier, MAX_CLASSIFY_CHARS};
use crate::domain::{CaseId, Intent, Query};
use regex::Regex;

/// Whole-message intent words (opt-out, survey answers, fees...) are at most this long.
const MAX_WORD_BYTES: usize = 256;

impl Classifier {
    /// The intent of a text (opt-out, opt-in, escalation, or a case).
    pub fn intent_of(&self, text: &str) -> Intent {
        let mut buf = String::with_capacity(text.len().min(4 * MAX_CLASSIFY_CHARS));
        let clipped: &str = super::clip(text);
        self.fold.fold_into(clipped, &mut buf);
        self.intent(&buf)
    }

    pub(super) fn intent(&self, folded: &str) -> Intent {
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
        if self.query_keyed(folded, &key).is_some() {
            return Intent::SelfService;
        }
        Intent::Case
    }

    /// The self-service query of a text, if it is one.
    pub fn query_of(&self, text: &str) -> Option<Query> {
        let mut buf = String::new();
        let clipped: &str = super::clip(text);
        self.fold.fold_into(clipped, &mut buf);
        self.query_folded(&buf)
    }

    fn query_folded(&self, folded: &str) -> Option<Query> {
        let key = if folded.len() <= MAX_WORD_BYTES {
            intent_key(folded)
        } else {
            String::new()
        };
        self.query_keyed(folded, &key)
    }

    /// [`Self::query_folded`] with the text's intent key made already.
    fn query_keyed(&self, folded: &str, key: &str) -> Option<Query> {
        static CASE_NO: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
            Regex::new(r"(?-u:\b)sb\s*0*([1-9][0-9]{0,11})(?-u:\b)").expect("valid")
        });
        if let Some(c) = CASE_NO.captures(folded) {
            let n: i64 = c[1].parse().ok()?;
            let bare = key.trim_start_matches("sb").trim_start_matches('0') == &c[1];
            if bare || self.progress.iter().any(|w| folded.contains(w.as_str())) {
                return Some(Query::CaseProgress(CaseId(n)));
            }
        }
        if self.fees.contains(key) {
            return Some(Query::Fees);
        }
        if self.points.contains(key) {
            return Some(Query::Points);
        }
        None
    }
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
    // The longest answer below is 16 letters ("verydissatisfied"), and lowercasing never
    // makes a text shorter: a text with more letters is no answer, found without building it
    // (most messages are not answers, and every message is asked).
    let mut t = String::new();
    let mut letters = 0;
    for c in text.chars() {
        let c = match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        if c.is_alphanumeric() {
            letters += 1;
            if letters > MAX_ANSWER_LETTERS {
                return None;
            }
            t.push(c);
        }
    }
    let t = t.to_lowercase();
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

/// Letters and digits of the longest survey answer [`survey_answer`] knows.
const MAX_ANSWER_LETTERS: usize = 16;

/// A whole-message intent word with spaces and punctuation removed ("T D!" → "td").
pub(super) fn intent_key(folded: &str) -> String {
    folded.chars().filter(|c| c.is_alphanumeric()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::c;

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
        assert_eq!(
            survey_answer("Very dissatisfied!"),
            Some("very_dissatisfied".into())
        );
        assert_eq!(survey_answer("verydissatisfiedx"), None);
        assert_eq!(
            survey_answer("非常不滿意"),
            Some("very_dissatisfied".into())
        );
    }
}
