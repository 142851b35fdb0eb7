//! The Redis links on the loop: two outbound sockets in the same `Poll` as the listener and
//! the connections, driving the sans-IO [`Node`](crate::cluster::node::Node) (which owns the
//! protocol) and carrying out what it decides: answers to parked requests, messages from
//! other nodes into the hub, resumes, resets.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::conn::{Life, Slot, Transport};
use super::event_loop::Server;
use super::timers::TimerKey;
use super::{stream, ws};
use crate::app::cluster::{self, Then};
use crate::cluster::node::Action;
use crate::cluster::wire;
use crate::hub::{Extra, Message, SinkKind};
use crate::proto::http1::Persist;

pub const REDIS_CMD: Token = Token(usize::MAX - 3);
pub const REDIS_SUB: Token = Token(usize::MAX - 4);

/// One outbound socket.
#[derive(Debug)]
pub struct RedisSock {
    stream: TcpStream,
    /// The non-blocking connect has completed.
    connected: bool,
    writable: bool,
}

/// The loop's part of the links: their sockets, and when the node's timer is armed.
#[derive(Debug, Default)]
pub struct RedisIo {
    cmd: Option<RedisSock>,
    sub: Option<RedisSock>,
    timer_at: Option<Instant>,
}

impl Server {
    fn sock(&mut self, cmd: bool) -> &mut Option<RedisSock> {
        if cmd {
            &mut self.redis.cmd
        } else {
            &mut self.redis.sub
        }
    }

    /// Opens the links that want to connect, writes what they queued, arms the node's
    /// timer, and carries out what the node decided. Called after everything that may
    /// have touched the node.
    pub(super) fn redis_service(&mut self, mut actions: Vec<Action<Then>>) {
        if self.app.cluster.is_none() {
            return;
        }
        loop {
            self.sync_subscriptions(&mut actions);
            let (c, s) = self.app.cluster.as_ref().map_or((false, false), |n| n.wants_connect(self.now));
            if c {
                self.redis_connect(true);
            }
            if s {
                self.redis_connect(false);
            }
            self.redis_flush(true, &mut actions);
            self.redis_flush(false, &mut actions);
            if actions.is_empty() {
                break;
            }
            for a in std::mem::take(&mut actions) {
                self.apply(a);
            }
            if !self.app.outbox.is_empty() {
                self.deliver_outbox();
                self.flush_sessions();
            }
        }
        if let Some(at) = self.app.cluster.as_ref().and_then(|n| n.poll_timeout()) {
            // An armed entry always fires (and clears `timer_at`): only an earlier deadline
            // needs another.
            if self.redis.timer_at.is_none_or(|t| t > at) {
                self.redis.timer_at = Some(at);
                self.timers.add(at, TimerKey::Redis);
            }
        }
    }

    /// Topics that gained their first local subscriber or lost their last are followed or
    /// dropped on Redis; resumes the handlers asked for go out after that.
    fn sync_subscriptions(&mut self, actions: &mut Vec<Action<Then>>) {
        let Some(node) = self.app.cluster.as_mut() else { return };
        if let Some(changes) = self.app.hub.changes.as_mut() {
            for key in std::mem::take(changes) {
                let wanted = self.app.hub.subscriber_count(&key) > 0;
                node.want(&key, wanted);
            }
        }
        for (sink, request, keys, since) in std::mem::take(&mut self.app.resumes) {
            let slot = node.resume(sink, request, keys, since);
            // Answered at once when it could not even be asked.
            if node.resume_done(slot) {
                actions.push(Action::Resumed(slot));
            }
        }
    }

    fn redis_connect(&mut self, cmd: bool) {
        let now = self.now;
        let Some(node) = self.app.cluster.as_mut() else { return };
        let link_url = node.cmd.url().clone();
        if cmd {
            node.cmd.connecting(now);
        } else {
            node.sub.connecting(now);
        }
        // A name is resolved here, blocking: give an address (or a name the resolver answers
        // from /etc/hosts) in production; a reconnect re-resolves it.
        let addr = (link_url.host.as_str(), link_url.port).to_socket_addrs().ok().and_then(|mut a| a.next());
        let token = if cmd { REDIS_CMD } else { REDIS_SUB };
        let opened = addr.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {}", link_url.host))).and_then(|a| {
            let mut s = TcpStream::connect(a)?;
            self.poll.registry().register(&mut s, token, Interest::READABLE | Interest::WRITABLE)?;
            let _ = s.set_nodelay(true);
            Ok(s)
        });
        match opened {
            Ok(stream) => *self.sock(cmd) = Some(RedisSock { stream, connected: false, writable: true }),
            Err(e) => {
                let mut actions = Vec::new();
                if let Some(node) = self.app.cluster.as_mut() {
                    node.on_closed(cmd, now, &format!("connect: {e}"), &mut actions);
                }
                // The node retries after its backoff; what failed is answered now.
                for a in actions {
                    self.apply(a);
                }
            }
        }
    }

    /// A readiness event on a link's socket.
    pub(super) fn on_redis_event(&mut self, token: Token) {
        let cmd = token == REDIS_CMD;
        let now = self.now;
        let mut actions = Vec::new();
        let Some(sock) = self.sock(cmd).as_mut() else { return };
        if !sock.connected {
            // A non-blocking connect is done when the socket is writable: with an error
            // (refused, unreachable), or connected.
            match sock.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.redis_closed(cmd, &format!("connect: {e}")),
            }
            match sock.stream.peer_addr() {
                Ok(_) => {
                    sock.connected = true;
                    if let Some(node) = self.app.cluster.as_mut() {
                        node.connected(cmd, now, &mut actions);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.redis_closed(cmd, &format!("connect: {e}")),
            }
        }
        // Read all there is (edge-triggered).
        loop {
            let sock = if cmd { self.redis.cmd.as_mut() } else { self.redis.sub.as_mut() };
            let Some(sock) = sock else { break };
            match sock.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.redis_closed(cmd, "Redis closed the connection");
                    break;
                }
                Ok(n) => {
                    if let Some(node) = self.app.cluster.as_mut() {
                        node.on_input(cmd, &self.scratch[..n], now, &mut actions);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.redis_closed(cmd, &e.to_string());
                    break;
                }
            }
        }
        if let Some(s) = self.sock(cmd).as_mut() {
            s.writable = true;
        }
        // What was read may have taken the link down (a protocol error, a refused handshake):
        // its socket goes, so that nothing more from it reaches the link.
        self.drop_idle_sock(cmd);
        self.redis_service(actions);
    }

    /// Writes what the link has queued, as far as the socket takes it.
    fn redis_flush(&mut self, cmd: bool, actions: &mut Vec<Action<Then>>) {
        loop {
            let Some(node) = self.app.cluster.as_mut() else { return };
            let Some(sock) = (if cmd { self.redis.cmd.as_mut() } else { self.redis.sub.as_mut() }) else { return };
            let link_out = if cmd { node.cmd.transmit() } else { node.sub.transmit() };
            if !sock.connected || link_out.is_empty() || !sock.writable {
                return;
            }
            match sock.stream.write(link_out) {
                Ok(n) => {
                    if cmd {
                        node.cmd.written(n);
                    } else {
                        node.sub.written(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // READABLE | WRITABLE stays registered: the next writable event resumes.
                    sock.writable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = e.to_string();
                    self.redis_closed_into(cmd, &why, actions);
                    return;
                }
            }
        }
    }

    fn redis_closed(&mut self, cmd: bool, why: &str) {
        let mut actions = Vec::new();
        self.redis_closed_into(cmd, why, &mut actions);
        for a in actions {
            self.apply(a);
        }
    }

    fn redis_closed_into(&mut self, cmd: bool, why: &str, actions: &mut Vec<Action<Then>>) {
        self.drop_sock(cmd);
        let now = self.now;
        if let Some(node) = self.app.cluster.as_mut() {
            node.on_closed(cmd, now, why, actions);
        }
    }

    fn drop_sock(&mut self, cmd: bool) {
        if let Some(mut s) = self.sock(cmd).take() {
            let _ = self.poll.registry().deregister(&mut s.stream);
        }
    }

    /// Drops the socket of a link that is down (it opens a new one when it retries).
    fn drop_idle_sock(&mut self, cmd: bool) {
        let active = self.app.cluster.as_ref().is_none_or(|n| if cmd { n.cmd.is_active() } else { n.sub.is_active() });
        if !active {
            self.drop_sock(cmd);
        }
    }

    /// The node's deadline: a connect that takes too long, or the time to retry.
    pub(super) fn on_redis_timer(&mut self) {
        self.redis.timer_at = None;
        let now = self.now;
        let mut actions = Vec::new();
        if let Some(node) = self.app.cluster.as_mut() {
            node.handle_timeout(now, &mut actions);
        }
        // A link the timeout took down has a socket to drop.
        self.drop_idle_sock(true);
        self.drop_idle_sock(false);
        self.redis_service(actions);
    }

    fn apply(&mut self, a: Action<Then>) {
        match a {
            Action::Up => log::info!("cluster: connected to Redis at {}", self.app.config.redis.as_ref().map(|u| u.to_string()).unwrap_or_default()),
            Action::Down(why) => log::warn!("cluster: {why}; publishes get 503 until Redis is back"),
            Action::Deliver(key, id, body) => {
                if key == wire::sockets_topic() {
                    // An emit to one socket: delivered where the socket is, ignored elsewhere.
                    if let Some((nsp, socket, args)) = wire::parse_to_socket(&body.data) {
                        if self.app.sio.emit_to_socket(socket, nsp, args) {
                            self.flush_sessions();
                        }
                    }
                    return;
                }
                if self.app.hub.subscriber_count(&key) == 0 {
                    return;
                }
                let origin = body.origin.filter(|(node, _)| **node == *self.app.config.node_id).map(|(_, s)| s);
                let extra = Extra { sio: body.sio, origin, id: Some(id) };
                match self.app.hub.publish_with(&key, body.event.as_deref(), body.data, extra, self.now, 0) {
                    Ok(msg) => self.app.outbox.push(msg),
                    Err(e) => log::warn!("cluster: {e}"),
                }
            }
            Action::Reset(key, last) => {
                let sinks: Vec<_> = self.app.hub.subscribers(&key).map(|s| s.sink).collect();
                for sink in sinks {
                    if sink.kind != SinkKind::Conn {
                        continue;
                    }
                    let Some(conn) = self.conns.get_mut(sink.slot as usize).filter(|c| c.id == sink.id) else { continue };
                    stream::push_reset(conn, &key, last, &mut self.app.hub, &mut self.app.stats, &self.app.config, &self.date);
                    conn.wake(&mut self.pending);
                }
            }
            Action::Published(then, result) => self.answer(then, result),
            Action::Resumed(slot) => self.finish_resume(slot),
        }
    }

    /// Redis answered a publish: the parked request (or `/ws` socket) gets its answer.
    fn answer(&mut self, then: Then, result: Result<(Option<u64>, i64), String>) {
        match then {
            Then::Nothing => {
                if let Err(e) = result {
                    log::debug!("cluster: a publish nobody waits for failed: {e}");
                }
            }
            Then::Http { conn, answer } => {
                let Some(c) = self.conns.get_mut(conn.slot as usize).filter(|c| c.id == conn.id) else { return };
                let Transport::Http(h) = &mut c.transport else { return };
                let Some(p) = h.parked.as_mut() else { return };
                // Answers for one connection come back in the order it sent the requests.
                let Some(slot) = p.slots.iter_mut().find(|s| matches!(s, Slot::Waiting(_))) else { return };
                let Slot::Waiting(persist) = *slot else { unreachable!() };
                let resp = cluster::answer(&self.app.config, answer, result);
                let bytes = super::conn::render_response(&resp, false, persist, &self.date);
                *slot = Slot::Ready(bytes, persist);
                // Write the answers that are ready, in order.
                while let Some(Slot::Ready(..)) = p.slots.front() {
                    let Some(Slot::Ready(bytes, persist)) = p.slots.pop_front() else { unreachable!() };
                    c.out.extend(&bytes);
                    if persist == Persist::Close {
                        c.life = Life::CloseAfterFlush;
                    }
                }
                if p.slots.is_empty() {
                    let held = p.held.take();
                    h.parked = None;
                    if let (Some(req), Life::Open) = (held, &c.life) {
                        let draining = self.draining.is_some();
                        let mut env = super::http::Env { app: &mut self.app, date: &self.date, now: self.now, draining, handled: 0, wall_us: self.wall_us };
                        super::http::respond(c, &req, &mut env);
                    }
                }
                // It may have pipelined requests waiting behind the answers.
                c.stalled = true;
                c.wake(&mut self.pending);
            }
            Then::WsAck { conn, channel } => {
                let Some(c) = self.conns.get_mut(conn.slot as usize).filter(|c| c.id == conn.id) else { return };
                if !matches!(c.life, Life::Open) {
                    return;
                }
                let v = match result {
                    Ok((id, _)) => serde_json::json!({"ok": "publish", "channel": &*channel, "id": id.unwrap_or(0).to_string()}),
                    Err(e) => serde_json::json!({"error": format!("the cluster is unavailable: {e}"), "channel": &*channel}),
                };
                ws::queue_text(c, serde_json::to_vec(&v).unwrap_or_default());
                c.wake(&mut self.pending);
            }
        }
    }

    /// What Redis's streams hold after a subscriber's id, merged with what this node has
    /// kept since (messages that came live while the read was under way), in id order.
    fn finish_resume(&mut self, slot: usize) {
        let Some(r) = self.app.cluster.as_mut().and_then(|n| n.take_resume(slot)) else { return };
        let local = self.app.hub.backlog(&r.keys, r.since, self.now);
        let mut by_id: HashMap<u64, Rc<Message>> = local.messages.into_iter().map(|m| (m.id, m)).collect();
        for (key, id, body) in r.entries {
            by_id.entry(id).or_insert_with(|| {
                let mut m = Message::new(key.kind, key.name.clone(), id, body.event, body.data, self.now);
                m.sio = body.sio;
                Rc::new(m)
            });
        }
        let mut msgs: Vec<Rc<Message>> = by_id.into_values().filter(|m| m.id > r.since).collect();
        msgs.sort_by_key(|m| m.id);
        let after = msgs.last().map_or(r.since, |m| m.id).max(r.since);
        let last_id = r.last_id.max(after);
        let Some(conn) = self.conns.get_mut(r.sink.slot as usize).filter(|c| c.id == r.sink.id) else { return };
        stream::complete_resume(conn, r.request, &r.keys, &msgs, r.reset, last_id, after, &mut self.app.hub, &mut self.app.stats, &self.app.config, &self.date);
        conn.wake(&mut self.pending);
    }
}
