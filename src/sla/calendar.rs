//! Local time rules, pure: quiet hours (a daily window when no message of a class goes out,
//! `"21:00-08:00"`) and the business calendar of tiers that do not work nights (work hours,
//! work days, holidays). Instants are UTC milliseconds; the rules read them in the configured
//! zone, so a window follows the operator's clock across daylight-saving changes where the zone
//! has them.

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

/// A daily window `start-end` in local time, `"21:00-08:00"` (it may cross midnight). Start
/// equal to end: an empty window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Window {
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: write a window as \"21:00-08:00\""))?;
        let t = |x: &str| {
            NaiveTime::parse_from_str(x.trim(), "%H:%M")
                .map_err(|_| format!("{s:?}: {:?} is not a time like \"08:00\"", x.trim()))
        };
        Ok(Window {
            start: t(a)?,
            end: t(b)?,
        })
    }

    /// Whether the local time of day `t` is inside the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// The first instant at or after `ms` outside the window (quiet hours) — `ms` itself when
    /// it is outside already.
    pub fn next_outside(&self, zone: Tz, ms: i64) -> i64 {
        if self.start == self.end {
            return ms;
        }
        let Some(local) = zone.timestamp_millis_opt(ms).single() else {
            return ms;
        };
        if !self.contains(local.time()) {
            return ms;
        }
        // Inside: the window ends today at `end`, or tomorrow when it crosses midnight and we
        // are before midnight.
        let mut day = local.date_naive();
        if self.start > self.end && local.time() >= self.start {
            day = day.succ_opt().unwrap_or(day);
        }
        local_instant(zone, day, self.end).unwrap_or(ms).max(ms)
    }

    /// The first instant at or after `ms` inside the window (work hours).
    pub fn next_inside(&self, zone: Tz, ms: i64) -> i64 {
        let Some(local) = zone.timestamp_millis_opt(ms).single() else {
            return ms;
        };
        if self.contains(local.time()) {
            return ms;
        }
        let mut day = local.date_naive();
        if local.time() >= self.start {
            day = day.succ_opt().unwrap_or(day);
        }
        local_instant(zone, day, self.start).unwrap_or(ms).max(ms)
    }
}

/// The UTC instant of a local date and time (the earlier one when a clock change repeats it;
/// an hour later when a clock change skips it).
fn local_instant(zone: Tz, day: NaiveDate, t: NaiveTime) -> Option<i64> {
    let naive = day.and_time(t);
    zone.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|d| d.timestamp_millis())
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Window::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[sla.calendar]`: when the tiers in `tiers` are at work. Notices to those tiers wait in the
/// outbox for the next working instant; the deadlines themselves are the customer's and run on
/// the wall clock. Tier 1 (the service window) works around the clock unless listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// Tiers that keep these hours (e.g. `[2, 3]`); empty: every tier works 24×7.
    #[serde(default)]
    pub tiers: Vec<crate::domain::Tier>,
    /// Work hours each work day, `"08:30-17:30"`.
    #[serde(default = "default_hours")]
    pub hours: Window,
    /// ISO weekdays that are work days (1 = Monday … 7 = Sunday).
    #[serde(default = "default_days")]
    pub days: Vec<u32>,
    /// Dates off (`"2026-10-01"`), and dates worked although on a weekend (`workdays`, the
    /// make-up days of Chinese public holidays).
    #[serde(default)]
    pub holidays: Vec<NaiveDate>,
    #[serde(default)]
    pub workdays: Vec<NaiveDate>,
}

fn default_hours() -> Window {
    Window::parse("08:30-17:30").expect("constant")
}

fn default_days() -> Vec<u32> {
    vec![1, 2, 3, 4, 5]
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            tiers: Vec::new(),
            hours: default_hours(),
            days: default_days(),
            holidays: Vec::new(),
            workdays: Vec::new(),
        }
    }
}

impl Calendar {
    /// # Errors
    /// Naming the key and the reason.
    pub fn check(&self) -> Result<(), String> {
        if let Some(d) = self.days.iter().find(|d| !(1..=7).contains(*d)) {
            return Err(format!(
                "sla.calendar.days: {d} is not an ISO weekday (1 = Monday … 7 = Sunday)"
            ));
        }
        if !self.tiers.is_empty() && (self.days.is_empty() || self.hours.start == self.hours.end) {
            return Err("sla.calendar: a calendar with tiers needs work days and hours".into());
        }
        Ok(())
    }

    fn works_on(&self, day: NaiveDate) -> bool {
        if self.workdays.contains(&day) {
            return true;
        }
        !self.holidays.contains(&day) && self.days.contains(&day.weekday().number_from_monday())
    }

    /// The first instant at or after `ms` when `tier` is at work (`ms` for a 24×7 tier).
    pub fn next_open(&self, zone: Tz, tier: crate::domain::Tier, ms: i64) -> i64 {
        if !self.tiers.contains(&tier) {
            return ms;
        }
        let mut at = ms;
        // A year of days off in a row is a configuration nobody means; stop looking there.
        for _ in 0..400 {
            let Some(local) = zone.timestamp_millis_opt(at).single() else {
                return at;
            };
            let day = local.date_naive();
            if self.works_on(day) {
                let open = self.hours.next_inside(zone, at);
                let same_day = zone
                    .timestamp_millis_opt(open)
                    .single()
                    .is_some_and(|o| o.date_naive() == day);
                if same_day {
                    return open;
                }
            }
            let next = day.succ_opt().unwrap_or(day);
            at = local_instant(zone, next, NaiveTime::MIN).unwrap_or(at + 86_400_000);
        }
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> crate::domain::Tier {
        crate::domain::Tier::new(n).unwrap()
    }

    fn at(zone: Tz, s: &str) -> i64 {
        let n = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        zone.from_local_datetime(&n).unwrap().timestamp_millis()
    }

    const SH: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn a_night_window_crosses_midnight_and_ends_in_the_morning() {
        let w = Window::parse("21:00-08:00").unwrap();
        assert_eq!(
            w.next_outside(SH, at(SH, "2026-12-04 22:30")),
            at(SH, "2026-12-05 08:00")
        );
        assert_eq!(
            w.next_outside(SH, at(SH, "2026-12-05 03:00")),
            at(SH, "2026-12-05 08:00")
        );
        let noon = at(SH, "2026-12-05 12:00");
        assert_eq!(w.next_outside(SH, noon), noon);
        assert_eq!(
            w.next_outside(SH, at(SH, "2026-12-05 21:00")),
            at(SH, "2026-12-06 08:00")
        );
        let empty = Window::parse("00:00-00:00").unwrap();
        assert_eq!(empty.next_outside(SH, noon), noon);
        for bad in ["21:00", "25:00-08:00", "9pm-8am", ""] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tier_on_office_hours_is_told_on_the_next_working_morning() {
        let c = Calendar {
            tiers: vec![t(2), t(3)],
            holidays: vec![NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()],
            workdays: vec![NaiveDate::from_ymd_opt(2026, 12, 13).unwrap()],
            ..Calendar::default()
        };
        c.check().unwrap();
        // Friday 2026-12-04 evening -> Monday is a holiday -> Tuesday 08:30.
        let fri = at(SH, "2026-12-04 19:00");
        assert_eq!(c.next_open(SH, t(2), fri), at(SH, "2026-12-08 08:30"));
        // Tier 1 works around the clock.
        assert_eq!(c.next_open(SH, t(1), fri), fri);
        // Inside work hours: at once.
        let tue = at(SH, "2026-12-08 10:00");
        assert_eq!(c.next_open(SH, t(3), tue), tue);
        // Early morning on a work day: that day's opening.
        assert_eq!(
            c.next_open(SH, t(2), at(SH, "2026-12-09 06:00")),
            at(SH, "2026-12-09 08:30")
        );
        // Saturday 12th -> Sunday 13th is a make-up work day.
        assert_eq!(
            c.next_open(SH, t(2), at(SH, "2026-12-12 09:00")),
            at(SH, "2026-12-13 08:30")
        );
        let bad = toml::from_str::<Calendar>("tiers = [2, 5]").unwrap_err();
        assert!(bad.to_string().contains("tier 5 is not 1 to 4"), "{bad}");
    }
}
