//! Errors of the WebSocket codec, each with the one close code that answers it.
//!
//! Like [`crate::error::HttpError`], a `WsError` is a small `Copy` value, and every variant
//! maps to exactly one wire answer (RFC 6455 §7.4.1), so the loop never has to decide what to
//! tell the peer: it sends a close frame with [`WsError::close_code`] and [`WsError::reason`],
//! then closes the connection ("_Fail the WebSocket Connection_", §7.1.7).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// 1002: the peer broke a framing or messaging rule; the text says which.
    Protocol(&'static str),
    /// 1007: a text message (not a close reason) is not valid UTF-8.
    InvalidUtf8,
    /// 1009: a message is over the configured `max_message` (inflated, if compressed).
    MessageTooBig,
    /// 1007: a compressed message is not DEFLATE data (RFC 7692 §8.1: fail the connection).
    BadCompressedData,
}

impl WsError {
    /// The close code sent to the peer (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            WsError::Protocol(_) => super::close::PROTOCOL_ERROR,
            WsError::InvalidUtf8 | WsError::BadCompressedData => super::close::INVALID_DATA,
            WsError::MessageTooBig => super::close::TOO_BIG,
        }
    }

    /// The short reason sent in the close frame (always well under the 123 bytes a control
    /// frame leaves for it).
    pub fn reason(self) -> &'static str {
        match self {
            WsError::Protocol(why) => why,
            WsError::InvalidUtf8 => "invalid UTF-8 in text message",
            WsError::MessageTooBig => "message too big",
            WsError::BadCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.close_code(), self.reason())
    }
}

impl std::error::Error for WsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_and_reasons() {
        let table = [
            (WsError::Protocol("unmasked client frame"), 1002, "unmasked client frame"),
            (WsError::InvalidUtf8, 1007, "invalid UTF-8 in text message"),
            (WsError::MessageTooBig, 1009, "message too big"),
            (WsError::BadCompressedData, 1007, "invalid compressed data"),
        ];
        for (err, code, reason) in table {
            assert_eq!((err.close_code(), err.reason()), (code, reason), "{err:?}");
            assert!(err.reason().len() <= 123);
            assert_eq!(err.to_string(), format!("{code} {reason}"));
        }
    }
}
