//! The one place where routes are registered. PROTOCOL.md documents each of them.

use super::{Ctx, Params, Reply, Router, WsSession};
use crate::proto::http1::{Body, Request, Response};
use crate::proto::ws::handshake;

const INDEX_HTML: &str = include_str!("pages/index.html");

pub fn routes() -> Router {
    let mut r = Router::default();
    r.get("/", index);
    r.get("/healthz", healthz);
    r.get("/stats", stats);
    r.get("/echo", echo);
    r
}

/// `GET /`: the built-in index page, unless `--static DIR` has an `index.html`.
fn index(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    if let Some(reply) = ctx.static_dir.and_then(|d| d.serve(req)) {
        return reply;
    }
    Response::new(200, "text/html; charset=utf-8", Body::Static(INDEX_HTML.as_bytes())).into()
}

/// `GET /healthz`: liveness for load balancers and load tests.
fn healthz(_: &mut Ctx<'_>, _: &Request, _: &Params) -> Reply {
    Response::new(200, "text/plain; charset=utf-8", Body::Static(b"ok\n")).into()
}

/// `GET /stats`: the counters as JSON.
fn stats(ctx: &mut Ctx<'_>, _: &Request, _: &Params) -> Reply {
    Response::json(200, &ctx.stats.to_json(ctx.now)).header("Cache-Control", "no-store").into()
}

/// `GET /echo`: a WebSocket that sends every text and binary message back unchanged.
fn echo(ctx: &mut Ctx<'_>, req: &Request, _: &Params) -> Reply {
    websocket(ctx, req, &[], WsSession::Echo)
}

/// Completes a WebSocket handshake for a route, or answers why not.
fn websocket(ctx: &mut Ctx<'_>, req: &Request, protocols: &[&'static str], session: WsSession) -> Reply {
    match handshake::accept(&req.head, protocols, &ctx.config.allowed_origins) {
        Ok(accepted) => Reply::WebSocket { response: accepted.response(), session },
        Err(e) => e.response().into(),
    }
}
