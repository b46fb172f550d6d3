//! Vulnerability assessment end to end: real agents with known package sets, the real OSV
//! sample, runs through the CLI, findings in `findings ls`, node inventory and compliance.

// Tests drive the real binaries and tools (rpmbuild, rpm).
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};
use serde_json::Value;

const UBUNTU: &str = "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\n";
const ALMA: &str = "NAME=\"AlmaLinux\"\nVERSION_ID=\"9.4\"\nID=\"almalinux\"\n";
const ALPINE: &str = "NAME=\"Alpine Linux\"\nVERSION_ID=3.19.1\nID=alpine\n";
const UNKNOWN: &str = "NAME=\"Plan 9\"\nVERSION_ID=\"4\"\nID=plan9\n";

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("tool runs");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A real rpm database with these (name, epoch, version, release).
fn rpm_database(root: &Path, work: &Path, packages: &[(&str, Option<&str>, &str, &str)]) {
    let mut spec = String::from(
        "Name: base\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n%description\nd\n",
    );
    let mut files = String::from("%files\n");
    for (name, epoch, version, release) in packages {
        spec.push_str(&format!("%package -n {name}\nVersion: {version}\nRelease: {release}\nSummary: s\n"));
        if let Some(epoch) = epoch {
            spec.push_str(&format!("Epoch: {epoch}\n"));
        }
        spec.push_str(&format!("%description -n {name}\nd\n"));
        files.push_str(&format!("%files -n {name}\n"));
    }
    std::fs::create_dir_all(work).expect("mkdir");
    std::fs::write(work.join("a.spec"), spec + &files).expect("spec");
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", work.display()))
        .arg("-bb")
        .arg(work.join("a.spec")));
    let rpms: Vec<PathBuf> = std::fs::read_dir(work.join("RPMS/noarch"))
        .expect("rpms")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("base-")))
        .collect();
    run(Command::new("rpm").arg("--root").arg(root).args(["--dbpath", "/var/lib/rpm", "--initdb"]));
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"])
        .args(&rpms));
}

struct Node {
    _agent: Agent,
    id: String,
}

fn node(
    server: &TestServer,
    dir: &Path,
    act: &(String, String),
    name: &str,
    os: &str,
    prepare: impl FnOnce(&Path),
) -> Node {
    let agent_dir = dir.join(name);
    write_root(&agent_dir.join("root"), os, name).expect("root");
    prepare(&agent_dir.join("root"));
    let (mut agent, out) = Agent::enroll(server, &agent_dir, &act.0, &act.1).expect("register");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    agent.start().expect("start");
    Node { _agent: agent, id: String::from_utf8_lossy(&out.stdout).trim().to_owned() }
}

fn assess(server: &TestServer, args: &[&str]) -> Value {
    let mut full = vec!["assess", "run", "--wait"];
    full.extend_from_slice(args);
    let run = server.cli_json(&full).expect("assess run");
    assert_eq!(run["status"], "Completed", "{run}");
    server.cli_json(&["assess", "show", run["id"].as_str().expect("id")]).expect("show")
}

/// (node, rule, advisory, package, installed, fixed, severity) of a findings listing.
fn rows(findings: &Value) -> Vec<(String, String, String, String, String, String, String)> {
    findings
        .as_array()
        .expect("array")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("-").to_owned();
            (
                s("node_id"),
                s("rule"),
                s("advisory_id"),
                s("package"),
                s("installed_version"),
                s("fixed_version"),
                s("severity"),
            )
        })
        .collect()
}

#[test]
fn assessment_gives_exactly_the_expected_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flotilla-osv/tests/data/osv");
    let imported = server.cli(&["vulndb", "import", &sample.to_string_lossy()]).expect("import");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let act = server.cli_json(&["activations", "create", "--limit", "10"]).expect("activation");
    let act = (act["id"].as_str().expect("id").to_owned(), act["code"].as_str().expect("code").to_owned());

    let ubuntu = node(&server, dir.path(), &act, "ubuntu", UBUNTU, |root| {
        write(
            root,
            "var/lib/dpkg/status",
            "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nSource: openssh\n\
Version: 1:8.9p1-3ubuntu0.6\n\n\
Package: coreutils\nStatus: install ok installed\nArchitecture: amd64\nVersion: 8.32-4.1ubuntu1.2\n\n\
Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.2-0ubuntu1.10\n\n\
Package: sudo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.9.9-1ubuntu2.4\n\n",
        );
        write(root, "etc/ssh/sshd_config", "PermitRootLogin yes\n");
        write(root, "etc/shadow", "root:$6$x:19000::::::\nkiosk::19000::::::\n");
        write(root, "etc/apt/apt.conf.d/20auto-upgrades", "APT::Periodic::Unattended-Upgrade \"1\";\n");
    });
    let work = dir.path().join("rpmbuild");
    let alma = node(&server, dir.path(), &act, "alma", ALMA, |root| {
        rpm_database(
            root,
            &work,
            &[
                ("openssl-libs", Some("1"), "3.0.1", "40.el9_0"),
                ("nginx", Some("1"), "1.20.1", "14.el9_2.1.alma.1"),
                ("openssh-server", None, "8.7p1", "34.el9"),
            ],
        );
    });
    let alpine = node(&server, dir.path(), &act, "alpine", ALPINE, |root| {
        write(
            root,
            "lib/apk/db/installed",
            "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r15\no:busybox\n\n",
        );
    });
    let unknown = node(&server, dir.path(), &act, "plan9", UNKNOWN, |_| {});
    for n in [&ubuntu, &alma, &alpine, &unknown] {
        wait_until(Duration::from_secs(30), || {
            let types = server.cli_json(&["inventory", "show", &n.id, "--type", "Application"])?;
            Ok(types.as_array().is_some_and(|t| !t.is_empty()))
        })
        .expect("inventory stored");
    }

    let run = assess(&server, &["--rules", "cve,security-best-practices"]);
    let run_id = run["id"].as_str().expect("id").to_owned();
    let findings = server.cli_json(&["findings", "ls", "--run", &run_id]).expect("findings");
    let got = rows(&findings);
    let f = |node: &Node, rule: &str, adv: &str, pkg: &str, installed: &str, fixed: &str, sev: &str| {
        (
            node.id.clone(),
            rule.to_owned(),
            adv.to_owned(),
            pkg.to_owned(),
            installed.to_owned(),
            fixed.to_owned(),
            sev.to_owned(),
        )
    };
    let mut want = vec![
        // UBUNTU-CVE-2024-6387 and USN-6859-1 both name CVE-2024-6387 for openssh on 22.04,
        // fixed in 1:8.9p1-3ubuntu0.10 > 0.6: one finding; Ubuntu priority high.
        f(&ubuntu, "cve", "UBUNTU-CVE-2024-6387", "openssh", "1:8.9p1-3ubuntu0.6", "1:8.9p1-3ubuntu0.10", "High"),
        // /etc/shadow: kiosk has an empty password.
        f(&ubuntu, "security-best-practices", "FLT-BP-004", "", "", "-", "High"),
        // ALSA-2022:6224 ("Moderate:" summary): openssl-libs fixed in 1:3.0.1-41.el9_0 > -40.
        f(&alma, "cve", "ALSA-2022:6224", "openssl-libs", "1:3.0.1-40.el9_0", "1:3.0.1-41.el9_0", "Medium"),
        // PermitRootLogin yes; PasswordAuthentication unset (sshd's default is yes).
        f(&ubuntu, "security-best-practices", "FLT-BP-001", "", "", "-", "Medium"),
        f(&ubuntu, "security-best-practices", "FLT-BP-002", "", "", "-", "Medium"),
        // UBUNTU-CVE-2016-2781: coreutils on 22.04 has no fix (introduced 0 only); priority low.
        f(&ubuntu, "cve", "UBUNTU-CVE-2016-2781", "coreutils", "8.32-4.1ubuntu1.2", "-", "Low"),
        // The Alma node has an rpm database but no dnf-automatic timer.
        f(&alma, "security-best-practices", "FLT-BP-005", "", "", "-", "Low"),
    ];
    // ALPINE-CVE-2025-26519: musl from 0.9.13, fixed in 1.2.4_git20230717-r5 > -r4; CVSS 3.1
    // vector AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H = 7.0, High.
    want.push(f(
        &alpine,
        "cve",
        "ALPINE-CVE-2025-26519",
        "musl",
        "1.2.4_git20230717-r4",
        "1.2.4_git20230717-r5",
        "High",
    ));
    // Not found, on purpose: libssl3 3.0.2-0ubuntu1.10 is past UBUNTU-CVE-2022-0778's fix
    // (3.0.2-0ubuntu1); sudo's UBUNTU-CVE-2021-3156 lists no 22.04 entry; nginx
    // 1:1.20.1-14.el9_2.1.alma.1 is ALSA-2023:5711's fixed build and ALSA-2025:3261 is the 1.22
    // module stream, not comparable; openssh-server 8.7p1-34.el9 is past ALSA-2023:2645's fix.
    let rank = |s: &str| ["High", "Medium", "Low", "Informational"].iter().position(|x| *x == s).unwrap_or(4);
    let mut sorted_want = want.clone();
    sorted_want.sort_by(|a, b| rank(&a.6).cmp(&rank(&b.6)).then(a.0.cmp(&b.0)));
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| rank(&a.6).cmp(&rank(&b.6)).then(a.0.cmp(&b.0)).then(a.2.cmp(&b.2)));
    sorted_want.sort_by(|a, b| rank(&a.6).cmp(&rank(&b.6)).then(a.0.cmp(&b.0)).then(a.2.cmp(&b.2)));
    assert_eq!(got_sorted, sorted_want);
    let empty = findings.as_array().expect("array").iter().find(|f| f["advisory_id"] == "FLT-BP-004").expect("bp");
    assert!(empty["title"].as_str().is_some_and(|t| t.contains("kiosk has an empty password")), "{empty}");
    // Listed most severe first.
    let severities: Vec<usize> = got.iter().map(|r| rank(&r.6)).collect();
    assert!(severities.windows(2).all(|w| w[0] <= w[1]), "{severities:?}");
    let cve =
        findings.as_array().expect("array").iter().find(|f| f["advisory_id"] == "UBUNTU-CVE-2024-6387").expect("cve");
    assert!(cve["aliases"].as_array().expect("aliases").iter().any(|a| a == "CVE-2024-6387"), "{cve}");
    assert!(cve["aliases"].as_array().expect("aliases").iter().any(|a| a == "USN-6859-1"), "{cve}");

    // The unknown OS is reported as not assessable, never as clean.
    let nodes = run["nodes"].as_array().expect("nodes");
    let status = |n: &Node| nodes.iter().find(|x| x["node_id"] == n.id.as_str()).expect("node")["status"].clone();
    assert_eq!(status(&unknown), "NotAssessable");
    assert_eq!(status(&ubuntu), "Assessed");
    assert_eq!(run["node_count"], 4);
    assert_eq!(run["finding_counts"]["High"], 3);

    // Written back: each node's Finding inventory and its Compliance item.
    let inventory = |n: &Node, kind: &str| -> Vec<Value> {
        let types = server.cli_json(&["inventory", "show", &n.id, "--type", kind]).expect("show");
        types[0]["items"].as_array().cloned().unwrap_or_default()
    };
    assert_eq!(inventory(&ubuntu, "Finding").len(), 5);
    assert_eq!(inventory(&ubuntu, "Compliance")[0]["status"], "NON_COMPLIANT");
    assert_eq!(inventory(&alma, "Compliance")[0]["status"], "COMPLIANT", "Medium is below the default threshold");
    assert_eq!(inventory(&unknown, "Compliance")[0]["status"], "NOT_ASSESSABLE");
    let high = server.cli_json(&["findings", "ls", "--node", &ubuntu.id, "--severity", "High"]).expect("findings");
    assert_eq!(high.as_array().map(Vec::len), Some(2));

    // The threshold is configurable.
    let strict = assess(&server, &["--target", &alma.id, "--rules", "cve", "--noncompliant-at", "Medium"]);
    assert_eq!(strict["node_count"], 1);
    assert_eq!(inventory(&alma, "Compliance")[0]["status"], "NON_COMPLIANT");

    // Events: one Finding.Reported per node and the completion.
    let events = server.cli_json(&["events", "ls"]).expect("events");
    let kinds: Vec<String> =
        events.as_array().expect("events").iter().map(|e| e["type"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "Finding.Reported").count(), 5, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "Assessment.Completed").count(), 2, "{kinds:?}");

    // Network reachability: a listener on every address is reported with its port.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let net = assess(&server, &["--target", &ubuntu.id, "--rules", "network-reachability"]);
    let found = server.cli_json(&["findings", "ls", "--run", net["id"].as_str().expect("id")]).expect("findings");
    assert!(
        found.as_array().expect("array").iter().any(|f| f["advisory_id"] == format!("FLT-NR-001:tcp/{port}").as_str()),
        "{found}"
    );
    drop(listener);

    // Bad requests change nothing.
    let refused = |args: &[&str], says: &str| {
        let out = server.cli(args).expect("cli");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    };
    refused(&["assess", "run", "--rules", "cve,antivirus"], "unknown rules package `antivirus`");
    refused(&["assess", "run", "--target", "tag:nothing=here"], "match no node");
    refused(&["assess", "run", "--noncompliant-at", "Critical"], "not one of");
    refused(&["assess", "show", "ar-0000000000000000"], "no assessment run");
    refused(&["findings", "ls", "--severity", "Severe"], "not one of");
    refused(
        &["assess", "templates", "put", "bad", "--schedule", "every night"],
        "is not cron(...), rate(...) or at(...)",
    );
    refused(&["assess", "templates", "put", "bad", "--duration", "1s"], "outside 30 s to 24 h");
    refused(&["assess", "run", "--template", "nope"], "no assessment template `nope`");
    let runs = server.cli_json(&["assess", "ls"]).expect("ls");
    assert_eq!(runs.as_array().map(Vec::len), Some(3));

    // Templates: a run takes its settings from one; a schedule fires it (a few seconds ahead).
    let saved = server
        .cli_json(&[
            "assess",
            "templates",
            "put",
            "alma-cve",
            "--target",
            &alma.id,
            "--rules",
            "cve",
            "--duration",
            "5m",
        ])
        .expect("template");
    assert_eq!(saved["duration_seconds"], 300);
    let from_template = assess(&server, &["--template", "alma-cve"]);
    assert_eq!((from_template["node_count"].as_i64(), from_template["rules"][0].as_str()), (Some(1), Some("cve")));
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(4))
        .expect("in range")
        .strftime("at(%Y-%m-%dT%H:%M:%S)")
        .to_string();
    server
        .cli_json(&[
            "assess",
            "templates",
            "put",
            "minutely",
            "--target",
            &alma.id,
            "--rules",
            "cve",
            "--schedule",
            &soon,
        ])
        .expect("scheduled template");
    let listed = server.cli_json(&["assess", "templates", "ls"]).expect("templates");
    assert!(listed.as_array().expect("array").iter().any(|t| t["name"] == "minutely" && t["next_run_at"].is_string()));
    wait_until(Duration::from_secs(100), || {
        let runs = server.cli_json(&["assess", "ls"])?;
        Ok(runs.as_array().is_some_and(|r| r.len() == 5 && r[4]["status"] == "Completed"))
    })
    .expect("the schedule started a run");
}

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

/// An OSV record for `package` in `ecosystem`, fixed in `fixed`, last modified `age` ago.
fn osv_record(dir: &Path, id: &str, ecosystem: &str, package: &str, fixed: &str, age: Duration) -> PathBuf {
    let modified = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - age).to_string();
    let record = serde_json::json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": modified,
        "published": modified,
        "summary": format!("{package} - security update"),
        "affected": [{
            "package": {"name": package, "ecosystem": ecosystem},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    });
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, record.to_string()).expect("write record");
    path
}

#[test]
fn empty_or_stale_advisories_never_report_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let act = server.cli_json(&["activations", "create", "--limit", "1"]).expect("activation");
    let act = (act["id"].as_str().expect("id").to_owned(), act["code"].as_str().expect("code").to_owned());
    let debian = node(&server, dir.path(), &act, "debian", DEBIAN, |root| {
        write(
            root,
            "var/lib/dpkg/status",
            "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\n\
Version: 3.0.11-1~deb12u1\n\nPackage: curl\nStatus: install ok installed\nArchitecture: amd64\n\
Version: 7.88.1-10+deb12u5\n\n",
        );
    });
    wait_until(Duration::from_secs(30), || {
        let types = server.cli_json(&["inventory", "show", &debian.id, "--type", "Application"])?;
        Ok(types.as_array().is_some_and(|t| !t.is_empty()))
    })
    .expect("inventory stored");
    let compliance = || -> Value {
        let types = server.cli_json(&["inventory", "show", &debian.id, "--type", "Compliance"]).expect("show");
        types[0]["items"][0].clone()
    };
    let only_node = |run: &Value| run["nodes"][0].clone();

    // An empty database: not assessable, with the reason and what to do; never COMPLIANT.
    let run = assess(&server, &["--rules", "cve"]);
    let n = only_node(&run);
    assert_eq!(n["status"], "NotAssessable", "{run}");
    assert_eq!(n["detail"], "no advisories for Debian:12: import them with `flotilla vulndb import`", "{run}");
    assert_eq!(compliance()["status"], "NOT_ASSESSABLE");
    assert!(run["detail"].as_str().is_some_and(|d| d.contains("1 node(s) not assessable")), "{run}");

    // Records for another release only: still nothing to say about Debian 12.
    let records = dir.path().join("records");
    std::fs::create_dir_all(&records).expect("mkdir");
    let day = Duration::from_secs(86_400);
    let alpine = osv_record(&records, "ALPINE-TEST-1", "Alpine:v3.19", "musl", "1.2.5-r0", day);
    assert!(server.cli(&["vulndb", "import", &alpine.to_string_lossy()]).expect("import").status.success());
    let run = assess(&server, &["--rules", "cve"]);
    assert_eq!(only_node(&run)["status"], "NotAssessable", "{run}");
    assert_ne!(compliance()["status"], "COMPLIANT");

    // A Debian 12 record 30 days old: assessed, and the run, the node, its findings and its
    // compliance item all say how old the data was.
    let old = osv_record(&records, "DEBIAN-TEST-1", "Debian:12", "openssl", "3.0.13-1~deb12u1", day * 30 + day / 24);
    assert!(server.cli(&["vulndb", "import", &old.to_string_lossy()]).expect("import").status.success());
    let run = assess(&server, &["--rules", "cve"]);
    let n = only_node(&run);
    assert_eq!((n["status"].as_str(), n["advisories_age_days"].as_i64()), (Some("Assessed"), Some(30)), "{run}");
    assert!(n["detail"].as_str().is_some_and(|d| d.contains("advisories 30 days old for Debian:12")), "{run}");
    assert!(run["detail"].as_str().is_some_and(|d| d.starts_with("advisories 30 days old")), "{run}");
    let listed = server.cli(&["findings", "ls", "--run", run["id"].as_str().expect("id"), "-o", "json"]).expect("ls");
    let findings: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(findings.as_array().map(Vec::len), Some(1), "{findings}");
    assert_eq!(findings[0]["advisory_id"], "DEBIAN-TEST-1");
    assert_eq!(findings[0]["advisories_age_days"], 30);
    assert!(String::from_utf8_lossy(&listed.stderr).contains("advisories up to 30 days old"));
    // The run's report and the node's are kept in the artifact store, encrypted.
    let reports = server.data_dir.join("artifacts/assessments").join(run["id"].as_str().expect("id"));
    for report in [reports.join("run.json"), reports.join("nodes").join(format!("{}.json", debian.id))] {
        let bytes = std::fs::read(&report).unwrap_or_else(|e| panic!("{}: {e}", report.display()));
        assert!(!String::from_utf8_lossy(&bytes).contains("DEBIAN-TEST-1"), "{} is not encrypted", report.display());
    }
    let latest = server.cli_json(&["findings", "ls", "--node", &debian.id]).expect("latest");
    assert_eq!(latest[0]["advisories_age_days"], 30, "{latest}");
    let c = compliance();
    assert_eq!(c["status"], "NON_COMPLIANT", "{c}");
    assert!(c["detail"].as_str().is_some_and(|d| d.contains("advisories 30 days old")), "{c}");

    // A fresh record for the release: the same finding, no caveat.
    let fresh = osv_record(&records, "DEBIAN-TEST-2", "Debian:12", "curl", "7.88.1-10+deb12u1", Duration::ZERO);
    assert!(server.cli(&["vulndb", "import", &fresh.to_string_lossy()]).expect("import").status.success());
    let run = assess(&server, &["--rules", "cve"]);
    let n = only_node(&run);
    assert_eq!(n["status"], "Assessed");
    assert!(n.get("advisories_age_days").is_none(), "{run}");
    assert_eq!(run["detail"], "", "{run}");
    let findings = server.cli_json(&["findings", "ls", "--run", run["id"].as_str().expect("id")]).expect("findings");
    assert!(findings.as_array().expect("array").iter().all(|f| f.get("advisories_age_days").is_none()), "{findings}");
}
