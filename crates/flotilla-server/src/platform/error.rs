//! The service layer's one error type, mapped to HTTP status codes in one place
//! (`platform::api_error`) and to gRPC status in the gateway.

use flotilla_core::ActivationRefusal;
use flotilla_store::StoreError;

/// A failed operation, with a message that says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    /// A thing the caller named does not exist: which kind, which id, and the message the
    /// caller sees (it says what to do). Callers match on `what`/`id`; the wording is kept as
    /// the CLI and its tests know it.
    #[error("{message}")]
    Missing { what: &'static str, id: String, message: String },
    /// The named thing exists but is in a state that refuses the operation (already exists,
    /// already finished, changed by someone else).
    #[error("{message}")]
    Clash { what: &'static str, id: String, message: String },
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

impl ServiceError {
    /// "no WHAT `ID`: HINT" (or without the hint when it is empty), the shape most lookups use.
    pub fn missing(what: &'static str, id: impl Into<String>, hint: &str) -> Self {
        let id = id.into();
        let message = if hint.is_empty() { format!("no {what} `{id}`") } else { format!("no {what} `{id}`: {hint}") };
        ServiceError::Missing { what, id, message }
    }

    /// Not found, with a message of its own shape.
    pub fn missing_with(what: &'static str, id: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Missing { what, id: id.into(), message: message.into() }
    }

    /// A conflict over the thing `what` `id`, with the message the caller sees.
    pub fn clash(what: &'static str, id: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Clash { what, id: id.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceError;

    #[test]
    fn missing_renders_what_id_and_hint() {
        let err = ServiceError::missing("command", "c-1", "list them with `flotilla commands ls`");
        assert_eq!(err.to_string(), "no command `c-1`: list them with `flotilla commands ls`");
        assert!(matches!(err, ServiceError::Missing { what: "command", ref id, .. } if id == "c-1"));
        assert_eq!(ServiceError::missing("group", "web", "").to_string(), "no group `web`");
    }

    #[test]
    fn clash_keeps_its_message_and_context() {
        let err = ServiceError::clash("document", "d-1", "document `d-1` already exists");
        assert_eq!(err.to_string(), "document `d-1` already exists");
        assert!(matches!(err, ServiceError::Clash { what: "document", .. }));
    }
}
