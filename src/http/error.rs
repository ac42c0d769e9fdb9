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
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    /// A valid token without the scope the operation needs.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A write whose body type a cross-site page could send (see `auth::reject_cross_site`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client sent its body too slowly.
    #[error("{0}")]
    RequestTimeout(String),
    /// Too much of the same work at once; answered with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// A caller's rate limit or job cap is reached; `Retry-After` when a wait helps.
    #[error("{detail}")]
    TooMany {
        detail: String,
        retry_after: Option<std::time::Duration>,
    },
    /// A database query ran past `statement_timeout` and was cancelled.
    #[error("the query took too long and was cancelled; narrow the filters or ask for fewer rows")]
    QueryTimeout,
    /// The request is fine but the server cannot answer it yet (e.g. no active predictor).
    #[error("{0}")]
    Unavailable(String),
    #[error("invalid ONNX: {0}")]
    Onnx(#[from] OnnxError),
    /// A request the framework could not extract (bad query string, body too large, …).
    #[error("{1}")]
    Rejection(StatusCode, String),
    #[error("database error")]
    Database(sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs CPU-bound `work` on tokio's blocking pool, off the request threads; a panic in it is an
/// internal error.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(e.into()))
}

/// Work on the application's CPU pool that panicked is the server's fault.
impl From<crate::cpu::Panicked> for Error {
    fn from(e: crate::cpu::Panicked) -> Self {
        Error::Internal(e.into())
    }
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Busy(_) | Error::QueryTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            Error::Forbidden(_) => "forbidden",
            Error::UnsupportedMediaType(_) => "unsupported-media-type",
            Error::RequestTimeout(_) => "request-timeout",
            Error::Busy(_) => "busy",
            Error::TooMany { .. } => "too-many-requests",
            Error::QueryTimeout => "query-timeout",
            Error::NotFound(_) => "not-found",
            Error::PayloadTooLarge(_) => "payload-too-large",
            Error::Unavailable(_) => "unavailable",
            Error::Database(_) | Error::Internal(_) => "internal",
            _ => "bad-request",
        }
    }
}

impl Error {
    /// The problem document of this error (also one file's outcome in a batch upload).
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("urn:archdb:problem:{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let problem = self.problem();
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Error::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::Busy(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::TooMany {
                retry_after: Some(wait),
                ..
            } => {
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // 57014 query_canceled: statement_timeout.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
                Error::QueryTimeout
            }
            // Text PostgreSQL cannot hold, a NUL byte: 22021 character_not_in_repertoire in text,
            // 22P05 untranslatable_character in jsonb (`\u0000`).
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                Error::BadRequest("text values cannot contain NUL (U+0000)".into())
            }
            sqlx::Error::PoolTimedOut => {
                Error::Busy("every database connection is in use; retry shortly".into())
            }
            _ => Error::Database(e),
        }
    }
}

macro_rules! from_rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(r: $t) -> Self {
                if super::server::body_timed_out(&r) {
                    return Error::RequestTimeout(r.body_text());
                }
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
