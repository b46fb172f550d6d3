//! `flotilla run` and `flotilla commands ls | show | cancel | output`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use flotilla_api::{Client, Command, CreateCommand};

use crate::output::{Format, print, printable};
use crate::output::{out, outln};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The document to run, e.g. Flotilla-RunShellScript.
    document: String,
    /// Document version (default: its default version).
    #[arg(long)]
    document_version: Option<i64>,
    /// NAME=VALUE; repeat a StringList parameter to add items.
    #[arg(long = "param", value_parser = super::key_value)]
    params: Vec<(String, String)>,
    /// A node id, tag:KEY=VALUE, tag:KEY, group:NAME or all, joined by & (all must hold), each
    /// optionally prefixed by ! (must not hold); repeatable: a union.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// N or N% of the targets in flight at once (default 50).
    #[arg(long)]
    max_concurrency: Option<String>,
    /// N or N%: stop starting new invocations after more errors than this (default 0).
    #[arg(long)]
    max_errors: Option<String>,
    /// Execution timeout per step, seconds.
    #[arg(long)]
    timeout: Option<u32>,
    /// Seconds to reach a node before its invocation is Undeliverable (default 600).
    #[arg(long)]
    delivery_timeout: Option<u32>,
    #[arg(long)]
    comment: Option<String>,
    /// Send the command's and each invocation's status changes to this topic (its
    /// subscriptions: webhooks, email, documents).
    #[arg(long)]
    notify: Option<String>,
    /// Which changes --notify sends: All (default), InProgress, Success, TimedOut, Cancelled,
    /// Failed; comma-separated or repeated.
    #[arg(long, value_delimiter = ',', requires = "notify")]
    notify_on: Vec<String>,
    /// Wait for the end; exit non-zero unless every invocation succeeded.
    #[arg(long)]
    wait: bool,
}

#[derive(clap::Subcommand)]
pub enum Commands {
    /// List recent commands.
    ///
    /// Example: flotilla commands ls
    Ls,
    /// Show a command and its invocations.
    ///
    /// Example: flotilla commands show c-0123456789abcdef0123
    Show { command: String },
    /// Cancel a command that has not finished.
    ///
    /// Example: flotilla commands cancel c-0123456789abcdef0123
    Cancel { command: String },
    /// Print a node's output (inline copy, or the full bytes with --full).
    ///
    /// Example: flotilla commands output c-0123456789abcdef0123 --node n-0123456789abcdef0 --full
    Output {
        command: String,
        #[arg(long)]
        node: String,
        /// The full output from the artifact store, byte for byte.
        #[arg(long)]
        full: bool,
        /// With --full: stdout (default) or stderr.
        #[arg(long, default_value = "stdout")]
        stream: String,
    },
}

const TERMINAL: &[&str] = &["Success", "Failed", "Cancelled", "TimedOut"];

fn counts_line(c: &Command) -> String {
    c.counts.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("  ")
}

fn print_command(format: Format, c: &Command) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            outln!("command:  {} ({} v{})", c.id, printable(&c.document), c.document_version)?;
            outln!("status:   {}    {}", c.status, counts_line(c))?;
            outln!(
                "targets:  {}   concurrency {}  errors {}",
                printable(&c.targets.join(" ")),
                c.max_concurrency,
                c.max_errors
            )?;
            if let Some(n) = &c.notification {
                outln!("notify:   {} on {}", printable(&n.topic), n.events.join(","))?;
            }
            let rows: Vec<Vec<String>> = c
                .invocations
                .iter()
                .flatten()
                .map(|i| {
                    let first = i.output.stdout.lines().next().unwrap_or("").chars().take(60).collect::<String>();
                    let more = if i.output.truncated { " (truncated)" } else { "" };
                    vec![
                        i.node_id.clone(),
                        i.status.clone(),
                        i.exit_code.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                        format!("{first}{more}"),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                outln!()?;
                out!("{}", crate::output::table(&["NODE", "STATUS", "EXIT", "OUTPUT"], &rows))?;
            }
            Ok(())
        }
        _ => print(format, c, &[], vec![]),
    }
}

pub async fn run(args: RunArgs, client: &Client, format: Format) -> anyhow::Result<()> {
    let mut parameters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in args.params {
        parameters.entry(name).or_default().push(value);
    }
    let req = CreateCommand {
        document: args.document,
        document_version: args.document_version,
        parameters,
        targets: args.targets,
        max_concurrency: args.max_concurrency,
        max_errors: args.max_errors,
        timeout_seconds: args.timeout,
        delivery_timeout_seconds: args.delivery_timeout,
        comment: args.comment,
        notify: args.notify,
        notify_on: args.notify_on,
    };
    let mut command = client.create_command(&req).await?;
    if !args.wait {
        return print_command(format, &command);
    }
    let live = std::io::stderr().is_terminal() && matches!(format, Format::Table);
    // Most fleet commands end within a second or two: poll every 50 ms for 2 s, then back off
    // to 1 s, so a long command on a big fleet (each poll returns every invocation) costs the
    // server little.
    let started = std::time::Instant::now();
    let mut poll = Duration::from_millis(50);
    while !TERMINAL.contains(&command.status.as_str()) {
        if live {
            eprint!("\r{} {}   {}\x1b[K", command.id, command.status, counts_line(&command));
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(poll).await;
        if started.elapsed() > Duration::from_secs(2) {
            poll = (poll * 2).min(Duration::from_secs(1));
        }
        command = client.get_command(&command.id).await?;
    }
    if live {
        eprintln!("\r\x1b[K");
    }
    print_command(format, &command)?;
    let failed = command.invocations.iter().flatten().filter(|i| i.status != "Success").count();
    if failed > 0 || command.status != "Success" {
        bail!("command {} ended {}: {failed} invocation(s) did not succeed", command.id, command.status);
    }
    Ok(())
}

impl Commands {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Commands::Ls => {
                let list = client.list_commands().await?;
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![c.id.clone(), c.document.clone(), c.status.clone(), counts_line(c), c.created_at.clone()]
                    })
                    .collect();
                print(format, &list, &["ID", "DOCUMENT", "STATUS", "COUNTS", "CREATED"], rows)
            }
            Commands::Show { command } => print_command(format, &client.get_command(&command).await?),
            Commands::Cancel { command } => print_command(format, &client.cancel_command(&command).await?),
            Commands::Output { command, node, full, stream } => {
                if full {
                    let bytes = client.invocation_output(&command, &node, &stream).await?;
                    std::io::stdout().write_all(&bytes)?;
                    return Ok(());
                }
                let c = client.get_command(&command).await?;
                let Some(inv) = c.invocations.iter().flatten().find(|i| i.node_id == node) else {
                    bail!("command {command} has no invocation on node {node}");
                };
                match format {
                    Format::Table => {
                        out!("{}", inv.output.stdout)?;
                        if !inv.output.stderr.is_empty() {
                            eprint!("{}", inv.output.stderr);
                        }
                        if inv.output.truncated {
                            eprintln!("---Output truncated--- (use --full for all {} bytes)", inv.output.stdout_bytes);
                        }
                        Ok(())
                    }
                    _ => print(format, inv, &[], vec![]),
                }
            }
        }
    }
}
