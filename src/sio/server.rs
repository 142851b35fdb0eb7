//! The process's Engine.IO sessions and what the server does with Socket.IO packets, with
//! no application code: namespaces (CONNECT / DISCONNECT), rooms that are hub channels
//! (`join` / `leave`), every other event relayed to the sender's rooms (or namespace), acks,
//! and users (`auth.user`). Pure: the hub and the time come in, packets wait in each
//! session's queue; the loop attaches transports and flushes what [`SioServer::touched`]
//! lists.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slab::Slab;

use super::names;
use super::session::{CloseReason, EioSession, Input, Out, Times, TransportKind, Via};
use super::wire::{self, SioPayload};
use crate::config::Config;
use crate::hub::{valid_user_name, Encoding, Extra, Hub, Message, SinkRef, TopicKey, TopicKind};
use crate::proto::engineio::{self, Packet};
use crate::proto::socketio::{self, compact_json, Kind};

/// Session and socket ids: 20 characters of URL-safe base64 from 15 random bytes, as
/// engine.io's `base64id` makes them. Unguessable: a sid is all a polling POST carries.
pub type Sid = [u8; 20];

pub fn random_sid() -> Sid {
    encode_sid(random_bytes())
}

fn random_bytes() -> [u8; 15] {
    let mut raw = [0u8; 15];
    let mut filled = 0;
    while filled < raw.len() {
        // SAFETY: writes at most the remaining length into the buffer.
        let n = unsafe { libc::getrandom(raw[filled..].as_mut_ptr().cast(), raw.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    raw
}

fn encode_sid(raw: [u8; 15]) -> Sid {
    use base64::Engine as _;
    let mut sid = [0u8; 20];
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(raw, &mut sid).unwrap_or(0);
    debug_assert_eq!(n, 20);
    sid
}

/// A node id: 8 characters of the same alphabet as session ids.
pub fn random_node_id() -> String {
    sid_str(&random_sid())[..8].to_string()
}

/// A session id names its slot (its first 4 bytes) besides 11 random bytes (88 bits, still
/// unguessable): finding a session is the slot and one comparison, with no map to keep.
fn session_sid(slot: usize) -> Sid {
    let mut raw = random_bytes();
    raw[..4].copy_from_slice(&(slot as u32).to_le_bytes());
    encode_sid(raw)
}

fn sid_slot(sid: &[u8]) -> Option<usize> {
    use base64::Engine as _;
    let mut raw = [0u8; 15];
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(sid, &mut raw).ok()?;
    (n == 15).then(|| u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")) as usize)
}

pub fn sid_str(sid: &Sid) -> &str {
    std::str::from_utf8(sid).unwrap_or("")
}

/// Where relayed events go (`--sio-relay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// To the sender's rooms (or namespace), the sender excluded: `socket.broadcast`.
    Others,
    /// ...the sender included: `io.to(...)`.
    All,
    /// Nowhere: events are only acked.
    None,
}

impl std::str::FromStr for Relay {
    type Err = String;
    fn from_str(s: &str) -> Result<Relay, String> {
        match s {
            "others" => Ok(Relay::Others),
            "all" => Ok(Relay::All),
            "none" => Ok(Relay::None),
            _ => Err(format!("expected others, all or none, not {s:?}")),
        }
    }
}

/// Rooms one socket may be in.
const MAX_ROOMS: usize = 256;

/// A namespace name; the main one, which nearly every socket is in, without an allocation.
#[derive(Debug)]
pub enum Nsp {
    Main,
    Other(Box<str>),
}

impl Nsp {
    fn new(nsp: &str) -> Nsp {
        if nsp == "/" {
            Nsp::Main
        } else {
            Nsp::Other(nsp.into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Nsp::Main => "/",
            Nsp::Other(s) => s,
        }
    }
}

/// One namespace a session is connected to (a client-side `Socket`).
#[derive(Debug)]
pub struct NsSocket {
    pub nsp: Nsp,
    pub id: Sid,
    /// Its CONNECT auth carried the publish token (or none is configured).
    may_publish: bool,
    /// Its CONNECT auth named the session's user.
    is_user: bool,
    /// The namespace's channel (its name shared with the hub's entry) and the hub slot.
    ns_sub: (TopicKey, usize),
    /// The rooms joined: topic and hub slot.
    rooms: Vec<(TopicKey, usize)>,
    /// With `--sio-recovery`: what a reconnecting client needs to find it again.
    rec: Option<Box<SocketRecovery>>,
}

#[derive(Debug)]
struct SocketRecovery {
    /// The private id the CONNECT reply gives (`pid`), which the client reconnects with.
    pid: Sid,
    /// The last hub id when it connected: where a client that saw no event resumes.
    connected_after: u64,
}

/// A socket whose session ended without the client saying so, kept for
/// `--sio-recovery`'s window: a client reconnecting with its `pid` and offset gets it
/// back (same id, same rooms) and what it missed, from the hub's history.
#[derive(Debug)]
struct Recoverable {
    id: Sid,
    nsp: String,
    rooms: Vec<TopicKey>,
    /// The user its auth named: that user's messages are replayed too.
    user: Option<TopicKey>,
    connected_after: u64,
    /// Its old session: relays it sent itself are not replayed to it.
    old_sink: SinkRef,
    expires: Instant,
}

impl NsSocket {
    fn subs(self) -> impl Iterator<Item = (TopicKey, usize)> {
        std::iter::once(self.ns_sub).chain(self.rooms)
    }
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct PendingBinary {
    socket: usize,
    kind: Kind,
    id: Option<u64>,
    args: String,
    value: Value,
    needed: usize,
    got: Vec<Rc<[u8]>>,
}

#[derive(Debug)]
pub struct Session {
    pub sid: Sid,
    pub gen: u64,
    pub eio: EioSession,
    /// The held polling GET (a connection), if any.
    pub get: Option<SinkRef>,
    /// The WebSocket the session runs on (direct, or after the upgrade).
    pub ws: Option<SinkRef>,
    /// A WebSocket probing for an upgrade.
    pub probe: Option<SinkRef>,
    /// The earliest timer-heap entry the session has outstanding.
    pub timer_at: Option<Instant>,
    pub sockets: Vec<NsSocket>,
    binary: Option<Box<PendingBinary>>,
    /// No CONNECT yet: the session closes at this instant.
    connect_deadline: Option<Instant>,
    /// The user its sockets' auth named, and the hub slot of that subscription.
    user: Option<(TopicKey, usize)>,
    touched: bool,
    /// An Engine.IO session of the conformance preset's `/engine.io/`: every message is
    /// sent back, no Socket.IO.
    engine_echo: bool,
    /// `--sio-recovery`: events carry their offset.
    pub recovery: bool,
    /// The id of the last hub message queued or written to it: the offset an event that is
    /// not a hub message carries (an emit to one socket), so the client's last offset is
    /// always one of ours, in order.
    last_offset: u64,
}

impl Session {
    pub fn sink(&self, slot: usize) -> SinkRef {
        SinkRef::session(slot, self.gen)
    }

    /// When the session next needs the clock.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.eio.poll_timeout(), self.connect_deadline.filter(|_| self.eio.is_open())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues a Socket.IO packet.
    fn send(&mut self, kind: Kind, nsp: &str, id: Option<u64>, data: &str) {
        let mut out = vec![b'4'];
        socketio::encode(&mut out, kind, 0, nsp, id, data);
        self.eio.send(Out::Text(out.into_boxed_slice()));
    }

    fn ack(&mut self, nsp: &str, id: Option<u64>, args: &Value) {
        if id.is_some() {
            self.send(Kind::Ack, nsp, id, &args.to_string());
        }
    }

    /// The encodings of hub messages for this session's transports.
    pub fn ws_encoding(&self) -> Encoding {
        if self.recovery {
            Encoding::SioWsOffset
        } else {
            Encoding::SioWs
        }
    }

    pub fn poll_encoding(&self) -> Encoding {
        if self.recovery {
            Encoding::SioPollOffset
        } else {
            Encoding::SioPoll
        }
    }

    fn socket_index(&self, nsp: &str) -> Option<usize> {
        self.sockets.iter().position(|s| s.nsp.as_str() == nsp)
    }

    /// The polling answer: every waiting packet, joined by the record separator (`6` when
    /// nothing waits).
    pub fn take_poll_payload(&mut self) -> PollPayload {
        let enc = self.poll_encoding();
        let mut p = PollPayload::default();
        let mut own = Vec::new();
        for out in self.eio.take_queue() {
            match out {
                Out::Text(t) => {
                    own.push(engineio::SEPARATOR);
                    own.extend_from_slice(&t);
                }
                Out::Binary(b) => {
                    own.push(engineio::SEPARATOR);
                    engineio::encode_poll_binary(&mut own, &b);
                }
                Out::Msg(m) => {
                    p.push(PollPart::Owned(std::mem::take(&mut own)));
                    p.push(PollPart::Shared(m.encoded(enc).clone()));
                }
            }
        }
        p.push(PollPart::Owned(own));
        if p.len == 0 {
            return PollPayload::text(b"6");
        }
        // Every element carries the separator before it; the first one's goes.
        match &mut p.parts[0] {
            PollPart::Owned(v) => {
                v.remove(0);
            }
            PollPart::Shared(s) => p.parts[0] = PollPart::Owned(s[1..].to_vec()),
        }
        p.len -= 1;
        p
    }
}

/// A polling answer as it goes out: hub messages stay their shared encodings, so a room
/// message polled by many sessions is queued by reference to each, never copied per session
/// (the first element, which loses its separator, is the only copy).
#[derive(Debug, Default)]
pub struct PollPayload {
    pub parts: Vec<PollPart>,
    /// Bytes in all parts (the Content-Length).
    pub len: usize,
}

#[derive(Debug)]
pub enum PollPart {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl PollPayload {
    /// One packet, as a whole answer (`1`, `6`).
    pub fn text(bytes: &[u8]) -> PollPayload {
        PollPayload { parts: vec![PollPart::Owned(bytes.to_vec())], len: bytes.len() }
    }

    fn push(&mut self, part: PollPart) {
        let n = match &part {
            PollPart::Owned(v) => v.len(),
            PollPart::Shared(s) => s.len(),
        };
        if n > 0 {
            self.len += n;
            self.parts.push(part);
        }
    }

    /// All of it in one buffer (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for p in &self.parts {
            v.extend_from_slice(match p {
                PollPart::Owned(o) => o,
                PollPart::Shared(s) => s,
            });
        }
        v
    }
}

impl Session {
}

/// What the loop must do with a probing WebSocket after one of its packets.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeAction {
    None,
    /// Send `3probe` on it.
    Answer,
    /// It is now the session's transport.
    Upgraded,
    /// Close it (the session goes on over polling).
    Close,
}

/// What a delivery to a session needs from the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Nothing for it (closed, or all of it was its own).
    Skip,
    /// Queued in the session (the loop flushes it).
    Queued,
    /// Write the run's shared encoding (this one) straight to this connection, the
    /// session's WebSocket (nothing of the session is waiting ahead of it).
    Ws(SinkRef, Encoding),
}

/// What the Socket.IO layer needs besides the sessions.
pub struct Env<'a> {
    pub hub: &'a mut Hub,
    pub outbox: &'a mut Vec<Rc<Message>>,
    /// In a cluster, relayed events go through Redis.
    pub cluster: Option<&'a mut crate::cluster::node::Node<crate::app::cluster::Then>>,
    pub config: &'a Config,
    pub now: Instant,
    pub wall_us: u64,
}

#[derive(Default)]
pub struct SioServer {
    pub sessions: Slab<Session>,
    /// Sockets (namespace connections) open in all sessions.
    sockets: usize,
    next_gen: u64,
    /// Sessions whose queue, deadline or state changed: the loop flushes each.
    pub touched: Vec<usize>,
    /// `--sio-recovery`: how long a dropped socket can be recovered.
    recovery: Option<Duration>,
    /// Dropped sockets by `pid`, and the order they expire in (one window for all, so
    /// insertion order is expiry order).
    recoverable: HashMap<Sid, Recoverable>,
    expiry: VecDeque<(Instant, Sid)>,
}

pub fn times(cfg: &Config) -> Times {
    Times { ping_interval: cfg.sio_ping_interval, ping_timeout: cfg.sio_ping_timeout }
}

impl SioServer {
    pub fn new(cfg: &Config) -> SioServer {
        SioServer { recovery: cfg.sio_recovery, ..SioServer::default() }
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some(&(at, pid)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            if self.recoverable.get(&pid).is_some_and(|r| r.expires <= now) {
                self.recoverable.remove(&pid);
            }
        }
    }

    /// Sockets kept for recovery (`/stats`).
    pub fn recoverable_count(&self) -> usize {
        self.recoverable.len()
    }

    /// A new session on `transport`, its open packet queued.
    /// A new session on `transport`, its open packet queued. `engine_echo`: a bare Engine.IO
    /// session that echoes messages (the conformance preset's `/engine.io/`).
    pub fn open(&mut self, transport: TransportKind, cfg: &Config, now: Instant, engine_echo: bool) -> usize {
        let sid = session_sid(self.sessions.vacant_key());
        self.next_gen += 1;
        let mut eio = EioSession::new(transport, now, &times(cfg));
        let ms = |d: Duration| d.as_millis() as u64;
        let open = engineio::handshake(
            sid_str(&sid),
            transport == TransportKind::Polling,
            ms(cfg.sio_ping_interval),
            ms(cfg.sio_ping_timeout),
            cfg.sio_max_payload,
        );
        eio.send(Out::Text(open.into_boxed_slice()));
        let slot = self.sessions.insert(Session {
            sid,
            gen: self.next_gen,
            eio,
            get: None,
            ws: None,
            probe: None,
            timer_at: None,
            sockets: Vec::new(),
            binary: None,
            connect_deadline: (!engine_echo).then(|| now + cfg.sio_connect_timeout),
            user: None,
            touched: false,
            engine_echo,
            recovery: self.recovery.is_some() && !engine_echo,
            last_offset: 0,
        });
        debug_assert_eq!(sid_slot(&sid), Some(slot));
        self.touch(slot);
        slot
    }

    pub fn find(&self, sid: &str) -> Option<usize> {
        let slot = sid_slot(sid.as_bytes())?;
        let s = self.sessions.get(slot)?;
        // Compared without an early exit: how long a wrong sid takes says nothing.
        let same = sid.len() == 20 && s.sid.iter().zip(sid.bytes()).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then_some(slot)
    }

    /// The session a reference names, if it still exists.
    pub fn get_mut(&mut self, r: SinkRef) -> Option<&mut Session> {
        self.sessions.get_mut(r.slot as usize).filter(|s| s.gen == r.id)
    }

    pub fn touch(&mut self, slot: usize) {
        if let Some(s) = self.sessions.get_mut(slot) {
            if !s.touched {
                s.touched = true;
                self.touched.push(slot);
            }
        }
    }

    /// The next touched session to flush.
    pub fn next_touched(&mut self) -> Option<usize> {
        while let Some(slot) = self.touched.pop() {
            if let Some(s) = self.sessions.get_mut(slot) {
                if s.touched {
                    s.touched = false;
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Queues event `args` (the JSON array, name first) for the socket `socket_id` of
    /// namespace `nsp`. False when there is no such socket.
    pub fn emit_to_socket(&mut self, socket_id: &str, nsp: &str, args: &str) -> bool {
        // A scan: the emit API is rare next to what a map per socket would cost every idle
        // session.
        let Ok(id) = <Sid>::try_from(socket_id.as_bytes()) else { return false };
        let found = self.sessions.iter().find(|(_, s)| s.eio.is_open() && s.sockets.iter().any(|k| k.id == id && k.nsp.as_str() == nsp));
        let Some((slot, _)) = found else { return false };
        let s = &mut self.sessions[slot];
        if s.recovery {
            // The offset of the last hub message before it: the client's position stays
            // one of ours (a string argument of its own would otherwise be taken for one).
            let with = format!("{},\"{}\"]", &args[..args.len() - 1], s.last_offset);
            s.send(Kind::Event, nsp, None, &with);
        } else {
            s.send(Kind::Event, nsp, None, args);
        }
        self.touch(slot);
        true
    }

    pub fn socket_count(&self) -> usize {
        self.sockets
    }

    pub fn close(&mut self, slot: usize, why: CloseReason) {
        if let Some(s) = self.sessions.get_mut(slot) {
            s.eio.close(why);
            self.touch(slot);
        }
    }

    /// Takes a (closed) session apart: its subscriptions go, its ids are forgotten. The loop
    /// then deals with the transports it had.
    pub fn remove(&mut self, slot: usize, hub: &mut Hub, now: Instant) -> Session {
        let mut s = self.sessions.remove(slot);
        self.sockets -= s.sockets.len();
        // A client that closed on purpose is not coming back for its state.
        let keep = match (self.recovery, s.eio.closed) {
            (Some(window), Some(why)) if why != CloseReason::ClientClose && why != CloseReason::ParseError => Some(window),
            _ => None,
        };
        let old_sink = s.sink(slot);
        if keep.is_some() {
            // What is kept is bounded by the sessions that ended within one window.
            self.forget_expired(now);
        }
        for sock in s.sockets.drain(..) {
            if let (Some(window), Some(rec)) = (keep, &sock.rec) {
                let r = Recoverable {
                    id: sock.id,
                    nsp: sock.nsp.as_str().to_string(),
                    rooms: sock.rooms.iter().map(|(k, _)| k.clone()).collect(),
                    user: if sock.is_user { s.user.as_ref().map(|(k, _)| k.clone()) } else { None },
                    connected_after: rec.connected_after,
                    old_sink,
                    expires: now + window,
                };
                self.expiry.push_back((r.expires, rec.pid));
                self.recoverable.insert(rec.pid, r);
            }
            for (key, sub) in sock.subs() {
                hub.unsubscribe(&key, sub);
            }
        }
        if let Some((key, sub)) = s.user.take() {
            hub.unsubscribe(&key, sub);
        }
        s
    }

    /// One Engine.IO packet from the session's transport (`Via::Transport`) or from a
    /// WebSocket probing for the upgrade.
    pub fn on_packet(&mut self, slot: usize, p: Packet<'_>, via: Via, env: &mut Env<'_>) -> ProbeAction {
        let Some(s) = self.sessions.get_mut(slot) else { return ProbeAction::Close };
        let input = s.eio.on_packet(p, via, env.now, &times(env.config));
        let echo = s.engine_echo;
        self.touch(slot);
        let s = &mut self.sessions[slot];
        if echo {
            match input {
                Input::Message(m) => {
                    let mut back = vec![b'4'];
                    back.extend_from_slice(m);
                    s.eio.send(Out::Text(back.into_boxed_slice()));
                    return ProbeAction::None;
                }
                Input::Binary(b) => {
                    s.eio.send(Out::Binary(b.into()));
                    return ProbeAction::None;
                }
                _ => {}
            }
        }
        match input {
            Input::Nothing => ProbeAction::None,
            Input::Message(m) => {
                self.on_text(slot, m, env);
                ProbeAction::None
            }
            Input::Binary(b) => {
                self.on_binary(slot, b, env);
                ProbeAction::None
            }
            Input::ProbeAnswer => ProbeAction::Answer,
            Input::Upgraded => ProbeAction::Upgraded,
            Input::CloseProbe => ProbeAction::Close,
        }
    }

    /// The session's deadline passed. Returns true when an upgrade probe timed out: the loop
    /// closes the probing WebSocket.
    pub fn on_timeout(&mut self, slot: usize, now: Instant, cfg: &Config) -> bool {
        let Some(s) = self.sessions.get_mut(slot) else { return false };
        let probe_expired = s.eio.handle_timeout(now, &times(cfg));
        if s.connect_deadline.is_some_and(|t| t <= now) {
            s.eio.close(CloseReason::ConnectTimeout);
        }
        self.touch(slot);
        probe_expired
    }

    fn fail(&mut self, slot: usize, why: &str) {
        log::debug!("socket.io session {slot}: {why}");
        self.close(slot, CloseReason::ParseError);
    }

    /// A Socket.IO packet.
    fn on_text(&mut self, slot: usize, text: &[u8], env: &mut Env<'_>) {
        let s = &self.sessions[slot];
        if s.binary.is_some() {
            return self.fail(slot, "a text packet while attachments were expected");
        }
        let Ok(text) = std::str::from_utf8(text) else { return self.fail(slot, "not UTF-8") };
        let p = match socketio::decode(text) {
            Ok(p) => p,
            Err(e) => return self.fail(slot, &e.to_string()),
        };
        if p.kind == Kind::Connect {
            self.connect(slot, p.nsp, p.value.as_ref(), env);
            if env.config.sio_conformance && self.sessions[slot].socket_index(p.nsp).is_some() {
                // The test suite's server: an `auth` event with the CONNECT payload.
                let auth = p.data.map_or_else(|| "{}".to_string(), |d| compact_json(d).into_owned());
                self.sessions[slot].send(Kind::Event, p.nsp, None, &format!(r#"["auth",{auth}]"#));
            }
            return;
        }
        let Some(i) = s.socket_index(p.nsp) else {
            // socket.io closes a client that talks in a namespace it has not joined.
            return self.fail(slot, "a packet for a namespace not connected");
        };
        match p.kind {
            Kind::Disconnect => self.disconnect(slot, i, env.hub),
            Kind::Event | Kind::BinaryEvent | Kind::BinaryAck if p.attachments > 0 => {
                let (args, value) = (p.data.unwrap_or("").to_string(), p.value.unwrap_or(Value::Null));
                let pending = PendingBinary { socket: i, kind: p.kind, id: p.id, args, value, needed: p.attachments, got: Vec::new() };
                self.sessions[slot].binary = Some(Box::new(pending));
            }
            Kind::Event | Kind::BinaryEvent => {
                let value = p.value.unwrap_or(Value::Null);
                self.on_event(slot, i, p.id, p.data.unwrap_or(""), &value, Vec::new(), env);
            }
            // Answers to server emits with an ack: the server asks none.
            Kind::Ack | Kind::BinaryAck => {}
            Kind::ConnectError | Kind::Connect => self.fail(slot, "a packet only servers send"),
        }
    }

    fn on_binary(&mut self, slot: usize, bytes: Vec<u8>, env: &mut Env<'_>) {
        let s = &mut self.sessions[slot];
        let Some(pending) = &mut s.binary else { return self.fail(slot, "an attachment nobody announced") };
        pending.got.push(bytes.into());
        // One packet with its attachments is one message: within maxPayload together.
        let held: usize = pending.got.iter().map(|a| a.len()).sum::<usize>() + pending.args.len();
        if held > env.config.sio_max_payload {
            return self.fail(slot, "attachments over maxPayload");
        }
        if pending.got.len() < pending.needed {
            return;
        }
        let p = *s.binary.take().expect("checked");
        if p.kind == Kind::BinaryEvent {
            self.on_event(slot, p.socket, p.id, &p.args, &p.value, p.got, env);
        }
    }

    fn connect(&mut self, slot: usize, nsp: &str, auth: Option<&Value>, env: &mut Env<'_>) {
        let sink = self.sessions[slot].sink(slot);
        let s = &mut self.sessions[slot];
        let refuse = |s: &mut Session, msg: &str| s.send(Kind::ConnectError, nsp, None, &json!({ "message": msg }).to_string());
        if !namespace_allowed(nsp, &env.config.sio_namespaces) {
            return refuse(s, "Invalid namespace");
        }
        if let Some(i) = s.socket_index(nsp) {
            let id = s.sockets[i].id;
            return s.send(Kind::Connect, nsp, None, &json!({ "sid": sid_str(&id) }).to_string());
        }
        let user = auth.and_then(|a| a.get("user"));
        let user = match user {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if valid_user_name(u) => Some(u.as_str()),
            Some(_) => return refuse(s, "auth.user must be a user name (1-128 characters, no /)"),
        };
        if let (Some(u), Some((key, _))) = (user, &s.user) {
            if &*key.name != u {
                return refuse(s, "one user per connection");
            }
        }
        let may_publish = match env.config.publish_token.as_deref() {
            None => true,
            Some(t) => auth.and_then(|a| a.get("token")).and_then(Value::as_str) == Some(t),
        };
        let Some(channel) = names::namespace_channel(nsp) else { return refuse(s, "namespace name too long") };
        let key = TopicKey::channel(&channel);
        let sub = crate::hub::Subscriber { sink, encoding: Encoding::SioWs, after: env.hub.last_id() };
        let slot_in_hub = match env.hub.subscribe(&key, sub) {
            Ok(x) => x,
            Err(e) => return refuse(s, &e.to_string()),
        };
        // Every socket of the namespace shares the hub's copy of the name.
        let key = env.hub.shared_key(&key);
        if let (Some(u), None) = (user, &s.user) {
            let ukey = TopicKey::user(u);
            if let Ok(us) = env.hub.subscribe(&ukey, sub) {
                s.user = Some((ukey, us));
            }
        }
        // Recovery: the same socket again, with what it missed, if its state is still here
        // and history reaches back to its offset; else a new socket, as socket.io does.
        let pid = auth.and_then(|a| a.get("pid")).and_then(Value::as_str).and_then(|p| <Sid>::try_from(p.as_bytes()).ok());
        let recovery_on = s.recovery;
        let recovered = match pid {
            Some(pid) if recovery_on => {
                self.forget_expired(env.now);
                // Only the namespace it was in; another namespace's CONNECT leaves it be.
                match self.recoverable.get(&pid) {
                    Some(r) if r.nsp == nsp => self.recoverable.remove(&pid).map(|r| (pid, r)),
                    _ => None,
                }
            }
            _ => None,
        };
        let s = &mut self.sessions[slot];
        let mut rooms = Vec::new();
        let mut missed = Vec::new();
        let (id, rec) = match recovered {
            Some((pid, r)) => {
                let offset = auth.and_then(|a| a.get("offset")).and_then(Value::as_str).and_then(|o| o.parse::<u64>().ok());
                let since = offset.unwrap_or(r.connected_after);
                let mut keys = vec![key.clone()];
                keys.extend(r.rooms.iter().cloned());
                keys.extend(r.user.iter().cloned());
                let backlog = env.hub.backlog(&keys, since, env.now);
                if backlog.reset {
                    (random_sid(), None)
                } else {
                    missed = backlog.messages.into_iter().filter(|m| m.origin != Some(r.old_sink)).collect();
                    for room in r.rooms {
                        let sub = crate::hub::Subscriber { sink, encoding: Encoding::SioWs, after: env.hub.last_id() };
                        if let Ok(h) = env.hub.subscribe(&room, sub) {
                            rooms.push((env.hub.shared_key(&room), h));
                        }
                    }
                    (r.id, Some((pid, r.connected_after)))
                }
            }
            None => (random_sid(), None),
        };
        let rec = s.recovery.then(|| {
            let (pid, connected_after) = rec.unwrap_or_else(|| (random_sid(), env.hub.last_id()));
            Box::new(SocketRecovery { pid, connected_after })
        });
        // Ids are base64url: nothing to escape. Key order as socket.io sends it.
        let reply = match &rec {
            Some(r) => format!(r#"{{"sid":"{}","pid":"{}"}}"#, sid_str(&id), sid_str(&r.pid)),
            None => format!(r#"{{"sid":"{}"}}"#, sid_str(&id)),
        };
        // Most sessions use one namespace: room for exactly one (a push would make four).
        s.sockets.reserve_exact(1);
        s.sockets.push(NsSocket { nsp: Nsp::new(nsp), id, may_publish, is_user: user.is_some(), ns_sub: (key, slot_in_hub), rooms, rec });
        s.connect_deadline = None;
        s.send(Kind::Connect, nsp, None, &reply);
        for m in missed {
            s.last_offset = s.last_offset.max(m.id);
            if m.kind == TopicKind::User {
                // A user's messages are built for the socket's namespace.
                let (packet, attachments) = wire::event_packet(&m, nsp, Some(m.id));
                s.eio.send(Out::Text(packet.into_boxed_slice()));
                for a in attachments {
                    s.eio.send(Out::Binary(a.clone()));
                }
            } else {
                s.eio.send(Out::Msg(m));
            }
        }
        self.sockets += 1;
    }

    fn disconnect(&mut self, slot: usize, i: usize, hub: &mut Hub) {
        let s = &mut self.sessions[slot];
        let sock = s.sockets.remove(i);
        self.sockets -= 1;
        let is_user = sock.is_user;
        for (key, sub) in sock.subs() {
            hub.unsubscribe(&key, sub);
        }
        if s.sockets.is_empty() {
            s.sockets = Vec::new();
        }
        if is_user && !s.sockets.iter().any(|o| o.is_user) {
            if let Some((key, sub)) = s.user.take() {
                hub.unsubscribe(&key, sub);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_event(&mut self, slot: usize, i: usize, id: Option<u64>, args: &str, value: &Value, attachments: Vec<Rc<[u8]>>, env: &mut Env<'_>) {
        let name = match value.get(0) {
            Some(Value::String(n)) => n.clone(),
            Some(other) => other.to_string(),
            None => return,
        };
        let s = &mut self.sessions[slot];
        let nsp = s.sockets[i].nsp.as_str().to_string();
        if env.config.sio_conformance && nsp == "/" && (name == "message" || name == "message-with-ack") {
            return conformance_reply(s, &name, id, &compact_json(args), attachments);
        }
        let token_needed = "needs the publish token in the CONNECT auth ({\"token\": ...})";
        if name == "join" || name == "leave" {
            let Some(room) = value.get(1).and_then(Value::as_str) else {
                return s.ack(&nsp, id, &json!([{"error": "expected a room name"}]));
            };
            if !s.sockets[i].may_publish {
                return s.ack(&nsp, id, &json!([{ "error": format!("joining rooms {token_needed}") }]));
            }
            let Some(channel) = names::room_channel(&nsp, room) else {
                return s.ack(&nsp, id, &json!([{"error": "room name too long"}]));
            };
            let key = TopicKey::channel(&channel);
            let sink = s.sink(slot);
            let sock = &mut s.sockets[i];
            let at = sock.rooms.iter().position(|(k, _)| *k == key);
            if name == "join" && at.is_none() {
                if sock.rooms.len() >= MAX_ROOMS {
                    return s.ack(&nsp, id, &json!([{ "error": format!("at most {MAX_ROOMS} rooms per socket") }]));
                }
                let sub = crate::hub::Subscriber { sink, encoding: Encoding::SioWs, after: env.hub.last_id() };
                match env.hub.subscribe(&key, sub) {
                    Ok(h) => sock.rooms.push((env.hub.shared_key(&key), h)),
                    Err(e) => return s.ack(&nsp, id, &json!([{ "error": e.to_string() }])),
                }
            } else if name == "leave" {
                if let Some(at) = at {
                    let (k, h) = sock.rooms.remove(at);
                    env.hub.unsubscribe(&k, h);
                }
            }
            let size = env.hub.subscriber_count(&key);
            return s.ack(&nsp, id, &json!([size]));
        }
        if !s.sockets[i].may_publish {
            return s.ack(&nsp, id, &json!([{ "error": format!("relaying events {token_needed}") }]));
        }
        let relay = env.config.sio_relay;
        if relay == Relay::None {
            return s.ack(&nsp, id, &json!([0]));
        }
        let sock = &s.sockets[i];
        // The rooms it joined, or its whole namespace if none.
        let targets: Vec<TopicKey> =
            if sock.rooms.is_empty() { vec![sock.ns_sub.0.clone()] } else { sock.rooms.iter().map(|(k, _)| k.clone()).collect() };
        let origin = (relay == Relay::Others).then(|| s.sink(slot));
        let payload = SioPayload { args: compact_json(args).into(), attachments };
        let plain: Rc<[u8]> = SioPayload::plain_data(value).into();
        // SSE and long-poll carry event names on one line.
        let event = (!name.contains(['\r', '\n']) && !name.is_empty()).then_some(name.as_str());
        let mut reached = 0;
        for key in &targets {
            let n = env.hub.subscriber_count(key).saturating_sub(usize::from(origin.is_some()));
            let extra = Extra { sio: Some(Box::new(payload.clone())), origin, id: None };
            let mut publisher = crate::app::cluster::Publisher { hub: env.hub, outbox: env.outbox, cluster: env.cluster.as_deref_mut(), now: env.now, wall_us: env.wall_us };
            if publisher.publish(key, event, plain.clone(), extra, crate::app::cluster::Then::Nothing).is_ok() {
                reached += n;
            }
        }
        self.sessions[slot].ack(&nsp, id, &json!([reached]));
    }

    /// Where a run of hub messages (`msgs`, the part of a run this session gets) goes.
    /// `whole_run`: `msgs` is the entire run, so its shared encoding may be used as is.
    pub fn route(&mut self, sink: SinkRef, msgs: &[Rc<Message>], whole_run: bool, max_output: usize) -> Route {
        let slot = sink.slot as usize;
        let Some(s) = self.get_mut(sink) else { return Route::Skip };
        if !s.eio.is_open() {
            return Route::Skip;
        }
        let own = msgs.iter().any(|m| m.origin == Some(sink));
        if own && msgs.iter().all(|m| m.origin == Some(sink)) {
            return Route::Skip;
        }
        if msgs[0].kind == TopicKind::User {
            // A user's messages go to each of its sockets, in that socket's namespace:
            // built per recipient (point-to-point, so nothing to share).
            for m in msgs.iter().filter(|m| m.origin != Some(sink)) {
                s.last_offset = s.last_offset.max(m.id);
                for sock in s.sockets.iter().filter(|k| k.is_user) {
                    let (packet, attachments) = wire::event_packet(m, sock.nsp.as_str(), s.recovery.then_some(m.id));
                    s.eio.send(Out::Text(packet.into_boxed_slice()));
                    for a in attachments {
                        s.eio.send(Out::Binary(a.clone()));
                    }
                }
            }
        } else if s.eio.transport == TransportKind::WebSocket && !s.eio.has_output() && whole_run && !own && s.ws.is_some() {
            s.last_offset = s.last_offset.max(msgs[msgs.len() - 1].id);
            return Route::Ws(s.ws.expect("checked"), s.ws_encoding());
        } else {
            for m in msgs.iter().filter(|m| m.origin != Some(sink)) {
                s.last_offset = s.last_offset.max(m.id);
                s.eio.send(Out::Msg(m.clone()));
            }
        }
        if s.eio.queued_bytes() > max_output {
            s.eio.close(CloseReason::SlowConsumer);
        }
        self.touch(slot);
        Route::Queued
    }
}

/// The conformance preset's `/` namespace: `message` answered with `message-back` and the
/// same arguments, `message-with-ack` acked with them (attachments included).
fn conformance_reply(s: &mut Session, name: &str, id: Option<u64>, args: &str, attachments: Vec<Rc<[u8]>>) {
    // `args` is the compact array, the event's name first; spelt with escapes, it is built
    // again (keys then sorted: the suites do not send such names).
    let head = format!("[\"{name}\"");
    let rebuilt;
    let rest = match args.strip_prefix(&head) {
        Some(rest) => rest, // `,a,b]` or `]`
        None => {
            let v: Value = serde_json::from_str(args).unwrap_or(Value::Null);
            let tail: Vec<Value> = v.as_array().map(|a| a[1..].to_vec()).unwrap_or_default();
            rebuilt = serde_json::to_string(&tail).unwrap_or_else(|_| "[]".into());
            if rebuilt == "[]" {
                "]"
            } else {
                rebuilt.strip_prefix('[').unwrap_or("]")
            }
        }
    };
    let rest_owned;
    let rest = if rest.starts_with(',') || rest == "]" {
        rest
    } else {
        rest_owned = format!(",{rest}");
        &rest_owned
    };
    let (kind, id, data) = if name == "message" {
        let k = if attachments.is_empty() { Kind::Event } else { Kind::BinaryEvent };
        (k, None, format!(r#"["message-back"{rest}"#))
    } else {
        if id.is_none() {
            return;
        }
        let k = if attachments.is_empty() { Kind::Ack } else { Kind::BinaryAck };
        (k, id, format!("[{}", rest.strip_prefix(',').unwrap_or(rest)))
    };
    let mut out = vec![b'4'];
    socketio::encode(&mut out, kind, attachments.len(), "/", id, &data);
    s.eio.send(Out::Text(out.into_boxed_slice()));
    for a in attachments {
        s.eio.send(Out::Binary(a));
    }
}

/// `--sio-namespace` patterns: exact names, or a prefix ending in `*`; none: any namespace.
pub fn namespace_allowed(nsp: &str, patterns: &[String]) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => nsp.starts_with(prefix),
            None => p == nsp,
        })
}


#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
