//! Errors an HTTP client can meet. Each has a status and a stable machine-readable
//! `code`, and reaches the client as `application/json` `{"code": .., "message": ..}`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::token::TokenError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_sdp(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_sdp", message)
    }

    pub fn no_common_codec(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "no_common_codec", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unknown_resource(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_resource",
            format!("no resource {id:?} on this server"),
        )
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let status = if e.is_unauthenticated() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// An error and its causes, `a: b: c` (what a TLS refusal or a failed probe says is
/// in the causes, not in the outer error).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
