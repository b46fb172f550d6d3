//! `flotilla server`: load the configuration, start the control plane, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use flotilla_server::{Server, ServerConfig};

#[derive(clap::Args)]
pub struct ServerArgs {
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
