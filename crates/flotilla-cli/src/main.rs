//! `flotilla`: the operator's command line, the server and the demo. Thin: it parses
//! arguments, finds the server, calls the typed API client (or the server library) and prints.

mod cmd;
mod demo;
mod output;
mod profile;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// Flotilla: manage a fleet of Linux servers and keep it patched.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Server URL (default: FLOTILLA_URL, then the login profile).
    #[arg(long, global = true, env = "FLOTILLA_URL", hide_env_values = true)]
    url: Option<String>,
    /// API token (default: FLOTILLA_TOKEN, then the login profile).
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate to trust for the server (default: FLOTILLA_CA, then the login profile).
    #[arg(long, global = true, env = "FLOTILLA_CA")]
    ca: Option<PathBuf>,
    /// Allow an http:// server URL, which sends the API token in clear (default: refused).
    #[arg(long, global = true, env = "FLOTILLA_INSECURE_HTTP")]
    insecure_http: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane, or ask a running one about itself (`server status`).
    ///
    /// Example: flotilla server --data-dir /var/lib/flotilla --listen 0.0.0.0:8443
    ///
    /// Example: flotilla server status
    Server(cmd::server::ServerArgs),
    /// Start a server and a sample fleet of real agents; stays up until Ctrl-C.
    ///
    /// Example: flotilla demo --nodes 10
    Demo(demo::DemoArgs),
    /// Save the server URL, token and CA for later commands.
    ///
    /// Example: flotilla login --url https://127.0.0.1:8443 --token "$(cat data/admin.token)" --ca data/ca.pem
    Login(profile::LoginArgs),
    /// Enrollment codes for agents.
    #[command(subcommand)]
    Activations(cmd::activations::Activations),
    /// The managed nodes.
    #[command(subcommand)]
    Nodes(cmd::nodes::Nodes),
    /// Saved target queries, usable as `group:NAME`.
    #[command(subcommand)]
    Groups(cmd::groups::Groups),
    /// Versioned command documents.
    #[command(subcommand)]
    Documents(cmd::documents::Documents),
    /// Run a document on target nodes, at a controlled pace.
    ///
    /// Example: flotilla run Flotilla-RunShellScript --param commands='uptime' --target tag:env=prod --max-concurrency 10% --wait
    Run(cmd::commands::RunArgs),
    /// Commands sent with `flotilla run`.
    #[command(subcommand)]
    Commands(cmd::commands::Commands),
    /// The durable event log: every state change, paged by sequence number or followed live.
    #[command(subcommand)]
    Events(cmd::events::Events),
    /// Notification topics: where rules send events.
    #[command(subcommand)]
    Topics(cmd::notifications::Topics),
    /// Subscriptions of topics (signed webhooks, document runs) and their deliveries.
    #[command(subcommand)]
    Subscriptions(cmd::notifications::Subscriptions),
    /// Event rules: patterns over the event log routed to topics, assessments or documents.
    #[command(subcommand)]
    Rules(cmd::notifications::Rules),
    /// State Manager: documents kept applied on target nodes, on a schedule and as nodes join.
    #[command(subcommand)]
    Associations(cmd::associations::Associations),
    /// Compliance of every type (Association, Patch, Vulnerability) per node and fleet-wide.
    #[command(subcommand)]
    Compliance(cmd::associations::Compliance),
    /// Vulnerability assessment runs.
    #[command(subcommand)]
    Assess(cmd::assess::Assess),
    /// Findings of assessments, most severe first.
    #[command(subcommand)]
    Findings(cmd::assess::Findings),
    /// What is on the nodes: packages, services, network, hardware, files, custom types.
    #[command(subcommand)]
    Inventory(cmd::inventory::Inventory),
    /// The Parameter Store: configuration and secrets, versioned and labelled.
    #[command(subcommand)]
    Params(cmd::params::Params),
    /// Master key versions of the key service that encrypts data at rest.
    #[command(subcommand)]
    Keys(cmd::params::Keys),
    /// Compare two package versions; prints <, = or >.
    ///
    /// Example: flotilla version-cmp --ecosystem deb 1:2.0~rc1-1 1:2.0-1
    VersionCmp(cmd::version_cmp::VersionCmpArgs),
    /// The advisory database (OSV records) used for CVE assessment.
    #[command(subcommand)]
    Vulndb(cmd::vulndb::VulnDb),
    /// Maintenance windows: when tasks (documents on registered targets) may run, by priority.
    #[command(subcommand)]
    Windows(cmd::windows::Windows),
    /// Patch Manager: baselines, patch groups, per-node patch states and compliance.
    #[command(subcommand)]
    Patch(cmd::patch::Patch),
    /// Interactive shells and port forwarding through the node's agent, recorded.
    #[command(subcommand)]
    Session(cmd::session::SessionCmd),
}

/// `subscriptions add ... --ca FILE` names the webhook's CA (../shared/CLI.md), while the
/// global `--ca` names the Flotilla server's: after `subscriptions add`, `--ca` is read as
/// `--webhook-ca` (give the server's CA before the subcommand, in FLOTILLA_CA or the login
/// profile).
fn webhook_ca_flag(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let add = args.windows(2).position(|w| w[0] == "subscriptions" && w[1] == "add");
    let Some(at) = add else { return args };
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i <= at + 1 {
                return a;
            }
            match a.to_str() {
                Some("--ca") => "--webhook-ca".into(),
                Some(s) if s.starts_with("--ca=") => format!("--webhook-ca={}", &s["--ca=".len()..]).into(),
                _ => a,
            }
        })
        .collect()
}

/// The server's allocations are many and small (a fleet's reports, rows, JSON); under glibc
/// malloc, allocating and consolidating took a third of its CPU during a 10,000-node ingest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(webhook_ca_flag(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help and --version
        Err(e) => {
            // Scripts read one line: clap's first line says what was wrong.
            let text = e.to_string();
            eprintln!("{} (see --help)", text.lines().next().unwrap_or("invalid arguments").trim_end());
            return ExitCode::from(2);
        }
    };
    let quiet_client =
        !matches!(cli.command, Command::Server(cmd::server::ServerArgs { command: None, .. }) | Command::Demo(_));
    let default_filter = if quiet_client { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): stop quietly, as a tool killed by SIGPIPE would.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            // One line: what failed and why, the causes joined.
            // Server messages may quote what an agent sent: no raw control characters.
            eprintln!("error: {}", output::printable(&format!("{e:#}").replace('\n', " ")));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let conn = profile::Connection { url: cli.url, token: cli.token, ca: cli.ca, insecure_http: cli.insecure_http };
    let format = cli.output;
    match cli.command {
        Command::Server(cmd::server::ServerArgs { command: Some(cmd::server::ServerCommand::Status), .. }) => {
            cmd::server::status(&conn.client()?, format).await
        }
        Command::Server(args) => cmd::server::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Login(args) => profile::login(args, conn.insecure_http).await,
        Command::Activations(c) => c.run(&conn.client()?, format).await,
        Command::Nodes(c) => c.run(&conn.client()?, format).await,
        Command::Groups(c) => c.run(&conn.client()?, format).await,
        Command::Params(c) => c.run(&conn.client()?, format).await,
        Command::Keys(c) => c.run(&conn.client()?, format).await,
        Command::VersionCmp(args) => cmd::version_cmp::run(args),
        Command::Documents(c) => c.run(&conn.client()?, format).await,
        Command::Run(args) => cmd::commands::run(args, &conn.client()?, format).await,
        Command::Commands(c) => c.run(&conn.client()?, format).await,
        Command::Events(c) => c.run(&conn.client()?, format).await,
        Command::Inventory(c) => c.run(&conn.client()?, format).await,
        Command::Assess(c) => c.run(&conn.client()?, format).await,
        Command::Associations(c) => c.run(&conn.client()?, format).await,
        Command::Topics(c) => c.run(&conn.client()?, format).await,
        Command::Subscriptions(c) => c.run(&conn.client()?, format).await,
        Command::Rules(c) => c.run(&conn.client()?, format).await,
        Command::Compliance(c) => c.run(&conn.client()?, format).await,
        Command::Findings(c) => c.run(&conn.client()?, format).await,
        Command::Vulndb(c) => c.run(&conn.client()?, format).await,
        Command::Windows(c) => c.run(&conn.client()?, format).await,
        Command::Patch(c) => c.run(&conn.client()?, format).await,
        Command::Session(c) => c.run(&conn.client()?, format).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn server_runs_without_a_subcommand_and_status_is_one() {
        use super::{Cli, Command};
        use crate::cmd::server::{ServerArgs, ServerCommand};
        use clap::Parser;
        let run = Cli::try_parse_from(["flotilla", "server", "--data-dir", "/tmp/d", "--listen", "127.0.0.1:0"]);
        assert!(matches!(run.map(|c| c.command), Ok(Command::Server(ServerArgs { command: None, .. }))));
        let status = Cli::try_parse_from(["flotilla", "server", "status", "-o", "json"]);
        assert!(matches!(
            status.map(|c| c.command),
            Ok(Command::Server(ServerArgs { command: Some(ServerCommand::Status), .. }))
        ));
        let mixed = Cli::try_parse_from(["flotilla", "server", "--data-dir", "/tmp/d", "status"]);
        assert!(mixed.is_err(), "server flags belong to running a server, not to `status`");
    }

    #[test]
    fn ca_after_subscriptions_add_is_the_webhook_ca() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let got = super::webhook_ca_flag(args(&[
            "flotilla",
            "--ca",
            "server.pem",
            "subscriptions",
            "add",
            "t",
            "--webhook",
            "https://h/x",
            "--ca",
            "hook.pem",
        ]));
        assert_eq!(
            got,
            args(&[
                "flotilla",
                "--ca",
                "server.pem",
                "subscriptions",
                "add",
                "t",
                "--webhook",
                "https://h/x",
                "--webhook-ca",
                "hook.pem"
            ])
        );
        assert_eq!(
            super::webhook_ca_flag(args(&["flotilla", "subscriptions", "add", "t", "--ca=h.pem"]))[4],
            "--webhook-ca=h.pem"
        );
        let other = args(&["flotilla", "run", "X", "--ca", "server.pem"]);
        assert_eq!(super::webhook_ca_flag(other.clone()), other);
    }
}
