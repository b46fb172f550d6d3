//! Table tests of the schedule rules: the grammar and its refusals, occurrences across the
//! daylight-saving changes of Europe/Berlin and America/New_York, and the catch-up decision.

use proptest::prelude::*;

use super::*;

fn ms(rfc3339: &str) -> UnixMillis {
    rfc3339.parse::<Timestamp>().expect("test timestamp").as_millisecond()
}

fn show(t: UnixMillis) -> String {
    Timestamp::from_millisecond(t).expect("in range").to_string()
}

const NOW: &str = "2026-12-01T00:00:00Z";

#[test]
fn bad_schedules_are_refused_saying_what_to_write() {
    let general = ScheduleRules::GENERAL;
    let assoc = ScheduleRules::ASSOCIATIONS;
    // (expression, time zone, rules, words the message must hold)
    let table: &[(&str, Option<&str>, ScheduleRules, &[&str])] = &[
        ("cron(61 * * * *)", None, general, &["minute `61`", "from 0 to 59"]),
        ("cron(0 24 * * *)", None, general, &["hour `24`", "from 0 to 23"]),
        ("cron(0 3 32 * *)", None, general, &["day of month `32`", "from 1 to 31"]),
        ("cron(0 3 * 13 *)", None, general, &["month `13`", "from 1 to 12"]),
        ("cron(0 3 * * 8)", None, general, &["day of week `8`", "from 0 to 7"]),
        ("cron(0 3 * * FUNDAY)", None, general, &["`FUNDAY` is not a number or a name such as SUN"]),
        ("cron(0 0 3 * * *)", None, general, &["6 cron fields", "five", "MIN HOUR DOM MON DOW"]),
        ("0 0 3 * * *", None, general, &["6 cron fields", "five"]),
        ("cron(0 3 * *)", None, general, &["4 cron fields", "five"]),
        ("cron(0 3 L * *)", None, general, &["not supported"]),
        ("cron(0 3 * * 1#3)", None, general, &["not supported"]),
        ("cron(*/0 * * * *)", None, general, &["step `0`", "at least 1"]),
        ("cron(30-10 * * * *)", None, general, &["runs backwards"]),
        ("cron(? * * * *)", None, general, &["only for day of month or day of week"]),
        ("cron(0 0 31 2 *)", None, general, &["never fires"]),
        ("cron(* * * * *)", None, general, &["every 1 minute", "minimum of 5 minutes", "rate(5 minutes)"]),
        ("cron(*/10 * * * *)", None, assoc, &["every 10 minutes", "minimum of 30 minutes"]),
        ("rate(0 minutes)", None, general, &["at least 1", "rate(30 minutes)"]),
        ("rate(-5 minutes)", None, general, &["at least 1"]),
        ("rate(1 minutes)", None, general, &["write `rate(1 minute)`"]),
        ("rate(5 minute)", None, general, &["write `rate(5 minutes)`"]),
        ("rate(1 hours)", None, general, &["write `rate(1 hour)`"]),
        ("rate(1 minute)", None, general, &["every 1 minute", "minimum of 5 minutes", "write `rate(5 minutes)`"]),
        ("rate(20 minutes)", None, assoc, &["every 20 minutes", "minimum of 30 minutes"]),
        ("rate(5 weeks)", None, general, &["rate(N minutes|hours|days)"]),
        ("rate(often)", None, general, &["rate(N minutes|hours|days)"]),
        ("at(2026-13-01T00:00:00)", None, general, &["write a real date"]),
        ("at(2026-02-30T00:00:00)", None, general, &["write a real date"]),
        ("at(2026-12-24 18:00)", None, general, &["at(YYYY-MM-DDTHH:MM:SS)"]),
        ("at(2020-01-01T00:00:00)", None, general, &["in the past", "2020-01-01T00:00:00Z", "in the future"]),
        ("at(2026-12-01T00:00:00)", None, general, &["in the past"]),
        ("at(2026-11-30T18:30:00)", Some("America/New_York"), general, &["in America/New_York", "in the past"]),
        ("cron(0 3 * * *)", Some("Mars/Olympus"), general, &["unknown time zone `Mars/Olympus`", "Europe/Berlin"]),
        ("every day", None, general, &["not cron(...), rate(...) or at(...)", "cron(0 3 * * *)"]),
        ("daily(3)", None, general, &["not cron(...), rate(...) or at(...)"]),
        ("", None, general, &["empty"]),
    ];
    let now = ms(NOW);
    for (expr, tz, rules, words) in table {
        let err = match Schedule::create(expr, *tz, rules, now) {
            Ok(s) => panic!("`{expr}` was accepted: {s:?}"),
            Err(e) => e.to_string(),
        };
        for w in *words {
            assert!(err.contains(w), "`{expr}`: message `{err}` lacks `{w}`");
        }
    }
}

#[test]
fn good_schedules_parse() {
    let table: &[(&str, Option<&str>, ScheduleRules)] = &[
        ("cron(0 3 * * *)", None, ScheduleRules::GENERAL),
        ("0 3 * * *", None, ScheduleRules::GENERAL),
        ("cron(*/5 * * * *)", None, ScheduleRules::GENERAL),
        ("cron(0,30 9-17 ? * MON-FRI)", Some("Europe/Berlin"), ScheduleRules::ASSOCIATIONS),
        ("cron(0 0 29 2 *)", None, ScheduleRules::GENERAL),
        ("cron(15 4 1 jan,jul 7)", Some("America/New_York"), ScheduleRules::GENERAL),
        ("rate(1 minute)", None, ScheduleRules { min_interval_secs: 60 }),
        ("rate(30 minutes)", None, ScheduleRules::ASSOCIATIONS),
        ("rate(1 hour)", None, ScheduleRules::ASSOCIATIONS),
        ("rate(1 day)", None, ScheduleRules::ASSOCIATIONS),
        ("rate(12 days)", None, ScheduleRules::ASSOCIATIONS),
        ("at(2026-12-24T18:00:00)", Some("Europe/Berlin"), ScheduleRules::GENERAL),
        ("  cron( 0 3 * * * )  ", Some(""), ScheduleRules::GENERAL),
    ];
    for (expr, tz, rules) in table {
        if let Err(e) = Schedule::create(expr, *tz, rules, ms(NOW)) {
            panic!("`{expr}` refused: {e}");
        }
    }
    let s = Schedule::parse("0 3 * * *", None, &ScheduleRules::GENERAL).expect("valid");
    assert_eq!(s.time_zone(), "UTC");
}

/// (expression, zone, after, the next occurrences in order)
type NextRow = (&'static str, &'static str, &'static str, &'static [&'static str]);

#[test]
fn occurrences_follow_the_wall_clock_of_their_zone() {
    let table: &[NextRow] = &[
        ("cron(0 3 * * *)", "UTC", "2026-11-24T10:00:00Z", &["2026-11-25T03:00:00Z", "2026-11-26T03:00:00Z"]),
        ("0 3 * * *", "UTC", "2026-11-25T03:00:00Z", &["2026-11-26T03:00:00Z"]),
        (
            "cron(*/20 * * * *)",
            "UTC",
            "2026-11-24T10:05:00Z",
            &["2026-11-24T10:20:00Z", "2026-11-24T10:40:00Z", "2026-11-24T11:00:00Z"],
        ),
        ("cron(0 9 * * MON-FRI)", "UTC", "2026-11-27T10:00:00Z", &["2026-11-30T09:00:00Z"]),
        // Both day fields restricted: either matches (the 1st, or any Sunday).
        (
            "cron(0 0 1 * SUN)",
            "UTC",
            "2026-11-27T00:00:00Z",
            &["2026-11-29T00:00:00Z", "2026-12-01T00:00:00Z", "2026-12-06T00:00:00Z"],
        ),
        ("cron(0 0 29 2 *)", "UTC", "2026-03-01T00:00:00Z", &["2028-02-29T00:00:00Z"]),
        ("cron(0 3 * * *)", "Europe/Berlin", "2026-12-01T00:00:00Z", &["2026-12-01T02:00:00Z"]),
        ("cron(0 3 * * *)", "Europe/Berlin", "2026-07-01T00:00:00Z", &["2026-07-01T01:00:00Z"]),
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and fires at
        // the first instant after the gap (03:00 CEST = 01:00Z), once.
        (
            "cron(30 2 * * *)",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            "cron(*/15 2 * * *)",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            &["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"],
        ),
        // Every 30 minutes over the gap: 01:30 CET, then the gap's one instant (03:00 CEST, which
        // is also a match itself), then 03:30 CEST.
        (
            "cron(0,30 * * * *)",
            "Europe/Berlin",
            "2026-03-29T00:15:00Z",
            &["2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"],
        ),
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice and fires
        // once, the first time (CEST, 00:30Z); the next is the following night's.
        (
            "cron(30 2 * * *)",
            "Europe/Berlin",
            "2026-10-24T12:00:00Z",
            &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        ("cron(30 2 * * *)", "Europe/Berlin", "2026-10-25T00:30:00Z", &["2026-10-26T01:30:00Z"]),
        ("cron(30 2 * * *)", "Europe/Berlin", "2026-10-25T01:00:00Z", &["2026-10-26T01:30:00Z"]),
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
        (
            "cron(30 2 * * *)",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        ),
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 fires at EDT (05:30Z) only.
        (
            "cron(30 1 * * *)",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        ),
        // at(): once, in its zone, with the same rules.
        ("at(2026-12-24T18:00:00)", "Europe/Berlin", "2026-12-01T00:00:00Z", &["2026-12-24T17:00:00Z"]),
        ("at(2026-03-29T02:30:00)", "Europe/Berlin", "2026-03-01T00:00:00Z", &["2026-03-29T01:00:00Z"]),
        ("at(2026-10-25T02:30:00)", "Europe/Berlin", "2026-10-01T00:00:00Z", &["2026-10-25T00:30:00Z"]),
        ("at(2026-03-08T02:30:00)", "America/New_York", "2026-03-01T00:00:00Z", &["2026-03-08T07:00:00Z"]),
        ("at(2026-11-01T01:30:00)", "America/New_York", "2026-10-01T00:00:00Z", &["2026-11-01T05:30:00Z"]),
        // rate(): absolute time, blind to the zone and to daylight saving (anchored at the epoch).
        ("rate(6 hours)", "Europe/Berlin", "2026-03-29T00:30:00Z", &["2026-03-29T06:00:00Z", "2026-03-29T12:00:00Z"]),
    ];
    for (expr, tz, after, want) in table {
        let s = Schedule::parse(expr, Some(tz), &ScheduleRules::GENERAL).expect("valid");
        let mut t = ms(after);
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let n = s.next_after(t).unwrap_or_else(|| panic!("`{expr}` ends after {}", show(t)));
            got.push(show(n));
            t = n;
        }
        assert_eq!(&got, want, "`{expr}` in {tz} after {after}");
        assert_eq!(s.next_after(t).is_none(), s.is_one_shot(), "`{expr}`: one-shot ends, others go on");
    }
}

#[test]
fn previous_occurrences_mirror_next() {
    // (expression, zone, before, the previous occurrence)
    let table: &[(&str, &str, &str, Option<&str>)] = &[
        ("cron(0 3 * * *)", "UTC", "2026-11-25T03:00:00Z", Some("2026-11-24T03:00:00Z")),
        ("cron(0 3 * * *)", "UTC", "2026-11-25T03:00:00.001Z", Some("2026-11-25T03:00:00Z")),
        ("cron(30 2 * * *)", "Europe/Berlin", "2026-10-25T03:00:00Z", Some("2026-10-25T00:30:00Z")),
        ("cron(30 2 * * *)", "Europe/Berlin", "2026-03-29T02:00:00Z", Some("2026-03-29T01:00:00Z")),
        ("cron(30 1 * * *)", "America/New_York", "2026-11-01T07:00:00Z", Some("2026-11-01T05:30:00Z")),
        ("cron(30 2 * * *)", "America/New_York", "2026-03-08T08:00:00Z", Some("2026-03-08T07:00:00Z")),
        ("at(2026-12-24T18:00:00)", "UTC", "2026-12-24T18:00:00Z", None),
        ("at(2026-12-24T18:00:00)", "UTC", "2026-12-24T18:00:01Z", Some("2026-12-24T18:00:00Z")),
        ("rate(1 hour)", "UTC", "2026-11-25T03:00:00Z", Some("2026-11-25T02:00:00Z")),
        ("rate(1 hour)", "UTC", "2026-11-25T03:00:01Z", Some("2026-11-25T03:00:00Z")),
    ];
    for (expr, tz, before, want) in table {
        let s = Schedule::parse(expr, Some(tz), &ScheduleRules::GENERAL).expect("valid");
        let got = s.previous_before(ms(before)).map(show);
        assert_eq!(got.as_deref(), *want, "`{expr}` in {tz} before {before}");
    }
}

#[test]
fn a_rate_counts_from_its_anchor() {
    let anchor = ms("2026-11-24T10:17:00Z");
    let s = Schedule::parse("rate(1 day)", None, &ScheduleRules::GENERAL).expect("valid").anchored(anchor);
    assert_eq!(s.next_after(anchor).map(show).as_deref(), Some("2026-11-25T10:17:00Z"));
    assert_eq!(s.next_after(anchor - 1).map(show).as_deref(), Some("2026-11-24T10:17:00Z"));
    assert_eq!(s.previous_before(anchor + 1).map(show).as_deref(), Some("2026-11-24T10:17:00Z"));
}

/// (expression, last handled, now, grace minutes, fire, missed newest first)
type CatchUpRow = (&'static str, &'static str, &'static str, i64, Option<&'static str>, &'static [&'static str]);

#[test]
fn catch_up_fires_at_most_the_newest_occurrence_within_grace() {
    let table: &[CatchUpRow] = &[
        // Running normally: the 02:00 run is a few seconds late.
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T02:00:03Z", 60, Some("2026-11-25T02:00:00Z"), &[]),
        // Not due yet.
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T01:59:59Z", 60, None, &[]),
        // Down at 02:00, back at 02:40: fire it once.
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T02:40:00Z", 60, Some("2026-11-25T02:00:00Z"), &[]),
        // Exactly at the end of grace still fires; a millisecond later is missed.
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T03:00:00Z", 60, Some("2026-11-25T02:00:00Z"), &[]),
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T03:00:00.001Z", 60, None, &["2026-11-25T02:00:00Z"]),
        // Back at 04:00: missed.
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T04:00:00Z", 60, None, &["2026-11-25T02:00:00Z"]),
        // Several missed: the newest within grace fires, the older are superseded.
        (
            "rate(30 minutes)",
            "2026-11-25T01:30:00Z",
            "2026-11-25T03:10:00Z",
            60,
            Some("2026-11-25T03:00:00Z"),
            &["2026-11-25T02:30:00Z", "2026-11-25T02:00:00Z"],
        ),
        // Down for days with a daily cron: all missed, newest first.
        (
            "cron(0 2 * * *)",
            "2026-11-20T02:00:00Z",
            "2026-11-23T12:00:00Z",
            60,
            None,
            &["2026-11-23T02:00:00Z", "2026-11-22T02:00:00Z", "2026-11-21T02:00:00Z"],
        ),
        // A per-schedule grace of 6 hours covers it.
        ("cron(0 2 * * *)", "2026-11-24T02:00:00Z", "2026-11-25T07:00:00Z", 360, Some("2026-11-25T02:00:00Z"), &[]),
        // Already handled: nothing, never twice.
        ("cron(0 2 * * *)", "2026-11-25T02:00:00Z", "2026-11-25T02:30:00Z", 60, None, &[]),
        ("at(2026-11-25T02:00:00)", "2026-11-25T02:00:00Z", "2026-11-25T02:30:00Z", 60, None, &[]),
        // A one-shot created before its time, server down across it.
        (
            "at(2026-11-25T02:00:00)",
            "2026-11-24T09:00:00Z",
            "2026-11-25T02:30:00Z",
            60,
            Some("2026-11-25T02:00:00Z"),
            &[],
        ),
        (
            "at(2026-11-25T02:00:00)",
            "2026-11-24T09:00:00Z",
            "2026-11-25T05:00:00Z",
            60,
            None,
            &["2026-11-25T02:00:00Z"],
        ),
        // Across the Berlin gap: the nonexistent 02:30 fires at 03:00 CEST (01:00Z).
        (
            "cron(30 2 * * *) Europe/Berlin",
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:20:00Z",
            60,
            Some("2026-03-29T01:00:00Z"),
            &[],
        ),
        // Across the Berlin fold: after firing the first 02:30, the second is not an occurrence.
        ("cron(30 2 * * *) Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25T01:45:00Z", 60, None, &[]),
    ];
    for (row, handled, now, grace_min, fire, missed) in table {
        let (expr, tz) = match row.split_once(") ") {
            Some((e, tz)) => (format!("{e})"), Some(tz.to_owned())),
            None => ((*row).to_owned(), None),
        };
        let s = Schedule::parse(&expr, tz.as_deref(), &ScheduleRules::GENERAL).expect("valid");
        let got = s.catch_up(ms(handled), ms(now), grace_min * MINUTE_MS);
        assert_eq!(got.fire.map(show).as_deref(), *fire, "`{row}` handled {handled}, now {now}: fire");
        let got_missed: Vec<String> = got.missed.iter().copied().map(show).collect();
        assert_eq!(&got_missed, missed, "`{row}` handled {handled}, now {now}: missed");
        assert_eq!(got.next, s.next_after(ms(now)));
    }
}

#[test]
fn catch_up_lists_a_bounded_number_of_missed_occurrences() {
    let s = Schedule::parse("rate(5 minutes)", None, &ScheduleRules::GENERAL).expect("valid");
    let got = s.catch_up(ms("2026-01-01T00:00:00Z"), ms("2026-03-01T00:00:00Z"), DEFAULT_GRACE_MS);
    assert_eq!(got.fire.map(show).as_deref(), Some("2026-03-01T00:00:00Z"));
    assert_eq!(got.missed.len(), MAX_MISSED_LISTED);
    assert_eq!(got.missed.first().copied().map(show).as_deref(), Some("2026-02-28T23:55:00Z"));
}

proptest! {
    /// next and previous agree: nothing lies strictly between previous_before(t) and the next
    /// occurrence after it, and that next occurrence is at or after t.
    #[test]
    fn next_and_previous_agree(
        t in 1_700_000_000_000i64..1_900_000_000_000,
        which in 0usize..6,
    ) {
        let cases = [
            ("cron(30 2 * * *)", "Europe/Berlin"),
            ("cron(30 1 * * *)", "America/New_York"),
            ("cron(*/15 * * * *)", "Europe/Berlin"),
            ("cron(0 9 * * MON-FRI)", "America/New_York"),
            ("rate(7 hours)", "UTC"),
            ("cron(0 0 1 * SUN)", "Australia/Lord_Howe"),
        ];
        let (expr, tz) = cases[which];
        let s = Schedule::parse(expr, Some(tz), &ScheduleRules::GENERAL).expect("valid");
        let p = s.previous_before(t).expect("a previous occurrence");
        prop_assert!(p < t);
        let n = s.next_after(p).expect("a next occurrence");
        prop_assert!(n >= t, "{expr} {tz}: previous {p}, its next {n}, t {t}");
        let n2 = s.next_after(t).expect("next");
        prop_assert!(n2 > t);
        prop_assert!(s.previous_before(n2).expect("previous") <= t);
    }
}
