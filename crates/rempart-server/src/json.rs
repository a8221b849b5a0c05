//! A JSON body extractor whose every rejection is an [`ApiError`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, but a body that is too large, not JSON, of the wrong
/// content type or of the wrong shape gets the API's JSON error with the
/// status axum chose (413, 400, 415, 422) and serde's description of where.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let error = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        JsonRejection::BytesRejection(_) if status.as_u16() == 413 => "body_too_large",
        _ => "bad_request",
    };
    ApiError::new(status, error, rejection.body_text())
}
