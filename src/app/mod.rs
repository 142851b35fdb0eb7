//! The application: routes, embedded pages, static files, counters.
//!
//! A route handler sees a complete [`Request`] and a [`Ctx`] and returns a [`Reply`]: what the
//! connection should do next. Handlers never touch sockets; the event loop carries out the
//! reply (write a response, stream a file, and in later layers switch the connection to a
//! WebSocket or an event stream).

pub mod cluster;
pub mod control;
pub mod dashboard;
mod demos;
mod metrics;
mod pubsub;
mod router;
mod routes;
mod sio_http;
pub mod static_files;
pub mod stats;

use std::borrow::Cow;
use std::fs::File;
use std::rc::Rc;
use std::time::Instant;

pub use demos::TICK;
pub use router::{Handler, Match, Params, Router};
pub use pubsub::cors_headers_for as cors_headers;
pub use stats::{ConnKind, Stats};

use crate::config::Config;
use crate::cluster::node::Node;
use crate::hub::{Extra, Hub, HubLimits, Message, SinkRef, TopicKey};
use crate::sio::SioServer;
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
    /// Complete a WebSocket handshake (the 101 `accepted` answers) and carry on as `session`
    /// (a topic session first replays the history after `since`). `since` is not part of the
    /// session: it is used once, and the session is kept for the connection's life.
    WebSocket { accepted: crate::proto::ws::handshake::Accepted, session: WsSession, since: Option<u64> },
    /// Turn the connection into a subscriber of `topics`.
    Subscribe(Subscription),
    /// Hold this polling GET for the Engine.IO session until it has packets to send.
    EioHold(SinkRef),
    /// Cluster: the answer depends on Redis; the loop writes it when Redis answers
    /// ([`cluster::Then::Http`]). The connection reads nothing more meanwhile.
    Parked,
}

/// What a WebSocket connection does with the messages it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsSession {
    /// Send every text and binary message back unchanged (`/echo`).
    Echo,
    /// Subscribed to one channel or user; `publish`: frames it sends are published there.
    Topic { key: TopicKey, publish: bool },
    /// `/ws`: JSON control messages (subscribe, unsubscribe, publish).
    Control { publish: WsPublish },
    /// The transport of an Engine.IO session (`probe`: a WebSocket that must first
    /// complete the upgrade from polling).
    Eio { session: SinkRef, probe: bool },
    /// A second WebSocket for a session that has one: closed right after the handshake.
    EioRefused,
}

/// Whether a WebSocket may publish, and if not, why (what its `publish` op is told).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsPublish {
    Allowed,
    /// `--ws-publish=false`.
    Disabled,
    /// `--publish-token` is set and the handshake did not carry it.
    NeedsToken,
}

/// The event-stream transports of a subscription made by a plain HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Sse,
    LongPoll,
    /// Forever-iframe (`?transport=iframe`): an HTML document of script calls.
    Iframe,
}

/// A subscription made by an HTTP request (SSE or long-poll).
#[derive(Debug)]
pub struct Subscription {
    pub kind: StreamKind,
    pub topics: Vec<TopicKey>,
    /// Replay history after this id first (`Last-Event-ID`, `?lastEventId=`, `?since=`).
    pub since: Option<u64>,
    /// Extra response headers (CORS).
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// SSE: an event (name, data) sent first, before any replay (the classic chat's
    /// `data: Connected`).
    pub greeting: Option<(Option<&'static str>, Vec<u8>)>,
    /// SSE: the `retry:` to start with.
    pub retry_ms: u64,
    /// Forever-iframe: the parent page's function each message is handed to.
    pub callback: Option<String>,
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
    pub hub: &'a mut Hub,
    /// Messages published while handling this request; the loop delivers them.
    pub outbox: &'a mut Vec<Rc<Message>>,
    pub now: Instant,
    /// Microseconds since the Unix epoch (message ids).
    pub wall_us: u64,
    /// Set by a route that needs the once-a-second ticker.
    pub ticker_wanted: &'a mut bool,
    /// The Engine.IO sessions.
    pub sio: &'a mut SioServer,
    /// `--sio-client-js`, read at start.
    pub sio_client_js: Option<&'a Rc<[u8]>>,
    /// The Redis side, when the node is part of a cluster.
    pub cluster: Option<&'a mut Node<cluster::Then>>,
    /// The connection the request came on.
    pub conn: SinkRef,
}

impl Ctx<'_> {
    /// Publishes with nobody waiting for the outcome (standalone: recorded and queued for
    /// delivery; cluster: sent to Redis).
    pub fn publish(&mut self, key: &TopicKey, event: Option<&str>, data: &[u8]) -> Result<cluster::Published, cluster::PublishError> {
        self.publisher().publish(key, event, data.into(), Extra::default(), cluster::Then::Nothing)
    }
}

pub struct App {
    pub config: Config,
    pub stats: Stats,
    pub hub: Hub,
    /// Published, not yet delivered (the loop drains it after each handler).
    pub outbox: Vec<Rc<Message>>,
    /// The ticker should run; the loop arms its timer ([`App::tick`]) and clears this.
    pub ticker_wanted: bool,
    pub sio: SioServer,
    /// The Redis side (`--redis`).
    pub cluster: Option<Node<cluster::Then>>,
    /// Cluster: subscribers that resume from an id, for the loop to hand to Redis once the
    /// subscriptions they made are followed (`(sink, request, topics, since)`; `request`:
    /// which long-poll of the connection asked, 0 for any other subscriber).
    pub resumes: Vec<(SinkRef, u32, Vec<TopicKey>, u64)>,
    sio_client_js: Option<Rc<[u8]>>,
    dashboard: dashboard::Dashboard,
    router: Router,
    static_dir: Option<StaticDir>,
}

impl App {
    pub fn new(config: Config, now: Instant, wall_us: u64) -> std::io::Result<App> {
        let static_dir = match &config.static_dir {
            Some(dir) => Some(StaticDir::new(dir)?),
            None => None,
        };
        let limits = HubLimits {
            history_len: config.history_len,
            history_ttl: config.history_ttl,
            history_bytes: config.history_bytes,
            max_channels: config.max_channels,
        };
        let mut hub = Hub::new(limits, wall_us);
        crate::hub::set_compression_min(config.ws_compression_min);
        let cluster = config.redis.clone().map(|url| {
            hub.set_clustered();
            let ttl_ms = config.history_ttl.as_millis().min(u64::MAX as u128) as u64;
            Node::new(url, config.node_id.clone(), config.history_len, ttl_ms, now, wall_us)
        });
        let sio_client_js = match &config.sio_client_js {
            Some(f) => Some(Rc::from(std::fs::read(f).map_err(|e| std::io::Error::new(e.kind(), format!("--sio-client-js {}: {e}", f.display())))?)),
            None => None,
        };
        Ok(App {
            sio: SioServer::new(&config),
            cluster,
            resumes: Vec::new(),
            sio_client_js,
            dashboard: Default::default(),
            router: routes::routes(),
            stats: Stats::new(now),
            hub,
            outbox: Vec::new(),
            ticker_wanted: false,
            static_dir,
            config,
        })
    }

    /// Publishes from outside a route handler (WebSocket frames, timers); `then`: what to do
    /// when Redis answers, in a cluster.
    pub fn publish(&mut self, key: &TopicKey, event: Option<&str>, data: &[u8], now: Instant, wall_us: u64, then: cluster::Then) -> Result<cluster::Published, cluster::PublishError> {
        self.publisher(now, wall_us).publish(key, event, data.into(), Extra::default(), then)
    }

    pub fn publisher(&mut self, now: Instant, wall_us: u64) -> cluster::Publisher<'_> {
        cluster::Publisher { hub: &mut self.hub, outbox: &mut self.outbox, cluster: self.cluster.as_mut(), now, wall_us }
    }

    /// The ticker's timer fired: returns when it should fire next (`None`: nobody listens).
    /// The once-a-second jobs: the ticker demo's clock and the dashboard's figures.
    pub fn tick(&mut self, now: Instant, wall_us: u64) -> Option<Instant> {
        let mut dash = std::mem::take(&mut self.dashboard);
        let mut ctx = self.ctx(now, wall_us, SinkRef::conn(u32::MAX, 0));
        let clock = demos::tick(&mut ctx);
        let figures = dashboard::tick(&mut dash, &mut ctx);
        self.dashboard = dash;
        (clock || figures).then(|| now + demos::TICK)
    }

    fn ctx(&mut self, now: Instant, wall_us: u64, conn: SinkRef) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            stats: &self.stats,
            static_dir: self.static_dir.as_ref(),
            hub: &mut self.hub,
            outbox: &mut self.outbox,
            now,
            wall_us,
            ticker_wanted: &mut self.ticker_wanted,
            sio: &mut self.sio,
            sio_client_js: self.sio_client_js.as_ref(),
            cluster: self.cluster.as_mut(),
            conn,
        }
    }

    /// Routes one request. Unknown paths fall through to the static folder, then 404.
    pub fn handle(&mut self, req: &Request, now: Instant, wall_us: u64, conn: SinkRef) -> Reply {
        self.stats.requests += 1;
        let head = &req.head;
        let path = head.path();
        // Engine.IO's path is configurable, so it is matched here rather than registered.
        let sio_path = self.config.sio_path.trim_end_matches('/');
        if path.trim_end_matches('/') == sio_path {
            return sio_http::handle(&mut self.ctx(now, wall_us, conn), req, false);
        }
        if self.config.sio_conformance && path.trim_end_matches('/') == "/engine.io" {
            return sio_http::handle(&mut self.ctx(now, wall_us, conn), req, true);
        }
        if path.strip_prefix(sio_path) == Some("/socket.io.js") && matches!(head.method, Method::Get | Method::Head) {
            return sio_http::client_js(&self.ctx(now, wall_us, conn));
        }
        let found = self.router.lookup(head.method, path);
        let mut ctx = self.ctx(now, wall_us, conn);
        match found {
            Match::Found(handler, params) => handler(&mut ctx, req, &params),
            Match::MethodNotAllowed(allow) if head.method == Method::Options => {
                pubsub::preflight(&ctx, Response::empty(204).header("Allow", allow.clone()), &allow).into()
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
