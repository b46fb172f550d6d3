//! Vulnerability assessment runs: Created → CollectingData → EvaluatingRules → Completed | Failed.
//!
//! - `cve` is evaluated here, from each node's stored inventory (InstanceInformation and
//!   Application) against the advisory database (`vulndb::assess_node`); no agent work.
//! - `security-best-practices` and `network-reachability` run on the nodes, as commands of the
//!   built-in documents (CollectingData); their output is the JSON array of findings.
//! - Reports go to the artifact store (encrypted like every artifact): each node's outcome and
//!   findings as `assessments/RUN/nodes/NODE.json` when it is evaluated, and the run with every
//!   node's status as `assessments/RUN/run.json` on completion.
//! - On completion every node's findings (sorted by severity) replace its `Finding` inventory and
//!   its `Compliance` item (type Vulnerability: non-compliant when a finding is at or above the
//!   run's threshold); one `FindingReported` event per node and `AssessmentRunCompleted` are
//!   published.
//!
//! Invariants: no cap on nodes per run, and no silent truncation: every node of the run ends
//! with a status and every finding is stored. A node whose OS has no advisory data is
//! NotAssessable, never clean, and so is a node whose release has no record in the advisory
//! database (an empty database assesses nothing). Advisory data older than `advisory_max_age`
//! still assesses, but the run, the node and each of its findings carry its age. The driver is idempotent per node, so a run interrupted by a
//! restart is resumed from its stored state.

pub mod http;
pub mod templates;
pub mod vulndb;
pub mod vulndb_http;

pub use templates::{delete_template, list_templates, put_template};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::assessment::{NodeStatus, RunStatus};
use flotilla_core::command::{CommandStatus, InvocationStatus};
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};
use flotilla_core::{EventType, NodeId, Severity};
use flotilla_document::{ASSESS_BEST_PRACTICES, ASSESS_NETWORK_REACHABILITY};
use flotilla_store::ComplianceItem;
use flotilla_store::{
    AssessmentNodeRecord, AssessmentRunRecord, FindingRecord, InventoryChange, InvocationRecord, NodeAssessment,
};
use flotilla_vuln::{Coverage, EcosystemHoldings, InstalledPackage, OsFacts, Staleness, Verdicts};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use crate::app::AppState;
use crate::assessments::vulndb::AdvisoryCache;
use crate::platform::{ServiceError, now_ms};

pub const RULE_CVE: &str = "cve";
pub const RULE_BEST_PRACTICES: &str = "security-best-practices";
pub const RULE_NETWORK: &str = "network-reachability";
const RULES: &[&str] = &[RULE_CVE, RULE_BEST_PRACTICES, RULE_NETWORK];
/// Findings on installed kernels that are not the running one: reported apart.
const RULE_INACTIVE_KERNEL: &str = "cve-inactive-kernel";
/// Nodes evaluated at once (each is a few store reads and one write).
const PARALLEL_NODES: usize = 8;
/// Most evaluated nodes stored in one transaction.
const WRITE_BATCH: usize = 64;
/// How long node-side checks wait for delivery unless a template says otherwise.
const DEFAULT_DURATION_SECONDS: u32 = 600;
fn document_of(rule: &str) -> Option<&'static str> {
    match rule {
        RULE_BEST_PRACTICES => Some(ASSESS_BEST_PRACTICES),
        RULE_NETWORK => Some(ASSESS_NETWORK_REACHABILITY),
        _ => None,
    }
}

/// A severity as an operator wrote it (any case).
pub(crate) fn parse_severity(text: &str) -> Result<Severity, ServiceError> {
    Severity::parse_ignoring_case(text)
        .map_err(|_| ServiceError::Invalid(format!("severity `{text}` is not one of High, Medium, Low, Informational")))
}

/// Findings per severity, as the API and the stored counts spell them.
fn counts_by_name(counts: &BTreeMap<Severity, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(s, n)| (s.as_str().to_owned(), *n)).collect()
}

/// What an operator asks for when starting a run; what it leaves out comes from its template,
/// if it names one, or the defaults.
#[derive(Debug, Clone, Default)]
pub struct NewAssessment {
    pub template: Option<String>,
    pub targets: Vec<String>,
    pub rules: Vec<String>,
    pub noncompliant_at: Option<Severity>,
}

/// A run with the status of each of its nodes (`assess show`).
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: AssessmentRunRecord,
    pub nodes: Vec<AssessmentNodeRecord>,
}

/// A finding as an operator reads it: the finding and the age of the advisories it came from.
#[derive(Debug, Clone)]
pub struct FindingView {
    pub finding: FindingRecord,
    pub advisories_age_days: Option<i64>,
}

fn checked_rules(rules: Vec<String>) -> Result<Vec<String>, ServiceError> {
    let rules: Vec<String> = if rules.is_empty() { RULES.iter().map(|r| (*r).to_owned()).collect() } else { rules };
    if let Some(bad) = rules.iter().find(|r| !RULES.contains(&r.as_str())) {
        return Err(ServiceError::Invalid(format!("unknown rules package `{bad}`: use {}", RULES.join(", "))));
    }
    Ok(rules)
}

/// `POST /api/v1/assessments`: resolves the targets now and starts the run. Values the
/// request leaves out come from its template, if it names one.
pub async fn create(state: &Arc<AppState>, mut req: NewAssessment) -> Result<AssessmentRunRecord, ServiceError> {
    let mut duration_seconds = i64::from(DEFAULT_DURATION_SECONDS);
    if let Some(name) = &req.template {
        let template =
            state.store.list_assessment_templates().await?.into_iter().find(|t| &t.name == name).ok_or_else(|| {
                ServiceError::missing("assessment template", name, "list them with `flotilla assess templates ls`")
            })?;
        if req.targets.is_empty() {
            req.targets = template.targets;
        }
        if req.rules.is_empty() {
            req.rules = template.rules;
        }
        req.noncompliant_at = req.noncompliant_at.or(Some(template.noncompliant_at));
        duration_seconds = template.duration_seconds;
    }
    let rules = checked_rules(req.rules)?;
    let noncompliant_at = req.noncompliant_at.unwrap_or(Severity::High);
    let targets = if req.targets.is_empty() { vec!["all".to_owned()] } else { req.targets };
    let nodes = crate::fleet::list_nodes(state, &targets).await?;
    let deregistered = flotilla_core::NodeStatus::Deregistered;
    let node_ids: Vec<String> =
        nodes.into_iter().filter(|n| n.status != deregistered).map(|n| n.id.to_string()).collect();
    if node_ids.is_empty() {
        return Err(ServiceError::Invalid(format!("the targets {} match no node", targets.join(" "))));
    }
    let run = AssessmentRunRecord {
        id: format!("ar-{}", hex(&crate::platform::secret::random_bytes::<8>())),
        targets,
        rules,
        noncompliant_at,
        duration_seconds,
        status: RunStatus::Created,
        node_count: i64::try_from(node_ids.len()).unwrap_or(i64::MAX),
        finding_counts: "{}".into(),
        command_ids: Vec::new(),
        detail: String::new(),
        created_at: now_ms(),
        ended_at: None,
    };
    state.store.create_assessment_run(&run, &node_ids).await?;
    tracing::info!(run = %run.id, nodes = node_ids.len(), rules = ?run.rules, "assessment run created");
    spawn(state.clone(), run.id.clone());
    Ok(run)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Drives run `id` as the transient worker `assessment-run ID` (listed while it runs; a panic
/// restarts it with backoff, and every step resumes from the stored status).
pub fn spawn(state: Arc<AppState>, id: String) {
    let workers = state.workers.clone();
    let name = format!("assessment-run {id}");
    let started = workers.spawn_transient(name, move |ctx| {
        let (state, id) = (state.clone(), id.clone());
        async move {
            ctx.running();
            // Stopping mid-step is safe: every step is idempotent per node and the run resumes
            // from its stored status at the next start.
            let outcome = tokio::select! {
                () = ctx.cancelled() => return Ok(()),
                outcome = drive(&state, &id) => outcome,
            };
            if let Err(e) = outcome {
                tracing::error!(run = %id, "assessment run failed: {e}");
                if let Ok(Some(mut run)) = state.store.get_assessment_run(&id).await {
                    run.status = RunStatus::Failed;
                    run.detail = e.to_string();
                    run.ended_at = Some(now_ms());
                    let _ = state.store.update_assessment_run(&run).await;
                }
            }
            Ok(())
        }
    });
    if let Err(e) = started {
        // Already being driven (a resume racing a create): one driver is enough.
        tracing::debug!("{e}");
    }
}

/// At start-up: every unfinished run continues where it was.
pub async fn resume(state: &Arc<AppState>) -> Result<(), ServiceError> {
    for run in state.store.unfinished_assessment_runs().await? {
        tracing::info!(run = %run.id, status = %run.status, "resuming assessment run");
        spawn(state.clone(), run.id);
    }
    Ok(())
}

async fn drive(state: &Arc<AppState>, id: &str) -> Result<(), ServiceError> {
    let mut run =
        state.store.get_assessment_run(id).await?.ok_or_else(|| ServiceError::missing("assessment run", id, ""))?;
    let agent_rules: Vec<String> = run.rules.iter().filter(|r| document_of(r).is_some()).cloned().collect();
    if run.status == RunStatus::Created {
        run.status = if agent_rules.is_empty() { RunStatus::EvaluatingRules } else { RunStatus::CollectingData };
        for rule in &agent_rules {
            let document = document_of(rule).unwrap_or_default();
            let command = crate::runcommand::commands::create(
                state,
                crate::runcommand::commands::NewCommand {
                    document: document.into(),
                    targets: run.targets.clone(),
                    max_concurrency: Some("100%".into()),
                    max_errors: Some("100%".into()),
                    delivery_timeout_seconds: u32::try_from(run.duration_seconds).ok(),
                    comment: Some(format!("assessment {}: {rule}", run.id)),
                    ..Default::default()
                },
            )
            .await?;
            run.command_ids.push(command.record.id);
        }
        state.store.update_assessment_run(&run).await?;
    }
    if run.status == RunStatus::CollectingData {
        for command in &run.command_ids {
            wait_for_command(state, command).await?;
        }
        run.status = RunStatus::EvaluatingRules;
        state.store.update_assessment_run(&run).await?;
    }
    // Node-side results, per rule: node → invocation.
    let mut checks: Vec<(String, String, HashMap<String, InvocationRecord>)> = Vec::new();
    for (rule, command) in agent_rules.iter().zip(&run.command_ids) {
        let invocations = state.store.list_invocations(command).await?;
        checks.push((rule.clone(), command.clone(), invocations.into_iter().map(|i| (i.node_id.clone(), i)).collect()));
    }
    let cve = CveContext {
        cache: AdvisoryCache::new(),
        verdicts: Verdicts::default(),
        holdings: advisory_holdings(state).await?,
        now_micros: now_ms().saturating_mul(1000),
        max_age_micros: i64::try_from(state.config.advisory_max_age.as_micros()).unwrap_or(i64::MAX),
    };
    let nodes = state.store.assessment_nodes(&run.id).await?;
    // Each node in a task of its own: evaluating one is mostly CPU (version matching, the
    // report), which futures polled in this one task would keep on one core. A writer stores
    // what was evaluated meanwhile in one transaction, while the next nodes are evaluated.
    let shared = Arc::new((run.clone(), checks, cve));
    let (done, mut evaluated) = tokio::sync::mpsc::channel::<NodeResult>(WRITE_BATCH * 2);
    let writer = {
        let (state, run_id) = (state.clone(), run.id.clone());
        tokio::spawn(async move {
            let (mut batch, mut outcomes) = (Vec::with_capacity(WRITE_BATCH), Vec::new());
            while evaluated.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                let nodes: Vec<NodeAssessment> = batch
                    .drain(..)
                    .map(|r: NodeResult| {
                        outcomes.push(r.outcome);
                        r.stored
                    })
                    .collect();
                state.store.record_node_assessments(&run_id, &nodes, now_ms()).await?;
            }
            Ok::<_, ServiceError>(outcomes)
        })
    };
    let mut tasks = futures::stream::iter(nodes)
        .map(|node| {
            let (state, shared) = (state.clone(), shared.clone());
            tokio::spawn(async move {
                let (run, checks, cve) = &*shared;
                evaluate_node(&state, run, &node.node_id, checks, cve).await
            })
        })
        .buffer_unordered(PARALLEL_NODES);
    while let Some(joined) = tasks.next().await {
        let result = joined.map_err(|e| ServiceError::Internal(format!("a node's assessment task failed: {e}")))??;
        if done.send(result).await.is_err() {
            break; // the writer failed: its error is the run's
        }
    }
    drop(done);
    let outcomes = writer.await.map_err(|e| ServiceError::Internal(format!("the assessment writer failed: {e}")))??;
    let mut counts: BTreeMap<Severity, u64> = BTreeMap::new();
    let mut stale: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_assessable = 0;
    for outcome in outcomes {
        for (severity, n) in outcome.counts {
            *counts.entry(severity).or_default() += n;
        }
        if let Some(s) = outcome.stale {
            let days = stale.entry(s.ecosystems.join(", ")).or_default();
            *days = (*days).max(s.days);
        }
        not_assessable += u64::from(outcome.not_assessable);
    }
    run.detail = run_detail(&stale, not_assessable, state.config.advisory_max_age);
    run.finding_counts = serde_json::to_string(&counts_by_name(&counts)).unwrap_or_else(|_| "{}".into());
    run.status = RunStatus::Completed;
    run.ended_at = Some(now_ms());
    // The kept report has the shape a run has in the API, so it is written by the same conversion.
    let summary = http::run_to_api(&run, Some(state.store.assessment_nodes(&run.id).await?));
    let report = serde_json::to_vec_pretty(&summary).map_err(|e| ServiceError::Internal(e.to_string()))?;
    put_report(state, &format!("assessments/{}/run.json", run.id), report).await?;
    state.store.update_assessment_run(&run).await?;
    tracing::info!(run = %run.id, counts = ?counts_by_name(&counts), "assessment run completed");
    Ok(())
}

/// The run's caveats, for its `detail`: advisory data past its maximum age (per set of
/// ecosystems, the oldest first in the text) and how many nodes could not be assessed.
fn run_detail(stale: &BTreeMap<String, u64>, not_assessable: u64, max_age: Duration) -> String {
    let mut parts = Vec::new();
    if let Some(worst) = stale.values().max() {
        let each: Vec<String> = stale.iter().map(|(ecosystems, days)| format!("{ecosystems}: {days} days")).collect();
        parts.push(format!(
            "advisories {worst} days old ({}; older than advisory_max_age {}): import fresh ones with `flotilla vulndb import`",
            each.join(", "),
            humantime::format_duration(max_age)
        ));
    }
    if not_assessable > 0 {
        parts.push(format!("{not_assessable} node(s) not assessable: see `flotilla assess show` for why"));
    }
    parts.join("; ")
}

/// What the database holds per ecosystem key, read once per run.
async fn advisory_holdings(state: &AppState) -> Result<Vec<EcosystemHoldings>, ServiceError> {
    let stats = state.store.advisory_stats().await?;
    Ok(stats
        .ecosystems
        .into_iter()
        .map(|(key, advisories, newest_modified_micros)| EcosystemHoldings { key, advisories, newest_modified_micros })
        .collect())
}

/// Shared by every node of a run's `cve` rule.
struct CveContext {
    cache: AdvisoryCache,
    /// The run's verdicts by package version: its advisories as first read in the run, like `cache`.
    verdicts: Verdicts,
    holdings: Vec<EcosystemHoldings>,
    now_micros: i64,
    max_age_micros: i64,
}

/// A node evaluated: what is stored for it and what it adds to the run's totals.
struct NodeResult {
    stored: NodeAssessment,
    outcome: NodeOutcome,
}

/// One node's part of a run.
struct NodeOutcome {
    counts: BTreeMap<Severity, u64>,
    stale: Option<Staleness>,
    not_assessable: bool,
}

fn is_final(status: &str) -> bool {
    status.parse::<CommandStatus>().is_ok_and(CommandStatus::is_terminal)
}

/// Waits for the command's final `Command.StatusChanged` event in the event log.
async fn wait_for_command(state: &AppState, id: &str) -> Result<(), ServiceError> {
    // The position is taken BEFORE the status is read: a command that ends after the read
    // has its event after the position, so it cannot slip between the two.
    let from = state.events.last().await?;
    let command =
        state.store.get_command(id).await?.ok_or_else(|| {
            ServiceError::missing_with("command", id, format!("the assessment's command `{id}` is gone"))
        })?;
    if command.status.is_terminal() {
        return Ok(());
    }
    let mut events = state.events.subscribe(from, vec![EventType::CommandStatusChanged]);
    loop {
        for event in events.next().await? {
            if event.resources.first().map(String::as_str) == Some(id)
                && event.detail.get("status").and_then(Value::as_str).is_some_and(is_final)
            {
                return Ok(());
            }
        }
    }
}

/// What an agent reports per check finding.
#[derive(Deserialize)]
struct CheckFinding {
    rule: String,
    id: String,
    severity: String,
    title: String,
    detail: String,
}

async fn evaluate_node(
    state: &AppState,
    run: &AssessmentRunRecord,
    node: &str,
    checks: &[(String, String, HashMap<String, InvocationRecord>)],
    cve_context: &CveContext,
) -> Result<NodeResult, ServiceError> {
    let node_id: NodeId =
        node.parse().map_err(|e: flotilla_core::NodeIdError| ServiceError::Internal(e.to_string()))?;
    let mut findings: Vec<FindingRecord> = Vec::new();
    let mut status = NodeStatus::Assessed;
    let mut notes: Vec<String> = Vec::new();
    let mut stale: Option<Staleness> = None;
    let finding = |rule: &str, advisory_id: String, severity: Severity, title: String| FindingRecord {
        run_id: run.id.clone(),
        node_id: node.to_owned(),
        rule: rule.to_owned(),
        advisory_id,
        aliases: Vec::new(),
        package: String::new(),
        installed_version: String::new(),
        fixed_version: None,
        severity,
        score: None,
        title,
    };
    if run.rules.iter().any(|r| r == RULE_CVE) {
        match cve(state, &node_id, cve_context).await? {
            CveOutcome::NoInventory => {
                status = NodeStatus::NotAssessable;
                notes.push("no inventory yet: collect it (Flotilla-CollectInventory) and assess again".into());
            }
            CveOutcome::UnknownOs(os) => {
                status = NodeStatus::NotAssessable;
                notes.push(format!("no advisory data for {os}: not assessed for CVEs (this is not a clean bill)"));
            }
            CveOutcome::NoAdvisories(ecosystems) => {
                status = NodeStatus::NotAssessable;
                notes.push(format!(
                    "no advisories for {}: import them with `flotilla vulndb import`",
                    ecosystems.join(" or ")
                ));
            }
            CveOutcome::Report(report, staleness) => {
                if let Some(s) = &staleness {
                    notes.push(format!(
                        "advisories {} days old for {} (older than advisory_max_age {}): import fresh ones with \
                         `flotilla vulndb import`",
                        s.days,
                        s.ecosystems.join(", "),
                        humantime::format_duration(state.config.advisory_max_age)
                    ));
                }
                stale = staleness;
                for (list, rule) in
                    [(&report.findings, RULE_CVE), (&report.not_running_kernel_findings, RULE_INACTIVE_KERNEL)]
                {
                    for f in list {
                        findings.push(FindingRecord {
                            aliases: f.aliases.clone(),
                            package: f.package.clone(),
                            installed_version: f.installed_version.clone(),
                            fixed_version: f.fixed_version.clone(),
                            score: f.score.map(|s| format!("{s:.1}")),
                            ..finding(rule, f.advisory_id.clone(), f.severity, f.title.clone())
                        });
                    }
                }
                if !report.errors.is_empty() {
                    notes.push(format!(
                        "{} package(s) not assessable: {}",
                        report.errors.len(),
                        report.errors.iter().take(3).map(ToString::to_string).collect::<Vec<_>>().join("; ")
                    ));
                }
            }
        }
    }
    for (rule, command, invocations) in checks {
        let Some(invocation) = invocations.get(node) else { continue };
        if invocation.status != InvocationStatus::Success {
            status = if status == NodeStatus::Assessed { NodeStatus::Incomplete } else { status };
            notes.push(format!("{rule} checks did not run: invocation {} ({})", invocation.status, invocation.detail));
            continue;
        }
        let text = if invocation.stdout_truncated {
            String::from_utf8_lossy(&crate::runcommand::commands::output(state, command, node, "stdout").await?)
                .into_owned()
        } else {
            invocation.stdout.clone()
        };
        match serde_json::from_str::<Vec<CheckFinding>>(text.trim()) {
            Ok(list) => findings.extend(list.into_iter().filter(|c| c.rule == *rule).map(|c| {
                let title = format!("{} ({})", c.title, c.detail);
                // An agent's unknown level is reported as Medium, a known but unrated problem
                // (the rule the advisory database follows).
                finding(rule, c.id, parse_severity(&c.severity).unwrap_or(Severity::Medium), title)
            })),
            Err(e) => {
                status = if status == NodeStatus::Assessed { NodeStatus::Incomplete } else { status };
                notes.push(format!("{rule}: the agent's report is unreadable ({e}); upgrade the agent"));
            }
        }
    }
    findings.sort_by(|a, b| {
        let score = |f: &FindingRecord| f.score.as_deref().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        a.severity
            .cmp(&b.severity)
            .then(score(b).total_cmp(&score(a)))
            .then(a.package.cmp(&b.package))
            .then(a.advisory_id.cmp(&b.advisory_id))
    });
    let age_days = stale.as_ref().map(|s| i64::try_from(s.days).unwrap_or(i64::MAX));
    let record = AssessmentNodeRecord {
        node_id: node.to_owned(),
        status,
        detail: notes.join("; "),
        advisories_age_days: age_days,
    };
    let report = serde_json::json!({
        "run_id": run.id,
        "node_id": node,
        "status": record.status.as_str(),
        "detail": record.detail,
        "advisories_age_days": age_days,
        "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
    });
    // Compact: a run writes one per node, and at 200 findings pretty-printing doubles it.
    let report = serde_json::to_vec(&report).map_err(|e| ServiceError::Internal(e.to_string()))?;
    put_report(state, &format!("assessments/{}/nodes/{node}.json", run.id), report).await?;

    let mut counts: BTreeMap<Severity, u64> = BTreeMap::new();
    for f in &findings {
        *counts.entry(f.severity).or_default() += 1;
    }
    let (inventory, compliance) = inventory_of(&node_id, run, &findings, &counts, status, age_days);
    Ok(NodeResult {
        stored: NodeAssessment { record, findings, inventory, compliance: vec![compliance] },
        outcome: NodeOutcome { counts, stale, not_assessable: status == NodeStatus::NotAssessable },
    })
}

enum CveOutcome {
    NoInventory,
    UnknownOs(String),
    /// The node's release is known but the database holds no record for it.
    NoAdvisories(Vec<String>),
    Report(flotilla_vuln::NodeVulnReport, Option<Staleness>),
}

async fn cve(state: &AppState, node: &NodeId, context: &CveContext) -> Result<CveOutcome, ServiceError> {
    let info = state.store.inventory_items(node, "InstanceInformation").await?;
    let Some(info) = info.first().and_then(|i| serde_json::from_str::<Value>(i).ok()) else {
        return Ok(CveOutcome::NoInventory);
    };
    let text = |k: &str| info.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let os = OsFacts {
        id: text("os_id"),
        version_id: text("os_version"),
        kernel_release: Some(text("kernel")).filter(|k| !k.is_empty()),
    };
    let unknown = || CveOutcome::UnknownOs(format!("{} {}", os.id, os.version_id).trim().to_owned());
    let Some(ecosystems) = flotilla_vuln::ecosystems_for_os(&os.id, &os.version_id) else {
        return Ok(unknown());
    };
    let keys: Vec<String> = ecosystems.iter().map(|e| e.key().to_owned()).collect();
    let staleness = match flotilla_vuln::coverage(&keys, &context.holdings, context.now_micros, context.max_age_micros)
    {
        Coverage::NoAdvisories { ecosystems } => return Ok(CveOutcome::NoAdvisories(ecosystems)),
        Coverage::Covered { stale } => stale,
    };
    let packages: Vec<InstalledPackage> = state
        .store
        .inventory_items(node, "Application")
        .await?
        .iter()
        .filter_map(|i| serde_json::from_str::<flotilla_inventory::Application>(i).ok())
        .map(|a| InstalledPackage {
            name: a.name,
            version: a.version,
            arch: a.arch.unwrap_or_default(),
            source_name: a.source_name,
            source_version: a.source_version,
            package_manager: a.package_manager,
            epoch: a.epoch,
        })
        .collect();
    let report = crate::assessments::vulndb::assess_node(
        state.store.as_ref(),
        &context.cache,
        &context.verdicts,
        &os,
        &packages,
    )
    .await?;
    if !report.assessable {
        return Ok(unknown());
    }
    Ok(CveOutcome::Report(report, staleness))
}

/// The node's `Finding` items become this run's findings; its `Compliance` item (and the
/// compliance item beside associations and patches) says whether any reaches the run's threshold.
fn inventory_of(
    node: &NodeId,
    run: &AssessmentRunRecord,
    findings: &[FindingRecord],
    counts: &BTreeMap<Severity, u64>,
    status: NodeStatus,
    advisories_age_days: Option<i64>,
) -> (Vec<InventoryChange>, ComplianceItem) {
    let items: Vec<(Option<String>, String)> = findings
        .iter()
        .map(|f| {
            let mut item = finding_json(f);
            item["advisories_age_days"] = serde_json::json!(advisories_age_days);
            (Some(f.package.clone()), item.to_string())
        })
        .collect();
    let worst = findings.iter().map(|f| f.severity).min();
    let compliance_status = match (status, worst) {
        (NodeStatus::NotAssessable, _) => "NOT_ASSESSABLE",
        (_, Some(worst)) if worst <= run.noncompliant_at => "NON_COMPLIANT",
        _ => "COMPLIANT",
    };
    let severity = worst.map_or("None", Severity::as_str);
    let summary: Vec<String> = counts_by_name(counts).iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut detail =
        format!("run {}: {}", run.id, if summary.is_empty() { "no findings".into() } else { summary.join(", ") });
    if let Some(days) = advisories_age_days {
        detail.push_str(&format!(" (advisories {days} days old)"));
    }
    let compliance = serde_json::json!({
        "compliance_type": "Vulnerability",
        "status": compliance_status,
        "severity": severity,
        "detail": detail,
        "advisories_age_days": advisories_age_days,
    });
    let changes = vec![
        InventoryChange::Replace {
            type_name: "Finding".into(),
            content_hash: format!("{}-{}", run.id, findings.len()),
            items,
        },
        InventoryChange::Replace {
            type_name: "Compliance".into(),
            content_hash: format!("{}-{compliance_status}", run.id),
            items: vec![(None, compliance.to_string())],
        },
    ];
    // Not assessable is never compliant.
    let item = ComplianceItem {
        node_id: node.to_string(),
        kind: ComplianceType::Vulnerability,
        item_id: "assessment".into(),
        title: format!("vulnerability assessment ({})", run.rules.join(", ")),
        status: if compliance_status == "COMPLIANT" {
            ComplianceStatus::Compliant
        } else {
            ComplianceStatus::NonCompliant
        },
        severity: worst.map_or(ComplianceSeverity::Unspecified, ComplianceSeverity::from_vulnerability),
        detail: if status == NodeStatus::NotAssessable { format!("not assessable; {detail}") } else { detail.clone() },
        execution_id: run.id.clone(),
        time: now_ms(),
    };
    (changes, item)
}

/// Keeps a report in the artifact store. A run whose history cannot be kept fails (and is
/// resumed from its stored state after a restart) rather than completing without it.
async fn put_report(state: &AppState, name: &str, report: Vec<u8>) -> Result<(), ServiceError> {
    state
        .artifacts
        .put(name, report)
        .await
        .map_err(|e| ServiceError::Internal(format!("cannot keep the assessment report {name}: {e}")))
}

/// A finding as the node's `Finding` inventory and the reports hold it.
fn finding_json(f: &FindingRecord) -> Value {
    serde_json::json!({
        "run_id": f.run_id,
        "rule": f.rule,
        "advisory_id": f.advisory_id,
        "aliases": f.aliases,
        "package": f.package,
        "installed_version": f.installed_version,
        "fixed_version": f.fixed_version,
        "severity": f.severity.as_str(),
        "score": f.score,
        "title": f.title,
    })
}

pub async fn list(state: &AppState) -> Result<Vec<AssessmentRunRecord>, ServiceError> {
    Ok(state.store.list_assessment_runs().await?)
}

pub async fn show(state: &AppState, id: &str) -> Result<RunDetail, ServiceError> {
    let run = state
        .store
        .get_assessment_run(id)
        .await?
        .ok_or_else(|| ServiceError::missing("assessment run", id, "list them with `flotilla assess ls`"))?;
    let nodes = state.store.assessment_nodes(id).await?;
    Ok(RunDetail { run, nodes })
}

/// `GET /api/v1/findings`: a run's findings, or every node's latest (its `Finding` inventory),
/// most severe first.
pub async fn findings(
    state: &AppState,
    node: Option<&str>,
    severity: Option<Severity>,
    run: Option<&str>,
) -> Result<Vec<FindingView>, ServiceError> {
    if let Some(node) = node {
        let id: NodeId = node.parse().map_err(|e: flotilla_core::NodeIdError| ServiceError::Invalid(e.to_string()))?;
        if state.store.get_node(&id).await?.is_none() {
            return Err(ServiceError::missing("node", node, ""));
        }
    }
    let mut out: Vec<FindingView> = match run {
        Some(run) => {
            if state.store.get_assessment_run(run).await?.is_none() {
                return Err(ServiceError::missing("assessment run", run, ""));
            }
            let ages: HashMap<String, i64> = state
                .store
                .assessment_nodes(run)
                .await?
                .into_iter()
                .filter_map(|n| Some((n.node_id, n.advisories_age_days?)))
                .collect();
            state
                .store
                .run_findings(run, node)
                .await?
                .into_iter()
                .map(|f| FindingView { advisories_age_days: ages.get(&f.node_id).copied(), finding: f })
                .collect()
        }
        None => latest(state, node).await?,
    };
    if let Some(severity) = severity {
        out.retain(|f| f.finding.severity == severity);
    }
    out.sort_by(|a, b| a.finding.severity.cmp(&b.finding.severity).then(a.finding.node_id.cmp(&b.finding.node_id)));
    Ok(out)
}

/// Each node's findings from its latest assessment, read from its `Finding` inventory. Only
/// this server writes those items; one it cannot read (no known severity) is logged and left
/// out rather than shown with a made-up severity.
async fn latest(state: &AppState, node: Option<&str>) -> Result<Vec<FindingView>, ServiceError> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = state.store.inventory_scan("Finding", None, after.as_deref(), 1000).await?;
        let Some((last, _)) = batch.last() else { break };
        after = Some(last.clone());
        rows.extend(batch.into_iter().filter(|(n, _)| node.is_none_or(|want| want == n)));
    }
    Ok(rows
        .into_iter()
        .filter_map(|(node_id, item)| {
            let v: Value = serde_json::from_str(&item).ok()?;
            let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            let text = s("severity").unwrap_or_default();
            let Ok(severity) = text.parse::<Severity>() else {
                tracing::warn!(node = %node_id, "Finding item with unknown severity `{text}` left out");
                return None;
            };
            Some(FindingView {
                finding: FindingRecord {
                    run_id: s("run_id").unwrap_or_default(),
                    node_id,
                    rule: s("rule").unwrap_or_default(),
                    advisory_id: s("advisory_id").unwrap_or_default(),
                    aliases: v
                        .get("aliases")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    package: s("package").unwrap_or_default(),
                    installed_version: s("installed_version").unwrap_or_default(),
                    fixed_version: s("fixed_version"),
                    severity,
                    score: s("score"),
                    title: s("title").unwrap_or_default(),
                },
                advisories_age_days: v.get("advisories_age_days").and_then(Value::as_i64),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_parse_in_any_case_and_order_high_first() {
        let mut list = vec![Severity::Low, Severity::Informational, Severity::High, Severity::Medium];
        list.sort();
        assert_eq!(list, [Severity::High, Severity::Medium, Severity::Low, Severity::Informational]);
        assert!(parse_severity("critical").is_err());
        assert_eq!(parse_severity("medium").ok(), Some(Severity::Medium));
    }
}
