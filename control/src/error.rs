//! How the core's errors reach an HTTP client: [`HttpError`] maps an
//! [`ApiError`]'s kind to a status and writes it as `application/json`
//! `{"code": .., "message": ..}`. Refusals for load (503, 429) carry `Retry-After`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cascade_core::error::{ApiError, ErrorKind};

/// An [`ApiError`] on its way to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<cascade_core::token::TokenError> for HttpError {
    fn from(e: cascade_core::token::TokenError) -> Self {
        Self(e.into())
    }
}

/// The `code` of an error response, in its extensions (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// Seconds a client refused because this server is full (503) should wait.
pub const RETRY_AFTER_FULL: u32 = 10;
/// Seconds a client refused for holding its share (429) should wait.
pub const RETRY_AFTER_SHARE: u32 = 5;

/// The HTTP status an error of `kind` is answered with.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status(e.kind);
        let body = serde_json::json!({ "code": e.code, "message": e.message });
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        resp.extensions_mut().insert(ErrorCode(e.code));
        let retry_after = match status {
            StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_FULL),
            StatusCode::TOO_MANY_REQUESTS => Some(RETRY_AFTER_SHARE),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
