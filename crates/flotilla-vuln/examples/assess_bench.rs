//! Benchmark (not a test) of CVE matching alone: N synthetic Debian 12 nodes × P packages each
//! against a synthetic advisory set, in memory, as the server's assessment does it per node
//! (prepare, look up the node's (ecosystem, package) pairs in an index, assess).
//!
//! Run: `cargo run --release -p flotilla-vuln --example assess_bench -- 10000 1000 60000`
//! (nodes, packages per node, advisories). Prints wall time, findings and peak RSS.

use std::collections::HashMap;
use std::time::Instant;

use flotilla_vuln::{
    Advisory, Affected, CompiledAdvisory, Event, EventKind, InstalledPackage, OsFacts, PreparedNode, Range, RangeKind,
    SeverityEntry,
};

/// A small deterministic generator (no dependency; reproducible runs).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PACKAGE_POOL: u64 = 30_000;

/// A version with major `base..base+5`: advisories fix at majors 0..5 and nodes run 2..7, so
/// about one installed package in six is behind a fix (an old, unpatched fleet).
fn version(rng: &mut Lcg, base: u64) -> String {
    format!("{}.{}.{}-{}+deb12u{}", base + rng.below(5), rng.below(20), rng.below(30), rng.below(4) + 1, rng.below(6))
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let nodes = args.first().copied().unwrap_or(10_000);
    let per_node = args.get(1).copied().unwrap_or(1_000);
    let advisories = args.get(2).copied().unwrap_or(60_000);
    let mut rng = Lcg(42);

    let started = Instant::now();
    let mut set: Vec<CompiledAdvisory> = Vec::new();
    for i in 0..advisories {
        let package = format!("pkg{}", rng.below(PACKAGE_POOL));
        let fixed = version(&mut rng, 0);
        let advisory = Advisory {
            id: format!("DEBIAN-CVE-2024-{i:05}"),
            modified: "2024-01-01T00:00:00Z".into(),
            upstream: vec![format!("CVE-2024-{i:05}")],
            severity: vec![SeverityEntry {
                kind: "CVSS_V3".into(),
                score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
            }],
            affected: vec![Affected {
                ecosystem: "Debian:12".into(),
                package,
                ranges: vec![Range {
                    kind: RangeKind::Ecosystem,
                    events: vec![Event::new(EventKind::Introduced, "0"), Event::new(EventKind::Fixed, fixed)],
                }],
                ..Affected::default()
            }],
            ..Advisory::default()
        };
        match advisory.compile() {
            Ok(c) => set.push(c),
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    let mut index: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, adv) in set.iter().enumerate() {
        for a in &adv.affected {
            index.entry((a.ecosystem.key().to_owned(), a.package.clone())).or_default().push(i);
        }
    }
    let built = started.elapsed();

    let os = OsFacts { id: "debian".into(), version_id: "12".into(), kernel_release: Some("6.1.0-18-amd64".into()) };
    let started = Instant::now();
    let (mut findings, mut errors) = (0usize, 0usize);
    for _ in 0..nodes {
        let packages: Vec<InstalledPackage> = (0..per_node)
            .map(|_| InstalledPackage {
                name: format!("pkg{}", rng.below(PACKAGE_POOL)),
                version: version(&mut rng, 2),
                arch: "amd64".into(),
                package_manager: "dpkg".into(),
                ..InstalledPackage::default()
            })
            .collect();
        let Some(node) = PreparedNode::new(&os, &packages) else { continue };
        let relevant = node.lookups().into_iter().filter_map(|k| index.get(&k)).flatten().filter_map(|&i| set.get(i));
        let report = node.assess(relevant);
        findings += report.findings.len();
        errors += report.errors.len();
    }
    let elapsed = started.elapsed();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "advisories {} (built and indexed in {:.2?}); nodes {nodes} x {per_node} packages assessed in {:.2?} \
         ({:.0} nodes/s); findings {findings}; item errors {errors}; peak RSS {peak}",
        set.len(),
        built,
        elapsed,
        nodes as f64 / elapsed.as_secs_f64()
    );
}
