//! The real OSV sample (tests/data/osv, see its README): every record parses, and hand-checked
//! cases give exactly the expected verdicts. Each expectation says why, from the record.
//! Every node assessed here is also assessed with verdicts shared by all the tests' nodes (as
//! an assessment run shares them) and must come out the same.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flotilla_osv::{Record, parse_record};
use flotilla_vuln::{
    AdvisoryMatch, CompiledAdvisory, InstalledPackage, NodeVulnReport, OsFacts, OsvEcosystem, PreparedNode, Severity,
    Verdicts, assess_node, match_version,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/osv")
}

fn all_records() -> Vec<Record> {
    let mut out = Vec::new();
    for distro in ["almalinux", "alpine", "debian", "ubuntu"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(data_dir().join(distro)).expect("data dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            out.push(parse_record(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        }
    }
    out
}

fn advisories() -> Vec<CompiledAdvisory> {
    all_records().into_iter().map(|r| r.advisory).collect()
}

fn find<'a>(records: &'a [Record], id: &str) -> &'a Record {
    records.iter().find(|r| r.advisory.advisory.id == id).unwrap_or_else(|| panic!("{id} in the sample"))
}

#[test]
fn every_real_record_parses() {
    let records = all_records();
    assert_eq!(records.len(), 23);
    let alsa = find(&records, "ALSA-2023:5453");
    assert_eq!(alsa.advisory.affected.len(), 215, "glibc names 215 binary packages");
    assert_eq!(alsa.advisory.advisory.related.len(), 4);
    let fips = find(&records, "UBUNTU-CVE-2022-0778");
    assert_eq!(fips.advisory.affected.len(), 17);
    assert_eq!(fips.advisory.advisory.severity.len(), 2, "CVSS_V3 and Ubuntu");
    let kernel = find(&records, "UBUNTU-CVE-2025-38094");
    assert_eq!(kernel.advisory.affected[0].ranges.len(), 1);
    assert!(kernel.advisory.affected[0].versions.is_empty(), "the list is not used when a range exists");
    let dla = find(&records, "DLA-3008-1");
    assert_eq!(dla.advisory.advisory.upstream, ["CVE-2022-1292", "DEBIAN-CVE-2022-1292"]);
    assert_eq!(dla.index_keys(), [("Debian:9".to_string(), "openssl".to_string())]);
    let ubuntu = find(&records, "UBUNTU-CVE-2024-6387");
    assert_eq!(ubuntu.advisory.affected[0].ubuntu_priority.as_deref(), Some("high"));
    // modified with nanoseconds (Alpine) and without fraction (AlmaLinux) both parse.
    assert!(find(&records, "ALPINE-CVE-2025-26519").modified_micros > find(&records, "ALSA-2022:5527").modified_micros);
}

fn rows(eco: &str, package: &str, version: &str) -> Vec<AdvisoryMatch> {
    let eco = OsvEcosystem::parse(eco).expect("ecosystem");
    match_version(&eco, package, version, &advisories()).expect("valid version")
}

fn ids(rows: &[AdvisoryMatch]) -> Vec<&str> {
    rows.iter().map(|r| r.advisory_id.as_str()).collect()
}

#[test]
fn debian_ranges_decide_within_the_release() {
    // DLA-3008-1: Debian:9 openssl introduced 0, fixed 1.1.0l-1~deb9u6.
    let r = rows("Debian:9", "openssl", "1.1.0l-1~deb9u5");
    assert_eq!(ids(&r), ["DLA-3008-1"]);
    assert_eq!(r[0].fixed_version.as_deref(), Some("1.1.0l-1~deb9u6"));
    assert_eq!(r[0].aliases, ["CVE-2022-1292", "DEBIAN-CVE-2022-1292"]);
    assert_eq!(r[0].severity, Severity::Medium, "DLA records carry no rating: Medium");
    // The fixed version itself and a later one are not affected.
    assert!(rows("Debian:9", "openssl", "1.1.0l-1~deb9u6").is_empty());
    // 1.1.1n-0+deb10u3 is a buster version: only the Debian:9 range speaks, and it is above its fix.
    assert!(rows("Debian:9", "openssl", "1.1.1n-0+deb10u3").is_empty());
    // versions[] of DLA-3008-1 lists 1.1.0h-4, but on Debian 10 no entry applies.
    assert!(rows("Debian:10", "openssl", "1.1.0h-4").is_empty());
    // DSA-3029-1 (old shape, CVE in aliases): nginx fixed 1.2.1-2.2+wheezy3.
    let r = rows("Debian:7", "nginx", "1.2.1-2.2+wheezy2");
    assert_eq!((ids(&r), r[0].aliases.clone()), (vec!["DSA-3029-1"], vec!["CVE-2014-3616".to_string()]));
    // DLA-3051-1 tzdata has no CVE at all; fixed 2021a-0+deb9u4.
    let r = rows("Debian:9", "tzdata", "2021a-0+deb9u3");
    assert_eq!((ids(&r), r[0].aliases.is_empty()), (vec!["DLA-3051-1"], true));
}

#[test]
fn ubuntu_pockets_give_one_row_and_the_right_verdict() {
    // UBUNTU-CVE-2022-0778 lists openssl twice in Ubuntu:Pro:FIPS:16.04:LTS: fips-updates fixed
    // at 1.0.2g-1ubuntu4.fips.4.20.2, fips (introduced 0 only) unfixed.
    assert!(rows("Ubuntu:Pro:FIPS:16.04:LTS", "openssl", "1.0.2g-1ubuntu4.fips.4.20.2").is_empty());
    let r = rows("Ubuntu:Pro:FIPS:16.04:LTS", "openssl", "1.0.2g-1ubuntu4.fips.4.6.3");
    assert_eq!(ids(&r), ["UBUNTU-CVE-2022-0778"], "one row, not one per pocket");
    assert_eq!(r[0].fixed_version.as_deref(), Some("1.0.2g-1ubuntu4.fips.4.20.2"));
    assert_eq!((r[0].severity, r[0].score), (Severity::High, Some(7.5)), "Ubuntu `high`, CVSS 7.5");
    // `~` sorts first: 1.1.1-1ubuntu2.1~18.04.14 < fix 1.1.1-1ubuntu2.1~18.04.15.
    assert_eq!(ids(&rows("Ubuntu:18.04:LTS", "openssl", "1.1.1-1ubuntu2.1~18.04.14")), ["UBUNTU-CVE-2022-0778"]);
    assert!(rows("Ubuntu:18.04:LTS", "openssl", "1.1.1-1ubuntu2.1~18.04.15").is_empty());
    // UBUNTU-CVE-2016-2781: coreutils unfixed everywhere; Ubuntu says `low` while CVSS 3.0 says 6.5.
    let r = rows("Ubuntu:22.04:LTS", "coreutils", "8.32-4.1ubuntu1.2");
    assert_eq!(ids(&r), ["UBUNTU-CVE-2016-2781"]);
    assert_eq!((r[0].fixed_version.as_deref(), r[0].severity, r[0].score), (None, Severity::Low, Some(6.5)));
    assert_eq!(r[0].aliases, ["CVE-2016-2781"], "the CVE is only in `related`");
}

#[test]
fn alpine_and_almalinux_rows() {
    // ALPINE-CVE-2025-26519: introduced 0.9.13 (upstream), fixed 1.2.4_git20230717-r5 on v3.19.
    let r = rows("Alpine:v3.19", "musl", "1.2.4_git20230717-r4");
    assert_eq!(ids(&r), ["ALPINE-CVE-2025-26519"]);
    assert_eq!((r[0].severity, r[0].score), (Severity::High, Some(7.0)));
    assert!(rows("Alpine:v3.19", "musl", "1.2.4_git20230717-r5").is_empty());
    assert!(rows("Alpine:v3.19", "musl", "0.9.12-r0").is_empty(), "before introduced");
    // Legacy CVE-2022-27449 (id is the CVE): mariadb fixed 10.6.8-r0 on v3.16.
    let r = rows("Alpine:v3.16", "mariadb", "10.6.7-r0");
    assert_eq!((ids(&r), r[0].aliases.is_empty()), (vec!["CVE-2022-27449"], true));
    // ALSA-2022:5527: squid fixed 7:5.2-1.el9_0.1 (epoch 7).
    let r = rows("AlmaLinux:9", "squid", "7:5.2-1.el9");
    assert_eq!((ids(&r), r[0].severity), (vec!["ALSA-2022:5527"], Severity::High), "Important:");
    assert!(rows("AlmaLinux:9", "squid", "7:5.2-1.el9_0.1").is_empty());
    // ALSA-2024:0001: severity only in the summary; CVEs only in `related`.
    let r = rows("AlmaLinux:9", "thunderbird", "115.5.0-1.el9_3.alma");
    assert_eq!((r[0].severity, r[0].score, r[0].aliases.len()), (Severity::High, None, 11));
    assert!(r[0].title.starts_with("Important: thunderbird"), "{}", r[0].title);
}

#[test]
fn invalid_query_version_is_an_error() {
    let eco = OsvEcosystem::parse("Debian:9").expect("ecosystem");
    assert!(match_version(&eco, "openssl", "not a version", &advisories()).is_err());
    assert!(match_version(&eco, "openssl", "", &advisories()).is_err());
}

fn deb(name: &str, version: &str, source: &str, source_version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        source_name: Some(source.into()).filter(|s: &String| !s.is_empty()),
        source_version: Some(source_version.into()).filter(|s: &String| !s.is_empty()),
        package_manager: "dpkg".into(),
        epoch: None,
    }
}

fn rpm(name: &str, version: &str, epoch: Option<&str>) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        arch: "x86_64".into(),
        package_manager: "rpm".into(),
        epoch: epoch.map(str::to_owned),
        ..InstalledPackage::default()
    }
}

fn apk(name: &str, version: &str, origin: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        version: version.into(),
        arch: "x86_64".into(),
        source_name: Some(origin.into()),
        package_manager: "apk".into(),
        ..InstalledPackage::default()
    }
}

fn os(id: &str, version_id: &str, kernel: Option<&str>) -> OsFacts {
    OsFacts { id: id.into(), version_id: version_id.into(), kernel_release: kernel.map(str::to_owned) }
}

fn assess(os: &OsFacts, packages: &[InstalledPackage]) -> NodeVulnReport {
    let advisories = advisories();
    let report = assess_node(os, packages, &advisories);
    // Shared verdicts, given only the advisories of the packages they lack (the tests run in
    // parallel threads, so nodes also race to add the same verdicts).
    static SHARED: OnceLock<Verdicts> = OnceLock::new();
    let shared = SHARED.get_or_init(Verdicts::default);
    if let Some(node) = PreparedNode::new(os, packages) {
        let missing = node.lookups_missing(shared);
        let needed = advisories.iter().filter(|a| {
            a.affected.iter().any(|e| missing.iter().any(|(k, n)| e.ecosystem.key() == k && &e.package == n))
        });
        assert_eq!(node.assess_with(shared, needed), report, "shared verdicts changed the report");
        assert!(node.lookups_missing(shared).is_empty(), "every verdict of the node is kept");
    }
    report
}

fn summary(findings: &[flotilla_vuln::Finding]) -> Vec<(String, String, String, Option<String>, Severity)> {
    findings
        .iter()
        .map(|f| {
            (f.advisory_id.clone(), f.package.clone(), f.installed_version.clone(), f.fixed_version.clone(), f.severity)
        })
        .collect()
}

fn s(x: &str) -> String {
    x.to_owned()
}

#[test]
fn ubuntu_node_one_finding_per_cve_by_source_package() {
    let report = assess(
        &os("ubuntu", "22.04", Some("5.15.0-91-generic")),
        &[
            // Two binaries of source openssh 1:8.9p1-3ubuntu0.6: one candidate.
            deb("openssh-server", "1:8.9p1-3ubuntu0.6", "openssh", ""),
            deb("openssh-client", "1:8.9p1-3ubuntu0.6", "openssh", ""),
            // coreutils: Source field absent, so the binary's own name and version.
            deb("coreutils", "8.32-4.1ubuntu1.2", "", ""),
            // openssl 3.0.2-0ubuntu1.12 >= fix 3.0.2-0ubuntu1 (UBUNTU-CVE-2022-0778): clean.
            deb("libssl3", "3.0.2-0ubuntu1.12", "openssl", ""),
        ],
    );
    assert!(report.assessable);
    assert_eq!(report.ecosystems, ["Ubuntu:22.04:LTS", "Ubuntu:Pro:22.04:LTS"]);
    assert_eq!(
        summary(&report.findings),
        [
            // UBUNTU-CVE-2024-6387 and USN-6859-1 (upstream UBUNTU-CVE-2024-6387) are one
            // vulnerability: one finding, the CVE-level record first; priority high.
            (
                s("UBUNTU-CVE-2024-6387"),
                s("openssh"),
                s("1:8.9p1-3ubuntu0.6"),
                Some(s("1:8.9p1-3ubuntu0.10")),
                Severity::High
            ),
            // Unfixed, priority low.
            (s("UBUNTU-CVE-2016-2781"), s("coreutils"), s("8.32-4.1ubuntu1.2"), None, Severity::Low),
        ]
    );
    let ssh = &report.findings[0];
    assert_eq!(ssh.aliases, ["CVE-2024-6387", "USN-6859-1"]);
    assert_eq!(ssh.score, Some(8.1));
    assert_eq!(ssh.binaries, ["openssh-server", "openssh-client"]);
    assert!(report.errors.is_empty());
}

#[test]
fn ubuntu_kernels_only_the_running_one_is_exposed() {
    // UBUNTU-CVE-2025-38094: `linux` in Ubuntu:Pro:14.04:LTS, unfixed, severity type Ubuntu `medium`.
    let report = assess(
        &os("ubuntu", "14.04", Some("3.13.0-206-generic")),
        &[
            deb("linux-image-3.13.0-206-generic", "3.13.0-206.257", "linux", ""),
            deb("linux-image-3.13.0-205-generic", "3.13.0-205.256", "linux", ""),
        ],
    );
    assert_eq!(
        summary(&report.findings),
        [(s("UBUNTU-CVE-2025-38094"), s("linux"), s("3.13.0-206.257"), None, Severity::Medium)]
    );
    assert_eq!(
        summary(&report.not_running_kernel_findings),
        [(s("UBUNTU-CVE-2025-38094"), s("linux"), s("3.13.0-205.256"), None, Severity::Medium)]
    );
    // Running kernel unknown: both count as exposed.
    let report =
        assess(&os("ubuntu", "14.04", None), &[deb("linux-image-3.13.0-205-generic", "3.13.0-205.256", "linux", "")]);
    assert_eq!(report.findings.len(), 1);
    assert!(report.not_running_kernel_findings.is_empty());
}

#[test]
fn almalinux_node_epochs_modules_and_kernels() {
    let report = assess(
        &os("almalinux", "9.2", Some("5.14.0-284.11.1.el9_2.x86_64")),
        &[
            // ALSA-2022:6224 fixed 1:3.0.1-41.el9_0; inventory keeps the epoch apart.
            rpm("openssl-libs", "3.0.1-41.el9_0", Some("1")),
            // Same, but 1:3.0.1-40 (older release): affected, Moderate → Medium.
            rpm("openssl", "1:3.0.1-40.el9_0", None),
            // Base-stream nginx below ALSA-2023:5711's fix; ALSA-2025:3261 (module 1.22) must not match.
            rpm("nginx", "1.20.1-13.el9", Some("1")),
            // A module-stream nginx-core: only ALSA-2025:3261 applies.
            rpm("nginx-core", "1:1.22.1-4.module_el9.3.0+58+ab12cd34.alma.1", None),
            // glibc at the fixed version of ALSA-2023:5453: clean.
            rpm("glibc", "2.34-60.el9_2.7", None),
        ],
    );
    assert_eq!(
        summary(&report.findings),
        [
            // Same severity, no score: by package name.
            (
                s("ALSA-2023:5711"),
                s("nginx"),
                s("1:1.20.1-13.el9"),
                Some(s("1:1.20.1-14.el9_2.1.alma.1")),
                Severity::Medium
            ),
            (
                s("ALSA-2025:3261"),
                s("nginx-core"),
                s("1:1.22.1-4.module_el9.3.0+58+ab12cd34.alma.1"),
                Some(s("1:1.22.1-8.module_el9.5.0+153+8c633b18.1.alma.1")),
                Severity::Medium
            ),
            (s("ALSA-2022:6224"), s("openssl"), s("1:3.0.1-40.el9_0"), Some(s("1:3.0.1-41.el9_0")), Severity::Medium),
        ]
    );
    assert_eq!(report.findings[0].aliases, ["CVE-2023-44487"]);
    assert_eq!(report.findings[0].title, "Moderate: nginx security update");
}

#[test]
fn almalinux_8_kernel_packages() {
    // ALSA-2022:1988 fixes kernel packages at 4.18.0-372.9.1.el8 (Important → High).
    let report = assess(
        &os("almalinux", "8.5", Some("4.18.0-348.7.1.el8_5.x86_64")),
        &[
            rpm("kernel-core", "4.18.0-348.7.1.el8_5", None),
            rpm("kernel-core", "4.18.0-348.2.1.el8_5", None),
            rpm("kernel-headers", "4.18.0-348.2.1.el8_5", None),
            // ALSA-2023:0284 sudo fixed 1.8.29-8.el8_7.1.
            rpm("sudo", "1.8.29-8.el8", None),
        ],
    );
    let fix = Some(s("4.18.0-372.9.1.el8"));
    assert_eq!(
        summary(&report.findings),
        [
            (s("ALSA-2022:1988"), s("kernel-core"), s("4.18.0-348.7.1.el8_5"), fix.clone(), Severity::High),
            // kernel-headers is not a kernel build: exposed like any package.
            (s("ALSA-2022:1988"), s("kernel-headers"), s("4.18.0-348.2.1.el8_5"), fix.clone(), Severity::High),
            (s("ALSA-2023:0284"), s("sudo"), s("1.8.29-8.el8"), Some(s("1.8.29-8.el8_7.1")), Severity::High),
        ]
    );
    assert_eq!(
        summary(&report.not_running_kernel_findings),
        [(s("ALSA-2022:1988"), s("kernel-core"), s("4.18.0-348.2.1.el8_5"), fix, Severity::High)]
    );
}

#[test]
fn alpine_node_by_origin() {
    let report = assess(
        &os("alpine", "3.19.1", Some("6.6.14-0-lts")),
        &[apk("musl", "1.2.4_git20230717-r4", "musl"), apk("musl-utils", "1.2.4_git20230717-r4", "musl")],
    );
    assert_eq!(
        summary(&report.findings),
        [(
            s("ALPINE-CVE-2025-26519"),
            s("musl"),
            s("1.2.4_git20230717-r4"),
            Some(s("1.2.4_git20230717-r5")),
            Severity::High
        )]
    );
    assert_eq!(report.findings[0].aliases, ["CVE-2025-26519"]);
}

#[test]
fn unknown_os_is_not_assessable_and_bad_items_are_errors() {
    let report = assess(&os("fedora", "40", None), &[rpm("sudo", "1.0-1", None)]);
    assert!(!report.assessable, "never silently clean");
    assert!(report.findings.is_empty());

    let report = assess(
        &os("debian", "7", None),
        &[
            deb("nginx", "not a version", "", ""),
            deb("nginx-full", "1.2.1-2.2+wheezy2", "nginx", ""),
            rpm("x", "1-1", None),
        ],
    );
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert!(report.errors[0].to_string().contains("invalid dpkg version"), "{}", report.errors[0]);
    assert!(report.errors[1].to_string().contains("package manager"), "{}", report.errors[1]);
    assert_eq!(summary(&report.findings)[0].0, "DSA-3029-1", "the rest of the node is still assessed");
}
