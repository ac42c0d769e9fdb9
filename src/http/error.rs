//! The API's one error type, rendered as RFC 7807 `application/problem+json`.

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::onnx::OnnxError;

/// An RFC 7807 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem (`urn:archdb:problem:<kind>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong with this request, for a person or an agent to act on.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid `Authorization: Bearer <token>` header is required for writes")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    /// The request is fine but the server cannot answer it yet (e.g. no active predictor).
    #[error("{0}")]
    Unavailable(String),
    #[error("invalid ONNX: {0}")]
    Onnx(#[from] OnnxError),
    /// A request the framework could not extract (bad query string, body too large, …).
    #[error("{1}")]
    Rejection(StatusCode, String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Onnx(OnnxError::TooManyNodes { .. } | OnnxError::OverBudget { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::Onnx(OnnxError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Onnx(_) => StatusCode::BAD_REQUEST,
            Error::Rejection(status, _) => *status,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Error::Onnx(_) => "invalid-onnx",
            Error::Unauthorized => "unauthorized",
            Error::NotFound(_) => "not-found",
            Error::PayloadTooLarge(_) => "payload-too-large",
            Error::Unavailable(_) => "unavailable",
            Error::Database(_) | Error::Internal(_) => "internal",
            _ => "bad-request",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let problem = Problem {
            kind: format!("urn:archdb:problem:{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, Error::Unauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

macro_rules! from_rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(r: $t) -> Self {
                Error::Rejection(r.status(), r.body_text())
            }
        }
    )*};
}
from_rejection!(
    BytesRejection,
    JsonRejection,
    PathRejection,
    QueryRejection,
    MultipartRejection,
    axum_extra::extract::QueryRejection
);
