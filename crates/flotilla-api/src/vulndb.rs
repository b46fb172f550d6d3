//! The advisory database's wire types (`/api/v1/vulndb/...`) and client calls.

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// One OSV record to import, as text: a malformed one is rejected alone, by the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VulnRecordText {
    /// Where it came from (file, or `archive.zip:entry`), echoed in rejections.
    pub source: String,
    /// The OSV JSON text.
    pub text: String,
}

/// Body of `POST /api/v1/vulndb/records`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VulnImport {
    pub records: Vec<VulnRecordText>,
}

/// A record that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnRejected {
    pub source: String,
    /// The record id, when it got far enough to have one.
    pub id: Option<String>,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnImportResult {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<VulnRejected>,
}

impl VulnImportResult {
    /// Adds another batch's counts.
    pub fn absorb(&mut self, other: VulnImportResult) {
        self.new += other.new;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.rejected.extend(other.rejected);
    }
}

/// Advisories indexed under one ecosystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnEcosystemStatus {
    pub ecosystem: String,
    pub advisories: u64,
    /// The newest `modified` among them (RFC 3339).
    pub newest_modified: Option<String>,
}

/// The most recently modified record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnNewest {
    pub id: String,
    pub modified: String,
}

/// Reply of `GET /api/v1/vulndb/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnDbStatus {
    pub advisories: u64,
    pub ecosystems: Vec<VulnEcosystemStatus>,
    pub newest: Option<VulnNewest>,
}

/// One row of `GET /api/v1/vulndb/match` (CLI.md "vulndb match row").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnMatch {
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub package: String,
    /// Null when no fix is published.
    pub fixed_version: Option<String>,
    /// `High`, `Medium`, `Low` or `Informational`.
    pub severity: String,
    pub score: Option<f64>,
    pub title: String,
}

impl Client {
    /// Imports one batch of OSV records.
    pub async fn vulndb_import(&self, req: &VulnImport) -> Result<VulnImportResult, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/vulndb/records", Some(req)).await
    }

    pub async fn vulndb_status(&self) -> Result<VulnDbStatus, ClientError> {
        self.get("/api/v1/vulndb/status").await
    }

    /// Advisories affecting `package` at `version` in `ecosystem` (e.g. `Debian:12`).
    pub async fn vulndb_match(
        &self,
        ecosystem: &str,
        package: &str,
        version: &str,
    ) -> Result<Vec<VulnMatch>, ClientError> {
        self.get(&format!(
            "/api/v1/vulndb/match?ecosystem={}&package={}&version={}",
            enc(ecosystem),
            enc(package),
            enc(version)
        ))
        .await
    }
}
