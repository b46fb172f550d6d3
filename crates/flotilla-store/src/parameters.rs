//! The Parameter Store part of the storage interface, and the key service's record of master
//! key versions. Kept as its own trait (a supertrait of [`crate::Store`]) so it grows without
//! touching the rest of the interface.
//!
//! Invariant: the store never sees a SecureString in clear: `value` arrives as the key
//! service's envelope (base64) and leaves as it came. Names, labels and limits are checked by
//! the caller with `flotilla_core::parameter`.

use async_trait::async_trait;
use flotilla_core::UnixMillis;

use crate::StoreError;

/// One stored version of a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterRecord {
    pub name: String,
    pub version: i64,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    /// `Standard` or `Advanced`.
    pub tier: String,
    pub description: String,
    /// The value, or for SecureString the base64 envelope.
    pub value: String,
    /// Labels on this version (filled on reads; ignored on writes).
    pub labels: Vec<String>,
    pub created_at: UnixMillis,
}

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterPut {
    Stored,
    /// The parameter exists and the put did not ask to overwrite.
    Exists,
    /// Another put took this version first; read the head again and retry.
    Conflict,
    /// Storing would drop the oldest kept version, which carries labels.
    OldestLabelled {
        version: i64,
        labels: Vec<String>,
    },
}

/// What a label request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterLabel {
    Labelled,
    NoSuchVersion,
    /// The version would carry more labels than allowed.
    TooMany {
        limit: usize,
    },
}

/// A master key version that has been used in this store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRecord {
    pub key_id: String,
    pub version: i64,
    pub check_value: String,
    pub created_at: UnixMillis,
}

#[async_trait]
pub trait ParameterStore: Send + Sync {
    /// Stores `record.version` as the parameter's new latest version. It must be exactly one
    /// above the current latest (1 for a new parameter), which makes concurrent puts conflict
    /// instead of sharing a version. Keeps at most `keep` versions, dropping the oldest.
    async fn put_parameter(
        &self,
        record: &ParameterRecord,
        overwrite: bool,
        keep: usize,
    ) -> Result<ParameterPut, StoreError>;
    /// A version of a parameter; its latest when `version` is None.
    async fn get_parameter(&self, name: &str, version: Option<i64>) -> Result<Option<ParameterRecord>, StoreError>;
    /// The version a label names.
    async fn parameter_label(&self, name: &str, label: &str) -> Result<Option<i64>, StoreError>;
    /// The latest version of every parameter whose name starts with `prefix`, by name.
    async fn list_parameters(&self, prefix: &str) -> Result<Vec<ParameterRecord>, StoreError>;
    /// Every kept version, oldest first.
    async fn parameter_history(&self, name: &str) -> Result<Vec<ParameterRecord>, StoreError>;
    /// Moves each label to `version` (labels are unique per parameter).
    async fn label_parameter(
        &self,
        name: &str,
        version: i64,
        labels: &[String],
        max_per_version: usize,
    ) -> Result<ParameterLabel, StoreError>;
    /// Deletes a parameter with all its versions and labels; false when there was none.
    async fn delete_parameter(&self, name: &str) -> Result<bool, StoreError>;

    /// Records a master key version (idempotent: an existing row is left as it is).
    async fn record_master_key(&self, key: &MasterKeyRecord) -> Result<(), StoreError>;
    async fn list_master_keys(&self) -> Result<Vec<MasterKeyRecord>, StoreError>;
}
