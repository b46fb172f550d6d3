//! Documents through the CLI: an imported AWS SSM document runs unchanged, parameter values
//! stay data, versions, and bad documents are refused with where and what.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn imported_ssm_document_runs_and_documents_are_versioned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let act = server.cli_json(&["activations", "create"]).expect("activation");
    let agent_dir = dir.path().join("node");
    write_root(&agent_dir.join("root"), "ID=debian\nVERSION_ID=12\n", "node").expect("root");
    let (mut agent, out) =
        Agent::enroll(&server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    assert!(out.status.success(), "{}", stderr(&out));
    agent.start().expect("start");
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "ls"])?[0]["status"] == "Online"))
        .expect("online");

    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ops-greet.json");
    let doc = server.cli_json(&["documents", "import-ssm", "--file", file, "--name", "Ops-Greet"]).expect("import");
    assert_eq!((doc["version"].as_i64(), doc["format"].as_str()), (Some(1), Some("ssm")));
    let listed = server.cli_json(&["documents", "ls"]).expect("ls");
    let names: Vec<&str> = listed.as_array().expect("array").iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(names.contains(&"Ops-Greet") && names.contains(&"Flotilla-RunShellScript"), "{names:?}");

    // A hostile value (allowed by the document's own pattern) stays data.
    let out = server
        .cli(&[
            "run",
            "Ops-Greet",
            "--param",
            "name=Bob; echo $(id) `id` 'x'",
            "--target",
            "all",
            "--wait",
            "-o",
            "json",
        ])
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let cmd: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        cmd["invocations"][0]["output"]["stdout"], "hello Bob; echo $(id) `id` 'x'\n/tmp\n",
        "Windows step skipped"
    );

    // The document's own rules are enforced at run time.
    let out = server.cli(&["run", "Ops-Greet", "--param", "name=bad|pipe", "--target", "all"]).expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("name"), "{}", stderr(&out));

    // Versions: update adds version 2, the default stays 1; show either.
    let own = dir.path().join("Ops-Hello.yaml");
    std::fs::write(&own, "schemaVersion: '2.2'\ndescription: v1\nmainSteps:\n  - action: run:shell\n    name: hi\n    inputs:\n      commands: ['echo v1']\n").expect("write");
    server.cli_json(&["documents", "create", "--file", own.to_str().expect("path")]).expect("create");
    std::fs::write(&own, "schemaVersion: '2.2'\ndescription: v2\nmainSteps:\n  - action: run:shell\n    name: hi\n    inputs:\n      commands: ['echo v2']\n").expect("write");
    let v2 =
        server.cli_json(&["documents", "update", "Ops-Hello", "--file", own.to_str().expect("path")]).expect("update");
    assert_eq!((v2["version"].as_i64(), v2["default_version"].as_i64()), (Some(2), Some(1)));
    let out = server
        .cli(&["run", "Ops-Hello", "--document-version", "2", "--target", "all", "--wait", "-o", "json"])
        .expect("run");
    let cmd: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cmd["invocations"][0]["output"]["stdout"], "v2\n");
    assert_eq!(server.cli_json(&["documents", "show", "Ops-Hello"]).expect("show")["description"], "v1");

    // run:document runs the version it names, not the default.
    let outer = dir.path().join("Ops-Outer.yaml");
    std::fs::write(
        &outer,
        "schemaVersion: '2.2'\nmainSteps:\n  - action: run:document\n    name: inner\n    inputs:\n      documentName: Ops-Hello\n      documentVersion: '2'\n",
    )
    .expect("write");
    server.cli_json(&["documents", "create", "--file", outer.to_str().expect("path")]).expect("create outer");
    let out = server.cli(&["run", "Ops-Outer", "--target", "all", "--wait", "-o", "json"]).expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let cmd: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cmd["invocations"][0]["output"]["stdout"], "v2\n");

    // Bad documents: what and where; nothing stored.
    let bad = dir.path().join("Bad-Doc.yaml");
    for (text, expect) in [
        (
            "schemaVersion: '2.2'\nmainSteps:\n  - action: run:shell\n    name: a\n    inputs:\n      commands: [\n",
            "line",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n  - action: aws:downloadContent\n    name: fetch\n    inputs: {}\n",
            "aws:downloadContent",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n  - action: run:shell\n    name: a\n    inputs:\n      commands: ['echo {{ missing }}']\n",
            "missing",
        ),
        ("schemaVersion: '1.2'\nruntimeConfig: {}\n", "2.2"),
    ] {
        std::fs::write(&bad, text).expect("write");
        let out = server.cli(&["documents", "create", "--file", bad.to_str().expect("path")]).expect("create");
        assert!(!out.status.success(), "{text}");
        assert!(stderr(&out).contains(expect), "{text}: {}", stderr(&out));
    }
    let out = server.cli(&["documents", "show", "Bad-Doc"]).expect("show");
    assert!(!out.status.success(), "a refused document is not stored");
    let out = server.cli(&["documents", "create", "--file", file, "--name", "Flotilla-Mine"]).expect("create");
    assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));
}
