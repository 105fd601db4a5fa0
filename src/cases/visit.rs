//! Return visits, pure: what a due visit does. A `scheduled` visit sends its survey (or is
//! skipped: the customer had one within `once_per`; or waits: quiet hours; or is cancelled:
//! the case was reopened); a `sent` visit whose answer time is up closes the case. The
//! scheduler (`crate::sla::scheduler`) renders the survey and has the store apply the choice.

use super::ReturnVisit;
use crate::store::DueVisit;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisitStep {
    /// Send the survey now; wait for the answer until the instant given.
    Send { answer_until: i64 },
    /// Not now (quiet hours): try again at the instant given.
    Later(i64),
    /// The customer was asked within `once_per` (at the instant given): close without asking.
    Skip(i64),
    /// The case is no longer resolved (reopened, closed by hand): nothing to ask.
    Cancel,
    /// Nobody answered in time: close the case.
    Expire,
}

pub fn next(v: &DueVisit, cfg: &ReturnVisit, zone: chrono_tz::Tz, now: i64) -> VisitStep {
    if v.status != "resolved" {
        return VisitStep::Cancel;
    }
    // Switched off (or the category taken off the list) since it was scheduled: no survey;
    // the case stays resolved.
    let category_on = cfg.categories.contains(&v.category);
    if v.state == "scheduled" && (!cfg.enabled || !category_on) {
        return VisitStep::Cancel;
    }
    if v.state == "sent" {
        return VisitStep::Expire;
    }
    if let Some(last) = v.last_sent
        && now - last < cfg.once_per.ms()
    {
        return VisitStep::Skip(last);
    }
    let ok = cfg.quiet_hours.next_outside(zone, now);
    if ok > now {
        return VisitStep::Later(ok);
    }
    VisitStep::Send {
        answer_until: now + cfg.answer_within.ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> crate::domain::Tier {
        crate::domain::Tier::new(n).unwrap()
    }
    use crate::sla::Span;
    use crate::sla::calendar::Window;
    use chrono::TimeZone;

    const SH: chrono_tz::Tz = chrono_tz::Asia::Shanghai;
    const D: i64 = 86_400_000;

    fn cfg() -> ReturnVisit {
        ReturnVisit {
            enabled: true,
            categories: vec![crate::domain::Category::Complaint],
            delay: Span(D),
            answer_within: Span(2 * D),
            once_per: Span(30 * D),
            quiet_hours: Window::parse("21:00-08:00").unwrap(),
        }
    }

    fn visit(state: &str, status: &str, last_sent: Option<i64>) -> DueVisit {
        DueVisit {
            case_id: crate::domain::CaseId(1),
            state: state.into(),
            due_at: 0,
            channel: crate::domain::Channel::Sms,
            customer: "+8613800138000".into(),
            status: crate::domain::CaseStatus::parse(status).unwrap(),
            category: crate::domain::Category::Complaint,
            tier: t(1),
            lang: "zh-CN".into(),
            subject: None,
            last_sent,
        }
    }

    #[test]
    fn a_visit_goes_out_by_day_once_a_month_and_only_for_a_resolved_case() {
        let noon = SH
            .with_ymd_and_hms(2026, 12, 5, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        let night = noon + 11 * 3_600_000; // 23:00
        let c = cfg();
        assert_eq!(
            next(&visit("scheduled", "resolved", None), &c, SH, noon),
            VisitStep::Send {
                answer_until: noon + 2 * D
            }
        );
        assert_eq!(
            next(&visit("scheduled", "resolved", None), &c, SH, night),
            VisitStep::Later(noon + 20 * 3_600_000) // 08:00 next day
        );
        assert_eq!(
            next(
                &visit("scheduled", "resolved", Some(noon - 10 * D)),
                &c,
                SH,
                noon
            ),
            VisitStep::Skip(noon - 10 * D)
        );
        assert!(matches!(
            next(
                &visit("scheduled", "resolved", Some(noon - 31 * D)),
                &c,
                SH,
                noon
            ),
            VisitStep::Send { .. }
        ));
        assert_eq!(
            next(&visit("scheduled", "open", None), &c, SH, noon),
            VisitStep::Cancel
        );
        assert_eq!(
            next(&visit("sent", "resolved", None), &c, SH, noon),
            VisitStep::Expire
        );
        assert_eq!(
            next(&visit("sent", "acknowledged", None), &c, SH, noon),
            VisitStep::Cancel
        );
    }
}
