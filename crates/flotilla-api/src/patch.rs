//! Patch Manager on the REST surface and on the agent channel: baselines as operators write
//! them (YAML or JSON files), patch groups, the snapshot the server gives an agent for one
//! operation and the report the agent sends back, and per-node states and compliance.

use std::collections::BTreeMap;

use flotilla_core::compliance::ComplianceSeverity;
use flotilla_core::patch::{Approval, Baseline, BaselineError, Filter, OsFamily, PackagePattern, RejectedAction, Rule};
use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// A patch baseline as written: the body of `POST /api/v1/patch/baselines` and
/// `PUT /api/v1/patch/baselines/{baseline}`, and the file `patch baselines create --file` reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// 3–128 of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// `debian`, `ubuntu`, `rhel` (Rocky, Alma, CentOS, RHEL, Oracle, Amazon Linux) or `alpine`.
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Filters every approved patch must pass (at most 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global_filters: Vec<FilterSpec>,
    /// At most 10 rules; a patch is approved by the first it passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_rules: Vec<RuleSpec>,
    /// Package names, `name*`, `name=version`, CVE ids or advisory ids (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_patches: Vec<String>,
    /// Default UNSPECIFIED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_patches_compliance_level: Option<String>,
    #[serde(default)]
    pub approved_patches_enable_non_security: bool,
    /// Package names, `name*` or `name=version` (at most 50). Rejected wins over approved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_patches: Vec<String>,
    /// `ALLOW_AS_DEPENDENCY` (default) or `BLOCK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_patches_action: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// PRIORITY, SECTION (apt only), CLASSIFICATION, SEVERITY, NAME, REPOSITORY.
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
    /// 0–360 days after the package's publication (apt repositories give no date: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_after_days: Option<i64>,
    /// YYYY-MM-DD: patches published on or before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_until_date: Option<String>,
    /// The threshold: a MISSING patch this rule approves at or above it makes the node
    /// NON_COMPLIANT. Default UNSPECIFIED (every one does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_level: Option<String>,
    #[serde(default)]
    pub enable_non_security: bool,
}

fn level(path: &str, text: Option<&str>) -> Result<ComplianceSeverity, BaselineError> {
    text.map_or(Ok(ComplianceSeverity::Unspecified), |t| {
        t.parse().map_err(|e: flotilla_core::compliance::ComplianceNameError| BaselineError::new(path, e.to_string()))
    })
}

fn filters(os: OsFamily, path: &str, specs: &[FilterSpec]) -> Result<Vec<Filter>, BaselineError> {
    specs.iter().enumerate().map(|(i, f)| Filter::parse(os, &format!("{path}[{i}]"), &f.key, &f.values)).collect()
}

impl BaselineSpec {
    /// Checks every field, naming the first that is wrong (`approval_rules[0].filters[1].key`).
    pub fn to_baseline(&self) -> Result<Baseline, BaselineError> {
        let os: OsFamily =
            self.os.parse().map_err(|e: flotilla_core::patch::NameError| BaselineError::new("os", e.to_string()))?;
        let rules = self
            .approval_rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let path = format!("approval_rules[{i}]");
                Ok(Rule {
                    filters: filters(os, &format!("{path}.filters"), &r.filters)?,
                    approval: Approval::parse(&path, r.approve_after_days, r.approve_until_date.as_deref())?,
                    compliance_level: level(&format!("{path}.compliance_level"), r.compliance_level.as_deref())?,
                    enable_non_security: r.enable_non_security,
                })
            })
            .collect::<Result<Vec<_>, BaselineError>>()?;
        let list = |field: &str, entries: &[String], rejected: bool| {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| PackagePattern::parse(&format!("{field}[{i}]"), e, rejected))
                .collect::<Result<Vec<_>, _>>()
        };
        let baseline = Baseline {
            name: self.name.trim().to_owned(),
            os,
            description: self.description.clone(),
            global_filters: filters(os, "global_filters", &self.global_filters)?,
            rules,
            approved: list("approved_patches", &self.approved_patches, false)?,
            approved_compliance_level: level(
                "approved_patches_compliance_level",
                self.approved_patches_compliance_level.as_deref(),
            )?,
            approved_enable_non_security: self.approved_patches_enable_non_security,
            rejected: list("rejected_patches", &self.rejected_patches, true)?,
            rejected_action: match &self.rejected_patches_action {
                None => RejectedAction::AllowAsDependency,
                Some(a) => a.parse().map_err(|e: flotilla_core::patch::NameError| {
                    BaselineError::new("rejected_patches_action", e.to_string())
                })?,
            },
        };
        baseline.check()?;
        Ok(baseline)
    }

    /// The spec of a baseline, in canonical spellings.
    pub fn from_baseline(b: &Baseline) -> BaselineSpec {
        let filters = |fs: &[Filter]| {
            fs.iter().map(|f| FilterSpec { key: f.key.as_str().to_owned(), values: f.values.clone() }).collect()
        };
        let level = |l: ComplianceSeverity| (l != ComplianceSeverity::Unspecified).then(|| l.as_str().to_owned());
        BaselineSpec {
            name: b.name.clone(),
            os: b.os.as_str().to_owned(),
            description: b.description.clone(),
            global_filters: filters(&b.global_filters),
            approval_rules: b
                .rules
                .iter()
                .map(|r| RuleSpec {
                    filters: filters(&r.filters),
                    approve_after_days: match r.approval {
                        Approval::AfterDays(d) => Some(i64::from(d)),
                        Approval::UntilDate { .. } => None,
                    },
                    approve_until_date: match &r.approval {
                        Approval::UntilDate { text, .. } => Some(text.clone()),
                        Approval::AfterDays(_) => None,
                    },
                    compliance_level: level(r.compliance_level),
                    enable_non_security: r.enable_non_security,
                })
                .collect(),
            approved_patches: b.approved.iter().map(ToString::to_string).collect(),
            approved_patches_compliance_level: level(b.approved_compliance_level),
            approved_patches_enable_non_security: b.approved_enable_non_security,
            rejected_patches: b.rejected.iter().map(ToString::to_string).collect(),
            rejected_patches_action: (b.rejected_action != RejectedAction::AllowAsDependency)
                .then(|| b.rejected_action.as_str().to_owned()),
        }
    }
}

/// A stored baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatchBaseline {
    pub id: String,
    pub name: String,
    pub os: String,
    /// The predefined `Flotilla-*` baselines cannot be changed or removed; copy one instead.
    pub predefined: bool,
    /// Whether it is its OS family's default (nodes without a patch group use it).
    pub default: bool,
    /// The patch groups mapped to it.
    pub patch_groups: Vec<String>,
    pub spec: BaselineSpec,
    pub created_at: String,
    pub updated_at: String,
}

/// Body of `PUT /api/v1/patch/defaults/{os}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetDefaultBaseline {
    /// Id or name of a baseline of that OS family.
    pub baseline: String,
}

/// A patch group: the `Patch Group` (or `PatchGroup`) tag value that maps nodes to a baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatchGroup {
    pub group: String,
    pub baseline_id: String,
    pub baseline: String,
    pub os: String,
}

/// Body of `PUT /api/v1/patch/groups/{group}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetPatchGroup {
    /// Id or name of the baseline.
    pub baseline: String,
}

/// One package's patch state on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatchStateRow {
    pub name: String,
    #[serde(default)]
    pub arch: String,
    /// INSTALLED, INSTALLED_OTHER, INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED, MISSING, FAILED, NOT_APPLICABLE.
    pub state: String,
    pub installed_version: String,
    #[serde(default)]
    pub available_version: Option<String>,
    /// The vendor's severity or the worst of the fixed CVEs (compliance scale).
    pub severity: String,
    #[serde(default)]
    pub classification: Option<String>,
    /// CVEs the update fixes (MISSING and FAILED only).
    #[serde(default)]
    pub cves: Vec<String>,
    #[serde(default)]
    pub repository: Option<String>,
    /// Whether this row makes the node NON_COMPLIANT (in the agent's report).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub counts: bool,
}

/// A node's patch compliance: the summary of its last operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatchCompliance {
    pub node_id: String,
    pub baseline: String,
    pub baseline_id: String,
    pub patch_group: String,
    /// COMPLIANT or NON_COMPLIANT.
    pub status: String,
    /// The worst severity of what makes it non-compliant.
    pub severity: String,
    /// State → number of packages.
    pub counts: BTreeMap<String, u64>,
    /// Scan or Install.
    pub operation: String,
    pub reboot_option: String,
    pub invocation_id: String,
    /// When the operation ended.
    pub time: String,
}

/// A known fix the server tells the agent about: the node's last assessment found `cve` in
/// `package`, fixed in `fixed_version` (none: not fixed yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownFix {
    pub package: String,
    pub cve: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    /// Assessment severity: High, Medium, Low, Informational.
    pub severity: String,
}

/// What the server gives an agent for one operation (AWS's deployable patch snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchSnapshot {
    pub baseline_id: String,
    pub baseline: BaselineSpec,
    #[serde(default)]
    pub patch_group: String,
    #[serde(default)]
    pub fixes: Vec<KnownFix>,
    /// Server time, for the approval delays: days since 1970-01-01 (UTC).
    pub today: i64,
    /// What the operator should know (a patch group without a baseline, no findings).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// What an agent reports after an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchReport {
    pub invocation_id: String,
    pub baseline_id: String,
    pub baseline: String,
    #[serde(default)]
    pub patch_group: String,
    pub operation: String,
    pub reboot_option: String,
    pub started_at_unix_ms: i64,
    pub ended_at_unix_ms: i64,
    pub patches: Vec<PatchStateRow>,
}

impl Client {
    pub async fn list_patch_baselines(&self) -> Result<Vec<PatchBaseline>, ClientError> {
        self.get("/api/v1/patch/baselines").await
    }

    pub async fn get_patch_baseline(&self, baseline: &str) -> Result<PatchBaseline, ClientError> {
        self.get(&format!("/api/v1/patch/baselines/{}", enc(baseline))).await
    }

    pub async fn create_patch_baseline(&self, spec: &BaselineSpec) -> Result<PatchBaseline, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/patch/baselines", Some(spec)).await
    }

    pub async fn update_patch_baseline(
        &self,
        baseline: &str,
        spec: &BaselineSpec,
    ) -> Result<PatchBaseline, ClientError> {
        self.call(reqwest::Method::PUT, &format!("/api/v1/patch/baselines/{}", enc(baseline)), Some(spec)).await
    }

    pub async fn delete_patch_baseline(&self, baseline: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/patch/baselines/{}", enc(baseline)), None).await
    }

    pub async fn set_default_patch_baseline(&self, os: &str, baseline: &str) -> Result<PatchBaseline, ClientError> {
        let body = SetDefaultBaseline { baseline: baseline.to_owned() };
        self.call(reqwest::Method::PUT, &format!("/api/v1/patch/defaults/{}", enc(os)), Some(&body)).await
    }

    pub async fn list_patch_groups(&self) -> Result<Vec<PatchGroup>, ClientError> {
        self.get("/api/v1/patch/groups").await
    }

    pub async fn set_patch_group(&self, group: &str, baseline: &str) -> Result<PatchGroup, ClientError> {
        let body = SetPatchGroup { baseline: baseline.to_owned() };
        self.call(reqwest::Method::PUT, &format!("/api/v1/patch/groups/{}", enc(group)), Some(&body)).await
    }

    pub async fn patch_states(&self, node: &str) -> Result<Vec<PatchStateRow>, ClientError> {
        self.get(&format!("/api/v1/patch/states/{}", enc(node))).await
    }

    /// Nodes' patch compliance, of the nodes matching any of `targets` (all when empty).
    pub async fn patch_compliance(&self, targets: &[String]) -> Result<Vec<PatchCompliance>, ClientError> {
        let query: Vec<String> = targets.iter().map(|t| format!("target={}", enc(t))).collect();
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        self.get(&format!("/api/v1/patch/compliance{query}")).await
    }
}
