//! Measures the key service: artifact encryption and decryption throughput (MB/s), and the
//! latency a SecureString adds to a parameter read, in process and through the REST API of a
//! real server started in a temp dir. Prints a Markdown table for bench/RESULTS.md.
//!
//! Run: cargo run --release -p flotilla-cli --example keys_bench

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_api::{Client, PutParameter};
use flotilla_server::keys::{Binding, KeyService, LocalKeyring};
use flotilla_server::{Server, ServerConfig};

fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let (ring, _) = LocalKeyring::open_or_create(&dir.path().join("master.key"), 1)?;
    let keys = KeyService::new(Arc::new(ring));

    println!("| artifact size | encrypt MB/s | decrypt MB/s |");
    println!("|---|---|---|");
    for (label, size, rounds) in [("64 KiB", 64 << 10, 400), ("1 MiB", 1 << 20, 100), ("64 MiB", 64 << 20, 5)] {
        let data = vec![0x5au8; size];
        let name = "commands/c-bench/n-bench/stdout";
        let mut sealed = Vec::new();
        let start = Instant::now();
        for _ in 0..rounds {
            sealed = keys.seal(Binding::Artifact(name), data.clone()).await?;
        }
        let enc = start.elapsed();
        let start = Instant::now();
        for _ in 0..rounds {
            keys.open(Binding::Artifact(name), sealed.clone()).await?;
        }
        let dec = start.elapsed();
        println!("| {label} | {:.0} | {:.0} |", mb_per_s(size * rounds, enc), mb_per_s(size * rounds, dec));
    }

    // In process: what opening one SecureString costs.
    let value = "x".repeat(4096);
    let sealed = keys.seal(Binding::Parameter { name: "/bench/secret", version: 1 }, value.into_bytes()).await?;
    let mut times = Vec::new();
    for _ in 0..2000 {
        let start = Instant::now();
        keys.open(Binding::Parameter { name: "/bench/secret", version: 1 }, sealed.clone()).await?;
        times.push(start.elapsed());
    }
    println!(
        "\nkey service, open one 4 KiB SecureString (in process): median {:.1} µs",
        median(times).as_secs_f64() * 1e6
    );

    // Through a real server: GET of a String vs a SecureString with decrypt, same size.
    let config =
        ServerConfig { data_dir: dir.path().join("server"), listen: "127.0.0.1:0".parse()?, ..ServerConfig::default() };
    let server = Server::start(config).await?;
    let token = std::fs::read_to_string(server.data_dir.join("admin.token")).context("admin.token")?;
    let ca = std::fs::read(server.data_dir.join("ca.pem"))?;
    let client = Client::new(&server.url, Some(token.trim().to_owned()), Some(&ca))?;
    let value = "v".repeat(1024);
    for (name, kind) in [("/bench/plain", "String"), ("/bench/secret", "SecureString")] {
        client
            .put_parameter(&PutParameter {
                name: name.into(),
                value: value.clone(),
                kind: Some(kind.into()),
                ..PutParameter::default()
            })
            .await?;
    }
    let mut results = Vec::new();
    for (name, decrypt) in [("/bench/plain", false), ("/bench/secret", true)] {
        for _ in 0..50 {
            client.get_parameter(name, None, None, decrypt).await?;
        }
        let mut times = Vec::new();
        for _ in 0..1000 {
            let start = Instant::now();
            client.get_parameter(name, None, None, decrypt).await?;
            times.push(start.elapsed());
        }
        results.push(median(times));
    }
    println!(
        "REST GET of a 1 KiB parameter (SQLite, HTTPS keep-alive, median of 1000): String {:.0} µs, SecureString \
         --decrypt {:.0} µs, added {:.0} µs",
        results[0].as_secs_f64() * 1e6,
        results[1].as_secs_f64() * 1e6,
        (results[1].as_secs_f64() - results[0].as_secs_f64()) * 1e6
    );
    server.stop().await;
    Ok(())
}
