//! A `patch:baseline` step: ask the server for this node's snapshot (its baseline and the
//! fixes its last assessment found), ask the node's package manager (`crate::patch`) what its
//! repositories offer, evaluate the baseline with `flotilla_core::patch`, install what it
//! approves (Install), report every package's state, and reboot when the document says so and
//! the node needs it — only after the invocation's result is spooled, so it survives the reboot.
//!
//! What Patch Manager installed and what failed is remembered in `patch-memory.json` in the
//! state directory (AWS keeps the same in its tracking files): it is what makes a package
//! INSTALLED_PENDING_REBOOT or FAILED on a later Scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use flotilla_api as api;
use flotilla_core::compliance::ComplianceSeverity;
use flotilla_core::patch::{self as rules, Candidate, Memory, Operation, RebootOption, StepInputs};
use flotilla_proto::v1::{PatchRequest, PatchRequestKind, PatchResponse, agent_message};
use flotilla_vuln::{Ecosystem, PackageVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::invocation::{Outbox, send};
use crate::patch::{OperationLog, PackageManager, Scan, Wanted};

/// How long the server may take to answer a snapshot or store a report.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a reboot waits for the server to acknowledge the invocation's result.
const REBOOT_ACK_WAIT: Duration = Duration::from_secs(30);

/// What a finished step tells the runner.
pub struct StepOutcome {
    pub success: bool,
    /// The invocation's detail when it failed.
    pub detail: String,
    /// The operation's log, the step's output.
    pub log: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MemoryFile {
    /// name → (version, Unix ms) installed by Patch Manager.
    #[serde(default)]
    patched: BTreeMap<String, (String, i64)>,
    /// name → the version whose install failed.
    #[serde(default)]
    failed: BTreeMap<String, String>,
}

pub struct Patching {
    root: PathBuf,
    memory_file: PathBuf,
    outbox: Outbox,
    waiting: Mutex<HashMap<String, oneshot::Sender<PatchResponse>>>,
    /// One operation at a time: two would fight over the package manager's lock.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Invocations whose Install asked for a reboot once their result is spooled.
    reboots: Mutex<BTreeSet<String>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// When the machine booted, in Unix ms (`btime` of /proc/stat); 0 when unknown.
fn boot_ms() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<i64>().ok()))
        .map_or(0, |s| s * 1000)
}

/// Whether `available` reaches `fixed` in the package manager's ordering.
fn fixes(eco: Ecosystem, available: &str, fixed: &str) -> bool {
    match (PackageVersion::parse(eco, available), PackageVersion::parse(eco, fixed)) {
        (Ok(a), Ok(f)) => a.compare(&f).is_some_and(|o| o != std::cmp::Ordering::Less),
        _ => false,
    }
}

/// A severity of the assessment (High, Medium, Low, Informational) on the compliance scale.
fn assessment_severity(text: &str) -> Option<ComplianceSeverity> {
    text.parse::<flotilla_core::Severity>().ok().map(ComplianceSeverity::from_vulnerability)
}

/// Days since 1970-01-01 of a Unix time in seconds.
fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

/// One candidate per installed package, with its update and the known fixes folded in.
fn candidates(scan: &Scan, eco: Ecosystem, fixes_known: &[api::KnownFix]) -> Vec<Candidate> {
    let updates: HashMap<(&str, &str), &crate::patch::Update> =
        scan.updates.iter().map(|u| ((u.name.as_str(), u.arch.as_str()), u)).collect();
    let by_package: HashMap<&str, Vec<&api::KnownFix>> = fixes_known.iter().fold(HashMap::new(), |mut m, f| {
        m.entry(f.package.as_str()).or_default().push(f);
        m
    });
    scan.installed
        .iter()
        .map(|p| {
            let update = updates.get(&(p.name.as_str(), p.arch.as_str())).copied();
            let mut c = Candidate {
                name: p.name.clone(),
                arch: p.arch.clone(),
                installed_version: p.version.clone(),
                ..Candidate::default()
            };
            if let Some(u) = update {
                c.available_version = Some(u.available_version.clone());
                c.repository = Some(u.repository.clone());
                c.section = u.section.clone();
                c.priority = u.priority.clone();
                c.classification = u.classification.as_deref().and_then(canonical_classification);
                c.severity = u.severity.as_deref().and_then(rules::normalize_severity);
                c.published_day = u.published_unix.map(day_of);
                c.cves = u.cves.clone();
                c.advisory_ids = u.advisory_ids.clone();
                for fix in by_package.get(p.name.as_str()).into_iter().flatten() {
                    let fixed = fix.fixed_version.as_deref().is_some_and(|f| fixes(eco, &u.available_version, f));
                    if fixed {
                        if !c.cves.contains(&fix.cve) {
                            c.cves.push(fix.cve.clone());
                        }
                        if let Some(s) = assessment_severity(&fix.severity) {
                            c.severity = Some(c.severity.map_or(s, |w| w.min(s)));
                        }
                        c.classification = Some("Security".into());
                    }
                }
            }
            c
        })
        .collect()
}

fn canonical_classification(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let known = ["Security", "Bugfix", "Enhancement", "Newpackage"];
    Some(known.iter().find(|k| k.to_ascii_lowercase() == lower).map_or("Other", |k| *k).to_owned())
}

impl Patching {
    pub fn new(root: &Path, state_dir: &Path, outbox: Outbox) -> Patching {
        Patching {
            root: root.to_owned(),
            memory_file: state_dir.join("patch-memory.json"),
            outbox,
            waiting: Mutex::new(HashMap::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
            reboots: Mutex::new(BTreeSet::new()),
        }
    }

    /// The server's answer to a request of this process.
    pub fn answered(&self, response: PatchResponse) {
        let waiter = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&response.request_id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(response);
        }
    }

    async fn ask(
        &self,
        invocation_id: &str,
        kind: PatchRequestKind,
        report_json: Vec<u8>,
    ) -> Result<PatchResponse, String> {
        let request_id = format!("{invocation_id}-{}", rand::random::<u64>());
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(request_id.clone(), tx);
        let request = PatchRequest {
            request_id: request_id.clone(),
            invocation_id: invocation_id.to_owned(),
            kind: kind as i32,
            report_json,
        };
        let forget = || self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&request_id);
        if !send(&self.outbox, agent_message::Body::Patch(request)).await {
            forget();
            return Err("not connected to the server".into());
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(response)) if response.error.is_empty() => Ok(response),
            Ok(Ok(response)) => Err(response.error),
            _ => {
                forget();
                Err(format!("the server did not answer within {} s", ANSWER_TIMEOUT.as_secs()))
            }
        }
    }

    fn load_memory(&self) -> MemoryFile {
        match std::fs::read(&self.memory_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is unreadable ({e}); starting from an empty patch memory",
                    self.memory_file.display()
                );
                MemoryFile::default()
            }),
            Err(_) => MemoryFile::default(),
        }
    }

    fn save_memory(&self, memory: &MemoryFile) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(memory).map_err(|e| e.to_string())?;
        let tmp = self.memory_file.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.memory_file))
            .map_err(|e| format!("cannot write {}: {e}", self.memory_file.display()))
    }

    /// Runs one `patch:baseline` step of `invocation_id`.
    pub async fn run(&self, invocation_id: &str, inputs: &BTreeMap<String, String>) -> StepOutcome {
        let mut log = OperationLog::default();
        let result = self.operate(invocation_id, inputs, &mut log).await;
        let (success, detail) = match result {
            Ok(None) => (true, String::new()),
            Ok(Some(partial)) => (false, partial),
            Err(e) => {
                log.line(format!("error: {e}"));
                (false, e)
            }
        };
        StepOutcome { success, detail, log: log.text() }
    }

    /// `Ok(Some(why))`: the operation completed and was reported, but some installs failed.
    async fn operate(
        &self,
        invocation_id: &str,
        inputs: &BTreeMap<String, String>,
        log: &mut OperationLog,
    ) -> Result<Option<String>, String> {
        let inputs = StepInputs::parse(inputs, &|_| false)?.ok_or("the step's inputs were not resolved")?;
        let _one = self.one_at_a_time.lock().await;
        let started = now_ms();
        let response = self.ask(invocation_id, PatchRequestKind::Snapshot, Vec::new()).await?;
        let snapshot: api::PatchSnapshot = serde_json::from_slice(&response.snapshot_json)
            .map_err(|e| format!("the server's snapshot does not read: {e}; upgrade the agent"))?;
        let baseline = snapshot.baseline.to_baseline().map_err(|e| format!("the server's baseline is invalid: {e}"))?;
        log.line(format!(
            "{} on {} with baseline {} ({}){}",
            inputs.operation,
            self.root.display(),
            baseline.name,
            baseline.os,
            if snapshot.patch_group.is_empty() {
                String::new()
            } else {
                format!(", patch group {}", snapshot.patch_group)
            }
        ));
        for note in &snapshot.notes {
            log.line(format!("note: {note}"));
        }
        if !baseline.approves_anything() {
            log.line(format!("note: baseline {} approves nothing (no rules, no approved patches)", baseline.name));
        }
        let manager = PackageManager::detect(&self.root).map_err(|e| e.to_string())?;
        let eco = manager.manager().ecosystem();
        let mut memory = self.load_memory();
        let scan = manager.scan(log).await.map_err(|e| e.to_string())?;
        let evaluate = |scan: &Scan, memory: &MemoryFile, pending: bool| {
            let memory = Memory { patched: memory.patched.clone(), failed: memory.failed.clone() };
            rules::evaluate(
                &baseline,
                &candidates(scan, eco, &snapshot.fixes),
                &memory,
                pending,
                boot_ms(),
                snapshot.today,
            )
        };
        let pending = manager.reboot_pending().await.map_err(|e| e.to_string())?;
        let mut evaluation = evaluate(&scan, &memory, pending);
        for pattern in &evaluation.unmatched_rejected {
            log.line(format!("note: rejected patch `{pattern}` matches no package on this node"));
        }
        let mut failed = Vec::new();
        let mut reboot_pending = pending;
        if inputs.operation == Operation::Install {
            let mut wanted: Vec<Wanted> = evaluation
                .to_install
                .iter()
                .map(|(name, version)| Wanted { name: name.clone(), version: version.clone() })
                .collect();
            // The override list adds updates the baseline does not approve, never rejected ones.
            for row in &evaluation.rows {
                let Some(version) = &row.available_version else { continue };
                let named =
                    |list: &[rules::PackagePattern]| list.iter().any(|p| p.matches(&row.name, version, &[], &[]));
                if named(&inputs.install_override)
                    && !named(&baseline.rejected)
                    && !wanted.iter().any(|w| w.name == row.name)
                {
                    wanted.push(Wanted { name: row.name.clone(), version: version.clone() });
                }
            }
            if wanted.is_empty() {
                log.line("nothing to install: no approved update is missing".to_owned());
            } else {
                log.line(format!("installing {} update(s)", wanted.len()));
                let outcomes = manager.install(&wanted, &evaluation.blocked, log).await.map_err(|e| e.to_string())?;
                let at = now_ms();
                for outcome in outcomes {
                    match outcome.result {
                        Ok(version) => {
                            memory.failed.remove(&outcome.name);
                            // What only the override list installed is INSTALLED_OTHER (§7.7):
                            // compliance is against the baseline, so it is not remembered as
                            // patched.
                            if evaluation.to_install.iter().any(|(name, _)| *name == outcome.name) {
                                memory.patched.insert(outcome.name.clone(), (version, at));
                            }
                        }
                        Err(why) => {
                            let version = wanted.iter().find(|w| w.name == outcome.name).map(|w| w.version.clone());
                            log.line(format!("FAILED {}: {why}", outcome.name));
                            memory.failed.insert(outcome.name.clone(), version.unwrap_or_default());
                            failed.push(outcome.name);
                        }
                    }
                }
                self.save_memory(&memory)?;
                let rescan = manager.scan(log).await.map_err(|e| e.to_string())?;
                reboot_pending = manager.reboot_pending().await.map_err(|e| e.to_string())?;
                evaluation = evaluate(&rescan, &memory, reboot_pending);
            }
        } else if !memory.failed.is_empty() || !memory.patched.is_empty() {
            // Forget what no longer applies: a package removed or upgraded past the version.
            let installed: HashMap<&str, &str> =
                scan.installed.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
            memory.patched.retain(|n, (v, _)| installed.get(n.as_str()) == Some(&v.as_str()));
            memory.failed.retain(|n, _| installed.contains_key(n.as_str()));
            self.save_memory(&memory)?;
        }
        let summary = evaluation.summary();
        let counts: Vec<String> = summary.counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        log.line(format!("{}: {}", summary.status.as_str(), counts.join(", ")));
        for row in evaluation.rows.iter().filter(|r| r.state.is_non_compliant()) {
            log.line(format!(
                "  {} {} {} -> {} {}{}",
                row.state,
                row.name,
                row.installed_version,
                row.available_version.as_deref().unwrap_or("-"),
                row.severity.as_str(),
                if row.cves.is_empty() { String::new() } else { format!(" {}", row.cves.join(",")) }
            ));
        }
        let report = api::PatchReport {
            invocation_id: invocation_id.to_owned(),
            baseline_id: snapshot.baseline_id.clone(),
            baseline: baseline.name.clone(),
            patch_group: snapshot.patch_group.clone(),
            operation: inputs.operation.as_str().to_owned(),
            reboot_option: inputs.reboot.as_str().to_owned(),
            started_at_unix_ms: started,
            ended_at_unix_ms: now_ms(),
            patches: evaluation
                .rows
                .iter()
                .map(|r| api::PatchStateRow {
                    name: r.name.clone(),
                    arch: r.arch.clone(),
                    state: r.state.as_str().to_owned(),
                    installed_version: r.installed_version.clone(),
                    available_version: r.available_version.clone(),
                    severity: r.severity.as_str().to_owned(),
                    classification: r.classification.clone(),
                    cves: r.cves.clone(),
                    repository: r.repository.clone(),
                    counts: r.counts,
                })
                .collect(),
        };
        let json = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
        self.ask(invocation_id, PatchRequestKind::Report, json)
            .await
            .map_err(|e| format!("the patch states were not stored: {e}"))?;
        if inputs.operation == Operation::Install && reboot_pending {
            match inputs.reboot {
                RebootOption::RebootIfNeeded => {
                    log.line("the node needs a reboot: rebooting once this invocation's result is saved".to_owned());
                    self.reboots.lock().unwrap_or_else(|p| p.into_inner()).insert(invocation_id.to_owned());
                }
                RebootOption::NoReboot => log.line(
                    "the node needs a reboot; NoReboot: not rebooting (patches stay INSTALLED_PENDING_REBOOT)"
                        .to_owned(),
                ),
            }
        }
        Ok((!failed.is_empty()).then(|| format!("{} update(s) failed to install: {}", failed.len(), failed.join(", "))))
    }

    /// After an invocation's result is spooled: reboots if its Install asked for one, once the
    /// server has acknowledged the result (its spool directory gone) or after a bounded wait.
    pub async fn reboot_if_requested(&self, invocation_id: &str, spool: &Path) {
        if !self.reboots.lock().unwrap_or_else(|p| p.into_inner()).remove(invocation_id) {
            return;
        }
        let deadline = tokio::time::Instant::now() + REBOOT_ACK_WAIT;
        while spool.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let command = crate::patch::reboot_command(None);
        tracing::warn!(invocation = %invocation_id, %command, "rebooting after patching");
        if let Err(e) = crate::patch::reboot(&command).await {
            tracing::error!(invocation = %invocation_id, "the reboot command failed: {e}");
        }
    }
}
