//! Rate control for one command (spec §4.2): given how its invocations stand now, how many more
//! to dispatch.
//!
//! The planner has no state of its own: [`RatePlan::next_dispatch`] is a function of the
//! resolved limits and the current [`Counts`]. A server that restarts mid-command, or a second
//! replica, recomputes the same decision from the stored invocation statuses; there is no wave
//! counter to persist or to lose.
//!
//! Invariants (checked by the simulation properties below):
//! - never more than the resolved MaxConcurrency in flight, and never more than the ramp allows;
//! - the first decision for a non-empty command is `Dispatch(1)`;
//! - once errors exceed MaxErrors the answer is `StopErrors` for good (errors are terminal, so
//!   the count never falls), hence nothing is dispatched after the stop;
//! - `Dispatch(n)` always has `1 <= n <= pending`.
//!
//! Rules that are choices, not spec text:
//! - **Ramp.** At most `completed + 1` invocations may be in flight, where `completed` counts
//!   every terminal invocation. The first goes out alone; when it reports, the window is 2;
//!   when those report, 4; then 8, and so on up to MaxConcurrency: the spec's 1, 2, 4, … when
//!   invocations report in waves. When they report one by one, each report frees its own slot
//!   and opens one more, so the number in flight still doubles per round trip (TCP slow start).
//!   Any terminal report widens the window, an error included: the ramp paces fan-out by
//!   feedback, and the error threshold is what judges success.
//! - **Delayed is in flight.** A Delayed invocation holds its concurrency slot: it will be
//!   re-sent as soon as its node reconnects, and if it did not count, a fleet that dropped
//!   offline together could be handed far more than MaxConcurrency at once on its return.
//! - **Resolved concurrency is at least 1**, even for an empty target set, so inconsistent counts
//!   (pending work the plan was not sized for) wait rather than deadlock at a window of 0.

use super::invocation::InvocationStatus;
use super::limit::{MaxConcurrency, MaxErrors};

/// How the invocations of one command stand, bucketed as the planner needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Not yet dispatched (Pending).
    pub pending: u32,
    /// Dispatched and not terminal (InProgress, Delayed).
    pub in_flight: u32,
    /// Success.
    pub succeeded: u32,
    /// Failed and TimedOut: the ones that count against MaxErrors.
    pub errors: u32,
    /// Terminal but neither success nor error: Cancelled, Undeliverable, Terminated.
    pub other_terminal: u32,
    /// Of `in_flight`, those the agent has acknowledged (it has the work and started it). The
    /// ramp waits for acknowledgements, not completions (spec §4.2.1), so long scripts do not
    /// serialise the ramp. `from_statuses` cannot know this; the caller sets it.
    pub acknowledged: u32,
}

impl Counts {
    pub fn from_statuses(statuses: impl IntoIterator<Item = InvocationStatus>) -> Self {
        let mut counts = Counts::default();
        for status in statuses {
            counts.add(status);
        }
        counts
    }

    /// Counts one more invocation in `status`.
    pub fn add(&mut self, status: InvocationStatus) {
        let bucket = match status {
            InvocationStatus::Pending => &mut self.pending,
            InvocationStatus::InProgress | InvocationStatus::Delayed => &mut self.in_flight,
            InvocationStatus::Success => &mut self.succeeded,
            InvocationStatus::Failed | InvocationStatus::TimedOut => &mut self.errors,
            InvocationStatus::Cancelled | InvocationStatus::Undeliverable | InvocationStatus::Terminated => {
                &mut self.other_terminal
            }
        };
        *bucket = bucket.saturating_add(1);
    }

    pub fn total(&self) -> u32 {
        self.pending
            .saturating_add(self.in_flight)
            .saturating_add(self.succeeded)
            .saturating_add(self.errors)
            .saturating_add(self.other_terminal)
    }

    /// Invocations in a terminal status.
    pub fn completed(&self) -> u32 {
        self.succeeded.saturating_add(self.errors).saturating_add(self.other_terminal)
    }

    /// Invocations not yet in a terminal status (pending or in flight).
    pub fn unfinished(&self) -> u32 {
        self.pending.saturating_add(self.in_flight)
    }
}

/// What the dispatcher should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Dispatch this many Pending invocations (at least 1, at most the number pending).
    Dispatch(u32),
    /// Nothing to dispatch until an in-flight invocation reports.
    Wait,
    /// More errors than MaxErrors: dispatch nothing more. Apply
    /// [`ErrorThresholdExceeded`](super::invocation::InvocationEvent::ErrorThresholdExceeded)
    /// to every invocation (not-yet-started ones become Cancelled, running ones finish) and
    /// report the command Failed once none is unfinished.
    StopErrors,
    /// Every invocation is terminal and the error threshold was not exceeded.
    Done,
}

/// A command's rate limits, resolved against its target count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePlan {
    total: u32,
    max_concurrency: u32,
    max_errors: u32,
}

impl RatePlan {
    /// `total` is the number of resolved targets, which percentages are taken of.
    pub fn new(total: u32, max_concurrency: MaxConcurrency, max_errors: MaxErrors) -> Self {
        RatePlan {
            total,
            max_concurrency: max_concurrency.resolve(total).max(1),
            max_errors: max_errors.resolve(total),
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// The most invocations ever in flight at once.
    pub fn max_concurrency(&self) -> u32 {
        self.max_concurrency
    }

    /// The errors tolerated; the next one stops dispatch.
    pub fn max_errors(&self) -> u32 {
        self.max_errors
    }

    /// True from the (MaxErrors + 1)-th error on (spec §4.2.2).
    pub fn threshold_exceeded(&self, counts: &Counts) -> bool {
        counts.errors > self.max_errors
    }

    /// The most invocations the ramp lets be in flight given `counts` (see the module doc).
    pub fn window(&self, counts: &Counts) -> u32 {
        let acknowledged = counts.acknowledged.min(counts.in_flight);
        self.max_concurrency.min(counts.completed().saturating_add(acknowledged).saturating_add(1))
    }

    /// What to do now. Call it after every status change; it is cheap and idempotent.
    pub fn next_dispatch(&self, counts: &Counts) -> Decision {
        if self.threshold_exceeded(counts) {
            return Decision::StopErrors;
        }
        if counts.pending == 0 {
            return if counts.in_flight == 0 { Decision::Done } else { Decision::Wait };
        }
        let free = self.window(counts).saturating_sub(counts.in_flight);
        match free.min(counts.pending) {
            0 => Decision::Wait,
            n => Decision::Dispatch(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::invocation::{InvocationEvent, Outcome, transition};
    use crate::command::limit::{Limit, Percent};
    use proptest::prelude::*;

    #[test]
    fn the_ramp_waits_for_acknowledgements_not_completions() {
        let plan = RatePlan::new(10, MaxConcurrency::DEFAULT, MaxErrors::DEFAULT);
        let running = Counts { pending: 9, in_flight: 1, ..Counts::default() };
        assert_eq!(plan.next_dispatch(&running), Decision::Wait, "not yet acknowledged");
        let acked = Counts { acknowledged: 1, ..running };
        assert_eq!(plan.next_dispatch(&acked), Decision::Dispatch(1), "1 acknowledged: window 2");
        let wave = Counts { pending: 7, in_flight: 3, acknowledged: 3, ..Counts::default() };
        assert_eq!(plan.next_dispatch(&wave), Decision::Dispatch(1), "3 acknowledged: window 4");
        let bogus = Counts { pending: 9, in_flight: 1, acknowledged: 50, ..Counts::default() };
        assert_eq!(plan.window(&bogus), 2, "acknowledgements never exceed what is in flight");
    }

    fn pct(p: u8) -> Limit {
        Limit::Percent(Percent::new(p).expect("valid percent"))
    }

    fn plan(total: u32, concurrency: Limit, errors: Limit) -> RatePlan {
        RatePlan::new(total, MaxConcurrency::new(concurrency).expect("non-zero"), MaxErrors::new(errors))
    }

    fn counts(pending: u32, in_flight: u32, succeeded: u32, errors: u32, other_terminal: u32) -> Counts {
        Counts { pending, in_flight, succeeded, errors, other_terminal, acknowledged: 0 }
    }

    #[test]
    fn counts_bucket_every_status() {
        let got = Counts::from_statuses(InvocationStatus::ALL);
        assert_eq!(got, counts(1, 2, 1, 2, 3));
        assert_eq!(got.total(), 9);
        assert_eq!(got.completed(), 6);
        assert_eq!(got.unfinished(), 3);
    }

    #[test]
    fn plan_resolution_table() {
        // (total, concurrency, errors) -> (resolved concurrency, resolved errors)
        let table = [
            (50, Limit::Count(50), Limit::Count(0), (50, 0)),
            (50, pct(10), pct(10), (5, 5)),
            (10, pct(1), pct(1), (1, 1)),
            (0, pct(50), Limit::Count(0), (1, 0)),
            (3, Limit::Count(1), Limit::Count(7), (1, 7)),
        ];
        for (total, concurrency, errors, (want_c, want_e)) in table {
            let p = plan(total, concurrency, errors);
            assert_eq!((p.max_concurrency(), p.max_errors()), (want_c, want_e), "{total} {concurrency} {errors}");
        }
        let default = RatePlan::new(200, MaxConcurrency::default(), MaxErrors::default());
        assert_eq!((default.max_concurrency(), default.max_errors()), (50, 0));
    }

    #[test]
    fn decision_table() {
        let p = plan(50, Limit::Count(10), pct(10)); // concurrency 10, tolerates 5 errors
        let table = [
            // Ramp: one first, then the window is completed + 1.
            (counts(50, 0, 0, 0, 0), Decision::Dispatch(1)),
            (counts(49, 1, 0, 0, 0), Decision::Wait),
            (counts(49, 0, 1, 0, 0), Decision::Dispatch(2)),
            (counts(47, 1, 2, 0, 0), Decision::Dispatch(2)), // 3 done: window 4, 1 in flight
            (counts(47, 0, 3, 0, 0), Decision::Dispatch(4)),
            (counts(43, 0, 7, 0, 0), Decision::Dispatch(8)),
            (counts(35, 0, 15, 0, 0), Decision::Dispatch(10)), // capped by max concurrency
            (counts(30, 10, 10, 0, 0), Decision::Wait),
            (counts(30, 9, 11, 0, 0), Decision::Dispatch(1)),
            // Delayed invocations sit in `in_flight` and hold their slots.
            (counts(20, 10, 20, 0, 0), Decision::Wait),
            // Non-error terminals widen the window like successes do.
            (counts(47, 0, 0, 0, 3), Decision::Dispatch(4)),
            // Errors up to the budget do not stop anything; the 6th does.
            (counts(30, 5, 10, 5, 0), Decision::Dispatch(5)),
            (counts(30, 5, 9, 6, 0), Decision::StopErrors),
            (counts(0, 5, 9, 6, 30), Decision::StopErrors), // sticky while grace runs finish
            (counts(0, 0, 14, 6, 30), Decision::StopErrors),
            // Never more than what is pending.
            (counts(2, 0, 48, 0, 0), Decision::Dispatch(2)),
            (counts(0, 3, 47, 0, 0), Decision::Wait),
            (counts(0, 0, 45, 5, 0), Decision::Done),
            // Inconsistent counts (more in flight than allowed) wait rather than underflow.
            (counts(10, 40, 0, 0, 0), Decision::Wait),
        ];
        for (c, want) in table {
            assert_eq!(p.next_dispatch(&c), want, "{c:?}");
        }
    }

    #[test]
    fn error_stop_examples_from_the_spec() {
        // (total, MaxErrors, the error that stops dispatch)
        let table = [(50, Limit::Count(0), 1), (50, Limit::Count(3), 4), (50, pct(10), 6), (15, pct(10), 3)];
        for (total, errors, stop_at) in table {
            let p = plan(total, Limit::Count(1), errors);
            for e in 0..=stop_at + 1 {
                let stopped = p.next_dispatch(&counts(total - e, 0, 0, e, 0)) == Decision::StopErrors;
                assert_eq!(stopped, e >= stop_at, "{total} targets, max errors {errors}: {e} errors");
            }
        }
    }

    #[test]
    fn empty_command_is_done_at_once() {
        assert_eq!(plan(0, Limit::Count(5), Limit::Count(0)).next_dispatch(&Counts::default()), Decision::Done);
    }

    #[test]
    fn waves_ramp_1_2_4_to_the_cap() {
        // Everything succeeds and reports before the next decision: the spec's ramp.
        let p = plan(100, Limit::Count(50), Limit::Count(0));
        let mut c = counts(100, 0, 0, 0, 0);
        let mut waves = Vec::new();
        while let Decision::Dispatch(n) = p.next_dispatch(&c) {
            waves.push(n);
            c.pending -= n;
            c.succeeded += n;
        }
        assert_eq!(waves, vec![1, 2, 4, 8, 16, 32, 37]);
        assert_eq!(p.next_dispatch(&c), Decision::Done);
    }

    /// How one invocation's life goes once dispatched, as the agent and network would report it.
    #[derive(Debug, Clone, Copy)]
    enum Script {
        Succeed,
        Fail,
        ExecTimeout,
        DelayedThenSucceed,
        DelayedThenUndeliverable,
        Lost,
    }

    impl Script {
        fn events(self) -> &'static [InvocationEvent] {
            use InvocationEvent as E;
            match self {
                Script::Succeed => &[E::AgentAccepted, E::Finished { exit_code: 0 }],
                Script::Fail => &[E::AgentAccepted, E::Finished { exit_code: 2 }],
                Script::ExecTimeout => &[E::AgentAccepted, E::ExecutionTimedOut],
                Script::DelayedThenSucceed => {
                    &[E::NodeNotConnected, E::Reconnected, E::AgentAccepted, E::Finished { exit_code: 0 }]
                }
                Script::DelayedThenUndeliverable => &[E::NodeNotConnected, E::DeliveryTimeout],
                Script::Lost => &[E::AgentAccepted, E::AgentLost],
            }
        }

        fn is_error(self) -> bool {
            matches!(self, Script::Fail | Script::ExecTimeout)
        }
    }

    fn any_script() -> impl Strategy<Value = Script> {
        proptest::sample::select(vec![
            Script::Succeed,
            Script::Succeed,
            Script::Succeed,
            Script::Fail,
            Script::ExecTimeout,
            Script::DelayedThenSucceed,
            Script::DelayedThenUndeliverable,
            Script::Lost,
        ])
    }

    fn any_concurrency() -> impl Strategy<Value = MaxConcurrency> {
        prop_oneof![(1u32..=60).prop_map(Limit::Count), (1u8..=100).prop_map(pct),]
            .prop_filter_map("non-zero", |l| MaxConcurrency::new(l).ok())
    }

    fn any_errors() -> impl Strategy<Value = MaxErrors> {
        prop_oneof![(0u32..=20).prop_map(Limit::Count), (1u8..=100).prop_map(pct)].prop_map(MaxErrors::new)
    }

    /// What the simulation saw.
    struct Run {
        statuses: Vec<InvocationStatus>,
        dispatches: Vec<u32>,
        /// Per invocation, how many times Dispatched was applied.
        dispatched: Vec<u32>,
        /// Errors when StopErrors was first returned.
        errors_at_stop: Option<u32>,
        max_in_flight_seen: u32,
    }

    /// Drives the planner and the transition function the way the server will: after every
    /// status change, ask the planner; when it says wait, let one in-flight invocation (picked by
    /// `picks`) take its next step; deliver every event twice when `duplicate` says so.
    fn simulate(plan: &RatePlan, scripts: &[Script], picks: &[usize], duplicate: &[bool]) -> Result<Run, String> {
        let n = scripts.len();
        let mut run = Run {
            statuses: vec![InvocationStatus::Pending; n],
            dispatches: Vec::new(),
            dispatched: vec![0; n],
            errors_at_stop: None,
            max_in_flight_seen: 0,
        };
        let mut step = vec![0usize; n];
        let mut tick = 0usize;
        let apply = |run: &mut Run, i: usize, event: InvocationEvent, times: usize| -> Result<(), String> {
            for _ in 0..times {
                let from = run.statuses[i];
                match transition(from, event).map_err(|e| e.to_string())? {
                    Outcome::Applied(to) => {
                        if event == InvocationEvent::Dispatched {
                            run.dispatched[i] += 1;
                        }
                        run.statuses[i] = to;
                    }
                    Outcome::Ignored => {}
                }
            }
            Ok(())
        };
        for _ in 0..10 * n + 10 {
            let counts = Counts::from_statuses(run.statuses.iter().copied());
            run.max_in_flight_seen = run.max_in_flight_seen.max(counts.in_flight);
            match plan.next_dispatch(&counts) {
                Decision::Dispatch(k) => {
                    if run.errors_at_stop.is_some() {
                        return Err("dispatched after the stop".into());
                    }
                    run.dispatches.push(k);
                    let chosen: Vec<usize> =
                        (0..n).filter(|&i| run.statuses[i] == InvocationStatus::Pending).take(k as usize).collect();
                    if chosen.len() != k as usize {
                        return Err(format!("asked to dispatch {k} with {} pending", chosen.len()));
                    }
                    for i in chosen {
                        apply(&mut run, i, InvocationEvent::Dispatched, 1 + usize::from(duplicate[i]))?;
                    }
                    continue;
                }
                Decision::Done => return Ok(run),
                Decision::StopErrors => {
                    if run.errors_at_stop.is_none() {
                        run.errors_at_stop = Some(counts.errors);
                        for i in 0..n {
                            apply(&mut run, i, InvocationEvent::ErrorThresholdExceeded, 1)?;
                        }
                        continue;
                    }
                    if counts.unfinished() == 0 {
                        return Ok(run);
                    }
                }
                Decision::Wait => {}
            }
            let flying: Vec<usize> = (0..n)
                .filter(|&i| matches!(run.statuses[i], InvocationStatus::InProgress | InvocationStatus::Delayed))
                .collect();
            if flying.is_empty() {
                return Err(format!("told to wait with nothing in flight: {counts:?}"));
            }
            let i = flying[picks[tick % picks.len()] % flying.len()];
            tick += 1;
            let event = scripts[i].events()[step[i]];
            step[i] += 1;
            apply(&mut run, i, event, 1 + usize::from(duplicate[i]))?;
        }
        Err("the simulation did not finish".into())
    }

    fn command_case() -> impl Strategy<Value = (Vec<Script>, Vec<usize>, Vec<bool>)> {
        (0usize..120).prop_flat_map(|n| {
            (
                proptest::collection::vec(any_script(), n),
                proptest::collection::vec(any::<usize>(), 1..64),
                proptest::collection::vec(any::<bool>(), n),
            )
        })
    }

    proptest! {
        #[test]
        fn planner_keeps_every_rule(
            (scripts, picks, duplicate) in command_case(),
            concurrency in any_concurrency(),
            errors in any_errors(),
        ) {
            let total = u32::try_from(scripts.len()).expect("small");
            let plan = RatePlan::new(total, concurrency, errors);
            let run = simulate(&plan, &scripts, &picks, &duplicate).map_err(TestCaseError::fail)?;

            prop_assert!(run.max_in_flight_seen <= plan.max_concurrency(), "concurrency exceeded");
            prop_assert!(run.dispatched.iter().all(|&d| d <= 1), "an invocation was dispatched twice");
            prop_assert!(run.statuses.iter().all(|s| s.is_terminal()), "left unfinished: {:?}", run.statuses);
            if total > 0 {
                prop_assert_eq!(run.dispatches.first(), Some(&1), "the ramp starts at 1");
            }

            let planned_errors = u32::try_from(scripts.iter().filter(|s| s.is_error()).count()).expect("small");
            match run.errors_at_stop {
                Some(at_stop) => {
                    prop_assert_eq!(at_stop, plan.max_errors() + 1, "stop exactly at the (N+1)-th error");
                    // Whatever was never dispatched was cancelled, not run.
                    for (status, dispatched) in run.statuses.iter().zip(&run.dispatched) {
                        if *dispatched == 0 {
                            prop_assert_eq!(*status, InvocationStatus::Cancelled);
                        }
                    }
                }
                None => {
                    prop_assert!(planned_errors <= plan.max_errors(), "enough errors must stop the command");
                    prop_assert!(run.dispatched.iter().all(|&d| d == 1), "every target dispatched exactly once");
                }
            }
        }

        #[test]
        fn dispatch_is_bounded_for_any_counts(
            total in 0u32..500,
            concurrency in any_concurrency(),
            errors in any_errors(),
            c in (0u32..500, 0u32..500, 0u32..500, 0u32..50, 0u32..500)
                .prop_map(|(p, f, s, e, o)| counts(p, f, s, e, o)),
        ) {
            let plan = RatePlan::new(total, concurrency, errors);
            match plan.next_dispatch(&c) {
                Decision::Dispatch(n) => {
                    prop_assert!(n >= 1 && n <= c.pending);
                    prop_assert!(c.in_flight + n <= plan.max_concurrency());
                    prop_assert!(c.in_flight + n <= c.completed() + 1, "ramp window");
                    prop_assert!(!plan.threshold_exceeded(&c));
                }
                Decision::StopErrors => prop_assert!(c.errors > plan.max_errors()),
                Decision::Done => prop_assert!(c.unfinished() == 0 && c.errors <= plan.max_errors()),
                Decision::Wait => prop_assert!(c.in_flight > 0),
            }
        }
    }
}
