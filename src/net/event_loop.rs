//! The event loop: one thread, one mio `Poll`, every connection in a `Slab`.
//!
//! Each iteration: sleep until an event or the next deadline (never a fixed short timeout,
//! so an idle server uses no CPU), dispatch events, re-run connections that can progress
//! without an event (the pending list), fire due timers, and only then free the connections
//! marked dead, so no slot is reused while this iteration still holds its token.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::conn::{reader_limits, Conn, Expiry, Life, Transport};
use super::drive::{drive_conn, update_interest};
use super::stream::{self, Pushed};
use super::http::{self, Env};
use super::{eio, ws};
use super::timers::{TimerKey, Timers};
use crate::app::App;
use crate::config::Config;
use crate::error::HttpError;
use crate::hub::{Run, SinkKind, SinkRef, TopicKey};
use crate::sio::server::Route;
use crate::sio::session::CloseReason;
use crate::proto::http1::{DateCache, RequestReader};

/// Listener `i` (`--listen`, in order) has token `LISTENERS - i`: far above any slab key.
const LISTENERS: usize = usize::MAX - 16;
/// Most `--listen` options.
pub const MAX_LISTENERS: usize = 8;

const SIGNALS: Token = Token(usize::MAX - 2);

fn listener_index(t: Token) -> Option<usize> {
    (t.0 <= LISTENERS && t.0 > LISTENERS - MAX_LISTENERS).then(|| LISTENERS - t.0)
}

/// A listening socket and what its connections speak.
pub(super) struct Listener {
    sock: TcpListener,
    addr: SocketAddr,
    tls: bool,
}

/// Size of the shared read buffer. Every read lands here first; a connection copies out only
/// what it cannot use yet. 64 KiB lets one read take a burst of pipelined requests.
const SCRATCH: usize = 64 * 1024;
/// Connections taken from the pending list per turn of the loop. Small, so that input (new
/// publishes) is read between every few writes: a fan-out to 1,000 subscribers spans many
/// turns, and messages published meanwhile join the output of subscribers not yet written,
/// which then take several messages in one write. Fewer, larger writes are cheaper for the
/// server and for every subscriber's kernel and client (measured with run batching, 1,000
/// subscribers, 3 paired runs: 256 → 16 took WebSocket from 12.5M to 15.0M deliveries/s and
/// SSE from 8.0M to 10.8M; p99 at 100 msgs/s unchanged). A poll with nothing ready is cheap
/// next to 16 socket writes.
const PENDING_PER_TURN: usize = 16;
/// How often history expiry runs while any channel keeps history.
const HUB_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);
/// After an accept fails for lack of descriptors, wait this long before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

pub struct Server {
    pub(super) poll: Poll,
    /// Emptied when the drain begins.
    pub(super) listeners: Vec<Listener>,
    /// The first listener's address.
    pub(super) local_addr: SocketAddr,
    pub(super) signals: Option<Signals>,
    pub(super) conns: Slab<Conn>,
    pub(super) timers: Timers,
    pub(super) app: App,
    pub(super) scratch: Box<[u8]>,
    pub(super) date: DateCache,
    pub(super) now: Instant,
    /// The wall clock (µs since the epoch) read with `now`, once per turn: message ids are
    /// made from it (the hub keeps them increasing), and reading it per connection event
    /// cost a clock call per echoed message.
    pub(super) wall_us: u64,
    pub(super) next_id: u64,
    /// Connections that can progress without waiting for an event, first come first served.
    pub(super) pending: VecDeque<Token>,
    /// Connections to free at the end of the iteration.
    pub(super) to_close: Vec<Token>,
    /// Set once shutdown began: the instant the drain time ends.
    pub(super) draining: Option<Instant>,
    /// A hub sweep timer is scheduled.
    pub(super) sweep_armed: bool,
    /// The app's ticker timer is scheduled.
    pub(super) tick_armed: bool,
    /// Accepts are paused for lack of descriptors (logged once per shortage).
    pub(super) accepts_starved: bool,
    /// A second signal came during the drain: stop now.
    pub(super) exit_now: bool,
    /// The Redis links' sockets (`--redis`).
    pub(super) redis: super::redis::RedisIo,
    /// `--tls-cert`: the listener speaks TLS; new connections take this configuration (a
    /// SIGHUP replaces it; open connections keep the one they started with).
    pub(super) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Microseconds since the Unix epoch: message ids.
pub(super) fn wall_micros() -> u64 {
    micros_since_epoch(SystemTime::now())
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Server {
    /// Binds the listener. Signal handling is installed by [`Server::handle_signals`], so
    /// tests can run several servers in one process.
    pub fn bind(config: Config) -> io::Result<Server> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::load(cert, key).map_err(io::Error::other)?),
            _ => None,
        };
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (i, l) in config.listen.iter().enumerate().take(MAX_LISTENERS) {
            let mut sock = listen(l.addr, config.reuse_port).map_err(|e| io::Error::new(e.kind(), format!("listen on {}: {e}", l.addr)))?;
            poll.registry().register(&mut sock, Token(LISTENERS - i), Interest::READABLE)?;
            listeners.push(Listener { addr: sock.local_addr()?, sock, tls: l.tls });
        }
        let local_addr = listeners[0].addr;
        let now = Instant::now();
        let mut timers = Timers::default();
        if !config.stats_interval.is_zero() {
            timers.add(now + config.stats_interval, TimerKey::StatsLog);
        }
        let app = App::new(config, now, wall_micros())?;
        Ok(Server {
            poll,
            listeners,
            local_addr,
            signals: None,
            conns: Slab::new(),
            timers,
            app,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            date: DateCache::new(SystemTime::now()),
            now,
            wall_us: wall_micros(),
            next_id: 0,
            pending: VecDeque::new(),
            to_close: Vec::new(),
            draining: None,
            sweep_armed: false,
            tick_armed: false,
            accepts_starved: false,
            exit_now: false,
            redis: Default::default(),
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every listener's address and whether it speaks TLS.
    pub fn listening(&self) -> Vec<(SocketAddr, bool)> {
        self.listeners.iter().map(|l| (l.addr, l.tls)).collect()
    }

    /// SIGINT and SIGTERM start a graceful shutdown; SIGHUP reloads the TLS certificate.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs until a graceful shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.redis_service(Vec::new());
        loop {
            let timeout = if !self.pending.is_empty() {
                Some(std::time::Duration::ZERO)
            } else {
                self.timers.next_deadline().map(|d| d.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            let wall = SystemTime::now();
            self.wall_us = micros_since_epoch(wall);
            self.date.update(wall);

            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signal(),
                    super::redis::REDIS_CMD | super::redis::REDIS_SUB => self.on_redis_event(event.token()),
                    token => match listener_index(token) {
                        Some(i) => self.accept(i),
                        None => self.on_conn_event(token, event),
                    },
                }
            }
            if self.exit_now {
                log::info!("second signal: exiting now ({} connections open)", self.conns.len());
                return Ok(());
            }
            // At most PENDING_PER_TURN of them per turn, then back to poll: a fan-out to
            // 10,000 subscribers does not hold up everyone else for the length of 10,000
            // writes, and messages published meanwhile join the output of subscribers not
            // yet written, which then take several messages in one write.
            for _ in 0..PENDING_PER_TURN {
                let Some(token) = self.pending.pop_front() else { break };
                if let Some(conn) = self.conns.get_mut(token.0) {
                    conn.pending = false;
                    self.drive(token);
                }
            }
            self.fire_timers();
            for token in std::mem::take(&mut self.to_close) {
                self.free(token);
            }
            // Freed connections may have been sessions' transports, or a topic's last
            // subscribers (a cluster stops following it).
            self.flush_sessions();
            self.redis_service(Vec::new());
            if let Some(end) = self.draining {
                if self.conns.is_empty() || self.now >= end {
                    log::info!("shutdown complete ({} connections closed at the deadline)", self.conns.len());
                    return Ok(());
                }
            }
        }
    }

    /// Accepts until the backlog is empty (edge-triggered: one event may stand for many).
    fn accept(&mut self, i: usize) {
        loop {
            let Some(listener) = self.listeners.get(i) else { return };
            let tls = listener.tls;
            match listener.sock.accept() {
                Ok((mut sock, _peer)) => {
                    if self.accepts_starved {
                        self.accepts_starved = false;
                        log::info!("accepting connections again");
                    }
                    if self.conns.len() >= self.app.config.max_connections {
                        // Dropping closes it: over capacity, refusing is kinder than stalling.
                        continue;
                    }
                    // Push messages are small and latency-bound: never wait for Nagle.
                    let _ = sock.set_nodelay(true);
                    set_keepalive(&sock);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if let Err(e) = self.poll.registry().register(&mut sock, token, Interest::READABLE) {
                        log::warn!("register: {e}");
                        continue;
                    }
                    self.next_id += 1;
                    let limits = reader_limits(&self.app.config);
                    let mut conn = Conn::new(sock, token.0 as u32, self.next_id, RequestReader::new(limits), self.now);
                    if let Some(cfg) = self.tls.as_ref().filter(|_| tls) {
                        match rustls::ServerConnection::new(cfg.clone()) {
                            Ok(mut tls) => {
                                tls.set_buffer_limit(Some(super::wire::TLS_BUFFER));
                                conn.tls = Some(Box::new(super::wire::Tls { conn: tls, closing: false }));
                            }
                            Err(e) => {
                                log::warn!("TLS session: {e}");
                                let _ = self.poll.registry().deregister(&mut conn.sock);
                                continue;
                            }
                        }
                    }
                    self.app.stats.accepted += 1;
                    self.app.stats.conn_opened(conn.kind());
                    entry.insert(conn);
                    self.arm_timer(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    // EMFILE/ENFILE: the pending connection stays in the backlog and the
                    // listener stays readable. Retrying now would spin; wait a little while
                    // the existing connections keep being served.
                    // Said once per shortage, not every 100 ms.
                    if !self.accepts_starved {
                        self.accepts_starved = true;
                        log::warn!("accept: {e}; pausing accepts, retrying every {ACCEPT_BACKOFF:?}");
                    }
                    for l in &mut self.listeners {
                        let _ = self.poll.registry().deregister(&mut l.sock);
                    }
                    self.timers.add(self.now + ACCEPT_BACKOFF, TimerKey::AcceptRetry);
                    return;
                }
                // ECONNABORTED and the like concern one connection only.
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    /// The first SIGINT/SIGTERM starts the drain; another one during it ends the process at
    /// once (an operator who presses Ctrl-C twice means it). The signal pipe reports each
    /// signal number once per read: two SIGINTs that both land before the loop reads them
    /// count as one (the loop reads them within a turn, long before a second key press).
    fn on_signal(&mut self) {
        let Some(signals) = &mut self.signals else { return };
        let (mut n, mut hup) = (0, false);
        for s in signals.pending() {
            match s {
                SIGHUP => hup = true,
                _ => n += 1,
            }
        }
        if hup {
            self.reload_tls();
        }
        if n == 0 {
            return;
        }
        if self.draining.is_none() {
            self.begin_drain();
            if n > 1 {
                self.exit_now = true;
            }
        } else {
            self.exit_now = true;
        }
    }

    /// SIGHUP: reads `--tls-cert` and `--tls-key` again. A renewed certificate serves the
    /// next handshakes; open connections keep theirs. A file that does not load leaves the
    /// old configuration in place (said in the log): a bad renewal never takes TLS down.
    fn reload_tls(&mut self) {
        let (Some(cert), Some(key)) = (&self.app.config.tls_cert, &self.app.config.tls_key) else {
            log::info!("SIGHUP: no --tls-cert to reload");
            return;
        };
        match crate::tls::load(cert, key) {
            Ok(cfg) => {
                self.tls = Some(cfg);
                log::info!("SIGHUP: TLS certificate reloaded from {}", cert.display());
            }
            Err(e) => log::error!("SIGHUP: keeping the current certificate: {e}"),
        }
    }

    /// Graceful shutdown: stop accepting, close idle connections, let the others finish
    /// what they are doing (their responses now say `Connection: close`).
    pub fn begin_drain(&mut self) {
        let end = self.now + self.app.config.drain_timeout;
        log::info!("shutting down: draining {} connections (at most {:?})", self.conns.len(), self.app.config.drain_timeout);
        self.draining = Some(end);
        for mut l in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
        self.timers.add(end, TimerKey::DrainEnd);
        // Idle keep-alive connections, event streams and held long-polls just close: their
        // clients reconnect (to another instance) and resume from their last id.
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_idle_http() || matches!(c.transport, Transport::Sse(_) | Transport::LongPoll(_) | Transport::EioPoll(_)))
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.mark_dead(Token(key));
        }
        // Long-lived connections are told why they end (WebSocket: 1001 going away).
        let streams: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.transport, Transport::WebSocket(_)) && matches!(c.life, Life::Open))
            .map(|(k, _)| k)
            .collect();
        for key in streams {
            ws::queue_close(&mut self.conns[key], ws::GOING_AWAY, "server shutting down");
            self.drive(Token(key));
        }
    }

    fn on_conn_event(&mut self, token: Token, event: &Event) {
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.read_ready = true;
        }
        if event.is_read_closed() || event.is_error() {
            conn.read_closed = true;
        }
        self.drive(token);
    }

    /// Does everything a connection can do now, then delivers what it published.
    fn drive(&mut self, token: Token) {
        self.drive_one(token);
        if !self.app.outbox.is_empty() {
            self.deliver_outbox();
        }
        self.flush_sessions();
        self.redis_service(Vec::new());
        self.keep_history_budget();
        if self.app.ticker_wanted {
            self.app.ticker_wanted = false;
            if !self.tick_armed {
                self.tick_armed = true;
                self.timers.add(self.now + crate::app::TICK, TimerKey::Tick);
            }
        }
    }

    /// Write pending output, read and process input, stream file pieces, then update the
    /// connection's interest and deadline.
    fn drive_one(&mut self, token: Token) {
        let now = self.now;
        let draining = self.draining.is_some();
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        if conn.dead {
            return;
        }
        let mut env = Env { app: &mut self.app, date: &self.date, now, draining, handled: 0, wall_us: self.wall_us };
        let alive = drive_conn(conn, &mut self.scratch, &mut env);
        let cfg = &self.app.config;
        if alive {
            // Close what has nothing left to do.
            let finished = match conn.life {
                Life::Open => conn.peer_eof && conn.out.is_empty() && !conn.sending_file() && !conn.stalled && !conn.is_parked(),
                Life::CloseAfterFlush => false,
                Life::Lingering { .. } => false,
            };
            if finished || (draining && conn.is_idle_http()) {
                self.mark_dead(token);
                return;
            }
            // Work left that no event will announce: input not yet read or not yet processed,
            // or a file whose budget for this turn ran out with the socket still writable.
            let lingering = matches!(conn.life, Life::Lingering { .. });
            let more_input = (conn.read_ready || conn.stalled) && (conn.wants_input(cfg) || lingering);
            let more_file = conn.sending_file() && conn.out.is_empty();
            if more_input || more_file {
                conn.wake(&mut self.pending);
            }
            if let Transport::Http(h) = &mut conn.transport {
                if h.head_started.is_none() && !conn.inbuf.is_empty() && !h.reader.in_body() {
                    h.head_started = Some(now);
                }
            }
            if let Err(e) = update_interest(&self.poll, token, conn) {
                log::debug!("reregister: {e}");
                self.mark_dead(token);
                return;
            }
            self.arm_timer(token);
        } else {
            self.mark_dead(token);
        }
    }

    /// Delivers every message published since the last call. Consecutive small messages of
    /// one topic go out as one [`Run`] (publish order across topics is kept; see
    /// [`Run::first_of`] for where a run ends). Each subscriber gets the run's shared
    /// encoding queued and is put on the pending list, so all of them are written after this
    /// turn's events: a subscriber that receives several runs in one turn gets them in one
    /// write.
    pub(super) fn deliver_outbox(&mut self) {
        while !self.app.outbox.is_empty() {
            let msgs = std::mem::take(&mut self.app.outbox);
            let mut rest = &msgs[..];
            while !rest.is_empty() {
                let run = Run::first_of(rest);
                rest = &rest[run.messages().len()..];
                self.deliver(&run);
            }
        }
        self.keep_history_budget();
        if !self.sweep_armed {
            self.sweep_armed = true;
            self.timers.add(self.now + HUB_SWEEP, TimerKey::HubSweep);
        }
    }

    /// Carries out what touched Engine.IO sessions ask (`net/eio.rs`).
    pub(super) fn flush_sessions(&mut self) {
        if !self.app.sio.touched.is_empty() {
            eio::flush_sessions(&mut self.eio_loop());
        }
    }

    /// What `net/eio.rs` works on: the connections, the app, the pending list and timers.
    fn eio_loop(&mut self) -> eio::Loop<'_> {
        eio::Loop { conns: &mut self.conns, app: &mut self.app, pending: &mut self.pending, timers: &mut self.timers, date: &self.date, now: self.now }
    }

    /// Deliveries and replays build encodings, which count in the history budget: the budget
    /// holds again after every connection's turn and every delivery (one comparison when it
    /// holds; age limits are the sweep timer's and each publish's).
    fn keep_history_budget(&mut self) {
        if self.app.hub.over_budget() {
            self.app.hub.enforce_limits(self.now);
        }
    }

    fn deliver(&mut self, run: &Run<'_>) {
        let msgs = run.messages();
        let key = TopicKey { kind: msgs[0].kind, name: msgs[0].topic.clone() };
        let cfg = &self.app.config;
        let (mut delivered, mut cut) = (0u64, 0u64);
        let mut polls = Vec::new();
        for sub in self.app.hub.subscribers(&key) {
            // Messages published before it subscribed reached it through its replay (or
            // not at all). A subscriber that joined in the middle of the run (a /ws socket
            // that published, subscribed and published again in one read) takes the rest.
            let from = msgs.partition_point(|m| m.id <= sub.after);
            if from == msgs.len() {
                continue;
            }
            if sub.sink.kind == SinkKind::Session {
                // An Engine.IO session: straight to its WebSocket when nothing of it waits
                // (the shared frames, as for any subscriber), else into its queue.
                let token = match self.app.sio.route(sub.sink, &msgs[from..], from == 0, cfg.max_output_bytes) {
                    Route::Skip => continue,
                    Route::Queued => {
                        delivered += msgs[from..].iter().filter(|m| m.origin != Some(sub.sink)).count() as u64;
                        continue;
                    }
                    Route::Ws(conn, enc) => (conn, enc),
                };
                let (token, enc) = token;
                let Some(conn) = self.conns.get_mut(token.slot as usize).filter(|c| c.id == token.id) else { continue };
                if !matches!(conn.life, Life::Open) || conn.dead {
                    continue;
                }
                if conn.out.footprint() > cfg.max_output_bytes {
                    self.app.sio.close(sub.sink.slot as usize, CloseReason::SlowConsumer);
                    cut += 1;
                    continue;
                }
                let enc = super::ws::encoding(conn, enc);
                conn.out.push_shared(run.encoded(enc).clone());
                conn.out.note_push(msgs[from].published);
                delivered += (msgs.len() - from) as u64;
                conn.wake(&mut self.pending);
                continue;
            }
            let token = sub.sink.slot as usize;
            let Some(conn) = self.conns.get_mut(token) else { continue };
            if conn.id != sub.sink.id {
                continue;
            }
            match stream::push(conn, run, from, sub.encoding, cfg) {
                Pushed::Queued => {
                    conn.out.note_push(msgs[from].published);
                    delivered += (msgs.len() - from) as u64;
                }
                Pushed::PollReady => {
                    delivered += (msgs.len() - from) as u64;
                    polls.push((token, from));
                }
                Pushed::CutOff => cut += 1,
                Pushed::Skipped => continue,
            }
            conn.wake(&mut self.pending);
        }
        self.app.hub.stats.delivered += delivered;
        self.app.hub.stats.slow_consumer_disconnects += cut;
        for (token, from) in polls {
            let conn = &mut self.conns[token];
            stream::finish_poll(conn, &msgs[from..], &mut self.app.stats, &self.app.config, &self.date);
            stream::unsubscribe_all(conn, &mut self.app.hub);
        }
    }

    fn arm_timer(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        let (at, _) = conn.deadline(&self.app.config);
        if conn.timer_at.is_none_or(|t| t > at) {
            conn.timer_at = Some(at);
            self.timers.add(at, TimerKey::Sink(SinkRef::conn(token.0 as u32, conn.id)));
        }
    }

    fn fire_timers(&mut self) {
        while let Some((at, key)) = self.timers.pop_due(self.now) {
            match key {
                TimerKey::Sink(sink) => match sink.kind {
                    SinkKind::Conn => self.on_conn_timer(Token(sink.slot as usize), sink.id, at),
                    SinkKind::Session => eio::on_timer(&mut self.eio_loop(), sink, at),
                },
                TimerKey::StatsLog => {
                    log::info!("stats: {}", self.app.stats.summary(self.now, &self.app.hub));
                    self.timers.add(self.now + self.app.config.stats_interval, TimerKey::StatsLog);
                }
                TimerKey::AcceptRetry => {
                    if self.draining.is_none() {
                        for i in 0..self.listeners.len() {
                            let l = &mut self.listeners[i];
                            if self.poll.registry().register(&mut l.sock, Token(LISTENERS - i), Interest::READABLE).is_ok() {
                                self.accept(i);
                            }
                        }
                    }
                }
                TimerKey::DrainEnd => {}
                TimerKey::Redis => self.on_redis_timer(),
                TimerKey::Tick => {
                    self.tick_armed = false;
                    if let Some(next) = self.app.tick(self.now, self.wall_us) {
                        self.tick_armed = true;
                        self.timers.add(next, TimerKey::Tick);
                    }
                    self.deliver_outbox();
                }
                TimerKey::HubSweep => {
                    self.sweep_armed = self.app.hub.sweep(self.now);
                    if self.sweep_armed {
                        self.timers.add(self.now + HUB_SWEEP, TimerKey::HubSweep);
                    }
                }
            }
        }
    }

    fn on_conn_timer(&mut self, token: Token, id: u64, at: Instant) {
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        if conn.id != id || conn.timer_at != Some(at) || conn.dead {
            return; // an entry for a closed connection, or one superseded by an earlier entry
        }
        conn.timer_at = None;
        let (deadline, what) = conn.deadline(&self.app.config);
        if deadline > self.now {
            self.arm_timer(token);
            return;
        }
        match what {
            Expiry::Close => self.mark_dead(token),
            Expiry::WriteTimeout => {
                log::debug!("conn {}: output stuck for {:?}: closing", conn.id, self.app.config.write_timeout);
                self.app.stats.write_timeouts += 1;
                self.mark_dead(token);
            }
            Expiry::Ping => {
                ws::send_ping(conn);
                self.drive(token);
            }
            Expiry::Heartbeat => {
                if let Transport::Sse(sse) = &mut conn.transport {
                    sse.next_beat = self.now + self.app.config.sse_heartbeat;
                    let beat = sse.heartbeat();
                    conn.out.extend(beat);
                }
                self.drive(token);
            }
            Expiry::PollTimeout => {
                stream::finish_poll(conn, &[], &mut self.app.stats, &self.app.config, &self.date);
                stream::unsubscribe_all(conn, &mut self.app.hub);
                self.drive(token);
            }
            Expiry::RequestTimeout => {
                http::queue_error(conn, HttpError::RequestTimeout, &self.date);
                self.drive(token);
            }
        }
    }

    fn mark_dead(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0) {
            if !conn.dead {
                conn.dead = true;
                self.to_close.push(token);
            }
        }
    }

    fn free(&mut self, token: Token) {
        if self.conns.contains(token.0) {
            let mut conn = self.conns.remove(token.0);
            let _ = self.poll.registry().deregister(&mut conn.sock);
            stream::unsubscribe_all(&mut conn, &mut self.app.hub);
            eio::detach(&conn, &mut self.app);
            self.app.stats.conn_closed(conn.kind());
        }
    }
}

/// The listen backlog. mio's default (128) drops SYNs when thousands of EventSource clients
/// reconnect within one `retry:` after a restart; the kernel caps this at
/// `net.core.somaxconn` (4096 on current Linux).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listening socket the way mio would (non-blocking, `SO_REUSEADDR` so a restart
/// can bind while old connections sit in TIME_WAIT), with a deep backlog.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(sock.into()))
}

/// TCP keep-alive on every accepted socket: a peer that vanished without a FIN (a laptop
/// closed, a NAT entry dropped) is found within about two minutes of silence even on a
/// connection we never write to, instead of holding its slot forever.
fn set_keepalive(sock: &mio::net::TcpStream) {
    use socket2::{SockRef, TcpKeepalive};
    let ka = TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(6);
    if let Err(e) = SockRef::from(sock).set_tcp_keepalive(&ka) {
        log::debug!("keepalive: {e}");
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM))
}

/// The errno values we distinguish (Linux numbering; mio is Linux/Unix-only here).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOBUFS: i32 = 105;
}
