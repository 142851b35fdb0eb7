//! The one place where routes are registered. PROTOCOL.md documents each of them.

use super::{demos, pubsub};
use super::{Ctx, Params, Reply, Router, WsSession};
use crate::proto::http1::{Body, Request, Response};

const INDEX_HTML: &str = include_str!("pages/index.html");

pub fn routes() -> Router {
    let mut r = Router::default();
    r.get("/", index);
    r.get("/healthz", healthz);
    r.get("/stats", stats);
    r.get("/metrics", super::metrics::metrics);
    r.get("/echo", echo);
    r.get("/channels/{name}", pubsub::channel_subscribe);
    r.post("/channels/{name}", pubsub::channel_publish);
    r.get("/users/{name}", pubsub::user_subscribe);
    r.post("/users/{name}", pubsub::user_publish);
    r.get("/subscribe", pubsub::multi_subscribe);
    r.get("/ws", pubsub::control_socket);
    // Socket.IO: Engine.IO itself is at --sio-path (matched in App::handle, the path is
    // configurable); the server-side emit API is here.
    r.post("/socket.io-api/emit", super::sio_http::emit_api);
    // The classic examples and their pages.
    r.get("/chat", demos::chat_stream);
    r.post("/chat", demos::chat_post);
    r.get("/stream", demos::ticker_stream);
    r.get("/ws/{name}", demos::user_socket);
    r.post("/rest/message", demos::rest_message);
    r.get("/chat.html", |_, _, _| demos::page(include_str!("pages/chat.html")));
    r.get("/p2p.html", |_, _, _| demos::page(include_str!("pages/p2p.html")));
    r.get("/echo.html", |_, _, _| demos::page(include_str!("pages/echo.html")));
    r.get("/ticker.html", |_, _, _| demos::page(include_str!("pages/ticker.html")));
    r.get("/sio-chat.html", |_, _, _| demos::page(include_str!("pages/sio-chat.html")));
    r.get("/dashboard", |_, _, _| demos::page(include_str!("pages/dashboard.html")));
    r.get("/iframe.html", |_, _, _| demos::page(include_str!("pages/iframe.html")));
    r.get("/pushwire.css", |_, _, _| {
        Response::new(200, "text/css; charset=utf-8", Body::Static(include_str!("pages/pushwire.css").as_bytes()))
            .header("Cache-Control", "no-cache")
            .into()
    });
    r
}

/// `GET /`: the built-in index page, unless `--static DIR` has an `index.html`.
fn index(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    if let Some(reply) = ctx.static_dir.and_then(|d| d.serve(req)) {
        return reply;
    }
    Response::new(200, "text/html; charset=utf-8", Body::Static(INDEX_HTML.as_bytes())).into()
}

/// `GET /healthz`: liveness for load balancers and load tests. In a cluster, `503` with the
/// reason while Redis is unreachable: publishes fail here, so a balancer should send them
/// elsewhere (subscribers stay connected and are filled in once Redis is back).
fn healthz(ctx: &mut Ctx<'_>, _: &Request, _: &Params) -> Reply {
    let node = ctx.config.node_id.clone();
    if let Some(why) = ctx.cluster.as_ref().and_then(|n| n.unavailable()) {
        return Response::text(503, format!("unavailable: {why}\n")).header("X-Pushwire-Node", node).header("Retry-After", "1").into();
    }
    Response::new(200, "text/plain; charset=utf-8", Body::Static(b"ok\n")).header("X-Pushwire-Node", node).into()
}

/// `GET /stats`: the counters as JSON.
fn stats(ctx: &mut Ctx<'_>, _: &Request, _: &Params) -> Reply {
    let mut v = ctx.stats.to_json(ctx.now, ctx.hub);
    v["node_id"] = ctx.config.node_id.clone().into();
    v["socketio"] = serde_json::json!({"sessions": ctx.sio.sessions.len(), "sockets": ctx.sio.socket_count()});
    if let Some(node) = ctx.cluster.as_ref() {
        let (live, pending) = node.subscription_counts();
        v["cluster"] = serde_json::json!({
            "redis": ctx.config.redis.as_ref().map(|u| u.to_string()),
            "up": node.unavailable().is_none(),
            "reason": node.unavailable(),
            "subscriptions": live,
            "subscriptions_pending": pending,
            "resumes_waiting": node.resumes_waiting(),
        });
    }
    Response::json(200, &v).header("Cache-Control", "no-store").into()
}

/// `GET /echo`: a WebSocket that sends every text and binary message back unchanged.
fn echo(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    pubsub::websocket(ctx, req, WsSession::Echo, None)
}
