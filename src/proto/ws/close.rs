//! Close frames (RFC 6455 §5.5.1, §7.4): status codes, parsing a client's close payload,
//! encoding ours.
//!
//! A close payload is empty, or a 2-byte big-endian status code followed by a UTF-8 reason.
//! The codes a peer may send are narrower than the codes that exist: 1005, 1006 and 1015 are
//! only for reporting locally, and 1004, 1012-2999 are unassigned by RFC 6455 (IANA has since
//! registered 1012-1014, but RFC 6455 endpoints and conformance suites still refuse them).

use super::error::WsError;
use super::frame::{encode_server_frame, OpCode, MAX_CONTROL_PAYLOAD};

/// Normal closure: the purpose of the connection is fulfilled.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, browser navigating away).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type the endpoint cannot accept (e.g. binary where only text is understood).
pub const UNSUPPORTED: u16 = 1003;
/// A message whose data does not match its type (non-UTF-8 text).
pub const INVALID_DATA: u16 = 1007;
/// The message (or behaviour) violates the endpoint's policy.
pub const POLICY: u16 = 1008;
/// A message too big to process.
pub const TOO_BIG: u16 = 1009;
/// The server met an unexpected condition.
pub const INTERNAL: u16 = 1011;
/// Try again later (IANA-registered). Not sent today: slow consumers get POLICY (1008).
pub const TRY_AGAIN: u16 = 1013;

/// The longest reason that fits a close frame: 125 bytes of control payload minus the code.
pub const MAX_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Whether a peer may send `code` in a close frame.
pub fn is_valid_received_code(code: u16) -> bool {
    match code {
        // §7.4.2: "Status codes in the range 0-999 are not used."
        0..=999 => false,
        // §7.4.1: the codes defined by RFC 6455 itself. 1004 is "Reserved"; 1005 and 1006
        // "MUST NOT be set as a status code in a Close control frame by an endpoint".
        1000..=1003 | 1007..=1011 => true,
        // 1004-1006, 1015 (also "MUST NOT be set"), and the rest of 1000-2999, "reserved for
        // definition by this protocol, its future revisions, and extensions".
        1004..=2999 => false,
        // §7.4.2: 3000-3999 registered with IANA for libraries and frameworks, 4000-4999
        // private use.
        3000..=4999 => true,
        _ => false,
    }
}

/// Parses a received close payload: `None` when it is empty, else the code and reason.
pub fn parse_close_payload(p: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match p {
        [] => Ok(None),
        // §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
        // unsigned integer (in network byte order) representing a status code".
        [_] => Err(WsError::Protocol("one-byte close payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_received_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            // §5.5.1: "the body MAY contain UTF-8-encoded data with value /reason/". A reason
            // that is not UTF-8 is a malformed close frame: 1002, not 1007.
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::Protocol("close reason not UTF-8"))?;
            Ok(Some((code, reason)))
        }
    }
}

/// Appends a server close frame with `code` and `reason`. A reason over [`MAX_REASON`] bytes
/// is cut at the last character boundary that fits, so the frame stays a legal control frame
/// and the reason stays UTF-8.
pub fn encode_close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode_server_frame(out, OpCode::Close, &payload[..2 + cut]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_codes() {
        let valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
        let invalid = [0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
        for code in valid {
            assert!(is_valid_received_code(code), "{code}");
        }
        for code in invalid {
            assert!(!is_valid_received_code(code), "{code}");
        }
        // And exhaustively against the ranges as the issue states them.
        for code in 0..=u16::MAX {
            let want = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            assert_eq!(is_valid_received_code(code), want, "{code}");
        }
    }

    #[test]
    fn parse() {
        type Parsed = Result<Option<(u16, &'static str)>, WsError>;
        let p = WsError::Protocol;
        let table: &[(&str, &[u8], Parsed)] = &[
            ("empty", b"", Ok(None)),
            ("one byte", b"\x03", Err(p("one-byte close payload"))),
            ("1000, no reason", b"\x03\xE8", Ok(Some((1000, "")))),
            ("1001 with reason", b"\x03\xE9bye", Ok(Some((1001, "bye")))),
            ("4999 with UTF-8 reason", b"\x13\x87\xCE\xBA\xE1\xBD\xB9", Ok(Some((4999, "κ\u{1F79}")))),
            ("1005", b"\x03\xED", Err(p("invalid close code"))),
            ("1006", b"\x03\xEE", Err(p("invalid close code"))),
            ("1015", b"\x03\xF7", Err(p("invalid close code"))),
            ("999", b"\x03\xE7", Err(p("invalid close code"))),
            ("0", b"\x00\x00", Err(p("invalid close code"))),
            ("5000", b"\x13\x88", Err(p("invalid close code"))),
            ("invalid code beats invalid reason", b"\x00\x00\xFF", Err(p("invalid close code"))),
            ("reason 0xFF", b"\x03\xE8\xFF", Err(p("close reason not UTF-8"))),
            ("reason cut mid-character", b"\x03\xE8\xCE", Err(p("close reason not UTF-8"))),
            ("reason surrogate", b"\x03\xE8\xED\xA0\x80", Err(p("close reason not UTF-8"))),
        ];
        for (name, bytes, want) in table {
            assert_eq!(parse_close_payload(bytes), *want, "{name}");
        }
        let mut long = vec![0x03, 0xE8];
        long.extend_from_slice(&[b'x'; MAX_REASON]);
        assert_eq!(parse_close_payload(&long), Ok(Some((1000, &"x".repeat(MAX_REASON)[..]))));
    }

    #[test]
    fn encode_round_trips() {
        // (reason, the reason that fits)
        let long_ascii = "a".repeat(200);
        let long_utf8 = "é".repeat(100); // 200 bytes; 123 is mid-character, so 122 fit.
        let table: &[(&str, &str)] =
            &[("", ""), ("bye", "bye"), (&long_ascii, &long_ascii[..MAX_REASON]), (&long_utf8, &long_utf8[..122])];
        for (reason, fits) in table {
            let mut out = Vec::new();
            encode_close_frame(&mut out, GOING_AWAY, reason);
            assert_eq!(out[0], 0x88);
            assert_eq!(usize::from(out[1]), 2 + fits.len());
            assert_eq!(parse_close_payload(&out[2..]), Ok(Some((GOING_AWAY, *fits))));
        }
    }
}
