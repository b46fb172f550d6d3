//! Table tests of Patch Manager's rules: filters, list formats, approval, evaluation, inputs.

use super::*;
use crate::compliance::{ComplianceSeverity, ComplianceStatus};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn candidate(name: &str, installed: &str, available: Option<&str>) -> Candidate {
    Candidate {
        name: name.into(),
        arch: "amd64".into(),
        installed_version: installed.into(),
        available_version: available.map(Into::into),
        priority: Some("optional".into()),
        section: Some("libs".into()),
        ..Candidate::default()
    }
}

fn security(mut c: Candidate, severity: ComplianceSeverity) -> Candidate {
    c.classification = Some("Security".into());
    c.severity = Some(severity);
    c
}

const TODAY: i64 = 20_000;

#[test]
fn filter_keys_and_values_are_checked_per_family() {
    let f = Filter::parse(OsFamily::Debian, "rules[0].filters[0]", "priority", &strings(&["Required", "*"])).unwrap();
    assert_eq!(f.key, FilterKey::Priority);
    assert_eq!(f.values, strings(&["required", "*"]));

    let e = Filter::parse(OsFamily::Rhel, "r", "PRIORITY", &strings(&["required"])).unwrap_err();
    assert_eq!(e.path, "r.key");
    assert!(e.message.contains("not a filter key for rhel") && e.message.contains("CLASSIFICATION"), "{e}");

    let e = Filter::parse(OsFamily::Debian, "r", "COLOUR", &strings(&["red"])).unwrap_err();
    assert!(e.message.contains("unknown filter key `COLOUR`"), "{e}");

    let e = Filter::parse(OsFamily::Debian, "r", "PRIORITY", &strings(&["required", "urgent"])).unwrap_err();
    assert_eq!(e.path, "r.values[1]");
    assert!(e.message.contains("urgent") && e.message.contains("standard"), "{e}");

    let e = Filter::parse(OsFamily::Rhel, "r", "SEVERITY", &strings(&["Severe"])).unwrap_err();
    assert!(e.message.contains("Moderate"), "{e}");
    let f = Filter::parse(OsFamily::Rhel, "r", "SEVERITY", &strings(&["Important", "moderate"])).unwrap();
    assert_eq!(f.values, strings(&["HIGH", "MEDIUM"]));

    assert!(Filter::parse(OsFamily::Debian, "r", "NAME", &strings(&["lib*ssl*"])).is_err());
    assert!(Filter::parse(OsFamily::Debian, "r", "NAME", &[]).is_err());
}

#[test]
fn package_patterns_follow_the_list_formats() {
    use PackagePattern as P;
    assert_eq!(P::parse("a", "openssl", false).unwrap(), P::Name("openssl".into()));
    assert_eq!(P::parse("a", "libssl*", true).unwrap(), P::Name("libssl*".into()));
    assert_eq!(
        P::parse("a", "curl=7.88.1-10+deb12u5", true).unwrap(),
        P::NameVersion { name: "curl".into(), version: "7.88.1-10+deb12u5".into() }
    );
    assert_eq!(P::parse("a", "CVE-2024-12345", false).unwrap(), P::Cve("CVE-2024-12345".into()));
    assert_eq!(P::parse("a", "RHSA-2023:1234", false).unwrap(), P::Advisory("RHSA-2023:1234".into()));
    for bad in ["", "lib*ss*", "name with space", "-rf", "curl=", "lib*=1.0", "CVE-24-1"] {
        assert!(P::parse("approved_patches[0]", bad, false).is_err(), "{bad:?} accepted");
    }
    let e = P::parse("rejected_patches[2]", "CVE-2024-12345", true).unwrap_err();
    assert_eq!(e.path, "rejected_patches[2]");
}

#[test]
fn approval_waits_days_or_until_a_date() {
    let a = Approval::parse("r", Some(7), None).unwrap();
    assert!(a.approves(Some(TODAY - 7), TODAY));
    assert!(!a.approves(Some(TODAY - 6), TODAY));
    assert!(a.approves(None, TODAY), "no date: approved at once");
    let u = Approval::parse("r", None, Some("1970-01-11")).unwrap();
    assert_eq!(u, Approval::UntilDate { day: 10, text: "1970-01-11".into() });
    assert!(u.approves(Some(10), TODAY) && !u.approves(Some(11), TODAY));
    assert!(Approval::parse("r", Some(361), None).is_err());
    assert!(Approval::parse("r", Some(-1), None).is_err());
    assert!(Approval::parse("r", Some(1), Some("2026-01-01")).is_err());
    assert!(Approval::parse("r", None, None).is_err());
    assert!(Approval::parse("r", None, Some("2026-13-01")).is_err());
    assert!(Approval::parse("r", None, Some("2026-1-1")).is_err());
}

#[test]
fn the_default_debian_baseline_approves_security_updates_only() {
    let b = predefined(OsFamily::Debian);
    b.check().unwrap();
    let cs = vec![
        security(candidate("openssl", "3.0.11-1", Some("3.0.13-1")), ComplianceSeverity::High),
        candidate("vim", "9.0.1-1", Some("9.0.2-1")),
        candidate("bash", "5.2-1", None),
    ];
    let e = evaluate(&b, &cs, &Memory::default(), false, 0, TODAY);
    let state = |n: &str| e.rows.iter().find(|r| r.name == n).unwrap().state;
    assert_eq!(state("openssl"), PatchState::Missing);
    assert_eq!(state("vim"), PatchState::InstalledOther, "a non-security update is not approved");
    assert_eq!(state("bash"), PatchState::InstalledOther);
    assert_eq!(e.to_install, vec![("openssl".to_owned(), "3.0.13-1".to_owned())]);
    let s = e.summary();
    assert_eq!(s.status, ComplianceStatus::NonCompliant);
    assert_eq!(s.counts[&PatchState::Missing], 1);
    assert_eq!(s.counts[&PatchState::InstalledOther], 2);
}

#[test]
fn a_fixed_cve_makes_an_update_security_with_its_severity() {
    let b = predefined(OsFamily::Alpine);
    let mut c = candidate("musl", "1.2.4-r1", Some("1.2.4-r2"));
    c.cves = strings(&["CVE-2024-0001"]);
    c.severity = Some(ComplianceSeverity::Medium);
    let e = evaluate(&b, &[c], &Memory::default(), false, 0, TODAY);
    assert_eq!(e.rows[0].state, PatchState::Missing);
    assert_eq!(e.rows[0].cves, strings(&["CVE-2024-0001"]));
    assert_eq!(e.rows[0].severity, ComplianceSeverity::Medium);
}

fn custom(os: OsFamily) -> Baseline {
    Baseline {
        name: "web-servers".into(),
        os,
        description: String::new(),
        global_filters: Vec::new(),
        rules: vec![Rule {
            filters: vec![Filter::parse(os, "f", "SEVERITY", &strings(&["*"])).unwrap()],
            approval: Approval::AfterDays(0),
            compliance_level: ComplianceSeverity::High,
            enable_non_security: true,
        }],
        approved: Vec::new(),
        approved_compliance_level: ComplianceSeverity::Unspecified,
        approved_enable_non_security: false,
        rejected: Vec::new(),
        rejected_action: RejectedAction::AllowAsDependency,
    }
}

#[test]
fn the_compliance_level_is_a_threshold() {
    let b = custom(OsFamily::Ubuntu);
    let low = security(candidate("zlib1g", "1.2.13-1", Some("1.2.13-2")), ComplianceSeverity::Low);
    let e = evaluate(&b, std::slice::from_ref(&low), &Memory::default(), false, 0, TODAY);
    assert_eq!(e.rows[0].state, PatchState::Missing);
    assert_eq!(e.summary().status, ComplianceStatus::Compliant, "a Low patch under a HIGH threshold");
    let critical = security(candidate("openssl", "3.0.11-1", Some("3.0.13-1")), ComplianceSeverity::Critical);
    let e = evaluate(&b, &[low, critical], &Memory::default(), false, 0, TODAY);
    let s = e.summary();
    assert_eq!(s.status, ComplianceStatus::NonCompliant);
    assert_eq!(s.severity, ComplianceSeverity::Critical);
}

#[test]
fn rejected_patches_are_never_approved_and_block_reports_installed_rejected() {
    let mut b = custom(OsFamily::Rhel);
    b.approved = vec![PackagePattern::parse("a", "kernel*", false).unwrap()];
    b.approved_enable_non_security = true;
    b.rejected = vec![
        PackagePattern::parse("r", "kernel*", true).unwrap(),
        PackagePattern::parse("r", "telnet=0.17-85.el9", true).unwrap(),
        PackagePattern::parse("r", "nothing-like-this", true).unwrap(),
    ];
    let cs = vec![
        candidate("kernel-core", "5.14.0-362", Some("5.14.0-427")),
        candidate("telnet", "0.17-85.el9", None),
        candidate("curl", "7.76.1-26", Some("7.76.1-29")),
    ];
    let e = evaluate(&b, &cs, &Memory::default(), false, 0, TODAY);
    let state = |n: &str| e.rows.iter().find(|r| r.name == n).unwrap().state;
    assert_eq!(state("kernel-core"), PatchState::InstalledOther, "approved and rejected counts as rejected");
    assert_eq!(state("telnet"), PatchState::InstalledOther, "ALLOW_AS_DEPENDENCY");
    assert_eq!(state("curl"), PatchState::Missing);
    assert_eq!(e.unmatched_rejected, strings(&["nothing-like-this"]));
    assert!(e.blocked.is_empty());

    b.rejected_action = RejectedAction::Block;
    let e = evaluate(&b, &cs, &Memory::default(), false, 0, TODAY);
    assert_eq!(e.rows.iter().find(|r| r.name == "telnet").unwrap().state, PatchState::InstalledRejected);
    assert_eq!(e.blocked, strings(&["kernel*", "telnet", "nothing-like-this"]));
    assert_eq!(e.to_install, vec![("curl".to_owned(), "7.76.1-29".to_owned())]);
}

#[test]
fn memory_gives_failed_installed_and_pending_reboot() {
    let b = custom(OsFamily::Debian);
    let mut memory = Memory::default();
    memory.failed.insert("broken".into(), "2.0-1".into());
    memory.patched.insert("openssl".into(), ("3.0.13-1".into(), 5_000));
    let cs = vec![candidate("broken", "1.0-1", Some("2.0-1")), candidate("openssl", "3.0.13-1", None)];
    let e = evaluate(&b, &cs, &memory, true, 1_000, TODAY);
    assert_eq!(e.rows[0].state, PatchState::Failed);
    assert_eq!(e.to_install, vec![("broken".to_owned(), "2.0-1".to_owned())], "an Install tries it again");
    assert_eq!(e.rows[1].state, PatchState::InstalledPendingReboot);
    // After a reboot (boot after the install), installed.
    let e = evaluate(&b, &cs, &memory, true, 9_000, TODAY);
    assert_eq!(e.rows[1].state, PatchState::Installed);
    let e = evaluate(&b, &cs, &memory, false, 1_000, TODAY);
    assert_eq!(e.rows[1].state, PatchState::Installed);
    // A failed install that left the new version unpacked is still FAILED.
    let half = vec![candidate("broken", "2.0-1", None)];
    assert_eq!(evaluate(&b, &half, &memory, false, 0, TODAY).rows[0].state, PatchState::Failed);
}

#[test]
fn a_baseline_that_approves_nothing_is_detectable() {
    let mut b = custom(OsFamily::Debian);
    b.rules.clear();
    assert!(!b.approves_anything());
    let e = evaluate(&b, &[candidate("vim", "1", Some("2"))], &Memory::default(), false, 0, TODAY);
    assert_eq!(e.rows[0].state, PatchState::InstalledOther);
    assert!(e.to_install.is_empty());
}

#[test]
fn approved_packages_the_node_lacks_are_not_applicable() {
    let mut b = custom(OsFamily::Debian);
    b.approved = ["vim", "nginx=1.24.0-1", "curl*", "CVE-2024-6387"]
        .iter()
        .map(|p| PackagePattern::parse("approved", p, false).unwrap())
        .collect();
    let e = evaluate(&b, &[candidate("vim", "1", Some("2"))], &Memory::default(), false, 0, TODAY);
    let states: Vec<_> = e.rows.iter().map(|r| (r.name.as_str(), r.state, r.available_version.as_deref())).collect();
    // Only exact names stand for a package; a `*` pattern or a CVE names none.
    assert_eq!(
        states,
        [("nginx", PatchState::NotApplicable, Some("1.24.0-1")), ("vim", PatchState::Missing, Some("2"))]
    );
    assert!(!e.rows[0].counts, "NOT_APPLICABLE never makes a node non-compliant");
}

#[test]
fn names_and_families_parse() {
    assert_eq!(OsFamily::of_os("rocky", "rhel centos fedora"), Some(OsFamily::Rhel));
    assert_eq!(OsFamily::of_os("linuxmint", "ubuntu debian"), Some(OsFamily::Ubuntu));
    assert_eq!(OsFamily::of_os("\"ubuntu\"", ""), Some(OsFamily::Ubuntu));
    assert_eq!(OsFamily::of_os("windows", ""), None);
    assert_eq!("ROCKY".parse::<OsFamily>(), Ok(OsFamily::Rhel));
    assert!("gentoo".parse::<OsFamily>().unwrap_err().to_string().contains("debian, ubuntu, rhel, alpine"));
    assert_eq!("install".parse::<Operation>(), Ok(Operation::Install));
    assert!("Upgrade".parse::<Operation>().is_err());
    assert_eq!("noreboot".parse::<RebootOption>(), Ok(RebootOption::NoReboot));
    for s in PatchState::ALL {
        assert_eq!(s.as_str().parse::<PatchState>(), Ok(s));
    }
    let mut b = custom(OsFamily::Debian);
    b.name = "ab".into();
    assert_eq!(b.check().unwrap_err().path, "name");
}

#[test]
fn patch_now_follows_the_section_7_6_table() {
    assert_eq!(patch_now_rate(Operation::Install, 10), ("1".into(), "1".into()));
    assert_eq!(patch_now_rate(Operation::Install, 50), ("5%".into(), "5".into()));
    assert_eq!(patch_now_rate(Operation::Install, 500), ("8%".into(), "10".into()));
    assert_eq!(patch_now_rate(Operation::Install, 5000), ("10%".into(), "10".into()));
    assert_eq!(patch_now_rate(Operation::Scan, 5000), ("1000".into(), "1000".into()));
}

#[test]
fn step_inputs_are_checked_unless_deferred() {
    let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let none = |_: &str| false;
    let got = StepInputs::parse(&map(&[("operation", "Install"), ("installOverrideList", "curl, libssl*")]), &none)
        .unwrap()
        .unwrap();
    assert_eq!(got.operation, Operation::Install);
    assert_eq!(got.reboot, RebootOption::RebootIfNeeded);
    assert_eq!(got.install_override.len(), 2);
    assert!(StepInputs::parse(&map(&[("operation", "Upgrade")]), &none).unwrap_err().contains("Scan, Install"));
    assert!(StepInputs::parse(&map(&[]), &none).unwrap_err().contains("required"));
    assert!(
        StepInputs::parse(&map(&[("operation", "Scan"), ("reboot", "x")]), &none)
            .unwrap_err()
            .contains("unknown input")
    );
    assert!(StepInputs::parse(&map(&[("operation", "Scan"), ("installOverrideList", "a b")]), &none).is_err());
    let deferred = |v: &str| v.contains("{{");
    assert_eq!(StepInputs::parse(&map(&[("operation", "{{ Operation }}")]), &deferred), Ok(None));
}
