//! Property tests of matching: a range's verdict is exactly the interval the ecosystem's own
//! ordering defines, whatever order its events are written in, and an advisory that lists a
//! package several times (pockets) never gives more than one finding per package.

use std::cmp::Ordering;

use flotilla_vuln::advisory::{PackageVersion, RangeVerdict, evaluate_affected};
use flotilla_vuln::{
    Advisory, Affected, Ecosystem, Event, EventKind, InstalledPackage, OsFacts, Range, RangeKind, assess_node, compare,
};
use proptest::prelude::*;

fn deb_version() -> impl Strategy<Value = String> {
    "([0-9]:)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(~[a-z0-9]{1,3})?(-[0-9]{1,2}(\\+deb12u[0-9])?)?"
}

fn rpm_version() -> impl Strategy<Value = String> {
    "([0-9]:)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}-[0-9]{1,2}(\\.el9(_[0-9])?)?"
}

fn apk_version() -> impl Strategy<Value = String> {
    "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(_(rc|p|git)[0-9]{0,2})?-r[0-9]{1,2}"
}

fn case() -> impl Strategy<Value = (&'static str, Ecosystem, [String; 3])> {
    prop_oneof![
        [deb_version(), deb_version(), deb_version()].prop_map(|v| ("Debian:12", Ecosystem::Deb, v)),
        [rpm_version(), rpm_version(), rpm_version()].prop_map(|v| ("AlmaLinux:9", Ecosystem::Rpm, v)),
        [apk_version(), apk_version(), apk_version()].prop_map(|v| ("Alpine:v3.19", Ecosystem::Apk, v)),
    ]
}

fn advisory(id: &str, entries: Vec<Affected>) -> Advisory {
    Advisory { id: id.into(), modified: "2024-01-01T00:00:00Z".into(), affected: entries, ..Advisory::default() }
}

fn entry(eco: &str, events: Vec<Event>) -> Affected {
    Affected {
        ecosystem: eco.into(),
        package: "p".into(),
        ranges: vec![Range { kind: RangeKind::Ecosystem, events }],
        ..Affected::default()
    }
}

proptest! {
    #[test]
    fn introduced_fixed_is_a_half_open_interval((eco, ordering, [a, b, v]) in case(), reversed in any::<bool>()) {
        let cmp = |x: &str, y: &str| compare(ordering, x, y).expect("generated versions are valid");
        let (lo, hi) = if cmp(&a, &b) == Ordering::Greater { (b, a) } else { (a, b) };
        let mut events = vec![Event::new(EventKind::Introduced, lo.clone()), Event::new(EventKind::Fixed, hi.clone())];
        if reversed {
            events.reverse();
        }
        let compiled = advisory("P-1", vec![entry(eco, events)]).compile().expect("valid record");
        let installed = PackageVersion::parse(ordering, &v).expect("valid version");
        let verdict = evaluate_affected(&compiled.affected[0], &installed);
        // OSV's `introduced: "0"` means "from the first version", below which a dpkg `0~x`
        // still sorts: it is no lower bound at all.
        let from_start = lo == "0";
        let inside = (from_start || cmp(&lo, &v) != Ordering::Greater) && cmp(&v, &hi) == Ordering::Less;
        let expected = if inside {
            RangeVerdict::Affected { fixed: Some(hi.clone()) }
        } else if cmp(&v, &hi) != Ordering::Less && (from_start || cmp(&lo, &hi) == Ordering::Less) {
            RangeVerdict::Fixed
        } else {
            verdict.clone() // below `introduced` (or an empty range): not affected either way
        };
        prop_assert_eq!(&verdict, &expected, "{} in [{}, {})", v, lo, hi);
        if !inside {
            let affected = matches!(verdict, RangeVerdict::Affected { .. });
            prop_assert!(!affected, "{} outside [{}, {})", v, lo, hi);
        }
    }

    #[test]
    fn pockets_give_at_most_one_finding_per_package(
        [fix1, fix2, installed] in [deb_version(), deb_version(), deb_version()],
        unfixed_pocket in any::<bool>(),
    ) {
        let mut entries = vec![
            entry("Debian:12", vec![Event::new(EventKind::Introduced, "0"), Event::new(EventKind::Fixed, fix1.clone())]),
            entry("Debian:12", vec![Event::new(EventKind::Introduced, "0"), Event::new(EventKind::Fixed, fix2.clone())]),
        ];
        if unfixed_pocket {
            entries.push(entry("Debian:12", vec![Event::new(EventKind::Introduced, "0")]));
        }
        let compiled = advisory("P-2", entries).compile().expect("valid record");
        let os = OsFacts { id: "debian".into(), version_id: "12".into(), kernel_release: None };
        let pkg = InstalledPackage {
            name: "p".into(),
            version: installed.clone(),
            package_manager: "dpkg".into(),
            ..InstalledPackage::default()
        };
        let report = assess_node(&os, &[pkg], [&compiled]);
        prop_assert!(report.findings.len() <= 1);
        // Reaching any pocket's fix means that fix is installed.
        let cmp = |x: &str, y: &str| compare(Ecosystem::Deb, x, y).expect("valid");
        let fixed_somewhere = cmp(&installed, &fix1) != Ordering::Less || cmp(&installed, &fix2) != Ordering::Less;
        prop_assert_eq!(report.findings.is_empty(), fixed_somewhere);
    }
}

/// Found by the interval property: dpkg sorts `0~0` below `0`, and OSV's `introduced: "0"` is
/// no lower bound, so such a version is affected.
#[test]
fn introduced_zero_is_no_lower_bound() {
    let events = vec![Event::new(EventKind::Introduced, "0"), Event::new(EventKind::Fixed, "0")];
    let compiled = advisory("P-0", vec![entry("Debian:12", events)]).compile().expect("valid record");
    let installed = PackageVersion::parse(Ecosystem::Deb, "0~0").expect("valid version");
    assert_eq!(
        evaluate_affected(&compiled.affected[0], &installed),
        RangeVerdict::Affected { fixed: Some("0".into()) }
    );
}
