//! What nodes say to each other through Redis: key names, message ids, the message body,
//! and the two Lua scripts that make a publish and a resume atomic.
//!
//! **Ids.** A message's id is a microsecond timestamp taken from Redis's clock, made strictly
//! increasing across every channel by one counter key (`pushwire:clock`). In the channel's
//! stream it is spelt `ms-seq` (milliseconds, then the microseconds within them, `seq` < 1000),
//! so a cluster id `1733100000123-456` and a standalone id `1733100000123456` are the same
//! number written two ways: ids of both modes are one ordered space, and a client that moves
//! between a standalone node and a cluster keeps a position that means something.
//!
//! **Atomicity.** Redis runs a script alone, so the id, the XADD and the PUBLISH happen as
//! one: every node sees a channel's messages in id order, and a resume (XREVRANGE) sees a
//! message either in the stream or, later, on the subscription, never in neither.

use std::rc::Rc;

use crate::hub::{SinkKind, SinkRef, TopicKey, TopicKind};
use crate::sio::wire::SioPayload;

pub const CLOCK_KEY: &[u8] = b"pushwire:clock";
/// The first id this Redis dataset handed out: an id older than it comes from history this
/// dataset does not have (lost with a restart without persistence, or from a standalone node).
pub const ORIGIN_KEY: &[u8] = b"pushwire:origin";

/// The topic every node follows whatever its subscribers: server emits to one socket.io
/// socket (`"to"`), which only the node that has the socket can deliver. A user topic whose
/// name has a `/`, which no user name may: no client can subscribe to it.
pub fn sockets_topic() -> TopicKey {
    TopicKey::user("/sio-to")
}

/// The body's data for an emit to one socket: `NSP LF SOCKET-ID LF [event, ...args]`.
pub fn to_socket(nsp: &str, socket_id: &str, args: &str) -> Vec<u8> {
    format!("{nsp}\n{socket_id}\n{args}").into_bytes()
}

pub fn parse_to_socket(data: &[u8]) -> Option<(&str, &str, &str)> {
    let s = std::str::from_utf8(data).ok()?;
    let mut p = s.splitn(3, '\n');
    Some((p.next()?, p.next()?, p.next()?))
}

/// The Redis key (stream) and pub/sub channel of a topic.
pub fn topic_key(key: &TopicKey) -> Vec<u8> {
    let mut k = match key.kind {
        TopicKind::Channel => b"pushwire:c:".to_vec(),
        TopicKind::User => b"pushwire:u:".to_vec(),
    };
    k.extend_from_slice(key.name.as_bytes());
    k
}

/// The topic a Redis channel name stands for.
pub fn parse_topic_key(k: &[u8]) -> Option<TopicKey> {
    let (kind, rest) = if let Some(r) = k.strip_prefix(b"pushwire:c:") {
        (TopicKind::Channel, r)
    } else {
        (TopicKind::User, k.strip_prefix(b"pushwire:u:")?)
    };
    let name = std::str::from_utf8(rest).ok()?;
    Some(TopicKey { kind, name: name.into() })
}

/// `ms-seq` as the id's number (`seq` below 1000: the ids our scripts make).
pub fn parse_stream_id(s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?;
    let (ms, seq) = s.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
    if seq >= 1000 {
        return None;
    }
    ms.checked_mul(1000)?.checked_add(seq)
}

/// The id as its stream spells it.
pub fn stream_id(id: u64) -> String {
    format!("{}-{}", id / 1000, id % 1000)
}

/// A message as it travels between nodes.
#[derive(Debug, PartialEq)]
pub struct Body {
    pub event: Option<Rc<str>>,
    pub data: Rc<[u8]>,
    pub sio: Option<Box<SioPayload>>,
    /// The socket.io session that sent it, if it must not get it back: only meaningful on
    /// the node named here.
    pub origin: Option<(Box<str>, SinkRef)>,
}

/// `origin LF event LF sio-lengths LF sio-bytes data`: three short lines, then bytes. The
/// origin is `node/kind/slot/id` or empty; the event is empty for none (event names are
/// never empty); the sio line is empty, or the length of the arguments' JSON followed by
/// each attachment's length, comma-separated.
pub fn encode_body(event: Option<&str>, data: &[u8], sio: Option<&SioPayload>, origin: Option<(&str, SinkRef)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some((node, s)) = origin {
        let kind = if s.kind == SinkKind::Session { 's' } else { 'c' };
        out.extend_from_slice(format!("{node}/{kind}/{}/{}", s.slot, s.id).as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(event.unwrap_or("").as_bytes());
    out.push(b'\n');
    if let Some(p) = sio {
        out.extend_from_slice(p.args.len().to_string().as_bytes());
        for a in &p.attachments {
            out.extend_from_slice(format!(",{}", a.len()).as_bytes());
        }
    }
    out.push(b'\n');
    if let Some(p) = sio {
        out.extend_from_slice(p.args.as_bytes());
        for a in &p.attachments {
            out.extend_from_slice(a);
        }
    }
    out.extend_from_slice(data);
    out
}

pub fn decode_body(b: &[u8]) -> Option<Body> {
    let mut lines = b.splitn(4, |&c| c == b'\n');
    let (origin, event, sio, mut rest) = (lines.next()?, lines.next()?, lines.next()?, lines.next()?);
    let origin = if origin.is_empty() {
        None
    } else {
        let o = std::str::from_utf8(origin).ok()?;
        let mut p = o.rsplitn(4, '/');
        let (id, slot, kind, node) = (p.next()?, p.next()?, p.next()?, p.next()?);
        let kind = match kind {
            "s" => SinkKind::Session,
            "c" => SinkKind::Conn,
            _ => return None,
        };
        Some((node.into(), SinkRef { kind, slot: slot.parse().ok()?, id: id.parse().ok()? }))
    };
    let event = if event.is_empty() { None } else { Some(Rc::from(std::str::from_utf8(event).ok()?)) };
    let sio = if sio.is_empty() {
        None
    } else {
        let mut lens = std::str::from_utf8(sio).ok()?.split(',').map(|n| n.parse::<usize>().ok());
        let args_len = lens.next()??;
        let args = std::str::from_utf8(rest.get(..args_len)?).ok()?;
        rest = &rest[args_len..];
        let mut attachments = Vec::new();
        for n in lens {
            let n = n?;
            attachments.push(Rc::from(rest.get(..n)?));
            rest = &rest[n..];
        }
        Some(Box::new(SioPayload { args: args.into(), attachments }))
    };
    Some(Body { event, data: rest.into(), sio, origin })
}

/// The SHA1 Redis names a script by (what `SCRIPT LOAD` answers and `EVALSHA` takes).
fn sha1_hex(script: &str) -> String {
    sha1_smol::Sha1::from(script).digest().to_string()
}

pub fn publish_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| sha1_hex(PUBLISH_SCRIPT))
}

pub fn range_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| sha1_hex(RANGE_SCRIPT))
}

/// Publish: KEYS = stream, clock, origin; ARGV = MAXLEN, body, "1" to publish only where a
/// node listens (a user: "offline" means no node has it), TTL in ms. Returns
/// `{id, receivers}`, or `{"", 0}` for a user nobody has.
pub const PUBLISH_SCRIPT: &str = r"
if ARGV[3] == '1' and redis.call('PUBSUB', 'NUMSUB', KEYS[1])[2] == 0 then return {'', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if now <= last then now = last + 1 end
local s = string.format('%d', now)
redis.call('SET', KEYS[2], s)
redis.call('SETNX', KEYS[3], s)
local id = string.format('%d-%d', math.floor(now / 1000), now % 1000)
if tonumber(ARGV[1]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'm', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local n = redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[2])
return {id, n}
";

/// Resume: KEYS = stream, clock, origin; ARGV = since (the id's number), how many messages
/// the history keeps, TTL in ms. Returns `{reset, newest id, entries newest first}`: reset
/// is 1 when something after `since` may be missing: the id is older than this dataset
/// (Redis lost its data, or the id is from elsewhere), newer than any id (from the future),
/// older than the history's age limit on a channel whose stream expired, or entries after it
/// were trimmed. A stream that exists keeps every entry until trimmed: none are missing.
pub const RANGE_SCRIPT: &str = r"
local since = tonumber(ARGV[1])
local clock = tonumber(redis.call('GET', KEYS[2]) or '0')
local origin = redis.call('GET', KEYS[3])
local t = redis.call('TIME')
local oldest = tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[3]) * 1000
local reset = 0
if not origin or since < tonumber(origin) or since > clock then reset = 1 end
local n = tonumber(ARGV[2])
local entries = {}
if n == 0 then
  if since < clock then reset = 1 end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  -- No stream: nothing was published within the TTL. Before that, messages may have been
  -- and expired with it.
  if since < oldest then reset = 1 end
else
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'max-deleted-entry-id' then
      local ms, seq = string.match(info[i + 1], '(%d+)-(%d+)')
      if tonumber(ms) * 1000 + tonumber(seq) > since then reset = 1 end
    end
  end
  local sid = string.format('(%d-%d', math.floor(since / 1000), since % 1000)
  entries = redis.call('XREVRANGE', KEYS[1], '+', sid, 'COUNT', n + 1)
  if #entries > n then reset = 1; table.remove(entries) end
end
return {reset, string.format('%d', clock), entries}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_number_in_two_spellings() {
        assert_eq!(stream_id(1733100000123456), "1733100000123-456");
        assert_eq!(parse_stream_id(b"1733100000123-456"), Some(1733100000123456));
        assert_eq!(parse_stream_id(b"5-7"), Some(5007));
        for bad in [&b"5-1000"[..], b"5", b"-1", b"a-1", b"18446744073709551615-0"] {
            assert_eq!(parse_stream_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn topic_keys_round_trip() {
        for k in [TopicKey::channel("news:eu"), TopicKey::user("Alice Smith")] {
            assert_eq!(parse_topic_key(&topic_key(&k)), Some(k));
        }
        assert_eq!(topic_key(&TopicKey::channel("a")), b"pushwire:c:a");
        assert_eq!(parse_topic_key(b"other:c:a"), None);
    }

    #[test]
    fn bodies_round_trip_and_garbage_is_refused() {
        let sio = SioPayload { args: "[\"m\",{\"_placeholder\":true,\"num\":0}]".into(), attachments: vec![Rc::from(&b"\n\x00bin"[..])] };
        let origin = SinkRef::session(3, 99);
        let b = encode_body(Some("ev"), b"line1\nline2", Some(&sio), Some(("node-a/x", origin)));
        let d = decode_body(&b).unwrap();
        assert_eq!(d.event.as_deref(), Some("ev"));
        assert_eq!(&d.data[..], b"line1\nline2");
        assert_eq!(d.sio.as_deref(), Some(&sio));
        assert_eq!(d.origin, Some(("node-a/x".into(), origin)));
        let plain = decode_body(&encode_body(None, b"", None, None)).unwrap();
        assert_eq!((plain.event, &plain.data[..], plain.sio, plain.origin), (None, &b""[..], None, None));
        for bad in [&b""[..], b"\n\n", b"n/q/1/2\n\n\n", b"\n\n99\nshort", b"\n\nx\n"] {
            assert!(decode_body(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
