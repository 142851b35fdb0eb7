//! The error taxonomy and its wire answers.
//!
//! Codec errors are small `Copy` values. Each maps to exactly one HTTP status (and, for the
//! WebSocket layer, one close code), so the loop never has to decide what to tell the peer.

use std::fmt;

/// Errors in an HTTP request, each answered with one status and then (unless noted) a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// 400: the request is malformed; the text says how.
    BadRequest(&'static str),
    /// 408: the head (or body) did not arrive in time.
    RequestTimeout,
    /// 413: the body is over `max_body_bytes`.
    PayloadTooLarge,
    /// 431: the head is over `max_head_bytes`.
    HeadTooLarge,
    /// 431: more than `max_headers` headers.
    TooManyHeaders,
    /// 501: a feature of HTTP we do not implement (e.g. a transfer coding other than chunked).
    NotImplemented(&'static str),
    /// 505: not HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::RequestTimeout => 408,
            HttpError::PayloadTooLarge => 413,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// The short text body sent with the status.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::BadRequest(why) => why,
            HttpError::RequestTimeout => "request timeout",
            HttpError::PayloadTooLarge => "request body too large",
            HttpError::HeadTooLarge => "request header fields too large",
            HttpError::TooManyHeaders => "too many request header fields",
            HttpError::NotImplemented(why) => why,
            HttpError::VersionNotSupported => "HTTP version not supported",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for HttpError {}
