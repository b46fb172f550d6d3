//! [`VersionError`]: why a string is not a valid version of an ecosystem.
//!
//! Invariant: every variant carries the offending string exactly as the
//! caller passed it (not trimmed or normalised), plus a fixed, human-readable
//! reason, so a log line alone is enough to reproduce the rejection.

/// A version string that the ecosystem's own validation rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// Not a valid dpkg version.
    #[error("invalid dpkg version {version:?}: {reason}")]
    InvalidDeb {
        /// The rejected input.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a valid rpm `[EPOCH:]VERSION[-RELEASE]` string.
    #[error("invalid rpm version {version:?}: {reason}")]
    InvalidRpm {
        /// The rejected input.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a valid apk-tools 2.x version.
    #[error("invalid apk version {version:?}: {reason}")]
    InvalidApk {
        /// The rejected input.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl VersionError {
    /// The rejected input string.
    pub fn version(&self) -> &str {
        match self {
            VersionError::InvalidDeb { version, .. }
            | VersionError::InvalidRpm { version, .. }
            | VersionError::InvalidApk { version, .. } => version,
        }
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &'static str {
        match self {
            VersionError::InvalidDeb { reason, .. }
            | VersionError::InvalidRpm { reason, .. }
            | VersionError::InvalidApk { reason, .. } => reason,
        }
    }
}
