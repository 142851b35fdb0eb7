//! Every limit and timeout of the server, each with its default and why.
//!
//! `main.rs` fills a [`Config`] from the command line; tests build one directly.
//! PROTOCOL.md lists the same limits as a client sees them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    /// Speaks HTTPS and WSS (with `--tls-cert`).
    pub tls: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen: one listener or several, each plain or TLS (`--listen` repeated).
    /// Default `127.0.0.1:8000`, plain: loopback, so a first run exposes nothing.
    pub listen: Vec<Listen>,
    /// `SO_REUSEPORT`: several processes listen on the same port and the kernel spreads
    /// connections over them — the way to use more than one core (joined by Redis, later).
    pub reuse_port: bool,
    /// This process's name among several (`/stats`, `X-Pushwire-Node` on `/healthz`).
    /// Default: random at start.
    pub node_id: String,
    /// `--redis redis://[user:password@]HOST:PORT[/db]`: join the nodes that use the same
    /// Redis (channels, users and history shared). `None`: standalone.
    pub redis: Option<crate::cluster::url::RedisUrl>,
    /// Serve files from this folder when no route matches (like express.static).
    pub static_dir: Option<PathBuf>,

    /// Bytes of one request head (request line + headers). Past it: 431. 16 KiB is what
    /// nginx's `large_client_header_buffers` allows for one header line and fits every
    /// real browser request, cookies included.
    pub max_head_bytes: usize,
    /// Number of request headers. Past it: 431. Browsers send fewer than 30.
    pub max_headers: usize,
    /// Request body bytes (Content-Length or the sum of chunks). Past it: 413. Publishing is
    /// the only use of bodies; 1 MiB is far above any push message.
    pub max_body_bytes: usize,
    /// A request head must arrive complete within this time of its first byte (or of the
    /// connection's opening): the slowloris guard. Past it: 408 and close.
    pub header_timeout: Duration,
    /// A request body must make progress at least this often. Past it: 408 and close.
    pub body_timeout: Duration,
    /// Output that makes no progress for this long (the peer stopped reading, or vanished
    /// without a FIN) closes the connection, whatever it speaks: a subscriber with a zero
    /// window on a quiet channel would otherwise hold its slot and its queue forever.
    pub write_timeout: Duration,
    /// An idle keep-alive connection (between requests) is closed silently after this.
    /// 75 s is nginx's default and longer than browsers keep idle sockets (Chrome: 60 s).
    pub keepalive_timeout: Duration,
    /// Cap on output waiting in user space for one connection. A subscriber whose unread
    /// pushes pass it is cut off (WebSocket close 1008): memory stays bounded, and it can
    /// catch up by reconnecting with its last message id.
    pub max_output_bytes: usize,
    /// While a connection has more unsent output than this, its input is not read: a client
    /// that pipelines requests (or echo messages) without reading the answers stops being
    /// read instead of growing our buffers. Kept well below `max_output_bytes`, so answers to
    /// a client's own requests never hit the cap.
    pub pause_reading_bytes: usize,
    /// On SIGINT/SIGTERM, in-flight responses get this long to finish before the rest close.
    pub drain_timeout: Duration,
    /// Log the /stats counters this often; zero turns it off.
    pub stats_interval: Duration,
    /// Requests (or WebSocket messages) handled for one connection per wake-up before the
    /// loop serves the others (fairness: a pipelining or flooding client cannot starve the
    /// rest, and what it publishes is delivered after at most this many messages).
    pub max_requests_per_wakeup: usize,
    /// Input bytes taken from one connection per wake-up, for the same reason: a client
    /// with a full socket buffer of large frames gets a turn, not the loop.
    pub max_input_per_wakeup: usize,
    /// Largest WebSocket message (all fragments together). Past it: close 1009, decided from
    /// the frame header before the payload is buffered.
    pub max_message_bytes: usize,
    /// `--tls-cert` and `--tls-key`: the listener speaks HTTPS and WSS.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// permessage-deflate (RFC 7692) is agreed with WebSocket clients that offer it.
    pub ws_compression: bool,
    /// Messages with fewer payload bytes than this go uncompressed even then: deflate gains
    /// nothing on them, and the browser would still pay an inflate.
    pub ws_compression_min: usize,
    /// A server ping goes to a WebSocket peer that has sent nothing for this long. 25 s stays
    /// under the 30-60 s idle timeouts of common proxies and load balancers.
    pub ws_ping_interval: Duration,
    /// A peer that sends nothing (not even the pong) this long after our ping is dropped.
    pub ws_ping_timeout: Duration,
    /// If not empty, a WebSocket handshake whose `Origin` is not listed gets 403
    /// (cross-site WebSocket hijacking). Requests without `Origin` (non-browsers) pass.
    pub allowed_origins: Vec<String>,
    /// Messages each channel keeps for replay (`Last-Event-ID`, `?since=`).
    pub history_len: usize,
    /// ...and all channels together at most this many bytes; past it the oldest messages
    /// go first. Counted as they really cost: each message's data, a fixed overhead per
    /// message (~250 bytes), every encoding once built, and each channel's name and entry.
    /// Bounds what publishers can make the server hold.
    pub history_bytes: usize,
    /// ...and for at most this long. A client away longer is told it missed some (`reset`).
    pub history_ttl: Duration,
    /// Channels that may exist at once (a channel exists while it has subscribers or
    /// history). Past it, subscribing to or publishing on a new channel gets 503. Bounds
    /// what clients can make the server hold in channel entries: 100,000 channels cost
    /// about 20 MB without history.
    pub max_channels: usize,
    /// The `retry:` an SSE stream starts with: how long a browser waits before reconnecting.
    pub sse_retry: Duration,
    /// A `:` comment on every SSE stream this often, so proxies and browsers keep it open.
    pub sse_heartbeat: Duration,
    /// A long-poll with nothing to deliver is answered 204 after this. 30 s stays under the
    /// 60 s idle timeouts of common proxies.
    pub poll_timeout: Duration,
    /// Text frames a WebSocket subscriber sends to `/channels/{name}` are published to it.
    pub ws_publish: bool,
    /// If set, publishing needs `Authorization: Bearer TOKEN` (HTTP) or the token in the
    /// WebSocket handshake (`Authorization` header or `?token=`).
    pub publish_token: Option<String>,
    /// If set, CORS headers with this origin (or `*`) on SSE, long-poll and publish responses.
    pub cors_origin: Option<String>,
    /// Maximum simultaneous connections; further accepts are closed at once. Bounded well
    /// below the fd limit so a flood cannot starve the listener of descriptors for files.
    pub max_connections: usize,

    /// Where Engine.IO / Socket.IO is served (`--sio-path`), as socket.io's `path`.
    pub sio_path: String,
    /// Engine.IO heartbeat: a ping this long after the open and after each pong, and the
    /// session closes if the pong takes longer than `sio_ping_timeout`. socket.io's
    /// defaults (25 s / 20 s), so its clients' reconnection timing is what they expect.
    pub sio_ping_interval: Duration,
    pub sio_ping_timeout: Duration,
    /// `maxPayload`: the largest POST body (413 past it) and WebSocket message a session
    /// takes. socket.io's `maxHttpBufferSize` default, 1 MB.
    pub sio_max_payload: usize,
    /// A session that has not connected to any namespace this long after its open is
    /// closed (socket.io's `connectTimeout`, 45 s).
    pub sio_connect_timeout: Duration,
    /// Namespaces clients may connect to: exact names or prefixes ending in `*`. Empty:
    /// any. Others get CONNECT_ERROR "Invalid namespace".
    pub sio_namespaces: Vec<String>,
    /// Where events clients emit are relayed (see `sio/server.rs`).
    pub sio_relay: crate::sio::server::Relay,
    /// The official browser bundle, served at `{sio_path}socket.io.js` (`serveClient`).
    pub sio_client_js: Option<PathBuf>,
    /// `--preset sio-conformance`: the test application protocol test suites expect
    /// (PROTOCOL.md): `/engine.io/` echoes, `/` answers `message` and `message-with-ack`,
    /// every CONNECT is followed by an `auth` event.
    pub sio_conformance: bool,
    /// `--sio-recovery`: connection-state recovery (socket.io 4.6) for this long after a
    /// socket's connection dropped. Off by default: CONNECT replies then hold only `sid`.
    pub sio_recovery: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![Listen { addr: SocketAddr::from(([127, 0, 0, 1], 8000)), tls: false }],
            reuse_port: false,
            node_id: crate::sio::server::random_node_id(),
            redis: None,
            static_dir: None,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(75),
            max_output_bytes: 4 * 1024 * 1024,
            pause_reading_bytes: 256 * 1024,
            drain_timeout: Duration::from_secs(5),
            stats_interval: Duration::from_secs(60),
            max_requests_per_wakeup: 64,
            max_input_per_wakeup: 256 * 1024,
            max_connections: 100_000,
            max_message_bytes: 16 * 1024 * 1024,
            ws_compression: true,
            tls_cert: None,
            tls_key: None,
            ws_compression_min: 256,
            ws_ping_interval: Duration::from_secs(25),
            ws_ping_timeout: Duration::from_secs(20),
            allowed_origins: Vec::new(),
            history_len: 100,
            history_ttl: Duration::from_secs(300),
            history_bytes: 64 * 1024 * 1024,
            max_channels: 100_000,
            sse_retry: Duration::from_millis(3000),
            sse_heartbeat: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(30),
            ws_publish: true,
            publish_token: None,
            cors_origin: None,
            sio_path: "/socket.io/".into(),
            sio_ping_interval: Duration::from_secs(25),
            sio_ping_timeout: Duration::from_secs(20),
            sio_max_payload: 1_000_000,
            sio_connect_timeout: Duration::from_secs(45),
            sio_namespaces: Vec::new(),
            sio_relay: crate::sio::server::Relay::Others,
            sio_client_js: None,
            sio_conformance: false,
            sio_recovery: None,
        }
    }
}
