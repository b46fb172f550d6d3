//! The four benchmarks. Each returns one JSON object (fields documented in bench/README.md).
//!
//! Times are taken at the load generator: "stored" means the server's acknowledgement arrived
//! (it acknowledges a result or an inventory report only after its store transaction), and
//! each is cross-checked with the API or the metrics endpoint before the figure is reported.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_api::{Client, CreateAssessment, CreateCommand, InventoryQuery, VulnImport, VulnRecordText};
use serde_json::{Value, json};

use crate::agent::{Fleet, FleetOptions, Stats};
use crate::credentials;
use crate::packages::FleetShape;
use crate::server::{Metrics, ProcStats, ServerProcess};

/// The server under test.
pub struct Target {
    pub url: String,
    pub token: String,
    pub ca_pem: Vec<u8>,
    /// For /proc figures; None when unknown (a remote server without --server-pid).
    pub pid: Option<u32>,
    /// Set when we started it (and so may restart it).
    pub process: Option<ServerProcess>,
    /// "sqlite" or "postgres", for the report.
    pub db: String,
}

impl Target {
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, Some(self.token.clone()), Some(&self.ca_pem))?)
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ServerProcess::pid).or(self.pid)
    }

    fn proc(&self) -> ProcStats {
        self.pid().and_then(ProcStats::read).unwrap_or_default()
    }
}

/// Settings common to every benchmark.
#[derive(Debug, Clone)]
pub struct Settings {
    pub agents: usize,
    /// The nodes' packages (inventory and assess).
    pub fleet: FleetShape,
    pub delay: Duration,
    pub fail_rate: f64,
    /// `fanout`: bytes of stdout per invocation, one set of runs per value (the first is the
    /// headline); the other benchmarks use the first.
    pub output_bytes: Vec<usize>,
    /// `assess`: synthetic advisories to import (0: the repository's real OSV sample).
    pub advisories: usize,
    pub source_addresses: u8,
    pub cache_dir: Option<PathBuf>,
    /// Idle window of `connections`.
    pub idle: Duration,
    /// `fanout`'s max concurrency values, run in turn.
    pub concurrency: Vec<String>,
    /// Longest wait for any phase.
    pub timeout: Duration,
}

fn fleet_options(target: &Target, s: &Settings) -> FleetOptions {
    let mut opts = FleetOptions::new(&target.url, &target.ca_pem);
    opts.delay = s.delay;
    opts.fail_rate = s.fail_rate;
    opts.output_bytes.store(s.output_bytes.first().copied().unwrap_or(0), Ordering::Relaxed);
    opts.source_addresses = s.source_addresses;
    opts.fleet = s.fleet;
    opts
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if done() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("timed out after {:.0} s waiting for {what}", timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples the server's VmRSS every 50 ms while alive; its maximum is the peak of a phase.
struct RssSampler {
    peak: std::sync::Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> RssSampler {
        let peak = std::sync::Arc::new(AtomicU64::new(0));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            let Some(pid) = pid else { return };
            loop {
                if let Some(s) = ProcStats::read(pid) {
                    p.fetch_max(s.rss_bytes, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssSampler { peak, task }
    }

    fn finish(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Enrolls (or reuses) N identities and connects them; returns the fleet and a report part.
async fn connect_fleet(
    target: &Target,
    s: &Settings,
    opts: FleetOptions,
    metrics: &Metrics,
) -> anyhow::Result<(Fleet, Value)> {
    let admin = target.client()?;
    let started = Instant::now();
    let (creds, enrolled) =
        credentials::enroll(&admin, &target.url, &target.ca_pem, s.agents, s.cache_dir.as_deref()).await?;
    let enroll_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let fleet = Fleet::start(opts, creds, 0);
    let n = s.agents;
    wait_for("every agent to be welcomed", s.timeout, || fleet.connected() >= n).await?;
    let welcomed = started.elapsed().as_secs_f64();
    // The server's own count, so that an agent it has not registered yet is not counted.
    let deadline = Instant::now() + s.timeout;
    loop {
        let gauge = metrics.value("flotilla_agent_connected").await.unwrap_or(0.0);
        if gauge >= n as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server counts {gauge} connected agents of {n}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let part = json!({
        "enrolled_now": enrolled,
        "enroll_seconds": round3(enroll_seconds),
        "seconds_to_all_connected": round3(welcomed),
        "seconds_to_server_count": round3(started.elapsed().as_secs_f64()),
    });
    Ok((fleet, part))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// `connections`: N agents connected and heartbeating; the server's memory and idle CPU;
/// then (when we started it) a server restart and the time until all are back.
pub async fn connections(target: &mut Target, s: &Settings) -> anyhow::Result<Value> {
    let metrics = Metrics::new(&target.url, &target.ca_pem)?;
    let baseline = target.proc();
    let (fleet, part) = connect_fleet(target, s, fleet_options(target, s), &metrics).await?;
    let n = s.agents;
    let mut report = json!({
        "scenario": "connections",
        "agents": n,
        "db": target.db,
        "server_rss_baseline_bytes": baseline.rss_bytes,
    });
    merge(&mut report, part);
    let before = target.proc();
    let started = Instant::now();
    tokio::time::sleep(s.idle).await;
    let after = target.proc();
    let window = started.elapsed().as_secs_f64();
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let per_agent = if n > 0 { after.rss_bytes.saturating_sub(baseline.rss_bytes) / n as u64 } else { 0 };
    merge(
        &mut report,
        json!({
            "server_rss_bytes": after.rss_bytes,
            "server_hwm_bytes": after.hwm_bytes,
            "server_rss_per_agent_bytes": per_agent,
            "idle_window_seconds": round3(window),
            "server_idle_cpu_seconds": round3(cpu),
            "server_idle_cpu_percent": round3(100.0 * cpu / window),
            "server_idle_cpu_us_per_agent_second": if n > 0 { round3(1e6 * cpu / window / n as f64) } else { 0.0 },
        }),
    );
    if let Some(process) = target.process.as_mut() {
        let sessions = Stats::get(&fleet.stats().sessions);
        let started = Instant::now();
        process.restart().await?;
        let server_start = started.elapsed().as_secs_f64();
        let stats = fleet.stats().clone();
        wait_for("every agent to reconnect", s.timeout, || {
            Stats::get(&stats.sessions) >= sessions + n as u64 && fleet.connected() >= n
        })
        .await?;
        merge(
            &mut report,
            json!({
                "server_restart_seconds": round3(server_start),
                "seconds_to_all_reconnected": round3(started.elapsed().as_secs_f64()),
                "server_rss_after_reconnect_bytes": target.proc().rss_bytes,
            }),
        );
    }
    let own = ProcStats::own();
    merge(
        &mut report,
        json!({
            "connect_failures": Stats::get(&fleet.stats().connect_failures),
            "loadgen_rss_bytes": own.rss_bytes,
            "loadgen_rss_per_agent_bytes": if n > 0 { own.rss_bytes / n as u64 } else { 0 },
        }),
    );
    fleet.stop().await;
    Ok(report)
}

const FINAL_COMMAND: &[&str] = &["Success", "Failed", "Cancelled"];
const FINAL_INVOCATION: &[&str] = &["Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated"];

/// Submits `Flotilla-RunShellScript` (`true`) to `targets` and waits until `expected` results
/// are acknowledged to `fleet` and the command is final.
pub async fn fan_out_once(
    client: &Client,
    fleet: &Fleet,
    targets: Vec<String>,
    expected: usize,
    concurrency: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let stats = fleet.stats().clone();
    let acked0 = Stats::get(&stats.results_acked);
    let started = Instant::now();
    let command = client
        .create_command(&CreateCommand {
            document: "Flotilla-RunShellScript".into(),
            document_version: None,
            parameters: [("commands".to_owned(), vec!["true".to_owned()])].into(),
            targets,
            max_concurrency: Some(concurrency.to_owned()),
            max_errors: Some("100%".into()),
            timeout_seconds: None,
            delivery_timeout_seconds: None,
            comment: Some("flotilla-loadgen fanout".into()),
            notify: None,
            notify_on: Vec::new(),
        })
        .await
        .context("cannot create the command")?;
    let submit_seconds = started.elapsed().as_secs_f64();
    let results = wait_for("every result to be acknowledged", timeout, || {
        Stats::get(&stats.results_acked) - acked0 >= expected as u64
    })
    .await;
    let results_seconds = results.map(|d| d.as_secs_f64()).ok();
    // Then the command's own status, as an operator sees it.
    let deadline = started + timeout;
    let final_command = loop {
        let listed = client.list_commands().await.context("cannot list commands")?;
        if let Some(c) = listed.into_iter().find(|c| c.id == command.id)
            && FINAL_COMMAND.contains(&c.status.as_str())
        {
            break c;
        }
        if Instant::now() > deadline {
            bail!("command {} did not finish in {:.0} s", command.id, timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let command_seconds = started.elapsed().as_secs_f64();
    let full = client.get_command(&command.id).await?;
    let invocations = full.invocations.unwrap_or_default();
    let not_final = invocations.iter().filter(|i| !FINAL_INVOCATION.contains(&i.status.as_str())).count();
    let seconds = results_seconds.unwrap_or(command_seconds);
    Ok(json!({
        "max_concurrency": concurrency,
        "command_id": command.id,
        "command_status": final_command.status,
        "counts": final_command.counts,
        "invocations": invocations.len(),
        "invocations_not_final": not_final,
        "submit_seconds": round3(submit_seconds),
        "seconds_to_all_results": results_seconds.map(round3),
        "seconds_to_command_final": round3(command_seconds),
        "invocations_per_second": if seconds > 0.0 { round3(expected as f64 / seconds) } else { 0.0 },
    }))
}

/// `fanout`: one command to all N agents, once per max concurrency.
pub async fn fanout(target: &mut Target, s: &Settings) -> anyhow::Result<Value> {
    let metrics = Metrics::new(&target.url, &target.ca_pem)?;
    let (fleet, part) = connect_fleet(target, s, fleet_options(target, s), &metrics).await?;
    let client = target.client()?;
    let mut report = json!({ "scenario": "fanout", "agents": s.agents, "db": target.db, "delay_ms": s.delay.as_millis() as u64, "fail_rate": s.fail_rate });
    merge(&mut report, part);
    let mut runs = Vec::new();
    let outputs = if s.output_bytes.is_empty() { vec![0] } else { s.output_bytes.clone() };
    for &output_bytes in &outputs {
        fleet.set_output_bytes(output_bytes);
        for concurrency in &s.concurrency {
            let sampler = RssSampler::start(target.pid());
            let mut run = fan_out_once(&client, &fleet, vec!["all".into()], s.agents, concurrency, s.timeout).await?;
            let peak = sampler.finish();
            merge(
                &mut run,
                json!({
                    "output_bytes": output_bytes,
                    "server_peak_rss_bytes": peak,
                    "server_hwm_bytes": target.proc().hwm_bytes,
                }),
            );
            runs.push(run);
        }
    }
    // The first run's figures at the top level, for scripts that read one number.
    if let Some(first) = runs.first().and_then(Value::as_object) {
        for key in [
            "output_bytes",
            "max_concurrency",
            "seconds_to_all_results",
            "invocations_per_second",
            "server_peak_rss_bytes",
        ] {
            if let (Some(v), Some(map)) = (first.get(key), report.as_object_mut()) {
                map.insert(key.to_owned(), v.clone());
            }
        }
    }
    let stats = fleet.stats();
    merge(
        &mut report,
        json!({
            "runs": runs,
            "deliveries": Stats::get(&stats.deliveries),
            "duplicate_deliveries": Stats::get(&stats.duplicate_deliveries),
            "executions": Stats::get(&stats.executions),
            "loadgen_rss_bytes": ProcStats::own().rss_bytes,
        }),
    );
    fleet.stop().await;
    Ok(report)
}

/// One collection over the whole fleet, timed until every report is acknowledged.
async fn collection(fleet: &Fleet, metrics: &Metrics, n: usize, timeout: Duration) -> anyhow::Result<Value> {
    let stats = fleet.stats().clone();
    let acks0 = Stats::get(&stats.inventory_acks) + Stats::get(&stats.inventory_rejected);
    let items0 = Stats::get(&stats.inventory_item_bytes);
    let bytes0 = Stats::get(&stats.inventory_report_bytes);
    let reports0 = metrics.value("flotilla_inventory_reports").await.unwrap_or(0.0);
    fleet.collect_inventory();
    let took = wait_for("every inventory acknowledgement", timeout, || {
        Stats::get(&stats.inventory_acks) + Stats::get(&stats.inventory_rejected) - acks0 >= n as u64
    })
    .await?
    .as_secs_f64();
    let reports = metrics.value("flotilla_inventory_reports").await.unwrap_or(0.0) - reports0;
    Ok(json!({
        "seconds": round3(took),
        "reports_per_second": if took > 0.0 { round3(n as f64 / took) } else { 0.0 },
        "item_bytes_sent": Stats::get(&stats.inventory_item_bytes) - items0,
        "report_bytes_sent": Stats::get(&stats.inventory_report_bytes) - bytes0,
        "server_reports_counted": reports,
    }))
}

/// `inventory`: a full collection from every agent, then a second one (a delta with nothing
/// changed).
pub async fn inventory(target: &mut Target, s: &Settings) -> anyhow::Result<Value> {
    let metrics = Metrics::new(&target.url, &target.ca_pem)?;
    let (fleet, part) = connect_fleet(target, s, fleet_options(target, s), &metrics).await?;
    let mut report = json!({ "scenario": "inventory", "agents": s.agents, "db": target.db });
    merge(&mut report, fleet_fields(&s.fleet));
    merge(&mut report, part);
    let sampler = RssSampler::start(target.pid());
    let full = collection(&fleet, &metrics, s.agents, s.timeout).await?;
    let full_peak = sampler.finish();
    let query = fleet_query(&target.client()?, s.timeout).await?;
    let sampler = RssSampler::start(target.pid());
    let delta = collection(&fleet, &metrics, s.agents, s.timeout).await?;
    let delta_peak = sampler.finish();
    merge(
        &mut report,
        json!({
            "full": full,
            "delta": delta,
            "query": query,
            "server_peak_rss_full_bytes": full_peak,
            "server_peak_rss_delta_bytes": delta_peak,
            "server_hwm_bytes": target.proc().hwm_bytes,
            "rejected": Stats::get(&fleet.stats().inventory_rejected),
        }),
    );
    fleet.stop().await;
    Ok(report)
}

/// The shape of the fleet, for the report.
fn fleet_fields(f: &FleetShape) -> Value {
    json!({ "packages": f.packages, "fleet_images": f.images, "vary_percent": f.vary_percent, "seed": f.seed })
}

/// The fleet query an operator asks first when an advisory comes out: which nodes run openssl
/// older than the fix, through the API the CLI uses (`inventory query`), every page, timed
/// twice (the first may read cold pages).
pub async fn fleet_query(client: &Client, timeout: Duration) -> anyhow::Result<Value> {
    let filters = vec!["name=openssl".to_owned(), "version<1.1.0l-1~deb9u6".to_owned()];
    let mut times = Vec::new();
    let mut nodes = 0usize;
    let mut pages = 0usize;
    for _ in 0..2 {
        let started = Instant::now();
        let (mut after, mut n, mut p) = (None, 0, 0);
        loop {
            let page = client
                .query_inventory(&InventoryQuery {
                    type_name: "Application".into(),
                    filters: filters.clone(),
                    limit: Some(1000),
                    after: after.take(),
                })
                .await
                .context("cannot query the inventory")?;
            n += page.rows.len();
            p += 1;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
            if started.elapsed() > timeout {
                bail!("the fleet query took longer than {:.0} s", timeout.as_secs_f64());
            }
        }
        times.push(round3(started.elapsed().as_secs_f64()));
        (nodes, pages) = (n, p);
    }
    Ok(json!({
        "filters": filters,
        "nodes": nodes,
        "pages": pages,
        "first_seconds": times[0],
        "seconds": times[1],
    }))
}

/// Imports `n` synthetic advisories (`crate::advisories`) through the import API, in the
/// batches `flotilla vulndb import` sends; returns the summary fields for the report.
pub async fn import_synthetic(client: &Client, n: usize, seed: u64) -> anyhow::Result<Value> {
    const BATCH: usize = 1_000;
    let started = Instant::now();
    let (mut accepted, mut rejected) = (0u64, 0usize);
    let mut first_rejection = None;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let records = (i..end)
            .map(|k| {
                let (source, text) = crate::advisories::record(seed, k);
                VulnRecordText { source, text }
            })
            .collect();
        let r = client.vulndb_import(&VulnImport { records }).await.context("cannot import advisories")?;
        accepted += r.new + r.updated + r.unchanged;
        rejected += r.rejected.len();
        if first_rejection.is_none() {
            first_rejection = r.rejected.first().map(|x| format!("{}: {}", x.source, x.reason));
        }
        i = end;
    }
    Ok(json!({
        "advisories_imported": accepted,
        "advisories_rejected": rejected,
        "advisories_first_rejection": first_rejection,
        "import_seconds": round3(started.elapsed().as_secs_f64()),
    }))
}

/// Imports the repository's OSV sample; returns (new + updated + unchanged, rejected).
pub async fn import_osv_sample(client: &Client) -> anyhow::Result<(u64, usize)> {
    let records = flotilla_osv::sample::RECORDS
        .iter()
        .map(|(source, text)| VulnRecordText { source: (*source).to_owned(), text: (*text).to_owned() })
        .collect();
    let result = client.vulndb_import(&VulnImport { records }).await.context("cannot import the OSV sample")?;
    Ok((result.new + result.updated + result.unchanged, result.rejected.len()))
}

/// `assess`: inventory as in `inventory`, the OSV sample imported, then a `cve` assessment of
/// every node, timed until Completed.
pub async fn assess(target: &mut Target, s: &Settings) -> anyhow::Result<Value> {
    let metrics = Metrics::new(&target.url, &target.ca_pem)?;
    let (fleet, part) = connect_fleet(target, s, fleet_options(target, s), &metrics).await?;
    let client = target.client()?;
    let mut report = json!({ "scenario": "assess", "agents": s.agents, "db": target.db, "advisories": s.advisories });
    merge(&mut report, fleet_fields(&s.fleet));
    merge(&mut report, part);
    let ingest = collection(&fleet, &metrics, s.agents, s.timeout).await?;
    let import = if s.advisories == 0 {
        let (advisories, rejected) = import_osv_sample(&client).await?;
        json!({ "advisories_imported": advisories, "advisories_rejected": rejected, "advisories_source": "osv-sample" })
    } else {
        let mut v = import_synthetic(&client, s.advisories, s.fleet.seed).await?;
        merge(&mut v, json!({ "advisories_source": "synthetic" }));
        v
    };
    merge(&mut report, import);
    let started = Instant::now();
    let sampler = RssSampler::start(target.pid());
    let run = client
        .create_assessment(&CreateAssessment {
            targets: vec!["all".into()],
            rules: vec!["cve".into()],
            noncompliant_at: None,
            template: None,
        })
        .await
        .context("cannot start the assessment")?;
    let deadline = started + s.timeout;
    let run = loop {
        let current = client.get_assessment(&run.id).await?;
        if current.status == "Completed" || current.status == "Failed" {
            break current;
        }
        if Instant::now() > deadline {
            bail!("assessment {} still {} after {:.0} s", run.id, current.status, s.timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let peak = sampler.finish();
    let findings: u64 = run.finding_counts.values().sum();
    merge(
        &mut report,
        json!({
            "ingest": ingest,
            "assessment_id": run.id,
            "assessment_status": run.status,
            "assessment_detail": run.detail,
            "assessed_nodes": run.node_count,
            "assess_seconds": round3(seconds),
            "nodes_per_second": if seconds > 0.0 { round3(run.node_count as f64 / seconds) } else { 0.0 },
            "findings": findings,
            "finding_counts": run.finding_counts,
            "server_peak_rss_bytes": peak,
        }),
    );
    fleet.stop().await;
    Ok(report)
}

/// Polls an association's per-node status until `n` nodes have settled (not Pending) from a
/// command other than those in `seen`; returns the seconds taken and the settled rows.
async fn association_settled(
    client: &Client,
    id: &str,
    n: usize,
    seen: &[String],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<(f64, Vec<flotilla_api::AssociationNodeStatus>)> {
    loop {
        let rows = client.association_status(id).await.context("cannot read the association's status")?;
        let fresh: Vec<_> = rows
            .into_iter()
            .filter(|r| r.status != "Pending" && r.command_id.as_ref().is_some_and(|c| !seen.contains(c)))
            .collect();
        if fresh.len() >= n {
            return Ok((started.elapsed().as_secs_f64(), fresh));
        }
        if started.elapsed() > timeout {
            bail!("association {id}: {} of {n} nodes settled in {:.0} s", fresh.len(), timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `associate`: a `Flotilla-DesiredState` association (one file:write) over every agent: the
/// time from creation until every node's status is settled (each run changes the file), then
/// an `apply` until every node reports unchanged — State Manager's reconciler, one command per
/// application, and the settling of every result into status, compliance and events.
pub async fn associate(target: &mut Target, s: &Settings) -> anyhow::Result<Value> {
    let metrics = Metrics::new(&target.url, &target.ca_pem)?;
    let (fleet, part) = connect_fleet(target, s, fleet_options(target, s), &metrics).await?;
    let client = target.client()?;
    let mut report = json!({ "scenario": "associate", "agents": s.agents, "db": target.db });
    merge(&mut report, part);
    let resources =
        json!([{ "action": "file:write", "path": "/etc/motd", "content": "managed by flotilla\n", "mode": "0644" }]);
    let concurrency = s.concurrency.first().cloned().unwrap_or_else(|| "100%".into());
    let sampler = RssSampler::start(target.pid());
    let started = Instant::now();
    let association = client
        .create_association(&flotilla_api::AssociationRequest {
            name: Some(format!("loadgen-motd-{}", std::process::id())),
            document: Some("Flotilla-DesiredState".into()),
            parameters: Some([("resources".to_owned(), vec![resources.to_string()])].into()),
            targets: Some(vec!["all".into()]),
            max_concurrency: Some(concurrency.clone()),
            ..Default::default()
        })
        .await
        .context("cannot create the association")?;
    let (first_seconds, first) =
        association_settled(&client, &association.id, s.agents, &[], started, s.timeout).await?;
    let seen: Vec<String> = first.iter().filter_map(|r| r.command_id.clone()).collect();
    let started = Instant::now();
    client.apply_association(&association.id).await.context("cannot apply the association")?;
    let (second_seconds, second) =
        association_settled(&client, &association.id, s.agents, &seen, started, s.timeout).await?;
    let peak = sampler.finish();
    let count = |rows: &[flotilla_api::AssociationNodeStatus], status: &str, changed: bool| {
        rows.iter().filter(|r| r.status == status && r.changed == Some(changed)).count()
    };
    let compliance = client.compliance_summary(Some("Association")).await?;
    merge(
        &mut report,
        json!({
            "max_concurrency": concurrency,
            "seconds_to_applied": round3(first_seconds),
            "nodes_per_second": if first_seconds > 0.0 { round3(s.agents as f64 / first_seconds) } else { 0.0 },
            "first_run_changed": count(&first, "Success", true),
            "seconds_to_reapplied": round3(second_seconds),
            "second_run_unchanged": count(&second, "Success", false),
            "compliant_nodes": compliance.first().map_or(0, |c| c.compliant),
            "server_peak_rss_bytes": peak,
            "executions": Stats::get(&fleet.stats().executions),
            "loadgen_rss_bytes": ProcStats::own().rss_bytes,
        }),
    );
    fleet.stop().await;
    Ok(report)
}
