//! One connection: its socket, buffers, transport state and deadline.
//!
//! ```text
//!            reply says close / error
//!   Open ───────────────────────────▶ CloseAfterFlush ──output drained──▶ Lingering ──EOF or 2 s──▶ freed
//!     │  peer EOF, nothing left to answer                                     ▲
//!     └───────────────────────────────────────────────────────────────── freed│
//! ```
//!
//! Lingering (after `shutdown(SHUT_WR)`, reading and discarding until the peer closes) is what
//! lets a client read our 413 or 400 even though it is still sending: closing a socket with
//! unread input makes the kernel send RST, which can destroy the response in flight.

use std::fs::File;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use thin_vec::ThinVec;

use super::outbuf::OutBuf;
use super::stream::{LongPoll, Sse};
use super::ws::Ws;
use crate::hub::TopicKey;
use crate::app::ConnKind;
use crate::config::Config;
use crate::proto::http1::{response, DateCache, HeadLimits, Persist, ReaderLimits, RequestReader, Response};

/// How long a closing connection waits for the peer's FIN before it is dropped anyway.
pub const LINGER: Duration = Duration::from_secs(2);
/// How long a closing connection's last output may take to drain (a cut-off slow consumer
/// that still does not read is dropped after this).
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum Life {
    Open,
    /// Send what is queued, then linger and close. No more input is processed.
    CloseAfterFlush,
    /// Our side is shut down; input is read and discarded until EOF or the deadline.
    Lingering { until: Instant },
}

/// A file being streamed as a response body.
#[derive(Debug)]
pub struct FileSend {
    pub file: File,
    pub left: u64,
}

/// The HTTP/1.1 request/response state of a connection.
#[derive(Debug)]
pub struct Http {
    pub reader: RequestReader,
    /// When the head now being received began to arrive (or when the connection opened,
    /// before its first request): the header timeout runs from here.
    pub head_started: Option<Instant>,
    /// A file being streamed as the response body (boxed: rare, and a connection's size is
    /// its idle cost).
    pub file: Option<Box<FileSend>>,
    /// Cluster: requests wait for Redis's answers (boxed: rare, and a connection's size is
    /// its idle cost).
    pub parked: Option<Box<Parked>>,
}

/// Answers not yet written, in request order. Pipelined publishes go to Redis together (their
/// answers come back in order: one command link, answered first in, first out), so a
/// publisher that pipelines keeps many messages in flight; an answer that is ready while an
/// earlier one still waits is kept until that one is written.
#[derive(Debug, Default)]
pub struct Parked {
    pub slots: std::collections::VecDeque<Slot>,
    /// A request that is not a publish (it might switch protocols, or stream a file): it is
    /// handled once everything before it is answered.
    pub held: Option<crate::proto::http1::Request>,
    /// A request asked to close after its answer: nothing after it is read.
    pub closing: bool,
}

#[derive(Debug)]
pub enum Slot {
    Waiting(Persist),
    Ready(Vec<u8>, Persist),
}

/// A response as bytes, for an answer that must wait for earlier ones ([`Parked`]).
pub fn render_response(resp: &Response, head_only: bool, persist: Persist, date: &DateCache) -> Vec<u8> {
    let mut bytes = Vec::new();
    let has_body = response::status_has_body(resp.status);
    response::write_head(&mut bytes, resp.status, &resp.headers, has_body.then_some(resp.body.len() as u64), persist, date);
    if has_body && !head_only {
        bytes.extend_from_slice(resp.body.as_bytes());
    }
    bytes
}

/// How long a connection with requests parked on Redis is kept at least: well past the Redis
/// link's heartbeat plus reply timeout (1 + 5 s), after which every parked request has had
/// its answer or its 503.
pub const PARKED_WAIT: Duration = Duration::from_secs(30);

/// Pipelined publishes one connection may have waiting on Redis.
pub const MAX_PARKED: usize = 64;

/// What a connection is speaking.
#[derive(Debug)]
pub enum Transport {
    Http(Http),
    WebSocket(Ws),
    Sse(Sse),
    LongPoll(LongPoll),
    /// A polling GET held for an Engine.IO session.
    EioPoll(super::eio::EioPoll),
}

/// The request reader's limits, from the configuration.
pub fn reader_limits(cfg: &Config) -> ReaderLimits {
    ReaderLimits {
        head: HeadLimits { max_head_bytes: cfg.max_head_bytes, max_headers: cfg.max_headers },
        max_body_bytes: cfg.max_body_bytes,
    }
}

/// What happens when a connection's deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Answer 408 and close.
    RequestTimeout,
    /// Close without a word (idle keep-alive, end of linger, dead peer).
    Close,
    /// Output made no progress for `--write-timeout`: close (counted in `/stats`).
    WriteTimeout,
    /// Send a WebSocket heartbeat ping.
    Ping,
    /// Send an SSE heartbeat comment.
    Heartbeat,
    /// Answer a held long-poll with 204.
    PollTimeout,
}

#[derive(Debug)]
pub struct Conn {
    pub sock: TcpStream,
    /// The slab key (mio token) of this connection.
    /// (u32, as the hub's sink slots are: it shares a word with the socket.)
    pub token: u32,
    /// Unique for the process's life; timers carry it so a reused slab slot is never confused.
    pub id: u64,
    /// Input not yet used by the transport (a partial head or frame). Empty, without
    /// capacity, whenever nothing is partial: idle connections hold no input buffer.
    pub inbuf: ThinVec<u8>,
    pub out: OutBuf,
    pub transport: Transport,
    pub life: Life,
    /// The socket may have unread input (readiness is a hint: set by READABLE events, cleared
    /// when a read returns EAGAIN, a short count, or EOF).
    pub read_ready: bool,
    /// `inbuf` may hold input the transport has not been offered yet (processing stopped at
    /// a limit, not for lack of bytes).
    pub stalled: bool,
    /// The peer shut down its sending side.
    pub peer_eof: bool,
    /// epoll said the peer's FIN has arrived (EPOLLRDHUP): read until EOF, because no later
    /// event will announce it.
    pub read_closed: bool,
    /// WRITABLE is registered (only while output is blocked).
    pub write_interest: bool,
    /// Queued on the loop's pending list (can make progress without a new event).
    pub pending: bool,
    /// Marked for closing at the end of this loop iteration.
    pub dead: bool,
    pub last_progress: Instant,
    /// The earliest timer-heap entry this connection has outstanding.
    pub timer_at: Option<Instant>,
    /// Hub subscriptions (topic and slot), removed when the connection closes.
    pub subs: ThinVec<(TopicKey, usize)>,
    /// Subscriptions this connection made that resume through Redis, counted 1 to 255 and
    /// round (which one an answer is for: a long-poll's successor must not take its
    /// predecessor's; one byte, as it fits in the struct's padding).
    pub requests: u8,
    /// The TLS session, on a `--tls-cert` listener (boxed: a plain connection pays a
    /// pointer; rustls's state is a few KiB).
    pub tls: Option<Box<super::wire::Tls>>,
}

impl Conn {
    pub fn new(sock: TcpStream, token: u32, id: u64, reader: RequestReader, now: Instant) -> Conn {
        Conn {
            sock,
            tls: None,
            token,
            id,
            inbuf: ThinVec::new(),
            out: OutBuf::default(),
            transport: Transport::Http(Http { reader, head_started: Some(now), file: None, parked: None }),
            life: Life::Open,
            read_ready: false,
            stalled: false,
            peer_eof: false,
            read_closed: false,
            write_interest: false,
            pending: false,
            dead: false,
            last_progress: now,
            timer_at: None,
            subs: ThinVec::new(),
            requests: 0,
        }
    }

    /// Puts the connection on the loop's pending list (once): it has work no event will
    /// announce (output just queued by someone else's turn, input left unread).
    pub fn wake(&mut self, pending: &mut std::collections::VecDeque<mio::Token>) {
        if !self.pending {
            self.pending = true;
            pending.push_back(mio::Token(self.token as usize));
        }
    }

    /// After a long-poll is answered the connection reads requests again.
    pub fn back_to_http(&mut self, cfg: &Config) {
        self.transport = Transport::Http(Http { reader: RequestReader::new(reader_limits(cfg)), head_started: None, file: None, parked: None });
    }

    pub fn kind(&self) -> ConnKind {
        match self.transport {
            Transport::Http(_) => ConnKind::Http,
            Transport::WebSocket(_) => ConnKind::WebSocket,
            Transport::Sse(_) => ConnKind::Sse,
            Transport::LongPoll(_) | Transport::EioPoll(_) => ConnKind::LongPoll,
        }
    }

    pub fn sending_file(&self) -> bool {
        matches!(&self.transport, Transport::Http(h) if h.file.is_some())
    }

    /// Whether the transport may be given more input now. False while closing, while a file
    /// is streaming (pipelined requests wait their turn) and while output is over its cap
    /// (back-pressure: a client that does not read stops being read).
    pub fn wants_input(&self, cfg: &Config) -> bool {
        // A held long-poll is read only to notice the client leaving; once a pipelined
        // request is buffered behind it, reading stops until the poll is answered.
        let poll_blocked = matches!(self.transport, Transport::LongPoll(_) | Transport::EioPoll(_)) && !self.inbuf.is_empty();
        let parked = matches!(&self.transport, Transport::Http(Http { parked: Some(p), .. }) if p.held.is_some() || p.closing || p.slots.len() >= MAX_PARKED);
        matches!(self.life, Life::Open) && !self.sending_file() && !poll_blocked && !parked && self.out.footprint() < cfg.pause_reading_bytes
    }

    /// A request waits for Redis's answer.
    pub fn is_parked(&self) -> bool {
        matches!(&self.transport, Transport::Http(h) if h.parked.is_some())
    }

    /// Nothing in flight: no partial request, no output, no file.
    pub fn is_idle_http(&self) -> bool {
        match &self.transport {
            Transport::Http(h) => {
                matches!(self.life, Life::Open)
                    && h.file.is_none()
                    && h.parked.is_none()
                    && !h.reader.in_body()
                    && self.inbuf.is_empty()
                    && self.out.is_empty()
            }
            Transport::WebSocket(_) | Transport::Sse(_) | Transport::LongPoll(_) | Transport::EioPoll(_) => false,
        }
    }

    /// When this connection next needs attention, and what to do then.
    pub fn deadline(&self, cfg: &Config) -> (Instant, Expiry) {
        if let Life::Lingering { until } = self.life {
            return (until, Expiry::Close);
        }
        if !matches!(self.life, Life::Open) {
            // Closing: what is left must drain soon (a slow consumer that was cut off).
            return (self.last_progress + CLOSE_FLUSH_TIMEOUT, Expiry::Close);
        }
        let due = self.transport_deadline(cfg);
        match self.out.stuck_since() {
            // A peer that stops reading our output for this long is gone (or as good as):
            // whatever the connection speaks, its slot and queue are not held forever.
            Some(since) if since + cfg.write_timeout < due.0 => (since + cfg.write_timeout, Expiry::WriteTimeout),
            _ => due,
        }
    }

    /// What the transport itself waits for next.
    fn transport_deadline(&self, cfg: &Config) -> (Instant, Expiry) {
        match &self.transport {
            Transport::Http(h) => {
                if h.parked.is_some() {
                    // Waiting on Redis, which answers (or is declared gone, and the request
                    // gets its 503) within the link's heartbeat and reply timeout: the idle
                    // and header timeouts must not close it first.
                    let wait = cfg.keepalive_timeout.max(PARKED_WAIT);
                    (self.last_progress + wait, Expiry::Close)
                } else if h.reader.in_body() {
                    (self.last_progress + cfg.body_timeout, Expiry::RequestTimeout)
                } else if let Some(t) = h.head_started {
                    (t + cfg.header_timeout, Expiry::RequestTimeout)
                } else {
                    (self.last_progress + cfg.keepalive_timeout, Expiry::Close)
                }
            }
            Transport::WebSocket(ws) if ws.ping_sent => (ws.last_rx + cfg.ws_ping_interval + cfg.ws_ping_timeout, Expiry::Close),
            Transport::WebSocket(ws) => (ws.last_rx + cfg.ws_ping_interval, Expiry::Ping),
            Transport::Sse(s) => (s.next_beat, Expiry::Heartbeat),
            Transport::LongPoll(lp) => (lp.until, Expiry::PollTimeout),
            Transport::EioPoll(p) => (p.until, Expiry::Close),
        }
    }

    /// Queues a response. `head_only` for HEAD requests: the headers say what GET would send.
    pub fn queue_response(&mut self, resp: Response, head_only: bool, persist: Persist, date: &DateCache) {
        let has_body = response::status_has_body(resp.status);
        let len = has_body.then_some(resp.body.len() as u64);
        self.out.with_tail(|v| response::write_head(v, resp.status, &resp.headers, len, persist, date));
        if has_body && !head_only {
            self.out.push_body(resp.body);
        }
        if persist == Persist::Close {
            self.life = Life::CloseAfterFlush;
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every open connection costs one slab entry, and an idle connection nothing else
    /// besides its timer entry (and a subscription's entries): this size is most of its
    /// memory. Issue 14's target is 273 bytes per idle WebSocket, timer entry (32) included,
    /// so the budget is 200 (232 with the timer, 244-254 measured by the kit's idle rows). A
    /// field that grows it past the budget should be boxed, or live in the boxed state of
    /// what it belongs to (the output queue, the assembler's partial message). (mio's debug
    /// builds add a selector id to every socket, 16 bytes with its alignment: not counted.)
    #[test]
    fn a_connection_fits_its_memory_budget() {
        let debug_extra = if std::mem::size_of::<mio::net::TcpStream>() > std::mem::size_of::<std::net::TcpStream>() { 16 } else { 0 };
        let size = std::mem::size_of::<super::Conn>() - debug_extra;
        assert!(size <= 200, "Conn is {size} bytes");
        assert!(std::mem::size_of::<super::Transport>() <= 96);
        assert_eq!(std::mem::size_of::<super::OutBuf>(), 8, "an idle connection's output is a null pointer");
    }
}
