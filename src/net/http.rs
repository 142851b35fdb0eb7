//! The HTTP/1.1 transport: hands a connection's input to its request reader, routes each
//! complete request through the app, and queues what the reply asks for.

use std::time::Instant;

use super::conn::{Conn, FileSend, Http, Life, Slot, Transport};
use super::{stream, ws};
use crate::app::{App, ConnKind, Reply};
use crate::error::HttpError;
use crate::proto::http1::{response, DateCache, Method, Persist, ReadEvent, Request, Response};

/// Why input processing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Everything usable was used; the rest (if any) is an incomplete request.
    NeedMore,
    /// A limit stopped it (output cap, file streaming, per-wake-up budget, closing); there
    /// may be complete requests left in the input.
    Blocked,
}

/// What the transport needs from the loop while it works.
pub struct Env<'a> {
    pub app: &'a mut App,
    pub date: &'a DateCache,
    pub now: Instant,
    /// Graceful shutdown is under way: every response closes its connection.
    pub draining: bool,
    /// Requests handled for this connection in this wake-up (fairness budget).
    pub handled: usize,
    /// Microseconds since the Unix epoch (message ids).
    pub wall_us: u64,
}

/// Offers `input` (which starts where the previous call's used bytes ended) to the
/// connection's transport. Returns the bytes used.
// Not inlined into the per-connection loop: the HTTP path's stack frame (several KiB of
// request and response state) would be set up for every WebSocket frame too.
#[inline(never)]
pub fn process_input(conn: &mut Conn, input: &[u8], env: &mut Env<'_>) -> (usize, Stop) {
    let mut pos = 0;
    loop {
        if !conn.wants_input(&env.app.config) || env.handled >= env.app.config.max_requests_per_wakeup {
            return (pos, Stop::Blocked);
        }
        let Transport::Http(h) = &mut conn.transport else {
            // An upgrade switched the transport: the rest of the input is the new protocol's.
            return (pos, Stop::Blocked);
        };
        match h.reader.advance(&input[pos..]) {
            Err(e) => {
                queue_error(conn, e, env.date);
                return (input.len(), Stop::Blocked);
            }
            Ok((used, event)) => {
                pos += used;
                match event {
                    None => {
                        if used == 0 || pos == input.len() {
                            return (pos, Stop::NeedMore);
                        }
                    }
                    Some(ReadEvent::SendContinue) => {
                        // RFC 9110 §10.1.1: the client waits for this before sending the body.
                        conn.out.extend(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    Some(ReadEvent::Request(req)) => {
                        env.handled += 1;
                        h.head_started = None;
                        if let Some(p) = h.parked.as_mut() {
                            if req.head.method != Method::Post {
                                p.held = Some(req);
                                return (pos, Stop::Blocked);
                            }
                        }
                        respond(conn, &req, env);
                    }
                }
            }
        }
    }
}

/// Routes one request and queues the reply.
pub fn respond(conn: &mut Conn, req: &Request, env: &mut Env<'_>) {
    let reply = env.app.handle(req, env.now, env.wall_us, crate::hub::SinkRef::conn(conn.token, conn.id));
    let head = &req.head;
    let persist = if !head.keep_alive || env.draining {
        Persist::Close
    } else if head.minor_version == 0 {
        Persist::KeepAlive10
    } else {
        Persist::KeepAlive11
    };
    let head_only = head.method == Method::Head;
    let reply = match reply {
        // Shutting down: no new long-lived connection would outlive the drain anyway.
        Reply::WebSocket { .. } | Reply::Subscribe(_) | Reply::EioHold(_) if env.draining => {
            // A session the handshake opened (or one polling now) will have no transport.
            if let Reply::WebSocket { session: crate::app::WsSession::Eio { session, probe: false }, .. } | Reply::EioHold(session) = &reply {
                env.app.sio.close(session.slot as usize, crate::sio::session::CloseReason::ServerShutdown);
            }
            Reply::Response(Response::static_text(503, "server shutting down\n").header("Retry-After", "1"))
        }
        r => r,
    };
    if let (Reply::Response(resp), Transport::Http(Http { parked: Some(p), .. })) = (&reply, &mut conn.transport) {
        // Earlier answers wait on Redis: this one goes after them.
        let bytes = super::conn::render_response(resp, head_only, persist, env.date);
        p.closing |= persist == Persist::Close;
        p.slots.push_back(Slot::Ready(bytes, persist));
        return;
    }
    match reply {
        Reply::Response(resp) => conn.queue_response(resp, head_only, persist, env.date),
        Reply::File { head: resp, file, len } => {
            conn.out.with_tail(|v| response::write_head(v, resp.status, &resp.headers, Some(len), persist, env.date));
            if persist == Persist::Close {
                conn.life = Life::CloseAfterFlush;
            }
            if let (Some(file), false) = (file, head_only) {
                if len > 0 {
                    if let Transport::Http(h) = &mut conn.transport {
                        h.file = Some(Box::new(FileSend { file, left: len }));
                    }
                }
            }
        }
        Reply::WebSocket { accepted, session, since } => {
            conn.queue_response(accepted.response(), false, Persist::Upgrade, env.date);
            env.app.stats.conn_closed(ConnKind::Http);
            env.app.stats.conn_opened(ConnKind::WebSocket);
            ws::start(conn, session, since, accepted.deflate, env);
        }
        Reply::Subscribe(sub) => stream::start(conn, sub, persist, head_only, env),
        Reply::EioHold(session) => super::eio::hold(conn, session, persist, env),
        Reply::Parked => {
            if let Transport::Http(h) = &mut conn.transport {
                let p = h.parked.get_or_insert_with(Default::default);
                p.closing |= persist == Persist::Close;
                p.slots.push_back(Slot::Waiting(persist));
            }
        }
    }
}

/// Answers a request error with its status and a short text, then closes.
pub fn queue_error(conn: &mut Conn, e: HttpError, date: &DateCache) {
    log::debug!("conn {}: {e}", conn.id);
    conn.queue_response(Response::text(e.status(), e.message()), false, Persist::Close, date);
}
