//! The advisory database through the CLI against a real server process: import of the real
//! OSV sample (twice: idempotent), a zip export made here with hostile and broken entries,
//! status counts, and `vulndb match` answers derived by hand from the records.

// Tests drive the real binaries.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_testkit::TestServer;
use serde_json::{Value, json};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flotilla-osv/tests/data/osv")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn counts(v: &Value) -> (u64, u64, u64, usize) {
    (
        v["new"].as_u64().expect("new"),
        v["updated"].as_u64().expect("updated"),
        v["unchanged"].as_u64().expect("unchanged"),
        v["rejected"].as_array().expect("rejected").len(),
    )
}

fn ids(rows: &Value) -> Vec<String> {
    rows.as_array().expect("rows").iter().map(|r| r["advisory_id"].as_str().expect("id").to_owned()).collect()
}

fn matches(server: &TestServer, eco: &str, package: &str, version: &str) -> Value {
    server
        .cli_json(&["vulndb", "match", "--ecosystem", eco, "--package", package, "--version", version])
        .expect("match")
}

fn record(id: &str, modified: &str, affected: Value) -> String {
    json!({"id": id, "modified": modified, "summary": format!("{id} test record"), "affected": affected}).to_string()
}

fn debian12_openssl(events: Value) -> Value {
    json!([{"package": {"ecosystem": "Debian:12", "name": "openssl"}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}])
}

/// A zip export like OSV.dev's `all.zip`, with good, broken and hostile entries.
fn make_zip(path: &Path) {
    let dsa: Value =
        serde_json::from_str(&std::fs::read_to_string(sample_dir().join("debian/DSA-3029-1.json")).expect("dsa"))
            .expect("json");
    // A newer DSA-3029-1 whose fix moved to +wheezy4: must replace the stored one.
    let mut newer = dsa.clone();
    newer["modified"] = json!("2015-01-01T00:00:00Z");
    newer["affected"][0]["ranges"][0]["events"][1]["fixed"] = json!("1.2.1-2.2+wheezy4");
    let file = std::fs::File::create(path).expect("zip file");
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut add = |name: &str, body: &[u8]| {
        zip.start_file(name, opts).expect("start");
        zip.write_all(body).expect("write");
    };
    add("DSA-3029-1.json", newer.to_string().as_bytes());
    add(
        "TEST-2024-1.json",
        record(
            "TEST-2024-1",
            "2024-01-01T00:00:00Z",
            debian12_openssl(json!([{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}])),
        )
        .as_bytes(),
    );
    add("malformed.json", b"{\"id\": \"BROKEN-1\", \"affected\": [");
    add(
        "unknown.json",
        record("UNKNOWN-1", "2024-01-01T00:00:00Z", json!([{"package": {"ecosystem": "npm", "name": "left-pad"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]))
            .as_bytes(),
    );
    add("empty.json", record("EMPTY-1", "2024-01-01T00:00:00Z", json!([])).as_bytes());
    add(
        "nointro.json",
        record("NOINTRO-1", "2024-01-01T00:00:00Z", debian12_openssl(json!([{"fixed": "3.0.11-1~deb12u2"}])))
            .as_bytes(),
    );
    add(
        "badversion.json",
        record(
            "BADVER-1",
            "2024-01-01T00:00:00Z",
            debian12_openssl(json!([{"introduced": "0"}, {"fixed": "3.0 beta!"}])),
        )
        .as_bytes(),
    );
    add(
        "../evil.json",
        record("EVIL-1", "2024-01-01T00:00:00Z", debian12_openssl(json!([{"introduced": "0"}]))).as_bytes(),
    );
    add("README.txt", b"not a record: ignored");
    // 33 MiB of spaces: a few KiB compressed, above the 32 MiB entry cap.
    zip.start_file("bomb.json", opts).expect("start");
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..33 {
        zip.write_all(&chunk).expect("write");
    }
    zip.finish().expect("finish");
}

#[test]
fn import_status_and_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");
    let sample = sample_dir();
    let sample = sample.to_str().expect("utf-8 path");

    // The real sample: 23 records (README.md is skipped), all new; again: all unchanged.
    let first = server.cli_json(&["vulndb", "import", sample]).expect("import");
    assert_eq!(counts(&first), (23, 0, 0, 0), "{first}");
    let again = server.cli_json(&["vulndb", "import", sample]).expect("import again");
    assert_eq!(counts(&again), (0, 0, 23, 0), "{again}");

    let status = server.cli_json(&["vulndb", "status"]).expect("status");
    assert_eq!(status["advisories"], 23);
    let per: Vec<(String, u64)> = status["ecosystems"]
        .as_array()
        .expect("ecosystems")
        .iter()
        .map(|e| (e["ecosystem"].as_str().expect("name").to_owned(), e["advisories"].as_u64().expect("n")))
        .collect();
    for (eco, n) in [
        ("Debian:9", 4),             // DLA-3008-1, DLA-3012-1, DLA-3022-1, DLA-3051-1
        ("Debian:7", 1),             // DSA-3029-1
        ("AlmaLinux:9", 8),          // every ALSA in almalinux9
        ("AlmaLinux:8", 2),          // ALSA-2022:1988, ALSA-2023:0284
        ("Ubuntu:22.04:LTS", 4),     // 2016-2781, 2022-0778, 2024-6387, USN-6859-1
        ("Alpine:v3.16", 2),         // ALPINE-CVE-2025-26519, CVE-2022-27449
        ("Ubuntu:Pro:14.04:LTS", 4), // 2016-2781, 2021-3156, 2022-0778, 2025-38094
    ] {
        assert!(per.contains(&(eco.to_string(), n)), "{eco}: {n} expected in {per:?}");
    }
    // ALPINE-CVE-2025-26519 has the latest `modified` (2026-07-08).
    assert_eq!(status["newest"]["id"], "ALPINE-CVE-2025-26519");
    let table = server.cli(&["vulndb", "status"]).expect("status table");
    assert!(String::from_utf8_lossy(&table.stdout).contains("total 23 advisories"));

    // Real cases (why: the record's range for that ecosystem and package).
    // DLA-3008-1: Debian:9 openssl fixed 1.1.0l-1~deb9u6.
    let rows = matches(&server, "Debian:9", "openssl", "1.1.0l-1~deb9u5");
    assert_eq!(ids(&rows), ["DLA-3008-1"]);
    assert_eq!(rows[0]["fixed_version"], "1.1.0l-1~deb9u6");
    assert_eq!(rows[0]["aliases"], json!(["CVE-2022-1292", "DEBIAN-CVE-2022-1292"]));
    // Both the CVE record (priority high) and the notice (unrated: Medium) name openssh on 22.04.
    let rows = matches(&server, "Ubuntu:22.04:LTS", "openssh", "1:8.9p1-3ubuntu0.6");
    assert_eq!(ids(&rows), ["UBUNTU-CVE-2024-6387", "USN-6859-1"]);
    assert_eq!((rows[0]["severity"].as_str(), rows[1]["severity"].as_str()), (Some("High"), Some("Medium")));
    // At the fix: nothing.
    assert_eq!(ids(&matches(&server, "Ubuntu:22.04:LTS", "openssh", "1:8.9p1-3ubuntu0.10")), Vec::<String>::new());
    // UBUNTU-CVE-2016-2781: unfixed, so fixed_version is null.
    let rows = matches(&server, "Ubuntu:22.04:LTS", "coreutils", "8.32-4.1ubuntu1.2");
    assert_eq!((ids(&rows), rows[0]["fixed_version"].clone()), (vec!["UBUNTU-CVE-2016-2781".to_string()], Value::Null));
    // openssl twice in Ubuntu:Pro:FIPS:16.04:LTS (fips unfixed, fips-updates fixed): one row.
    let rows = matches(&server, "Ubuntu:Pro:FIPS:16.04:LTS", "openssl", "1.0.2g-1ubuntu4.fips.4.6.3");
    assert_eq!(ids(&rows), ["UBUNTU-CVE-2022-0778"]);
    // Base-stream nginx: ALSA-2023:5711 only, never the module-stream ALSA-2025:3261.
    assert_eq!(ids(&matches(&server, "AlmaLinux:9", "nginx", "1:1.20.1-13.el9")), ["ALSA-2023:5711"]);
    // Module-stream nginx: ALSA-2025:3261 only.
    assert_eq!(
        ids(&matches(&server, "AlmaLinux:9", "nginx", "1:1.22.1-4.module_el9.3.0+58+ab12cd34.alma.1")),
        ["ALSA-2025:3261"]
    );
    // ALPINE-CVE-2025-26519 on v3.19 is fixed in 1.2.4_git20230717-r5.
    assert_eq!(ids(&matches(&server, "Alpine:v3.19", "musl", "1.2.4_git20230717-r4")), ["ALPINE-CVE-2025-26519"]);
    assert_eq!(ids(&matches(&server, "Alpine:v3.19", "musl", "1.2.4_git20230717-r5")), Vec::<String>::new());
    // DSA-3029-1 as first imported: fixed in +wheezy3.
    assert_eq!(ids(&matches(&server, "Debian:7", "nginx", "1.2.1-2.2+wheezy3")), Vec::<String>::new());

    // A zip export: two good records (one newer DSA-3029-1), six rejected alone, README ignored.
    let zip_path = dir.path().join("all.zip");
    make_zip(&zip_path);
    let out = server.cli_json(&["vulndb", "import", zip_path.to_str().expect("path")]).expect("zip import");
    assert_eq!(counts(&out), (1, 1, 0, 7), "{out}");
    let reasons: Vec<(String, String)> = out["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| (r["source"].as_str().expect("source").to_owned(), r["reason"].as_str().expect("reason").to_owned()))
        .collect();
    let reason = |entry: &str| -> String {
        reasons
            .iter()
            .find(|(s, _)| s.ends_with(&format!(":{entry}")))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{entry} rejected in {reasons:?}"))
    };
    assert!(reason("malformed.json").contains("malformed JSON"), "{reasons:?}");
    assert!(reason("unknown.json").contains("unknown OSV ecosystem \"npm\""), "{reasons:?}");
    assert!(reason("empty.json").contains("`affected` is empty"), "{reasons:?}");
    assert!(reason("nointro.json").contains("no `introduced`"), "{reasons:?}");
    assert!(reason("badversion.json").contains("invalid dpkg version \"3.0 beta!\""), "{reasons:?}");
    assert!(reason("../evil.json").contains("path traversal"), "{reasons:?}");
    assert!(reason("bomb.json").contains("zip bomb"), "{reasons:?}");
    let rejected_ids: Vec<Option<&str>> =
        out["rejected"].as_array().expect("r").iter().map(|r| r["id"].as_str()).collect();
    assert!(rejected_ids.contains(&Some("BADVER-1")), "the id is reported when known: {rejected_ids:?}");

    // The CLI.md example: our synthetic Debian 12 record (fixed 3.0.11-1~deb12u2) affects deb12u1.
    let rows = matches(&server, "Debian:12", "openssl", "3.0.11-1~deb12u1");
    assert_eq!(ids(&rows), ["TEST-2024-1"]);
    assert_eq!(
        (rows[0]["fixed_version"].as_str(), rows[0]["severity"].as_str()),
        (Some("3.0.11-1~deb12u2"), Some("Medium"))
    );
    // The newer DSA-3029-1 replaced the old one: +wheezy3 is now affected, fixed in +wheezy4.
    let rows = matches(&server, "Debian:7", "nginx", "1.2.1-2.2+wheezy3");
    assert_eq!(
        (ids(&rows), rows[0]["fixed_version"].as_str()),
        (vec!["DSA-3029-1".to_string()], Some("1.2.1-2.2+wheezy4"))
    );
    // The same zip again: all unchanged, the same rejections.
    let out = server.cli_json(&["vulndb", "import", zip_path.to_str().expect("path")]).expect("zip again");
    assert_eq!(counts(&out), (0, 0, 2, 7), "{out}");
    assert_eq!(server.cli_json(&["vulndb", "status"]).expect("status")["advisories"], 24, "23 + TEST-2024-1");

    // Table output names each rejection with its reason.
    let out = server.cli(&["vulndb", "import", zip_path.to_str().expect("path")]).expect("table");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("new 0  updated 0  unchanged 2  rejected 7"), "{text}");
    assert!(text.contains("rejected ") && text.contains("(BADVER-1)"), "{text}");

    // A directory of 300 records of about 20 KiB each (6 MiB): streamed in several batches,
    // each bigger than axum's default 2 MB body limit.
    let many = dir.path().join("many/nested");
    std::fs::create_dir_all(&many).expect("dir");
    let padding = "x".repeat(20 * 1024);
    for i in 0..300 {
        let mut r: Value = serde_json::from_str(&record(
            &format!("BULK-{i}"),
            "2024-01-01T00:00:00Z",
            debian12_openssl(json!([{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}])),
        ))
        .expect("json");
        r["details"] = json!(padding);
        std::fs::write(many.join(format!("BULK-{i}.json")), r.to_string()).expect("write");
    }
    let out = server.cli_json(&["vulndb", "import", dir.path().join("many").to_str().expect("path")]).expect("bulk");
    assert_eq!(counts(&out), (300, 0, 0, 0), "{out}");
    assert_eq!(matches(&server, "Debian:12", "openssl", "3.0.11-1~deb12u1").as_array().map(Vec::len), Some(301));

    // Bad queries are one-line errors.
    let out = server
        .cli(&["vulndb", "match", "--ecosystem", "Debian:12", "--package", "openssl", "--version", "not a version"])
        .expect("bad version");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid dpkg version"), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1);
    let out = server
        .cli(&["vulndb", "match", "--ecosystem", "Debian", "--package", "openssl", "--version", "1.0-1"])
        .expect("bad ecosystem");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown OSV ecosystem"), "{}", stderr(&out));
    let out = server.cli(&["vulndb", "import", "/nonexistent/osv"]).expect("missing path");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}
