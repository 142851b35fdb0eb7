//! Publish and subscribe over HTTP: channels, users, and the multi-channel endpoints. The
//! transport of a subscription follows the request: `Upgrade: websocket` → WebSocket,
//! `Accept: text/event-stream` → SSE, anything else → long-poll.

use std::borrow::Cow;

use super::cluster::{self, Answer, Published, PublishError};
use super::{Ctx, Params, Reply, StreamKind, Subscription, WsPublish, WsSession};
use crate::hub::{valid_channel_name, valid_user_name, Extra, HubError, TopicKey};
use crate::proto::http1::{Method, Request, Response};
use crate::proto::ws::handshake;

/// `GET /channels/{name}`: subscribe to one channel.
pub fn channel_subscribe(ctx: &mut Ctx<'_>, req: &Request, p: &Params) -> Reply {
    let name = p.get("name").unwrap_or("");
    if !valid_channel_name(name) {
        return bad_name(ctx);
    }
    let publish = !super::dashboard::is_system_channel(name);
    subscribe(ctx, req, vec![TopicKey::channel(name)], publish)
}

/// `POST /channels/{name}`: publish the body. `?event=NAME` names the SSE event.
pub fn channel_publish(ctx: &mut Ctx<'_>, req: &Request, p: &Params) -> Reply {
    let name = p.get("name").unwrap_or("");
    if !valid_channel_name(name) {
        return bad_name(ctx);
    }
    if let Some(denied) = check_token(ctx, req) {
        return denied;
    }
    if super::dashboard::is_system_channel(name) {
        return json_error(ctx, 403, "channels named pushwire:… are the server's: they can be followed, not published to");
    }
    let event = query_values(req, "event").next();
    if event.as_deref().is_some_and(|e| e.is_empty() || e.contains(['\r', '\n'])) {
        return json_error(ctx, 400, "event names are one line of text");
    }
    let key = TopicKey::channel(name);
    let subscribers = ctx.hub.subscriber_count(&key);
    let msg = match ctx.publish_for(&key, event.as_deref(), req.body[..].into(), Extra::default(), Answer::Channel) {
        Ok(Published::Local(m)) => m,
        Ok(Published::Sent) => return Reply::Parked,
        Err(e) => return cluster::unavailable(ctx, e),
    };
    let body = serde_json::json!({"id": msg.id.to_string(), "subscribers": subscribers});
    with_cors(ctx, Response::json(202, &body)).into()
}

/// `GET /users/{name}`: subscribe as user `name` (one of possibly many connections).
pub fn user_subscribe(ctx: &mut Ctx<'_>, req: &Request, p: &Params) -> Reply {
    let name = p.get("name").unwrap_or("");
    if !valid_user_name(name) {
        return json_error(ctx, 400, "invalid user name");
    }
    subscribe(ctx, req, vec![TopicKey::user(name)], false)
}

/// `POST /users/{name}`: deliver the body to every connection of the user.
pub fn user_publish(ctx: &mut Ctx<'_>, req: &Request, p: &Params) -> Reply {
    let name = p.get("name").unwrap_or("");
    if !valid_user_name(name) {
        return json_error(ctx, 400, "invalid user name");
    }
    if let Some(denied) = check_token(ctx, req) {
        return denied;
    }
    let event = query_values(req, "event").next();
    match send_to_user(ctx, name, event.as_deref(), &req.body, Answer::User) {
        ToUser::Offline => json_error(ctx, 404, "user offline"),
        ToUser::Delivered(n) => with_cors(ctx, Response::json(202, &serde_json::json!({"delivered": n}))).into(),
        ToUser::Parked => Reply::Parked,
        ToUser::Failed(e) => cluster::unavailable(ctx, e),
    }
}

/// What sending to a user did.
pub enum ToUser {
    /// Standalone: this many connections got it.
    Delivered(usize),
    Offline,
    /// Cluster: Redis says whether any node has the user (answered with `answer`).
    Parked,
    Failed(PublishError),
}

/// Publishes to a user if it has connections (in a cluster: on any node).
pub fn send_to_user(ctx: &mut Ctx<'_>, name: &str, event: Option<&str>, data: &[u8], answer: Answer) -> ToUser {
    let key = TopicKey::user(name);
    if ctx.cluster.is_some() {
        return match ctx.publish_for(&key, event, data.into(), Extra::default(), answer) {
            Ok(_) => ToUser::Parked,
            Err(e) => ToUser::Failed(e),
        };
    }
    let n = ctx.hub.subscriber_count(&key);
    // Users are not under the channel cap: a user with connections always has its topic.
    if n > 0 && ctx.publish(&key, event, data).is_ok() {
        return ToUser::Delivered(n);
    }
    ToUser::Offline
}

/// `GET /subscribe?channel=a&channel=b`: several channels on one SSE stream or long-poll.
pub fn multi_subscribe(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    let names: Vec<String> = query_values(req, "channel").collect();
    if names.is_empty() || names.len() > 64 {
        return json_error(ctx, 400, "name 1 to 64 channels: ?channel=a&channel=b");
    }
    if !names.iter().all(|n| valid_channel_name(n)) {
        return bad_name(ctx);
    }
    if handshake::wants_upgrade(&req.head) {
        return json_error(ctx, 400, "for several channels over WebSocket, use /ws");
    }
    // A channel named twice is followed once (else every message would come twice).
    let mut keys: Vec<TopicKey> = Vec::with_capacity(names.len());
    for n in &names {
        let k = TopicKey::channel(n);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    subscribe(ctx, req, keys, false)
}

/// `GET /ws`: a WebSocket speaking JSON control messages.
pub fn control_socket(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    let publish = ws_publish_right(ctx, req);
    websocket(ctx, req, WsSession::Control { publish }, None)
}

/// Subscribes with the transport the request asks for.
fn subscribe(ctx: &mut Ctx<'_>, req: &Request, topics: Vec<TopicKey>, ws_publish: bool) -> Reply {
    let since = match resume_id(req) {
        Ok(s) => s,
        Err(()) => return json_error(ctx, 400, "invalid last event id: expected a message id"),
    };
    let sse = accepts_event_stream(req);
    if req.head.method != Method::Head && topics.iter().any(|k| &*k.name == super::dashboard::STATS_CHANNEL) {
        // Its figures are published once a second while anyone follows it.
        *ctx.ticker_wanted = true;
    }
    if let Err(e) = ctx.hub.check_room(&topics) {
        return hub_error(ctx, e);
    }
    if handshake::wants_upgrade(&req.head) && req.head.method != Method::Head {
        let key = topics.into_iter().next().expect("one topic");
        let publish = ws_publish && ws_publish_right(ctx, req) == WsPublish::Allowed;
        return websocket(ctx, req, WsSession::Topic { key, publish }, since);
    }
    // `?transport=iframe` wins over Accept: an iframe's request cannot choose its headers.
    let iframe = query_values(req, "transport").any(|t| t == "iframe");
    let callback = if iframe {
        let cb = query_values(req, "callback").next().unwrap_or_else(|| "pushwire".into());
        if !crate::proto::iframe::valid_callback(&cb) {
            return json_error(ctx, 400, "callback: a dotted JavaScript name (letters, digits, _ and $), at most 64 bytes");
        }
        Some(cb)
    } else {
        None
    };
    let kind = if iframe {
        StreamKind::Iframe
    } else if sse {
        StreamKind::Sse
    } else {
        StreamKind::LongPoll
    };
    Reply::Subscribe(Subscription {
        kind,
        topics,
        since,
        headers: cors_headers(ctx),
        greeting: None,
        retry_ms: ctx.config.sse_retry.as_millis() as u64,
        callback,
    })
}

pub fn websocket(ctx: &mut Ctx<'_>, req: &Request, session: WsSession, since: Option<u64>) -> Reply {
    match handshake::accept(&req.head, &[], &ctx.config.allowed_origins, ctx.config.ws_compression) {
        Ok(accepted) => Reply::WebSocket { accepted, session, since },
        Err(e) => e.response().into(),
    }
}

pub fn accepts_event_stream(req: &Request) -> bool {
    req.head.values("accept").any(|v| {
        v.split(|&b| b == b',').any(|t| {
            let media = t.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
            media.eq_ignore_ascii_case(b"text/event-stream")
        })
    })
}

/// Where a returning subscriber left off: `Last-Event-ID` (header; EventSource sends it on
/// reconnect), `?lastEventId=` (EventSource polyfills), or `?since=` (long-poll cursors).
/// When several are given the latest wins: a page opened with `?lastEventId=100` that has
/// since seen 150 reconnects to the same URL with the header saying 150.
/// `Err` for an id that is not one of ours.
pub fn resume_id(req: &Request) -> Result<Option<u64>, ()> {
    let header = req.head.header_str("last-event-id").map(|h| h.trim().to_string());
    let mut best: Option<u64> = None;
    for raw in query_values(req, "since").chain(query_values(req, "lastEventId")).chain(header) {
        if raw.is_empty() {
            continue;
        }
        let id = crate::hub::parse_message_id(&raw).ok_or(())?;
        best = Some(best.map_or(id, |b| b.max(id)));
    }
    Ok(best)
}

/// The values of a query parameter, decoded.
pub fn query_values<'r>(req: &'r Request, name: &'r str) -> impl Iterator<Item = String> + 'r {
    form_urlencoded::parse(req.head.query().unwrap_or("").as_bytes())
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// With `--publish-token`, the request must carry `Authorization: Bearer TOKEN`. The one
/// rule for every HTTP route that publishes or delivers (`/channels`, `/users`, and the
/// demos' `/chat` and `/rest/message`): `Some(reply)` is the 401 to send.
pub fn check_token(ctx: &Ctx<'_>, req: &Request) -> Option<Reply> {
    let body = serde_json::json!({"error": TOKEN_NEEDED});
    token_denied(ctx, req, &body)
}

/// What a publisher without the token is told.
pub const TOKEN_NEEDED: &str = "publishing needs Authorization: Bearer <token>";

/// The 401 with `body` when the request lacks the token (none when it has it, or when no
/// token is configured).
pub fn token_denied(ctx: &Ctx<'_>, req: &Request, body: &serde_json::Value) -> Option<Reply> {
    let token = ctx.config.publish_token.as_deref()?;
    if bearer(req) == Some(token) {
        return None;
    }
    Some(with_cors(ctx, Response::json(401, body).header("WWW-Authenticate", "Bearer")).into())
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.head.header_str("authorization")?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A WebSocket may publish unless `--ws-publish=false`, and, with a token configured, only
/// when its handshake carried it (`Authorization: Bearer`, or `?token=` since browsers
/// cannot set headers on WebSockets).
fn ws_publish_right(ctx: &Ctx<'_>, req: &Request) -> WsPublish {
    if !ctx.config.ws_publish {
        return WsPublish::Disabled;
    }
    match ctx.config.publish_token.as_deref() {
        None => WsPublish::Allowed,
        Some(t) if bearer(req) == Some(t) || query_values(req, "token").any(|q| q == t) => WsPublish::Allowed,
        Some(_) => WsPublish::NeedsToken,
    }
}

fn cors_headers(ctx: &Ctx<'_>) -> Vec<(&'static str, Cow<'static, str>)> {
    super::cors_headers(ctx.config)
}

/// The CORS headers `--cors-origin` asks for (none without it).
pub fn cors_headers_for(cfg: &crate::config::Config) -> Vec<(&'static str, Cow<'static, str>)> {
    match &cfg.cors_origin {
        None => Vec::new(),
        Some(o) => {
            let mut h = vec![("Access-Control-Allow-Origin", Cow::Owned(o.clone()))];
            if o != "*" {
                h.push(("Vary", Cow::Borrowed("Origin")));
            }
            h
        }
    }
}

pub fn with_cors(ctx: &Ctx<'_>, mut r: Response) -> Response {
    r.headers.extend(cors_headers(ctx));
    r
}

/// An `OPTIONS` preflight: with `--cors-origin`, the CORS answer for the path's methods.
pub fn preflight(ctx: &Ctx<'_>, r: Response, allow: &str) -> Response {
    if ctx.config.cors_origin.is_none() {
        return r;
    }
    with_cors(ctx, r)
        .header("Access-Control-Allow-Methods", allow.to_string())
        .header("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
        .header("Access-Control-Max-Age", "86400")
}

fn bad_name(ctx: &Ctx<'_>) -> Reply {
    json_error(ctx, 400, "channel names are 1-128 characters of A-Z a-z 0-9 . _ : @ -")
}

/// A limit of the hub: 503, the server's capacity, not the client's mistake.
pub fn hub_error(ctx: &Ctx<'_>, e: HubError) -> Reply {
    let r = Response::json(503, &serde_json::json!({"error": e.to_string()})).header("Retry-After", "10");
    with_cors(ctx, r).into()
}

pub fn json_error(ctx: &Ctx<'_>, status: u16, msg: &str) -> Reply {
    with_cors(ctx, Response::json(status, &serde_json::json!({"error": msg}))).into()
}
