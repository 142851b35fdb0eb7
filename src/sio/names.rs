//! Rooms and namespaces as hub channels: one reversible mapping, so a room has history,
//! replay, `/stats` and (with Redis) fan-out across nodes like any channel.
//!
//! ```text
//! namespace /            → channel sio:
//! namespace /chat        → channel sio:chat
//! room lobby of /chat    → channel sio:chat:lobby
//! room lobby of /        → channel sio::lobby
//! ```
//! Bytes outside `[A-Za-z0-9._-]` in a namespace (after its leading `/`) or a room name are
//! written `@XX` (hex; `@` and `:` included), so `/a/b` is `sio:a@2Fb` and room `a b` is
//! `…:a@20b`. A name whose channel would pass 128 bytes has no channel (joining it fails).

use crate::hub::valid_channel_name;

pub const PREFIX: &str = "sio:";

fn escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("@{b:02X}"));
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'@' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The channel of a whole namespace (every socket connected to it follows it).
pub fn namespace_channel(nsp: &str) -> Option<String> {
    let mut c = String::from(PREFIX);
    escape(&mut c, nsp.strip_prefix('/')?);
    valid_channel_name(&c).then_some(c)
}

/// The channel of room `room` in namespace `nsp`.
pub fn room_channel(nsp: &str, room: &str) -> Option<String> {
    if room.is_empty() {
        return None;
    }
    let mut c = namespace_channel(nsp)?;
    c.push(':');
    escape(&mut c, room);
    valid_channel_name(&c).then_some(c)
}

/// The namespace (with its `/`) and room (none: the whole namespace) a channel stands for,
/// or `None` for channels outside the mapping.
pub fn parse_channel(channel: &str) -> Option<(String, Option<String>)> {
    let rest = channel.strip_prefix(PREFIX)?;
    let (ns, room) = match rest.split_once(':') {
        Some((ns, room)) => (ns, Some(unescape(room)?).filter(|r| !r.is_empty())),
        None => (rest, None),
    };
    if rest.contains(':') && room.is_none() {
        return None;
    }
    Some((format!("/{}", unescape(ns)?), room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_is_reversible() {
        for (nsp, room, channel) in [
            ("/", None, "sio:"),
            ("/chat", None, "sio:chat"),
            ("/chat", Some("lobby"), "sio:chat:lobby"),
            ("/", Some("lobby"), "sio::lobby"),
            ("/a/b", Some("x y:z@"), "sio:a@2Fb:x@20y@3Az@40"),
            ("/", Some("é"), "sio::@C3@A9"),
        ] {
            let c = match room {
                Some(r) => room_channel(nsp, r).unwrap(),
                None => namespace_channel(nsp).unwrap(),
            };
            assert_eq!(c, channel);
            assert!(valid_channel_name(&c));
            assert_eq!(parse_channel(&c), Some((nsp.to_string(), room.map(String::from))));
        }
        assert_eq!(room_channel("/", ""), None);
        assert_eq!(room_channel("/", &"x".repeat(200)), None);
        assert_eq!(parse_channel("news"), None);
        assert_eq!(parse_channel("sio:a:"), None);
        assert_eq!(parse_channel("sio:a:@zz"), None);
    }
}
