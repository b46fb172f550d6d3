//! Every rpm case of the reference data, in both directions.
//!
//! * Full `[EPOCH:]VERSION[-RELEASE]` files (`redhat-versions.txt`,
//!   `almalinux-versions-generated.txt`, and `rpmvercmp.at`, whose cases rpm
//!   runs through `rpm.vercmp`, i.e. `rpmverParse` + `rpmverCmp`) go through
//!   [`RpmVersion`] and `compare(Ecosystem::Rpm, ..)`.
//! * `go-rpm-version.rpmvercmp.tsv` holds raw single-segment `rpmvercmp()`
//!   cases, including empty strings, so it goes through [`rpmvercmp`].
//!
//! The `dnl` lines of `rpmvercmp.at` are commented-out "oddities" rpm does
//! not assert; the data README says to skip them (their non-ASCII cases are
//! covered by `redhat-versions.txt` instead).

mod common;

use common::{Outcome, assert_all_pass, parse_rpmvercmp_at, parse_s, parse_tsv_cases, run};
use flotilla_vuln::rpm::rpmvercmp;
use flotilla_vuln::{Ecosystem, RpmVersion, compare};

fn evr(a: &str, b: &str) -> Result<std::cmp::Ordering, String> {
    let via_types = RpmVersion::parse(a).and_then(|a| Ok(a.cmp(&RpmVersion::parse(b)?))).map_err(|e| e.to_string())?;
    let via_fn = compare(Ecosystem::Rpm, a, b).map_err(|e| e.to_string())?;
    assert_eq!(via_types, via_fn, "{a} vs {b}: compare() disagrees with Ord");
    Ok(via_types)
}

fn check_evr(file: &str, cases: Vec<common::Case>, expected_count: usize) -> Outcome {
    assert_eq!(cases.len(), expected_count, "{file}: case count");
    run(file, &cases, evr)
}

#[test]
fn rpm_rpmvercmp_at() {
    let file = "rpmvercmp.at";
    assert_all_pass(&[check_evr(file, parse_rpmvercmp_at(file), 91)]);
}

#[test]
fn osv_redhat_versions() {
    let file = "redhat-versions.txt";
    assert_all_pass(&[check_evr(file, parse_s(file), 165)]);
}

#[test]
fn almalinux_versions_generated() {
    let file = "almalinux-versions-generated.txt";
    assert_all_pass(&[check_evr(file, parse_s(file), 7_421)]);
}

#[test]
fn go_rpm_version_raw_rpmvercmp() {
    let file = "go-rpm-version.rpmvercmp.tsv";
    let cases = parse_tsv_cases(file);
    assert_eq!(cases.len(), 4_489, "{file}: case count");
    assert_all_pass(&[run(file, &cases, |a, b| Ok(rpmvercmp(a, b)))]);
}
