//! `flotilla demo`: a server in a fresh data dir plus a sample fleet of real agent processes,
//! each with its own sandbox root (os-release of a different distribution, its own hostname),
//! tagged env=prod/staging and role=web/db. Stays up until Ctrl-C, then stops every child.

// The demo starts Flotilla's own agent binaries, not node workloads.
#![allow(clippy::disallowed_methods)]

mod packages;
mod receiver;
mod repos;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_api::{Client, CreateActivation, TagNode};
use flotilla_server::Server;
use tokio::process::{Child, Command};

use crate::cmd::nodes;
use crate::output::outln;
use crate::output::table;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of sample nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Data directory (default: a new directory under the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address for the demo server.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
}

/// The sample distributions: (label, os-release).
const DISTROS: &[(&str, &str)] = &[
    (
        "deb12",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    ),
    (
        "ubuntu2204",
        "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n",
    ),
    (
        "rocky9",
        "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
    ),
    ("alpine319", "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n"),
];

/// Imports the OSV sample, assesses the fleet (once every node's inventory is in) and prints the
/// findings, as an operator would.
async fn first_assessment(client: &Client, nodes: usize) -> anyhow::Result<()> {
    let records = flotilla_osv::sample::RECORDS
        .iter()
        .map(|(source, text)| flotilla_api::VulnRecordText { source: (*source).into(), text: (*text).into() })
        .collect();
    let imported = client.vulndb_import(&flotilla_api::VulnImport { records }).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let query = flotilla_api::InventoryQuery {
            type_name: "InstanceInformation".into(),
            limit: Some(1000),
            ..Default::default()
        };
        if client.query_inventory(&query).await?.rows.len() >= nodes || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut run = client
        .create_assessment(&flotilla_api::CreateAssessment {
            rules: vec!["cve".into(), "security-best-practices".into()],
            ..Default::default()
        })
        .await?;
    while !matches!(run.status.as_str(), "Completed" | "Failed") && Instant::now() < deadline + Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        run = client.get_assessment(&run.id).await?;
    }
    outln!(
        "Imported {} OSV advisories from the sample; first assessment: flotilla assess run --rules cve,security-best-practices",
        imported.new + imported.updated + imported.unchanged
    )?;
    let findings = client.list_findings(None, Some("High"), Some(&run.id)).await?;
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.node_id.clone(),
                f.advisory_id.clone(),
                f.package.clone(),
                f.installed_version.clone(),
                f.title.chars().take(50).collect(),
            ]
        })
        .collect();
    outln!("{}: {} — High findings:", run.id, run.status)?;
    outln!("{}", table(&["NODE", "ADVISORY", "PACKAGE", "INSTALLED", "TITLE"], &rows))?;
    if !run.detail.is_empty() {
        // The shipped sample is months old: say so, as the CLI does for any run.
        outln!("note: {}\n", crate::output::printable(&run.detail))?;
    }
    Ok(())
}

/// Runs a first command on the sample fleet and prints its result, as an operator would.
async fn first_command(client: &Client) -> anyhow::Result<()> {
    let mut parameters = std::collections::BTreeMap::new();
    parameters.insert("commands".to_owned(), vec!["uptime".to_owned()]);
    let request = flotilla_api::CreateCommand {
        document: "Flotilla-RunShellScript".into(),
        parameters,
        targets: vec!["all".into()],
        max_concurrency: Some("50%".into()),
        comment: Some("demo: first command".into()),
        ..Default::default()
    };
    let mut command = client.create_command(&request).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(command.status.as_str(), "Success" | "Failed" | "Cancelled") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        command = client.get_command(&command.id).await?;
    }
    outln!(
        "First command: flotilla run Flotilla-RunShellScript --param commands=uptime --target all --max-concurrency 50%"
    )?;
    let rows: Vec<Vec<String>> = command
        .invocations
        .iter()
        .flatten()
        .map(|i| {
            vec![i.node_id.clone(), i.status.clone(), i.output.stdout.lines().last().unwrap_or("").trim().to_owned()]
        })
        .collect();
    outln!("{}: {}", command.id, command.status)?;
    outln!("{}", table(&["NODE", "STATUS", "OUTPUT"], &rows))?;
    Ok(())
}

/// The motd the demo's association keeps on every sample node.
const DEMO_MOTD: &str = "This node is managed by Flotilla. Local changes to this file are put back.\n";

/// Creates the association that keeps `/etc/motd` on the sample fleet, waits for its first run
/// and says how to see drift corrected.
async fn first_association(client: &Client, samples: &[Sample]) -> anyhow::Result<()> {
    let resources = serde_json::json!([{
        "action": "file:write", "path": "/etc/motd", "content": DEMO_MOTD, "mode": "0644",
    }]);
    let request = flotilla_api::AssociationRequest {
        name: Some("motd".into()),
        document: Some("Flotilla-DesiredState".into()),
        parameters: Some([("resources".to_owned(), vec![resources.to_string()])].into()),
        targets: Some(vec!["all".into()]),
        schedule: Some("rate(30 minutes)".into()),
        compliance_severity: Some("MEDIUM".into()),
        ..Default::default()
    };
    let association = client.create_association(&request).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = client.association_status(&association.id).await?;
        let settled = status.iter().filter(|s| s.status != "Pending").count();
        if settled == samples.len() || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    outln!(
        "State Manager: association `motd` keeps /etc/motd on every node (flotilla associations create --name motd --document Flotilla-DesiredState --param resources='[{{\"action\":\"file:write\",\"path\":\"/etc/motd\",...}}]' --target all --schedule 'rate(30 minutes)')"
    )?;
    let rows: Vec<Vec<String>> = status
        .iter()
        .map(|s| {
            let changed = s.changed.map_or("-", |c| if c { "yes" } else { "no" });
            vec![s.node_id.clone(), s.status.clone(), changed.to_owned(), s.detail.clone()]
        })
        .collect();
    outln!("{}", table(&["NODE", "STATUS", "CHANGED", "DETAIL"], &rows))?;
    if let Some(sample) = samples.first() {
        outln!(
            "Edit {} and run `flotilla associations apply motd`: the file is put back, and `flotilla compliance history NODE` shows it.\n",
            sample.root.join("etc/motd").display()
        )?;
    }
    Ok(())
}

/// A nightly maintenance window over the sample fleet: inventory first, then the motd state,
/// from 03:00 UTC for 2 hours, nothing new after 04:00.
async fn nightly_window(client: &Client) -> anyhow::Result<()> {
    let window = client
        .create_window(&flotilla_api::CreateWindow {
            name: "nightly".into(),
            schedule: "cron(0 3 * * *)".into(),
            duration_hours: 2,
            cutoff_hours: 1,
            ..Default::default()
        })
        .await?;
    client
        .add_window_target(&window.id, &flotilla_api::AddWindowTarget { targets: vec!["all".into()], name: None })
        .await?;
    for (priority, document) in [(1, "Flotilla-CollectInventory"), (2, "Flotilla-DesiredState")] {
        let mut parameters = std::collections::BTreeMap::new();
        if document == "Flotilla-DesiredState" {
            let resources = serde_json::json!([{ "action": "file:write", "path": "/etc/motd", "content": DEMO_MOTD }]);
            parameters.insert("resources".to_owned(), vec![resources.to_string()]);
        }
        let task = flotilla_api::AddWindowTask {
            document: document.into(),
            parameters,
            priority: Some(priority),
            max_concurrency: Some("50%".into()),
            ..Default::default()
        };
        client.add_window_task(&window.id, &task).await?;
    }
    let next = client.window_next(&window.id, 3).await?;
    outln!(
        "Maintenance window `nightly` (cron(0 3 * * *), 2 h, cutoff 1 h): inventory, then the motd state; next: {}\n",
        next.join(", ")
    )?;
    Ok(())
}

fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the flotilla binary")?;
    let agent = exe.with_file_name("flotilla-agent");
    if !agent.exists() {
        bail!("flotilla-agent was not found next to {}: build both with `cargo build --workspace`", exe.display());
    }
    Ok(agent)
}

fn fresh_data_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match arg {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("flotilla-demo-{}", std::process::id())),
    };
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!(
            "the demo needs a fresh data dir, but {} is not empty: remove it or pass another --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// A sample node: its sandbox root, state dir and tags.
struct Sample {
    hostname: String,
    root: PathBuf,
    state: PathBuf,
    tags: [(&'static str, &'static str); 2],
}

/// Builds the sample roots (and the local package repositories they point at, in
/// `repos_dir`). Blocking: it runs the packaging tools.
fn plan(fleet_dir: &Path, repos_dir: &Path, count: usize) -> anyhow::Result<Vec<Sample>> {
    let (repos, notes) = repos::build(repos_dir);
    for note in notes {
        eprintln!("{note}");
    }
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let (label, os_release) = DISTROS[i % DISTROS.len()];
        let role = if i % 3 == 2 { "db" } else { "web" };
        let env = if i % 2 == 0 { "prod" } else { "staging" };
        let hostname = format!("{role}-{:02}-{label}", i + 1);
        let dir = fleet_dir.join(&hostname);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("etc")).with_context(|| format!("cannot create {}", root.display()))?;
        std::fs::write(root.join("etc/os-release"), os_release)?;
        std::fs::write(root.join("etc/hostname"), format!("{hostname}\n"))?;
        if let Err(e) = packages::write(&root, label, i) {
            eprintln!("note: {hostname} gets no package database: {e:#}");
        } else if let Err(e) = repos::configure(&root, label, &repos) {
            eprintln!("note: {hostname} gets no package repository: {e:#}");
        }
        samples.push(Sample { hostname, root, state: dir.join("state"), tags: [("env", env), ("role", role)] });
    }
    if samples.iter().any(|s| s.hostname.ends_with("rocky9"))
        && let Some(note) = packages::rpm_missing_note()
    {
        eprintln!("{note}");
    }
    Ok(samples)
}

/// How long the server may take to stop after Ctrl-C before the demo exits anyway: its data
/// dir is throwaway and SQLite survives an abrupt end, while an operator waits for the prompt.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(3);

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when it
/// is first polled, so a Ctrl-C at any moment after it reaches the demo's clean-up.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 500 {
        bail!("--nodes must be between 1 and 500");
    }
    let stop = stop_signal()?;
    let agent_bin = agent_binary()?;
    let data_dir = fresh_data_dir(args.data_dir.clone())?;
    // Everything start-up creates lives here, outside the start-up future, so that a Ctrl-C
    // that drops that future half-way still finds every process to stop.
    let mut server: Option<Server> = None;
    let mut children: Vec<Child> = Vec::new();
    let result = tokio::select! {
        result = start_and_serve(&args, &agent_bin, &data_dir, &mut server, &mut children) => result,
        () = stop => Ok(()),
    };
    eprintln!("stopping {} agents and the server", children.len());
    for child in &mut children {
        let _ = child.kill().await;
    }
    if let Some(server) = server
        && tokio::time::timeout(SERVER_STOP_GRACE, server.stop()).await.is_err()
    {
        eprintln!("the server did not stop within {SERVER_STOP_GRACE:?}; exiting anyway");
    }
    result
}

/// Starts the server and the sample fleet, shows the first results, then waits forever (the
/// caller stops it).
async fn start_and_serve(
    args: &DemoArgs,
    agent_bin: &Path,
    data_dir: &Path,
    server_slot: &mut Option<Server>,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let mut config = crate::cmd::server::config(None, Some(data_dir.join("server")), Some(args.listen))?;
    // A short heartbeat so that a stopped agent shows ConnectionLost within seconds.
    config.heartbeat_interval = Duration::from_secs(5);
    let server = server_slot.insert(Server::start(config).await?);
    let token = std::fs::read_to_string(server.data_dir.join("admin.token")).context("cannot read admin.token")?;
    let ca_path = server.data_dir.join("ca.pem");
    let ca_pem = std::fs::read(&ca_path).context("cannot read ca.pem")?;
    let client = Client::new(&server.url, Some(token.trim().to_owned()), Some(&ca_pem))?;

    let activation = client
        .create_activation(&CreateActivation {
            description: Some("flotilla demo fleet".into()),
            registration_limit: Some(u32::try_from(args.nodes)?),
            expires_in_seconds: Some(3600),
            tags: Default::default(),
        })
        .await?;
    let code = activation.code.clone().unwrap_or_default();
    let (fleet_dir, repos_dir, nodes) = (data_dir.join("fleet"), data_dir.join("repos"), args.nodes);
    let samples = tokio::task::spawn_blocking(move || plan(&fleet_dir, &repos_dir, nodes)).await??;
    for sample in &samples {
        let out = Command::new(agent_bin)
            .arg("register")
            .args(["--server", &server.url, "--activation-id", &activation.id, "--activation-code", &code])
            .arg("--ca")
            .arg(&ca_path)
            .arg("--state-dir")
            .arg(&sample.state)
            .arg("--root")
            .arg(&sample.root)
            .stdin(Stdio::null())
            // Interrupted mid-registration, the registering process goes too.
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run flotilla-agent register")?;
        if !out.status.success() {
            bail!("enrolling {} failed: {}", sample.hostname, String::from_utf8_lossy(&out.stderr).trim());
        }
        let node_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let tags = sample.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        client.tag_node(&node_id, &TagNode { tags }).await?;
        let log = std::fs::File::create(sample.state.with_file_name("agent.log"))?;
        let child = Command::new(agent_bin)
            .arg("run")
            .arg("--state-dir")
            .arg(&sample.state)
            .arg("--root")
            .arg(&sample.root)
            // The sample nodes share this machine: a patch Install that wants a reboot logs
            // it instead of rebooting the machine the demo runs on.
            .env(
                "FLOTILLA_AGENT_REBOOT_COMMAND",
                "echo demo node: reboot requested by Patch Manager, not rebooting this machine",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start flotilla-agent")?;
        children.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes = loop {
        let nodes = client.list_nodes(&[]).await?;
        if nodes.iter().filter(|n| n.status == "Online").count() == samples.len() || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    outln!("{}", table(nodes::HEADERS, &nodes::rows(&nodes)))?;
    first_command(&client).await?;
    first_association(&client, &samples).await?;
    nightly_window(&client).await?;
    receiver::start(&client).await?;
    first_assessment(&client, samples.len()).await?;
    outln!("Flotilla demo is running: {} nodes on {}", samples.len(), server.url)?;
    outln!("Point the CLI at it from another shell:")?;
    outln!("  export FLOTILLA_URL={}", server.url)?;
    outln!("  export FLOTILLA_TOKEN=$(cat {})", server.data_dir.join("admin.token").display())?;
    outln!("  export FLOTILLA_CA={}", ca_path.display())?;
    outln!("  flotilla nodes ls --target 'tag:env=prod&tag:role=web'")?;
    outln!("  flotilla inventory query --type Application --filter 'name=openssl' --filter 'version<3.0.12'")?;
    outln!("  flotilla findings ls --severity High")?;
    outln!("  flotilla associations status motd; flotilla compliance summary")?;
    outln!("  flotilla windows executions nightly")?;
    outln!("Data dir: {}. Press Ctrl-C to stop.", data_dir.display())?;
    std::future::pending::<()>().await;
    Ok(())
}
