//! The durable event log end to end, through the CLI as an operator uses it: a command's
//! events in order, sequence numbers kept across a server restart (`events ls --after` a
//! sequence from before it returns exactly the newer events), `events tail` receiving an event
//! live, and bad input refused with a clear error (by the CLI and by the server itself).

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_testkit::{TestServer, bin_path, start_fleet, wait_until};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

fn events(server: &TestServer, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["events", "ls"];
    full.extend_from_slice(args);
    server.cli_json(&full).expect("events ls").as_array().cloned().expect("a JSON array")
}

fn seqs(list: &[Value]) -> Vec<i64> {
    list.iter().map(|e| e["seq"].as_i64().expect("seq")).collect()
}

fn fails(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).expect("cli");
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn events_are_durable_ordered_and_followed_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet online");

    // A command's events: created, its invocation's end, its end, with increasing seq.
    let out = server
        .cli(&[
            "run",
            "Flotilla-RunShellScript",
            "--param",
            "commands=echo hi",
            "--target",
            "all",
            "--wait",
            "-o",
            "json",
        ])
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cmd: Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = cmd["id"].as_str().expect("id");
    let before = events(&server, &[]);
    let all_seqs = seqs(&before);
    assert!(all_seqs.windows(2).all(|w| w[0] < w[1]), "{all_seqs:?}");
    let kinds = |list: &[Value]| list.iter().map(|e| e["type"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>();
    let names = kinds(&before);
    for want in ["Node.Registered", "Node.Online", "Command.StatusChanged", "Invocation.StatusChanged"] {
        assert!(names.iter().any(|k| k == want), "{want} in {names:?}");
    }
    let of_command: Vec<&Value> = before.iter().filter(|e| e["resources"][0] == id).collect();
    let statuses: Vec<(String, String)> = of_command
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or("").into(), e["detail"]["status"].as_str().unwrap_or("").into()))
        .collect();
    assert_eq!(statuses.first(), Some(&("Command.StatusChanged".into(), "Pending".into())), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&("Command.StatusChanged".into(), "Success".into())), "{statuses:?}");
    assert!(statuses.contains(&("Invocation.StatusChanged".into(), "Success".into())), "{statuses:?}");
    let inv = of_command.iter().find(|e| e["type"] == "Invocation.StatusChanged").expect("an invocation event");
    assert_eq!(inv["resources"], serde_json::json!([id, ids[0]]));
    assert_eq!(inv["source"], "flotilla.runcommand");
    assert!(inv["id"].as_str().is_some_and(|s| !s.is_empty()) && inv["time"].as_str().is_some());

    // Type filter and limit.
    let only = events(&server, &["--type", "Command.StatusChanged", "--type", "Node.Registered"]);
    assert!(only.iter().all(|e| e["type"] == "Command.StatusChanged" || e["type"] == "Node.Registered"));
    assert_eq!(only.len(), names.iter().filter(|k| *k == "Command.StatusChanged" || *k == "Node.Registered").count());
    assert_eq!(seqs(&events(&server, &["--limit", "2"])), all_seqs[..2]);

    // A restart keeps the log and its numbering.
    let last = *all_seqs.last().expect("events");
    server.restart().expect("restart");
    let kept = events(&server, &["--limit", &all_seqs.len().to_string()]);
    assert_eq!(seqs(&kept), all_seqs, "the events from before the restart are all there");
    server.cli(&["params", "put", "/events/p", "one"]).expect("put");
    let newer = events(&server, &["--after", &last.to_string()]);
    let everything = events(&server, &[]);
    let tail_of_everything: Vec<Value> =
        everything.iter().filter(|e| e["seq"].as_i64() > Some(last)).take(newer.len()).cloned().collect();
    assert_eq!(newer, tail_of_everything, "--after returns exactly the newer events");
    assert!(newer.iter().all(|e| e["seq"].as_i64() > Some(last)), "{newer:?}");
    let puts: Vec<&Value> = newer.iter().filter(|e| e["type"] == "Parameter.Changed").collect();
    assert_eq!(puts.len(), 1, "{newer:?}");
    assert_eq!((&puts[0]["detail"]["name"], &puts[0]["detail"]["version"]), (&"/events/p".into(), &1.into()));
    assert!(!serde_json::to_string(&newer).expect("json").contains("\"one\""), "never the value");

    // `events tail` receives a new event live, one JSON object a line.
    let mut tail = Command::new(bin_path("flotilla"))
        .args(["events", "tail", "--type", "Parameter.Changed", "-o", "json"])
        .env("FLOTILLA_URL", &server.url)
        .env("FLOTILLA_TOKEN", &server.token)
        .env("FLOTILLA_CA", &server.ca)
        .env("FLOTILLA_CONFIG_DIR", server.data_dir.join("cli-profile"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tail");
    let stdout = tail.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The tail starts at the newest event: the earlier put is not replayed. Put until the tail
    // has seen one (it may not have read the log's head yet when the first put lands).
    let mut received = None;
    let mut version = 1;
    wait_until(Duration::from_secs(60), || {
        version += 1;
        server.cli(&["params", "put", "/events/p", &format!("v{version}"), "--overwrite"])?;
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
            received = Some(line);
        }
        Ok(received.is_some())
    })
    .expect("tail printed the new event");
    let _ = tail.kill();
    let _ = tail.wait();
    let line = received.expect("line");
    let event: Value = serde_json::from_str(&line).expect("one JSON object a line");
    assert_eq!(event["type"], "Parameter.Changed");
    assert!(event["detail"]["version"].as_i64() >= Some(2), "not the put from before the tail: {event}");
    assert!(event["seq"].as_i64() > puts[0]["seq"].as_i64(), "{event}");

    // Bad input: clear one-line errors, from the CLI and from the server.
    assert!(fails(&server, &["events", "ls", "--after", "-1"]).contains("negative"));
    assert!(fails(&server, &["events", "ls", "--after", "abc"]).contains("not a sequence number"));
    let unknown = fails(&server, &["events", "ls", "--type", "Command.Exploded"]);
    assert!(unknown.contains("unknown event type `Command.Exploded`") && unknown.contains("Command.StatusChanged"));
    assert!(fails(&server, &["events", "tail", "--type", "node.online"]).contains("unknown event type"));
    assert!(fails(&server, &["events", "ls", "--limit", "0"]).contains("limit"));
    for (query, says) in
        [("after=-1", "negative"), ("after=abc", "not a sequence number"), ("type=Bogus", "unknown event type")]
    {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(&server.ca)
            .args(["-H", &format!("Authorization: Bearer {}", server.token)])
            .arg(format!("{}/api/v1/events?{query}", server.url))
            .output()
            .expect("curl is installed on this machine kind");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n400") && text.contains(says), "{query}: {text}");
    }
}

/// `event_retention`: the retention worker deletes events past it, and the sequence numbers
/// they had are never handed out again.
#[test]
fn retention_deletes_old_events_and_never_reuses_their_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        TestServer::start(&dir.path().join("server"), "1s", &[("FLOTILLA_EVENT_RETENTION", "2s")]).expect("server");
    server.cli(&["params", "put", "/ret/p", "one"]).expect("put");
    let first = events(&server, &[]);
    let last = *seqs(&first).last().expect("an event");
    wait_until(Duration::from_secs(60), || Ok(events(&server, &[]).is_empty())).expect("old events deleted");
    // Put until an event is seen (on a slow machine the sweep may take the new one too).
    let mut seen = Vec::new();
    let mut version = 1;
    wait_until(Duration::from_secs(60), || {
        version += 1;
        server.cli(&["params", "put", "/ret/p", &format!("v{version}"), "--overwrite"])?;
        seen = events(&server, &[]);
        Ok(!seen.is_empty())
    })
    .expect("a new event");
    assert!(seen.iter().all(|e| e["seq"].as_i64() > Some(last)), "new numbers, above {last}: {seen:?}");
}
