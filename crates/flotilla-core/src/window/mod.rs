//! Maintenance windows (ssm-inspector-spec §6): a window's rules and the execution planner.
//!
//! A window opens at each occurrence of its schedule (`crate::schedule`, the general rules,
//! with its IANA zone) inside its optional start and end dates, stays open `duration` hours, and
//! starts no new task after `end - cutoff` (start 15:00, duration 3 h, cutoff 1 h: nothing new
//! after 17:00). Its tasks run by priority, lower first; tasks of equal priority run together,
//! and the next group starts when the whole group before it has finished.
//!
//! Choices, each with its reason:
//! - A schedule with no occurrence between the start and end dates (or after now) is refused,
//!   not warned about: such a window can never open, so it is always a typo in a date or in the
//!   schedule, and a warning scrolled past would leave a window that silently never runs.
//! - Dates are instants: an ISO 8601 text with an offset (`2026-04-01T00:00:00+02:00`, `...Z`)
//!   is that instant; one without (`2026-04-01`, `2026-04-01T06:00:00`) is read in UTC, as the
//!   spec says they are independent of the schedule's time zone. An occurrence counts when its
//!   start is at or after the start date and before the end date.
//! - Work still running at the window's end is reported, and cancelled when its task says
//!   `CANCEL_TASK` (the brief's rule; AWS sends that cancel at the cutoff instead).
//!
//! Pure: "now" is an argument, as everywhere in this crate.

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use crate::UnixMillis;
use crate::schedule::{Schedule, ScheduleError, ScheduleRules};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// Windows use the general schedule rules (at most every 5 minutes).
pub const RULES: ScheduleRules = ScheduleRules::GENERAL;
/// The longest window, in hours (§6.1).
pub const MAX_DURATION_HOURS: u32 = 24;
/// How many occurrences `windows next` lists at most.
pub const MAX_NEXT: usize = 100;

/// Why a window's settings were refused; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "window name `{0}`: a name has 3 to 128 characters, letters, digits, _ . and - only (e.g. nightly-patching)"
    )]
    Name(String),
    #[error("window name `{0}` has the shape of a window id (mw-...): choose another name")]
    NameLikeId(String),
    #[error("duration {0} h is outside 1 to 24 hours: give the window's length in whole hours, e.g. --duration 3")]
    Duration(u32),
    #[error(
        "cutoff {cutoff} h is not less than the duration {duration} h: the cutoff is how many hours before the \
         window's end no new task starts, from 0 to {max} here"
    )]
    Cutoff { cutoff: u32, duration: u32, max: u32 },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(
        "date `{0}` is not ISO 8601: write e.g. 2026-04-01, 2026-04-01T06:00:00 (UTC) or 2026-04-01T06:00:00+02:00"
    )]
    Date(String),
    #[error("the end date {end} is before the start date {start}: give an end date after the start date")]
    EndBeforeStart { start: String, end: String },
    #[error(
        "schedule `{schedule}` never occurs {between}: the window would never open; change the schedule or the dates"
    )]
    Never { schedule: String, between: String },
}

/// A window's settings as an operator gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub name: String,
    pub schedule: String,
    /// IANA zone of the schedule; None is UTC.
    pub timezone: Option<String>,
    pub duration_hours: u32,
    pub cutoff_hours: u32,
    pub start_date: Option<UnixMillis>,
    pub end_date: Option<UnixMillis>,
}

/// Checks a window name: 3 to 128 of `[a-zA-Z0-9_.-]`, and not the shape of a window id.
pub fn validate_name(name: &str) -> Result<(), WindowError> {
    let ok = (3..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(WindowError::Name(name.to_owned()));
    }
    if is_id_shaped(name) {
        return Err(WindowError::NameLikeId(name.to_owned()));
    }
    Ok(())
}

/// `mw-` and 16 lowercase hex digits: what window ids look like.
pub fn is_id_shaped(text: &str) -> bool {
    text.strip_prefix("mw-").is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks duration (1–24 h) and cutoff (0 to duration − 1 h).
pub fn validate_hours(duration_hours: u32, cutoff_hours: u32) -> Result<(), WindowError> {
    if !(1..=MAX_DURATION_HOURS).contains(&duration_hours) {
        return Err(WindowError::Duration(duration_hours));
    }
    if cutoff_hours >= duration_hours {
        return Err(WindowError::Cutoff { cutoff: cutoff_hours, duration: duration_hours, max: duration_hours - 1 });
    }
    Ok(())
}

/// Parses an ISO 8601 date or date-time (see the module comment for how one without an
/// offset reads).
pub fn parse_date(text: &str) -> Result<UnixMillis, WindowError> {
    let t = text.trim();
    let bad = || WindowError::Date(text.to_owned());
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(dt) = t.parse::<DateTime>() {
        return TimeZone::UTC.to_timestamp(dt).map(|ts| ts.as_millisecond()).map_err(|_| bad());
    }
    if let Ok(d) = t.parse::<Date>() {
        return TimeZone::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map(|ts| ts.as_millisecond())
            .map_err(|_| bad());
    }
    Err(bad())
}

/// The window's schedule, parsed. A `rate(...)` counts from the start date when there is one,
/// else from `anchor` (when the schedule was set).
pub fn schedule_of(spec: &WindowSpec, anchor: UnixMillis) -> Result<Schedule, WindowError> {
    let s = Schedule::parse(&spec.schedule, spec.timezone.as_deref(), &RULES)?;
    Ok(s.anchored(spec.start_date.unwrap_or(anchor)))
}

/// Checks every rule of a window created or changed at `now`: name, hours, schedule (an `at` in
/// the past refused), dates in order, and at least one occurrence from now (or the start date)
/// until the end date. Returns the parsed schedule, anchored at `now`.
pub fn check(spec: &WindowSpec, now: UnixMillis) -> Result<Schedule, WindowError> {
    validate_name(&spec.name)?;
    validate_hours(spec.duration_hours, spec.cutoff_hours)?;
    Schedule::create(&spec.schedule, spec.timezone.as_deref(), &RULES, now)?;
    if let (Some(start), Some(end)) = (spec.start_date, spec.end_date)
        && end < start
    {
        return Err(WindowError::EndBeforeStart { start: utc(start), end: utc(end) });
    }
    let schedule = schedule_of(spec, now)?;
    if occurrences(&schedule, now, spec.start_date, spec.end_date, 1).is_empty() {
        let from = spec.start_date.map_or(now, |s| s.max(now));
        let between = match spec.end_date {
            Some(end) => format!("between {} and the end date {}", utc(from), utc(end)),
            None => format!("after {}", utc(from)),
        };
        return Err(WindowError::Never { schedule: spec.schedule.trim().to_owned(), between });
    }
    Ok(schedule)
}

/// Whether an occurrence starting at `at` is inside the window's dates.
pub fn in_dates(at: UnixMillis, start_date: Option<UnixMillis>, end_date: Option<UnixMillis>) -> bool {
    start_date.is_none_or(|s| at >= s) && end_date.is_none_or(|e| at < e)
}

/// The next `count` (at most [`MAX_NEXT`]) occurrences strictly after `after`, inside the dates.
pub fn occurrences(
    schedule: &Schedule,
    after: UnixMillis,
    start_date: Option<UnixMillis>,
    end_date: Option<UnixMillis>,
    count: usize,
) -> Vec<UnixMillis> {
    let mut out = Vec::new();
    // Nothing before the start date counts: search from just before it.
    let mut cursor = match start_date {
        Some(s) if s > after => s - 1,
        _ => after,
    };
    while out.len() < count.min(MAX_NEXT) {
        let Some(next) = schedule.next_after(cursor) else { break };
        if end_date.is_some_and(|e| next >= e) {
            break;
        }
        out.push(next);
        cursor = next;
    }
    out
}

/// `t` in the IANA zone `tz` (None or unknown: UTC) as RFC 3339 with that zone's offset at
/// that instant: `2026-03-29T03:00:00+02:00`.
pub fn local_rfc3339(t: UnixMillis, tz: Option<&str>) -> String {
    let zone = tz.and_then(|name| TimeZone::get(name).ok()).unwrap_or(TimeZone::UTC);
    match Timestamp::from_millisecond(t) {
        Ok(ts) => ts.to_zoned_datetime(zone).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => format!("{t} ms"),
    }
}

fn utc(t: UnixMillis) -> String {
    local_rfc3339(t, None)
}

macro_rules! names {
    ($(#[$meta:meta])* $ty:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($(#[$vmeta])* $variant),+ }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stored and reported name.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| UnknownName {
                    what: $what,
                    value: s.to_owned(),
                    known: $ty::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

/// A name that is not one of an enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {what}: use one of {known}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub known: String,
}

names!(
    /// Where a window execution stands (§6.2's statuses).
    ExecutionStatus, "window execution status", {
        /// Created at its occurrence; no task looked at yet.
        Pending = "PENDING",
        InProgress = "IN_PROGRESS",
        /// Every task ran and succeeded.
        Success = "SUCCESS",
        /// Every task ran; at least one failed (or could not be started).
        Failed = "FAILED",
        /// The window ended with work running, or tasks were not started because of the cutoff.
        TimedOut = "TIMED_OUT",
        /// Reserved for cancelling an execution by hand (not offered yet).
        Cancelling = "CANCELLING",
        Cancelled = "CANCELLED",
        /// The occurrence came while the window's previous execution was still in progress.
        SkippedOverlapping = "SKIPPED_OVERLAPPING",
    }
);

impl ExecutionStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Pending | ExecutionStatus::InProgress | ExecutionStatus::Cancelling)
    }

    /// An execution's outcome from its tasks' final states: TIMED_OUT when any task was not
    /// started or outlived the window, else FAILED when any failed, else SUCCESS.
    pub fn from_tasks(tasks: &[TaskStatus]) -> ExecutionStatus {
        if tasks.iter().any(|t| matches!(t, TaskStatus::NotStarted | TaskStatus::TimedOut | TaskStatus::Cancelled)) {
            ExecutionStatus::TimedOut
        } else if tasks.contains(&TaskStatus::Failed) {
            ExecutionStatus::Failed
        } else {
            ExecutionStatus::Success
        }
    }
}

names!(
    /// Where one task of one execution stands.
    TaskStatus, "window task status", {
        /// Not started yet.
        Pending = "PENDING",
        /// Its command was created and has not finished.
        InProgress = "IN_PROGRESS",
        Success = "SUCCESS",
        /// Its command failed, or it could not be created.
        Failed = "FAILED",
        /// Still running at the window's end; left running (CONTINUE_TASK).
        TimedOut = "TIMED_OUT",
        /// Still running at the window's end; its command was cancelled (CANCEL_TASK).
        Cancelled = "CANCELLED",
        /// Never started: the cutoff had passed.
        NotStarted = "NOT_STARTED",
    }
);

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::InProgress)
    }
}

names!(
    /// What happens to a task's work still running at the window's end.
    CutoffBehavior, "cutoff behaviour", {
        /// Left running, reported TIMED_OUT (the default).
        ContinueTask = "CONTINUE_TASK",
        /// Its command is cancelled, reported CANCELLED.
        CancelTask = "CANCEL_TASK",
    }
);

/// One occurrence of a window: when it opened and its hours, as the execution recorded them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub start: UnixMillis,
    pub duration_hours: u32,
    pub cutoff_hours: u32,
}

impl Occurrence {
    /// When the window closes.
    pub fn end(&self) -> UnixMillis {
        self.start.saturating_add(i64::from(self.duration_hours) * HOUR_MS)
    }

    /// From this instant on no new task starts: `end - cutoff`.
    pub fn cutoff_at(&self) -> UnixMillis {
        self.end().saturating_sub(i64::from(self.cutoff_hours) * HOUR_MS)
    }

    /// How late a missed occurrence may still fire: while it is before its cutoff.
    pub fn grace_ms(duration_hours: u32, cutoff_hours: u32) -> i64 {
        (i64::from(duration_hours) - i64::from(cutoff_hours)) * HOUR_MS - 1
    }
}

/// One task of an execution as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    pub priority: u32,
    pub status: TaskStatus,
    pub cutoff_behavior: CutoffBehavior,
}

/// What to do now; indexes are into the task list given to [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Start these now: every pending task of the lowest pending priority.
    pub start: Vec<usize>,
    /// Record these as not started: the cutoff has passed.
    pub not_started: Vec<usize>,
    /// Running at the window's end with CONTINUE_TASK: record, leave running.
    pub left_running: Vec<usize>,
    /// Running at the window's end with CANCEL_TASK: cancel, record.
    pub cancel: Vec<usize>,
    /// When set, the execution ends now with this status (after the records above).
    pub finished: Option<ExecutionStatus>,
    /// If nothing else happens (no task finishes), look again at this instant: the cutoff or
    /// the end, whichever comes next.
    pub wake_at: Option<UnixMillis>,
}

/// The execution planner: given an occurrence, `now` and the tasks' states, what to do next.
/// - Before the cutoff: when nothing runs, the lowest pending priority group starts; when
///   something runs, wait for it (the next group waits for the whole group before it).
/// - From the cutoff on: every pending task is recorded not started; when nothing runs the
///   execution ends.
/// - From the end on: running work is recorded (and cancelled per its cutoff behaviour) and
///   the execution ends.
pub fn plan(occurrence: &Occurrence, now: UnixMillis, tasks: &[TaskState]) -> Plan {
    let mut out = Plan::default();
    let (end, cutoff) = (occurrence.end(), occurrence.cutoff_at());
    let pending: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].status == TaskStatus::Pending).collect();
    let running: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].status == TaskStatus::InProgress).collect();
    let mut final_states: Vec<TaskStatus> = tasks.iter().map(|t| t.status).collect();
    if now >= cutoff {
        out.not_started = pending.clone();
        for i in &pending {
            final_states[*i] = TaskStatus::NotStarted;
        }
    }
    if now >= end {
        for i in running {
            match tasks[i].cutoff_behavior {
                CutoffBehavior::ContinueTask => {
                    out.left_running.push(i);
                    final_states[i] = TaskStatus::TimedOut;
                }
                CutoffBehavior::CancelTask => {
                    out.cancel.push(i);
                    final_states[i] = TaskStatus::Cancelled;
                }
            }
        }
        out.finished = Some(ExecutionStatus::from_tasks(&final_states));
        return out;
    }
    if !running.is_empty() {
        out.wake_at = Some(if now < cutoff && !pending.is_empty() { cutoff } else { end });
        return out;
    }
    if now >= cutoff || pending.is_empty() {
        out.finished = Some(ExecutionStatus::from_tasks(&final_states));
        return out;
    }
    if now < occurrence.start {
        out.wake_at = Some(occurrence.start);
        return out;
    }
    let lowest = pending.iter().map(|i| tasks[*i].priority).min().unwrap_or_default();
    out.start = pending.into_iter().filter(|i| tasks[*i].priority == lowest).collect();
    out.wake_at = Some(cutoff);
    out
}
