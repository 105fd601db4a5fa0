//! The SLA report: per category and tier, for the cases opened in a window: how many, how many
//! answered and resolved in time (of those whose deadline has come or that were answered /
//! resolved), breaches, median and p90 time to answer and to resolve, satisfaction answers.
//! Pure: the store hands over one row per case ([`SlaRow`]).

use serde::Serialize;
use std::collections::BTreeMap;

/// One case as the report needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlaRow {
    pub category: String,
    pub tier: crate::domain::Tier,
    pub opened_at: i64,
    pub acked_at: Option<i64>,
    pub ack_due_at: i64,
    pub resolved_at: Option<i64>,
    pub resolve_due_at: i64,
    /// `sla_breach` events of the case.
    pub breaches: i64,
    /// The return-visit answer linked to the case, if any (`1`/`2`/`3`, 满意…).
    pub satisfaction: Option<String>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub category: String,
    pub tier: crate::domain::Tier,
    pub cases: u64,
    /// Answered within the deadline, of the cases whose answer deadline has come or that were
    /// answered; `None` when there are none yet.
    pub answered_in_time_pct: Option<f64>,
    pub resolved_in_time_pct: Option<f64>,
    pub breaches: u64,
    pub answer_median_min: Option<f64>,
    pub answer_p90_min: Option<f64>,
    pub resolve_median_min: Option<f64>,
    pub resolve_p90_min: Option<f64>,
    pub satisfied: u64,
    pub neutral: u64,
    pub unsatisfied: u64,
}

/// What a survey answer counts as.
fn satisfaction(a: &str) -> Option<u8> {
    use crate::cases::Rating;
    let a = a.trim().to_lowercase();
    // Stored answers are the shared parser's words; older rows may hold the raw text.
    let a = crate::classify::survey_answer(&a).unwrap_or(a);
    Rating::of_visit_answer(&a).map(|r| match r {
        Rating::Satisfied => 1,
        Rating::Neutral => 2,
        Rating::Dissatisfied => 3,
    })
}

fn pct(part: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| (part as f64 * 1000.0 / of as f64).round() / 10.0)
}

/// The `q` quantile (nearest rank) of minutes, `None` for no values.
fn quantile(v: &mut [i64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some((v[rank - 1] as f64 / 6_000.0).round() / 10.0)
}

/// Summarises `rows` as of `now_ms`, one line per (category, tier), complaints first.
pub fn summarize(rows: &[SlaRow], now_ms: i64) -> Vec<Line> {
    #[derive(Default)]
    struct Acc {
        cases: u64,
        answer_due: u64,
        answered_in_time: u64,
        resolve_due: u64,
        resolved_in_time: u64,
        breaches: u64,
        answer: Vec<i64>,
        resolve: Vec<i64>,
        sat: [u64; 3],
    }
    let order = |c: &str| match c {
        "complaint" => 0,
        "fault" => 1,
        "inquiry" => 2,
        _ => 3,
    };
    let mut by: BTreeMap<(u8, String, crate::domain::Tier), Acc> = BTreeMap::new();
    for r in rows {
        let a = by
            .entry((order(&r.category), r.category.clone(), r.tier))
            .or_default();
        a.cases += 1;
        a.breaches += r.breaches.max(0) as u64;
        if r.acked_at.is_some() || r.ack_due_at <= now_ms {
            a.answer_due += 1;
            if r.acked_at.is_some_and(|t| t <= r.ack_due_at) {
                a.answered_in_time += 1;
            }
        }
        if r.resolved_at.is_some() || r.resolve_due_at <= now_ms {
            a.resolve_due += 1;
            if r.resolved_at.is_some_and(|t| t <= r.resolve_due_at) {
                a.resolved_in_time += 1;
            }
        }
        if let Some(t) = r.acked_at {
            a.answer.push(t - r.opened_at);
        }
        if let Some(t) = r.resolved_at {
            a.resolve.push(t - r.opened_at);
        }
        if let Some(s) = r.satisfaction.as_deref().and_then(satisfaction) {
            a.sat[s as usize - 1] += 1;
        }
    }
    by.into_iter()
        .map(|((_, category, tier), mut a)| Line {
            category,
            tier,
            cases: a.cases,
            answered_in_time_pct: pct(a.answered_in_time, a.answer_due),
            resolved_in_time_pct: pct(a.resolved_in_time, a.resolve_due),
            breaches: a.breaches,
            answer_median_min: quantile(&mut a.answer, 0.5),
            answer_p90_min: quantile(&mut a.answer, 0.9),
            resolve_median_min: quantile(&mut a.resolve, 0.5),
            resolve_p90_min: quantile(&mut a.resolve, 0.9),
            satisfied: a.sat[0],
            neutral: a.sat[1],
            unsatisfied: a.sat[2],
        })
        .collect()
}

/// The report as CSV (header first).
///
/// # Errors
/// Writing failed (never for a `Vec`).
pub fn csv(lines: &[Line]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for l in lines {
        w.serialize(l)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A window bound as the API and CLI take it: RFC 3339, or a date `YYYY-MM-DD` (midnight in
/// `zone`), or a span back from now (`30d`, `12h`).
///
/// # Errors
/// Anything else, naming what was given.
pub fn parse_instant(s: &str, zone: chrono_tz::Tz, now_ms: i64) -> Result<i64, String> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return zone
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| format!("{s:?}: no such local time"));
    }
    if let Ok(span) = super::Span::parse(s) {
        return Ok(now_ms - span.ms());
    }
    Err(format!(
        "{s:?}: expected an RFC 3339 instant, a date YYYY-MM-DD or a span like 30d"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> crate::domain::Tier {
        crate::domain::Tier::new(n).unwrap()
    }

    const M: i64 = 60_000;

    fn row(
        cat: &str,
        tier: crate::domain::Tier,
        acked: Option<i64>,
        resolved: Option<i64>,
    ) -> SlaRow {
        SlaRow {
            category: cat.into(),
            tier,
            opened_at: 0,
            acked_at: acked,
            ack_due_at: 180 * M,
            resolved_at: resolved,
            resolve_due_at: 72 * 60 * M,
            breaches: 0,
            satisfaction: None,
        }
    }

    #[test]
    fn in_time_shares_count_only_cases_whose_deadline_came() {
        let mut late = row("complaint", t(2), Some(200 * M), None);
        late.breaches = 1;
        late.satisfaction = Some("不满意".into());
        let mut happy = row("complaint", t(1), Some(60 * M), Some(600 * M));
        happy.satisfaction = Some("1".into());
        let rows = vec![
            happy,
            row("complaint", t(1), Some(120 * M), None),
            row("complaint", t(1), None, None), // deadline not come yet at 100 min
            late,
            row("inquiry", t(1), None, None),
        ];
        let r = summarize(&rows, 100 * M);
        assert_eq!(r.len(), 3);
        let c1 = &r[0];
        assert_eq!(
            (c1.category.as_str(), c1.tier, c1.cases),
            ("complaint", t(1), 3)
        );
        assert_eq!(c1.answered_in_time_pct, Some(100.0));
        assert_eq!(c1.resolved_in_time_pct, Some(100.0));
        assert_eq!(c1.answer_median_min, Some(60.0));
        assert_eq!(c1.answer_p90_min, Some(120.0));
        assert_eq!(c1.satisfied, 1);
        let c2 = &r[1];
        assert_eq!((c2.tier, c2.breaches, c2.unsatisfied), (t(2), 1, 1));
        assert_eq!(c2.answered_in_time_pct, Some(0.0));
        assert_eq!(r[2].category, "inquiry");
        assert_eq!(r[2].answered_in_time_pct, None);
        let text = csv(&r).unwrap();
        assert!(
            text.starts_with("category,tier,cases,answered_in_time_pct"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn window_bounds_parse_as_dates_instants_and_spans() {
        let z: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        assert_eq!(
            parse_instant("2026-12-04", z, 0).unwrap(),
            parse_instant("2026-12-03T16:00:00Z", z, 0).unwrap()
        );
        assert_eq!(
            parse_instant("30d", z, 31 * 86_400_000).unwrap(),
            86_400_000
        );
        assert!(
            parse_instant("yesterday", z, 0)
                .unwrap_err()
                .contains("yesterday")
        );
    }
}
