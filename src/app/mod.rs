//! The application: routes, embedded pages, static files, counters.
//!
//! A route handler sees a complete [`Request`] and a [`Ctx`] and returns a [`Reply`]: what the
//! connection should do next. Handlers never touch sockets; the event loop carries out the
//! reply (write a response, stream a file, and in later layers switch the connection to a
//! WebSocket or an event stream).

mod router;
mod routes;
pub mod static_files;
pub mod stats;

use std::fs::File;
use std::time::Instant;

pub use router::{Handler, Match, Params, Router};
pub use stats::{ConnKind, Stats};

use crate::config::Config;
use crate::proto::http1::{Method, Request, Response};
use static_files::StaticDir;

/// What a route wants done with the connection.
#[derive(Debug)]
pub enum Reply {
    /// Send this response; the connection then reads the next request (or closes).
    Response(Response),
    /// Send `head` (with its Content-Length set to `len`), then stream `len` bytes of `file`
    /// (none for HEAD requests, where `file` is `None`).
    File { head: Response, file: Option<File>, len: u64 },
    /// Complete a WebSocket handshake with `response` (101) and carry on as `session`.
    WebSocket { response: Response, session: WsSession },
}

/// What a WebSocket connection does with the messages it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsSession {
    /// Send every text and binary message back unchanged (`/echo`).
    Echo,
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Response(r)
    }
}

/// What a handler may look at besides the request.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub stats: &'a Stats,
    pub static_dir: Option<&'a StaticDir>,
    pub now: Instant,
}

pub struct App {
    pub config: Config,
    pub stats: Stats,
    router: Router,
    static_dir: Option<StaticDir>,
}

impl App {
    pub fn new(config: Config, now: Instant) -> std::io::Result<App> {
        let static_dir = match &config.static_dir {
            Some(dir) => Some(StaticDir::new(dir)?),
            None => None,
        };
        Ok(App { router: routes::routes(), stats: Stats::new(now), static_dir, config })
    }

    /// Routes one request. Unknown paths fall through to the static folder, then 404.
    pub fn handle(&mut self, req: &Request, now: Instant) -> Reply {
        self.stats.requests += 1;
        let head = &req.head;
        let path = head.path();
        let found = self.router.lookup(head.method, path);
        let mut ctx = Ctx { config: &self.config, stats: &self.stats, static_dir: self.static_dir.as_ref(), now };
        match found {
            Match::Found(handler, params) => handler(&mut ctx, req, &params),
            Match::MethodNotAllowed(allow) if head.method == Method::Options => {
                Response::empty(204).header("Allow", allow).into()
            }
            Match::MethodNotAllowed(allow) => {
                Response::static_text(405, "method not allowed\n").header("Allow", allow).into()
            }
            Match::NotFound => {
                if matches!(head.method, Method::Get | Method::Head) {
                    if let Some(reply) = ctx.static_dir.and_then(|d| d.serve(req)) {
                        return reply;
                    }
                }
                Response::static_text(404, "not found\n").into()
            }
        }
    }
}
