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

/// `engine_echo`: the request came to the conformance preset's bare Engine.IO path.
pub fn handle(ctx: &mut Ctx<'_>, req: &Request, engine_echo: bool) -> Reply {
    if req.head.method == Method::Options {
        // A cross-origin polling client's preflight (with --cors-origin).
        let allow = "GET, POST, OPTIONS";
        return pubsub::preflight(ctx, Response::empty(204).header("Allow", allow), allow).into();
    }
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
            return match handshake::accept(&req.head, &[], &cfg.allowed_origins, cfg.ws_compression) {
                Ok(accepted) => {
                    let slot = ctx.sio.open(TransportKind::WebSocket, cfg, now, engine_echo);
                    let session = ctx.sio.sessions[slot].sink(slot);
                    Reply::WebSocket { accepted, session: WsSession::Eio { session, probe: false }, since: None }
                }
                Err(e) => e.response().into(),
            };
        }
        // The open packet is the answer of the first GET, like any packet waiting.
        let slot = ctx.sio.open(TransportKind::Polling, cfg, now, engine_echo);
        return Reply::EioHold(ctx.sio.sessions[slot].sink(slot));
    };
    let Some(slot) = ctx.sio.find(&sid) else { return error(ctx, RequestError::UnknownSid) };
    let s = &mut ctx.sio.sessions[slot];
    let session = s.sink(slot);
    if transport == TransportKind::WebSocket {
        // An upgrade: only from polling, and one at a time. A second WebSocket for a session
        // is accepted and closed at once, as the reference server does; the first goes on.
        let refused = s.eio.transport == TransportKind::WebSocket || s.probe.is_some();
        return match handshake::accept(&req.head, &[], &cfg.allowed_origins, cfg.ws_compression) {
            Ok(accepted) => {
                let ws = if refused { WsSession::EioRefused } else { WsSession::Eio { session, probe: true } };
                Reply::WebSocket { accepted, session: ws, since: None }
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
            // Answered at once when packets wait (net/eio.rs `hold`), else held.
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
            let mut env = Env { hub: ctx.hub, outbox: ctx.outbox, cluster: ctx.cluster.as_deref_mut(), config: cfg, now, wall_us: ctx.wall_us };
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

/// `POST /socket.io-api/emit` `{"namespace","room" | "to" | "user","event","args":[…]}`:
/// an event from the server, as `io.of(ns).to(room).emit(event, ...args)` would send it.
/// Without `room`, `to` or `user`: the whole namespace. Needs the publish token when one is
/// set. The arguments keep their JSON as sent (key order included), compacted.
pub fn emit_api(ctx: &mut Ctx<'_>, req: &Request, _: &super::Params) -> Reply {
    use serde_json::value::RawValue;
    use std::collections::HashMap;
    if let Some(denied) = pubsub::check_token(ctx, req) {
        return denied;
    }
    let Ok(fields) = serde_json::from_slice::<HashMap<String, Box<RawValue>>>(&req.body) else {
        return pubsub::json_error(ctx, 400, "body must be a JSON object {\"namespace\",\"room\"|\"to\"|\"user\",\"event\",\"args\":[...]}");
    };
    let string = |k: &str| -> Result<Option<String>, ()> {
        match fields.get(k) {
            None => Ok(None),
            Some(raw) => match serde_json::from_str::<serde_json::Value>(raw.get()) {
                Ok(serde_json::Value::String(s)) => Ok(Some(s)),
                Ok(serde_json::Value::Null) => Ok(None),
                _ => Err(()),
            },
        }
    };
    let (Ok(nsp), Ok(room), Ok(to), Ok(user), Ok(event)) = (string("namespace"), string("room"), string("to"), string("user"), string("event")) else {
        return pubsub::json_error(ctx, 400, "namespace, room, to, user and event are strings");
    };
    let nsp = nsp.unwrap_or_else(|| "/".into());
    let Some(event) = event.filter(|e| !e.is_empty()) else { return pubsub::json_error(ctx, 400, "event is required") };
    if crate::proto::socketio::RESERVED_EVENTS.contains(&event.as_str()) {
        return pubsub::json_error(ctx, 400, "a reserved event name (connect, connect_error, disconnect, disconnecting, newListener, removeListener)");
    }
    if !nsp.starts_with('/') {
        return pubsub::json_error(ctx, 400, "namespace starts with /");
    }
    let args = match fields.get("args") {
        None => "[]".to_string(),
        Some(raw) if raw.get().trim_start().starts_with('[') => crate::proto::socketio::compact_json(raw.get().trim()).into_owned(),
        Some(_) => return pubsub::json_error(ctx, 400, "args is an array"),
    };
    // `[event, ...args]`
    let name = serde_json::to_string(&event).unwrap_or_default();
    let full = if args == "[]" { format!("[{name}]") } else { format!("[{name},{}", &args[1..]) };
    let value: serde_json::Value = serde_json::from_str(&full).unwrap_or(serde_json::Value::Null);
    if [room.is_some(), to.is_some(), user.is_some()].iter().filter(|x| **x).count() > 1 {
        return pubsub::json_error(ctx, 400, "give at most one of room, to, user");
    }
    if let Some(to) = to {
        if ctx.sio.emit_to_socket(&to, &nsp, &full) {
            return pubsub::with_cors(ctx, Response::json(202, &serde_json::json!({"delivered": 1}))).into();
        }
        if ctx.cluster.is_none() {
            return pubsub::json_error(ctx, 404, "no such socket in that namespace");
        }
        // Not here: the node that has it delivers it (every node follows the topic).
        let data = crate::cluster::wire::to_socket(&nsp, &to, &full);
        return match ctx.publish_for(&crate::cluster::wire::sockets_topic(), None, data.into(), Default::default(), super::cluster::Answer::SioEmit) {
            Ok(_) => Reply::Parked,
            Err(e) => super::cluster::unavailable(ctx, e),
        };
    }
    let key = match (&room, &user) {
        (Some(r), _) => match crate::sio::names::room_channel(&nsp, r) {
            Some(c) => crate::hub::TopicKey::channel(&c),
            None => return pubsub::json_error(ctx, 400, "room or namespace name too long"),
        },
        (_, Some(u)) if crate::hub::valid_user_name(u) => crate::hub::TopicKey::user(u),
        (_, Some(_)) => return pubsub::json_error(ctx, 400, "invalid user name"),
        _ => match crate::sio::names::namespace_channel(&nsp) {
            Some(c) => crate::hub::TopicKey::channel(&c),
            None => return pubsub::json_error(ctx, 400, "namespace name too long"),
        },
    };
    let subscribers = ctx.hub.subscriber_count(&key);
    let plain: std::rc::Rc<[u8]> = crate::sio::wire::SioPayload::plain_data(&value).into();
    let extra = crate::hub::Extra { sio: Some(Box::new(crate::sio::wire::SioPayload { args: full.into(), attachments: Vec::new() })), ..Default::default() };
    let event = (!event.contains(['\r', '\n'])).then_some(event.as_str());
    match ctx.publish_for(&key, event, plain, extra, super::cluster::Answer::SioEmit) {
        Ok(super::cluster::Published::Local(msg)) => {
            let body = serde_json::json!({"id": msg.id.to_string(), "subscribers": subscribers});
            pubsub::with_cors(ctx, Response::json(202, &body)).into()
        }
        Ok(super::cluster::Published::Sent) => Reply::Parked,
        Err(e) => super::cluster::unavailable(ctx, e),
    }
}
