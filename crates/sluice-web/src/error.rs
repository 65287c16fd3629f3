//! API errors as JSON (`{"error": …, "hint": …}`) with the HTTP status that says what kind.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_approvals::ApprovalError;
use sluice_core::review::ReviewError;

pub struct ApiError {
    status: StatusCode,
    message: String,
    hint: Option<String>,
}

impl ApiError {
    pub fn unauthorized(message: &str) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            hint: Some("mint one with `sluice token create` and pass it in SLUICE_TOKEN to the CLI".into()),
        }
    }

    pub fn not_found(message: &str, hint: &str) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into(), hint: Some(hint.into()) }
    }

    pub fn unavailable(message: &str, hint: &str) -> ApiError {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), hint: Some(hint.into()) }
    }

    pub fn bad_request(message: &str) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), hint: None }
    }
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> ApiError {
        let status = match &e {
            ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
            ApprovalError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApprovalError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApprovalError::Refused(r) => match r {
                ReviewError::OwnRequest(_) | ReviewError::NotAnApprover { .. } | ReviewError::NotAllowedToRevoke(_) => {
                    StatusCode::FORBIDDEN
                }
                ReviewError::ReasonRequired => StatusCode::BAD_REQUEST,
                ReviewError::NotPending { .. } | ReviewError::AlreadyApproved(_) | ReviewError::NotRevocable { .. } => {
                    StatusCode::CONFLICT
                }
            },
            ApprovalError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %e, "API call failed on the store");
        }
        ApiError { status, message: e.to_string(), hint: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message, "hint": self.hint}))).into_response()
    }
}
