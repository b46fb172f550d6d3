//! Every dpkg case of the reference data, through [`DebVersion`] (and so
//! through `flotilla_vuln::compare(Ecosystem::Deb, ..)`), in both directions.
//!
//! All versions in these files are valid for dpkg, so a parse error is a
//! failure. The case counts are pinned to the numbers in
//! `tests/data/README.md`.

mod common;

use common::{Outcome, assert_all_pass, parse_s, parse_triples, run};
use flotilla_vuln::{DebVersion, Ecosystem, compare};

fn deb(a: &str, b: &str) -> Result<std::cmp::Ordering, String> {
    let via_types = DebVersion::parse(a).and_then(|a| Ok(a.cmp(&DebVersion::parse(b)?))).map_err(|e| e.to_string())?;
    let via_fn = compare(Ecosystem::Deb, a, b).map_err(|e| e.to_string())?;
    assert_eq!(via_types, via_fn, "{a} vs {b}: compare() disagrees with Ord");
    Ok(via_types)
}

fn check(file: &str, cases: Vec<common::Case>, expected_count: usize) -> Outcome {
    assert_eq!(cases.len(), expected_count, "{file}: case count");
    run(file, &cases, deb)
}

#[test]
fn dpkg_version_t_data() {
    let file = "Dpkg_Version.t.DATA";
    assert_all_pass(&[check(file, parse_triples(file, false), 43)]);
}

#[test]
fn apt_versions_lst() {
    let file = "versions.lst";
    assert_all_pass(&[check(file, parse_triples(file, true), 64)]);
}

#[test]
fn apt_compareversion_test_cases() {
    let file = "apt-compareversion_test.cases.txt";
    assert_all_pass(&[check(file, parse_s(file), 64)]);
}

#[test]
fn osv_debian_versions() {
    let file = "debian-versions.txt";
    assert_all_pass(&[check(file, parse_s(file), 30)]);
}

#[test]
fn osv_debian_versions_generated() {
    let file = "debian-versions-generated.txt";
    assert_all_pass(&[check(file, parse_s(file), 14_442)]);
}
