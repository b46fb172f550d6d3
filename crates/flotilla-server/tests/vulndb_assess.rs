//! `vulndb::assess_node` on a real store (SQLite) holding the real OSV sample: the function
//! the assessment engine calls per node. Expectations are derived by hand from the records.

use std::path::{Path, PathBuf};

use flotilla_api as api;
use flotilla_server::vulndb::{AdvisoryCache, assess_node, import};
use flotilla_store::SqlStore;
use flotilla_vuln::{InstalledPackage, OsFacts, Severity, Verdicts};

fn sample_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flotilla-osv/tests/data/osv");
    let mut files = Vec::new();
    for distro in ["almalinux", "alpine", "debian", "ubuntu"] {
        for entry in std::fs::read_dir(root.join(distro)).expect("sample dir") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    files
}

async fn store_with_sample(dir: &Path) -> SqlStore {
    let store = SqlStore::open_sqlite(&dir.join("flotilla.db")).await.expect("open");
    let records = sample_files()
        .into_iter()
        .map(|f| api::VulnRecordText {
            source: f.display().to_string(),
            text: std::fs::read_to_string(&f).expect("read"),
        })
        .collect();
    let result = import(&store, api::VulnImport { records }).await.expect("import");
    assert_eq!((result.new, result.rejected.len()), (23, 0), "{result:?}");
    store
}

fn deb(name: &str, version: &str, source: Option<&str>) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        source_name: source.map(str::to_owned),
        package_manager: "dpkg".into(),
        ..InstalledPackage::default()
    }
}

#[tokio::test]
async fn assesses_nodes_from_the_store_and_parses_each_advisory_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_sample(dir.path()).await;
    let cache = AdvisoryCache::new();
    let verdicts = Verdicts::default();
    let ubuntu = OsFacts { id: "ubuntu".into(), version_id: "22.04".into(), kernel_release: None };
    let packages = [
        deb("openssh-server", "1:8.9p1-3ubuntu0.6", Some("openssh")),
        deb("coreutils", "8.32-4.1ubuntu1.2", None),
        deb("libssl3", "3.0.2-0ubuntu1.12", Some("openssl")),
        deb("bash", "5.1-6ubuntu1", None),
    ];
    let report = assess_node(&store, &cache, &verdicts, &ubuntu, &packages).await.expect("assess");
    assert!(report.assessable);
    let got: Vec<(&str, &str, Severity)> =
        report.findings.iter().map(|f| (f.advisory_id.as_str(), f.package.as_str(), f.severity)).collect();
    // openssh: UBUNTU-CVE-2024-6387 + USN-6859-1 are one finding (High); coreutils unfixed (Low);
    // openssl 3.0.2-0ubuntu1.12 is past UBUNTU-CVE-2022-0778's fix 3.0.2-0ubuntu1.
    assert_eq!(
        got,
        [("UBUNTU-CVE-2024-6387", "openssh", Severity::High), ("UBUNTU-CVE-2016-2781", "coreutils", Severity::Low)]
    );
    // Only the advisories of this node's (ecosystem, package) pairs were read: the openssh
    // pair (2), coreutils (1) and openssl (1).
    assert_eq!(cache.len(), 4);
    // One verdict per package version (bash has no advisory, and a verdict all the same).
    assert_eq!(verdicts.len(), 4);
    // A second node with the same packages reuses the verdicts.
    let again = assess_node(&store, &cache, &verdicts, &ubuntu, &packages).await.expect("assess");
    assert_eq!(again.findings, report.findings);
    assert_eq!((cache.len(), verdicts.len()), (4, 4));
    // A node with other binaries of the same source version gets its own binaries, and one
    // with an older openssl a verdict of its own on it.
    let other = [
        deb("openssh-client", "1:8.9p1-3ubuntu0.6", Some("openssh")),
        deb("libssl3", "3.0.1-0ubuntu1", Some("openssl")),
    ];
    let report = assess_node(&store, &cache, &verdicts, &ubuntu, &other).await.expect("assess");
    let openssh = report.findings.iter().find(|f| f.package == "openssh").expect("openssh finding");
    assert_eq!(openssh.binaries, ["openssh-client"]);
    assert!(report.findings.iter().any(|f| f.package == "openssl" && f.installed_version == "3.0.1-0ubuntu1"));
    assert_eq!(verdicts.len(), 5);

    // Unknown OS: not assessable, never "clean".
    let fedora = OsFacts { id: "fedora".into(), version_id: "40".into(), kernel_release: None };
    let report = assess_node(&store, &cache, &verdicts, &fedora, &packages).await.expect("assess");
    assert!(!report.assessable);

    // A bad version is an item error; the rest is assessed.
    let report =
        assess_node(&store, &cache, &verdicts, &ubuntu, &[deb("coreutils", "bad version", None), packages[0].clone()])
            .await
            .expect("assess");
    assert_eq!((report.errors.len(), report.findings.len()), (1, 1));
    store.close().await;
}
