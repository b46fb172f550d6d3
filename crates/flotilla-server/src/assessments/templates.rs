//! Assessment templates: saved run settings with an optional schedule, and the templates'
//! [`ScheduleSource`], through which the one scheduler (`platform::scheduler`) starts a run
//! for each occurrence.
//!
//! Invariants: a schedule is parsed by `flotilla_core::schedule` when it is put (bad ones are
//! refused with the core's message) and again when listed to the scheduler (a template stored
//! with a schedule this version no longer reads is logged and skipped, never fired). Changing a
//! template's schedule or zone moves its `schedule_since`, so no occurrence from before the
//! change is caught up; deleting a template forgets its occurrences.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::schedule::{DEFAULT_GRACE_MS, Schedule, ScheduleRules};
use flotilla_core::{Severity, UnixMillis};

use super::{DEFAULT_DURATION_SECONDS, NewAssessment, checked_rules, create};
use crate::app::AppState;
use crate::platform::scheduler::{ScheduleEntry, ScheduleSource, SourceError};
use crate::platform::{ServiceError, now_ms};

/// Templates' keys in the scheduler's occurrence record.
pub const KEY_PREFIX: &str = "assessment-template:";

/// How often a template may run at most: the general minimum (5 minutes).
pub const RULES: ScheduleRules = ScheduleRules::GENERAL;

/// The longest grace a template may ask for.
const MAX_GRACE_SECONDS: u32 = 7 * 86_400;

fn key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

fn grace_ms(t: &flotilla_store::AssessmentTemplate) -> i64 {
    t.grace_seconds.map_or(DEFAULT_GRACE_MS, |s| s.saturating_mul(1000))
}

fn parsed(t: &flotilla_store::AssessmentTemplate) -> Option<Result<Schedule, String>> {
    let expr = t.schedule.as_deref()?;
    Some(
        Schedule::parse(expr, t.timezone.as_deref(), &RULES)
            .map(|s| s.anchored(t.schedule_since))
            .map_err(|e| e.to_string()),
    )
}

/// The template the server ships (created by `notifications::seed`), disabled: no schedule.
pub const DAILY: &str = "daily";
/// The schedule `daily` gets when advisories are first imported: 03:00 UTC.
pub const DAILY_SCHEDULE: &str = "cron(0 3 * * *)";
/// The seed (`seeds` table) that records `daily` was given its schedule once.
const DAILY_SCHEDULE_SEED: &str = "schedule:daily";

/// After advisories were imported (or at start, when there are some): gives the shipped
/// `daily` template its schedule, once ever, unless the operator scheduled or deleted it.
pub async fn schedule_daily(state: &AppState) -> Result<(), ServiceError> {
    if state.store.seed_applied(DAILY_SCHEDULE_SEED).await? {
        return Ok(());
    }
    let daily = state.store.list_assessment_templates().await?.into_iter().find(|t| t.name == DAILY);
    if let Some(t) = daily.filter(|t| t.schedule.is_none()) {
        let req = NewTemplate {
            targets: t.targets,
            rules: t.rules,
            noncompliant_at: Some(t.noncompliant_at),
            duration_seconds: u32::try_from(t.duration_seconds).ok(),
            schedule: Some(DAILY_SCHEDULE.to_owned()),
            timezone: None,
            grace_seconds: None,
        };
        put_template(state, DAILY, req).await?;
        tracing::info!("advisories imported: the `{DAILY}` assessment template now runs on {DAILY_SCHEDULE}");
    }
    state.store.mark_seed(DAILY_SCHEDULE_SEED, now_ms()).await?;
    Ok(())
}

/// A template as an operator writes it; the path names it.
#[derive(Debug, Clone, Default)]
pub struct NewTemplate {
    pub targets: Vec<String>,
    pub rules: Vec<String>,
    pub noncompliant_at: Option<Severity>,
    pub duration_seconds: Option<u32>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub grace_seconds: Option<u32>,
}

/// A stored template with where its schedule stands.
#[derive(Debug, Clone)]
pub struct TemplateView {
    pub template: flotilla_store::AssessmentTemplate,
    pub last_fired_at: Option<UnixMillis>,
    pub next_run_at: Option<UnixMillis>,
}

async fn view(state: &AppState, t: flotilla_store::AssessmentTemplate) -> Result<TemplateView, ServiceError> {
    let key = key(&t.name);
    let last_fired = state.store.last_fired(&key).await?;
    let next = match parsed(&t) {
        Some(Ok(schedule)) => {
            let entry = ScheduleEntry { key: key.clone(), schedule, grace_ms: grace_ms(&t), since: t.schedule_since };
            state.scheduler.next_run(&entry, now_ms()).await?
        }
        _ => None,
    };
    Ok(TemplateView { template: t, last_fired_at: last_fired.map(|o| o.occurrence_at), next_run_at: next })
}

pub async fn put_template(state: &AppState, name: &str, req: NewTemplate) -> Result<TemplateView, ServiceError> {
    flotilla_core::target::validate_group_name(name)
        .map_err(|reason| ServiceError::Invalid(format!("template name `{name}`: {reason}")))?;
    let rules = checked_rules(req.rules)?;
    let targets = if req.targets.is_empty() { vec!["all".to_owned()] } else { req.targets };
    crate::fleet::parse_targets(&targets)?;
    let noncompliant_at = req.noncompliant_at.unwrap_or(Severity::High);
    let duration = req.duration_seconds.unwrap_or(DEFAULT_DURATION_SECONDS);
    if !(30..=86_400).contains(&duration) {
        return Err(ServiceError::Invalid(format!("duration {duration}s is outside 30 s to 24 h")));
    }
    let now = now_ms();
    let schedule = req.schedule.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let timezone = req.timezone.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    match &schedule {
        Some(expr) => {
            Schedule::create(expr, timezone.as_deref(), &RULES, now)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        None if timezone.is_some() || req.grace_seconds.is_some() => {
            return Err(ServiceError::Invalid(
                "a time zone or grace applies to a schedule: give --schedule too, e.g. --schedule 'cron(0 3 * * *)'"
                    .to_owned(),
            ));
        }
        None => {}
    }
    if let Some(grace) = req.grace_seconds
        && !(1..=MAX_GRACE_SECONDS).contains(&grace)
    {
        return Err(ServiceError::Invalid(format!(
            "grace {grace}s is outside 1 s to 7 days: give how late a missed run may still start, e.g. 3600 (1 hour, the default)"
        )));
    }
    let existing = state.store.list_assessment_templates().await?.into_iter().find(|t| t.name == name);
    // Re-putting the same schedule keeps its history; a new one starts now.
    let schedule_since = match &existing {
        Some(old) if old.schedule == schedule && old.timezone == timezone => old.schedule_since,
        _ => now,
    };
    let template = flotilla_store::AssessmentTemplate {
        name: name.to_owned(),
        targets,
        rules,
        noncompliant_at,
        duration_seconds: i64::from(duration),
        schedule,
        timezone,
        grace_seconds: req.grace_seconds.map(i64::from),
        schedule_since,
        created_at: now,
    };
    state.store.put_assessment_template(&template).await?;
    state.scheduler.changed();
    let stored =
        state.store.list_assessment_templates().await?.into_iter().find(|t| t.name == name).unwrap_or(template);
    view(state, stored).await
}

pub async fn list_templates(state: &AppState) -> Result<Vec<TemplateView>, ServiceError> {
    let mut out = Vec::new();
    for t in state.store.list_assessment_templates().await? {
        out.push(view(state, t).await?);
    }
    Ok(out)
}

pub async fn delete_template(state: &AppState, name: &str) -> Result<(), ServiceError> {
    if !state.store.delete_assessment_template(name).await? {
        return Err(ServiceError::missing("assessment template", name, ""));
    }
    state.store.delete_occurrences(&key(name)).await?;
    state.scheduler.changed();
    Ok(())
}

/// The templates as the scheduler sees them: each scheduled template is a schedule whose
/// occurrence starts a run of it.
pub struct TemplateSchedules {
    state: Arc<AppState>,
}

impl TemplateSchedules {
    pub fn new(state: Arc<AppState>) -> TemplateSchedules {
        TemplateSchedules { state }
    }
}

#[async_trait]
impl ScheduleSource for TemplateSchedules {
    fn name(&self) -> &'static str {
        "assessment templates"
    }

    async fn schedules(&self) -> Result<Vec<ScheduleEntry>, SourceError> {
        let templates = self
            .state
            .store
            .list_assessment_templates()
            .await
            .map_err(|e| SourceError(format!("cannot read assessment templates: {e}")))?;
        let mut out = Vec::new();
        for t in templates {
            match parsed(&t) {
                None => {}
                Some(Err(e)) => tracing::warn!(template = %t.name, "template schedule skipped: {e}"),
                Some(Ok(schedule)) => out.push(ScheduleEntry {
                    key: key(&t.name),
                    schedule,
                    grace_ms: grace_ms(&t),
                    since: t.schedule_since,
                }),
            }
        }
        Ok(out)
    }

    async fn fire(&self, key: &str, occurrence_at: UnixMillis) -> Result<(), SourceError> {
        let name = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
        let req = NewAssessment { template: Some(name.to_owned()), ..Default::default() };
        match create(&self.state, req).await {
            Ok(run) => {
                tracing::info!(template = %name, run = %run.id, occurrence = occurrence_at, "scheduled assessment started");
                Ok(())
            }
            Err(e) => Err(SourceError(format!("scheduled assessment of template `{name}` not started: {e}"))),
        }
    }
}
