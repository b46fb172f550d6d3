//! Table and property tests of the window rules and the execution planner.

use proptest::prelude::*;

use super::*;

fn ms(rfc3339: &str) -> UnixMillis {
    rfc3339.parse::<Timestamp>().expect("test timestamp").as_millisecond()
}

const NOW: &str = "2026-12-01T00:00:00Z";

fn spec(schedule: &str, duration: u32, cutoff: u32) -> WindowSpec {
    WindowSpec {
        name: "nightly".into(),
        schedule: schedule.into(),
        timezone: None,
        duration_hours: duration,
        cutoff_hours: cutoff,
        start_date: None,
        end_date: None,
    }
}

#[test]
fn bad_windows_are_refused_saying_what_to_write() {
    let now = ms(NOW);
    let dated = |schedule: &str, start: Option<&str>, end: Option<&str>| WindowSpec {
        start_date: start.map(|s| parse_date(s).expect("date")),
        end_date: end.map(|s| parse_date(s).expect("date")),
        ..spec(schedule, 3, 1)
    };
    let named = |name: &str| WindowSpec { name: name.into(), ..spec("cron(0 3 * * *)", 3, 1) };
    let table: Vec<(WindowSpec, &[&str])> = vec![
        (spec("cron(0 3 * * *)", 0, 0), &["duration 0 h", "1 to 24 hours"]),
        (spec("cron(0 3 * * *)", 25, 1), &["duration 25 h", "1 to 24 hours"]),
        (spec("cron(0 3 * * *)", 3, 3), &["cutoff 3 h is not less than the duration 3 h", "from 0 to 2"]),
        (spec("cron(0 3 * * *)", 3, 7), &["cutoff 7 h"]),
        (spec("cron(0 3 * * *)", 1, 1), &["from 0 to 0"]),
        (spec("cron(* * * * *)", 3, 1), &["minimum of 5 minutes"]),
        (spec("at(2020-01-01T00:00:00)", 3, 1), &["in the past"]),
        (named("ab"), &["3 to 128 characters"]),
        (named(&"a".repeat(129)), &["3 to 128 characters"]),
        (named("night ly"), &["letters, digits"]),
        (named("mw-0123456789abcdef"), &["shape of a window id"]),
        (
            dated("cron(0 3 * * *)", Some("2027-02-01"), Some("2027-01-01")),
            &["end date 2027-01-01T00:00:00+00:00 is before the start date 2027-02-01T00:00:00+00:00"],
        ),
        // A one-shot outside the dates, and a yearly cron whose day is outside them.
        (
            dated("at(2027-06-01T03:00:00)", Some("2027-01-01"), Some("2027-02-01")),
            &["never occurs between 2027-01-01T00:00:00+00:00 and the end date 2027-02-01T00:00:00+00:00"],
        ),
        (
            dated("cron(0 3 1 7 *)", Some("2027-01-01"), Some("2027-06-30")),
            &["never occurs", "window would never open"],
        ),
        // An end date already past: no occurrence from now on.
        (dated("cron(0 3 * * *)", None, Some("2026-11-01")), &["never occurs between 2026-12-01T00:00:00+00:00"]),
    ];
    for (spec, words) in table {
        let err = match check(&spec, now) {
            Ok(_) => panic!("{spec:?} was accepted"),
            Err(e) => e.to_string(),
        };
        for w in words {
            assert!(err.contains(w), "{spec:?}: message `{err}` lacks `{w}`");
        }
    }
}

#[test]
fn good_windows_pass_and_list_their_occurrences_inside_the_dates() {
    let now = ms(NOW);
    for (d, c) in [(1, 0), (24, 23), (3, 1)] {
        check(&spec("cron(0 3 * * *)", d, c), now).expect("valid hours");
    }
    let w = WindowSpec {
        timezone: Some("Europe/Berlin".into()),
        start_date: Some(parse_date("2027-03-27").expect("date")),
        end_date: Some(parse_date("2027-03-30T00:00:00+02:00").expect("date")),
        ..spec("cron(0 3 * * *)", 3, 1)
    };
    let schedule = check(&w, now).expect("valid");
    let next: Vec<String> = occurrences(&schedule, now, w.start_date, w.end_date, 10)
        .into_iter()
        .map(|t| local_rfc3339(t, w.timezone.as_deref()))
        .collect();
    // Berlin moves to summer time on 2027-03-28: the offset changes with it.
    assert_eq!(next, ["2027-03-27T03:00:00+01:00", "2027-03-28T03:00:00+02:00", "2027-03-29T03:00:00+02:00"]);
    assert_eq!(occurrences(&schedule, now, None, None, 2).len(), 2);
    assert!(occurrences(&schedule, now, None, None, 1000).len() <= MAX_NEXT);
}

#[test]
fn dates_read_as_instants() {
    let table = [
        ("2026-04-01", "2026-04-01T00:00:00Z"),
        ("2026-04-01T06:30:00", "2026-04-01T06:30:00Z"),
        ("2026-04-01T06:30:00Z", "2026-04-01T06:30:00Z"),
        ("2026-04-01T06:30:00+02:00", "2026-04-01T04:30:00Z"),
    ];
    for (text, want) in table {
        assert_eq!(parse_date(text), Ok(ms(want)), "{text}");
    }
    for bad in ["", "tomorrow", "2026-13-01", "01/04/2026"] {
        let err = parse_date(bad).expect_err(bad).to_string();
        assert!(err.contains("is not ISO 8601") && err.contains("2026-04-01T06:00:00+02:00"), "{err}");
    }
}

#[test]
fn statuses_round_trip_and_unknown_names_are_refused() {
    for s in ExecutionStatus::ALL {
        assert_eq!(s.as_str().parse::<ExecutionStatus>(), Ok(*s));
    }
    for s in TaskStatus::ALL {
        assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(*s));
    }
    assert_eq!("CANCEL_TASK".parse::<CutoffBehavior>(), Ok(CutoffBehavior::CancelTask));
    let err = "cancel".parse::<CutoffBehavior>().expect_err("lower case").to_string();
    assert!(err.contains("CONTINUE_TASK, CANCEL_TASK"), "{err}");
}

const H: i64 = HOUR_MS;
/// 15:00, 3 h, cutoff 1 h: nothing new from 17:00, closed at 18:00 (§6.1's example).
const OCC: Occurrence = Occurrence { start: 15 * H, duration_hours: 3, cutoff_hours: 1 };

fn t(priority: u32, status: TaskStatus) -> TaskState {
    TaskState { priority, status, cutoff_behavior: CutoffBehavior::ContinueTask }
}

fn cancel(priority: u32, status: TaskStatus) -> TaskState {
    TaskState { priority, status, cutoff_behavior: CutoffBehavior::CancelTask }
}

#[test]
fn the_planner_runs_priority_groups_in_order_and_respects_the_cutoff_and_the_end() {
    use ExecutionStatus as E;
    use TaskStatus::{Failed, InProgress, Pending, Success};
    let p =
        |start: &[usize], not: &[usize], left: &[usize], cancel: &[usize], fin: Option<E>, wake: Option<i64>| Plan {
            start: start.to_vec(),
            not_started: not.to_vec(),
            left_running: left.to_vec(),
            cancel: cancel.to_vec(),
            finished: fin,
            wake_at: wake,
        };
    // (now, tasks, expected plan)
    let table: Vec<(i64, Vec<TaskState>, Plan)> = vec![
        // Fresh: the lowest priority group (both 1s) starts; listed order does not matter.
        (15 * H, vec![t(2, Pending), t(1, Pending), t(1, Pending)], p(&[1, 2], &[], &[], &[], None, Some(17 * H))),
        // Group 1 still running: wait, until the cutoff at the latest.
        (15 * H + 1, vec![t(2, Pending), t(1, InProgress), t(1, Success)], p(&[], &[], &[], &[], None, Some(17 * H))),
        // Group 1 done (one failed): group 2 starts anyway.
        (16 * H, vec![t(2, Pending), t(1, Failed), t(1, Success)], p(&[0], &[], &[], &[], None, Some(17 * H))),
        // Everything ran: the worst outcome is the execution's.
        (16 * H, vec![t(2, Success), t(1, Failed)], p(&[], &[], &[], &[], Some(E::Failed), None)),
        (16 * H, vec![t(2, Success), t(1, Success)], p(&[], &[], &[], &[], Some(E::Success), None)),
        (16 * H, vec![], p(&[], &[], &[], &[], Some(E::Success), None)),
        // At the cutoff exactly, nothing new starts; what is pending is recorded not started.
        (17 * H, vec![t(2, Pending), t(1, Success)], p(&[], &[0], &[], &[], Some(E::TimedOut), None)),
        // Past the cutoff with work running: pending recorded, wait for the end.
        (17 * H + 5, vec![t(3, Pending), t(2, InProgress)], p(&[], &[0], &[], &[], None, Some(18 * H))),
        (17 * H + 5, vec![t(2, InProgress)], p(&[], &[], &[], &[], None, Some(18 * H))),
        // Running with nothing pending before the cutoff: wait for the end.
        (16 * H, vec![t(2, InProgress), t(1, Success)], p(&[], &[], &[], &[], None, Some(18 * H))),
        // At the end: running work reported, cancelled when the task says so.
        (
            18 * H,
            vec![t(2, InProgress), cancel(2, InProgress), t(3, Pending), t(1, Success)],
            p(&[], &[2], &[0], &[1], Some(E::TimedOut), None),
        ),
        // A driver resumed long after the end (server down): the same.
        (30 * H, vec![cancel(1, InProgress), t(2, Pending)], p(&[], &[1], &[], &[0], Some(E::TimedOut), None)),
        // Before the occurrence (a clock behind): wait for it.
        (14 * H, vec![t(1, Pending)], p(&[], &[], &[], &[], None, Some(15 * H))),
    ];
    for (now, tasks, want) in table {
        assert_eq!(plan(&OCC, now, &tasks), want, "at {}h{}ms with {tasks:?}", now / H, now % H);
    }
}

#[test]
fn cutoff_zero_lets_tasks_start_until_the_end_and_the_grace_ends_before_the_cutoff() {
    let occ = Occurrence { start: 0, duration_hours: 1, cutoff_hours: 0 };
    assert_eq!(occ.cutoff_at(), occ.end());
    assert_eq!(plan(&occ, H - 1, &[t(1, TaskStatus::Pending)]).start, vec![0]);
    assert_eq!(plan(&occ, H, &[t(1, TaskStatus::Pending)]).not_started, vec![0]);
    assert_eq!(Occurrence::grace_ms(3, 1), 2 * H - 1);
    assert!(OCC.start + Occurrence::grace_ms(3, 1) < OCC.cutoff_at());
}

fn status() -> impl Strategy<Value = TaskStatus> {
    prop::sample::select(TaskStatus::ALL.to_vec())
}

fn task() -> impl Strategy<Value = TaskState> {
    (0u32..4, status(), prop::bool::ANY).prop_map(|(priority, status, c)| TaskState {
        priority,
        status,
        cutoff_behavior: if c { CutoffBehavior::CancelTask } else { CutoffBehavior::ContinueTask },
    })
}

proptest! {
    /// Whatever the states: nothing starts from the cutoff on; what starts is pending, of one
    /// priority, the lowest pending, and only when nothing runs; from the end on the execution
    /// always finishes and accounts for every running task; a finished execution leaves no
    /// task pending or running unaccounted for.
    #[test]
    fn planner_invariants(tasks in prop::collection::vec(task(), 0..8), now in 14 * H..20 * H) {
        let plan = plan(&OCC, now, &tasks);
        let running: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].status == TaskStatus::InProgress).collect();
        let pending: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].status == TaskStatus::Pending).collect();
        if now >= OCC.cutoff_at() {
            prop_assert!(plan.start.is_empty());
            prop_assert_eq!(&plan.not_started, &pending);
        }
        if !plan.start.is_empty() {
            prop_assert!(running.is_empty());
            let lowest = pending.iter().map(|i| tasks[*i].priority).min();
            for i in &plan.start {
                prop_assert_eq!(tasks[*i].status, TaskStatus::Pending);
                prop_assert_eq!(Some(tasks[*i].priority), lowest);
            }
            let same: Vec<usize> = pending.iter().copied().filter(|i| Some(tasks[*i].priority) == lowest).collect();
            prop_assert_eq!(&plan.start, &same);
        }
        if now >= OCC.end() {
            prop_assert!(plan.finished.is_some());
            let mut accounted: Vec<usize> = plan.left_running.iter().chain(&plan.cancel).copied().collect();
            accounted.sort_unstable();
            prop_assert_eq!(accounted, running.clone());
        }
        if plan.finished.is_some() {
            prop_assert!(plan.start.is_empty());
            prop_assert!(running.is_empty() || now >= OCC.end());
            prop_assert!(pending.is_empty() || now >= OCC.cutoff_at());
        } else {
            prop_assert!(plan.wake_at.is_some_and(|w| w > now || !plan.start.is_empty()));
        }
    }
}
