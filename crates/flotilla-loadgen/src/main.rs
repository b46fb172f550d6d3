//! `flotilla-loadgen connections|fanout|inventory|assess|associate --agents N [...]`: parses arguments,
//! starts (or finds) the server under test and runs one benchmark from the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use flotilla_loadgen::packages::FleetShape;
use flotilla_loadgen::scenario::{self, Settings, Target};
use flotilla_loadgen::{ServerProcess, raise_nofile_limit};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "flotilla-loadgen",
    version,
    about = "Simulated Flotilla agents over the real protocol, and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// N agents connected and heartbeating: server memory, idle CPU, connect and reconnect times.
    Connections(Common),
    /// One command to all N agents: time until every result is stored.
    Fanout(Common),
    /// N nodes x P packages: a full inventory upload, then a delta.
    Inventory(Common),
    /// Inventory, a synthetic advisory database (or the OSV sample), then a `cve` assessment.
    Assess(Common),
    /// A desired-state association over every agent: applied at creation, then again (unchanged).
    Associate(Common),
}

#[derive(Args)]
struct Common {
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Application items per node (inventory and assess).
    #[arg(long, default_value_t = 1000)]
    packages: usize,
    /// Base images the nodes are spread over (0: every node different).
    #[arg(long, default_value_t = 5)]
    fleet_images: usize,
    /// Per cent of a node's packages that differ from its image (other version, missing, extra).
    #[arg(long, default_value_t = 3.0)]
    vary_percent: f64,
    /// Seed of the synthetic fleet and advisory database.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `assess`: synthetic advisories imported through the import API (0: the real OSV sample).
    #[arg(long, default_value_t = 50_000)]
    advisories: usize,
    /// A running server to test instead of starting one (needs --token and --ca).
    #[arg(long, requires_all = ["token", "ca"])]
    server: Option<String>,
    /// Admin API token of --server.
    #[arg(long)]
    token: Option<String>,
    /// CA certificate (ca.pem) of --server.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Process id of --server, for its memory and CPU figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// PostgreSQL URL for the server we start (default: its embedded SQLite).
    #[arg(long)]
    db: Option<String>,
    /// The `flotilla` binary to start (default: next to this one).
    #[arg(long)]
    flotilla: Option<PathBuf>,
    /// Keep the started server's data dir here (its port is kept too, so cached identities
    /// apply on the next run); default: a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Heartbeat interval the started server asks of agents.
    #[arg(long, default_value = "30s")]
    heartbeat: String,
    /// Where enrolled identities are cached, per server (default ~/.cache/flotilla-loadgen).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not cache identities.
    #[arg(long)]
    no_cache: bool,
    /// How long each simulated invocation runs, milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Fraction of invocations that fail, 0..1.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Bytes of stdout per invocation (0: no OutputChunk); `fanout` runs once per value
    /// (comma-separated), the first being its headline figure.
    #[arg(long, default_value = "1024,0", value_delimiter = ',')]
    output_bytes: Vec<usize>,
    /// Source addresses 127.0.0.1..=127.0.0.K to spread connections over.
    #[arg(long, default_value_t = 8)]
    source_addresses: u8,
    /// `fanout`: max concurrency values to run in turn (comma-separated).
    #[arg(long, default_value = "100%,10%", value_delimiter = ',')]
    max_concurrency: Vec<String>,
    /// `connections`: seconds of idle measured.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Longest wait for any phase, seconds.
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOADGEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let limit = raise_nofile_limit();
    tracing::info!("open-file limit: {limit}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (name, common) = match &cli.bench {
        Bench::Connections(c) => ("connections", c),
        Bench::Fanout(c) => ("fanout", c),
        Bench::Inventory(c) => ("inventory", c),
        Bench::Assess(c) => ("assess", c),
        Bench::Associate(c) => ("associate", c),
    };
    let mut target = target(common).await?;
    let settings = Settings {
        agents: common.agents,
        fleet: FleetShape {
            packages: common.packages,
            images: common.fleet_images,
            vary_percent: common.vary_percent,
            seed: common.seed,
        },
        advisories: common.advisories,
        delay: Duration::from_millis(common.delay_ms),
        fail_rate: common.fail_rate.clamp(0.0, 1.0),
        output_bytes: common.output_bytes.clone(),
        source_addresses: common.source_addresses,
        cache_dir: if common.no_cache { None } else { Some(common.cache_dir.clone().unwrap_or_else(default_cache)) },
        idle: Duration::from_secs(common.idle_seconds),
        concurrency: common.max_concurrency.clone(),
        timeout: Duration::from_secs(common.timeout_seconds),
    };
    let report = match name {
        "connections" => scenario::connections(&mut target, &settings).await,
        "fanout" => scenario::fanout(&mut target, &settings).await,
        "inventory" => scenario::inventory(&mut target, &settings).await,
        "associate" => scenario::associate(&mut target, &settings).await,
        _ => scenario::assess(&mut target, &settings).await,
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            if let Some(p) = &target.process {
                eprintln!("server log: {}", p.log_path().display());
            }
            return Err(e);
        }
    };
    if common.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", table(&report));
    }
    if let Some(mut process) = target.process.take() {
        process.kill().await;
    }
    Ok(())
}

fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flotilla-loadgen")
}

async fn target(common: &Common) -> anyhow::Result<Target> {
    if let (Some(url), Some(token), Some(ca)) = (&common.server, &common.token, &common.ca) {
        let ca_pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        return Ok(Target {
            url: url.trim_end_matches('/').to_owned(),
            token: token.clone(),
            ca_pem,
            pid: common.server_pid,
            process: None,
            db: "unknown".into(),
        });
    }
    let binary = match &common.flotilla {
        Some(path) => path.clone(),
        None => {
            std::env::current_exe()?.parent().map(|d| d.join("flotilla")).context("no directory for this binary")?
        }
    };
    let mut env = vec![("FLOTILLA_HEARTBEAT_INTERVAL".to_owned(), common.heartbeat.clone())];
    if let Some(db) = &common.db {
        env.push(("FLOTILLA_DATABASE_URL".to_owned(), db.clone()));
    }
    let process = ServerProcess::start(&binary, common.data_dir.clone(), env).await?;
    Ok(Target {
        url: process.url.clone(),
        token: process.token.clone(),
        ca_pem: process.ca_pem.clone(),
        pid: None,
        db: if common.db.is_some() { "postgres".into() } else { "sqlite".into() },
        process: Some(process),
    })
}

/// The report as two aligned columns, nested fields named with dots.
fn table(report: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", report, &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, rows);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, rows);
            }
        }
        Value::String(s) => rows.push((prefix.to_owned(), s.clone())),
        other => rows.push((prefix.to_owned(), other.to_string())),
    }
}
