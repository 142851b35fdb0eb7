//! This node's side of the cluster, sans-IO: the two Redis links and what they are for.
//! The loop (`net/redis.rs`) owns the sockets and carries out the [`Action`]s; everything
//! here is decisions over state, testable without Redis.
//!
//! Each topic with local subscribers is followed on the subscriber link:
//!
//! ```text
//!   Pending ──SUBSCRIBE sent──▶ Subscribing ──confirmed──▶ Live
//!      ▲                                          │ (after a reconnect, with a gap to fill)
//!      │ subscriber link down                     ▼
//!      └──────────────────────────────────── Filling ──stream read──▶ Live
//! ```
//!
//! A topic's *watermark* is the id of the last message this node delivered on it: a message
//! is delivered only if it is newer, so a message that comes both from a stream read and
//! from the subscription is delivered once. While a gap is being filled, live messages are
//! held, so that they go out after the older ones they follow.
//!
//! A resuming subscriber (`Last-Event-ID` on another node) asks the stream for what follows
//! its id once the topic is confirmed: the read then sees every message the subscription did
//! not bring (Redis runs commands in order, and the script that publishes adds to the stream
//! and publishes in one step).

use std::collections::HashMap;
use std::time::Instant;

use slab::Slab;

use super::link::{Event, Link, Role, SendError};
use super::url::RedisUrl;
use super::wire::{self, Body};
use crate::hub::{SinkRef, TopicKey};
use crate::proto::resp::Value;

/// Output a link may queue before sends fail (Redis is not reading): 8 MiB.
const MAX_LINK_OUTPUT: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Wanted; SUBSCRIBE not sent (the subscriber link is down).
    Pending,
    /// SUBSCRIBE (or an UNSUBSCRIBE before it) is not confirmed yet.
    Subscribing,
    /// Confirmed; the stream is being read for what the node missed while down.
    Filling,
    Live,
}

#[derive(Debug)]
struct Followed {
    wanted: bool,
    phase: Phase,
    /// Confirmations still to come for what was sent (SUBSCRIBE and UNSUBSCRIBE alike):
    /// a topic is subscribed once they are all in and the last one was a SUBSCRIBE.
    expect: u32,
    watermark: u64,
    /// The subscription was lost: once it is back, read the stream after the watermark.
    gap: bool,
    /// The fill's stream read is in flight (else, in Filling, it waits for the command link).
    fill_sent: bool,
    /// Which fill a reply answers: one from before a later loss of the subscription is stale.
    fill_gen: u32,
    /// Live messages that came during a fill.
    held: Vec<(u64, Body)>,
    /// Resumes waiting for the topic to be confirmed: (slot, id).
    waiting: Vec<(usize, u64)>,
}

/// Live messages a topic holds while its gap is being filled. Past it (the command link has
/// been down too long) the fill is given up: its subscribers get a reset, then what was held.
const MAX_HELD: usize = 10_000;

/// A subscriber resuming from an id: what the streams of its topics hold after it.
#[derive(Debug)]
pub struct Resume {
    /// Unique for the node's life: a slot is reused, this is not.
    id: u64,
    pub sink: SinkRef,
    /// Which of the sink's requests asked (the loop's number; 0: any).
    pub request: u32,
    pub since: u64,
    pub keys: Vec<TopicKey>,
    /// Stream reads not answered yet.
    left: usize,
    /// Entries after `since`, any order (the loop merges them with local history).
    pub entries: Vec<(TopicKey, u64, Body)>,
    pub reset: bool,
    /// The newest id Redis had handed out.
    pub last_id: u64,
}

/// What a command's reply is for.
#[derive(Debug)]
pub enum Tag<P> {
    Publish(P),
    Fill(TopicKey, u32),
    Range { resume: usize, id: u64, key: TopicKey },
}

/// What the loop must do.
#[derive(Debug)]
pub enum Action<P> {
    /// Deliver this message to the topic's local subscribers (already checked newer than
    /// anything delivered on it).
    Deliver(TopicKey, u64, Body),
    /// The topic's gap could not be filled: tell its subscribers (their position is lost).
    Reset(TopicKey, u64),
    /// A publish was carried out (`Ok((id, receiving nodes))`; id `None`: a user nobody
    /// has), or failed.
    Published(P, Result<(Option<u64>, i64), String>),
    /// A resume is complete: take it with [`Node::take_resume`].
    Resumed(usize),
    /// Both links are up.
    Up,
    /// A link went down (the node retries by itself).
    Down(String),
}

#[derive(Debug)]
pub struct Node<P> {
    pub node_id: String,
    pub cmd: Link<Tag<P>>,
    pub sub: Link<()>,
    topics: HashMap<TopicKey, Followed>,
    resumes: Slab<Resume>,
    history_len: usize,
    ttl_ms: u64,
    /// Why the cluster is unavailable (`None`: both links are up).
    down: Option<String>,
    /// The newest id that came on the subscriber link: messages come there in id order
    /// across all topics, so anything newer was not seen by this node. From Redis's clock
    /// only (never this machine's, which may be ahead).
    last_seen: u64,
    next_resume_id: u64,
    /// A reply said the scripts are gone: the command link reconnects after this input.
    reset_cmd: bool,
}

impl<P: std::fmt::Debug> Node<P> {
    /// `start_id`: the node's start as an id (microseconds since the epoch).
    pub fn new(url: RedisUrl, node_id: String, history_len: usize, ttl_ms: u64, now: Instant, start_id: u64) -> Node<P> {
        let seed = start_id;
        let mut node = Node {
            node_id,
            cmd: Link::new(url.clone(), Role::Commands, now, seed, MAX_LINK_OUTPUT),
            sub: Link::new(url, Role::Subscriber, now, seed.rotate_left(17) ^ 0x9e37_79b9, MAX_LINK_OUTPUT),
            topics: HashMap::new(),
            resumes: Slab::new(),
            history_len,
            ttl_ms,
            down: Some("connecting to Redis".into()),
            last_seen: 0,
            next_resume_id: 0,
            reset_cmd: false,
        };
        // Followed for the life of the node (no hub subscriber ever unwants it).
        node.want(&wire::sockets_topic(), true);
        // The scripts are loaded by every connection's handshake and then called by their
        // SHA1: a publish sends its arguments, not 700 bytes of Lua for Redis to hash.
        node.cmd.add_setup(&[b"SCRIPT", b"LOAD", wire::PUBLISH_SCRIPT.as_bytes()]);
        node.cmd.add_setup(&[b"SCRIPT", b"LOAD", wire::RANGE_SCRIPT.as_bytes()]);
        node
    }

    /// `None` when publishes can be taken; else why not.
    pub fn unavailable(&self) -> Option<&str> {
        self.down.as_deref()
    }

    /// Topics followed on Redis (confirmed), and ones not confirmed yet (the node's own
    /// topic for emits to one socket not counted).
    pub fn subscription_counts(&self) -> (usize, usize) {
        let own = wire::sockets_topic();
        let followed = || self.topics.iter().filter(|(k, t)| t.wanted && **k != own);
        let live = followed().filter(|(_, t)| matches!(t.phase, Phase::Live | Phase::Filling)).count();
        (live, followed().count() - live)
    }

    /// Publishes through Redis: the message gets its id there, reaches every node that
    /// follows the topic (this one too: it delivers then, not now), and is kept in the stream.
    pub fn publish(&mut self, key: &TopicKey, body: &[u8], users_only_if_present: bool, tag: P) -> Result<(), SendError> {
        if self.down.is_some() {
            return Err(SendError::NotReady);
        }
        let k = wire::topic_key(key);
        let maxlen = self.history_len.to_string();
        let ttl = self.ttl_ms.max(1).to_string();
        let only = if users_only_if_present { &b"1"[..] } else { b"0" };
        let args: [&[u8]; 10] = [b"EVALSHA", wire::publish_sha().as_bytes(), b"3", &k, wire::CLOCK_KEY, wire::ORIGIN_KEY, maxlen.as_bytes(), body, only, ttl.as_bytes()];
        self.cmd.send(&args, Tag::Publish(tag))
    }

    /// The topic has local subscribers now (`true`), or has none left.
    pub fn want(&mut self, key: &TopicKey, wanted: bool) {
        let ready = self.sub.is_ready();
        match self.topics.get_mut(key) {
            None if !wanted => {}
            None => {
                let mut t = Followed { wanted, phase: Phase::Pending, expect: 0, watermark: 0, gap: false, fill_sent: false, fill_gen: 0, held: Vec::new(), waiting: Vec::new() };
                if ready && self.sub.send(&[b"SUBSCRIBE", &wire::topic_key(key)], ()).is_ok() {
                    t.phase = Phase::Subscribing;
                    t.expect += 1;
                }
                self.topics.insert(key.clone(), t);
            }
            Some(t) if t.wanted == wanted => {}
            Some(t) => {
                t.wanted = wanted;
                let cmd: &[u8] = if wanted { b"SUBSCRIBE" } else { b"UNSUBSCRIBE" };
                if !wanted {
                    // Its subscribers are gone: so are the resumes that waited for it.
                    for (slot, id) in std::mem::take(&mut t.waiting) {
                        if self.resumes.get(slot).is_some_and(|r| r.id == id) {
                            self.resumes.remove(slot);
                        }
                    }
                }
                if matches!(t.phase, Phase::Pending) {
                    // Nothing was sent: nothing to take back.
                    if !wanted {
                        self.topics.remove(key);
                    }
                    return;
                }
                if ready && self.sub.send(&[cmd, &wire::topic_key(key)], ()).is_ok() {
                    t.expect += 1;
                    t.phase = Phase::Subscribing;
                    t.held.clear();
                    // Coming back: what was published while it was unsubscribed was not for
                    // anyone here.
                    t.gap = false;
                }
            }
        }
    }

    /// A subscriber of `keys` wants what the streams hold after `since`. Its topics must be
    /// wanted already ([`Node::want`]).
    pub fn resume(&mut self, sink: SinkRef, request: u32, keys: Vec<TopicKey>, since: u64) -> usize {
        let n = keys.len();
        self.next_resume_id += 1;
        let id = self.next_resume_id;
        let slot = self.resumes.insert(Resume { id, sink, request, since, keys: keys.clone(), left: n, entries: Vec::new(), reset: false, last_id: 0 });
        for key in keys {
            let confirmed = self.topics.get(&key).is_some_and(|t| t.wanted && matches!(t.phase, Phase::Live | Phase::Filling));
            if confirmed && self.cmd.is_ready() {
                self.send_range(slot, &key);
            } else if let Some(t) = self.topics.get_mut(&key) {
                t.waiting.push((slot, id));
            } else {
                // Not followed (its subscriber left at once): nothing to wait for.
                self.part_failed(slot);
            }
        }
        slot
    }

    /// Every read of the resume is answered (or could not be made).
    pub fn resume_done(&self, slot: usize) -> bool {
        self.resumes.get(slot).is_some_and(|r| r.left == 0)
    }

    /// Resumes not complete yet (bounded by the subscribers that asked).
    pub fn resumes_waiting(&self) -> usize {
        self.resumes.len()
    }

    pub fn take_resume(&mut self, slot: usize) -> Option<Resume> {
        self.resumes.try_remove(slot)
    }

    fn send_range(&mut self, slot: usize, key: &TopicKey) {
        let (since, id) = (self.resumes[slot].since, self.resumes[slot].id);
        if self.range(key, since, Tag::Range { resume: slot, id, key: key.clone() }).is_err() {
            self.part_failed(slot);
        }
    }

    fn range(&mut self, key: &TopicKey, since: u64, tag: Tag<P>) -> Result<(), SendError> {
        let k = wire::topic_key(key);
        let (since, n, ttl) = (since.to_string(), self.history_len.to_string(), self.ttl_ms.to_string());
        let args: [&[u8]; 9] = [b"EVALSHA", wire::range_sha().as_bytes(), b"3", &k, wire::CLOCK_KEY, wire::ORIGIN_KEY, since.as_bytes(), n.as_bytes(), ttl.as_bytes()];
        self.cmd.send(&args, tag)
    }

    /// A stream read for a resume could not be made or answered: the subscriber cannot be
    /// sure of its position.
    fn part_failed(&mut self, slot: usize) -> bool {
        let Some(r) = self.resumes.get_mut(slot) else { return false };
        r.reset = true;
        r.left = r.left.saturating_sub(1);
        r.left == 0
    }

    /// Whether the loop should connect `(commands, subscriber)` now.
    pub fn wants_connect(&self, now: Instant) -> (bool, bool) {
        (self.cmd.wants_connect(now), self.sub.wants_connect(now))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.cmd.poll_timeout(), self.sub.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Action<P>>) {
        if let Some(e) = self.cmd.handle_timeout(now) {
            self.on_cmd_event(e, out);
        }
        if let Some(e) = self.sub.handle_timeout(now) {
            self.on_sub_event(e, out);
        }
    }

    /// A link's socket connected (`cmd`: the command link).
    pub fn connected(&mut self, cmd: bool, now: Instant, out: &mut Vec<Action<P>>) {
        if cmd {
            if let Some(e) = self.cmd.connected(now) {
                self.on_cmd_event(e, out);
            }
        } else if let Some(e) = self.sub.connected(now) {
            self.on_sub_event(e, out);
        }
    }

    pub fn on_input(&mut self, cmd: bool, bytes: &[u8], now: Instant, out: &mut Vec<Action<P>>) {
        if cmd {
            for e in self.cmd.on_input(bytes, now) {
                self.on_cmd_event(e, out);
            }
            if std::mem::take(&mut self.reset_cmd) && self.cmd.is_ready() {
                let e = self.cmd.reset(now, "Redis lost the scripts (SCRIPT FLUSH?): reloading");
                self.on_cmd_event(e, out);
            }
        } else {
            for e in self.sub.on_input(bytes, now) {
                self.on_sub_event(e, out);
            }
        }
    }

    pub fn on_closed(&mut self, cmd: bool, now: Instant, reason: &str, out: &mut Vec<Action<P>>) {
        if cmd {
            let e = self.cmd.on_closed(now, reason);
            self.on_cmd_event(e, out);
        } else {
            let e = self.sub.on_closed(now, reason);
            self.on_sub_event(e, out);
        }
    }

    fn update_down(&mut self, out: &mut Vec<Action<P>>, reason: Option<String>) {
        let up = self.cmd.is_ready() && self.sub.is_ready();
        match (up, self.down.is_some()) {
            (true, true) => {
                self.down = None;
                out.push(Action::Up);
            }
            (false, _) => {
                let why = reason.unwrap_or_else(|| "connecting to Redis".into());
                if self.down.as_deref() != Some(why.as_str()) {
                    out.push(Action::Down(why.clone()));
                }
                self.down = Some(why);
            }
            (true, false) => {}
        }
    }

    fn on_cmd_event(&mut self, e: Event<Tag<P>>, out: &mut Vec<Action<P>>) {
        match e {
            Event::Ready => {
                self.update_down(out, None);
                self.after_ready(out);
            }
            Event::Reply(tag, v) => self.on_reply(tag, v, out),
            Event::Push(_) => {}
            Event::Down { failed, reason } => {
                self.update_down(out, Some(format!("Redis command link: {reason}")));
                for tag in failed {
                    match tag {
                        Tag::Publish(p) => out.push(Action::Published(p, Err(format!("Redis connection lost: {reason}")))),
                        // Read again once the link is back; live messages are held meanwhile.
                        Tag::Fill(key, generation) => {
                            if let Some(t) = self.topics.get_mut(&key).filter(|t| t.phase == Phase::Filling && t.fill_gen == generation) {
                                t.fill_sent = false;
                            }
                        }
                        Tag::Range { resume, id, .. } => {
                            if self.resumes.get(resume).is_some_and(|r| r.id == id) && self.part_failed(resume) {
                                out.push(Action::Resumed(resume));
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_sub_event(&mut self, e: Event<()>, out: &mut Vec<Action<P>>) {
        match e {
            Event::Ready => {
                self.update_down(out, None);
                // Follow again everything wanted; what came meanwhile is read from the streams.
                let mut keys: Vec<Vec<u8>> = Vec::new();
                self.topics.retain(|_, t| t.wanted);
                for (key, t) in &mut self.topics {
                    t.phase = Phase::Subscribing;
                    t.expect = 1;
                    keys.push(wire::topic_key(key));
                }
                for chunk in keys.chunks(256) {
                    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
                    args.extend(chunk.iter().map(|k| &k[..]));
                    let _ = self.sub.send(&args, ());
                }
                self.after_ready(out);
            }
            Event::Reply(..) => {}
            Event::Push(v) => self.on_push(v, out),
            Event::Down { reason, .. } => {
                self.update_down(out, Some(format!("Redis subscriber link: {reason}")));
                let seen = self.last_seen;
                for t in self.topics.values_mut() {
                    // A followed topic may miss what is published from now on: once back,
                    // read its stream after the last message it has. A live topic has had
                    // everything up to the last message this node saw on any topic; one that
                    // was filling only up to its watermark (what it held is read again).
                    // Redis may have lost it all (a restart without persistence): the read
                    // says so, and the subscribers get a reset.
                    if t.phase == Phase::Live && !t.gap {
                        t.watermark = t.watermark.max(seen);
                    }
                    if matches!(t.phase, Phase::Live | Phase::Filling) || t.gap {
                        t.gap = true;
                    }
                    t.phase = Phase::Pending;
                    t.expect = 0;
                    t.fill_sent = false;
                    t.held.clear();
                }
            }
        }
    }

    /// A link came up: fills and resumes that waited for the command link go out.
    fn after_ready(&mut self, out: &mut Vec<Action<P>>) {
        if !self.cmd.is_ready() {
            return;
        }
        let keys: Vec<TopicKey> = self.topics.iter().filter(|(_, t)| t.wanted && matches!(t.phase, Phase::Live | Phase::Filling)).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.send_waiting(&key, out);
        }
    }

    fn on_push(&mut self, v: Value, out: &mut Vec<Action<P>>) {
        let parts = match v {
            Value::Push(p) | Value::Array(p) => p,
            _ => return,
        };
        let kind = parts.first().and_then(Value::as_bytes).unwrap_or(b"");
        let Some(key) = parts.get(1).and_then(Value::as_bytes).and_then(wire::parse_topic_key) else { return };
        match kind {
            b"subscribe" | b"unsubscribe" => {
                let Some(t) = self.topics.get_mut(&key) else { return };
                t.expect = t.expect.saturating_sub(1);
                if t.expect > 0 {
                    return;
                }
                if !t.wanted {
                    self.topics.remove(&key);
                    return;
                }
                if t.phase == Phase::Subscribing {
                    if t.gap {
                        // Live messages wait until the stream has given what came before.
                        t.phase = Phase::Filling;
                        t.gap = false;
                        t.fill_sent = false;
                        t.fill_gen = t.fill_gen.wrapping_add(1);
                    } else {
                        t.phase = Phase::Live;
                        // Nothing older than what this node has seen can come now.
                        t.watermark = t.watermark.max(self.last_seen);
                    }
                    self.send_waiting(&key, out);
                }
            }
            b"message" => {
                let Some(payload) = parts.get(2).and_then(Value::as_bytes) else { return };
                let Some((id, body)) = split_message(payload) else {
                    log::warn!("cluster: a message on {key:?} this node cannot read: dropped");
                    return;
                };
                self.last_seen = self.last_seen.max(id);
                let Some(t) = self.topics.get_mut(&key) else { return };
                match t.phase {
                    Phase::Filling if t.held.len() < MAX_HELD => t.held.push((id, body)),
                    Phase::Filling => {
                        // The fill waited too long (the command link is down): give it up.
                        t.held.push((id, body));
                        t.phase = Phase::Live;
                        let watermark = t.watermark;
                        let held = std::mem::take(&mut t.held);
                        out.push(Action::Reset(key.clone(), watermark));
                        self.deliver_newer(&key, held, out);
                    }
                    Phase::Live if t.wanted && id > t.watermark => {
                        t.watermark = id;
                        out.push(Action::Deliver(key, id, body));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The topic is subscribed: send its fill's stream read (if it is filling and the read is
    /// not out yet) and the resumes that wait, when the command link can take them.
    fn send_waiting(&mut self, key: &TopicKey, out: &mut Vec<Action<P>>) {
        if !self.cmd.is_ready() {
            return; // after_ready comes back here
        }
        let Some(t) = self.topics.get_mut(key) else { return };
        let waiting = std::mem::take(&mut t.waiting);
        if t.phase == Phase::Filling && !t.fill_sent {
            let (since, generation) = (t.watermark, t.fill_gen);
            t.fill_sent = true;
            if self.range(key, since, Tag::Fill(key.clone(), generation)).is_err() {
                // Redis is not reading: the gap cannot be filled.
                let t = self.topics.get_mut(key).expect("present");
                t.phase = Phase::Live;
                let held = std::mem::take(&mut t.held);
                out.push(Action::Reset(key.clone(), since));
                self.deliver_newer(key, held, out);
            }
        }
        for (slot, id) in waiting {
            if self.resumes.get(slot).is_some_and(|r| r.id == id) {
                self.send_range(slot, key);
                if self.resumes.get(slot).is_some_and(|r| r.left == 0) {
                    out.push(Action::Resumed(slot));
                }
            }
        }
    }

    /// Delivers what is newer than the topic's watermark, in order, moving the watermark.
    fn deliver_newer(&mut self, key: &TopicKey, msgs: impl IntoIterator<Item = (u64, Body)>, out: &mut Vec<Action<P>>) {
        let Some(t) = self.topics.get_mut(key) else { return };
        for (id, body) in msgs {
            if id > t.watermark {
                t.watermark = id;
                out.push(Action::Deliver(key.clone(), id, body));
            }
        }
    }

    fn on_reply(&mut self, tag: Tag<P>, v: Value, out: &mut Vec<Action<P>>) {
        if matches!(&v, Value::Error(e) if e.starts_with(b"NOSCRIPT")) {
            // Someone flushed Redis's scripts: reconnect, and the handshake loads them again.
            // What is in flight fails (503s), in order.
            self.reset_cmd = true;
        }
        match tag {
            Tag::Publish(p) => out.push(Action::Published(p, parse_publish(&v))),
            Tag::Fill(key, generation) => {
                let parsed = parse_range(&v);
                // A reply to a fill from before the subscription was lost again is stale: a
                // newer fill reads from the same watermark.
                let Some(t) = self.topics.get_mut(&key).filter(|t| t.wanted && t.phase == Phase::Filling && t.fill_gen == generation) else { return };
                t.phase = Phase::Live;
                let (reset, last, entries) = parsed.unwrap_or((true, t.watermark, Vec::new()));
                if reset {
                    out.push(Action::Reset(key.clone(), last.max(t.watermark)));
                }
                let held = std::mem::take(&mut t.held);
                self.deliver_newer(&key, entries.into_iter().chain(held), out);
            }
            Tag::Range { resume, id, key } => {
                let parsed = parse_range(&v);
                let Some(r) = self.resumes.get_mut(resume).filter(|r| r.id == id) else { return };
                match parsed {
                    Some((reset, last, entries)) => {
                        r.reset |= reset;
                        r.last_id = r.last_id.max(last);
                        r.entries.extend(entries.into_iter().map(|(id, b)| (key.clone(), id, b)));
                        r.left = r.left.saturating_sub(1);
                        if r.left == 0 {
                            out.push(Action::Resumed(resume));
                        }
                    }
                    None => {
                        if self.part_failed(resume) {
                            out.push(Action::Resumed(resume));
                        }
                    }
                }
            }
        }
    }
}

/// `ID BODY`, as the publish script sends it.
fn split_message(payload: &[u8]) -> Option<(u64, Body)> {
    let sp = payload.iter().position(|&b| b == b' ')?;
    Some((wire::parse_stream_id(&payload[..sp])?, wire::decode_body(&payload[sp + 1..])?))
}

fn error_text(v: &Value) -> String {
    match v {
        Value::Error(e) => String::from_utf8_lossy(e).into_owned(),
        other => format!("unexpected reply from Redis: {other:?}"),
    }
}

fn parse_publish(v: &Value) -> Result<(Option<u64>, i64), String> {
    if let Value::Array(a) = v {
        if let [id, Value::Integer(n)] = &a[..] {
            let id = id.as_bytes().unwrap_or(b"");
            if id.is_empty() {
                return Ok((None, 0));
            }
            if let Some(id) = wire::parse_stream_id(id) {
                return Ok((Some(id), *n));
            }
        }
    }
    Err(error_text(v))
}

type Range = (bool, u64, Vec<(u64, Body)>);

/// `{reset, newest, entries newest first}` → oldest first.
fn parse_range(v: &Value) -> Option<Range> {
    let Value::Array(a) = v else {
        log::warn!("cluster: stream read failed: {}", error_text(v));
        return None;
    };
    let [Value::Integer(reset), last, Value::Array(entries)] = &a[..] else { return None };
    let last = std::str::from_utf8(last.as_bytes()?).ok()?.parse::<u64>().ok()?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries.iter().rev() {
        let Value::Array(e) = e else { return None };
        let [id, Value::Array(fields)] = &e[..] else { return None };
        let id = wire::parse_stream_id(id.as_bytes()?)?;
        let body = fields.chunks(2).find(|f| f[0].as_bytes() == Some(b"m")).and_then(|f| f.get(1)).and_then(Value::as_bytes)?;
        out.push((id, wire::decode_body(body)?));
    }
    Some((*reset != 0, last, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::Bulk(s.to_vec())
    }

    fn node() -> (Node<u32>, Instant) {
        let t0 = Instant::now();
        let mut n: Node<u32> = Node::new("redis://h:1".parse().unwrap(), "n1".into(), 100, 60_000, t0, 1000);
        let mut out = Vec::new();
        for cmd in [true, false] {
            if cmd { n.cmd.connecting(t0) } else { n.sub.connecting(t0) }
            n.connected(cmd, t0, &mut out);
            // The command link's handshake loads the two scripts first.
            let answers: &[u8] = if cmd { b"$1\r\na\r\n$1\r\nb\r\n+PONG\r\n" } else { b"+PONG\r\n" };
            n.on_input(cmd, answers, t0, &mut out);
        }
        assert!(matches!(out.as_slice(), [Action::Up]), "{out:?}");
        (n, t0)
    }

    fn msg(key: &[u8], id: &str, data: &str) -> Value {
        let mut p = id.as_bytes().to_vec();
        p.push(b' ');
        p.extend(wire::encode_body(None, data.as_bytes(), None, None));
        Value::Push(vec![bulk(b"message"), bulk(key), Value::Bulk(p)])
    }

    fn confirm(kind: &[u8], key: &[u8]) -> Value {
        Value::Push(vec![bulk(kind), bulk(key), Value::Integer(1)])
    }

    fn delivered(out: &[Action<u32>]) -> Vec<u64> {
        out.iter().filter_map(|a| if let Action::Deliver(_, id, _) = a { Some(*id) } else { None }).collect()
    }

    fn feed(n: &mut Node<u32>, cmd: bool, v: &Value, t0: Instant) -> Vec<Action<u32>> {
        let mut bytes = Vec::new();
        encode_value(&mut bytes, v);
        let mut out = Vec::new();
        n.on_input(cmd, &bytes, t0, &mut out);
        out
    }

    /// Replies as Redis would send them (RESP2 arrays, RESP3 pushes).
    fn encode_value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Bulk(b) => {
                out.extend(format!("${}\r\n", b.len()).bytes());
                out.extend(b);
                out.extend(b"\r\n");
            }
            Value::Integer(i) => out.extend(format!(":{i}\r\n").bytes()),
            Value::Array(a) | Value::Push(a) => {
                out.push(if matches!(v, Value::Push(_)) { b'>' } else { b'*' });
                out.extend(format!("{}\r\n", a.len()).bytes());
                for x in a {
                    encode_value(out, x);
                }
            }
            Value::Error(e) => {
                out.push(b'-');
                out.extend(e);
                out.extend(b"\r\n");
            }
            other => panic!("not needed: {other:?}"),
        }
    }

    #[test]
    fn follows_a_topic_only_while_wanted_and_delivers_each_message_once() {
        let (mut n, t0) = node();
        let a = TopicKey::channel("a");
        n.want(&a, true);
        assert!(n.sub.transmit().ends_with(b"$9\r\nSUBSCRIBE\r\n$12\r\npushwire:c:a\r\n"));
        assert_eq!(n.subscription_counts(), (0, 1));
        assert!(delivered(&feed(&mut n, false, &msg(b"pushwire:c:a", "1-1", "early"), t0)).is_empty(), "not confirmed yet");
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        assert_eq!(n.subscription_counts(), (1, 0));
        assert_eq!(delivered(&feed(&mut n, false, &msg(b"pushwire:c:a", "1-2", "x"), t0)), vec![1002]);
        assert!(delivered(&feed(&mut n, false, &msg(b"pushwire:c:a", "1-2", "x"), t0)).is_empty(), "a message seen twice goes once");
        n.want(&a, false);
        assert!(n.sub.transmit().ends_with(b"$11\r\nUNSUBSCRIBE\r\n$12\r\npushwire:c:a\r\n"));
        // Wanted again before the UNSUBSCRIBE is confirmed: only the last confirmation counts.
        n.want(&a, true);
        feed(&mut n, false, &confirm(b"unsubscribe", b"pushwire:c:a"), t0);
        assert_eq!(n.subscription_counts(), (0, 1));
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        assert_eq!(n.subscription_counts(), (1, 0));
    }

    /// Channel `a` followed and message 1-5 delivered.
    fn following_a() -> (Node<u32>, Instant) {
        let (mut n, t0) = node();
        n.want(&TopicKey::channel("a"), true);
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        feed(&mut n, false, &msg(b"pushwire:c:a", "1-5", "five"), t0);
        (n, t0)
    }

    /// [`following_a`], then the subscriber link lost and back: the node has asked the stream
    /// for what came after 1005.
    fn lost_and_back() -> (Node<u32>, Instant) {
        let (mut n, t0) = following_a();
        let mut out = Vec::new();
        n.on_closed(false, t0, "reset", &mut out);
        assert!(matches!(out.as_slice(), [Action::Down(_)]));
        assert!(n.unavailable().is_some());
        // Back: SUBSCRIBE again, then the stream after the watermark (1005).
        n.sub.connecting(t0);
        let mut out = Vec::new();
        n.connected(false, t0, &mut out);
        n.on_input(false, b"+PONG\r\n", t0, &mut out);
        assert!(matches!(out.as_slice(), [Action::Up]));
        let sent = n.cmd.transmit().len();
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        let range = &n.cmd.transmit()[sent..];
        assert!(range.windows(4).any(|w| w == b"1005"), "reads after the watermark");
        (n, t0)
    }

    #[test]
    fn a_lost_subscription_is_filled_from_the_stream_in_order() {
        let (mut n, t0) = lost_and_back();
        // A live message during the fill waits for the older ones.
        assert!(delivered(&feed(&mut n, false, &msg(b"pushwire:c:a", "1-8", "eight"), t0)).is_empty());
        let reply = Value::Array(vec![Value::Integer(0), bulk(b"1008"), Value::Array(vec![entry("1-8", "eight"), entry("1-7", "seven"), entry("1-6", "six")])]);
        let out = feed(&mut n, true, &reply, t0);
        assert_eq!(delivered(&out), vec![1006, 1007, 1008]);
        assert!(!out.iter().any(|a| matches!(a, Action::Reset(..))));
    }

    fn entry(id: &str, d: &str) -> Value {
        Value::Array(vec![bulk(id.as_bytes()), Value::Array(vec![bulk(b"m"), Value::Bulk(wire::encode_body(None, d.as_bytes(), None, None))])])
    }

    #[test]
    fn a_fill_waits_for_the_command_link_and_holds_live_messages_meanwhile() {
        let (mut n, t0) = following_a();
        let mut out = Vec::new();
        n.on_closed(false, t0, "gone", &mut out);
        n.on_closed(true, t0, "gone", &mut out);
        // The subscriber link comes back first.
        n.sub.connecting(t0);
        n.connected(false, t0, &mut out);
        n.on_input(false, b"+PONG\r\n", t0, &mut out);
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        assert!(delivered(&feed(&mut n, false, &msg(b"pushwire:c:a", "1-9", "nine"), t0)).is_empty(), "held: older ones may be missing");
        // The command link: the fill goes out from the old watermark.
        n.cmd.connecting(t0);
        let mut out = Vec::new();
        n.connected(true, t0, &mut out);
        let sent = n.cmd.transmit().len();
        n.on_input(true, b"$1\r\na\r\n$1\r\nb\r\n+PONG\r\n", t0, &mut out);
        assert!(n.cmd.transmit()[sent..].windows(4).any(|w| w == b"1005"));
        let reply = Value::Array(vec![Value::Integer(0), bulk(b"1009"), Value::Array(vec![entry("1-9", "nine"), entry("1-6", "six")])]);
        assert_eq!(delivered(&feed(&mut n, true, &reply, t0)), vec![1006, 1009], "in order, nine once");
    }

    #[test]
    fn a_fill_reply_from_before_another_loss_is_ignored() {
        let (mut n, t0) = lost_and_back();
        // Lost again before the first fill's reply: a second fill follows.
        let mut out = Vec::new();
        n.on_closed(false, t0, "again", &mut out);
        n.sub.connecting(t0);
        n.connected(false, t0, &mut out);
        n.on_input(false, b"+PONG\r\n", t0, &mut out);
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        feed(&mut n, false, &msg(b"pushwire:c:a", "1-9", "nine"), t0);
        let first = Value::Array(vec![Value::Integer(0), bulk(b"1006"), Value::Array(vec![entry("1-6", "six")])]);
        assert!(delivered(&feed(&mut n, true, &first, t0)).is_empty(), "stale: the second fill answers");
        let second = Value::Array(vec![Value::Integer(0), bulk(b"1009"), Value::Array(vec![entry("1-9", "nine"), entry("1-7", "seven"), entry("1-6", "six")])]);
        assert_eq!(delivered(&feed(&mut n, true, &second, t0)), vec![1006, 1007, 1009]);
    }

    #[test]
    fn a_resume_slot_taken_again_is_not_answered_for_the_old_one() {
        let (mut n, t0) = node();
        let (a, b, c) = (TopicKey::channel("a"), TopicKey::channel("b"), TopicKey::channel("c"));
        for k in [&a, &b, &c] {
            n.want(k, true);
        }
        let old = n.resume(SinkRef::conn(1, 1), 0, vec![a.clone(), b.clone()], 1003);
        n.want(&b, false); // its subscriber left: the resume goes
        let new = n.resume(SinkRef::conn(2, 2), 0, vec![c.clone()], 1003);
        assert_eq!(old, new, "the slot is reused");
        // a is confirmed: the old resume's read must not be sent for the new one.
        let before = n.cmd.transmit().len();
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        assert_eq!(n.cmd.transmit().len(), before);
        assert!(!n.resume_done(new));
    }

    #[test]
    fn a_gap_that_cannot_be_filled_is_a_reset() {
        let (mut n, t0) = lost_and_back();
        let a = TopicKey::channel("a");
        let reply = Value::Array(vec![Value::Integer(1), bulk(b"0"), Value::Array(vec![])]);
        let out = feed(&mut n, true, &reply, t0);
        assert!(matches!(out.as_slice(), [Action::Reset(k, 1005)] if *k == a), "{out:?}");
    }

    #[test]
    fn publishes_answer_with_their_id_and_fail_when_the_link_drops() {
        let (mut n, t0) = node();
        let a = TopicKey::channel("a");
        n.publish(&a, b"\n\n\nhi", false, 1).unwrap();
        n.publish(&TopicKey::user("bob"), b"\n\n\nhi", true, 2).unwrap();
        n.publish(&a, b"\n\n\nhi", false, 3).unwrap();
        let out = feed(&mut n, true, &Value::Array(vec![bulk(b"1700000000000-42"), Value::Integer(2)]), t0);
        assert!(matches!(out.as_slice(), [Action::Published(1, Ok((Some(1700000000000042), 2)))]), "{out:?}");
        let out = feed(&mut n, true, &Value::Array(vec![bulk(b""), Value::Integer(0)]), t0);
        assert!(matches!(out.as_slice(), [Action::Published(2, Ok((None, 0)))]), "a user nobody has");
        let mut out = Vec::new();
        n.on_closed(true, t0, "reset", &mut out);
        assert!(out.iter().any(|a| matches!(a, Action::Published(3, Err(_)))), "{out:?}");
        assert_eq!(n.publish(&a, b"x", false, 4), Err(SendError::NotReady));
    }

    #[test]
    fn scripts_go_by_sha_and_a_flushed_script_cache_reconnects() {
        let (mut n, t0) = node();
        assert!(wire::publish_sha().len() == 40 && wire::publish_sha().bytes().all(|b| b.is_ascii_hexdigit()));
        let before = n.cmd.transmit().len();
        n.publish(&TopicKey::channel("a"), b"\n\n\nx", false, 1).unwrap();
        let sent = &n.cmd.transmit()[before..];
        assert!(sent.windows(7).any(|w| w == b"EVALSHA") && sent.windows(40).any(|w| w == wire::publish_sha().as_bytes()));
        assert!(!sent.windows(5).any(|w| w == b"redis"), "not the script's text");
        let out = feed(&mut n, true, &Value::Error(b"NOSCRIPT No matching script. Please use EVAL.".to_vec()), t0);
        assert!(matches!(&out[0], Action::Published(1, Err(_))), "{out:?}");
        assert!(out.iter().any(|a| matches!(a, Action::Down(_))) && !n.cmd.is_active(), "the link reconnects, loading the scripts again");
    }

    #[test]
    fn a_resume_whose_subscriber_left_is_dropped() {
        let (mut n, t0) = node();
        let a = TopicKey::channel("a");
        let mut out = Vec::new();
        n.on_closed(false, t0, "down", &mut out);
        n.want(&a, true);
        n.resume(SinkRef::conn(1, 1), 0, vec![a.clone()], 1003);
        assert_eq!(n.resumes_waiting(), 1, "waits for Redis");
        n.want(&a, false);
        assert_eq!(n.resumes_waiting(), 0, "nothing kept for a subscriber that is gone");
    }

    #[test]
    fn a_resume_reads_once_the_topic_is_confirmed() {
        let (mut n, t0) = node();
        let a = TopicKey::channel("a");
        n.want(&a, true);
        let before = n.cmd.transmit().len();
        let slot = n.resume(SinkRef::conn(1, 1), 0, vec![a.clone()], 1003);
        assert_eq!(n.cmd.transmit().len(), before, "waits for the subscription");
        feed(&mut n, false, &confirm(b"subscribe", b"pushwire:c:a"), t0);
        assert!(n.cmd.transmit().len() > before);
        let entry = Value::Array(vec![bulk(b"1-4"), Value::Array(vec![bulk(b"m"), Value::Bulk(wire::encode_body(None, b"four", None, None))])]);
        let out = feed(&mut n, true, &Value::Array(vec![Value::Integer(0), bulk(b"1004"), Value::Array(vec![entry])]), t0);
        assert!(matches!(out.as_slice(), [Action::Resumed(s)] if *s == slot));
        let r = n.take_resume(slot).unwrap();
        assert_eq!((r.reset, r.last_id, r.entries.len()), (false, 1004, 1));
        assert_eq!(&r.entries[0].2.data[..], b"four");
    }
}
