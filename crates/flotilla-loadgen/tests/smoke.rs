//! CI smoke run: every benchmark end to end with 20 agents and 50 packages, against a server
//! the load generator starts itself (the `flotilla` binary built next to the tests).

use std::time::Duration;

use flotilla_loadgen::ServerProcess;
use flotilla_loadgen::scenario::{self, Settings, Target};

async fn target() -> Target {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    flotilla_loadgen::raise_nofile_limit();
    let env = vec![("FLOTILLA_HEARTBEAT_INTERVAL".to_owned(), "2s".to_owned())];
    let process = ServerProcess::start(&flotilla_testkit::bin_path("flotilla"), None, env).await.expect("server");
    Target {
        url: process.url.clone(),
        token: process.token.clone(),
        ca_pem: process.ca_pem.clone(),
        pid: None,
        db: "sqlite".into(),
        process: Some(process),
    }
}

fn settings() -> Settings {
    Settings {
        agents: 20,
        fleet: flotilla_loadgen::packages::FleetShape::realistic(50),
        advisories: 0,
        delay: Duration::ZERO,
        fail_rate: 0.1,
        output_bytes: vec![16],
        source_addresses: 4,
        cache_dir: None,
        idle: Duration::from_secs(2),
        concurrency: vec!["100%".into(), "10%".into()],
        timeout: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections() {
    let mut t = target().await;
    let r = scenario::connections(&mut t, &settings()).await.expect("connections");
    assert_eq!(r["agents"], 20);
    assert!(r["server_rss_bytes"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(r["seconds_to_all_reconnected"].is_number(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout() {
    let mut t = target().await;
    let r = scenario::fanout(&mut t, &settings()).await.expect("fanout");
    let runs = r["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["invocations"], 20, "{run}");
        assert_eq!(run["invocations_not_final"], 0, "{run}");
        assert!(run["seconds_to_all_results"].is_number(), "{run}");
    }
    assert_eq!(r["duplicate_deliveries"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory() {
    let mut t = target().await;
    let r = scenario::inventory(&mut t, &settings()).await.expect("inventory");
    assert_eq!(r["rejected"], 0, "{r}");
    assert!(r["full"]["item_bytes_sent"].as_u64().unwrap_or(0) > 20 * 50 * 100, "{r}");
    assert_eq!(r["delta"]["item_bytes_sent"], 0, "the second collection sends no items: {r}");
    assert_eq!(r["full"]["server_reports_counted"], 20.0, "{r}");
    // The fleet query finds exactly the nodes whose generated openssl is older than the fix.
    let shape = settings().fleet;
    let expected = (0..20)
        .filter(|&i| {
            flotilla_loadgen::packages::fleet_applications(i, &shape)
                .iter()
                .any(|a| a.name == "openssl" && a.version.starts_with("1.1.0l-1~deb9u5"))
        })
        .count();
    assert!(expected > 0, "the generated fleet has vulnerable nodes");
    assert_eq!(r["query"]["nodes"], expected, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assess_against_synthetic_advisories() {
    let mut t = target().await;
    // 1,000 packages, as a real node has: the records spread over a 30,000-name universe, so a
    // short list would meet too few of them to say anything.
    let s =
        Settings { advisories: 2_500, fleet: flotilla_loadgen::packages::FleetShape::realistic(1000), ..settings() };
    let r = scenario::assess(&mut t, &s).await.expect("assess");
    assert_eq!(r["assessment_status"], "Completed", "{r}");
    assert_eq!(r["advisories_imported"], 2_500, "{r}");
    assert_eq!(r["advisories_rejected"], 0, "{r}");
    assert_eq!(r["assessed_nodes"], 20, "{r}");
    assert!(r["findings"].as_u64().unwrap_or(0) >= 20, "the synthetic records meet the fleet's packages: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assess() {
    let mut t = target().await;
    // The real OSV sample over the all-different fleet, in which every node has two of the
    // four advised packages at a vulnerable version.
    let s = Settings { fleet: flotilla_loadgen::packages::FleetShape { images: 0, ..settings().fleet }, ..settings() };
    let r = scenario::assess(&mut t, &s).await.expect("assess");
    assert_eq!(r["assessment_status"], "Completed", "{r}");
    assert_eq!(r["assessed_nodes"], 20, "{r}");
    assert!(r["findings"].as_u64().unwrap_or(0) >= 20, "{r}");
}
