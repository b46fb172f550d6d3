//! `/api/v1` assessment routes (bearer token, like the rest of `/api/v1`), and the one place
//! where assessment runs, findings and templates become REST types and back.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use flotilla_api as api;
use flotilla_core::Severity;
use flotilla_store::{AssessmentNodeRecord, AssessmentRunRecord};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::assessments::templates::{NewTemplate, TemplateView};
use crate::assessments::{self as assess, FindingView, NewAssessment, RunDetail, parse_severity};
use crate::platform::api_error::ApiError;
use crate::platform::extract::{Body, query_values};

type Result<T> = std::result::Result<T, ApiError>;
type S = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(findings))
        .routes(routes!(list_templates))
        .routes(routes!(put_template, delete_template))
}

#[utoipa::path(post, path = "/api/v1/assessments", request_body = api::CreateAssessment,
    responses((status = 201, body = api::AssessmentRun), (status = 400, body = api::ErrorBody)))]
async fn create(
    State(state): S,
    Body(req): Body<api::CreateAssessment>,
) -> Result<(StatusCode, Json<api::AssessmentRun>)> {
    let new = NewAssessment {
        noncompliant_at: severity(req.noncompliant_at.as_deref())?,
        template: req.template,
        targets: req.targets,
        rules: req.rules,
    };
    Ok((StatusCode::CREATED, Json(run_to_api(&assess::create(&state, new).await?, None))))
}

#[utoipa::path(get, path = "/api/v1/assessments", responses((status = 200, body = [api::AssessmentRun])))]
async fn list(State(state): S) -> Result<Json<Vec<api::AssessmentRun>>> {
    Ok(Json(assess::list(&state).await?.iter().map(|r| run_to_api(r, None)).collect()))
}

#[utoipa::path(get, path = "/api/v1/assessments/{id}",
    responses((status = 200, body = api::AssessmentRun), (status = 404, body = api::ErrorBody)))]
async fn show(State(state): S, Path(id): Path<String>) -> Result<Json<api::AssessmentRun>> {
    let RunDetail { run, nodes } = assess::show(&state, &id).await?;
    Ok(Json(run_to_api(&run, Some(nodes))))
}

#[utoipa::path(get, path = "/api/v1/findings",
    params(
        ("node" = Option<String>, Query, description = "Only this node"),
        ("severity" = Option<String>, Query, description = "High, Medium, Low or Informational"),
        ("run" = Option<String>, Query, description = "This run's findings (default: each node's latest)")
    ),
    responses((status = 200, body = [api::FindingView]), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
async fn findings(State(state): S, RawQuery(raw): RawQuery) -> Result<Json<Vec<api::FindingView>>> {
    let one = |k: &str| query_values(raw.as_deref(), k).into_iter().next();
    let severity = severity(one("severity").as_deref())?;
    let list = assess::findings(&state, one("node").as_deref(), severity, one("run").as_deref()).await?;
    Ok(Json(list.into_iter().map(finding_to_api).collect()))
}

#[utoipa::path(get, path = "/api/v1/assessment-templates", responses((status = 200, body = [api::AssessmentTemplate])))]
async fn list_templates(State(state): S) -> Result<Json<Vec<api::AssessmentTemplate>>> {
    Ok(Json(assess::list_templates(&state).await?.into_iter().map(template_to_api).collect()))
}

#[utoipa::path(put, path = "/api/v1/assessment-templates/{name}", request_body = api::AssessmentTemplate,
    responses((status = 200, body = api::AssessmentTemplate), (status = 400, body = api::ErrorBody)))]
async fn put_template(
    State(state): S,
    Path(name): Path<String>,
    Body(req): Body<api::AssessmentTemplate>,
) -> Result<Json<api::AssessmentTemplate>> {
    let new = NewTemplate {
        noncompliant_at: severity(req.noncompliant_at.as_deref())?,
        targets: req.targets,
        rules: req.rules,
        duration_seconds: req.duration_seconds,
        schedule: req.schedule,
        timezone: req.timezone,
        grace_seconds: req.grace_seconds,
    };
    Ok(Json(template_to_api(assess::put_template(&state, &name, new).await?)))
}

#[utoipa::path(delete, path = "/api/v1/assessment-templates/{name}",
    responses((status = 200), (status = 404, body = api::ErrorBody)))]
async fn delete_template(State(state): S, Path(name): Path<String>) -> Result<Json<()>> {
    assess::delete_template(&state, &name).await?;
    Ok(Json(()))
}

/// A severity as an operator wrote it (any case), when given.
fn severity(text: Option<&str>) -> Result<Option<Severity>> {
    Ok(text.map(parse_severity).transpose()?)
}

pub(crate) fn run_to_api(run: &AssessmentRunRecord, nodes: Option<Vec<AssessmentNodeRecord>>) -> api::AssessmentRun {
    api::AssessmentRun {
        id: run.id.clone(),
        status: run.status.as_str().to_owned(),
        targets: run.targets.clone(),
        rules: run.rules.clone(),
        noncompliant_at: run.noncompliant_at.as_str().to_owned(),
        node_count: run.node_count,
        finding_counts: serde_json::from_str(&run.finding_counts).unwrap_or_default(),
        command_ids: run.command_ids.clone(),
        detail: run.detail.clone(),
        created_at: api::rfc3339(run.created_at),
        ended_at: run.ended_at.map(api::rfc3339),
        nodes: nodes.map(|list| {
            list.into_iter()
                .map(|n| api::AssessmentNode {
                    node_id: n.node_id,
                    status: n.status.as_str().to_owned(),
                    detail: n.detail,
                    advisories_age_days: n.advisories_age_days,
                })
                .collect()
        }),
    }
}

fn finding_to_api(view: FindingView) -> api::FindingView {
    let f = view.finding;
    api::FindingView {
        advisories_age_days: view.advisories_age_days,
        node_id: f.node_id,
        run_id: f.run_id,
        rule: f.rule,
        advisory_id: f.advisory_id,
        aliases: f.aliases,
        package: f.package,
        installed_version: f.installed_version,
        fixed_version: f.fixed_version,
        severity: f.severity.as_str().to_owned(),
        score: f.score,
        title: f.title,
    }
}

fn template_to_api(view: TemplateView) -> api::AssessmentTemplate {
    let t = view.template;
    api::AssessmentTemplate {
        targets: t.targets,
        rules: t.rules,
        noncompliant_at: Some(t.noncompliant_at.as_str().to_owned()),
        duration_seconds: u32::try_from(t.duration_seconds).ok(),
        schedule: t.schedule,
        timezone: t.timezone,
        grace_seconds: t.grace_seconds.and_then(|g| u32::try_from(g).ok()),
        last_fired_at: view.last_fired_at.map(api::rfc3339),
        next_run_at: view.next_run_at.map(api::rfc3339),
        name: t.name,
    }
}
