//! Engine.IO v4 packets and payloads (the transport under Socket.IO).
//!
//! A packet is one ASCII digit (its type) and its data: `0{json}` open, `1` close, `2` ping,
//! `3` pong (`2probe`/`3probe` during an upgrade), `4…` message, `5` upgrade, `6` noop. On a
//! WebSocket a packet is one frame (binary messages are raw binary frames, no type digit).
//! Over HTTP long-polling several packets travel in one body, joined by the record separator
//! 0x1E, and a binary message is `b` followed by its base64.
//!
//! Pure: bytes in, packets out; no sockets, no clock.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;

/// The record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// The protocol version served (`?EIO=4`).
pub const PROTOCOL: &str = "4";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Open(&'a [u8]),
    Close,
    /// `2`, or `2probe` during an upgrade (the data is echoed in the pong).
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A text message (a Socket.IO packet).
    Message(&'a [u8]),
    /// A binary message (a Socket.IO attachment): decoded base64 over polling, the frame's
    /// bytes on a WebSocket.
    Binary(Cow<'a, [u8]>),
    Upgrade,
    Noop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EioError {
    /// Empty packet, or a first byte that is no packet type.
    UnknownType,
    /// `b` followed by something that is not base64.
    BadBase64,
    /// A text packet that is not UTF-8.
    NotUtf8,
    /// More packets in one payload than a session takes at once.
    TooManyPackets,
}

impl fmt::Display for EioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EioError::UnknownType => "unknown Engine.IO packet type",
            EioError::BadBase64 => "invalid base64 in a binary packet",
            EioError::NotUtf8 => "a text packet that is not UTF-8",
            EioError::TooManyPackets => "too many packets in one payload",
        })
    }
}

/// Most packets one polling payload may carry (a POST is at most `maxPayload` bytes; this
/// bounds the work of one request the same way the WebSocket message budget does).
pub const MAX_PACKETS: usize = 1024;

/// Decodes one text packet (a WebSocket text frame, or one element of a polling payload
/// that does not start with `b`).
pub fn decode_text(p: &[u8]) -> Result<Packet<'_>, EioError> {
    let (&t, data) = p.split_first().ok_or(EioError::UnknownType)?;
    if std::str::from_utf8(data).is_err() {
        return Err(EioError::NotUtf8);
    }
    Ok(match t {
        b'0' => Packet::Open(data),
        b'1' => Packet::Close,
        b'2' => Packet::Ping(data),
        b'3' => Packet::Pong(data),
        b'4' => Packet::Message(data),
        b'5' => Packet::Upgrade,
        b'6' => Packet::Noop,
        _ => return Err(EioError::UnknownType),
    })
}

/// Decodes a polling payload: packets separated by 0x1E; `b…` is a base64 binary message.
pub fn decode_payload(body: &[u8]) -> Result<Vec<Packet<'_>>, EioError> {
    let mut out = Vec::new();
    for part in body.split(|&b| b == SEPARATOR) {
        if out.len() == MAX_PACKETS {
            return Err(EioError::TooManyPackets);
        }
        out.push(match part.split_first() {
            Some((b'b', b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| EioError::BadBase64)?;
                Packet::Binary(Cow::Owned(bytes))
            }
            _ => decode_text(part)?,
        });
    }
    Ok(out)
}

/// Appends one packet as a polling payload element (no separator).
pub fn encode_poll_packet(out: &mut Vec<u8>, p: &Packet<'_>) {
    match p {
        Packet::Binary(b) => encode_poll_binary(out, b),
        other => encode_text(out, other),
    }
}

/// Appends a text packet: its type digit and data.
pub fn encode_text(out: &mut Vec<u8>, p: &Packet<'_>) {
    let (t, data): (u8, &[u8]) = match p {
        Packet::Open(d) => (b'0', d),
        Packet::Close => (b'1', b""),
        Packet::Ping(d) => (b'2', d),
        Packet::Pong(d) => (b'3', d),
        Packet::Message(d) => (b'4', d),
        Packet::Upgrade => (b'5', b""),
        Packet::Noop => (b'6', b""),
        Packet::Binary(_) => unreachable!("binary packets have no text form"),
    };
    out.push(t);
    out.extend_from_slice(data);
}

/// Appends `b` and the base64 of `bytes` (a binary message in a polling payload).
pub fn encode_poll_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut s = String::with_capacity(bytes.len() * 4 / 3 + 4);
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut s);
    out.push(b'b');
    out.extend_from_slice(s.as_bytes());
}

/// The open packet's data: exactly the keys the reference server sends, in its order.
pub fn handshake(sid: &str, upgrades: bool, ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: usize) -> Vec<u8> {
    let upgrades = if upgrades { r#"["websocket"]"# } else { "[]" };
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#
    )
    .into_bytes()
}

/// The reference server's error codes, answered as `400 {"code":N,"message":"…"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl RequestError {
    pub fn message(self) -> &'static str {
        match self {
            RequestError::UnknownTransport => "Transport unknown",
            RequestError::UnknownSid => "Session ID unknown",
            RequestError::BadHandshakeMethod => "Bad handshake method",
            RequestError::BadRequest => "Bad request",
            RequestError::Forbidden => "Forbidden",
            RequestError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The JSON body: `{"code":N,"message":"…"}`.
    pub fn body(self) -> String {
        format!(r#"{{"code":{},"message":"{}"}}"#, self as u8, self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_packets() {
        let table: &[(&[u8], Packet<'_>)] = &[
            (b"0{}", Packet::Open(b"{}")),
            (b"1", Packet::Close),
            (b"2", Packet::Ping(b"")),
            (b"2probe", Packet::Ping(b"probe")),
            (b"3probe", Packet::Pong(b"probe")),
            (b"4hello", Packet::Message(b"hello")),
            (b"42[\"a\"]", Packet::Message(b"2[\"a\"]")),
            (b"5", Packet::Upgrade),
            (b"6", Packet::Noop),
        ];
        for (bytes, want) in table {
            assert_eq!(&decode_text(bytes).unwrap(), want, "{:?}", String::from_utf8_lossy(bytes));
            let mut out = Vec::new();
            encode_text(&mut out, want);
            assert_eq!(&out[..], *bytes);
        }
        for bad in [&b""[..], b"7", b"x", b"b", b"4\xff"] {
            assert!(decode_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payloads_split_on_the_record_separator() {
        let got = decode_payload(b"4hello\x1e2\x1ebAQID\x1e40").unwrap();
        assert_eq!(
            got,
            vec![Packet::Message(b"hello"), Packet::Ping(b""), Packet::Binary(Cow::Owned(vec![1, 2, 3])), Packet::Message(b"0")]
        );
        assert_eq!(decode_payload(b"4a\x1e").unwrap_err(), EioError::UnknownType, "an empty element is no packet");
        assert_eq!(decode_payload(b"b!!").unwrap_err(), EioError::BadBase64);
        assert_eq!(decode_payload(b"").unwrap_err(), EioError::UnknownType);
        let many = vec![&b"6"[..]; MAX_PACKETS + 1].join(&SEPARATOR);
        assert_eq!(decode_payload(&many).unwrap_err(), EioError::TooManyPackets);
        let mut out = Vec::new();
        encode_poll_packet(&mut out, &Packet::Binary(Cow::Borrowed(&[1, 2, 3])));
        assert_eq!(out, b"bAQID");
    }

    #[test]
    fn handshake_has_exactly_the_reference_keys() {
        let h = handshake("abc", true, 25000, 20000, 1000000);
        assert_eq!(
            std::str::from_utf8(&h).unwrap(),
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert!(std::str::from_utf8(&handshake("x", false, 1, 2, 3)).unwrap().contains(r#""upgrades":[]"#));
        assert_eq!(RequestError::UnknownSid.body(), r#"{"code":1,"message":"Session ID unknown"}"#);
    }
}
