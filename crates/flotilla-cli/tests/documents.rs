//! Documents through the CLI: an imported AWS SSM document runs unchanged, parameter values
//! stay data, versions, and bad documents are refused with where and what.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server and one real Debian agent, Online.
fn one_online_node(dir: &std::path::Path) -> (TestServer, Agent) {
    let server = TestServer::start(&dir.join("server"), "1s", &[]).expect("server");
    let act = server.cli_json(&["activations", "create"]).expect("activation");
    let agent_dir = dir.join("node");
    write_root(&agent_dir.join("root"), "ID=debian\nVERSION_ID=12\n", "node").expect("root");
    let (mut agent, out) =
        Agent::enroll(&server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    assert!(out.status.success(), "{}", stderr(&out));
    agent.start().expect("start");
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "ls"])?[0]["status"] == "Online"))
        .expect("online");
    (server, agent)
}

#[test]
fn imported_ssm_document_runs_and_documents_are_versioned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _agent) = one_online_node(dir.path());

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

/// A document from flotilla-document's reference data (real AWS documents and documents in
/// AWS's published syntax; sources in its README).
fn aws_data(name: &str) -> String {
    format!("{}/../flotilla-document/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `document` on every node and waits; the command as JSON.
fn run_wait(server: &TestServer, document: &str, params: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", document];
    for param in params {
        args.extend(["--param", param]);
    }
    args.extend(["--target", "all", "--wait", "-o", "json"]);
    let out = server.cli(&args).expect("run");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{document}: {}", stderr(&out)))
}

#[test]
fn aws_documents_of_every_schema_run_unchanged_on_a_real_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _agent) = one_online_node(dir.path());
    let import = |file: &str, name: &str| {
        let doc = server.cli_json(&["documents", "import-ssm", "--file", &aws_data(file), "--name", name]);
        doc.unwrap_or_else(|e| panic!("{file}: {e}"))
    };

    // AWS-RunShellScript itself (schema 1.2), in JSON and YAML: the commands are the script.
    let commands = ["commands=echo one", "commands=echo \"two $((1 + 1))\" | tr t T"];
    for (file, name) in
        [("AWS-RunShellScript.json", "Ops-RunShellScript"), ("AWS-RunShellScript.yaml", "Ops-RunShellYaml")]
    {
        assert_eq!(import(file, name)["format"], "ssm");
        let cmd = run_wait(&server, name, &commands);
        assert_eq!(cmd["status"], "Success", "{file}: {cmd}");
        assert_eq!(cmd["invocations"][0]["output"]["stdout"], "one\nTwo 2\n", "{file}");
    }

    // Schema 2.2 across platforms, in YAML and JSON: only the Linux step runs; `{{commands}}` is
    // the script, `{{name}}` and the ENV_VAR parameter stay data, `{{ssm:...}}` comes from the
    // Parameter Store at send time.
    server.cli_json(&["params", "put", "/ops/greeting", "store-says-hi"]).expect("put");
    for (file, name) in
        [("ops-cross-platform-2.2.yaml", "Ops-CrossYaml"), ("ops-cross-platform-2.2.json", "Ops-CrossJson")]
    {
        import(file, name);
        let cmd = run_wait(&server, name, &["commands=echo from commands", "name=Bob; echo $(id)", "message=m'$(id)"]);
        assert_eq!(cmd["status"], "Success", "{file}: {cmd}");
        assert_eq!(
            cmd["invocations"][0]["output"]["stdout"],
            "Hello Bob; echo $(id)\nenv: m'$(id); as written: m'$(id)\nfrom commands\ngreeting from store-says-hi\n",
            "{file}"
        );
    }
    let shown = server.cli(&["commands", "ls", "-o", "json"]).expect("ls");
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("store-says-hi"), "records keep the reference");

    // Schema 2.0: aws:softwareInventory runs the inventory collection, then the shell step.
    import("ops-inventory-2.0.json", "Ops-Inventory");
    let cmd = run_wait(&server, "Ops-Inventory", &[]);
    assert_eq!(cmd["status"], "Success", "{cmd}");
    let stdout = cmd["invocations"][0]["output"]["stdout"].as_str().unwrap_or_default().to_owned();
    assert!(
        stdout.contains("changed type(s)") && stdout.ends_with("inventory requested\nstate in /var/lib/flotilla\n"),
        "{stdout}"
    );

    // AWS reference spellings: a name without `/` is the root-level `/name`; ssm-secure takes
    // only SecureStrings; an unknown parameter fails the invocation with the reason and nothing
    // runs (the marker file of the first step is never made).
    server.cli_json(&["params", "put", "/ops-root", "rooted"]).expect("put");
    server.cli_json(&["params", "put", "/ops/secret", "s3cr3t-value", "--type", "SecureString"]).expect("put");
    let marker = dir.path().join("ran");
    let refs = dir.path().join("Ops-Refs.json");
    let write_refs = |line: &str| {
        let document = serde_json::json!({
            "schemaVersion": "2.2",
            "mainSteps": [{
                "action": "aws:runShellScript",
                "name": "refs",
                "inputs": {"runCommand": [format!("touch {}", marker.display()), line]}
            }]
        });
        std::fs::write(&refs, document.to_string()).expect("write");
    };
    let cases = [
        ("echo {{ssm:ops-root}} {{ ssm-secure:/ops/secret }}", Ok("rooted s3cr3t-value\n")),
        ("echo {{ssm:/ops/missing}}", Err(["/ops/missing", "no parameter"])),
        ("echo {{ssm-secure:/ops/greeting}}", Err(["/ops/greeting", "not a SecureString"])),
        ("echo {{ssm:/ops/secret}}", Err(["/ops/secret", "write {{ssm-secure:...}}"])),
    ];
    for (i, (line, expected)) in cases.into_iter().enumerate() {
        write_refs(line);
        let name = format!("Ops-Refs-{i}");
        let doc =
            server.cli_json(&["documents", "import-ssm", "--file", refs.to_str().expect("path"), "--name", &name]);
        doc.unwrap_or_else(|e| panic!("{line}: {e}"));
        let _ = std::fs::remove_file(&marker);
        let cmd = run_wait(&server, &name, &[]);
        match expected {
            Ok(stdout) => {
                assert_eq!(cmd["status"], "Success", "{line}: {cmd}");
                assert_eq!(cmd["invocations"][0]["output"]["stdout"], stdout, "{line}");
            }
            Err(fragments) => {
                assert_eq!(cmd["status"], "Failed", "{line}: {cmd}");
                let detail = cmd["invocations"][0]["detail"].as_str().unwrap_or_default();
                assert!(fragments.iter().all(|f| detail.contains(f)), "{line}: {detail}");
                assert!(!marker.exists(), "{line}: nothing may run when a reference cannot be resolved");
            }
        }
    }

    // Refused imports say what and where, and store nothing.
    for (file, expect) in [
        ("AWS-RunPowerShellScript-1.2.json", "`aws:runPowerShellScript`, which runs only on Windows"),
        ("bad-schema-version.yaml", "schemaVersion `2.1` cannot be imported"),
        ("bad-null-required.json", "needs the input `runCommand`"),
    ] {
        let out =
            server.cli(&["documents", "import-ssm", "--file", &aws_data(file), "--name", "Ops-Bad"]).expect("import");
        assert!(!out.status.success(), "{file}");
        assert!(stderr(&out).contains(expect), "{file}: {}", stderr(&out));
    }
    assert!(!server.cli(&["documents", "show", "Ops-Bad"]).expect("show").status.success(), "nothing stored");
}
