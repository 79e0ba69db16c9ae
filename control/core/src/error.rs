//! Errors a client of the core can meet: each has a [`ErrorKind`] (what went wrong, in
//! terms the shell maps onto its protocol, e.g. an HTTP status) and a stable
//! machine-readable `code`, and reaches the client as `{"code": .., "message": ..}`.
//! The core never names an HTTP status itself.

use crate::token::TokenError;

/// What kind of failure an [`ApiError`] is; the shell turns it into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or asks for something unsupported (HTTP 400).
    BadRequest,
    /// No valid credentials (HTTP 401).
    Unauthenticated,
    /// Valid credentials that do not allow this (HTTP 403).
    Forbidden,
    /// No such resource here (HTTP 404).
    NotFound,
    /// The request conflicts with the resource's state (HTTP 409).
    Conflict,
    /// The body is larger than the endpoint takes (HTTP 413).
    PayloadTooLarge,
    /// The body is not of a type the endpoint takes (HTTP 415).
    UnsupportedMediaType,
    /// A precondition of the request (`If-Match`) does not hold (HTTP 412).
    PreconditionFailed,
    /// The client took too long to send its request (HTTP 408).
    RequestTimeout,
    /// This client (token subject or address) holds as much as it may (HTTP 429).
    TooManyRequests,
    /// Another server this one depends on failed or refused (HTTP 502).
    BadGateway,
    /// This server or the whole placement ranking is at capacity (HTTP 503).
    Unavailable,
    /// A fault of this server (HTTP 500).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn bad_sdp(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, "bad_sdp", message)
    }

    pub fn no_common_codec(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, "no_common_codec", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn unknown_resource(id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "unknown_resource",
            format!("no resource {id:?} on this server"),
        )
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let kind = if e.is_unauthenticated() {
            ErrorKind::Unauthenticated
        } else {
            ErrorKind::Forbidden
        };
        Self::new(kind, e.code(), e.to_string())
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
