//! The service layer's one error type, mapped to HTTP status codes in one place
//! (`http::error`) and to gRPC status in the gateway.

use flotilla_core::ActivationRefusal;
use flotilla_store::StoreError;

/// A failed operation, with a message that says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Refused(#[from] ActivationRefusal),
    #[error("{0}")]
    Unauthorized(String),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
    /// Stored data failed its integrity check (tampered or moved ciphertext).
    #[error("{0}")]
    Integrity(String),
}
