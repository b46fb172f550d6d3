//! Inventory end to end: real package databases, delta upload, history, fleet queries.

// Tests drive the real binaries and tools (dpkg-query, rpmbuild, rpm).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{Agent, TestServer, wait_until, write_root};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
const ROCKY: &str = "NAME=\"Rocky Linux\"\nVERSION_ID=\"9.3\"\nID=\"rocky\"\n";
const ALPINE: &str = "NAME=\"Alpine Linux\"\nVERSION_ID=3.19.1\nID=alpine\n";

struct Fleet {
    dir: tempfile::TempDir,
    server: TestServer,
    activation: (String, String),
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
        let act = server.cli_json(&["activations", "create", "--limit", "20"]).expect("activation");
        let activation = (act["id"].as_str().expect("id").to_owned(), act["code"].as_str().expect("code").to_owned());
        Fleet { dir, server, activation }
    }

    /// Enrolls a node whose sandbox root `prepare` fills, starts it, returns (agent, node id).
    fn node(&self, name: &str, os_release: &str, prepare: impl FnOnce(&Path)) -> (Agent, String) {
        let agent_dir = self.dir.path().join(name);
        let root = agent_dir.join("root");
        write_root(&root, os_release, name).expect("root");
        prepare(&root);
        let (mut agent, out) =
            Agent::enroll(&self.server, &agent_dir, &self.activation.0, &self.activation.1).expect("register");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        agent.start().expect("start");
        (agent, id)
    }

    /// Items of one type of a node, once the node has reported it.
    fn items(&self, node: &str, kind: &str) -> Vec<Value> {
        let mut items = Vec::new();
        wait_until(Duration::from_secs(30), || {
            let types = self.server.cli_json(&["inventory", "show", node, "--type", kind])?;
            match types.as_array().and_then(|t| t.first()) {
                Some(t) => {
                    items = t["items"].as_array().cloned().unwrap_or_default();
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .unwrap_or_else(|e| panic!("{kind} inventory of {node}: {e}"));
        items
    }

    fn query(&self, kind: &str, filters: &[&str]) -> Vec<(String, Vec<Value>)> {
        let mut args = vec!["inventory", "query", "--type", kind];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let rows = self.server.cli_json(&args).expect("query");
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (r["node_id"].as_str().expect("node").to_owned(), r["items"].as_array().cloned().unwrap_or_default())
            })
            .collect()
    }

    /// Runs Flotilla-CollectInventory on one node; returns its output.
    fn collect(&self, node: &str) -> String {
        let out = self
            .server
            .cli(&["run", "Flotilla-CollectInventory", "--target", node, "--wait", "-o", "json"])
            .expect("run");
        let cmd: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(out.status.success(), "{} {cmd}", String::from_utf8_lossy(&out.stderr));
        cmd["invocations"][0]["output"]["stdout"].as_str().expect("stdout").to_owned()
    }

    fn metric(&self, name: &str) -> u64 {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&self.server.ca)
            .arg(format!("{}/metrics", self.server.url))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("tool runs");
    assert!(out.status.success(), "{:?}: {}", cmd, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A dpkg status file: `openssl` (source of libssl3 and openssl) at `ssl`, plus filler.
fn dpkg_status(ssl: &str, filler: usize) -> String {
    let mut text = String::new();
    for (name, source) in [("openssl", None), ("libssl3", Some("openssl"))] {
        text.push_str(&format!("Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n"));
        if let Some(source) = source {
            text.push_str(&format!("Source: {source}\n"));
        }
        text.push_str(&format!("Version: {ssl}\nDescription: TLS\n multi-line\n .\n description\n\n"));
    }
    for i in 0..filler {
        text.push_str(&format!(
            "Package: filler-{i:03}\nStatus: install ok installed\nArchitecture: all\nVersion: 1.{i}-1\n\n"
        ));
    }
    text.push_str("Package: removed-thing\nStatus: deinstall ok config-files\nVersion: 9.9\n\n");
    text
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn application_inventory_of_this_machine_is_exactly_what_dpkg_query_lists() {
    let f = Fleet::new();
    let agent_dir = f.dir.path().join("host");
    let (mut agent, out) = Agent::enroll(&f.server, &agent_dir, &f.activation.0, &f.activation.1).expect("register");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    agent.root = PathBuf::from("/");
    agent.start().expect("start");

    let listed = run(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Package}\\t${Architecture}\\t${Version}\\t${db:Status-Status}\\n",
    ]));
    // Every package whose files are on disk (a removed package's leftover config is not).
    let expected: BTreeSet<(String, String, String)> = listed
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4 && f[3] != "config-files" && f[3] != "not-installed")
                .then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
        .collect();
    assert!(expected.len() > 100, "this machine has a real dpkg database");
    let items = f.items(&id, "Application");
    let got: BTreeSet<(String, String, String)> = items
        .iter()
        .filter(|i| i["package_manager"] == "dpkg")
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("arch"), s("version"))
        })
        .collect();
    assert_eq!(got, expected);
    // The other types of a real machine are there too.
    let info = f.items(&id, "InstanceInformation");
    assert_eq!(info[0]["os_id"], "debian");
    let hardware = f.items(&id, "Hardware");
    assert!(hardware[0]["memory_bytes"].as_i64().is_some_and(|m| m > 0), "{hardware:?}");
    assert!(!f.items(&id, "Network").is_empty());
}

/// Builds a real rpm database under `root` holding packages made by rpmbuild.
fn rpm_database(root: &Path, work: &Path) {
    let spec = "Name: base-files\nVersion: 9.3\nRelease: 1.el9\nSummary: s\nLicense: MIT\nBuildArch: noarch\n\
%description\nd\n\
%package -n openssl-libs\nEpoch: 1\nVersion: 3.0.7\nRelease: 27.el9\nSummary: s\n%description -n openssl-libs\nd\n\
%package -n bash\nVersion: 5.1.8\nRelease: 6.el9_1\nSummary: s\n%description -n bash\nd\n\
%files\n%files -n openssl-libs\n%files -n bash\n";
    std::fs::create_dir_all(work).expect("mkdir");
    std::fs::write(work.join("fleet.spec"), spec).expect("spec");
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", work.join("build").display()))
        .arg("-bb")
        .arg(work.join("fleet.spec")));
    let rpms: Vec<PathBuf> =
        std::fs::read_dir(work.join("build/RPMS/noarch")).expect("rpms").map(|e| e.expect("entry").path()).collect();
    run(Command::new("rpm").arg("--root").arg(root).args(["--dbpath", "/var/lib/rpm", "--initdb"]));
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch"])
        .args(&rpms));
}

#[test]
fn rpm_and_apk_collectors_read_real_databases() {
    let f = Fleet::new();
    let work = f.dir.path().join("rpmbuild");
    let (_rocky, rocky) = f.node("rocky-1", ROCKY, |root| rpm_database(root, &work));
    let (_alpine, alpine) = f.node("alpine-1", ALPINE, |root| {
        write(
            root,
            "lib/apk/db/installed",
            "C:Q1x=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nZ:unknown key of a newer apk\nF:lib\n\n\
P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nt:1700000000\n\n",
        );
    });
    // A node without any package database reports an empty list, not a failure.
    let (_bare, bare) = f.node("bare-1", DEBIAN, |_| {});

    let rpm = f.items(&rocky, "Application");
    let mut got: Vec<(String, String, Option<String>)> = rpm
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_owned(),
                i["version"].as_str().unwrap_or_default().to_owned(),
                i["source_name"].as_str().map(str::to_owned),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("base-files".into(), "9.3-1.el9".into(), Some("base-files".into())),
            ("bash".into(), "5.1.8-6.el9_1".into(), Some("base-files".into())),
            ("openssl-libs".into(), "1:3.0.7-27.el9".into(), Some("base-files".into())),
        ]
    );
    assert!(rpm.iter().all(|i| i["package_manager"] == "rpm" && i["install_time"].as_i64().is_some()));

    let apk = f.items(&alpine, "Application");
    assert_eq!(apk.len(), 2, "{apk:?}");
    assert_eq!((apk[0]["name"].as_str(), apk[0]["source_name"].as_str()), (Some("libcrypto3"), Some("openssl")));
    assert_eq!(apk[1]["version"], "1.2.4_git20230717-r4");
    assert_eq!(f.items(&bare, "Application"), Vec::<Value>::new());

    // rpm ordering in queries: epoch 1 beats any version without one.
    let newer = f.query("Application", &["name=openssl-libs", "version>3.9"]);
    assert_eq!(newer.len(), 1);
    assert_eq!(newer[0].0, rocky);
}

#[test]
fn delta_upload_history_queries_and_watched_files() {
    let f = Fleet::new();
    let (_a, old) = f.node("deb-old", DEBIAN, |root| write(root, "var/lib/dpkg/status", &dpkg_status("3.0.9-1", 300)));
    let (_b, fixed) =
        f.node("deb-fixed", DEBIAN, |root| write(root, "var/lib/dpkg/status", &dpkg_status("3.0.11-1~deb12u2", 300)));
    let (_c, rc) =
        f.node("deb-rc", DEBIAN, |root| write(root, "var/lib/dpkg/status", &dpkg_status("3.0.11~rc1-1", 300)));
    for node in [&old, &fixed, &rc] {
        assert_eq!(f.items(node, "Application").len(), 302, "{node}");
    }

    // dpkg's ordering, not text: 3.0.9 < 3.0.11, and ~rc1 sorts before the release.
    let mut vulnerable: Vec<String> =
        f.query("Application", &["name=openssl", "version<3.0.11"]).into_iter().map(|(n, _)| n).collect();
    vulnerable.sort();
    let mut want = vec![old.clone(), rc.clone()];
    want.sort();
    assert_eq!(vulnerable, want);
    let by_source = f.query("Application", &["source_name=openssl", "version>=3.0.11"]);
    assert_eq!(by_source.len(), 1);
    assert_eq!((by_source[0].0.as_str(), by_source[0].1.len()), (fixed.as_str(), 2));
    assert_eq!(f.query("Application", &["name~filler-29"]).len(), 3);

    // A second collection of an unchanged node sends no item data at all.
    let bytes_before = f.metric("flotilla_inventory_item_bytes_total");
    let output = f.collect(&old);
    assert!(output.contains("sent 0 changed type(s) (0 bytes)"), "{output}");
    assert_eq!(f.metric("flotilla_inventory_item_bytes_total"), bytes_before);

    // A change sends only the changed type; the replaced snapshot goes to history.
    let root = f.dir.path().join("deb-old/root");
    write(&root, "var/lib/dpkg/status", &dpkg_status("3.0.11-1~deb12u2", 300));
    let output = f.collect(&old);
    assert!(output.contains("sent 1 changed type(s)") && output.contains(": Application"), "{output}");
    assert!(f.metric("flotilla_inventory_item_bytes_total") > bytes_before);
    let history = f.server.data_dir.join("artifacts/inventory").join(&old).join("Application");
    let snapshots: Vec<_> = std::fs::read_dir(&history).expect("history dir").collect();
    assert_eq!(snapshots.len(), 1, "{history:?}");
    let vulnerable = f.query("Application", &["name=openssl", "version<3.0.11"]);
    assert_eq!(vulnerable.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [rc.as_str()]);

    // Watched files come from the node's group settings, pushed to connected agents.
    write(&root, "etc/app/main.conf", "listen 80\n");
    std::os::unix::fs::symlink("/etc/app/gone.conf", root.join("etc/app/broken.conf")).expect("symlink");
    write(
        &root,
        "etc/flotilla/inventory/custom/rack.json",
        r#"{"SchemaVersion":"1.0","TypeName":"Custom:Rack","Content":[{"Row":"3","Slot":"12"}]}"#,
    );
    write(&root, "etc/flotilla/inventory/custom/bad.json", "{ not json");
    f.server.cli_json(&["groups", "put", "old-ones", "--target", &old]).expect("group");
    f.server
        .cli_json(&["inventory", "settings", "set", "old-ones", "--interval", "1h", "--file", "/etc/app/*.conf"])
        .expect("settings");
    wait_until(Duration::from_secs(20), || {
        let output = f.collect(&old);
        Ok(output.contains("File"))
    })
    .expect("settings reach the agent");
    let output = f.collect(&old);
    assert!(output.contains("bad.json is not valid JSON"), "{output}");
    let files = f.items(&old, "File");
    let main = files.iter().find(|i| i["path"] == "/etc/app/main.conf").expect("main.conf");
    assert_eq!(main["sha256"].as_str(), Some(sha256("listen 80\n").as_str()));
    let broken = files.iter().find(|i| i["path"] == "/etc/app/broken.conf").expect("broken.conf");
    assert!(broken["error"].as_str().is_some_and(|e| e.contains("dangling")), "{broken}");
    assert_eq!(f.items(&old, "Custom:Rack"), vec![serde_json::json!({"Row": "3", "Slot": "12"})]);
    assert_eq!(f.query("Custom:Rack", &["Row=3"]).len(), 1);

    // Bad queries and settings say what is wrong.
    let refused = |args: &[&str], says: &str| {
        let out = f.server.cli(args).expect("cli");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    };
    refused(&["inventory", "query", "--type", "Packages"], "unknown inventory type `Packages`");
    refused(&["inventory", "query", "--type", "Application", "--filter", "colour=red"], "has no field `colour`");
    refused(&["inventory", "query", "--type", "Application", "--filter", "name like x"], "no valid operator");
    refused(&["inventory", "query", "--type", "Application", "--filter", "install_time>soon"], "is not");
    refused(&["inventory", "show", "n-00000000000000000", "--type", "Application"], "no node");
    refused(&["inventory", "settings", "set", "nobody", "--interval", "1h"], "no group `nobody`");
    refused(&["inventory", "settings", "set", "old-ones", "--interval", "1s"], "too short");
    refused(&["inventory", "settings", "set", "old-ones", "--file", "etc/x"], "absolute path");
}

fn sha256(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn inventory_history_is_kept_for_its_retention_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[("FLOTILLA_INVENTORY_HISTORY_RETENTION", "4s")])
        .expect("server");
    let act = server.cli_json(&["activations", "create"]).expect("activation");
    let f = Fleet {
        dir,
        server,
        activation: (act["id"].as_str().expect("id").to_owned(), act["code"].as_str().expect("code").to_owned()),
    };
    let (_agent, node) = f.node("deb", DEBIAN, |root| write(root, "var/lib/dpkg/status", &dpkg_status("3.0.9-1", 5)));
    assert_eq!(f.items(&node, "Application").len(), 7);
    write(&f.dir.path().join("deb/root"), "var/lib/dpkg/status", &dpkg_status("3.0.11-1~deb12u2", 5));
    f.collect(&node);
    let history = f.server.data_dir.join("artifacts/inventory").join(&node).join("Application");
    let snapshots = || std::fs::read_dir(&history).map(|d| d.count()).unwrap_or(0);
    assert_eq!(snapshots(), 1, "the replaced snapshot is kept first");
    wait_until(Duration::from_secs(30), || Ok(snapshots() == 0)).expect("history past its retention is deleted");
    // The current inventory is not history: it stays.
    let now = f.query("Application", &["name=openssl"]);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].1[0]["version"], "3.0.11-1~deb12u2");
}
