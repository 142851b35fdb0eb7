//! Engine.IO's HTTP side at `--sio-path` (default `/socket.io/`): the handshake, polling
//! GETs and POSTs, and the WebSocket upgrade requests, with the reference server's error
//! answers (`400 {"code":N,"message":"…"}`). What the packets mean is `sio/server.rs`'s
//! business; holding a GET and attaching a WebSocket is the loop's (`net/eio.rs`).

use super::{pubsub, Ctx, Reply, WsSession};
use crate::proto::engineio::{self, RequestError, PROTOCOL};
use crate::proto::http1::{Body, Method, Request, Response};
use crate::proto::ws::handshake;
use crate::sio::server::Env;
use crate::sio::session::{CloseReason, TransportKind, Via};

fn error(ctx: &Ctx<'_>, e: RequestError) -> Reply {
    pubsub::with_cors(ctx, Response::new(400, "application/json", Body::Owned(e.body().into_bytes()))).into()
}

/// A polling answer: the waiting packets joined by 0x1E (`6` when released empty).
pub fn poll_answer(payload: Vec<u8>) -> Response {
    Response::new(200, "text/plain; charset=UTF-8", Body::Owned(payload))
}

pub fn handle(ctx: &mut Ctx<'_>, req: &Request) -> Reply {
    let (mut eio, mut transport, mut sid) = (None, None, None);
    for (k, v) in form_urlencoded::parse(req.head.query().unwrap_or("").as_bytes()) {
        match &*k {
            "EIO" => eio = Some(v.into_owned()),
            "transport" => transport = Some(v.into_owned()),
            "sid" => sid = Some(v.into_owned()),
            _ => {}
        }
    }
    let transport = match transport.as_deref() {
        Some("polling") => TransportKind::Polling,
        Some("websocket") => TransportKind::WebSocket,
        _ => return error(ctx, RequestError::UnknownTransport),
    };
    if eio.as_deref() != Some(PROTOCOL) {
        return error(ctx, RequestError::UnsupportedProtocolVersion);
    }
    let upgrade = handshake::wants_upgrade(&req.head);
    if upgrade != (transport == TransportKind::WebSocket) {
        // A WebSocket handshake that says polling, or a plain request that says websocket.
        return error(ctx, RequestError::BadRequest);
    }
    let (cfg, now) = (ctx.config, ctx.now);
    let Some(sid) = sid else {
        if req.head.method != Method::Get {
            return error(ctx, RequestError::BadHandshakeMethod);
        }
        if transport == TransportKind::WebSocket {
            return match handshake::accept(&req.head, &[], &cfg.allowed_origins) {
                Ok(accepted) => {
                    let slot = ctx.sio.open(TransportKind::WebSocket, cfg, now);
                    let session = ctx.sio.sessions[slot].sink(slot);
                    Reply::WebSocket { response: accepted.response(), session: WsSession::Eio { session, probe: false } }
                }
                Err(e) => e.response().into(),
            };
        }
        let slot = ctx.sio.open(TransportKind::Polling, cfg, now);
        let payload = ctx.sio.sessions[slot].take_poll_payload();
        return pubsub::with_cors(ctx, poll_answer(payload)).into();
    };
    let Some(slot) = ctx.sio.find(&sid) else { return error(ctx, RequestError::UnknownSid) };
    let s = &mut ctx.sio.sessions[slot];
    let session = s.sink(slot);
    if transport == TransportKind::WebSocket {
        // An upgrade: only from polling, and one at a time. A second WebSocket for a session
        // is accepted and closed at once, as the reference server does; the first goes on.
        let refused = s.eio.transport == TransportKind::WebSocket || s.probe.is_some();
        return match handshake::accept(&req.head, &[], &cfg.allowed_origins) {
            Ok(accepted) => {
                let ws = if refused { WsSession::EioRefused } else { WsSession::Eio { session, probe: true } };
                Reply::WebSocket { response: accepted.response(), session: ws }
            }
            Err(e) => e.response().into(),
        };
    }
    if s.eio.transport != TransportKind::Polling {
        return error(ctx, RequestError::BadRequest);
    }
    match req.head.method {
        Method::Get => {
            if s.get.is_some() {
                // Two GETs at once: the reference server ends the session (the held GET
                // gets a close packet) and refuses the second.
                ctx.sio.close(slot, CloseReason::TransportError);
                return error(ctx, RequestError::BadRequest);
            }
            if s.eio.has_output() || s.eio.releases_polls() {
                let payload = s.take_poll_payload();
                return pubsub::with_cors(ctx, poll_answer(payload)).into();
            }
            Reply::EioHold(session)
        }
        Method::Post => {
            if req.body.len() > cfg.sio_max_payload {
                return pubsub::with_cors(ctx, Response::static_text(413, "payload over maxPayload\n")).into();
            }
            let packets = match engineio::decode_payload(&req.body) {
                Ok(p) => p,
                Err(e) => {
                    log::debug!("socket.io session {slot}: {e}");
                    ctx.sio.close(slot, CloseReason::TransportError);
                    return error(ctx, RequestError::BadRequest);
                }
            };
            let mut env = Env { hub: ctx.hub, outbox: ctx.outbox, config: cfg, now, wall_us: ctx.wall_us };
            for p in packets {
                ctx.sio.on_packet(slot, p, Via::Transport, &mut env);
            }
            pubsub::with_cors(ctx, Response::new(200, "text/html", Body::Static(b"ok"))).into()
        }
        _ => error(ctx, RequestError::BadRequest),
    }
}

/// `GET {sio_path}socket.io.js`: the official browser client, when `--sio-client-js` names it.
pub fn client_js(ctx: &Ctx<'_>) -> Reply {
    match ctx.sio_client_js {
        Some(js) => Response::new(200, "application/javascript; charset=utf-8", Body::Shared(js.clone()))
            .header("Cache-Control", "public, max-age=3600")
            .into(),
        None => Response::static_text(404, "no socket.io client bundle: start pushwire with --sio-client-js FILE\n").into(),
    }
}
