//! Socket.IO v5 packets (carried in Engine.IO message packets).
//!
//! ```text
//! <type>[<attachments>-][/<namespace>,][<ack id>][<JSON>]
//! 0 CONNECT  1 DISCONNECT  2 EVENT  3 ACK  4 CONNECT_ERROR  5 BINARY_EVENT  6 BINARY_ACK
//! ```
//! A binary packet's JSON holds `{"_placeholder":true,"num":N}` where each attachment goes;
//! the attachments follow as that many Engine.IO binary messages. The namespace may end
//! with `,` or with the packet (`40/custom`); what we send always carries the comma.
//!
//! The validity rules are socket.io-parser's: a CONNECT carries an object or nothing, a
//! DISCONNECT nothing, an EVENT a non-empty array whose first element names the event, an
//! ACK an array. Pure: no sockets, no clock.

use std::fmt;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl Kind {
    fn from_digit(d: u8) -> Option<Kind> {
        Some(match d {
            b'0' => Kind::Connect,
            b'1' => Kind::Disconnect,
            b'2' => Kind::Event,
            b'3' => Kind::Ack,
            b'4' => Kind::ConnectError,
            b'5' => Kind::BinaryEvent,
            b'6' => Kind::BinaryAck,
            _ => return None,
        })
    }

    pub fn is_binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// A decoded packet. `data` is the JSON text as received (see [`compact_json`] before
/// sending it on) and `value` its parse.
#[derive(Debug, PartialEq)]
pub struct Packet<'a> {
    pub kind: Kind,
    pub attachments: usize,
    pub nsp: &'a str,
    pub id: Option<u64>,
    pub data: Option<&'a str>,
    pub value: Option<Value>,
}

impl Packet<'_> {
    /// An event's name (the first element of its array).
    pub fn event_name(&self) -> Option<&str> {
        self.value.as_ref()?.as_array()?.first()?.as_str()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SioError {
    UnknownType,
    IllegalAttachments,
    BadAckId,
    InvalidPayload,
}

impl fmt::Display for SioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SioError::UnknownType => "unknown Socket.IO packet type",
            SioError::IllegalAttachments => "illegal attachment count",
            SioError::BadAckId => "invalid ack id",
            SioError::InvalidPayload => "invalid payload",
        })
    }
}

/// Most attachments one binary packet may announce (each is one more packet to wait for).
pub const MAX_ATTACHMENTS: usize = 256;
/// Ack ids are JavaScript numbers the client counts up from 0: 15 digits stay exact.
const MAX_ID_DIGITS: usize = 15;
/// Names socket.io reserves: a client may not emit them as events.
pub const RESERVED_EVENTS: [&str; 6] = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

pub fn decode(s: &str) -> Result<Packet<'_>, SioError> {
    let b = s.as_bytes();
    let kind = b.first().and_then(|&d| Kind::from_digit(d)).ok_or(SioError::UnknownType)?;
    let mut i = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 3 || b.get(i) != Some(&b'-') {
            return Err(SioError::IllegalAttachments);
        }
        attachments = s[start..i].parse().map_err(|_| SioError::IllegalAttachments)?;
        if attachments > MAX_ATTACHMENTS {
            return Err(SioError::IllegalAttachments);
        }
        i += 1;
    }
    let mut nsp = "/";
    if b.get(i) == Some(&b'/') {
        let start = i;
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        nsp = &s[start..i];
        if i < b.len() {
            i += 1; // the comma
        }
    }
    let mut id = None;
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        if i - start > MAX_ID_DIGITS {
            return Err(SioError::BadAckId);
        }
        id = Some(s[start..i].parse().map_err(|_| SioError::BadAckId)?);
    }
    let data = (i < b.len()).then(|| &s[i..]);
    let value = match data {
        Some(d) => Some(serde_json::from_str::<Value>(d).map_err(|_| {
            // Text after the namespace that is neither digits nor JSON: a bad ack id
            // (`42abc[...]`) or bad data; both end the connection.
            if d.as_bytes()[0].is_ascii_alphabetic() {
                SioError::BadAckId
            } else {
                SioError::InvalidPayload
            }
        })?),
        None => None,
    };
    let valid = match (kind, &value) {
        (Kind::Connect, None) => true,
        (Kind::Connect, Some(v)) => v.is_object(),
        (Kind::Disconnect, v) => v.is_none(),
        (Kind::ConnectError, Some(v)) => v.is_object() || v.is_string(),
        (Kind::Event | Kind::BinaryEvent, Some(Value::Array(a))) => match a.first() {
            Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
            Some(Value::Number(_)) => true,
            _ => false,
        },
        (Kind::Ack | Kind::BinaryAck, Some(v)) => v.is_array(),
        _ => false,
    };
    if !valid {
        return Err(SioError::InvalidPayload);
    }
    Ok(Packet { kind, attachments, nsp, id, data, value })
}

/// Appends a packet: `<type>[<n>-][/nsp,][id]<data>`. `data` is sent as given (compact it
/// first if it came from outside).
pub fn encode(out: &mut Vec<u8>, kind: Kind, attachments: usize, nsp: &str, id: Option<u64>, data: &str) {
    out.push(b'0' + kind as u8);
    if kind.is_binary() {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
    out.extend_from_slice(data.as_bytes());
}

/// `text` (valid JSON) without the whitespace between tokens: what `JSON.stringify`
/// would send, with the key order and the number spellings as they came.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.bytes().any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (Kind, usize, &str, Option<u64>, Option<&str>) {
        let p = decode(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (p.kind, p.attachments, p.nsp, p.id, p.data)
    }

    #[test]
    fn decodes_the_packet_table() {
        assert_eq!(ok("0"), (Kind::Connect, 0, "/", None, None));
        assert_eq!(ok("0/custom"), (Kind::Connect, 0, "/custom", None, None));
        assert_eq!(ok("0/custom,"), (Kind::Connect, 0, "/custom", None, None));
        assert_eq!(ok(r#"0/admin,{"token":"x"}"#), (Kind::Connect, 0, "/admin", None, Some(r#"{"token":"x"}"#)));
        assert_eq!(ok("1/admin,"), (Kind::Disconnect, 0, "/admin", None, None));
        assert_eq!(ok(r#"2["hello",1]"#), (Kind::Event, 0, "/", None, Some(r#"["hello",1]"#)));
        assert_eq!(ok(r#"2/admin,456["project:delete",123]"#), (Kind::Event, 0, "/admin", Some(456), Some(r#"["project:delete",123]"#)));
        assert_eq!(ok(r#"3/admin,456[]"#), (Kind::Ack, 0, "/admin", Some(456), Some("[]")));
        assert_eq!(ok(r#"4{"message":"Invalid namespace"}"#).0, Kind::ConnectError);
        assert_eq!(
            ok(r#"51-["hello",{"_placeholder":true,"num":0}]"#),
            (Kind::BinaryEvent, 1, "/", None, Some(r#"["hello",{"_placeholder":true,"num":0}]"#))
        );
        assert_eq!(ok(r#"61-/admin,456[{"_placeholder":true,"num":0}]"#), (Kind::BinaryAck, 1, "/admin", Some(456), Some(r#"[{"_placeholder":true,"num":0}]"#)));
        assert_eq!(decode(r#"2["hello"]"#).unwrap().event_name(), Some("hello"));
    }

    #[test]
    fn refuses_malformed_packets() {
        for (s, e) in [
            ("", SioError::UnknownType),
            ("7", SioError::UnknownType),
            ("x", SioError::UnknownType),
            (r#"5["a"]"#, SioError::IllegalAttachments),
            (r#"5x-["a"]"#, SioError::IllegalAttachments),
            (r#"5999-["a"]"#, SioError::IllegalAttachments),
            (r#"2{"a":1}"#, SioError::InvalidPayload),
            (r#"2"text""#, SioError::InvalidPayload),
            ("2[]", SioError::InvalidPayload),
            (r#"2[{"a":1}]"#, SioError::InvalidPayload),
            (r#"2["disconnect"]"#, SioError::InvalidPayload),
            ("2[", SioError::InvalidPayload),
            (r#"2abc["a"]"#, SioError::BadAckId),
            (r#"21234567890123456["a"]"#, SioError::BadAckId),
            (r#"0[1]"#, SioError::InvalidPayload),
            (r#"1["x"]"#, SioError::InvalidPayload),
            ("3", SioError::InvalidPayload),
            (r#"3{}"#, SioError::InvalidPayload),
        ] {
            assert_eq!(decode(s).unwrap_err(), e, "{s:?}");
        }
    }

    #[test]
    fn encodes_with_the_comma_after_a_namespace() {
        let enc = |kind, n, nsp, id, data| {
            let mut v = Vec::new();
            encode(&mut v, kind, n, nsp, id, data);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(enc(Kind::Connect, 0, "/", None, r#"{"sid":"x"}"#), r#"0{"sid":"x"}"#);
        assert_eq!(enc(Kind::Connect, 0, "/chat", None, r#"{"sid":"x"}"#), r#"0/chat,{"sid":"x"}"#);
        assert_eq!(enc(Kind::Ack, 0, "/", Some(12), "[3]"), "312[3]");
        assert_eq!(enc(Kind::BinaryEvent, 2, "/a", None, "[]"), "52-/a,[]");
        assert_eq!(enc(Kind::Disconnect, 0, "/a", None, ""), "1/a,");
    }

    #[test]
    fn compacting_keeps_order_and_strings() {
        assert_eq!(compact_json(r#"{ "b" : 1 , "a" : [ 1 , 2.50 ] }"#), r#"{"b":1,"a":[1,2.50]}"#);
        assert_eq!(compact_json(r#"[ "a b\" c" ]"#), r#"["a b\" c"]"#);
        assert!(matches!(compact_json("[1]"), std::borrow::Cow::Borrowed(_)));
    }
}
