//! `flotilla-agent`: parse arguments, set up logging, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Flotilla's node agent: enrolls with a Flotilla server and keeps one outbound, mutually
/// authenticated stream to it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this node with an activation.
    ///
    /// Example: flotilla-agent register --server https://fleet.example:8443 --ca ca.pem --activation-id act-0123 --activation-code XXXX
    Register {
        /// The server's URL, e.g. https://fleet.example:8443.
        #[arg(long, env = "FLOTILLA_SERVER")]
        server: String,
        /// The server's CA certificate (ca.pem from its data dir).
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        activation_id: String,
        #[arg(long, env = "FLOTILLA_ACTIVATION_CODE")]
        activation_code: String,
        /// Where the agent keeps its identity.
        #[arg(long, default_value = flotilla_agent::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Treat this directory as the node's file system root.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Replace an existing identity in the state dir.
        #[arg(long)]
        force: bool,
    },
    /// Connect to the server and serve it until stopped.
    ///
    /// Example: flotilla-agent run --state-dir /var/lib/flotilla-agent
    Run {
        #[arg(long, default_value = flotilla_agent::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Most sessions (shells, port forwards) open on this node at once.
        #[arg(long, env = "FLOTILLA_AGENT_MAX_SESSIONS", default_value_t = flotilla_agent::session::DEFAULT_MAX_SESSIONS)]
        max_sessions: usize,
        /// Most output bytes one session stream may have waiting to be sent (rounded to 32 KiB
        /// frames, at least one).
        #[arg(long, env = "FLOTILLA_AGENT_SESSION_BUFFER", default_value_t = flotilla_agent::session::DEFAULT_BUFFER_BYTES)]
        session_buffer: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // Small runtime: an agent is one stream and a few timers; it must idle in a few MiB.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Register { server, ca, activation_id, activation_code, state_dir, root, force } => {
                let opts = flotilla_agent::RegisterOptions {
                    server,
                    ca,
                    activation_id,
                    activation_code,
                    state_dir,
                    root,
                    force,
                };
                let node_id = flotilla_agent::register(&opts).await?;
                println!("{node_id}");
                Ok(())
            }
            Command::Run { state_dir, root, max_sessions, session_buffer } => {
                let sessions = flotilla_agent::session::Settings { max_sessions, buffer_bytes: session_buffer };
                flotilla_agent::run(&state_dir, &root, sessions).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(flotilla_agent::AgentError::Revoked(message)) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
