//! Parameter Store, key service and encryption at rest, end to end with the real server and
//! agent on SQLite and PostgreSQL: bad input, versions and labels, `{{param:...}}` reaching a
//! node, no plaintext in the database files/tables or the artifact directory, rotation,
//! tampering, and start-up with a wrong or missing master key.

// Tests drive the real binaries and the database shells.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_testkit::postgres::TempDatabase;
use flotilla_testkit::{Agent, TestServer, bin_path, wait_until, write_root};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

fn fails(server: &TestServer, args: &[&str]) -> String {
    let out = server.cli(args).expect("cli");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(
        !out.status.success(),
        "flotilla {} should fail; stdout {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    format!("{tag}{}x{nanos}", std::process::id())
}

fn enroll_one(server: &TestServer, dir: &Path) -> (Agent, String) {
    let act = server.cli_json(&["activations", "create", "--limit", "1"]).expect("activation");
    let agent_dir = dir.join("node-0");
    write_root(&agent_dir.join("root"), DEBIAN, "node-0").expect("root");
    let (mut agent, out) =
        Agent::enroll(server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("register");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    agent.start().expect("start");
    wait_until(Duration::from_secs(20), || {
        Ok(server.cli_json(&["nodes", "ls"])?.as_array().is_some_and(|a| a.iter().any(|n| n["status"] == "Online")))
    })
    .expect("online");
    (agent, id)
}

fn run(server: &TestServer, commands: &[&str]) -> Value {
    let mut args = vec!["run", "Flotilla-RunShellScript"];
    for c in commands {
        args.extend(["--param", c]);
    }
    args.extend(["--target", "all", "--wait", "--timeout", "60"]);
    let out = server.cli(&[args.as_slice(), &["-o", "json"]].concat()).expect("run");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("run printed no JSON: {}", String::from_utf8_lossy(&out.stderr)))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Where the test reads and edits the database behind the server's back.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    fn sql(&self, sql: &str) -> String {
        let out = match self {
            Db::Sqlite(path) => Command::new("sqlite3").arg(path).arg(sql).output().expect("sqlite3"),
            Db::Postgres(url) => Command::new("psql").args([url.as_str(), "-At", "-c", sql]).output().expect("psql"),
        };
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Every byte the database holds for its tables.
    fn raw_bytes(&self) -> Vec<u8> {
        match self {
            Db::Sqlite(path) => {
                self.sql("PRAGMA wal_checkpoint(TRUNCATE);");
                let mut bytes = std::fs::read(path).expect("db file");
                for ext in ["db-wal", "db-shm"] {
                    bytes.extend(std::fs::read(path.with_extension(ext)).unwrap_or_default());
                }
                bytes
            }
            Db::Postgres(url) => {
                let out = Command::new("pg_dump").args(["--data-only", url.as_str()]).output().expect("pg_dump");
                assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
                out.stdout
            }
        }
    }
}

#[test]
fn parameters_bad_input_versions_labels_and_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("server"), "1s", &[]).expect("server");

    let deep = "/a".repeat(16);
    let long = format!("/{}", "x".repeat(1011));
    for (name, why) in [
        ("app/x", "does not start with `/`"),
        ("/a//b", "`//`"),
        (deep.as_str(), "16 levels"),
        ("/a b", "not allowed"),
        ("/a$b", "not allowed"),
        (long.as_str(), "over the limit of 1011"),
    ] {
        let err = fails(&server, &["params", "put", name, "v"]);
        assert!(err.contains(why), "{name}: {err}");
    }
    let big = "x".repeat(4097);
    let err = fails(&server, &["params", "put", "/app/big", &big]);
    assert!(err.contains("4096") && err.contains("--tier Advanced"), "{err}");
    server.cli_json(&["params", "put", "/app/big", &big, "--tier", "Advanced"]).expect("advanced fits");
    let err = fails(&server, &["params", "put", "/app/bigger", &"x".repeat(8193), "--tier", "Advanced"]);
    assert!(err.contains("8192"), "{err}");
    let err = fails(&server, &["params", "put", "/app/t", "v", "--type", "Secret"]);
    assert!(err.contains("String, StringList or SecureString"), "{err}");

    let p = server.cli_json(&["params", "put", "/app/db/host", "db1", "--description", "primary"]).expect("put");
    assert_eq!(
        (p["name"].as_str(), p["version"].as_i64(), p["type"].as_str()),
        (Some("/app/db/host"), Some(1), Some("String"))
    );
    let err = fails(&server, &["params", "put", "/app/db/host", "db2"]);
    assert!(err.contains("already exists") && err.contains("--overwrite"), "{err}");
    let p = server.cli_json(&["params", "put", "/app/db/host", "db2", "--overwrite"]).expect("overwrite");
    assert_eq!(p["version"], 2);
    let p = server.cli_json(&["params", "get", "/app/db/host"]).expect("get");
    assert_eq!((p["value"].as_str(), p["version"].as_i64()), (Some("db2"), Some(2)));
    assert!(p["last_modified"].as_str().is_some_and(|t| t.ends_with('Z')), "{p}");
    assert_eq!(server.cli_json(&["params", "get", "/app/db/host", "--version", "1"]).expect("v1")["value"], "db1");

    let err = fails(&server, &["params", "get", "/app/db/host", "--version", "9"]);
    assert!(err.contains("no version 9") && err.contains("latest is 2"), "{err}");
    let err = fails(&server, &["params", "get", "/app/db/host", "--label", "nope"]);
    assert!(err.contains("no label `nope`"), "{err}");
    let err = fails(&server, &["params", "get", "/app/none"]);
    assert!(err.contains("no parameter `/app/none`"), "{err}");
    let err = fails(&server, &["params", "label", "/app/db/host", "7", "prod"]);
    assert!(err.contains("no version 7"), "{err}");
    let err = fails(&server, &["params", "label", "/app/db/host", "1", "1st"]);
    assert!(err.contains("starts with a digit"), "{err}");

    // Labels: put, read by label, move.
    server.cli_json(&["params", "label", "/app/db/host", "1", "prod", "stable"]).expect("label");
    assert_eq!(server.cli_json(&["params", "get", "/app/db/host", "--label", "prod"]).expect("get")["value"], "db1");
    server.cli_json(&["params", "label", "/app/db/host", "2", "prod"]).expect("move");
    assert_eq!(server.cli_json(&["params", "get", "/app/db/host", "--label", "prod"]).expect("get")["value"], "db2");
    let history = server.cli_json(&["params", "history", "/app/db/host"]).expect("history");
    let labels: Vec<Value> = history.as_array().expect("list").iter().map(|v| v["labels"].clone()).collect();
    assert_eq!(labels, vec![serde_json::json!(["stable"]), serde_json::json!(["prod"])]);

    // StringList, SecureString (hidden unless decrypted), listing one level or recursively.
    server.cli_json(&["params", "put", "/app/hosts", "a,b,c", "--type", "StringList"]).expect("list");
    server.cli_json(&["params", "put", "/app/db/password", "pw-1", "--type", "SecureString"]).expect("secure");
    let p = server.cli_json(&["params", "get", "/app/db/password"]).expect("get");
    assert_eq!((p["type"].as_str(), &p["value"]), (Some("SecureString"), &Value::Null));
    assert_eq!(server.cli_json(&["params", "get", "/app/db/password", "--decrypt"]).expect("get")["value"], "pw-1");
    let names = |v: Value| -> Vec<String> {
        v.as_array().expect("list").iter().map(|p| p["name"].as_str().unwrap_or("").to_owned()).collect()
    };
    assert_eq!(
        names(server.cli_json(&["params", "ls", "--path", "/app"]).expect("ls")),
        vec!["/app/big", "/app/hosts"]
    );
    assert_eq!(
        names(server.cli_json(&["params", "ls", "--path", "/app", "--recursive"]).expect("ls")),
        vec!["/app/big", "/app/db/host", "/app/db/password", "/app/hosts"]
    );
    let table = server.cli(&["params", "ls", "--recursive"]).expect("table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("(encrypted: add --decrypt)") && !text.contains("pw-1"), "{text}");

    server.cli(&["params", "rm", "/app/db/host"]).expect("rm");
    let err = fails(&server, &["params", "get", "/app/db/host"]);
    assert!(err.contains("no parameter"), "{err}");
    let err = fails(&server, &["params", "rm", "/app/db/host"]);
    assert!(err.contains("no parameter"), "{err}");

    // Changes are events with the name and version, never the value.
    let events = server.cli_json(&["events", "ls"]).expect("events");
    let changes: Vec<(String, String)> = events
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["type"] == "Parameter.Changed")
        .map(|e| {
            let d = &e["detail"];
            (d["name"].as_str().unwrap_or("").to_owned(), d["operation"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    for want in
        [("/app/db/host", "Create"), ("/app/db/host", "Update"), ("/app/db/host", "Label"), ("/app/db/host", "Delete")]
    {
        assert!(changes.contains(&(want.0.to_owned(), want.1.to_owned())), "{want:?} in {changes:?}");
    }
    assert!(!events.to_string().contains("pw-1"), "no value in events");
}

/// The done-when test on one engine: a SecureString reaches the node through `{{param:...}}`,
/// the command record does not hold it, no plaintext secret is in the database, no plaintext
/// artifact is in the artifact directory, rotation keeps old data readable, and tampering with
/// the database row or the artifact file is detected and never returned.
fn secrets_at_rest(db_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let env: Vec<(&str, &str)> = db_url.map(|u| vec![("FLOTILLA_DATABASE_URL", u)]).unwrap_or_default();
    let mut server = TestServer::start(&data, "1s", &env).expect("server");
    let db = match db_url {
        Some(url) => Db::Postgres(url.to_owned()),
        None => Db::Sqlite(data.join("flotilla.db")),
    };
    let (_agent, node) = enroll_one(&server, dir.path());

    let secret = unique("lowercase-secret-");
    let marker = unique("ARTIFACT-MARKER-");
    server.cli_json(&["params", "put", "/app/secret", &secret, "--type", "SecureString"]).expect("put");
    server.cli_json(&["params", "put", "/app/other", &unique("other-"), "--type", "SecureString"]).expect("put");
    server.cli_json(&["params", "put", "/app/plain", "plain-value"]).expect("put");

    // The node gets the value; the script prints it transformed, so the stored output does not
    // hold the secret itself, while proving it arrived.
    let cmd = run(
        &server,
        &[
            "commands=printf '%s\\n' {{param:/app/secret}} | tr a-z A-Z",
            "commands=echo \"plain={{param:/app/plain}}\"",
            &format!("commands=echo {marker}"),
            // Past the inline limit (24,000 characters), so the stdout is an artifact: a small
            // output lives in the invocation row alone.
            "commands=head -c 30000 /dev/zero | tr '\\0' x; echo",
        ],
    );
    assert_eq!(cmd["status"], "Success", "{cmd}");
    let id = cmd["id"].as_str().expect("id").to_owned();
    let out = server.cli(&["commands", "output", &id, "--node", &node, "--full"]).expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains(&secret.to_uppercase()), "the secret reached the node: {stdout}");
    assert!(stdout.contains("plain=plain-value") && stdout.contains(&marker), "{stdout}");
    let shown = server.cli(&["commands", "show", &id, "-o", "json"]).expect("show");
    let record = String::from_utf8_lossy(&shown.stdout);
    assert!(!record.contains(&secret), "the command as shown does not hold the secret");
    let stored = db.sql(&format!("SELECT parameters || plan FROM commands WHERE id = '{id}'"));
    assert!(
        stored.contains("{{param:/app/secret}}") && !stored.contains(&secret),
        "the record keeps the reference only"
    );

    // An unknown parameter fails the invocation with a clear detail; nothing runs.
    let bad = run(&server, &["commands=echo {{param:/app/missing}}"]);
    assert_eq!(bad["status"], "Failed", "{bad}");
    let detail = bad["invocations"][0]["detail"].as_str().unwrap_or("").to_owned();
    assert!(detail.contains("/app/missing") && detail.contains("no parameter"), "{bad}");

    // A malformed reference is refused when the command is created; nothing is stored.
    let err = fails(
        &server,
        &["run", "Flotilla-RunShellScript", "--param", "commands=echo {{param:/app/secret", "--target", "all"],
    );
    assert!(err.contains("no closing"), "{err}");
    let err = fails(
        &server,
        &["run", "Flotilla-RunShellScript", "--param", "commands=echo {{param:app}}", "--target", "all"],
    );
    assert!(err.contains("not a parameter reference") && err.contains("does not start with `/`"), "{err}");

    // Rotation: new writes use version 2, version-1 data stays readable.
    let keys = server.cli_json(&["keys", "ls"]).expect("keys");
    assert_eq!(keys.as_array().map(Vec::len), Some(1));
    let keyring = std::fs::read_to_string(data.join("master.key")).expect("key");
    let material: Vec<&str> = keyring
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().find(|f| f.len() == 64))
        .collect();
    assert_eq!(material.len(), 1, "{keyring}");
    assert!(!keys.to_string().contains(material[0]), "keys ls never shows key material");
    let rotated = server.cli_json(&["keys", "rotate"]).expect("rotate");
    assert_eq!((rotated["version"].as_u64(), rotated["current"].as_bool()), (Some(2), Some(true)));
    let secret2 = unique("second-secret-");
    server
        .cli_json(&["params", "put", "/app/secret", &secret2, "--overwrite"])
        .expect("v2 keeps the SecureString type");
    let v1 = server.cli_json(&["params", "get", "/app/secret", "--version", "1", "--decrypt"]).expect("v1");
    assert_eq!(v1["value"].as_str(), Some(secret.as_str()));
    let v2 = server.cli_json(&["params", "get", "/app/secret", "--decrypt"]).expect("v2");
    assert_eq!((v2["value"].as_str(), v2["version"].as_i64()), (Some(secret2.as_str()), Some(2)));
    assert_eq!(server.cli_json(&["keys", "ls"]).expect("keys").as_array().map(Vec::len), Some(2));
    // A restart keeps both versions usable, and old artifacts readable.
    server.restart().expect("restart");
    let again = server.cli(&["commands", "output", &id, "--node", &node, "--full"]).expect("output");
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);
    assert_eq!(
        server.cli_json(&["params", "get", "/app/secret", "--version", "1", "--decrypt"]).expect("v1")["value"]
            .as_str(),
        Some(secret.as_str())
    );

    // Grep the bytes: no SecureString plaintext in the database, none anywhere in the artifact
    // directory, and no artifact plaintext there either.
    let raw = db.raw_bytes();
    assert!(contains(&raw, "plain-value"), "the check can see plain values in the database");
    for s in [&secret, &secret2] {
        assert!(!contains(&raw, s), "SecureString plaintext in the database");
    }
    let artifacts = files_under(&data.join("artifacts"));
    // The enrollment record and the stdout (an empty stderr has no artifact).
    assert!(artifacts.len() >= 2, "{artifacts:?}");
    for file in &artifacts {
        let bytes = std::fs::read(file).expect("read");
        for needle in [secret.as_str(), secret2.as_str(), marker.as_str(), "plain=plain-value"] {
            assert!(!contains(&bytes, needle), "{needle} in {}", file.display());
        }
    }
    assert!(!server.log_text().contains(&secret), "the server log never holds the secret");

    // Tampering with the database: a flipped character, then a valid ciphertext copied from
    // another parameter. Both detected, reported, never returned.
    let original = db.sql("SELECT value FROM parameter_versions WHERE name = '/app/secret' AND version = 1");
    let flipped = format!("{}{}{}", &original[..40], if &original[40..41] == "A" { "B" } else { "A" }, &original[41..]);
    db.sql(&format!("UPDATE parameter_versions SET value = '{flipped}' WHERE name = '/app/secret' AND version = 1"));
    let err = fails(&server, &["params", "get", "/app/secret", "--version", "1", "--decrypt"]);
    assert!(err.contains("integrity check") && !err.contains(&secret), "{err}");
    db.sql(
        "UPDATE parameter_versions SET value = (SELECT value FROM parameter_versions WHERE name = '/app/other' AND version = 1) \
         WHERE name = '/app/secret' AND version = 1",
    );
    let err = fails(&server, &["params", "get", "/app/secret", "--version", "1", "--decrypt"]);
    assert!(err.contains("integrity check"), "{err}");
    // Copied onto another version of the same parameter: also refused.
    let original2 = db.sql("SELECT value FROM parameter_versions WHERE name = '/app/secret' AND version = 2");
    db.sql(&format!("UPDATE parameter_versions SET value = '{original}' WHERE name = '/app/secret' AND version = 2"));
    let err = fails(&server, &["params", "get", "/app/secret", "--decrypt"]);
    assert!(err.contains("integrity check"), "{err}");
    db.sql(&format!("UPDATE parameter_versions SET value = '{original2}' WHERE name = '/app/secret' AND version = 2"));
    db.sql(&format!("UPDATE parameter_versions SET value = '{original}' WHERE name = '/app/secret' AND version = 1"));
    assert_eq!(
        server.cli_json(&["params", "get", "/app/secret", "--version", "1", "--decrypt"]).expect("restored")["value"]
            .as_str(),
        Some(secret.as_str())
    );

    // Tampering with the artifact directory: a flipped byte, then another object copied over.
    let stdout_path = data.join("artifacts/commands").join(&id).join(&node).join("stdout");
    let other_path = data.join("artifacts/nodes").join(&node).join("enrollment.json");
    let good = std::fs::read(&stdout_path).expect("artifact");
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&stdout_path, &bad).expect("write");
    let err = fails(&server, &["commands", "output", &id, "--node", &node, "--full"]);
    assert!(err.contains("integrity check") && !err.contains(&marker), "{err}");
    std::fs::copy(&other_path, &stdout_path).expect("copy");
    let err = fails(&server, &["commands", "output", &id, "--node", &node, "--full"]);
    assert!(err.contains("integrity check"), "{err}");
    std::fs::write(&stdout_path, &good).expect("restore");
    assert!(server.cli(&["commands", "output", &id, "--node", &node, "--full"]).expect("ok").status.success());

    // Start-up with a wrong key or without the key: refused with a clear error.
    server.kill();
    let key_path = data.join("master.key");
    let key = std::fs::read(&key_path).expect("key");
    let start = |extra: &[(&str, &str)]| {
        let mut c = Command::new(bin_path("flotilla"));
        c.args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data);
        for (k, v) in env.iter().chain(extra) {
            c.env(k, v);
        }
        c.output().expect("run server")
    };
    std::fs::write(&key_path, format!("{}\n", "ab".repeat(32))).expect("wrong key");
    let out = start(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("different master key") && err.contains("restore"), "{err}");
    std::fs::remove_file(&key_path).expect("rm key");
    let out = start(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is missing") && err.contains("restore"), "{err}");
    assert!(!key_path.exists(), "a missing key is not silently replaced");
    // The key kept elsewhere and named in config works.
    let elsewhere = dir.path().join("keys/master.key");
    std::fs::create_dir_all(elsewhere.parent().expect("parent")).expect("mkdir");
    std::fs::write(&elsewhere, &key).expect("write");
    let mut moved_env: Vec<(&str, &str)> = env.clone();
    let elsewhere_text = elsewhere.display().to_string();
    moved_env.push(("FLOTILLA_MASTER_KEY_FILE", elsewhere_text.as_str()));
    let server = TestServer::start(&data, "1s", &moved_env).expect("starts with the key file named in config");
    assert_eq!(
        server.cli_json(&["params", "get", "/app/secret", "--decrypt"]).expect("v2")["value"].as_str(),
        Some(secret2.as_str())
    );
}

#[test]
fn secrets_at_rest_on_sqlite() {
    secrets_at_rest(None);
}

#[test]
fn secrets_at_rest_on_postgres() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TempDatabase::for_test());
    secrets_at_rest(Some(db.url()));
    rt.block_on(db.drop_database()).expect("drop");
}
