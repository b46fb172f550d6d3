//! Issue 13, one scheduler, as an operator meets it: assessment templates fire on the new
//! scheduler through real `flotilla server` processes; bad schedules are refused with what to
//! write; a server SIGKILLed across an occurrence fires it once after restart when within the
//! grace and records it missed otherwise; two servers on one PostgreSQL fire an occurrence once.

use std::path::Path;
use std::time::Duration;

use flotilla_testkit::{TestServer, start_fleet, wait_until};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

/// `at(...)` for `secs` from now, in UTC.
fn at_in(secs: i64) -> (String, jiff::Timestamp) {
    let t = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(secs)).expect("in range");
    // at() has whole seconds: the occurrence is the second the expression names.
    let t = jiff::Timestamp::from_second(t.as_second()).expect("in range");
    (t.strftime("at(%Y-%m-%dT%H:%M:%S)").to_string(), t)
}

/// A reply's RFC 3339 time.
fn ts(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn runs(server: &TestServer) -> usize {
    server.cli_json(&["assess", "ls"]).ok().and_then(|r| r.as_array().map(Vec::len)).unwrap_or(0)
}

fn template<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().and_then(|a| a.iter().find(|t| t["name"] == name)).expect("template listed")
}

fn put(server: &TestServer, name: &str, node: &str, extra: &[&str]) -> Value {
    let mut args = vec!["assess", "templates", "put", name, "--target", node, "--rules", "cve"];
    args.extend_from_slice(extra);
    server.cli_json(&args).expect("template put")
}

/// Sleeps until `t` has passed (a wait, not an assertion on timing).
fn sleep_past(t: jiff::Timestamp, extra: Duration) {
    let left = t.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    std::thread::sleep(Duration::from_millis(u64::try_from(left.max(0)).unwrap_or(0)) + extra);
}

#[test]
fn bad_schedules_are_refused_saying_what_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let refused = |extra: &[&str], says: &str| {
        let mut args = vec!["assess", "templates", "put", "bad", "--rules", "cve"];
        args.extend_from_slice(extra);
        let out = server.cli(&args).expect("cli");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{extra:?}: {err}");
    };
    refused(&["--schedule", "cron(61 * * * *)"], "minute `61`: 61 is out of range: write a minute from 0 to 59");
    refused(&["--schedule", "cron(0 3 * * * *)"], "has 6 cron fields");
    refused(&["--schedule", "rate(0 minutes)"], "a rate must be at least 1");
    refused(&["--schedule", "rate(1 minutes)"], "write `rate(1 minute)`");
    refused(&["--schedule", "rate(1 minute)"], "more often than the minimum of 5 minutes");
    refused(&["--schedule", "at(2020-01-01T00:00:00)"], "in the past");
    refused(&["--schedule", "cron(0 3 * * *)", "--timezone", "Mars/Olympus"], "unknown time zone `Mars/Olympus`");
    refused(&["--timezone", "Europe/Berlin"], "give --schedule too");
    refused(&["--schedule", "rate(1 hour)", "--grace", "30d"], "outside 1 s to 7 days");
    let list = server.cli_json(&["assess", "templates", "ls"]).expect("ls");
    let names: Vec<&str> = list.as_array().expect("array").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["daily"], "a refused template is not stored (`daily` is shipped)");
    // A good one in a zone shows its next run in UTC.
    let saved = server
        .cli_json(&[
            "assess",
            "templates",
            "put",
            "berlin",
            "--schedule",
            "cron(30 2 * * *)",
            "--timezone",
            "Europe/Berlin",
        ])
        .expect("put");
    assert_eq!(saved["timezone"], "Europe/Berlin");
    let next = jiff::tz::TimeZone::UTC.to_datetime(ts(&saved["next_run_at"]).expect("next run"));
    // 02:30 in Berlin is 00:30Z in summer, 01:30Z in winter.
    assert!(next.minute() == 30 && (next.hour() == 0 || next.hour() == 1), "{next}");
}

#[test]
fn a_template_fires_on_the_scheduler_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let (soon, at) = at_in(3);
    let saved = put(&server, "soon", &ids[0], &["--schedule", &soon]);
    assert_eq!(ts(&saved["next_run_at"]), Some(at), "{saved}");
    wait_until(Duration::from_secs(60), || Ok(runs(&server) == 1)).expect("the schedule started a run");
    let list = server.cli_json(&["assess", "templates", "ls"]).expect("ls");
    let t = template(&list, "soon");
    assert_eq!(ts(&t["last_fired_at"]), Some(at), "{t}");
    assert!(t["next_run_at"].is_null(), "a one-shot schedule has no next run: {t}");
    // Another template, put later, makes the scheduler pass over `soon` again: still one run.
    let (later, _) = at_in(2);
    put(&server, "later", &ids[0], &["--schedule", &later]);
    wait_until(Duration::from_secs(60), || Ok(runs(&server) >= 2)).expect("the second schedule fired");
    assert_eq!(runs(&server), 2, "each occurrence fired once");
    assert_eq!(server.log_text().matches("schedule fired").count(), 2, "{}", server.log_text());
}

#[test]
fn a_server_killed_across_an_occurrence_fires_it_once_within_grace_and_records_it_missed_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let (soon, at) = at_in(4);
    put(&server, "within-grace", &ids[0], &["--schedule", &soon]);
    put(&server, "past-grace", &ids[0], &["--schedule", &soon, "--grace", "1s"]);
    server.kill();
    // Down across the occurrence, and for more than past-grace's 1 s grace.
    sleep_past(at, Duration::from_secs(3));
    server.restart().expect("restart");
    wait_until(Duration::from_secs(60), || Ok(runs(&server) >= 1)).expect("the missed occurrence fired on start");
    wait_until(Duration::from_secs(30), || {
        Ok(server.log_text().contains("schedule occurrences missed") && server.log_text().contains("past-grace"))
    })
    .expect("the occurrence outside grace was recorded missed");
    let list = server.cli_json(&["assess", "templates", "ls"]).expect("ls");
    assert_eq!(ts(&template(&list, "within-grace")["last_fired_at"]), Some(at), "{list}");
    assert!(template(&list, "past-grace")["last_fired_at"].is_null(), "{list}");

    // Killed again and restarted: neither fires (again).
    server.restart().expect("restart again");
    let (probe, _) = at_in(2);
    put(&server, "probe", &ids[0], &["--schedule", &probe]);
    wait_until(Duration::from_secs(60), || Ok(runs(&server) >= 2)).expect("the probe fired");
    assert_eq!(runs(&server), 2, "within-grace once, past-grace never, probe once");
}

/// Copies what a second server on the same database needs of the first: its master key (the
/// database records which key its secrets are under) and the admin token (each start records
/// the token file's credential as the admin's).
fn share_secrets(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("data dir");
    for file in ["master.key", "admin.token"] {
        std::fs::copy(from.join(file), to.join(file)).expect("copy a shared secret");
    }
}

#[test]
fn two_servers_on_one_postgres_fire_an_occurrence_once() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let db = rt.block_on(flotilla_testkit::postgres::TempDatabase::for_test());
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("FLOTILLA_DATABASE_URL", db.url())];
    let a = TestServer::start(&dir.path().join("a"), "1s", &env).expect("server a");
    let (_agents, ids) = start_fleet(&a, dir.path(), 1, DEBIAN).expect("fleet");
    // Both servers list the template at start, so both wake for its occurrence and race.
    let (soon, _) = at_in(8);
    put(&a, "raced", &ids[0], &["--schedule", &soon]);
    share_secrets(&dir.path().join("a"), &dir.path().join("b"));
    let b = TestServer::start(&dir.path().join("b"), "1s", &env).expect("server b on the same database");
    wait_until(Duration::from_secs(60), || Ok(runs(&a) >= 1))
        .unwrap_or_else(|e| panic!("the occurrence fired: {e}\na:\n{}\nb:\n{}", a.log_text(), b.log_text()));
    // One more occurrence put through b; once it has fired, both have passed over `raced`.
    let (probe, _) = at_in(3);
    put(&b, "probe", &ids[0], &["--schedule", &probe]);
    wait_until(Duration::from_secs(60), || Ok(runs(&b) >= 2)).expect("the probe fired");
    assert_eq!(runs(&a), 2, "of two servers racing, one fired each occurrence");
    let fired = a.log_text().matches("schedule fired").count() + b.log_text().matches("schedule fired").count();
    assert_eq!(fired, 2, "a:\n{}\nb:\n{}", a.log_text(), b.log_text());
    drop(a);
    drop(b);
    rt.block_on(db.drop_database()).expect("drop");
}
