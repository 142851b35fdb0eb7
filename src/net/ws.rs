//! The WebSocket transport: feeds a connection's input to its frame assembler, answers
//! control frames (the "obligated sends": pong, close reply), hands messages to the session,
//! and queues frames.

use std::borrow::Cow;
use std::time::Instant;

use super::conn::{Conn, Life, Transport};
use super::http::{Env, Stop};
use super::outbuf::OutBuf;
use super::stream;
use crate::app::control::{self, ControlLink};
use crate::app::WsSession;
use crate::hub::{Encoding, Hub, HubError, Message, SinkRef, TopicKey, TopicKind};
use crate::proto::ws::extensions::Deflate;
use crate::proto::ws::{close, deflate, encode_close_frame, encode_server_frame, Assembler, FrameHeader, OpCode, WsError, WsEvent};

/// Payloads up to this size are copied behind their header; larger ones are queued as they
/// are, so a big echo is never copied.
const COPY_MAX: usize = 4096;

/// A connection after the opening handshake.
#[derive(Debug)]
pub struct Ws {
    pub assembler: Assembler,
    pub session: WsSession,
    /// When the peer last sent anything.
    pub last_rx: Instant,
    /// Our heartbeat ping is out (sent `--ws-ping-interval` after `last_rx`), until the peer
    /// shows a sign of life. (A flag, not the instant: the ping went out when its timer
    /// fired, within the loop's lateness of `last_rx` + the interval, and a connection's
    /// size is its idle cost.)
    pub ping_sent: bool,
}

impl Ws {
    pub fn new(session: WsSession, max_message: usize, now: Instant) -> Ws {
        Ws { assembler: Assembler::new(max_message), session, last_rx: now, ping_sent: false }
    }

    /// The hub encoding of `plain` frames for this connection.
    pub fn encoding(&self, plain: Encoding) -> Encoding {
        if self.assembler.deflate().is_some() {
            plain.deflated()
        } else {
            plain
        }
    }
}

/// The encoding hub messages in `plain` frames take on `conn`, if it is a WebSocket.
pub fn encoding(conn: &Conn, plain: Encoding) -> Encoding {
    match &conn.transport {
        Transport::WebSocket(ws) => ws.encoding(plain),
        _ => plain,
    }
}

/// Switches a connection that just answered 101 to WebSocket. A topic session subscribes
/// at once and first replays the history after its `since` id.
pub fn start(conn: &mut Conn, session: WsSession, since: Option<u64>, deflate: Option<Deflate>, env: &mut Env<'_>) {
    let data = if deflate.is_some() { Encoding::WsData.deflated() } else { Encoding::WsData };
    if let WsSession::Topic { key, .. } = &session {
        let key = key.clone();
        match since {
            // In a cluster, Redis's stream has what came after `since`: live messages wait
            // until the loop has replayed it.
            Some(since) if env.app.cluster.is_some() => {
                stream::subscribe_checked(conn, &mut env.app.hub, key.clone(), data);
                stream::mute_all(conn, &mut env.app.hub);
                env.app.resumes.push((SinkRef::conn(conn.token, conn.id), 0, vec![key], since));
            }
            Some(since) => {
                let backlog = env.app.hub.backlog(std::slice::from_ref(&key), since, env.now);
                for m in &backlog.messages {
                    conn.out.push_shared(m.encoded(data).clone());
                }
                stream::subscribe_checked(conn, &mut env.app.hub, key, data);
            }
            None => stream::subscribe_checked(conn, &mut env.app.hub, key, data),
        }
    }
    // What a subscriber sends is published (or is a control message): no larger than an
    // HTTP publish may be. Only /echo takes messages up to --max-message.
    let cfg = &env.app.config;
    let max = match session {
        WsSession::Echo => cfg.max_message_bytes,
        WsSession::Eio { .. } | WsSession::EioRefused => cfg.sio_max_payload,
        _ => cfg.max_message_bytes.min(cfg.max_body_bytes),
    };
    let eio = match &session {
        WsSession::Eio { session, probe } => Some((*session, *probe)),
        _ => None,
    };
    let refused = session == WsSession::EioRefused;
    let mut ws = Ws::new(session, max, env.now);
    if let Some(d) = deflate {
        ws.assembler.set_deflate(d);
    }
    conn.transport = Transport::WebSocket(ws);
    if let Some((session, probe)) = eio {
        super::eio::attach_ws(conn, session, probe, env);
    } else if refused {
        queue_close(conn, close::NORMAL, "this session already has a WebSocket");
    }
}

/// Offers `input` to the connection's assembler; acts on each event. Returns bytes used.
pub fn process_input(conn: &mut Conn, input: &mut [u8], env: &mut Env<'_>) -> (usize, Stop) {
    let mut pos = 0;
    let len = input.len();
    if let Transport::WebSocket(ws) = &mut conn.transport {
        // Any byte from the peer proves it is alive.
        ws.last_rx = env.now;
        ws.ping_sent = false;
    }
    loop {
        // Fairness: at most a turn's worth of messages, like HTTP requests; what they
        // published is delivered when the turn ends, so the outbox stays that small too.
        if !conn.wants_input(&env.app.config) || env.handled >= env.app.config.max_requests_per_wakeup {
            return (pos, Stop::Blocked);
        }
        let Transport::WebSocket(ws) = &mut conn.transport else { return (pos, Stop::Blocked) };
        match ws.assembler.advance(&mut input[pos..]) {
            Err(e) => {
                fail(conn, e);
                return (input.len(), Stop::Blocked);
            }
            Ok((used, event)) => {
                pos += used;
                match event {
                    Some(ev) => {
                        env.handled += 1;
                        on_event(conn, ev, env);
                    }
                    None if used == 0 || pos == len => return (pos, Stop::NeedMore),
                    None => {}
                }
            }
        }
    }
}

fn on_event(conn: &mut Conn, ev: WsEvent<'_>, env: &mut Env<'_>) {
    match ev {
        WsEvent::Text(data) => on_message(conn, OpCode::Text, data, env),
        WsEvent::Binary(data) => on_message(conn, OpCode::Binary, data, env),
        // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
        // response ... [with] identical Application data". Queued at once, so it goes out in
        // this turn's write even in the middle of a fragmented message.
        WsEvent::Ping(data) => queue_frame(&mut conn.out, OpCode::Pong, data),
        // §5.5.3: an unsolicited pong needs no answer; any input already counted as life.
        WsEvent::Pong(_) => {}
        WsEvent::Close(code) => {
            // §5.5.1: "If an endpoint receives a Close frame and did not previously send a
            // Close frame, the endpoint MUST send a Close frame in response ... typically
            // echoing the status code it received." Then nothing more is sent or processed.
            let mut payload = Vec::new();
            if let Some((code, _reason)) = code {
                payload.extend_from_slice(&code.to_be_bytes());
            }
            queue_frame(&mut conn.out, OpCode::Close, payload.into());
            conn.life = Life::CloseAfterFlush;
        }
    }
}

/// A complete data message, handled by the connection's session.
fn on_message(conn: &mut Conn, op: OpCode, data: Cow<'_, [u8]>, env: &mut Env<'_>) {
    let Transport::WebSocket(ws) = &conn.transport else { return };
    match &ws.session {
        WsSession::Echo => queue_data(conn, op, data),
        WsSession::Topic { key, publish, .. } => {
            // A subscriber's frames are published to its channel (`--ws-publish`); a user
            // connection's frames have nowhere to go and are ignored.
            if *publish && key.kind == TopicKind::Channel {
                let key = key.clone();
                // The socket subscribes to the channel, so it exists: no channel cap to hit.
                let _ = env.app.publish(&key, None, &data, env.now, env.wall_us, crate::app::cluster::Then::Nothing);
            }
        }
        WsSession::Control { publish } => {
            let publish = *publish;
            control::handle(&mut ControlConn(conn), env.app, &data, publish, env.now, env.wall_us);
        }
        WsSession::Eio { session, probe } => {
            let (session, probe) = (*session, *probe);
            super::eio::on_ws_message(conn, op, &data, session, probe, env);
        }
        WsSession::EioRefused => {}
    }
}

/// A `/ws` connection as the control protocol sees it.
struct ControlConn<'a>(&'a mut Conn);

impl ControlLink for ControlConn<'_> {
    fn subscription_count(&self) -> usize {
        self.0.subs.len()
    }

    fn live_after(&self, hub: &Hub, key: &TopicKey) -> Option<u64> {
        let (_, slot) = self.0.subs.iter().find(|(k, _)| k == key)?;
        let sub = hub.subscriber(key, *slot);
        debug_assert!(sub.is_some(), "a followed topic has its hub entry");
        // Followed either way (never a second subscription); without its entry, replaying
        // nothing is the answer that cannot duplicate.
        Some(sub.map_or(0, |s| s.after))
    }

    fn subscribe(&mut self, hub: &mut Hub, key: TopicKey, encoding: Encoding) -> Result<u64, HubError> {
        let encoding = self::encoding(self.0, encoding);
        stream::subscribe(self.0, hub, key, encoding)
    }

    fn unsubscribe(&mut self, hub: &mut Hub, key: &TopicKey) {
        if let Some(i) = self.0.subs.iter().position(|(k, _)| k == key) {
            let (key, slot) = self.0.subs.swap_remove(i);
            hub.unsubscribe(&key, slot);
        }
    }

    fn send_text(&mut self, text: Vec<u8>) {
        queue_data(self.0, OpCode::Text, text.into());
    }

    fn send_message(&mut self, m: &Message, plain: Encoding) {
        let frame = m.encoded(self::encoding(self.0, plain)).clone();
        self.0.out.push_shared(frame);
    }

    fn sink(&self) -> SinkRef {
        SinkRef::conn(self.0.token, self.0.id)
    }

    fn mute(&mut self, hub: &mut Hub, key: &TopicKey) {
        if let Some((_, slot)) = self.0.subs.iter().find(|(k, _)| k == key) {
            hub.set_after(key, *slot, u64::MAX);
        }
    }
}

/// §7.1.7 "Fail the WebSocket Connection": send a close frame with the error's code, then
/// close. Input after the error is discarded.
fn fail(conn: &mut Conn, e: WsError) {
    log::debug!("conn {}: websocket: {} ({})", conn.id, e.reason(), e.close_code());
    queue_close(conn, e.close_code(), e.reason());
}

/// Queues a close frame and moves the connection to closing.
pub fn queue_close(conn: &mut Conn, code: u16, reason: &str) {
    conn.out.with_tail(|v| encode_close_frame(v, code, reason));
    conn.life = Life::CloseAfterFlush;
}

/// Queues the heartbeat ping.
pub fn send_ping(conn: &mut Conn) {
    if let Transport::WebSocket(ws) = &mut conn.transport {
        ws.ping_sent = true;
        queue_frame(&mut conn.out, OpCode::Ping, Cow::Borrowed(&[]));
    }
}

/// Queues one unfragmented, unmasked server frame. A payload lent out of the input (an
/// echo) is copied behind its header whatever its size: it must be copied once anyway, and
/// this is that once.
pub fn queue_frame(out: &mut OutBuf, opcode: OpCode, payload: Cow<'_, [u8]>) {
    match payload {
        Cow::Owned(payload) if payload.len() > COPY_MAX => {
            let header = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
            out.with_tail(|v| header.encode(v));
            out.push_owned(payload);
        }
        payload => out.with_tail(|v| encode_server_frame(v, opcode, &payload)),
    }
}

pub use close::GOING_AWAY;

/// Queues one text message on a WebSocket connection.
pub fn queue_text(conn: &mut Conn, text: Vec<u8>) {
    queue_data(conn, OpCode::Text, text.into());
}

/// Queues one data message (text or binary), compressed if the connection negotiated
/// permessage-deflate and it has at least `--ws-compression-min` bytes (the setting the
/// shared encodings use, see `hub::set_compression_min`).
pub fn queue_data(conn: &mut Conn, opcode: OpCode, payload: Cow<'_, [u8]>) {
    let deflate = matches!(&conn.transport, Transport::WebSocket(ws) if ws.assembler.deflate().is_some());
    let min = if deflate { crate::hub::compression_min() } else { usize::MAX };
    if payload.len() < min {
        return queue_frame(&mut conn.out, opcode, payload);
    }
    conn.out.with_tail(|v| deflate::encode_message(v, opcode, &payload, min));
}
