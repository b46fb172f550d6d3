//! Patch Manager: baselines (the predefined `Flotilla-*` ones seeded at start, and the
//! operator's), each OS family's default, patch groups, the snapshot an agent asks for when a
//! `patch:baseline` step starts, and the report it sends when done (stored with the node's
//! `Patch` compliance item and a `Patch.Compliance` event). The rules are
//! `flotilla_core::patch`; the agent evaluates them against its package manager.

pub mod http;

use std::collections::BTreeMap;

use flotilla_api as api;
use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};
use flotilla_core::patch::{self as rules, OsFamily, PatchState};
use flotilla_core::{EventType, Node, NodeId};
use flotilla_proto::v1::{PatchRequest, PatchRequestKind, PatchResponse};
use flotilla_store::{
    BaselineRecord, ComplianceItem, NewEvent, PatchGroupRecord, PatchResult, PatchStateRecord, PatchSummaryRecord,
};

use crate::app::AppState;
use crate::fleet;
use crate::platform::ServiceError;
use crate::platform::now_ms;

/// The tag keys that name a node's patch group (§7.4), in the order they are read.
pub const GROUP_TAGS: [&str; 2] = ["Patch Group", "PatchGroup"];
/// The item id of a node's one `Patch` compliance item.
const COMPLIANCE_ITEM: &str = "patch-baseline";
const MILLIS_PER_DAY: i64 = 86_400_000;

/// A baseline with what refers to it.
#[derive(Debug, Clone)]
pub struct BaselineView {
    pub record: BaselineRecord,
    pub spec: api::BaselineSpec,
    pub default: bool,
    pub groups: Vec<String>,
}

fn invalid(e: rules::BaselineError) -> ServiceError {
    ServiceError::Invalid(format!("invalid baseline: {e}"))
}

fn missing(id: &str) -> ServiceError {
    ServiceError::Missing {
        what: "patch baseline",
        id: id.to_owned(),
        message: format!("no patch baseline `{id}`: list them with `flotilla patch baselines ls`"),
    }
}

fn spec_of(record: &BaselineRecord) -> Result<api::BaselineSpec, ServiceError> {
    serde_json::from_str(&record.spec)
        .map_err(|e| ServiceError::Internal(format!("the stored baseline {} does not read back: {e}", record.name)))
}

/// Creates the predefined baselines and, for a family without one, makes its predefined
/// baseline the default. Idempotent: run at every start, it never replaces an operator's
/// default.
pub async fn seed(state: &AppState) -> Result<(), ServiceError> {
    let defaults: BTreeMap<String, String> = state.store.default_baselines().await?.into_iter().collect();
    for family in OsFamily::ALL {
        let baseline = rules::predefined(family);
        let spec = api::BaselineSpec::from_baseline(&baseline);
        let id = format!("pb-{}", family.as_str());
        let now = now_ms();
        let record = BaselineRecord {
            id: id.clone(),
            name: baseline.name.clone(),
            os: family.as_str().to_owned(),
            spec: serde_json::to_string(&spec).map_err(|e| ServiceError::Internal(e.to_string()))?,
            predefined: true,
            created_at: now,
            updated_at: now,
        };
        if !state.store.create_baseline(&record).await? {
            // A newer release may refine a predefined baseline: keep it current, without
            // touching its update time when nothing changed.
            let stored = state.store.get_baseline(&id).await?;
            if stored.is_none_or(|b| b.spec != record.spec || b.name != record.name) {
                state.store.update_baseline(&record).await?;
            }
        }
        if !defaults.contains_key(family.as_str()) {
            state.store.set_default_baseline(family.as_str(), &id).await?;
        }
    }
    Ok(())
}

/// A baseline with whether it is a default and which groups name it.
fn assemble(
    record: BaselineRecord,
    defaults: &[(String, String)],
    groups: &[PatchGroupRecord],
) -> Result<BaselineView, ServiceError> {
    Ok(BaselineView {
        spec: spec_of(&record)?,
        default: defaults.iter().any(|(_, id)| *id == record.id),
        groups: groups.iter().filter(|g| g.baseline_id == record.id).map(|g| g.name.clone()).collect(),
        record,
    })
}

async fn view(state: &AppState, record: BaselineRecord) -> Result<BaselineView, ServiceError> {
    let defaults = state.store.default_baselines().await?;
    let groups = state.store.list_patch_groups().await?;
    assemble(record, &defaults, &groups)
}

pub async fn list_baselines(state: &AppState) -> Result<Vec<BaselineView>, ServiceError> {
    let defaults = state.store.default_baselines().await?;
    let groups = state.store.list_patch_groups().await?;
    state.store.list_baselines().await?.into_iter().map(|record| assemble(record, &defaults, &groups)).collect()
}

async fn find(state: &AppState, id_or_name: &str) -> Result<BaselineRecord, ServiceError> {
    state.store.get_baseline(id_or_name).await?.ok_or_else(|| missing(id_or_name))
}

pub async fn get_baseline(state: &AppState, id_or_name: &str) -> Result<BaselineView, ServiceError> {
    let record = find(state, id_or_name).await?;
    view(state, record).await
}

pub async fn create_baseline(state: &AppState, spec: api::BaselineSpec) -> Result<BaselineView, ServiceError> {
    let baseline = spec.to_baseline().map_err(invalid)?;
    if baseline.name.starts_with("Flotilla-") {
        return Err(ServiceError::Invalid(
            "baseline names starting with `Flotilla-` are reserved for the predefined baselines".into(),
        ));
    }
    let canonical = api::BaselineSpec::from_baseline(&baseline);
    let id_bytes: [u8; 8] = rand::random();
    let now = now_ms();
    let record = BaselineRecord {
        id: format!("pb-{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        name: baseline.name.clone(),
        os: baseline.os.as_str().to_owned(),
        spec: serde_json::to_string(&canonical).map_err(|e| ServiceError::Internal(e.to_string()))?,
        predefined: false,
        created_at: now,
        updated_at: now,
    };
    if !state.store.create_baseline(&record).await? {
        return Err(ServiceError::Clash {
            what: "patch baseline",
            id: baseline.name.clone(),
            message: format!("a patch baseline named `{}` exists: update it, or choose another name", baseline.name),
        });
    }
    tracing::info!(baseline = %record.name, os = %record.os, "patch baseline created");
    view(state, record).await
}

pub async fn update_baseline(
    state: &AppState,
    id_or_name: &str,
    spec: api::BaselineSpec,
) -> Result<BaselineView, ServiceError> {
    let mut record = find(state, id_or_name).await?;
    if record.predefined {
        return Err(ServiceError::Invalid(format!(
            "{} is predefined and cannot be changed: create a copy with `flotilla patch baselines create --file F` \
             and make it the default with `flotilla patch baselines default --os {} NAME`",
            record.name, record.os
        )));
    }
    let baseline = spec.to_baseline().map_err(invalid)?;
    if baseline.os.as_str() != record.os {
        return Err(ServiceError::Invalid(format!(
            "os: {} is a {} baseline; a baseline's OS family cannot change (create a new one)",
            record.name, record.os
        )));
    }
    if let Some(other) = state.store.get_baseline(&baseline.name).await?
        && other.id != record.id
    {
        return Err(ServiceError::Clash {
            what: "patch baseline",
            id: baseline.name.clone(),
            message: format!("another patch baseline is named `{}`", baseline.name),
        });
    }
    record.name = baseline.name.clone();
    record.spec = serde_json::to_string(&api::BaselineSpec::from_baseline(&baseline))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    record.updated_at = now_ms();
    if !state.store.update_baseline(&record).await? {
        return Err(missing(id_or_name));
    }
    view(state, record).await
}

pub async fn delete_baseline(state: &AppState, id_or_name: &str) -> Result<(), ServiceError> {
    let b = get_baseline(state, id_or_name).await?;
    if b.record.predefined {
        return Err(ServiceError::Invalid(format!("{} is predefined and cannot be removed", b.record.name)));
    }
    if b.default {
        return Err(ServiceError::Invalid(format!(
            "{} is the default baseline for {}: make another one the default first \
             (`flotilla patch baselines default --os {} BASE`)",
            b.record.name, b.record.os, b.record.os
        )));
    }
    if !b.groups.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "{} is the baseline of patch group(s) {}: map them to another baseline first (`flotilla patch groups set GROUP BASE`)",
            b.record.name,
            b.groups.join(", ")
        )));
    }
    state.store.delete_baseline(&b.record.id).await?;
    Ok(())
}

pub async fn set_default(state: &AppState, os: &str, id_or_name: &str) -> Result<BaselineView, ServiceError> {
    let family: OsFamily = os.parse().map_err(|e: rules::NameError| ServiceError::Invalid(e.to_string()))?;
    let record = find(state, id_or_name).await?;
    if record.os != family.as_str() {
        return Err(ServiceError::Invalid(format!(
            "{} is a {} baseline; the {family} default must be a {family} baseline",
            record.name, record.os
        )));
    }
    state.store.set_default_baseline(family.as_str(), &record.id).await?;
    view(state, record).await
}

/// A patch group with its baseline.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group: String,
    pub baseline: BaselineRecord,
}

pub async fn list_groups(state: &AppState) -> Result<Vec<GroupView>, ServiceError> {
    let baselines: BTreeMap<String, BaselineRecord> =
        state.store.list_baselines().await?.into_iter().map(|b| (b.id.clone(), b)).collect();
    Ok(state
        .store
        .list_patch_groups()
        .await?
        .into_iter()
        .filter_map(|g| baselines.get(&g.baseline_id).map(|b| GroupView { group: g.name, baseline: b.clone() }))
        .collect())
}

pub async fn set_group(state: &AppState, group: &str, id_or_name: &str) -> Result<GroupView, ServiceError> {
    let group = group.trim();
    if group.is_empty() || group.len() > 256 || group.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "a patch group is the value of a node's `Patch Group` tag: 1–256 characters, no control characters".into(),
        ));
    }
    let baseline = find(state, id_or_name).await?;
    state.store.set_patch_group(&PatchGroupRecord { name: group.to_owned(), baseline_id: baseline.id.clone() }).await?;
    Ok(GroupView { group: group.to_owned(), baseline })
}

/// The node's patch group, if tagged.
pub fn group_of(node: &Node) -> Option<&str> {
    GROUP_TAGS.iter().find_map(|k| node.tags.get(*k)).map(String::as_str).filter(|g| !g.is_empty())
}

/// The baseline that applies to `node`, with notes for the operation's log: its patch
/// group's if that names one of the node's family, else the family's default (§7.4). A group
/// naming another family's baseline is refused, never applied.
async fn resolve(state: &AppState, node: &Node) -> Result<(BaselineRecord, Vec<String>), String> {
    let family = OsFamily::of_os(&node.platform.id, "").ok_or_else(|| {
        format!(
            "node {} runs {} (ID={}), which Patch Manager does not know: it patches debian, ubuntu, the rhel \
             family (Rocky, Alma, CentOS, RHEL, Oracle, Amazon Linux) and alpine; no baseline applies",
            node.id, node.platform.name, node.platform.id
        )
    })?;
    let store = |e: flotilla_store::StoreError| format!("the server cannot read its baselines: {e}");
    let mut notes = Vec::new();
    if let Some(group) = group_of(node) {
        let groups = state.store.list_patch_groups().await.map_err(store)?;
        match groups.iter().find(|g| g.name == group) {
            Some(g) => {
                let baseline = state
                    .store
                    .get_baseline(&g.baseline_id)
                    .await
                    .map_err(store)?
                    .ok_or_else(|| format!("patch group {group} names a baseline that no longer exists"))?;
                if baseline.os != family.as_str() {
                    return Err(format!(
                        "patch group `{group}` names baseline {} for {}, but node {} is {family}: the baseline is not \
                         applied. Map the group to a {family} baseline (`flotilla patch groups set`) or retag the node",
                        baseline.name, baseline.os, node.id
                    ));
                }
                return Ok((baseline, notes));
            }
            None => notes.push(format!(
                "patch group `{group}` has no baseline (`flotilla patch groups set {group} BASE`): using the {family} default"
            )),
        }
    }
    let defaults = state.store.default_baselines().await.map_err(store)?;
    let id = defaults.iter().find(|(os, _)| os == family.as_str()).map(|(_, id)| id.clone()).ok_or_else(|| {
        format!("no baseline for {family}: set one with `flotilla patch baselines default --os {family} BASE`")
    })?;
    let baseline = state
        .store
        .get_baseline(&id)
        .await
        .map_err(store)?
        .ok_or_else(|| format!("the {family} default baseline is gone"))?;
    Ok((baseline, notes))
}

/// The CVE ids of a `Finding` inventory item.
fn cves_of(item: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let advisory = item.get("advisory_id").and_then(serde_json::Value::as_str);
    let aliases = item.get("aliases").and_then(serde_json::Value::as_array).into_iter().flatten();
    for id in advisory.into_iter().chain(aliases.filter_map(serde_json::Value::as_str)) {
        if id.starts_with("CVE-") && !ids.iter().any(|x| x == id) {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// What the agent of `node_id` needs for an operation.
pub async fn snapshot(state: &AppState, node_id: &NodeId) -> Result<api::PatchSnapshot, String> {
    let node = state
        .store
        .get_node(node_id)
        .await
        .map_err(|e| format!("the server cannot read the node: {e}"))?
        .ok_or_else(|| format!("node {node_id} is not registered"))?;
    let (record, mut notes) = resolve(state, &node).await?;
    let baseline = serde_json::from_str::<api::BaselineSpec>(&record.spec)
        .map_err(|e| format!("the stored baseline {} does not read back: {e}", record.name))?;
    let findings = state
        .store
        .inventory_items(node_id, "Finding")
        .await
        .map_err(|e| format!("the server cannot read the node's findings: {e}"))?;
    let mut fixes = Vec::new();
    for text in findings {
        let Ok(item) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let field = |k: &str| item.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        let (Some(package), Some(severity)) = (field("package"), field("severity")) else { continue };
        for cve in cves_of(&item) {
            fixes.push(api::KnownFix {
                package: package.clone(),
                cve,
                fixed_version: field("fixed_version"),
                severity: severity.clone(),
            });
        }
    }
    if fixes.is_empty() {
        notes.push(
            "no assessment findings for this node: only the repositories' own metadata says which updates are security updates"
                .into(),
        );
    }
    Ok(api::PatchSnapshot {
        baseline_id: record.id,
        baseline,
        patch_group: group_of(&node).unwrap_or_default().to_owned(),
        fixes,
        today: now_ms().div_euclid(MILLIS_PER_DAY),
        notes,
    })
}

fn bad(what: &str, e: impl std::fmt::Display) -> String {
    format!("the report's {what} is invalid: {e}")
}

/// Stores an agent's report: the node's package states, its summary, its `Patch` compliance
/// item and a `Patch.Compliance` event, in one transaction.
pub async fn record_report(state: &AppState, node_id: &NodeId, report: api::PatchReport) -> Result<(), String> {
    let mut states = Vec::with_capacity(report.patches.len());
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut worst: Option<ComplianceSeverity> = None;
    for p in &report.patches {
        let state_value: PatchState = p.state.parse().map_err(|e| bad("patch state", e))?;
        let severity: ComplianceSeverity = p.severity.parse().map_err(|e| bad("severity", e))?;
        *counts.entry(state_value.as_str().to_owned()).or_default() += 1;
        if p.counts {
            worst = Some(worst.map_or(severity, |w| w.min(severity)));
        }
        states.push(PatchStateRecord {
            name: p.name.clone(),
            arch: p.arch.clone(),
            state: state_value,
            installed_version: p.installed_version.clone(),
            available_version: p.available_version.clone(),
            severity,
            classification: p.classification.clone(),
            cves: p.cves.clone(),
            repository: p.repository.clone(),
        });
    }
    let operation: rules::Operation = report.operation.parse().map_err(|e| bad("operation", e))?;
    let reboot: rules::RebootOption = report.reboot_option.parse().map_err(|e| bad("reboot option", e))?;
    let status = if worst.is_some() { ComplianceStatus::NonCompliant } else { ComplianceStatus::Compliant };
    let severity = worst.unwrap_or(ComplianceSeverity::Unspecified);
    let shown: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let counts_json = serde_json::to_string(&counts).map_err(|e| e.to_string())?;
    let event = NewEvent::new(
        EventType::PatchCompliance,
        report.ended_at_unix_ms,
        vec![node_id.to_string(), report.baseline_id.clone()],
        serde_json::json!({
            "node_id": node_id.to_string(),
            "baseline_id": report.baseline_id,
            "baseline": report.baseline,
            "patch_group": report.patch_group,
            "operation": operation.as_str(),
            "status": status.as_str(),
            "severity": severity.as_str(),
            "counts": counts,
            "invocation_id": report.invocation_id,
        }),
    );
    let result = PatchResult {
        summary: PatchSummaryRecord {
            node_id: node_id.to_string(),
            baseline_id: report.baseline_id.clone(),
            baseline_name: report.baseline.clone(),
            patch_group: report.patch_group.clone(),
            operation: operation.as_str().to_owned(),
            reboot_option: reboot.as_str().to_owned(),
            status,
            severity,
            counts: counts_json,
            invocation_id: report.invocation_id.clone(),
            started_at: report.started_at_unix_ms,
            ended_at: report.ended_at_unix_ms,
        },
        states,
        compliance: ComplianceItem {
            node_id: node_id.to_string(),
            kind: ComplianceType::Patch,
            item_id: COMPLIANCE_ITEM.to_owned(),
            title: format!("Patch baseline {} ({})", report.baseline, operation.as_str()),
            status,
            severity,
            detail: shown.join(", "),
            execution_id: report.invocation_id.clone(),
            time: report.ended_at_unix_ms,
        },
        event,
    };
    state
        .store
        .record_patch_result(&result)
        .await
        .map_err(|e| format!("the server could not store the report: {e}"))?;
    tracing::info!(node_id = %node_id, baseline = %report.baseline, status = status.as_str(), "patch result recorded");
    Ok(())
}

pub async fn states(state: &AppState, node: &str) -> Result<Vec<PatchStateRecord>, ServiceError> {
    let node = fleet::get_node(state, node).await?;
    Ok(state.store.patch_states(&node.id.to_string()).await?)
}

/// The last operation's summary of each node matching `targets` (all when empty).
pub async fn compliance(state: &AppState, targets: &[String]) -> Result<Vec<PatchSummaryRecord>, ServiceError> {
    let summaries = state.store.patch_summaries().await?;
    if targets.is_empty() {
        return Ok(summaries);
    }
    let nodes: std::collections::BTreeSet<String> =
        fleet::list_nodes(state, targets).await?.iter().map(|n| n.id.to_string()).collect();
    Ok(summaries.into_iter().filter(|s| nodes.contains(&s.node_id)).collect())
}

/// Answers an agent's request on its channel: its snapshot, or the storing of its report.
pub async fn answer(state: &AppState, node_id: &NodeId, request: PatchRequest) -> PatchResponse {
    let mut response = PatchResponse { request_id: request.request_id.clone(), ..PatchResponse::default() };
    let outcome = match PatchRequestKind::try_from(request.kind) {
        Ok(PatchRequestKind::Snapshot) => snapshot(state, node_id)
            .await
            .and_then(|s| serde_json::to_vec(&s).map_err(|e| e.to_string()))
            .map(|json| response.snapshot_json = json),
        Ok(PatchRequestKind::Report) => match serde_json::from_slice::<api::PatchReport>(&request.report_json) {
            Ok(report) => record_report(state, node_id, report).await,
            Err(e) => Err(format!("the report is not valid JSON for this server: {e}")),
        },
        _ => Err(format!("unknown patch request kind {}: upgrade the server", request.kind)),
    };
    if let Err(e) = outcome {
        tracing::warn!(node_id = %node_id, invocation = %request.invocation_id, "patch request refused: {e}");
        response.error = e;
    }
    response
}
