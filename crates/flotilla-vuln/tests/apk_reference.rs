//! Every apk case of the reference data, in both directions, under
//! apk-tools 2.x rules.
//!
//! Generation-dependent cases: `apk-version-dependent.tsv` lists the 57
//! comparisons in `alpine-versions.txt`, `alpine-versions-generated.txt` and
//! `version.data` whose answer differs between apk-tools 2.14 and 3.x. As the
//! data README directs, for those rows the expected answer is the
//! `apk-tools_2.14_rules` column, not the file's own operator. Each row is
//! checked against the data file (same line, same A, OP and B) before it
//! overrides it, and every row must be used.
//!
//! Invalid versions: several cases compare strings that apk-tools 2.x's
//! `apk_version_validate` rejects (`1-r-0`, `1.2.0A`, `1-ruff`, ...), which
//! `apk version -t` in 2.x still compares. Those go through
//! [`compare_unvalidated`]; all other cases go through [`ApkVersion`] and
//! `compare(Ecosystem::Apk, ..)`, which must agree with it.
//!
//! `version.data` lines 734 and later exist only in apk-tools 3.x (the
//! 2.14-stable branch has the first 733 lines). Its comparisons there are in
//! the TSV. Its fuzzy-match (`~`) and validity lines are checked as
//! described in `version_data_fuzzy_lines` and `version_data_validity_lines`.

mod common;

use std::cell::Cell;
use std::cmp::Ordering;

use common::{Case, Outcome, assert_all_pass, op, read, run, tsv_rows};
use flotilla_vuln::apk::compare_unvalidated;
use flotilla_vuln::{ApkVersion, Ecosystem, compare};

struct Dependent {
    file: String,
    line: usize,
    a: String,
    in_file: Ordering,
    b: String,
    apk2: Ordering,
}

fn dependent_rows() -> Vec<Dependent> {
    let rows = tsv_rows("apk-version-dependent.tsv");
    assert_eq!(rows.len(), 57, "apk-version-dependent.tsv: row count");
    rows.into_iter()
        .map(|(n, f)| {
            let [file, line, a, in_file, b, apk2, apk3] = f.as_slice() else {
                panic!("apk-version-dependent.tsv:{n}: expected 7 columns: {f:?}");
            };
            assert_ne!(op(apk2), op(apk3), "apk-version-dependent.tsv:{n}: row does not depend on the generation");
            Dependent {
                file: file.clone(),
                line: line.parse().expect("line number"),
                a: a.clone(),
                in_file: op(in_file),
                b: b.clone(),
                apk2: op(apk2),
            }
        })
        .collect()
}

/// Replaces the expected answer of the TSV-listed cases of `file` with the
/// apk-tools 2.14 answer; returns how many cases were overridden.
fn apply_apk2_answers(file: &str, cases: &mut [Case]) -> usize {
    let mut n = 0;
    for row in dependent_rows().into_iter().filter(|r| r.file == file) {
        let case = cases
            .iter_mut()
            .find(|c| c.line == row.line)
            .unwrap_or_else(|| panic!("{file}:{}: listed in the TSV but not a case", row.line));
        assert_eq!(
            (&case.a, case.expected, &case.b),
            (&row.a, row.in_file, &row.b),
            "{file}:{}: TSV row does not match the data file",
            row.line
        );
        case.expected = row.apk2;
        n += 1;
    }
    n
}

/// Runs `cases`, using [`ApkVersion`] when both sides are valid apk 2.x
/// versions and [`compare_unvalidated`] otherwise. Returns the outcome and
/// how many cases needed the unvalidated path.
fn check(file: &str, cases: &[Case]) -> (Outcome, usize) {
    let unvalidated = Cell::new(0usize);
    let outcome = run(file, cases, |a, b| {
        let raw = compare_unvalidated(a, b);
        match (ApkVersion::parse(a), ApkVersion::parse(b)) {
            (Ok(x), Ok(y)) => {
                let typed = x.cmp(&y);
                assert_eq!(Ok(typed), compare(Ecosystem::Apk, a, b), "{a} vs {b}");
                assert_eq!(typed, raw, "{a} vs {b}: Ord disagrees with compare_unvalidated");
                Ok(typed)
            }
            _ => {
                assert!(compare(Ecosystem::Apk, a, b).is_err(), "{a} vs {b}");
                unvalidated.set(unvalidated.get() + 1);
                Ok(raw)
            }
        }
    });
    // `run` compares each case twice (both directions).
    (outcome, unvalidated.get() / 2)
}

fn check_file(file: &str, mut cases: Vec<Case>, count: usize, overrides: usize) {
    assert_eq!(cases.len(), count, "{file}: case count");
    assert_eq!(apply_apk2_answers(file, &mut cases), overrides, "{file}: TSV rows used");
    let (outcome, unvalidated) = check(file, &cases);
    println!(
        "{file}: {overrides} cases expected per the apk-tools 2.14 column of \
         apk-version-dependent.tsv; {unvalidated} cases involve a version invalid under \
         apk-tools 2.x and were compared like `apk version -t`"
    );
    assert_all_pass(&[outcome]);
}

#[test]
fn osv_alpine_versions() {
    let file = "alpine-versions.txt";
    check_file(file, common::parse_s(file), 778, 20);
}

#[test]
fn osv_alpine_versions_generated() {
    let file = "alpine-versions-generated.txt";
    let cases = common::parse_s(file);
    check_file(file, cases, 13_979, 32);
}

/// The `version.data` line kinds (format A of the data README).
enum Line {
    Compare(Case),
    Fuzzy { line: usize, a: String, op: String, b: String },
    Validity { line: usize, version: String, valid: bool },
}

fn version_data() -> Vec<Line> {
    let text = read("version.data");
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = content.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [a, o @ ("<" | ">" | "="), b] => {
                out.push(Line::Compare(Case { line, a: (*a).to_owned(), b: (*b).to_owned(), expected: op(o) }))
            }
            [a, o @ ("~" | "<~" | ">~" | "!~"), b] => {
                out.push(Line::Fuzzy { line, a: (*a).to_owned(), op: (*o).to_owned(), b: (*b).to_owned() })
            }
            [v] => out.push(Line::Validity {
                line,
                version: v.strip_prefix('!').unwrap_or(v).to_owned(),
                valid: !v.starts_with('!'),
            }),
            _ => panic!("version.data:{line}: unrecognised line {raw:?}"),
        }
    }
    out
}

#[test]
fn apk_tools_version_data_comparisons() {
    let cases: Vec<Case> = version_data()
        .into_iter()
        .filter_map(|l| match l {
            Line::Compare(c) => Some(c),
            _ => None,
        })
        .collect();
    check_file("version.data", cases, 738, 5);
}

/// The 16 fuzzy lines (741-756) test apk-tools 3.x's `~` dependency
/// operator ("B is a version prefix of A"), which is a match predicate, not
/// an ordering, and which this crate does not implement. The two lines whose
/// operator also fixes the order (`<~`, `>~`) are checked as orderings; the
/// other 14 (`~`, `!~`) are counted as not applicable.
#[test]
fn version_data_fuzzy_lines() {
    let fuzzy: Vec<(usize, String, String, String)> = version_data()
        .into_iter()
        .filter_map(|l| match l {
            Line::Fuzzy { line, a, op, b } => Some((line, a, op, b)),
            _ => None,
        })
        .collect();
    assert_eq!(fuzzy.len(), 16, "version.data: fuzzy line count");
    let ordering_cases: Vec<Case> = fuzzy
        .iter()
        .filter_map(|(line, a, o, b)| {
            let expected = match o.as_str() {
                "<~" => Ordering::Less,
                ">~" => Ordering::Greater,
                _ => return None,
            };
            Some(Case { line: *line, a: a.clone(), b: b.clone(), expected })
        })
        .collect();
    assert_eq!(ordering_cases.len(), 2);
    let (outcome, _) = check("version.data (fuzzy lines as orderings)", &ordering_cases);
    println!(
        "version.data fuzzy lines: {} checked as orderings, {} not applicable (prefix match)",
        ordering_cases.len(),
        fuzzy.len() - ordering_cases.len()
    );
    assert_all_pass(&[outcome]);
}

/// The 31 validity lines (758-788) state apk-tools **3.x**'s validity rules.
/// [`ApkVersion::parse`] follows apk-tools 2.x `apk_version_validate`, which
/// differs on the lines listed here (worked out from the 2.14-stable
/// `src/version.c`; there is no 2.x binary to confirm them):
///
/// * `0.1_pre2~1234abcd`: 3.x added the `~hash` component; 2.x rejects `~`.
/// * `0.1a1`: 2.x allows digits after a letter (real Alpine versions such
///   as `5.7.1p1` rely on it); 3.x does not.
/// * `0.1-r`, `0.1_`: 2.x reads an empty number at the end as 0.
/// * `0.1-r2-r3`: 2.x only forbids going *back* in the grammar, and a second
///   revision is not a step back.
/// * `.1`, `a`, `_pre1`, `-r1`: 2.x reads an empty leading number as 0.
///
/// Every other line, including the empty version (line 764, `!`), must give
/// the 3.x answer.
#[test]
fn version_data_validity_lines() {
    let apk2_differs: [(&str, bool); 9] = [
        ("0.1_pre2~1234abcd", false),
        ("0.1a1", true),
        ("0.1-r", true),
        ("0.1_", true),
        ("0.1-r2-r3", true),
        (".1", true),
        ("a", true),
        ("_pre1", true),
        ("-r1", true),
    ];
    let lines: Vec<(usize, String, bool)> = version_data()
        .into_iter()
        .filter_map(|l| match l {
            Line::Validity { line, version, valid } => Some((line, version, valid)),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 31, "version.data: validity line count");
    assert_eq!(lines.iter().filter(|l| l.2).count(), 6, "valid lines");

    let mut failures = Vec::new();
    let mut differing_seen = 0;
    for (line, version, valid_in_3x) in &lines {
        let expected = match apk2_differs.iter().find(|(v, _)| v == version) {
            Some(&(_, apk2)) => {
                assert_ne!(apk2, *valid_in_3x, "listed line does not differ");
                differing_seen += 1;
                apk2
            }
            None => *valid_in_3x,
        };
        let got = ApkVersion::parse(version);
        if got.is_ok() != expected {
            failures.push(format!(
                "version.data:{line}: {version:?} expected {}, got {got:?}",
                if expected { "valid" } else { "invalid" }
            ));
        }
    }
    assert_eq!(differing_seen, apk2_differs.len(), "every listed line was found");
    println!(
        "version.data validity lines: {}/{} pass ({} with the apk-tools 2.x answer instead of 3.x)",
        lines.len() - failures.len(),
        lines.len(),
        differing_seen
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
