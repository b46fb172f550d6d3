//! State Manager associations and compliance on the REST surface.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// Body of `POST /api/v1/associations` and `PATCH /api/v1/associations/{id}`. On update every
/// absent field keeps its value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssociationRequest {
    /// 3 to 128 of `a-z A-Z 0-9 _ . -` (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// The document (required on create).
    #[serde(default)]
    pub document: Option<String>,
    /// A fixed version (default: the document's default version at each run).
    #[serde(default)]
    pub document_version: Option<i64>,
    /// Parameter values; on update, the whole set.
    #[serde(default)]
    pub parameters: Option<BTreeMap<String, Vec<String>>>,
    /// Target expressions (required on create).
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// `cron(...)`, `rate(...)` (30 minutes or more) or `at(...)`; empty on update removes it.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub max_concurrency: Option<String>,
    #[serde(default)]
    pub max_errors: Option<String>,
    /// CRITICAL, HIGH, MEDIUM, LOW or UNSPECIFIED (default).
    #[serde(default)]
    pub compliance_severity: Option<String>,
    /// Do not run at creation, only at the schedule's cron occurrences.
    #[serde(default)]
    pub apply_only_at_cron_interval: Option<bool>,
}

/// An association.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Association {
    pub id: String,
    pub name: String,
    pub document: String,
    pub document_version: Option<i64>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub targets: Vec<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub max_concurrency: String,
    pub max_errors: String,
    pub compliance_severity: String,
    pub apply_only_at_cron_interval: bool,
    /// Node counts per association status (Pending, Success, Failed).
    pub counts: BTreeMap<String, u64>,
    /// The next occurrence of the schedule (RFC 3339, in its time zone), when it has one.
    pub next_run: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One node's status under an association.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssociationNodeStatus {
    pub node_id: String,
    /// Pending, Success or Failed.
    pub status: String,
    /// Whether the last run changed anything on the node (null when its steps did not say).
    pub changed: Option<bool>,
    pub detail: String,
    pub command_id: Option<String>,
    /// When the status was last written (RFC 3339).
    pub last_run: String,
}

/// A compliance item of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceItem {
    pub node_id: String,
    /// Association, Patch or Vulnerability.
    #[serde(rename = "type")]
    pub kind: String,
    /// The association id, or `assessment` for Vulnerability.
    pub id: String,
    pub title: String,
    /// COMPLIANT or NON_COMPLIANT.
    pub status: String,
    pub severity: String,
    pub detail: String,
    /// The command or assessment run that produced it.
    pub execution_id: String,
    pub time: String,
}

/// One compliance type across the fleet: nodes counted once per type (non-compliant when any
/// of their items of the type is).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceSummary {
    #[serde(rename = "type")]
    pub kind: String,
    pub compliant: u64,
    pub non_compliant: u64,
    /// Non-compliant nodes by their worst non-compliant item's severity.
    pub non_compliant_by_severity: BTreeMap<String, u64>,
    pub items: u64,
}

impl Client {
    pub async fn create_association(&self, req: &AssociationRequest) -> Result<Association, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/associations", Some(req)).await
    }

    pub async fn update_association(&self, id: &str, req: &AssociationRequest) -> Result<Association, ClientError> {
        self.call(reqwest::Method::PATCH, &format!("/api/v1/associations/{}", enc(id)), Some(req)).await
    }

    pub async fn list_associations(&self) -> Result<Vec<Association>, ClientError> {
        self.get("/api/v1/associations").await
    }

    pub async fn get_association(&self, id: &str) -> Result<Association, ClientError> {
        self.get(&format!("/api/v1/associations/{}", enc(id))).await
    }

    pub async fn delete_association(&self, id: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/associations/{}", enc(id)), None).await
    }

    /// Runs it again on every targeted node now.
    pub async fn apply_association(&self, id: &str) -> Result<Association, ClientError> {
        self.call::<(), _>(reqwest::Method::POST, &format!("/api/v1/associations/{}/apply", enc(id)), None).await
    }

    pub async fn association_status(&self, id: &str) -> Result<Vec<AssociationNodeStatus>, ClientError> {
        self.get(&format!("/api/v1/associations/{}/status", enc(id))).await
    }

    pub async fn list_compliance(
        &self,
        targets: &[String],
        kind: Option<&str>,
    ) -> Result<Vec<ComplianceItem>, ClientError> {
        let mut query: Vec<String> = targets.iter().map(|t| format!("target={}", enc(t))).collect();
        if let Some(k) = kind {
            query.push(format!("type={}", enc(k)));
        }
        self.get(&format!("/api/v1/compliance?{}", query.join("&"))).await
    }

    pub async fn compliance_summary(&self, kind: Option<&str>) -> Result<Vec<ComplianceSummary>, ClientError> {
        let query = kind.map(|k| format!("?type={}", enc(k))).unwrap_or_default();
        self.get(&format!("/api/v1/compliance/summary{query}")).await
    }

    pub async fn compliance_history(
        &self,
        node: &str,
        kind: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<ComplianceItem>, ClientError> {
        let mut query = format!("node={}", enc(node));
        if let Some(k) = kind {
            query.push_str(&format!("&type={}", enc(k)));
        }
        if let Some(l) = limit {
            query.push_str(&format!("&limit={l}"));
        }
        self.get(&format!("/api/v1/compliance/history?{query}")).await
    }
}
