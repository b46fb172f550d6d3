//! Extractors whose rejections are JSON errors that say what was wrong with the request.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::api_error::ApiError;

/// `axum::Json`, but malformed JSON, unknown fields and wrong types are 400s that quote
/// serde's explanation.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    ApiError::invalid("the request body must be JSON with `Content-Type: application/json`")
                }
                other => ApiError::invalid(format!("invalid request body: {}", other.body_text())),
            }),
        }
    }
}

/// Every value of `key` in a query string (`?target=a&target=b`), percent-decoded.
pub fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}
