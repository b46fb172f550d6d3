//! Parameter Store and key service bodies (`/api/v1/parameters`, `/api/v1/keys`).

use serde::{Deserialize, Serialize};

/// Body of `PUT /api/v1/parameters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PutParameter {
    /// Hierarchical name: `/app/prod/db-password`.
    pub name: String,
    pub value: String,
    /// `String`, `StringList` or `SecureString`; default: String for a new parameter, the
    /// current type for an overwrite.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Make a new version of an existing parameter (without it, an existing name is refused).
    #[serde(default)]
    pub overwrite: bool,
    /// `Standard` (4 KB values, default) or `Advanced` (8 KB).
    #[serde(default)]
    pub tier: Option<String>,
}

/// One version of a parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The value; for a SecureString only when decryption was asked for, otherwise null.
    pub value: Option<String>,
    pub version: i64,
    pub labels: Vec<String>,
    pub last_modified: String,
    pub description: String,
    pub tier: String,
}

/// Body of `POST /api/v1/parameters/labels`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LabelParameter {
    pub name: String,
    pub version: i64,
    pub labels: Vec<String>,
}

/// A master key version (never its material).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyVersion {
    pub key_id: String,
    pub version: u32,
    pub created_at: Option<String>,
    /// New writes use this version.
    pub current: bool,
}
