//! One error type for every handler, mapped to a status and the JSON body
//! `{"error": {"code", "message"}}`. Database messages never reach a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pipeline_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::views::AudioView;

/// What went wrong with a request, as the client sees it.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields beside `error` (the id of a refused upload).
    pub extra: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with this status, machine-readable code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => Self::not_found(format!("no {what} with id {id}")),
            e if e.is_unreachable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unreachable; try again later",
            ),
            StoreError::Conflict { .. } | StoreError::IllegalTransition(_) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the job changed meanwhile; try again",
            ),
            e => {
                tracing::error!(error = %e, "answered 500");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has the details",
                )
            }
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiError)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The refused file's record (recorded FAILED), on 422 `not_audio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioView>,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `not_found`,
    /// `conflict`, `not_ready`, `already_delivered`, `too_large`,
    /// `not_audio`, `unreadable`, `transcription_failed`, `timeout`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
            audio: None,
        };
        let mut body = serde_json::to_value(body).unwrap_or_default();
        if let (Some(serde_json::Value::Object(extra)), Some(map)) =
            (self.extra, body.as_object_mut())
        {
            map.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}
