//! Property tests: each ordering is a total order on the versions its
//! parser accepts, and no input makes a parser or comparison panic.
//!
//! Generators use small alphabets on purpose, so that random versions share
//! prefixes and collide often enough to exercise equal and near-equal cases
//! (`1.0` vs `1.00` vs `1.0-0`), which is where ordering bugs hide.

use std::cmp::Ordering;
use std::fmt::Debug;

use flotilla_vuln::apk::compare_unvalidated;
use flotilla_vuln::rpm::rpmvercmp;
use flotilla_vuln::{ApkVersion, DebVersion, Ecosystem, RpmVersion, compare};
use proptest::prelude::*;

fn deb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-9]{1,2}:)?[0-9][0-9a-bA.+~]{0,6}(-[0-9a-b.+~]{1,4})?",
        "([0-9]:)?[0-9][0-9a.~:-]{0,6}",
        "[0-9~.a-]{1,6}",
    ]
}

fn deb() -> impl Strategy<Value = DebVersion> {
    deb_string().prop_filter_map("not a valid dpkg version", |s| DebVersion::parse(&s).ok())
}

fn rpm_string() -> impl Strategy<Value = String> {
    prop_oneof!["([0-9]{1,2}:)?[0-9a-b.~^_]{0,6}(-[0-9a-b.~^]{0,4})?", "[0-9a-b.~^_+:α-]{1,8}",]
}

fn rpm() -> impl Strategy<Value = RpmVersion> {
    rpm_string().prop_filter_map("empty", |s| RpmVersion::parse(&s).ok())
}

fn apk_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,2}(\\.[0-9]{1,2}){0,3}[a-c]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]{0,2}){0,2}(-r[0-9]{1,2})?",
        "0{0,2}[0-9](\\.0{0,2}[0-9]?){0,2}(_(pre|p)0?[0-9]?)?(-r0?[0-9]?)?",
        "[0-9a-c._r-]{1,8}",
    ]
}

fn apk() -> impl Strategy<Value = ApkVersion> {
    apk_string().prop_filter_map("not a valid apk version", |s| ApkVersion::parse(&s).ok())
}

/// Checks reflexivity, antisymmetry, `Eq` agreement and transitivity on a
/// triple, plus that sorting a list leaves it pairwise ordered.
fn check_total_order<T: Ord + Debug + Clone>(a: &T, b: &T, c: &T) -> Result<(), TestCaseError> {
    for x in [a, b, c] {
        prop_assert_eq!(x.cmp(x), Ordering::Equal);
        prop_assert!(*x == x.clone(), "reflexive Eq {:?}", x);
    }
    for (x, y) in [(a, b), (b, c), (a, c)] {
        prop_assert_eq!(x.cmp(y), y.cmp(x).reverse(), "antisymmetry {:?} {:?}", x, y);
        prop_assert_eq!(x == y, x.cmp(y) == Ordering::Equal);
        prop_assert_eq!(x.partial_cmp(y), Some(x.cmp(y)));
    }
    let perms = [(a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)];
    for (x, y, z) in perms {
        if x <= y && y <= z {
            prop_assert!(x <= z, "transitivity {:?} <= {:?} <= {:?}", x, y, z);
        }
        if x == y && y == z {
            prop_assert!(x == z);
        }
    }
    Ok(())
}

fn check_sorted<T: Ord + Debug>(mut v: Vec<T>) -> Result<(), TestCaseError> {
    v.sort();
    for (i, x) in v.iter().enumerate() {
        for y in v.iter().skip(i + 1) {
            prop_assert!(x <= y, "sorted list out of order: {:?} > {:?}", x, y);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn deb_is_a_total_order(a in deb(), b in deb(), c in deb()) {
        check_total_order(&a, &b, &c)?;
    }

    #[test]
    fn deb_sorts_consistently(v in proptest::collection::vec(deb(), 0..12)) {
        check_sorted(v)?;
    }

    #[test]
    fn rpm_is_a_total_order(a in rpm(), b in rpm(), c in rpm()) {
        check_total_order(&a, &b, &c)?;
    }

    #[test]
    fn rpm_sorts_consistently(v in proptest::collection::vec(rpm(), 0..12)) {
        check_sorted(v)?;
    }

    #[test]
    fn apk_is_a_total_order(a in apk(), b in apk(), c in apk()) {
        check_total_order(&a, &b, &c)?;
    }

    #[test]
    fn apk_sorts_consistently(v in proptest::collection::vec(apk(), 0..12)) {
        check_sorted(v)?;
    }

    /// Raw `rpmvercmp` is a total preorder on all strings, including the
    /// empty string and non-ASCII separators.
    #[test]
    fn raw_rpmvercmp_is_a_total_preorder(
        a in "[0-9a-b.~^_α]{0,6}", b in "[0-9a-b.~^_α]{0,6}", c in "[0-9a-b.~^_α]{0,6}",
    ) {
        prop_assert_eq!(rpmvercmp(&a, &a), Ordering::Equal);
        prop_assert_eq!(rpmvercmp(&a, &b), rpmvercmp(&b, &a).reverse());
        let le = |x: &str, y: &str| rpmvercmp(x, y) != Ordering::Greater;
        for (x, y, z) in [(&a, &b, &c), (&a, &c, &b), (&b, &a, &c), (&b, &c, &a), (&c, &a, &b), (&c, &b, &a)] {
            if le(x, y) && le(y, z) {
                prop_assert!(le(x, z), "{:?} <= {:?} <= {:?}", x, y, z);
            }
        }
    }

    /// apk's unvalidated comparison is at least antisymmetric on any input.
    #[test]
    fn apk_unvalidated_is_antisymmetric(a in "[0-9a-cA._r~-]{0,8}", b in "[0-9a-cA._r~-]{0,8}") {
        prop_assert_eq!(compare_unvalidated(&a, &a), Ordering::Equal);
        prop_assert_eq!(compare_unvalidated(&a, &b), compare_unvalidated(&b, &a).reverse());
    }

    /// Display prints the version as written (after dpkg's blank trimming),
    /// and it parses back to an equal version.
    #[test]
    fn display_round_trips(d in deb(), r in rpm(), a in apk()) {
        prop_assert_eq!(DebVersion::parse(&d.to_string()).ok(), Some(d));
        prop_assert_eq!(RpmVersion::parse(&r.to_string()).ok(), Some(r));
        prop_assert_eq!(ApkVersion::parse(&a.to_string()).ok(), Some(a));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// No string, however malformed, makes parsing or comparing panic; and
    /// `compare` fails exactly when a parser rejects one of its inputs.
    #[test]
    fn nothing_panics_on_arbitrary_strings(a in any::<String>(), b in any::<String>()) {
        let deb = (DebVersion::parse(&a), DebVersion::parse(&b));
        let rpm = (RpmVersion::parse(&a), RpmVersion::parse(&b));
        let apk = (ApkVersion::parse(&a), ApkVersion::parse(&b));
        prop_assert_eq!(compare(Ecosystem::Deb, &a, &b).is_ok(), deb.0.is_ok() && deb.1.is_ok());
        prop_assert_eq!(compare(Ecosystem::Rpm, &a, &b).is_ok(), rpm.0.is_ok() && rpm.1.is_ok());
        prop_assert_eq!(compare(Ecosystem::Apk, &a, &b).is_ok(), apk.0.is_ok() && apk.1.is_ok());
        for err in [deb.0.err(), rpm.0.err(), apk.0.err()].into_iter().flatten() {
            prop_assert_eq!(err.version(), a.as_str());
            prop_assert!(!err.to_string().is_empty());
        }
        let _ = rpmvercmp(&a, &b);
        let _ = compare_unvalidated(&a, &b);
    }

    /// The same on strings made of the characters version parsers care
    /// about, which reach far deeper into each parser than random Unicode.
    #[test]
    fn nothing_panics_on_version_like_strings(
        a in "[0-9a-zA-Z.:~^_+ \t\0-]{0,24}", b in "[0-9a-zA-Z.:~^_+ \t\0-]{0,24}",
    ) {
        for eco in [Ecosystem::Deb, Ecosystem::Rpm, Ecosystem::Apk] {
            let _ = compare(eco, &a, &b);
        }
        let _ = rpmvercmp(&a, &b);
        let _ = compare_unvalidated(&a, &b);
    }

    /// Digit runs far beyond any integer type compare numerically.
    #[test]
    fn long_numbers_compare_numerically(x in "[1-9][0-9]{20,60}", y in "[1-9][0-9]{20,60}") {
        let expected = x.len().cmp(&y.len()).then_with(|| x.cmp(&y));
        prop_assert_eq!(compare(Ecosystem::Deb, &format!("1.{x}"), &format!("1.{y}")).ok(), Some(expected));
        prop_assert_eq!(compare(Ecosystem::Rpm, &format!("1.{x}"), &format!("1.{y}")).ok(), Some(expected));
        prop_assert_eq!(compare(Ecosystem::Apk, &format!("1.{x}"), &format!("1.{y}")).ok(), Some(expected));
        prop_assert_eq!(compare(Ecosystem::Deb, &format!("{x}:1"), &format!("{y}:1")).is_err(), true);
        prop_assert_eq!(compare(Ecosystem::Rpm, &format!("{x}:1"), &format!("{y}:1")).ok(), Some(expected));
    }
}
