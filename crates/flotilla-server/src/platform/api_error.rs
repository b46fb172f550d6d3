//! The one place where service errors become HTTP status codes and JSON error bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_api::{ErrorBody, ErrorDetail};
use flotilla_core::ActivationRefusal;
use flotilla_store::StoreError;

use super::ServiceError;

/// An HTTP error reply: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let message = err.to_string();
        match err {
            ServiceError::Invalid(_) => Self::invalid(message),
            ServiceError::Missing { .. } => Self::not_found(message),
            ServiceError::Clash { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::Unauthorized(_) => Self::unauthorized(message),
            ServiceError::Refused(refusal) => match refusal {
                ActivationRefusal::UnknownId(_) => Self::new(StatusCode::NOT_FOUND, "unknown_activation", message),
                ActivationRefusal::WrongCode(_) => Self::new(StatusCode::FORBIDDEN, "wrong_activation_code", message),
                ActivationRefusal::Expired(_) => Self::new(StatusCode::FORBIDDEN, "activation_expired", message),
                ActivationRefusal::LimitReached { .. } => {
                    Self::new(StatusCode::FORBIDDEN, "registration_limit_reached", message)
                }
            },
            ServiceError::Integrity(_) => {
                tracing::error!("integrity check failed: {message}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "integrity_check_failed", message)
            }
            ServiceError::Store(StoreError::UnknownValue { .. }) => {
                // The message names the row; a human must correct it or upgrade the server.
                tracing::error!("request failed: {message}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "unknown_stored_value", message)
            }
            ServiceError::Store(_) | ServiceError::Internal(_) => {
                // Logged here, where it is handled: a human must look.
                tracing::error!("request failed: {message}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{message}; see the server log"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::{ApiError, ServiceError};

    #[test]
    fn context_errors_map_to_their_status_with_the_message_unchanged() {
        let cases = [
            (
                ServiceError::missing("command", "c-1", "list them with `flotilla commands ls`"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                ServiceError::missing("assessment run", "ar-1", "list them with `flotilla assess ls`"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (ServiceError::clash("parameter", "/a", "parameter `/a` already exists"), StatusCode::CONFLICT, "conflict"),
        ];
        for (err, status, code) in cases {
            let message = err.to_string();
            let api = ApiError::from(err);
            assert_eq!((api.status, api.code, api.message.as_str()), (status, code, message.as_str()));
        }
    }
}
