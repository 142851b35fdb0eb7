//! Engine.IO sessions meet connections here, and only here: holding a polling GET for a
//! session, feeding a WebSocket's frames to it (as its transport or as an upgrade probe),
//! and flushing a session after anything touched it — its queue to the attached transport,
//! its deadline to the timer heap, and a closed session's transports answered and closed.
//! The session itself (`sio/`) never sees a socket.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Instant;

use mio::Token;
use slab::Slab;

use super::conn::{Conn, Life, Transport};
use super::http::Env;
use super::timers::{TimerKey, Timers};
use super::ws;
use crate::app::{App, ConnKind, WsSession};
use crate::hub::SinkRef;
use crate::proto::engineio::{self, Packet};
use crate::proto::http1::{response, DateCache, Persist};
use crate::proto::ws::{close, OpCode};
use crate::sio::server::{self, PollPart, PollPayload, ProbeAction};
use crate::sio::session::{CloseReason, Out, TransportKind, Via};

/// A polling GET held for a session until it has packets.
#[derive(Debug)]
pub struct EioPoll {
    pub session: SinkRef,
    pub persist: Persist,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// A safety net only: the session's ping releases the GET within `pingInterval`.
    pub until: Instant,
}

fn conn_ref(conn: &Conn) -> SinkRef {
    SinkRef::conn(conn.token, conn.id)
}

/// Carries out `Reply::EioHold`: every polling GET (the handshake's too) comes here. One
/// with packets waiting (or released for an upgrade) is answered at once, in this turn's
/// write; else it is held until the session has some.
pub fn hold(conn: &mut Conn, session: SinkRef, persist: Persist, env: &mut Env<'_>) {
    let me = conn_ref(conn);
    let cfg = &env.app.config;
    let until = env.now + cfg.sio_ping_interval + cfg.sio_ping_timeout;
    let headers = crate::app::cors_headers(cfg);
    let Some(s) = env.app.sio.get_mut(session) else { return };
    conn.transport = Transport::EioPoll(EioPoll { session, persist, headers, until });
    env.app.stats.conn_closed(ConnKind::Http);
    env.app.stats.conn_opened(ConnKind::LongPoll);
    if s.eio.has_output() || s.eio.releases_polls() {
        let payload = s.take_poll_payload();
        answer_get(conn, payload, env.app, env.date);
    } else {
        s.get = Some(me);
    }
    env.app.sio.touch(session.slot as usize);
}

/// Answers a held GET with `payload` and returns the connection to HTTP.
fn answer_get(conn: &mut Conn, payload: PollPayload, app: &mut App, date: &DateCache) {
    let Transport::EioPoll(p) = &conn.transport else { return };
    let persist = p.persist;
    let mut headers = vec![("Content-Type", Cow::Borrowed("text/plain; charset=UTF-8"))];
    headers.extend(p.headers.iter().cloned());
    conn.out.with_tail(|v| response::write_head(v, 200, &headers, Some(payload.len as u64), persist, date));
    for part in payload.parts {
        match part {
            PollPart::Owned(v) => conn.out.push_owned(v),
            PollPart::Shared(s) => conn.out.push_shared(s),
        }
    }
    if persist == Persist::Close {
        conn.life = Life::CloseAfterFlush;
    }
    conn.back_to_http(&app.config);
    app.stats.conn_closed(ConnKind::LongPoll);
    app.stats.conn_opened(ConnKind::Http);
}

/// A WebSocket that just answered 101 for a session: its transport, or an upgrade probe.
pub fn attach_ws(conn: &mut Conn, session: SinkRef, probe: bool, env: &mut Env<'_>) {
    let me = conn_ref(conn);
    match env.app.sio.get_mut(session) {
        Some(s) if probe && s.probe.is_none() && s.eio.transport == TransportKind::Polling => {
            s.probe = Some(me);
            s.eio.begin_probe(env.now);
        }
        Some(s) if !probe && s.ws.is_none() => {
            s.ws = Some(me);
            // The open packet goes out with the 101, in the write that ends this turn.
            drain_to_ws(conn, s);
        }
        _ => return ws::queue_close(conn, close::NORMAL, "session closed or already upgraded"),
    }
    env.app.sio.touch(session.slot as usize);
}

/// Frames what waits in a WebSocket session's queue into its connection's output. Done
/// while the connection is being driven when possible, so replies leave in the turn's own
/// write: a burst of thousands of handshakes then never holds thousands of output chunks
/// waiting on the pending list.
fn drain_to_ws(conn: &mut Conn, s: &mut crate::sio::Session) {
    if !s.eio.has_output() || !matches!(conn.life, Life::Open) {
        return;
    }
    let enc = ws::encoding(conn, s.ws_encoding());
    for out in s.eio.take_queue() {
        match out {
            Out::Text(t) => ws::queue_data(conn, OpCode::Text, t.into_vec().into()),
            Out::Binary(b) => ws::queue_data(conn, OpCode::Binary, std::borrow::Cow::Borrowed(&b[..])),
            Out::Msg(m) => conn.out.push_shared(m.encoded(enc).clone()),
        }
    }
}

/// One message on a session's WebSocket (or probing WebSocket).
pub fn on_ws_message(conn: &mut Conn, op: OpCode, data: &[u8], session: SinkRef, probe: bool, env: &mut Env<'_>) {
    let app = &mut *env.app;
    if app.sio.get_mut(session).is_none() {
        return ws::queue_close(conn, close::NORMAL, "session closed");
    }
    let slot = session.slot as usize;
    let packet = match op {
        OpCode::Binary => Ok(Packet::Binary(Cow::Borrowed(data))),
        _ => engineio::decode_text(data),
    };
    let packet = match packet {
        Ok(p) => p,
        Err(e) => {
            log::debug!("conn {}: engine.io: {e}", conn.id);
            if probe {
                return ws::queue_close(conn, close::PROTOCOL_ERROR, "invalid Engine.IO packet");
            }
            return app.sio.close(slot, CloseReason::TransportError);
        }
    };
    let via = if probe { Via::Probe } else { Via::Transport };
    let mut senv = server::Env { hub: &mut app.hub, outbox: &mut app.outbox, cluster: app.cluster.as_mut(), config: &app.config, now: env.now, wall_us: env.wall_us };
    match app.sio.on_packet(slot, packet, via, &mut senv) {
        ProbeAction::None => {
            let me = conn_ref(conn);
            if let Some(s) = app.sio.get_mut(session).filter(|s| s.ws == Some(me) && s.eio.is_open()) {
                drain_to_ws(conn, s);
            }
        }
        ProbeAction::Answer => ws::queue_frame(&mut conn.out, OpCode::Text, std::borrow::Cow::Borrowed(b"3probe")),
        ProbeAction::Upgraded => {
            let me = conn_ref(conn);
            if let Some(s) = app.sio.get_mut(session) {
                s.probe = None;
                s.ws = Some(me);
            }
            if let Transport::WebSocket(w) = &mut conn.transport {
                w.session = WsSession::Eio { session, probe: false };
            }
        }
        ProbeAction::Close => {
            if let Some(s) = app.sio.get_mut(session) {
                s.probe = None;
            }
            ws::queue_close(conn, close::NORMAL, "upgrade failed");
        }
    }
}

/// A connection is being freed: the session it carried learns it.
pub fn detach(conn: &Conn, app: &mut App) {
    let me = conn_ref(conn);
    let (session, role) = match &conn.transport {
        Transport::EioPoll(p) => (p.session, 0),
        Transport::WebSocket(w) => match w.session {
            WsSession::Eio { session, probe } => (session, if probe { 2 } else { 1 }),
            _ => return,
        },
        _ => return,
    };
    let slot = session.slot as usize;
    let Some(s) = app.sio.get_mut(session) else { return };
    match role {
        // socket.io ends a session whose held GET or WebSocket goes away.
        // (A GET held past the upgrade is answered when the upgrade completes; should it go
        // first, the session has moved on.)
        0 if s.get == Some(me) && s.eio.transport == TransportKind::Polling => {
            s.get = None;
            app.sio.close(slot, CloseReason::TransportClose);
        }
        1 if s.ws == Some(me) => {
            s.ws = None;
            app.sio.close(slot, CloseReason::TransportClose);
        }
        2 if s.probe == Some(me) => {
            s.probe = None;
            s.eio.end_probe();
            app.sio.touch(slot);
        }
        0 if s.get == Some(me) => s.get = None,
        _ => {}
    }
}

/// What flushing sessions needs from the loop.
pub struct Loop<'a> {
    pub conns: &'a mut Slab<Conn>,
    pub app: &'a mut App,
    pub pending: &'a mut VecDeque<Token>,
    pub timers: &'a mut Timers,
    pub date: &'a DateCache,
    pub now: Instant,
}

fn live_conn(conns: &mut Slab<Conn>, r: Option<SinkRef>) -> Option<&mut Conn> {
    let r = r?;
    conns.get_mut(r.slot as usize).filter(|c| c.id == r.id && !c.dead)
}

/// Flushes every session something touched since the last call.
pub fn flush_sessions(l: &mut Loop<'_>) {
    while let Some(slot) = l.app.sio.next_touched() {
        flush(l, slot);
    }
}

fn flush(l: &mut Loop<'_>, slot: usize) {
    let s = &mut l.app.sio.sessions[slot];
    if !s.eio.is_open() {
        return finish(l, slot);
    }
    match s.eio.transport {
        TransportKind::WebSocket if s.get.is_some() => {
            // Upgraded with a GET still held (the client did not wait for it): the old
            // transport is released with a noop, as engine.io does, and what waits goes
            // over the WebSocket on the next flush.
            let get = s.get.take();
            if let Some(conn) = live_conn(l.conns, get) {
                answer_get(conn, PollPayload::text(b"6"), l.app, l.date);
                conn.wake(l.pending);
            }
            l.app.sio.touch(slot);
        }
        TransportKind::WebSocket => match live_conn(l.conns, s.ws) {
            Some(conn) if matches!(conn.life, Life::Open) && s.eio.has_output() => {
                drain_to_ws(conn, s);
                conn.wake(l.pending);
            }
            Some(conn) if matches!(conn.life, Life::Open) => {}
            _ if s.ws.is_some() => {
                s.eio.close(CloseReason::TransportClose);
                return finish(l, slot);
            }
            _ => {}
        },
        TransportKind::Polling => {
            if s.eio.has_output() || s.eio.releases_polls() {
                if let Some(conn) = live_conn(l.conns, s.get) {
                    let payload = s.take_poll_payload();
                    s.get = None;
                    answer_get(conn, payload, l.app, l.date);
                    conn.wake(l.pending);
                }
            }
        }
    }
    let s = &mut l.app.sio.sessions[slot];
    if let Some(at) = s.deadline() {
        if s.timer_at.is_none_or(|t| t > at) {
            s.timer_at = Some(at);
            l.timers.add(at, TimerKey::Sink(s.sink(slot)));
        }
    }
}

/// A closed session: its subscriptions go, a held GET is answered (`6` after the client's
/// own close, else `1`), its WebSockets are closed.
fn finish(l: &mut Loop<'_>, slot: usize) {
    let s = l.app.sio.remove(slot, &mut l.app.hub, l.now);
    let why = s.eio.closed.unwrap_or(CloseReason::TransportClose);
    log::debug!("socket.io session {}: closed ({why:?})", server::sid_str(&s.sid));
    if let Some(conn) = live_conn(l.conns, s.get) {
        let packet = PollPayload::text(if why == CloseReason::ClientClose { b"6" } else { b"1" });
        answer_get(conn, packet, l.app, l.date);
        conn.wake(l.pending);
    }
    for r in [s.ws, s.probe] {
        if let Some(conn) = live_conn(l.conns, r) {
            if matches!(conn.life, Life::Open) {
                let (code, reason) = match why {
                    CloseReason::ServerShutdown => (close::GOING_AWAY, "server shutting down"),
                    CloseReason::SlowConsumer => (close::POLICY, "too slow: output limit exceeded"),
                    CloseReason::PingTimeout => (close::NORMAL, "ping timeout"),
                    CloseReason::ParseError | CloseReason::TransportError => (close::NORMAL, "protocol error"),
                    _ => (close::NORMAL, ""),
                };
                ws::queue_close(conn, code, reason);
                conn.wake(l.pending);
            }
        }
    }
}

/// A session's timer fired.
pub fn on_timer(l: &mut Loop<'_>, session: SinkRef, at: Instant) {
    let slot = session.slot as usize;
    let Some(s) = l.app.sio.get_mut(session) else { return };
    if s.timer_at != Some(at) {
        return; // superseded by an earlier entry
    }
    s.timer_at = None;
    if l.app.sio.on_timeout(slot, l.now, &l.app.config) {
        // The upgrade probe took too long: its WebSocket goes, polling goes on.
        if let Some(s) = l.app.sio.get_mut(session) {
            if let Some(conn) = live_conn(l.conns, s.probe.take()) {
                ws::queue_close(conn, close::NORMAL, "upgrade timeout");
                conn.wake(l.pending);
            }
        }
    }
    flush_sessions(l);
}
