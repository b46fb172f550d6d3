//! Issue 14, maintenance windows, as an operator meets them through the CLI against real
//! `flotilla server` and `flotilla-agent` processes:
//! - bad settings are refused saying what to write, and nothing is stored;
//! - a window's tasks run in priority order (equal priorities together) on its registered
//!   targets, and a server killed mid-window neither opens the occurrence twice nor starts a
//!   task twice;
//! - a server that comes back past the cutoff starts no new task (reported NOT_STARTED with
//!   the cutoff), accounts for the running one, and past the end cancels CANCEL_TASK work;
//! - two servers on one PostgreSQL open an occurrence once;
//! - an occurrence missed while the server was down opens late while before its cutoff, and is
//!   recorded missed after it.
//!
//! Windows last hours, so "later" is reached honestly: with the server stopped, every instant
//! the database holds about the window (its schedule, its occurrence row, its execution and its
//! task invocations) is moved back by the same amount, as if the server had been down that
//! long; production code has no fake clock.

// Tests drive the real binaries (sqlite3 for the time shift).
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{TestServer, start_fleet, wait_until};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
const SHELL: &str = "Flotilla-RunShellScript";

fn stderr_of(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).expect("cli");
    assert!(!out.status.success(), "`flotilla {}` succeeded: {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// `at(...)` `secs` from now as the wall clock of `tz` reads it, and the instant.
fn at_in(secs: i64, tz: &str) -> (String, jiff::Timestamp) {
    let t = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(secs)).expect("in range");
    let t = jiff::Timestamp::from_second(t.as_second()).expect("in range");
    let zone = jiff::tz::TimeZone::get(tz).expect("zone");
    (t.to_zoned_datetime(zone).strftime("at(%Y-%m-%dT%H:%M:%S)").to_string(), t)
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
}

fn executions(server: &TestServer, win: &str) -> Vec<Value> {
    server.cli_json(&["windows", "executions", win]).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

fn task<'a>(execution: &'a Value, name: &str) -> &'a Value {
    execution["task_invocations"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["task_name"] == name))
        .unwrap_or_else(|| panic!("task {name} in {execution}"))
}

fn add_task(server: &TestServer, win: &str, name: &str, priority: &str, script: &str, extra: &[&str]) -> Value {
    let param = format!("commands={script}");
    let mut args = vec!["windows", "tasks", "add", win, "--document", SHELL, "--param", &param];
    args.extend(["--priority", priority, "--name", name]);
    args.extend_from_slice(extra);
    server.cli_json(&args).expect("task add")
}

/// Waits for the window's single execution to have `name` running with a command; returns it.
fn wait_running(server: &TestServer, win: &str, name: &str) -> String {
    let mut command = String::new();
    wait_until(Duration::from_secs(90), || {
        let list = executions(server, win);
        if let Some(t) = list.first().map(|e| task(e, name)).filter(|t| t["status"] == "IN_PROGRESS") {
            command = t["command_id"].as_str().unwrap_or_default().to_owned();
        }
        Ok(!command.is_empty())
    })
    .unwrap_or_else(|e| panic!("{name} started: {e}\n{}", server.log_text()));
    command
}

fn wait_ended(server: &TestServer, win: &str) -> Value {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(120), || {
        last = executions(server, win).first().cloned().unwrap_or(Value::Null);
        Ok(!matches!(last["status"].as_str(), None | Some("PENDING" | "IN_PROGRESS")))
    })
    .unwrap_or_else(|e| panic!("the execution ended: {e}\n{last}\n{}", server.log_text()));
    last
}

#[test]
fn bad_windows_tasks_and_ids_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let create = |extra: &[&str]| {
        let mut args = vec!["windows", "create", "--name", "bad", "--schedule", "cron(0 3 * * *)"];
        args.extend_from_slice(extra);
        stderr_of(&server, &args)
    };
    let err = create(&["--duration", "3", "--cutoff", "3"]);
    assert!(err.contains("cutoff 3 h is not less than the duration 3 h") && err.contains("from 0 to 2"), "{err}");
    let err = create(&["--duration", "2", "--cutoff", "5"]);
    assert!(err.contains("cutoff 5 h"), "{err}");
    for d in ["0", "25"] {
        let err = create(&["--duration", d, "--cutoff", "0"]);
        assert!(err.contains(&format!("duration {d} h is outside 1 to 24 hours")), "{err}");
    }
    let err = create(&["--duration", "3", "--cutoff", "1", "--start-date", "2031-02-01", "--end-date", "2031-01-01"]);
    assert!(
        err.contains("the end date 2031-01-01T00:00:00+00:00 is before the start date 2031-02-01T00:00:00+00:00"),
        "{err}"
    );
    let err = stderr_of(
        &server,
        &[
            "windows",
            "create",
            "--name",
            "never",
            "--schedule",
            "at(2031-06-01T03:00:00)",
            "--duration",
            "3",
            "--cutoff",
            "1",
            "--start-date",
            "2031-01-01",
            "--end-date",
            "2031-02-01",
        ],
    );
    assert!(err.contains("never occurs between 2031-01-01T00:00:00+00:00 and the end date 2031-02-01"), "{err}");
    let err = create(&["--duration", "3", "--cutoff", "1", "--start-date", "next tuesday"]);
    assert!(err.contains("is not ISO 8601"), "{err}");
    let err = create(&["--duration", "3", "--cutoff", "1", "--timezone", "Mars/Olympus"]);
    assert!(err.contains("unknown time zone `Mars/Olympus`"), "{err}");
    let err = stderr_of(
        &server,
        &["windows", "create", "--name", "x", "--schedule", "rate(1 day)", "--duration", "1", "--cutoff", "0"],
    );
    assert!(err.contains("3 to 128 characters"), "{err}");
    assert_eq!(server.cli_json(&["windows", "ls"]).expect("ls"), serde_json::json!([]), "nothing stored");

    // A good window in Berlin across the change to summer time (2031-03-30), bounded by its dates.
    let w = server
        .cli_json(&[
            "windows",
            "create",
            "--name",
            "berlin",
            "--schedule",
            "cron(0 3 * * *)",
            "--timezone",
            "Europe/Berlin",
            "--duration",
            "3",
            "--cutoff",
            "1",
            "--start-date",
            "2031-03-29",
            "--end-date",
            "2031-04-01T00:00:00+02:00",
        ])
        .expect("create");
    let id = w["id"].as_str().expect("id").to_owned();
    assert!(
        id.starts_with("mw-") && w["enabled"] == true && w["next_execution_at"] == "2031-03-29T03:00:00+01:00",
        "{w}"
    );
    let next = server.cli_json(&["windows", "next", "berlin", "--count", "10"]).expect("next");
    assert_eq!(
        next,
        serde_json::json!(["2031-03-29T03:00:00+01:00", "2031-03-30T03:00:00+02:00", "2031-03-31T03:00:00+02:00"]),
        "bounded by the dates, with the offset of each instant"
    );
    assert_eq!(
        server.cli_json(&["windows", "next", &id, "--count", "1"]).expect("next by id"),
        serde_json::json!(["2031-03-29T03:00:00+01:00"])
    );
    let err = stderr_of(
        &server,
        &["windows", "create", "--name", "berlin", "--schedule", "rate(1 day)", "--duration", "1", "--cutoff", "0"],
    );
    assert!(err.contains("a maintenance window named `berlin` already exists"), "{err}");

    // Tasks on a document that does not exist, or with a bad limit or behaviour: refused.
    let err = stderr_of(&server, &["windows", "tasks", "add", "berlin", "--document", "No-Such-Document"]);
    assert!(err.contains("unknown document `No-Such-Document`") && err.contains("flotilla documents ls"), "{err}");
    let err = stderr_of(
        &server,
        &["windows", "tasks", "add", "berlin", "--document", SHELL, "--param", "commands=true", "--max-errors", "lots"],
    );
    assert!(err.contains("lots"), "{err}");
    let err = stderr_of(
        &server,
        &[
            "windows",
            "tasks",
            "add",
            "berlin",
            "--document",
            SHELL,
            "--param",
            "commands=true",
            "--cutoff-behavior",
            "stop",
        ],
    );
    assert!(err.contains("`stop` is not a cutoff behaviour: use one of CONTINUE_TASK, CANCEL_TASK"), "{err}");
    let err = stderr_of(&server, &["windows", "targets", "add", "berlin", "--target", "tag:"]);
    assert!(!err.is_empty());
    let shown = server.cli_json(&["windows", "show", "berlin"]).expect("show");
    assert_eq!(
        (shown["tasks"].clone(), shown["targets"].clone()),
        (serde_json::json!([]), serde_json::json!([])),
        "{shown}"
    );

    // Unknown windows, by id and by name.
    for args in [
        vec!["windows", "show", "mw-0000000000000000"],
        vec!["windows", "executions", "mw-0000000000000000"],
        vec!["windows", "next", "no-such-window"],
        vec!["windows", "rm", "no-such-window"],
        vec!["windows", "update", "mw-0000000000000000", "--duration", "2"],
        vec!["windows", "tasks", "add", "mw-0000000000000000", "--document", SHELL],
        vec!["windows", "targets", "add", "no-such-window", "--target", "all"],
    ] {
        let err = stderr_of(&server, &args);
        assert!(err.contains("no maintenance window `") && err.contains("flotilla windows ls"), "{args:?}: {err}");
    }
    // An update is checked like a creation; a refused one changes nothing.
    let err = stderr_of(&server, &["windows", "update", "berlin", "--cutoff", "3"]);
    assert!(err.contains("cutoff 3 h is not less than the duration 3 h"), "{err}");
    let err = stderr_of(&server, &["windows", "update", "berlin", "--end-date", "2031-03-01"]);
    assert!(err.contains("is before the start date"), "{err}");
    let updated = server.cli_json(&["windows", "update", "berlin", "--duration", "4", "--disabled"]).expect("update");
    assert_eq!((updated["duration_hours"].as_u64(), updated["cutoff_hours"].as_u64()), (Some(4), Some(1)), "{updated}");
    assert!(updated["enabled"] == false && updated["next_execution_at"].is_null(), "{updated}");
    server.cli(&["windows", "rm", "berlin"]).expect("rm");
    assert_eq!(server.cli_json(&["windows", "ls"]).expect("ls"), serde_json::json!([]));
}

#[test]
fn tasks_run_in_priority_order_and_a_restart_mid_window_opens_the_occurrence_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    // A zone with a half-hour offset and no daylight saving: every time shows `+05:30`.
    let (at, when) = at_in(20, "Asia/Kolkata");
    let w = server
        .cli_json(&[
            "windows",
            "create",
            "--name",
            "ordered",
            "--schedule",
            &at,
            "--timezone",
            "Asia/Kolkata",
            "--duration",
            "1",
            "--cutoff",
            "0",
        ])
        .expect("create");
    assert_eq!(ts(&w["next_execution_at"]), when, "{w}");
    let target = server
        .cli_json(&["windows", "targets", "add", "ordered", "--target", &ids[0], "--name", "node"])
        .expect("target");
    assert!(target["id"].as_str().is_some_and(|i| i.starts_with("wt-")), "{target}");
    // Registered out of order: priority decides, not the order of registration.
    add_task(&server, "ordered", "third", "3", "echo three", &[]);
    add_task(&server, "ordered", "first", "1", "sleep 6; echo one", &[]);
    add_task(&server, "ordered", "second-a", "2", "sleep 2; echo two-a", &[]);
    add_task(&server, "ordered", "second-b", "2", "sleep 2; echo two-b", &["--cutoff-behavior", "CANCEL_TASK"]);
    let shown = server.cli_json(&["windows", "show", "ordered"]).expect("show");
    let names: Vec<&str> =
        shown["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["first", "second-a", "second-b", "third"], "{shown}");

    // Killed while the first task runs, and started again.
    let first = wait_running(&server, "ordered", "first");
    let err = stderr_of(&server, &["windows", "rm", "ordered"]);
    assert!(err.contains("in progress until") && err.contains("--disabled"), "not removed mid-window: {err}");
    server.kill();
    server.restart().expect("restart");
    let e = wait_ended(&server, "ordered");
    let list = executions(&server, "ordered");
    assert_eq!(list.len(), 1, "one execution for the one occurrence: {list:?}");
    assert_eq!(e["status"], "SUCCESS", "{e}");
    assert_eq!(ts(&e["occurrence_at"]), when);
    for field in ["occurrence_at", "cutoff_at", "end_at", "started_at", "ended_at"] {
        assert!(e[field].as_str().is_some_and(|t| t.ends_with("+05:30")), "{field} in the window's zone: {e}");
    }
    assert_eq!(task(&e, "first")["command_id"], first.as_str(), "the first task was not started again: {e}");
    let mut commands = std::collections::BTreeSet::new();
    for name in ["first", "second-a", "second-b", "third"] {
        let t = task(&e, name);
        assert_eq!(t["status"], "SUCCESS", "{t}");
        assert!(commands.insert(t["command_id"].as_str().expect("command id").to_owned()), "one command per task");
    }
    let start = |name: &str| ts(&task(&e, name)["started_at"]);
    let end = |name: &str| ts(&task(&e, name)["ended_at"]);
    let first_end = end("first");
    for two in ["second-a", "second-b"] {
        assert!(start(two) >= first_end, "{two} started after the first ended: {e}");
        assert!(end(two) <= start("third"), "third started after {two} ended: {e}");
    }
    assert!(
        start("second-a").max(start("second-b")) < end("second-a").min(end("second-b")),
        "equal priorities ran together: {e}"
    );
    // Each task's command ran on the window's target.
    let shown = server.cli_json(&["commands", "show", &first]).expect("command");
    assert_eq!(shown["targets"], serde_json::json!([ids[0]]), "{shown}");
    assert!(shown["comment"].as_str().is_some_and(|c| c.contains("window ordered")), "{shown}");
    // The occurrence fired once over both server runs, and the event log has its start and end.
    assert_eq!(server.log_text().matches("schedule fired").count(), 1, "{}", server.log_text());
    let events = server.cli_json(&["events", "ls", "--type", "Window.Execution"]).expect("events");
    let statuses: Vec<&str> =
        events.as_array().expect("events").iter().filter_map(|v| v["detail"]["status"].as_str()).collect();
    assert_eq!(statuses, ["IN_PROGRESS", "SUCCESS"], "{events}");
}

/// Moves every instant the database holds about window `id` back by `minutes`, the server
/// stopped: the same state as a server that had been down that much longer.
fn shift_back(server: &TestServer, id: &str, occurrence: jiff::Timestamp, minutes: i64) -> jiff::Timestamp {
    let d = minutes * 60_000;
    let moved = occurrence.checked_sub(jiff::SignedDuration::from_mins(minutes)).expect("in range");
    let at = moved.strftime("at(%Y-%m-%dT%H:%M:%S)").to_string();
    let sql = format!(
        "UPDATE windows SET schedule = '{at}', schedule_since = schedule_since - {d}, created_at = created_at - {d} \
         WHERE id = '{id}';
         UPDATE schedule_occurrences SET occurrence_at = occurrence_at - {d}, recorded_at = recorded_at - {d} \
         WHERE schedule_key = 'window:{id}';
         UPDATE window_task_invocations SET started_at = started_at - {d} WHERE started_at IS NOT NULL AND \
         execution_id IN (SELECT id FROM window_executions WHERE window_id = '{id}');
         UPDATE window_executions SET occurrence_at = occurrence_at - {d}, started_at = started_at - {d} \
         WHERE window_id = '{id}';
         SELECT changes();"
    );
    let out = Command::new("sqlite3").arg(server.data_dir.join("flotilla.db")).arg(&sql).output().expect("sqlite3");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "one execution moved");
    moved
}

/// What [`restart_later`] leaves: the server and agent still running, the ended execution, the
/// long task's command and the occurrence as moved.
struct Later {
    server: TestServer,
    _agents: Vec<flotilla_testkit::Agent>,
    _dir: tempfile::TempDir,
    execution: Value,
    long: String,
    moved: jiff::Timestamp,
}

/// A window (2 h, cutoff 1 h) whose server dies while its first task runs and comes back
/// `minutes` later in window time.
fn restart_later(minutes: i64, behavior: &str) -> Later {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let (at, when) = at_in(15, "UTC");
    let w = server
        .cli_json(&["windows", "create", "--name", "late", "--schedule", &at, "--duration", "2", "--cutoff", "1"])
        .expect("create");
    let id = w["id"].as_str().expect("id").to_owned();
    server.cli_json(&["windows", "targets", "add", &id, "--target", &ids[0]]).expect("target");
    add_task(&server, "late", "long", "1", "sleep 20; echo long", &["--cutoff-behavior", behavior]);
    add_task(&server, "late", "after", "2", "echo after", &[]);
    let long = wait_running(&server, "late", "long");
    server.kill();
    let moved = shift_back(&server, &id, when, minutes);
    server.restart().expect("restart");
    let e = wait_ended(&server, "late");
    assert_eq!(executions(&server, "late").len(), 1, "the occurrence did not open a second execution");
    assert_eq!(server.log_text().matches("schedule fired").count(), 1, "{}", server.log_text());
    assert_eq!(task(&e, "long")["command_id"], long.as_str(), "the running task was not started again: {e}");
    let after = task(&e, "after");
    assert_eq!(after["status"], "NOT_STARTED", "{e}");
    assert!(after["command_id"].is_null() && after["started_at"].is_null(), "no command for it: {e}");
    let cutoff = moved.checked_add(jiff::SignedDuration::from_hours(1)).expect("in range");
    let cutoff_text = cutoff.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    assert_eq!(after["reason"], format!("not started: past the cutoff at {cutoff_text}"), "{e}");
    assert_eq!(e["cutoff_at"], cutoff_text.as_str(), "{e}");
    assert_eq!(e["status"], "TIMED_OUT", "{e}");
    let commands = server.cli_json(&["commands", "ls"]).expect("commands");
    let ours = commands
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["comment"].as_str().is_some_and(|t| t.contains("window late")))
        .count();
    assert_eq!(ours, 1, "only the long task ever had a command: {commands}");
    Later { server, _agents: agents, _dir: dir, execution: e, long, moved }
}

#[test]
fn back_past_the_cutoff_no_new_task_starts_and_the_running_one_is_accounted_for() {
    // 90 minutes later: past the cutoff (60 min in), before the end (120 min).
    let later = restart_later(90, "CONTINUE_TASK");
    let (server, e, long) = (&later.server, &later.execution, &later.long);
    let t = task(e, "long");
    assert_eq!(t["status"], "SUCCESS", "the running task finished after the restart and was recorded: {e}");
    let shown = server.cli_json(&["commands", "show", long]).expect("command");
    assert_eq!(shown["status"], "Success", "{shown}");
}

#[test]
fn back_past_the_end_cancel_task_work_is_cancelled_and_reported() {
    // 150 minutes later: past the end (120 min); the running task says CANCEL_TASK.
    let later = restart_later(150, "CANCEL_TASK");
    let (server, e, long, moved) = (&later.server, &later.execution, &later.long, later.moved);
    let t = task(e, "long");
    let end = moved
        .checked_add(jiff::SignedDuration::from_hours(2))
        .expect("in range")
        .strftime("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    assert_eq!(t["status"], "CANCELLED", "{e}");
    assert_eq!(t["reason"], format!("still running at the window's end at {end}: cancelled (CANCEL_TASK)"), "{e}");
    wait_until(Duration::from_secs(60), || Ok(server.cli_json(&["commands", "show", long])?["status"] == "Cancelled"))
        .expect("the task's command was cancelled");
}

/// Copies what a second server on the same database needs of the first: its master key and
/// the admin token.
fn share_secrets(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("data dir");
    for file in ["master.key", "admin.token"] {
        std::fs::copy(from.join(file), to.join(file)).expect("copy a shared secret");
    }
}

#[test]
fn two_servers_on_one_postgres_open_an_occurrence_once() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let db = rt.block_on(flotilla_testkit::postgres::TempDatabase::for_test());
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("FLOTILLA_DATABASE_URL", db.url())];
    let a = TestServer::start(&dir.path().join("a"), "1s", &env).expect("server a");
    let (_agents, ids) = start_fleet(&a, dir.path(), 1, DEBIAN).expect("fleet");
    let (at, _) = at_in(12, "UTC");
    server_window(&a, &at, &ids[0]);
    share_secrets(&dir.path().join("a"), &dir.path().join("b"));
    // Both servers list the window at start, so both wake for its occurrence and race.
    let b = TestServer::start(&dir.path().join("b"), "1s", &env).expect("server b on the same database");
    // Whichever won, its first task gets a command (the agent is connected to a only, so a
    // command made by b may not be delivered: Run Command does not route between replicas yet).
    wait_until(Duration::from_secs(90), || {
        Ok(executions(&b, "raced").first().is_some_and(|e| task(e, "one")["command_id"].is_string()))
    })
    .unwrap_or_else(|e| panic!("the occurrence opened: {e}\na:\n{}\nb:\n{}", a.log_text(), b.log_text()));
    // Give the loser every chance to (wrongly) open it too: both pass over it again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(executions(&a, "raced").len(), 1, "one execution for the occurrence");
    let fired = a.log_text().matches("schedule fired").count() + b.log_text().matches("schedule fired").count();
    assert_eq!(fired, 1, "a:\n{}\nb:\n{}", a.log_text(), b.log_text());
    // Every command made for the window is one its execution records (one per task); read in
    // this order, a task starting in between cannot make the check fail.
    let commands = a.cli_json(&["commands", "ls"]).expect("commands");
    let made: std::collections::BTreeSet<String> = commands
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["comment"].as_str().is_some_and(|t| t.contains("window raced")))
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let recorded: std::collections::BTreeSet<String> = executions(&a, "raced")[0]["task_invocations"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["command_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!made.is_empty() && made.is_subset(&recorded), "made {made:?}, recorded {recorded:?}");
    drop(a);
    drop(b);
    rt.block_on(db.drop_database()).expect("drop");
}

fn server_window(server: &TestServer, at: &str, node: &str) {
    server
        .cli_json(&["windows", "create", "--name", "raced", "--schedule", at, "--duration", "1", "--cutoff", "0"])
        .expect("create");
    server.cli_json(&["windows", "targets", "add", "raced", "--target", node]).expect("target");
    add_task(server, "raced", "one", "1", "echo one", &[]);
    add_task(server, "raced", "two", "2", "echo two", &[]);
}

#[test]
fn an_occurrence_missed_while_down_opens_late_before_its_cutoff_and_never_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let (at, when) = at_in(6, "UTC");
    for name in ["in-time", "too-late"] {
        server
            .cli_json(&["windows", "create", "--name", name, "--schedule", &at, "--duration", "2", "--cutoff", "1"])
            .expect("create");
        server.cli_json(&["windows", "targets", "add", name, "--target", &ids[0]]).expect("target");
        add_task(&server, name, "hello", "1", "echo hello", &[]);
    }
    let late = server.cli_json(&["windows", "show", "too-late"]).expect("show")["id"].as_str().expect("id").to_owned();
    server.kill();
    // Down across the occurrence. For `too-late`, the server is down 90 minutes longer: its
    // schedule and creation move back that much, past the 1 h from occurrence to cutoff.
    let left = when.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    std::thread::sleep(Duration::from_millis(u64::try_from(left.max(0)).unwrap_or(0) + 2000));
    let moved = when.checked_sub(jiff::SignedDuration::from_mins(90)).expect("in range");
    let sql = format!(
        "UPDATE windows SET schedule = '{}', schedule_since = schedule_since - 5400000, created_at = created_at - \
         5400000 WHERE id = '{late}'; SELECT changes();",
        moved.strftime("at(%Y-%m-%dT%H:%M:%S)")
    );
    let out = Command::new("sqlite3").arg(server.data_dir.join("flotilla.db")).arg(&sql).output().expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", String::from_utf8_lossy(&out.stderr));
    server.restart().expect("restart");
    let e = wait_ended(&server, "in-time");
    assert_eq!((e["status"].as_str(), ts(&e["occurrence_at"])), (Some("SUCCESS"), when), "opened late: {e}");
    assert!(ts(&e["started_at"]) > when, "{e}");
    wait_until(Duration::from_secs(30), || Ok(server.log_text().contains("schedule occurrences missed")))
        .expect("the occurrence past its cutoff was recorded missed");
    assert!(executions(&server, "too-late").is_empty(), "no execution past the cutoff");
}
