//! Shared by the fault tests: a real `flotilla server` (testkit) and enrolled identities.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use flotilla_api::Client;
use flotilla_loadgen::{Credential, FleetOptions, enroll};
use flotilla_testkit::TestServer;

pub struct Setup {
    pub server: TestServer,
    pub admin: Client,
    pub ca_pem: Vec<u8>,
    pub creds: Vec<Credential>,
    _dir: tempfile::TempDir,
}

/// A server heartbeating every `heartbeat` with `n` enrolled identities.
pub async fn setup(heartbeat: &str, n: usize) -> Setup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    flotilla_loadgen::raise_nofile_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let hb = heartbeat.to_owned();
    let server = tokio::task::spawn_blocking(move || TestServer::start(&data, &hb, &[]))
        .await
        .expect("join")
        .expect("server starts");
    let ca_pem = std::fs::read(&server.ca).expect("ca");
    let admin = Client::new(&server.url, Some(server.token.clone()), Some(&ca_pem)).expect("client");
    let (creds, _) = enroll(&admin, &server.url, &ca_pem, n, None).await.expect("enroll");
    Setup { server, admin, ca_pem, creds, _dir: dir }
}

impl Setup {
    pub fn options(&self) -> FleetOptions {
        FleetOptions::new(&self.server.url, &self.ca_pem)
    }
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn rss_bytes(pid: u32) -> u64 {
    flotilla_loadgen::ProcStats::read(pid).map(|s| s.rss_bytes).unwrap_or(0)
}

pub const FINAL: &[&str] = &["Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated"];
