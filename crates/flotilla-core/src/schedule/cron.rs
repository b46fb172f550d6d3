//! The five-field cron of a `cron(MIN HOUR DOM MON DOW)` schedule: parsing each field into the
//! set of values it allows, and finding the next or previous matching wall-clock minute.
//!
//! Matching here is purely civil (wall-clock, no zone): turning a matching minute into an instant,
//! with the daylight-saving rules, is `Schedule`'s job. Day-of-month and day-of-week follow Vixie
//! cron: when both are restricted a day matches if either does; `?` reads as `*` (the AWS habit
//! of writing `?` in one of them is accepted, not required).

use jiff::civil::{Date, DateTime, Time};

use super::ScheduleError;

/// How many days a search walks before deciding a cron never matches again. Thirty years covers
/// `0 0 29 2 *` across a skipped leap year (2100) with room to spare.
const SEARCH_DAYS: u32 = 366 * 30;

/// One parsed cron expression: a bit set per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
}

struct Field {
    name: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
    example: &'static str,
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[], example: "0, */15 or 0,30" };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[], example: "3, 9-17 or */6" };
const DOM: Field = Field { name: "day of month", min: 1, max: 31, names: &[], example: "1, 15 or 1-7" };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    example: "1, 1-6 or JAN,JUL",
};
// Day of week 7 is Sunday again, as in every cron; it is folded onto 0 after parsing.
const DOW: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    example: "1-5, MON-FRI or 0 (Sunday)",
};

impl Cron {
    /// Parses the five whitespace-separated fields; `expr` is the whole schedule, for messages.
    pub(crate) fn parse(fields: &str, expr: &str) -> Result<Cron, ScheduleError> {
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(ScheduleError::CronFieldCount { expr: expr.to_owned(), count: parts.len() });
        }
        let minutes = parse_field(parts[0], &MINUTE, expr)?;
        let hours = parse_field(parts[1], &HOUR, expr)?;
        let dom = parse_field(parts[2], &DOM, expr)?;
        let months = parse_field(parts[3], &MONTH, expr)?;
        let mut dow = parse_field(parts[4], &DOW, expr)?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        let cron = Cron {
            minutes,
            // The masks fit their types: parse_field only sets bits min..=max.
            hours: u32::try_from(hours).unwrap_or(u32::MAX),
            days_of_month: u32::try_from(dom).unwrap_or(u32::MAX),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            days_of_week: u8::try_from(dow).unwrap_or(u8::MAX),
            dom_restricted: restricted(parts[2]),
            dow_restricted: restricted(parts[4]),
        };
        cron.check_possible(expr)?;
        Ok(cron)
    }

    /// Refuses a day of month that no chosen month has (`0 0 31 2 *`): it would never fire, and
    /// saying so at creation beats a template that silently never runs.
    fn check_possible(&self, expr: &str) -> Result<(), ScheduleError> {
        if !self.dom_restricted || self.dow_restricted {
            return Ok(());
        }
        const LONGEST: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let fits = (1..=12u8).any(|m| {
            self.months & (1 << m) != 0 && (1..=LONGEST[usize::from(m - 1)]).any(|d| self.days_of_month & (1 << d) != 0)
        });
        if fits { Ok(()) } else { Err(ScheduleError::CronNever { expr: expr.to_owned() }) }
    }

    /// The smallest gap between two occurrences, in minutes, judged on one day's pattern of
    /// hours and minutes (and the wrap to the next day). Day restrictions only widen gaps, so
    /// this never understates how often the schedule fires.
    pub(crate) fn min_gap_minutes(&self) -> u32 {
        let mut times = Vec::new();
        for h in 0..24u32 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            for m in 0..60u32 {
                if self.minutes & (1 << m) != 0 {
                    times.push(h * 60 + m);
                }
            }
        }
        let (Some(first), Some(last)) = (times.first().copied(), times.last().copied()) else { return u32::MAX };
        let wrap = 1440 - last + first;
        times.windows(2).map(|w| w[1] - w[0]).fold(wrap, u32::min)
    }

    fn day_matches(&self, date: Date) -> bool {
        let month = u32::try_from(date.month()).unwrap_or(0);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << u32::try_from(date.day()).unwrap_or(0)) != 0;
        let dow = self.days_of_week & (1 << u32::try_from(date.weekday().to_sunday_zero_offset()).unwrap_or(0)) != 0;
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first minute of day at or after `from` (minutes since midnight) that matches.
    fn first_time_from(&self, from: u32) -> Option<u32> {
        (from..1440).find(|t| self.hours & (1 << (t / 60)) != 0 && self.minutes & (1 << (t % 60)) != 0)
    }

    /// The last minute of day at or before `upto` that matches.
    fn last_time_upto(&self, upto: u32) -> Option<u32> {
        (0..=upto.min(1439)).rev().find(|t| self.hours & (1 << (t / 60)) != 0 && self.minutes & (1 << (t % 60)) != 0)
    }

    /// The first matching wall-clock minute at or after `from`.
    pub(crate) fn next_civil(&self, from: DateTime) -> Option<DateTime> {
        let mut date = from.date();
        let mut start = u32::try_from(from.hour()).ok()? * 60 + u32::try_from(from.minute()).ok()?;
        if from.second() != 0 || from.subsec_nanosecond() != 0 {
            start += 1;
        }
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date)
                && let Some(t) = self.first_time_from(start)
            {
                return at_minute(date, t);
            }
            date = date.tomorrow().ok()?;
            start = 0;
        }
        None
    }

    /// The last matching wall-clock minute at or before `upto`.
    pub(crate) fn previous_civil(&self, upto: DateTime) -> Option<DateTime> {
        let mut date = upto.date();
        let mut end = u32::try_from(upto.hour()).ok()? * 60 + u32::try_from(upto.minute()).ok()?;
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date)
                && let Some(t) = self.last_time_upto(end)
            {
                return at_minute(date, t);
            }
            date = date.yesterday().ok()?;
            end = 1439;
        }
        None
    }
}

fn at_minute(date: Date, minute_of_day: u32) -> Option<DateTime> {
    let hour = i8::try_from(minute_of_day / 60).ok()?;
    let minute = i8::try_from(minute_of_day % 60).ok()?;
    Some(date.to_datetime(Time::new(hour, minute, 0, 0).ok()?))
}

fn restricted(field: &str) -> bool {
    field != "*" && field != "?"
}

/// Parses one field (`*`, `?`, `N`, `A-B`, `*/S`, `A-B/S`, `A/S`, comma lists, names) into a bit
/// set of the allowed values.
fn parse_field(text: &str, field: &Field, expr: &str) -> Result<u64, ScheduleError> {
    let bad = |reason: String| ScheduleError::CronField {
        expr: expr.to_owned(),
        field: field.name,
        value: text.to_owned(),
        reason,
    };
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(bad(format!("an empty list item; write values separated by commas, e.g. {}", field.example)));
        }
        if let Some(c) = item.chars().find(|c| matches!(c, 'L' | 'W' | '#')) {
            return Err(bad(format!("`{c}` (last/nearest-weekday/nth) is not supported; write {}", field.example)));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("step `{step}` must be a whole number of at least 1, e.g. */15")))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if range == "?" && field.name != DOM.name && field.name != DOW.name {
                return Err(bad("`?` is only for day of month or day of week; write `*`".to_owned()));
            }
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, field).map_err(&bad)?;
            let b = value(b, field).map_err(&bad)?;
            if a > b {
                return Err(bad(format!("the range {a}-{b} runs backwards; write the smaller value first")));
            }
            (a, b)
        } else {
            let v = value(range, field).map_err(&bad)?;
            // `A/S` means from A to the end of the field, stepping S.
            (v, if step.is_some() { field.max } else { v })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            set |= 1 << v;
            v = match v.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
    }
    Ok(set)
}

fn value(text: &str, field: &Field) -> Result<u8, String> {
    if let Some(i) = field.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Month names count from 1, day names from 0 (SUN).
        return u8::try_from(i).map(|i| i + field.min).map_err(|e| e.to_string());
    }
    let n: u32 = text.parse().map_err(|_| {
        if field.names.is_empty() {
            format!("`{text}` is not a number; write {}", field.example)
        } else {
            format!("`{text}` is not a number or a name such as {}; write {}", field.names[0], field.example)
        }
    })?;
    match u8::try_from(n) {
        Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
        _ => Err(format!("{n} is out of range: write a {} from {} to {}", field.name, field.min, field.max)),
    }
}
