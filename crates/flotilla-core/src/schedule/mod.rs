//! Schedules: the `cron(...)`, `rate(...)` and `at(...)` expressions of ../shared/CLI.md
//! "Schedules", with an IANA time zone, their occurrences, and the catch-up rule a scheduler
//! applies after time it was not watching.
//!
//! Architecture invariant: no clock is read here. "Now" comes in as an argument, so every rule
//! (an `at` in the past, what a server that was down must fire) is a table test.
//!
//! Daylight saving, for `cron` and `at` (a `rate` counts absolute time and never sees it):
//! - A wall-clock time that does not exist (Europe/Berlin 2026-03-29 02:30, skipped when clocks
//!   jump from 02:00 to 03:00) fires once, at the first instant after the gap (03:00 local).
//!   Every skipped minute maps to that one instant, so `*/15` over the gap fires once at 03:00,
//!   not four times. This is what Vixie cron does (jobs of the skipped hour run right after the
//!   change) and what an operator expects of "02:30 daily": it runs that night, as soon as it
//!   can, rather than being skipped for the day or shifted to 03:30.
//! - A wall-clock time that happens twice (Berlin 2026-10-25 02:30) fires once, at the first
//!   of the two instants (still summer time): a daily job must not run twice in one night.
//!
//! The instants come from the IANA database compiled into the binary (jiff's bundled tzdb), so
//! a host without /usr/share/zoneinfo computes the same occurrences.

mod cron;
#[cfg(test)]
mod tests;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::UnixMillis;
use cron::Cron;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// How far a search around a wall-clock time reaches to be sure of the instant it lands on: more
/// than any zone's change of offset (Pacific/Apia skipped a whole day in 2011).
const SLACK_MS: i64 = 26 * HOUR_MS;

/// How often a schedule may fire at most; each kind of schedule brings its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleRules {
    /// The shortest interval between two occurrences, in seconds.
    pub min_interval_secs: u32,
}

impl ScheduleRules {
    /// The general minimum: cron faster than every 5 minutes is refused (ssm-inspector-spec §5.2).
    pub const GENERAL: ScheduleRules = ScheduleRules { min_interval_secs: 5 * 60 };
    /// State Manager associations: rate and cron of at least 30 minutes (§5.2).
    pub const ASSOCIATIONS: ScheduleRules = ScheduleRules { min_interval_secs: 30 * 60 };
}

/// The default grace: an occurrence missed by less than this still fires on start.
pub const DEFAULT_GRACE_MS: i64 = HOUR_MS;

/// The most missed occurrences one catch-up lists; older ones are dropped (the newest handled
/// occurrence is the scheduler's mark, so nothing below it is looked at again).
pub const MAX_MISSED_LISTED: usize = 100;

/// Why a schedule was refused. Each message says what was wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "the schedule is empty: write cron(MIN HOUR DOM MON DOW), rate(N minutes|hours|days) or at(YYYY-MM-DDTHH:MM:SS)"
    )]
    Empty,
    #[error(
        "schedule `{expr}` is not cron(...), rate(...) or at(...): write e.g. `cron(0 3 * * *)` (daily at 03:00), `rate(1 hour)` or `at(2026-12-24T18:00:00)`"
    )]
    UnknownForm { expr: String },
    #[error(
        "schedule `{expr}` has {count} cron fields; Flotilla's cron has five, MIN HOUR DOM MON DOW (no seconds or year field): e.g. `cron(0 3 * * *)`"
    )]
    CronFieldCount { expr: String, count: usize },
    #[error("schedule `{expr}`: {field} `{value}`: {reason}")]
    CronField { expr: String, field: &'static str, value: String, reason: String },
    #[error(
        "schedule `{expr}` never fires: no chosen month has that day of month; pick a day that exists (1-28 always do)"
    )]
    CronNever { expr: String },
    #[error(
        "schedule `{expr}`: write rate(N minutes|hours|days) with N a whole number, e.g. `rate(30 minutes)` or `rate(1 hour)`"
    )]
    RateForm { expr: String },
    #[error("schedule `{expr}`: a rate must be at least 1; write e.g. `rate(30 minutes)`")]
    RateZero { expr: String },
    #[error("schedule `{expr}`: write `{suggestion}` (singular for 1, plural otherwise)")]
    RateUnit { expr: String, suggestion: String },
    #[error(
        "schedule `{expr}` fires every {every}, more often than the minimum of {minimum}: write `rate({minimum})` or slower"
    )]
    TooFrequent { expr: String, every: String, minimum: String },
    #[error("schedule `{expr}`: write at(YYYY-MM-DDTHH:MM:SS), e.g. `at(2026-12-24T18:00:00)`")]
    AtForm { expr: String },
    #[error("schedule `{expr}`: {reason}; write a real date and time, e.g. `at(2026-12-24T18:00:00)`")]
    AtInvalid { expr: String, reason: String },
    #[error("schedule `{expr}` in {tz} is {at}, which is in the past (now {now}): give a time in the future")]
    AtPast { expr: String, tz: String, at: String, now: String },
    #[error("unknown time zone `{name}`: write an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`")]
    UnknownTimeZone { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(Cron),
    Rate { every_ms: i64 },
    At(DateTime),
}

/// A parsed schedule with its time zone. Occurrences are instants in Unix milliseconds.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
    tz_name: String,
    anchor: UnixMillis,
}

/// What a scheduler does after looking at the occurrences since the last one it handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// The one occurrence to fire now: the newest due one, when it is within grace.
    pub fire: Option<UnixMillis>,
    /// Occurrences to record as missed (outside grace, or superseded by a newer one), newest
    /// first, at most [`MAX_MISSED_LISTED`].
    pub missed: Vec<UnixMillis>,
    /// The next occurrence after now, to sleep until.
    pub next: Option<UnixMillis>,
}

impl Schedule {
    /// Parses `expr` in the IANA zone `tz` (None: UTC), refusing one that fires more often than
    /// `rules` allow. A bare five-field cron (`0 3 * * *`) reads as `cron(0 3 * * *)`.
    pub fn parse(expr: &str, tz: Option<&str>, rules: &ScheduleRules) -> Result<Schedule, ScheduleError> {
        let tz_name = match tz.map(str::trim) {
            None | Some("") => "UTC".to_owned(),
            Some(name) => name.to_owned(),
        };
        let zone = TimeZone::get(&tz_name).map_err(|_| ScheduleError::UnknownTimeZone { name: tz_name.clone() })?;
        let text = expr.trim();
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let kind = if let Some(inner) = strip_call(text, "cron") {
            Kind::Cron(Cron::parse(inner, text)?)
        } else if let Some(inner) = strip_call(text, "rate") {
            Kind::Rate { every_ms: parse_rate(inner, text)? }
        } else if let Some(inner) = strip_call(text, "at") {
            Kind::At(parse_at(inner, text)?)
        } else if text.contains('(') {
            return Err(ScheduleError::UnknownForm { expr: text.to_owned() });
        } else {
            let fields = text.split_whitespace().count();
            if fields < 5 {
                return Err(ScheduleError::UnknownForm { expr: text.to_owned() });
            }
            Kind::Cron(Cron::parse(text, text)?)
        };
        let min_ms = i64::from(rules.min_interval_secs) * 1000;
        let every_ms = match &kind {
            Kind::Cron(c) => i64::from(c.min_gap_minutes()).saturating_mul(MINUTE_MS),
            Kind::Rate { every_ms } => *every_ms,
            Kind::At(_) => i64::MAX,
        };
        if every_ms < min_ms {
            return Err(ScheduleError::TooFrequent {
                expr: text.to_owned(),
                every: human(every_ms),
                minimum: human(min_ms),
            });
        }
        Ok(Schedule { kind, tz: zone, tz_name, anchor: 0 })
    }

    /// Parses as [`Schedule::parse`] and also refuses an `at(...)` that is not after `now`: a
    /// one-shot schedule created in the past would never fire.
    pub fn create(
        expr: &str,
        tz: Option<&str>,
        rules: &ScheduleRules,
        now: UnixMillis,
    ) -> Result<Schedule, ScheduleError> {
        let schedule = Schedule::parse(expr, tz, rules)?;
        if let Kind::At(_) = schedule.kind
            && let Some(at) = schedule.next_after(i64::MIN + 1)
            && at <= now
        {
            return Err(ScheduleError::AtPast {
                expr: expr.trim().to_owned(),
                tz: schedule.tz_name.clone(),
                at: rfc3339(at),
                now: rfc3339(now),
            });
        }
        Ok(schedule)
    }

    /// Sets where a `rate(...)` counts from (its occurrences are `anchor + k * interval`): a
    /// schedule's creation time, so `rate(1 day)` runs at the time of day it was made. The
    /// default anchor is the Unix epoch. Cron and at ignore it.
    pub fn anchored(mut self, anchor: UnixMillis) -> Schedule {
        self.anchor = anchor;
        self
    }

    /// The IANA name of the schedule's time zone.
    pub fn time_zone(&self) -> &str {
        &self.tz_name
    }

    /// Whether this is a one-shot `at(...)` schedule.
    pub fn is_one_shot(&self) -> bool {
        matches!(self.kind, Kind::At(_))
    }

    /// Whether this is a `rate(...)` schedule.
    pub fn is_rate(&self) -> bool {
        matches!(self.kind, Kind::Rate { .. })
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: UnixMillis) -> Option<UnixMillis> {
        match &self.kind {
            Kind::Rate { every_ms } => {
                let k = (t.checked_sub(self.anchor)?).div_euclid(*every_ms).checked_add(1)?;
                self.anchor.checked_add(k.checked_mul(*every_ms)?)
            }
            Kind::At(dt) => self.resolve(*dt).filter(|at| *at > t),
            Kind::Cron(cron) => {
                // Start a day early on the wall clock: in a repeated hour the wall clock of `t`
                // is later than minutes that resolve after `t` would suggest.
                let mut civil = self.civil(t.checked_sub(SLACK_MS)?)?;
                loop {
                    let c = cron.next_civil(civil)?;
                    let at = self.resolve(c)?;
                    if at > t {
                        return Some(at);
                    }
                    civil = c.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
                }
            }
        }
    }

    /// The last occurrence strictly before `t`.
    pub fn previous_before(&self, t: UnixMillis) -> Option<UnixMillis> {
        match &self.kind {
            Kind::Rate { every_ms } => {
                let k = (t.checked_sub(self.anchor)?.checked_sub(1)?).div_euclid(*every_ms);
                self.anchor.checked_add(k.checked_mul(*every_ms)?)
            }
            Kind::At(dt) => self.resolve(*dt).filter(|at| *at < t),
            Kind::Cron(cron) => {
                let mut civil = self.civil(t.checked_add(SLACK_MS)?)?;
                loop {
                    let c = cron.previous_civil(civil)?;
                    let at = self.resolve(c)?;
                    if at < t {
                        return Some(at);
                    }
                    civil = c.checked_sub(jiff::SignedDuration::from_mins(1)).ok()?;
                }
            }
        }
    }

    /// The catch-up rule. `handled` is the newest occurrence already fired or recorded missed
    /// (or the schedule's creation time when there is none); every occurrence in
    /// `(handled, now]` is either the ONE to fire, the newest, when `now - it <= grace_ms`, or
    /// missed. So a server down at 02:00 and back at 02:40 fires the 02:00 run once; back at
    /// 04:00 it records 02:00 missed; and of 02:00, 02:30 and 03:00 missed together by a server
    /// back at 03:10, only 03:00 fires.
    pub fn catch_up(&self, handled: UnixMillis, now: UnixMillis, grace_ms: i64) -> CatchUp {
        let mut out = CatchUp { next: self.next_after(now), ..CatchUp::default() };
        let mut cursor = now.saturating_add(1);
        let mut newest = true;
        while let Some(o) = self.previous_before(cursor) {
            if o <= handled {
                break;
            }
            if newest && now - o <= grace_ms {
                out.fire = Some(o);
            } else {
                if out.missed.len() >= MAX_MISSED_LISTED {
                    break;
                }
                out.missed.push(o);
            }
            newest = false;
            cursor = o;
        }
        out
    }

    fn civil(&self, t: UnixMillis) -> Option<DateTime> {
        Some(self.tz.to_datetime(Timestamp::from_millisecond(t).ok()?))
    }

    /// The instant a wall-clock time names in this zone, by the daylight-saving rules above.
    fn resolve(&self, dt: DateTime) -> Option<UnixMillis> {
        let ts = match self.tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok()?,
            // The earlier of the two instants is the one under the offset before the change.
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok()?,
            // Under the new offset the time lands before the gap; the transition that follows
            // is the first instant after it.
            AmbiguousOffset::Gap { after, .. } => {
                let early = after.to_timestamp(dt).ok()?;
                self.tz.following(early).next()?.timestamp()
            }
        };
        Some(ts.as_millisecond())
    }
}

fn strip_call<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(name)?.trim_start().strip_prefix('(')?;
    rest.strip_suffix(')').map(str::trim)
}

fn parse_rate(inner: &str, expr: &str) -> Result<i64, ScheduleError> {
    let form = || ScheduleError::RateForm { expr: expr.to_owned() };
    let mut parts = inner.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else { return Err(form()) };
    let n: i64 = n.parse().map_err(|_| form())?;
    if n <= 0 {
        return Err(ScheduleError::RateZero { expr: expr.to_owned() });
    }
    let (singular, unit_ms) = match unit {
        "minute" | "minutes" => ("minute", MINUTE_MS),
        "hour" | "hours" => ("hour", HOUR_MS),
        "day" | "days" => ("day", DAY_MS),
        _ => return Err(form()),
    };
    let plural = unit.len() != singular.len();
    if (n == 1) == plural {
        let suggestion = if n == 1 { format!("rate(1 {singular})") } else { format!("rate({n} {singular}s)") };
        return Err(ScheduleError::RateUnit { expr: expr.to_owned(), suggestion });
    }
    n.checked_mul(unit_ms).ok_or_else(form)
}

fn parse_at(inner: &str, expr: &str) -> Result<DateTime, ScheduleError> {
    let form = || ScheduleError::AtForm { expr: expr.to_owned() };
    let b = inner.as_bytes();
    let shape_ok = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(form());
    }
    let num = |r: std::ops::Range<usize>| inner.get(r).and_then(|s| s.parse::<i16>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) =
        (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19))
    else {
        return Err(form());
    };
    let small = |v: i16| i8::try_from(v).map_err(|_| form());
    DateTime::new(y, small(mo)?, small(d)?, small(h)?, small(mi)?, small(s)?, 0)
        .map_err(|e| ScheduleError::AtInvalid { expr: expr.to_owned(), reason: e.to_string() })
}

/// `5 minutes`, `1 hour`, `90 seconds`: how the messages name an interval.
fn human(ms: i64) -> String {
    let (n, unit) = if ms % DAY_MS == 0 {
        (ms / DAY_MS, "day")
    } else if ms % HOUR_MS == 0 {
        (ms / HOUR_MS, "hour")
    } else if ms % MINUTE_MS == 0 {
        (ms / MINUTE_MS, "minute")
    } else {
        (ms / 1000, "second")
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

/// RFC 3339 in UTC, for messages.
fn rfc3339(t: UnixMillis) -> String {
    Timestamp::from_millisecond(t).map(|ts| ts.to_string()).unwrap_or_else(|_| format!("{t} ms"))
}
