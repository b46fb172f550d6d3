//! Readers for the reference data in `tests/data/` and a checker that runs
//! every case in both directions.
//!
//! Invariants: a reader never skips a line silently. It only drops what the
//! data's README defines as a comment or blank line; anything else that does
//! not fit the file's format fails the test, and each test also pins the
//! exact number of cases per file so a format drift cannot shrink coverage.

// Each integration test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::cmp::Ordering;
use std::path::PathBuf;

/// One expected comparison from a reference file.
#[derive(Debug, Clone)]
pub struct Case {
    /// 1-based line number in the file.
    pub line: usize,
    pub a: String,
    pub b: String,
    pub expected: Ordering,
}

pub fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn op(s: &str) -> Ordering {
    match s {
        "<" => Ordering::Less,
        "=" => Ordering::Equal,
        ">" => Ordering::Greater,
        _ => panic!("unknown comparison operator {s:?}"),
    }
}

fn triple_result(s: &str) -> Ordering {
    match s {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        _ => panic!("unknown result {s:?}"),
    }
}

pub fn op_str(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// Format S (osv-scalibr style): `A OP B`, exactly three fields split on
/// single spaces; blank lines and lines starting with `# ` or `// ` skipped.
pub fn parse_s(name: &str) -> Vec<Case> {
    let text = read(name);
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with("# ") || line.starts_with("// ") {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let [a, o, b] = fields.as_slice() else {
            panic!("{name}:{}: not `A OP B`: {line:?}", i + 1);
        };
        cases.push(Case { line: i + 1, a: (*a).to_owned(), b: (*b).to_owned(), expected: op(o) });
    }
    cases
}

/// Format T: `A B R`, whitespace separated, R in -1/0/1. With
/// `hash_comments`, `#` starts a comment anywhere on the line (versions.lst).
pub fn parse_triples(name: &str, hash_comments: bool) -> Vec<Case> {
    let text = read(name);
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = if hash_comments { line.split('#').next().unwrap_or_default() } else { line };
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [a, b, r] => {
                cases.push(Case { line: i + 1, a: (*a).to_owned(), b: (*b).to_owned(), expected: triple_result(r) })
            }
            _ => panic!("{name}:{}: not `A B R`: {line:?}", i + 1),
        }
    }
    cases
}

/// Format M: only lines that are exactly `RPMVERCMP(A, B, R)`.
pub fn parse_rpmvercmp_at(name: &str) -> Vec<Case> {
    let text = read(name);
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(args) = line.strip_prefix("RPMVERCMP(").and_then(|l| l.strip_suffix(')')) else {
            continue;
        };
        let fields: Vec<&str> = args.split(", ").collect();
        let [a, b, r] = fields.as_slice() else {
            panic!("{name}:{}: not RPMVERCMP(A, B, R): {line:?}", i + 1);
        };
        cases.push(Case { line: i + 1, a: (*a).to_owned(), b: (*b).to_owned(), expected: triple_result(r) });
    }
    cases
}

/// Tab-separated rows (`# ` lines are comments); fields may be empty.
pub fn tsv_rows(name: &str) -> Vec<(usize, Vec<String>)> {
    read(name)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with("# "))
        .map(|(i, l)| (i + 1, l.split('\t').map(str::to_owned).collect()))
        .collect()
}

/// `A<TAB>OP<TAB>B` rows.
pub fn parse_tsv_cases(name: &str) -> Vec<Case> {
    tsv_rows(name)
        .into_iter()
        .map(|(line, fields)| {
            let [a, o, b] = fields.as_slice() else {
                panic!("{name}:{line}: not A<TAB>OP<TAB>B: {fields:?}");
            };
            Case { line, a: a.clone(), b: b.clone(), expected: op(o) }
        })
        .collect()
}

/// Result of running one file's cases.
pub struct Outcome {
    pub file: String,
    pub total: usize,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> usize {
        self.total - self.failures.len()
    }
}

/// Runs every case through `cmp` as `cmp(a, b)` and `cmp(b, a)`; a case
/// passes only if both directions give the expected answer.
pub fn run(file: &str, cases: &[Case], cmp: impl Fn(&str, &str) -> Result<Ordering, String>) -> Outcome {
    let mut failures = Vec::new();
    for c in cases {
        let forward = cmp(&c.a, &c.b);
        let backward = cmp(&c.b, &c.a);
        let ok = forward.as_ref().ok() == Some(&c.expected) && backward.as_ref().ok() == Some(&c.expected.reverse());
        if !ok {
            failures.push(format!(
                "{file}:{}: expected {:?} {} {:?}, got forward {:?}, backward {:?}",
                c.line,
                c.a,
                op_str(c.expected),
                c.b,
                forward.map(op_str),
                backward.map(op_str),
            ));
        }
    }
    Outcome { file: file.to_owned(), total: cases.len(), failures }
}

/// Prints one summary line per file (visible with `--nocapture`) and fails
/// with every failing case listed.
pub fn assert_all_pass(outcomes: &[Outcome]) {
    let mut all = Vec::new();
    for o in outcomes {
        println!("{}: {}/{} cases pass", o.file, o.passed(), o.total);
        all.extend(o.failures.iter().cloned());
    }
    assert!(all.is_empty(), "{} reference cases failed:\n{}", all.len(), all.join("\n"));
}
