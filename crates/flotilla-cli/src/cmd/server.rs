//! `flotilla server`: load the configuration, start the control plane, stop on SIGINT/SIGTERM;
//! and `flotilla server status`, a client command asking a running server about itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use flotilla_api::{Client, WorkerState};
use flotilla_server::{Server, ServerConfig};

use crate::output::{Format, out, outln, print, printable, table};

/// Without a subcommand, `flotilla server [flags]` runs the server (as it always has); the
/// flags and the subcommands exclude each other, so `--data-dir` never reaches `status`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// TOML configuration file; FLOTILLA_* variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (CA, keys, admin token, SQLite database, artifacts).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address for the API and the agent channel (TLS), e.g. 0.0.0.0:8443.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(clap::Subcommand)]
pub enum ServerCommand {
    /// Ask a running server about itself: its workers (name, state, last run, last error),
    /// connected agents and its store.
    ///
    /// Example: flotilla server status -o json
    Status,
}

/// Resolves the configuration: file, then environment, then flags.
pub fn config(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<ServerConfig> {
    let mut cfg = ServerConfig::load(config, std::env::vars())?;
    if let Some(dir) = data_dir {
        cfg.data_dir = dir;
    }
    if let Some(addr) = listen {
        cfg.listen = addr;
    }
    Ok(cfg)
}

/// `flotilla server status`.
pub async fn status(client: &Client, format: Format) -> anyhow::Result<()> {
    let status = client.server_status().await?;
    if !matches!(format, Format::Table) {
        return print(format, &status, &[], Vec::new());
    }
    let rows: Vec<Vec<String>> = status
        .workers
        .iter()
        .map(|w| {
            let state = match (&w.restart_at, w.state) {
                (Some(at), WorkerState::BackingOff) => format!("backing_off until {at}"),
                _ => w.state.as_str().to_owned(),
            };
            vec![
                w.name.clone(),
                state,
                w.last_run.as_ref().map(|r| r.started_at.clone()).unwrap_or_else(|| "-".into()),
                w.runs.to_string(),
                w.failures.to_string(),
                w.restarts.to_string(),
                w.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out!("{}", table(&["WORKER", "STATE", "LAST RUN", "RUNS", "FAILURES", "RESTARTS", "LAST ERROR"], &rows))?;
    outln!()?;
    let a = &status.agents;
    let known = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    outln!("agents: {} connected here, {} enrolled, {} online", a.connected, known(a.enrolled), known(a.online))?;
    let store = &status.store;
    match (store.reachable, store.latency_ms) {
        (true, Some(ms)) => outln!("store:  {}, reachable ({ms:.1} ms)", store.backend)?,
        (true, None) => outln!("store:  {}, reachable", store.backend)?,
        (false, _) => outln!(
            "store:  {}, NOT reachable: {}",
            store.backend,
            printable(store.error.as_deref().unwrap_or("no reason given"))
        )?,
    }
    outln!("version: {}", status.version)?;
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let cfg = config(args.config.as_deref(), args.data_dir, args.listen)?;
    let server = Server::start(cfg).await?;
    eprintln!("flotilla server listening on {} (data dir {})", server.url, server.data_dir.display());
    wait_for_stop().await.context("cannot wait for a stop signal")?;
    eprintln!("stopping");
    server.stop().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_stop() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
