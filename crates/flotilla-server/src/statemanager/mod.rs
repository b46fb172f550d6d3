//! State Manager: associations (a document with parameters kept applied on every node its
//! targets match) and their per-node status. The reconciler (`reconciler`) does the applying;
//! this module validates and stores what operators ask for and says when everything must run
//! again (a new generation, see `flotilla_core::association`).
//!
//! Invariant: an association is stored only if its document plans with its parameters, its
//! targets parse, its schedule is valid for associations and its limits parse; a refused
//! request stores nothing.

pub mod http;
pub mod reconciler;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::association::{AssociationStatus, validate_name};
use flotilla_core::command::{MaxConcurrency, MaxErrors};
use flotilla_core::compliance::ComplianceSeverity;
use flotilla_core::schedule::{DEFAULT_GRACE_MS, Schedule, ScheduleRules};
use flotilla_store::{AssociationNodeRecord, AssociationRecord};

use crate::app::AppState;
use crate::fleet;
use crate::platform::scheduler::{ScheduleEntry, ScheduleSource, SourceError};
use crate::platform::secret::random_bytes;
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::commands::checked_plan;

pub use reconciler::Reconciler;

/// Associations run at most every 30 minutes (ssm-inspector-spec §5.2).
pub const RULES: ScheduleRules = ScheduleRules::ASSOCIATIONS;
const KEY_PREFIX: &str = "association:";
/// AWS's defaults: every target at once, never stop for errors.
const DEFAULT_CONCURRENCY: &str = "100%";
const DEFAULT_ERRORS: &str = "100%";

/// What an operator asks for. On create, `document` and `targets` are required; on update,
/// every `None` keeps the stored value (`schedule: Some("")` removes the schedule).
#[derive(Debug, Clone, Default)]
pub struct AssociationInput {
    pub name: Option<String>,
    pub document: Option<String>,
    pub document_version: Option<i64>,
    pub parameters: Option<BTreeMap<String, Vec<String>>>,
    pub targets: Option<Vec<String>>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub compliance_severity: Option<String>,
    pub apply_only_at_cron_interval: Option<bool>,
}

/// An association with where its nodes stand and its next scheduled run.
#[derive(Debug, Clone)]
pub struct AssociationView {
    pub record: AssociationRecord,
    pub counts: BTreeMap<AssociationStatus, u64>,
    pub next_run_at: Option<UnixMillis>,
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn parsed_schedule(a: &AssociationRecord) -> Option<Result<Schedule, String>> {
    a.schedule.as_deref().map(|expr| {
        Schedule::parse(expr, a.timezone.as_deref(), &RULES)
            .map(|s| s.anchored(a.schedule_since))
            .map_err(|e| e.to_string())
    })
}

fn compliance_severity(text: &str) -> Result<ComplianceSeverity, ServiceError> {
    match ComplianceSeverity::from_str(text) {
        Ok(ComplianceSeverity::Informational) | Err(_) => Err(ServiceError::Invalid(format!(
            "compliance severity `{text}` is not one of CRITICAL, HIGH, MEDIUM, LOW, UNSPECIFIED"
        ))),
        Ok(s) => Ok(s),
    }
}

/// Checks everything about `a` that does not change with time, given `now` for the schedule.
async fn validate(
    state: &AppState,
    a: &AssociationRecord,
    now: UnixMillis,
    schedule_changed: bool,
) -> Result<(), ServiceError> {
    validate_name(&a.name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if a.targets.is_empty() {
        return Err(ServiceError::Invalid(
            "no target: give at least one --target (a node id, tag:KEY=VALUE, tag:KEY, group:NAME or all); \
             a target that matches no node today is fine: the association applies when one joins"
                .into(),
        ));
    }
    fleet::parse_targets(&a.targets)?;
    MaxConcurrency::from_str(&a.max_concurrency).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    MaxErrors::from_str(&a.max_errors).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    checked_plan(state, &a.document, a.document_version, &a.parameters).await?;
    match a.schedule.as_deref() {
        None => {
            if a.timezone.is_some() {
                return Err(ServiceError::Invalid("--timezone needs a --schedule".into()));
            }
            if a.apply_only_at_cron_interval {
                return Err(ServiceError::Invalid(
                    "--apply-only-at-cron-interval needs a cron --schedule: without one the association would never run".into(),
                ));
            }
        }
        Some(expr) => {
            let schedule = if schedule_changed {
                Schedule::create(expr, a.timezone.as_deref(), &RULES, now)
            } else {
                Schedule::parse(expr, a.timezone.as_deref(), &RULES)
            }
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            if a.apply_only_at_cron_interval && schedule.is_rate() {
                return Err(ServiceError::Invalid(
                    "--apply-only-at-cron-interval does not go with a rate(...) schedule (as in AWS): use cron(...) or drop the flag".into(),
                ));
            }
        }
    }
    Ok(())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub async fn create(state: &AppState, input: AssociationInput) -> Result<AssociationView, ServiceError> {
    let now = now_ms();
    let id_bytes: [u8; 8] = random_bytes();
    let id = format!("a-{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let document = non_empty(input.document).ok_or_else(|| {
        ServiceError::Invalid("no document: give --document NAME (see `flotilla documents ls`)".into())
    })?;
    let apply_only = input.apply_only_at_cron_interval.unwrap_or(false);
    let record = AssociationRecord {
        name: non_empty(input.name).unwrap_or_else(|| id.clone()),
        document,
        document_version: input.document_version,
        parameters: input.parameters.unwrap_or_default(),
        targets: input.targets.unwrap_or_default(),
        schedule: non_empty(input.schedule),
        timezone: non_empty(input.timezone),
        max_concurrency: non_empty(input.max_concurrency).unwrap_or_else(|| DEFAULT_CONCURRENCY.into()),
        max_errors: non_empty(input.max_errors).unwrap_or_else(|| DEFAULT_ERRORS.into()),
        compliance_severity: compliance_severity(input.compliance_severity.as_deref().unwrap_or("UNSPECIFIED"))?,
        apply_only_at_cron_interval: apply_only,
        // Applied at creation unless it waits for its cron interval.
        generation: i64::from(!apply_only),
        schedule_since: now,
        created_at: now,
        updated_at: now,
        id,
    };
    validate(state, &record, now, true).await?;
    if !state.store.create_association(&record).await? {
        return Err(ServiceError::clash(
            "association",
            &record.name,
            format!("an association named `{}` exists already: choose another --name or update it", record.name),
        ));
    }
    tracing::info!(association = %record.id, name = %record.name, document = %record.document, "association created");
    state.scheduler.changed();
    state.associations.wake();
    view(state, record).await
}

pub async fn update(state: &AppState, id: &str, input: AssociationInput) -> Result<AssociationView, ServiceError> {
    let old = load(state, id).await?;
    let now = now_ms();
    let mut a = old.clone();
    if let Some(name) = non_empty(input.name) {
        a.name = name;
    }
    if let Some(document) = non_empty(input.document) {
        a.document = document;
    }
    if input.document_version.is_some() {
        a.document_version = input.document_version;
    }
    if let Some(parameters) = input.parameters {
        a.parameters = parameters;
    }
    if let Some(targets) = input.targets {
        a.targets = targets;
    }
    if let Some(schedule) = input.schedule {
        a.schedule = non_empty(Some(schedule));
    }
    if let Some(tz) = input.timezone {
        a.timezone = non_empty(Some(tz));
    }
    if let Some(c) = non_empty(input.max_concurrency) {
        a.max_concurrency = c;
    }
    if let Some(e) = non_empty(input.max_errors) {
        a.max_errors = e;
    }
    if let Some(s) = input.compliance_severity {
        a.compliance_severity = compliance_severity(&s)?;
    }
    if let Some(flag) = input.apply_only_at_cron_interval {
        a.apply_only_at_cron_interval = flag;
    }
    let schedule_changed = a.schedule != old.schedule || a.timezone != old.timezone;
    validate(state, &a, now, schedule_changed).await?;
    if schedule_changed {
        // Nothing from before the change is caught up.
        a.schedule_since = now;
    }
    // AWS runs an association again when its document, version, parameters or schedule change;
    // a node that starts matching new targets gets it anyway.
    let rerun = schedule_changed
        || a.document != old.document
        || a.document_version != old.document_version
        || a.parameters != old.parameters;
    if rerun && !a.apply_only_at_cron_interval {
        a.generation = a.generation.saturating_add(1);
    }
    a.updated_at = now;
    if !state.store.update_association(&a).await? {
        return Err(ServiceError::missing("association", id, "list them with `flotilla associations ls`"));
    }
    if schedule_changed {
        state.scheduler.changed();
    }
    state.associations.wake();
    view(state, a).await
}

/// Runs the association again on every targeted node now (`StartAssociationsOnce`).
pub async fn apply(state: &AppState, id: &str) -> Result<AssociationView, ServiceError> {
    let a = load(state, id).await?;
    state.store.bump_association_generation(&a.id).await?;
    state.associations.wake();
    view(state, load(state, &a.id).await?).await
}

pub async fn delete(state: &AppState, id: &str) -> Result<(), ServiceError> {
    let a = load(state, id).await?;
    if !state.store.delete_association(&a.id).await? {
        return Err(ServiceError::missing("association", id, "list them with `flotilla associations ls`"));
    }
    state.store.delete_occurrences(&key(&a.id)).await?;
    state.scheduler.changed();
    Ok(())
}

pub async fn get(state: &AppState, id: &str) -> Result<AssociationView, ServiceError> {
    view(state, load(state, id).await?).await
}

pub async fn list(state: &AppState) -> Result<Vec<AssociationView>, ServiceError> {
    let mut out = Vec::new();
    for a in state.store.list_associations().await? {
        out.push(view(state, a).await?);
    }
    Ok(out)
}

/// Each targeted node's status (nodes never run yet are absent).
pub async fn status(state: &AppState, id: &str) -> Result<Vec<AssociationNodeRecord>, ServiceError> {
    let a = load(state, id).await?;
    Ok(state.store.association_nodes(&a.id).await?)
}

async fn load(state: &AppState, id: &str) -> Result<AssociationRecord, ServiceError> {
    state
        .store
        .get_association(id)
        .await?
        .ok_or_else(|| ServiceError::missing("association", id, "list them with `flotilla associations ls`"))
}

async fn view(state: &AppState, record: AssociationRecord) -> Result<AssociationView, ServiceError> {
    let mut counts = BTreeMap::new();
    for n in state.store.association_nodes(&record.id).await? {
        *counts.entry(n.status).or_default() += 1;
    }
    let next_run_at = match parsed_schedule(&record) {
        Some(Ok(schedule)) => {
            let entry = ScheduleEntry {
                key: key(&record.id),
                schedule,
                grace_ms: DEFAULT_GRACE_MS,
                since: record.schedule_since,
            };
            state.scheduler.next_run(&entry, now_ms()).await?
        }
        _ => None,
    };
    Ok(AssociationView { record, counts, next_run_at })
}

/// Associations as the scheduler sees them: each occurrence of a schedule raises the
/// association's generation, and the reconciler applies it to every targeted node.
pub struct AssociationSchedules {
    state: Arc<AppState>,
}

impl AssociationSchedules {
    pub fn new(state: Arc<AppState>) -> AssociationSchedules {
        AssociationSchedules { state }
    }
}

#[async_trait]
impl ScheduleSource for AssociationSchedules {
    fn name(&self) -> &'static str {
        "associations"
    }

    async fn schedules(&self) -> Result<Vec<ScheduleEntry>, SourceError> {
        let all = self
            .state
            .store
            .list_associations()
            .await
            .map_err(|e| SourceError(format!("cannot read associations: {e}")))?;
        let mut out = Vec::new();
        for a in all {
            match parsed_schedule(&a) {
                None => {}
                Some(Err(e)) => tracing::warn!(association = %a.id, "association schedule skipped: {e}"),
                Some(Ok(schedule)) => out.push(ScheduleEntry {
                    key: key(&a.id),
                    schedule,
                    grace_ms: DEFAULT_GRACE_MS,
                    since: a.schedule_since,
                }),
            }
        }
        Ok(out)
    }

    async fn fire(&self, key: &str, occurrence_at: UnixMillis) -> Result<(), SourceError> {
        let id = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
        match self.state.store.bump_association_generation(id).await {
            Ok(Some(generation)) => {
                tracing::info!(association = %id, generation, occurrence = occurrence_at, "scheduled association run");
                self.state.associations.wake();
                Ok(())
            }
            Ok(None) => Ok(()), // deleted meanwhile
            Err(e) => Err(SourceError(format!("scheduled run of association `{id}` not started: {e}"))),
        }
    }
}
