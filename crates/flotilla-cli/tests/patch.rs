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
//! - with no rate given, `flotilla run` gets the "patch now" rate (§7.6); the install override
//!   list installs what the baseline does not approve, reported INSTALLED_OTHER; a CVE the
//!   assessment found gives an update its severity, which a SEVERITY rule approves; a patch
//!   group naming a baseline of the node's family applies it; a rejected dependency fails the
//!   update that needs it under BLOCK and comes with it (INSTALLED_OTHER) under
//!   ALLOW_AS_DEPENDENCY;
//! - on dnf, a failing %post is FAILED with the rest applied, and a newer kernel than the
//!   running one leaves INSTALLED_PENDING_REBOOT until the agent reboots (RebootIfNeeded);
//! - bad baselines are refused naming the field, and nothing is stored.

// Tests drive the real binaries and packaging tools.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_testkit::packages::{Rpm, build_rpm, dnf_repo, dpkg_root, have, is_root, rpm_root, run, sample_apt_root};
use flotilla_testkit::{Agent, TestServer, start_fleet, wait_until};
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

/// Restarts `agent` (of `node`) with a reboot command that records its call in the returned
/// file instead of rebooting this machine, and waits until it is online again.
fn with_reboot_stand_in(server: &TestServer, agent: &mut Agent, node: &str, dir: &Path) -> PathBuf {
    let marker = dir.join("rebooted");
    let stand_in = dir.join("reboot.sh");
    write(&stand_in, &format!("#!/bin/sh\necho called >> {}\n", marker.display()));
    run(std::process::Command::new("chmod").arg("755").arg(&stand_in));
    agent.stop();
    agent.start_with_env(&[("FLOTILLA_AGENT_REBOOT_COMMAND", stand_in.to_str().expect("utf-8"))]).expect("agent");
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "show", node])?["status"] == "Online"))
        .expect("online again");
    marker
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
    let marker = with_reboot_stand_in(&server, &mut agents[0], &node, dir.path());

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

/// `nodes tag`s the node into `group` and points the group at `baseline` (a Debian one).
fn group_to(server: &TestServer, node: &str, group: &str, baseline: &str) {
    server.cli(&["patch", "groups", "set", group, baseline]).expect("group");
    server.cli(&["nodes", "tag", node, &format!("Patch Group={group}")]).expect("tag");
}

fn create_baseline(server: &TestServer, dir: &Path, text: &str) {
    let file = dir.join("baseline.yaml");
    write(&file, text);
    let out = server.cli(&["patch", "baselines", "create", "--file", file.to_str().expect("utf-8")]).expect("create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An OSV record of a Debian 12 CVE in `package`, fixed in `fixed`, CVSS 9.8 (CRITICAL).
fn debian_cve(dir: &Path, cve: &str, package: &str, fixed: &str) -> PathBuf {
    let now = jiff::Timestamp::now().to_string();
    let record = serde_json::json!({
        "schema_version": "1.6.0",
        "id": format!("DEBIAN-{cve}"),
        "aliases": [cve],
        "modified": now,
        "published": now,
        "affected": [{
            "package": {"name": package, "ecosystem": "Debian:12"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    });
    let path = dir.join(format!("{cve}.json"));
    write(&path, &record.to_string());
    path
}

#[test]
fn apt_patch_now_rate_overrides_cve_severity_groups_and_rejected_dependencies() {
    if tools_missing(&["dpkg-deb", "apt-ftparchive", "apt-get", "dpkg"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (mut agents, ids) = start_fleet(&server, dir.path(), 1, DEBIAN).expect("fleet");
    let node = ids[0].clone();
    let root = sample_apt_root(&dir.path().join("node-0"));
    // Restarted so that its inventory (which the assessment reads) holds the packages.
    agents[0].stop();
    agents[0].start().expect("agent");
    wait_until(Duration::from_secs(30), || {
        let apps = server.cli_json(&["inventory", "show", &node, "--type", "Application"])?;
        Ok(apps.to_string().contains("\"dd\""))
    })
    .expect("the packages are in the inventory");

    // "Patch now" (§7.6): with no rate given, a Scan runs on up to 1,000 nodes and stops at
    // 1,000 errors, an Install on fewer than 25 nodes one at a time, stopping at one error.
    let scan = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!((scan["max_concurrency"].as_str(), scan["max_errors"].as_str()), (Some("1000"), Some("1000")), "{scan}");
    let explicit = server
        .cli_json(&["run", DOC, "--target", &node, "--param", "Operation=Scan", "--max-concurrency", "7", "--wait"])
        .expect("run");
    assert_eq!(explicit["max_concurrency"], "7", "a rate the caller gives is kept: {explicit}");

    // The predefined baseline approves aa (security) only; the override list adds ee, and
    // nothing else is installed.
    let install = patch_run(&server, &node, &["Operation=Install", "RebootOption=NoReboot", "InstallOverrideList=ee"]);
    assert_eq!(install["status"], "Success", "{install}");
    assert_eq!((install["max_concurrency"].as_str(), install["max_errors"].as_str()), (Some("1"), Some("1")));
    assert_eq!(dpkg_version(&root, "aa"), "1.1-1");
    assert_eq!(dpkg_version(&root, "ee"), "1.5-1", "named in the override list");
    for name in ["bb", "dd", "bad"] {
        assert_eq!(dpkg_version(&root, name), "1.0-1", "{name} is neither approved nor named");
    }
    let s = states(&server, &node);
    assert_eq!(s.get("aa").map(String::as_str), Some("INSTALLED"), "{s:?}");
    assert_eq!(s.get("ee").map(String::as_str), Some("INSTALLED_OTHER"), "installed, not by the baseline: {s:?}");

    // A CVE the assessment found in dd gives dd's update its severity (CVSS 9.8: High, as the
    // findings rate it): a baseline that approves only High updates, reached through a patch
    // group of the same family, approves it.
    let cve = debian_cve(dir.path(), "CVE-2026-4242", "dd", "2.0-1");
    let imported = server.cli(&["vulndb", "import", cve.to_str().expect("utf-8")]).expect("import");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let run = server.cli_json(&["assess", "run", "--wait", "--rules", "cve"]).expect("assess");
    assert_eq!(run["status"], "Completed", "{run}");
    create_baseline(
        &server,
        dir.path(),
        "name: high\nos: debian\napproval_rules:\n  - filters: [{key: SEVERITY, values: [High]}]\n    approve_after_days: 0\n    compliance_level: HIGH\n",
    );
    group_to(&server, &node, "web", "high");
    let scan = patch_run(&server, &node, &["Operation=Scan"]);
    assert_eq!(scan["status"], "Success", "{scan}");
    assert!(stdout_of(&scan).contains("with baseline high (debian), patch group web"), "{}", stdout_of(&scan));
    let rows = server.cli_json(&["patch", "states", &node, "--state", "MISSING"]).expect("missing");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "only dd: {rows}\n{}", stdout_of(&scan));
    assert_eq!((rows[0]["name"].as_str(), rows[0]["severity"].as_str()), (Some("dd"), Some("HIGH")), "{rows}");
    assert_eq!(rows[0]["cves"], serde_json::json!(["CVE-2026-4242"]), "{rows}");
    let compliance = server.cli_json(&["patch", "compliance", "--target", &node]).expect("compliance");
    assert_eq!(
        (compliance[0]["status"].as_str(), compliance[0]["baseline"].as_str()),
        (Some("NON_COMPLIANT"), Some("high"))
    );

    // bb 2.0-1 needs cc, which the next baseline rejects. BLOCK: bb fails, naming cc, and cc is
    // not installed.
    let deps = "name: deps\nos: debian\napproval_rules:\n  - filters: [{key: PRIORITY, values: [important]}]\n    approve_after_days: 0\n    enable_non_security: true\nrejected_patches: [cc]\nrejected_patches_action: ACTION\n";
    create_baseline(&server, dir.path(), &deps.replace("ACTION", "BLOCK"));
    group_to(&server, &node, "web", "deps");
    let install = patch_run(&server, &node, &["Operation=Install", "RebootOption=NoReboot"]);
    assert_eq!(install["status"], "Failed", "{install}");
    let log = stdout_of(&install);
    assert!(log.contains("FAILED bb") && log.contains("cc"), "{log}");
    assert_eq!(dpkg_version(&root, "bb"), "1.0-1");
    assert!(!root.join("var/lib/dpkg/info/cc.list").exists(), "the rejected cc was not installed");
    assert_eq!(states(&server, &node).get("bb").map(String::as_str), Some("FAILED"));
    // ALLOW_AS_DEPENDENCY: bb comes with cc, which is reported INSTALLED_OTHER.
    let file = dir.path().join("deps.yaml");
    write(&file, &deps.replace("ACTION", "ALLOW_AS_DEPENDENCY"));
    let out =
        server.cli(&["patch", "baselines", "update", "deps", "--file", file.to_str().expect("utf-8")]).expect("update");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let install = patch_run(&server, &node, &["Operation=Install", "RebootOption=NoReboot"]);
    assert_eq!(install["status"], "Success", "{install}");
    assert_eq!(dpkg_version(&root, "bb"), "2.0-1");
    assert_eq!(dpkg_version(&root, "cc"), "1.0-1", "installed as bb's dependency");
    let s = states(&server, &node);
    assert_eq!(s.get("bb").map(String::as_str), Some("INSTALLED"), "{s:?}");
    assert_eq!(s.get("cc").map(String::as_str), Some("INSTALLED_OTHER"), "{s:?}");
    assert_eq!(dpkg_version(&root, "dd"), "1.0-1", "deps does not approve dd");
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

#[test]
fn dnf_failed_update_and_a_pending_reboot_through_the_cli() {
    if tools_missing(&["rpmbuild", "rpm", "dnf", "createrepo_c", "ldd"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let (mut agents, ids) = start_fleet(&server, dir.path(), 1, ROCKY).expect("fleet");
    let node = ids[0].clone();
    let work = dir.path().join("rpms");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut old: Vec<_> =
        ["alpha", "bad", "kernel-core"].iter().map(|n| build_rpm(&work, &Rpm::new(n, "1.0", "1"))).collect();
    // What bash is on a real node: the provider of the /bin/sh that scriptlets require.
    old.push(build_rpm(&work, &Rpm { provides: Some("/bin/sh"), ..Rpm::new("shell", "1.0", "1") }));
    let root = dir.path().join("node-0/root");
    rpm_root(&root, &old);
    flotilla_testkit::packages::shell_in(&root);
    let new = [
        build_rpm(&work, &Rpm::new("alpha", "1.1", "1")),
        build_rpm(
            &work,
            &Rpm { post: Some("echo 'bad: failing on purpose' >&2\nexit 1"), ..Rpm::new("bad", "1.1", "1") },
        ),
        // Newer than any kernel this machine runs: once installed, a reboot is pending.
        build_rpm(&work, &Rpm::new("kernel-core", "999.0", "1")),
    ];
    let repo = dir.path().join("repo");
    dnf_repo(&repo, &new, None);
    write(
        &root.join("etc/yum.repos.d/test.repo"),
        &format!("[test]\nname=test\nbaseurl=file://{}\ngpgcheck=0\n", repo.display()),
    );
    let marker = with_reboot_stand_in(&server, &mut agents[0], &node, dir.path());
    let file = dir.path().join("all.yaml");
    write(
        &file,
        "name: everything\nos: rhel\napproval_rules: [{filters: [], approve_after_days: 0, enable_non_security: true}]\n",
    );
    server.cli(&["patch", "baselines", "create", "--file", file.to_str().expect("utf-8")]).expect("create");
    server.cli(&["patch", "baselines", "default", "--os", "rhel", "everything"]).expect("default");

    // NoReboot: bad's %post fails (FAILED, the rest applied), the new kernel leaves the
    // installed updates pending a reboot, and nothing reboots.
    let install = patch_run(&server, &node, &["Operation=Install", "RebootOption=NoReboot"]);
    assert_eq!(install["status"], "Failed", "{install}");
    let detail = install["invocations"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("1 update(s) failed to install: bad"), "{detail}");
    let log = stdout_of(&install);
    assert!(log.contains("NoReboot: not rebooting"), "{log}");
    let s = states(&server, &node);
    assert_eq!(s.get("bad").map(String::as_str), Some("FAILED"), "{s:?}");
    for name in ["alpha", "kernel-core"] {
        assert_eq!(s.get(name).map(String::as_str), Some("INSTALLED_PENDING_REBOOT"), "{name}: {s:?}");
    }
    let compliance = server.cli_json(&["patch", "compliance", "--target", &node]).expect("compliance");
    assert_eq!(compliance[0]["status"], "NON_COMPLIANT", "FAILED and pending reboots count: {compliance}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "NoReboot never reboots");
    // RebootIfNeeded: the agent runs its reboot command once the result is stored.
    let install = patch_run(&server, &node, &["Operation=Install"]);
    assert!(stdout_of(&install).contains("rebooting once"), "{}", stdout_of(&install));
    wait_until(Duration::from_secs(40), || Ok(marker.exists())).expect("the reboot command ran");
}
