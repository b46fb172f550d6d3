//! Issue 15, Patch Manager, as an operator meets it through the CLI against real `flotilla
//! server` and `flotilla-agent` processes, the agent patching a throwaway root through the real
//! apt-get/dpkg and dnf/rpm (packages and file:// repositories built in the test):
//! - a Scan reports the right MISSING count, INSTALLED_REJECTED under BLOCK, and a note for a
//!   rejected pattern that matches nothing; compliance is NON_COMPLIANT;
//! - an Install upgrades exactly the approved packages, leaves the rejected one, reports the
//!   package whose postinst fails as FAILED with the rest applied;
//! - with a reboot pending, NoReboot leaves INSTALLED_PENDING_REBOOT and does not reboot, and
//!   RebootIfNeeded runs the agent's reboot command (a stand-in that records the call);
//! - a patch group naming another family's baseline is refused, one naming no baseline falls
//!   back to the family's default with a note; an OS with no baseline fails with the reason;
//! - a maintenance window runs the Install on its schedule;
//! - bad baselines are refused naming the field, and nothing is stored.

// Tests drive the real binaries and packaging tools.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use flotilla_testkit::packages::{Rpm, build_rpm, dnf_repo, dpkg_root, have, is_root, rpm_root, run, sample_apt_root};
use flotilla_testkit::{TestServer, start_fleet, wait_until};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
const ROCKY: &str = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\n";
const DOC: &str = "Flotilla-RunPatchBaseline";

fn tools_missing(tools: &[&str]) -> bool {
    let absent: Vec<&&str> = tools.iter().filter(|t| !have(t)).collect();
    if absent.is_empty() && is_root() {
        return false;
    }
    flotilla_testkit::skip(&format!(
        "needs {absent:?} and root; scripts/test.sh installs them (dpkg-dev, apt-utils, rpm, dnf, createrepo-c)"
    ));
    true
}

/// Runs the patch document on `target` and waits; returns the command (also when it failed).
fn patch_run(server: &TestServer, target: &str, params: &[&str]) -> Value {
    let mut args = vec!["run", DOC, "--target", target, "--wait", "-o", "json"];
    for p in params {
        args.extend(["--param", p]);
    }
    let out = server.cli(&args).expect("run");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn stdout_of(command: &Value) -> String {
    command["invocations"][0]["output"]["stdout"].as_str().unwrap_or_default().to_owned()
}

fn states(server: &TestServer, node: &str) -> std::collections::BTreeMap<String, String> {
    let rows = server.cli_json(&["patch", "states", node]).expect("states");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["name"].as_str().unwrap_or("").to_owned(), r["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn count(states: &std::collections::BTreeMap<String, String>, state: &str) -> usize {
    states.values().filter(|s| *s == state).count()
}

fn dpkg_version(root: &Path, name: &str) -> String {
    run(std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .args(["-W", "-f=${Version}", name]))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, text).expect("write");
}

const WEB_BASELINE: &str = "name: web
os: debian
description: every update, except dd
approval_rules:
  - filters: [{key: PRIORITY, values: ['*']}]
    approve_after_days: 0
    enable_non_security: true
approved_patches: [not-on-this-node]
rejected_patches: [dd, 'nothing-here*']
rejected_patches_action: BLOCK
";

#[test]
fn apt_scan_install_failures_reboots_and_groups_through_the_cli() {
    if tools_missing(&["dpkg-deb", "apt-ftparchive", "apt-get", "dpkg"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (mut agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let node = ids[0].clone();
    let root = sample_apt_root(&dir.path().join("node-0"));
    assert_eq!(root, agents[0].root);
    // The reboot stand-in records that it was called instead of rebooting this machine.
    let marker = dir.path().join("rebooted");
    let stand_in = dir.path().join("reboot.sh");
    write(&stand_in, &format!("#!/bin/sh\necho called >> {}\n", marker.display()));
    run(std::process::Command::new("chmod").arg("755").arg(&stand_in));
    agents[0].stop();
    agents[0].start_with_env(&[("FLOTILLA_AGENT_REBOOT_COMMAND", stand_in.to_str().expect("utf-8"))]).expect("agent");
    wait_until(Duration::from_secs(20), || {
        Ok(server.cli_json(&["nodes", "ls"])?.as_array().is_some_and(|a| a.iter().all(|n| n["status"] == "Online")))
    })
    .expect("online again");

    // The predefined Debian baseline approves only security updates: aa from bookworm-security.
    let scan = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!(scan["status"], "Success", "{scan}");
    let s = states(&server, &node);
    assert_eq!(s.get("aa").map(String::as_str), Some("MISSING"), "{s:?}");
    assert_eq!(count(&s, "MISSING"), 1, "only the security update is approved by default: {s:?}");

    let file = dir.path().join("web.yaml");
    write(&file, WEB_BASELINE);
    let created =
        server.cli_json(&["patch", "baselines", "create", "--file", file.to_str().expect("utf-8")]).expect("create");
    assert_eq!(created["spec"]["rejected_patches_action"], "BLOCK", "{created}");
    server.cli(&["patch", "baselines", "default", "--os", "debian", "web"]).expect("default");

    let scan = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!(scan["status"], "Success", "{scan}");
    let log = stdout_of(&scan);
    assert!(log.contains("baseline web") && log.contains("`nothing-here*` matches no package"), "{log}");
    let s = states(&server, &node);
    for name in ["aa", "bb", "bad", "ee"] {
        assert_eq!(s.get(name).map(String::as_str), Some("MISSING"), "{name}: {s:?}");
    }
    assert_eq!(count(&s, "MISSING"), 4, "{s:?}");
    assert_eq!(s.get("dd").map(String::as_str), Some("INSTALLED_REJECTED"), "{s:?}");
    assert_eq!(s.get("keep").map(String::as_str), Some("INSTALLED"), "{s:?}");
    assert_eq!(s.get("not-on-this-node").map(String::as_str), Some("NOT_APPLICABLE"), "approved, absent: {s:?}");
    let compliance = server.cli_json(&["patch", "compliance"]).expect("compliance");
    assert_eq!(compliance[0]["status"], "NON_COMPLIANT", "{compliance}");
    assert_eq!(compliance[0]["counts"]["MISSING"], 4, "{compliance}");
    assert_eq!(compliance[0]["baseline"], "web");
    let items = server.cli_json(&["compliance", "ls", "--type", "Patch"]).expect("items");
    assert_eq!(items[0]["status"], "NON_COMPLIANT", "{items}");
    // Nothing was installed by a Scan.
    assert_eq!(dpkg_version(&root, "aa"), "1.0-1");

    // Install without a pending reboot: all approved but `bad` applied, dd left alone.
    let install = patch_run(&server, &node, &["Operation=Install", "RebootOption=NoReboot"]);
    assert_eq!(install["status"], "Failed", "one update failed: {install}");
    let detail = install["invocations"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("bad"), "{detail}");
    assert_eq!(dpkg_version(&root, "aa"), "1.1-1");
    assert_eq!(dpkg_version(&root, "bb"), "2.0-1");
    assert_eq!(dpkg_version(&root, "ee"), "1.5-1");
    assert_eq!(dpkg_version(&root, "cc"), "1.0-1", "bb's dependency came with it");
    assert_eq!(dpkg_version(&root, "dd"), "1.0-1", "the rejected package is untouched");
    let s = states(&server, &node);
    for name in ["aa", "bb", "ee"] {
        assert_eq!(s.get(name).map(String::as_str), Some("INSTALLED"), "{name}: {s:?}");
    }
    assert_eq!(s.get("bad").map(String::as_str), Some("FAILED"), "{s:?}");
    assert!(!marker.exists(), "no reboot needed, none done");

    // A reboot is pending: NoReboot reports INSTALLED_PENDING_REBOOT and does not reboot.
    write(&root.join("var/run/reboot-required"), "*** System restart required ***\n");
    let install = patch_run(&server, &node, &["Operation=Install", "RebootOption=NoReboot"]);
    assert!(stdout_of(&install).contains("NoReboot: not rebooting"), "{}", stdout_of(&install));
    let s = states(&server, &node);
    assert_eq!(s.get("aa").map(String::as_str), Some("INSTALLED_PENDING_REBOOT"), "{s:?}");
    assert_eq!(s.get("bad").map(String::as_str), Some("FAILED"), "retried, failed again: {s:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "NoReboot never reboots");
    // RebootIfNeeded reboots, after the result is stored.
    let install = patch_run(&server, &node, &["Operation=Install"]);
    assert!(stdout_of(&install).contains("rebooting once"), "{}", stdout_of(&install));
    wait_until(Duration::from_secs(40), || Ok(marker.exists())).expect("the reboot command ran");

    // Patch groups: one naming another family's baseline is refused, never applied.
    server.cli(&["patch", "groups", "set", "dbs", "Flotilla-RhelDefaultPatchBaseline"]).expect("group");
    server.cli(&["nodes", "tag", &node, "Patch Group=dbs"]).expect("tag");
    let refused = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!(refused["status"], "Failed", "{refused}");
    let detail = refused["invocations"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("names baseline Flotilla-RhelDefaultPatchBaseline for rhel") && detail.contains("not"),
        "{detail}"
    );
    // One naming no baseline falls back to the family's default, saying so.
    server.cli(&["nodes", "tag", &node, "Patch Group=nobody"]).expect("retag");
    let scan = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!(scan["status"], "Success", "{scan}");
    assert!(stdout_of(&scan).contains("patch group `nobody` has no baseline"), "{}", stdout_of(&scan));
    let groups = server.cli_json(&["patch", "groups", "ls"]).expect("groups");
    assert_eq!(groups[0]["group"], "dbs", "{groups}");
    let events = server.cli_json(&["events", "ls", "--type", "Patch.Compliance"]).expect("events");
    assert!(events.as_array().is_some_and(|e| e.len() >= 5), "{events}");
}

#[test]
fn bad_baselines_and_unknown_systems_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let refused = |text: &str, want: &str| {
        let file = dir.path().join("bad.yaml");
        write(&file, text);
        let out = server.cli(&["patch", "baselines", "create", "--file", file.to_str().expect("utf-8")]).expect("cli");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{text}: want {want:?}, got {err}");
    };
    refused(
        "name: x1\nos: debian\napproval_rules: [{filters: [{key: COLOUR, values: [red]}], approve_after_days: 0}]\n",
        "approval_rules[0].filters[0].key: unknown filter key `COLOUR`",
    );
    refused(
        "name: x2\nos: rhel\napproval_rules: [{filters: [{key: PRIORITY, values: [required]}], approve_after_days: 0}]\n",
        "PRIORITY is not a filter key for rhel",
    );
    refused(
        "name: x3\nos: debian\napproval_rules: [{filters: [{key: PRIORITY, values: [urgent]}], approve_after_days: 0}]\n",
        "values[0]: `urgent` is not a Debian priority",
    );
    refused("name: x4\nos: debian\napproval_rules: [{filters: [], approve_after_days: 400}]\n", "0–360");
    refused("name: x5\nos: gentoo\n", "os: `gentoo` is not a valid OS family");
    refused("name: x6\nos: debian\nrejected_patches: ['lib*ss*']\n", "rejected_patches[0]");
    refused("name: x7\nos: debian\nrejected_patches_action: DROP\n", "ALLOW_AS_DEPENDENCY, BLOCK");
    refused("name: x8\nos: debian\ncolour: blue\n", "unknown field `colour`");
    refused("name: Flotilla-Mine\nos: debian\n", "reserved");
    let list = server.cli_json(&["patch", "baselines", "ls"]).expect("ls");
    assert_eq!(list.as_array().map(Vec::len), Some(4), "only the predefined baselines: {list}");
    let out = server.cli(&["patch", "baselines", "rm", "Flotilla-DebianDefaultPatchBaseline"]).expect("rm");
    assert!(String::from_utf8_lossy(&out.stderr).contains("predefined"), "{out:?}");
    let out = server
        .cli(&["patch", "baselines", "default", "--os", "ubuntu", "Flotilla-DebianDefaultPatchBaseline"])
        .expect("d");
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a ubuntu baseline"), "{out:?}");

    // A baseline that approves nothing: a Scan works and says so; a node on an OS Patch Manager
    // does not know fails with the reason.
    let nothing = dir.path().join("nothing.yaml");
    write(&nothing, "name: nothing\nos: debian\n");
    server.cli(&["patch", "baselines", "create", "--file", nothing.to_str().expect("utf-8")]).expect("create");
    server.cli(&["patch", "baselines", "default", "--os", "debian", "nothing"]).expect("default");
    let out = server.cli(&["patch", "baselines", "rm", "nothing"]).expect("rm default");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the default baseline for debian"), "{out:?}");
    // Node 0 runs Debian with an empty package database; node 1 is made a Gentoo machine.
    let (mut agents, ids) = start_fleet(&server, dir.path(), 2, DEBIAN).expect("fleet");
    if !tools_missing(&["apt-get", "dpkg"]) {
        dpkg_root(&agents[0].root);
        let scan = patch_run(&server, &ids[0], &["Operation=Scan"]);
        assert_eq!(scan["status"], "Success", "{scan}");
        assert!(stdout_of(&scan).contains("baseline nothing approves nothing"), "{}", stdout_of(&scan));
    }
    agents[1].stop();
    write(&agents[1].root.join("etc/os-release"), "NAME=Gentoo\nID=gentoo\n");
    agents[1].start().expect("agent");
    wait_until(Duration::from_secs(20), || {
        let n = server.cli_json(&["nodes", "show", &ids[1]])?;
        Ok(n["status"] == "Online" && n.to_string().contains("gentoo"))
    })
    .expect("node 1 reconnected as Gentoo");
    let install = patch_run(&server, &ids[1], &["Operation=Install"]);
    assert_eq!(install["status"], "Failed", "{install}");
    let detail = install["invocations"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("which Patch Manager does not know"), "{detail}");
    let out = server.cli(&["run", DOC, "--param", "Operation=Upgrade", "--target", "all"]).expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Scan"), "{out:?}");
}

const UPDATEINFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="test" status="final" type="security" version="1">
    <id>RLSA-2026:0001</id>
    <title>alpha security update</title>
    <issued date="2026-01-01 00:00:00"/>
    <severity>Important</severity>
    <references><reference href="https://example.com" id="CVE-2026-0001" type="cve" title="CVE-2026-0001"/></references>
    <pkglist><collection short="r"><name>r</name>
      <package name="alpha" version="1.1" release="1" epoch="0" arch="noarch"><filename>alpha-1.1-1.noarch.rpm</filename></package>
    </collection></pkglist>
  </update>
</updates>
"#;

#[test]
fn dnf_scan_and_a_window_scheduled_install() {
    if tools_missing(&["rpmbuild", "rpm", "dnf", "createrepo_c", "modifyrepo_c"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (_agents, ids) = start_fleet(&server, dir.path(), 1, ROCKY).expect("fleet");
    let node = ids[0].clone();
    let work = dir.path().join("rpms");
    std::fs::create_dir_all(&work).expect("work dir");
    let old: Vec<_> = ["alpha", "beta", "gamma"].iter().map(|n| build_rpm(&work, &Rpm::new(n, "1.0", "1"))).collect();
    let root = dir.path().join("node-0/root");
    rpm_root(&root, &old);
    let new: Vec<_> = ["alpha", "beta"].iter().map(|n| build_rpm(&work, &Rpm::new(n, "1.1", "1"))).collect();
    let repo = dir.path().join("repo");
    dnf_repo(&repo, &new, Some(UPDATEINFO));
    write(
        &root.join("etc/yum.repos.d/test.repo"),
        &format!("[test]\nname=test\nbaseurl=file://{}\ngpgcheck=0\n", repo.display()),
    );

    // The predefined RHEL baseline: security (Critical/Important) after 7 days, bug fixes.
    let scan = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!(scan["status"], "Success", "{scan}");
    let s = states(&server, &node);
    assert_eq!(s.get("alpha").map(String::as_str), Some("MISSING"), "the Important security update: {s:?}");
    assert_eq!(s.get("beta").map(String::as_str), Some("INSTALLED_OTHER"), "no notice: not approved: {s:?}");
    assert_eq!(count(&s, "MISSING"), 1, "{s:?}");
    let rows = server.cli_json(&["patch", "states", &node, "--state", "MISSING"]).expect("missing");
    assert_eq!(rows[0]["cves"], serde_json::json!(["CVE-2026-0001"]), "{rows}");
    assert_eq!(rows[0]["severity"], "HIGH", "{rows}");

    // Install in a maintenance window a few seconds from now.
    let at =
        (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8)).strftime("at(%Y-%m-%dT%H:%M:%S)").to_string();
    server
        .cli_json(&["windows", "create", "--name", "patching", "--schedule", &at, "--duration", "1", "--cutoff", "0"])
        .expect("window");
    server.cli_json(&["windows", "targets", "add", "patching", "--target", &node, "--name", "all"]).expect("target");
    server
        .cli_json(&[
            "windows",
            "tasks",
            "add",
            "patching",
            "--document",
            DOC,
            "--param",
            "Operation=Install",
            "--param",
            "RebootOption=NoReboot",
            "--name",
            "install",
            "--priority",
            "1",
        ])
        .expect("task");
    wait_until(Duration::from_secs(90), || {
        let e = server.cli_json(&["windows", "executions", "patching"])?;
        Ok(e[0]["status"] == "SUCCESS")
    })
    .expect("the window's execution succeeded");
    let version = run(std::process::Command::new("rpm").arg("--root").arg(&root).args([
        "--dbpath",
        "/var/lib/rpm",
        "-q",
        "--qf",
        "%{VERSION}",
        "alpha",
    ]));
    assert_eq!(version, "1.1", "alpha was upgraded by the window's task");
    let beta = run(std::process::Command::new("rpm").arg("--root").arg(&root).args([
        "--dbpath",
        "/var/lib/rpm",
        "-q",
        "--qf",
        "%{VERSION}",
        "beta",
    ]));
    assert_eq!(beta, "1.0", "beta was not approved and stays");
    let s = states(&server, &node);
    assert_eq!(s.get("alpha").map(String::as_str), Some("INSTALLED"), "{s:?}");
    let compliance = server.cli_json(&["patch", "compliance", "--target", &node]).expect("compliance");
    assert_eq!(compliance[0]["status"], "COMPLIANT", "{compliance}");
    assert_eq!(compliance[0]["operation"], "Install", "{compliance}");
}
