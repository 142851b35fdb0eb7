//! The classic real-time examples, with the exact routes and payloads of the Node versions
//! people learn from, each a thin mapping onto the hub: the chat room is the `chat` channel,
//! the ticker is the `clock` channel fed once a second while anyone listens, point-to-point
//! messages go to users. The pages that use them are in `pages/`.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::cluster::{self, Answer, Published};
use super::pubsub::{self, resume_id, ToUser};
use super::{Ctx, Params, Reply, StreamKind, Subscription, WsSession};
use crate::hub::{valid_user_name, TopicKey};
use crate::proto::http1::{Body, Method, Request, Response};

/// The chat room's channel.
pub const CHAT: &str = "chat";
/// The ticker's channel.
pub const CLOCK: &str = "clock";

/// `GET /chat`: the chat room as an event stream, starting with `data: Connected`. A browser
/// that reconnects with `Last-Event-ID` first gets what it missed.
pub fn chat_stream(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    let since = match resume_id(req) {
        Ok(s) => s,
        Err(()) => return pubsub::json_error(ctx, 400, "invalid Last-Event-ID"),
    };
    Reply::Subscribe(Subscription {
        kind: StreamKind::Sse,
        topics: vec![TopicKey::channel(CHAT)],
        since,
        headers: Vec::new(),
        greeting: Some((None, b"Connected".to_vec())),
        retry_ms: ctx.config.sse_retry.as_millis() as u64,
        callback: None,
    })
}

/// `POST /chat`: the body (the classic client sends JSON `{"name":..,"msg":..}` as
/// text/plain) goes to every listener as the event's data.
pub fn chat_post(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    if let Some(denied) = pubsub::check_token(ctx, req) {
        return denied;
    }
    match ctx.publish_for(&TopicKey::channel(CHAT), None, req.body[..].into(), Default::default(), Answer::Chat) {
        Ok(Published::Local(_)) => Response::empty(204).into(),
        Ok(Published::Sent) => Reply::Parked,
        Err(e) => cluster::unavailable(ctx, e),
    }
}

/// `GET /stream`: `retry: 10000`, an event `connecttime` with the connect time, then the
/// time every second (the `clock` channel). CORS open, as in the classic example.
pub fn ticker_stream(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    // A HEAD gets the stream's head and subscribes nothing: no listener to tick for.
    *ctx.ticker_wanted = req.head.method != Method::Head;
    Reply::Subscribe(Subscription {
        kind: StreamKind::Sse,
        topics: vec![TopicKey::channel(CLOCK)],
        since: None,
        headers: vec![("Access-Control-Allow-Origin", "*".into())],
        greeting: Some((Some("connecttime"), time_text(ctx.wall_us).into_bytes())),
        retry_ms: 10_000,
        callback: None,
    })
}

/// One tick of the ticker: publishes the time if anyone listens. Returns whether to keep
/// ticking (the timer stops when the last listener goes away).
pub fn tick(ctx: &mut Ctx<'_>) -> bool {
    let key = TopicKey::channel(CLOCK);
    if ctx.hub.subscriber_count(&key) == 0 {
        return false;
    }
    let now = time_text(ctx.wall_us);
    // The channel has listeners, so it exists: publishing cannot hit the channel cap. Each
    // node ticks for its own listeners, also in a cluster (through Redis every listener
    // would get one tick per node).
    match ctx.hub.publish(&key, None, now.as_bytes().into(), ctx.now, ctx.wall_us) {
        Ok(msg) => {
            ctx.outbox.push(msg);
            true
        }
        Err(_) => false,
    }
}

/// How often the ticker ticks.
pub const TICK: Duration = Duration::from_secs(1);

/// The time as browsers print `new Date().toUTCString()`.
fn time_text(wall_us: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_micros(wall_us))
}

/// `GET /ws/{name}`: a WebSocket as user `{name}`; point-to-point messages arrive on it.
pub fn user_socket(ctx: &mut Ctx<'_>, req: &Request, p: &Params) -> Reply {
    let name = p.get("name").unwrap_or("");
    if !valid_user_name(name) {
        return pubsub::json_error(ctx, 400, "invalid user name");
    }
    pubsub::websocket(ctx, req, WsSession::Topic { key: TopicKey::user(name), publish: false }, None)
}

/// `POST /rest/message` `{"from":..,"to":..,"content":..}`: sends `{"from":..,"content":..}`
/// to every connection of `to`.
pub fn rest_message(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    let fail = |status: u16, msg: &str| {
        Response::json(status, &json!({"succeed": false, "msg": msg})).into()
    };
    if let Some(denied) = pubsub::token_denied(ctx, req, &json!({"succeed": false, "msg": pubsub::TOKEN_NEEDED})) {
        return denied;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return fail(400, "body must be JSON {\"from\":..,\"to\":..,\"content\":..}");
    };
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let (Some(from), Some(to), Some(content)) = (field("from"), field("to"), field("content")) else {
        return fail(400, "from, to and content are required strings");
    };
    if !valid_user_name(to) {
        return fail(400, "invalid recipient name");
    }
    let payload = serde_json::to_vec(&json!({"from": from, "content": content})).unwrap_or_default();
    match pubsub::send_to_user(ctx, to, None, &payload, Answer::RestMessage) {
        ToUser::Offline => fail(200, "recipient offline"),
        ToUser::Delivered(_) => Response::json(200, &json!({"succeed": true})).into(),
        ToUser::Parked => Reply::Parked,
        ToUser::Failed(e) => cluster::unavailable(ctx, e),
    }
}

/// An embedded page.
pub fn page(html: &'static str) -> Reply {
    Response::new(200, "text/html; charset=utf-8", Body::Static(html.as_bytes()))
        .header("Cache-Control", "no-cache")
        .into()
}
