//! Assessment storage: runs, per-node progress and findings.

use async_trait::async_trait;
use flotilla_core::assessment::{NodeStatus, RunStatus};
use flotilla_core::{Severity, UnixMillis};

use crate::{ComplianceItem, InventoryChange, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentRunRecord {
    pub id: String,
    pub targets: Vec<String>,
    pub rules: Vec<String>,
    /// The lowest severity that makes a node non-compliant.
    pub noncompliant_at: Severity,
    pub duration_seconds: i64,
    pub status: RunStatus,
    pub node_count: i64,
    /// Severity → number, as JSON text.
    pub finding_counts: String,
    pub command_ids: Vec<String>,
    pub detail: String,
    pub created_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentNodeRecord {
    pub node_id: String,
    pub status: NodeStatus,
    pub detail: String,
    /// Days old the advisory data was, when older than the server's maximum age.
    pub advisories_age_days: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRecord {
    pub run_id: String,
    pub node_id: String,
    pub rule: String,
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub package: String,
    pub installed_version: String,
    pub fixed_version: Option<String>,
    pub severity: Severity,
    pub score: Option<String>,
    pub title: String,
}

/// One node's outcome of a run, stored as a whole: its row, its findings for the run
/// (replacing any it had), its inventory changes (the `Finding` and `Compliance` types) and
/// its compliance items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAssessment {
    pub record: AssessmentNodeRecord,
    pub findings: Vec<FindingRecord>,
    pub inventory: Vec<InventoryChange>,
    pub compliance: Vec<ComplianceItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentTemplate {
    pub name: String,
    pub targets: Vec<String>,
    pub rules: Vec<String>,
    pub noncompliant_at: Severity,
    pub duration_seconds: i64,
    /// A schedule (`cron(...)`, `rate(...)`, `at(...)` or a bare five-field cron), when the
    /// template runs on one. Which occurrences fired lives in the [`crate::ScheduleStore`].
    pub schedule: Option<String>,
    /// The IANA zone of the schedule; None is UTC.
    pub timezone: Option<String>,
    /// How late a missed occurrence may still fire, in seconds; None is the default (1 hour).
    pub grace_seconds: Option<i64>,
    /// When the schedule (or its zone) was last set: no occurrence before it is caught up.
    pub schedule_since: UnixMillis,
    pub created_at: UnixMillis,
}

#[async_trait]
pub trait AssessmentStore {
    /// Creates or replaces a template (keeping its creation time).
    async fn put_assessment_template(&self, template: &AssessmentTemplate) -> Result<(), StoreError>;
    async fn list_assessment_templates(&self) -> Result<Vec<AssessmentTemplate>, StoreError>;
    async fn delete_assessment_template(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a new run and its nodes (all Pending).
    async fn create_assessment_run(&self, run: &AssessmentRunRecord, nodes: &[String]) -> Result<(), StoreError>;
    /// Updates status, counts, command ids, detail and end of a run.
    async fn update_assessment_run(&self, run: &AssessmentRunRecord) -> Result<(), StoreError>;
    async fn get_assessment_run(&self, id: &str) -> Result<Option<AssessmentRunRecord>, StoreError>;
    async fn list_assessment_runs(&self) -> Result<Vec<AssessmentRunRecord>, StoreError>;
    /// Runs that were not finished (for start-up recovery).
    async fn unfinished_assessment_runs(&self) -> Result<Vec<AssessmentRunRecord>, StoreError>;
    async fn assessment_nodes(&self, run_id: &str) -> Result<Vec<AssessmentNodeRecord>, StoreError>;
    /// Records the outcomes of `nodes` in one transaction (a run writes the nodes evaluated
    /// meanwhile together: one commit, and each touched page written once, for many nodes).
    async fn record_node_assessments(
        &self,
        run_id: &str,
        nodes: &[NodeAssessment],
        now: UnixMillis,
    ) -> Result<(), StoreError>;
    /// A run's findings, optionally of one node, in stored order.
    async fn run_findings(&self, run_id: &str, node: Option<&str>) -> Result<Vec<FindingRecord>, StoreError>;
}
