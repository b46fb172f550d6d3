//! Vulnerability assessment runs and findings on the REST surface.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// Body of `POST /api/v1/assessments`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAssessment {
    /// Target expressions (default: all).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Rules packages: cve, security-best-practices, network-reachability (default: all three).
    #[serde(default)]
    pub rules: Vec<String>,
    /// The lowest severity that makes a node non-compliant (default High).
    #[serde(default)]
    pub noncompliant_at: Option<String>,
    /// Take targets, rules, threshold and duration from this template.
    #[serde(default)]
    pub template: Option<String>,
}

/// An assessment template (`PUT /api/v1/assessment-templates/{name}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssessmentTemplate {
    /// Filled in replies; the path names the template.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub noncompliant_at: Option<String>,
    /// How long the node-side checks may take to be delivered (seconds, default 600).
    #[serde(default)]
    pub duration_seconds: Option<u32>,
    /// A schedule: `cron(MIN HOUR DOM MON DOW)`, `rate(N minutes|hours|days)`,
    /// `at(YYYY-MM-DDTHH:MM:SS)`, or a bare five-field cron (`0 3 * * *`, daily at 03:00).
    #[serde(default)]
    pub schedule: Option<String>,
    /// The IANA time zone the schedule's cron or at reads in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How late a run missed while no server was up may still start, in seconds (default 3600);
    /// an older missed run is recorded as missed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u32>,
    /// Replies only: when the schedule last fired and fires next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
}

/// One node of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssessmentNode {
    pub node_id: String,
    /// Pending, Assessed, NotAssessable (its OS has no advisory data: not clean), Incomplete.
    pub status: String,
    pub detail: String,
    /// Days old the advisory data for this node's release was, when older than the server's
    /// `advisory_max_age` (absent when fresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisories_age_days: Option<i64>,
}

/// An assessment run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssessmentRun {
    pub id: String,
    /// Created, CollectingData, EvaluatingRules, Completed or Failed.
    pub status: String,
    pub targets: Vec<String>,
    pub rules: Vec<String>,
    pub noncompliant_at: String,
    pub node_count: i64,
    /// Severity -> number of findings.
    pub finding_counts: BTreeMap<String, u64>,
    /// The commands that ran the node-side checks.
    pub command_ids: Vec<String>,
    pub detail: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Per-node progress (in `show`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<AssessmentNode>>,
}

/// One finding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindingView {
    pub node_id: String,
    pub run_id: String,
    pub rule: String,
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub package: String,
    pub installed_version: String,
    pub fixed_version: Option<String>,
    pub severity: String,
    pub score: Option<String>,
    pub title: String,
    /// Days old the advisory data behind this finding was, when older than the server's
    /// `advisory_max_age` (absent when fresh): a stale database misses recent advisories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisories_age_days: Option<i64>,
}

impl Client {
    pub async fn put_assessment_template(&self, t: &AssessmentTemplate) -> Result<AssessmentTemplate, ClientError> {
        self.call(reqwest::Method::PUT, &format!("/api/v1/assessment-templates/{}", enc(&t.name)), Some(t)).await
    }

    pub async fn list_assessment_templates(&self) -> Result<Vec<AssessmentTemplate>, ClientError> {
        self.get("/api/v1/assessment-templates").await
    }

    pub async fn delete_assessment_template(&self, name: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/assessment-templates/{}", enc(name)), None).await
    }

    pub async fn create_assessment(&self, req: &CreateAssessment) -> Result<AssessmentRun, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/assessments", Some(req)).await
    }

    pub async fn list_assessments(&self) -> Result<Vec<AssessmentRun>, ClientError> {
        self.get("/api/v1/assessments").await
    }

    pub async fn get_assessment(&self, id: &str) -> Result<AssessmentRun, ClientError> {
        self.get(&format!("/api/v1/assessments/{}", enc(id))).await
    }

    /// Findings: of one run, or each node's latest; optionally one node, one severity.
    pub async fn list_findings(
        &self,
        node: Option<&str>,
        severity: Option<&str>,
        run: Option<&str>,
    ) -> Result<Vec<FindingView>, ClientError> {
        let query: Vec<String> = [("node", node), ("severity", severity), ("run", run)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
            .collect();
        let path =
            if query.is_empty() { "/api/v1/findings".into() } else { format!("/api/v1/findings?{}", query.join("&")) };
        self.get(&path).await
    }
}
