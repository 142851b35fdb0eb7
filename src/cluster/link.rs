//! One connection to Redis as a sans-IO state machine, driven by the loop the way a
//! quinn-proto `Connection` is: the loop opens the socket when [`Link::wants_connect`] says
//! so, writes [`Link::transmit`], feeds what it reads to [`Link::on_input`], reports a close
//! with [`Link::on_closed`], and wakes it at [`Link::poll_timeout`]. The link owns the
//! protocol: the AUTH/SELECT handshake, the order replies come back in (Redis answers
//! pipelined commands in order, so a FIFO of tags pairs them), the cap on queued output,
//! and reconnecting with backoff.
//!
//! ```text
//!   Idle ──retry time──▶ Connecting ──TCP up──▶ Handshaking ──+OK…──▶ Ready
//!     ▲                      │  connect timeout       │ error reply        │
//!     └──────── backoff ─────┴────────────────────────┴──── closed ────────┘
//! ```
//! A subscriber link (`Role::Subscriber`) hands every reply after the handshake out as a
//! [`Event::Push`]: once a connection has subscribed, Redis sends confirmations and messages
//! as they come, not as answers to commands.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::url::RedisUrl;
use crate::proto::resp::{encode_command, Limits, Reader, Value};

/// A TCP connect (and the handshake after it) must complete within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A ready link sends PING this long after its last one was answered: a Redis that stops
/// answering (stopped, swapping, a network partition without resets) is found even when
/// nothing else is asked of it, and `/healthz` says so.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A PING unanswered for this long takes the link down (what is in flight fails: 503s
/// instead of requests parked for as long as Redis is stuck). Redis answers in order, so
/// the PING is also late when any command before it is.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Commands and their replies (PUBLISH, XADD, XRANGE…).
    Commands,
    /// SUBSCRIBE / UNSUBSCRIBE, and the messages that come.
    Subscriber,
}

#[derive(Debug, PartialEq)]
pub enum Event<T> {
    /// The handshake is done: commands may be sent.
    Ready,
    /// The reply to the command sent with this tag.
    Reply(T, Value),
    /// A message or confirmation on a subscriber link.
    Push(Value),
    /// The connection is gone (or never came up). Commands in flight, listed by tag, got no
    /// reply: whether Redis carried them out is unknown. The link retries by itself.
    Down { failed: Vec<T>, reason: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// Not connected (or still in the handshake).
    NotReady,
    /// More output queued than the cap: Redis is not keeping up.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle { retry_at: Instant },
    Connecting { deadline: Instant },
    Handshaking { deadline: Instant },
    Ready,
}

#[derive(Debug)]
enum Pending<T> {
    Handshake,
    Command(T),
    Ping,
}

#[derive(Debug)]
pub struct Link<T> {
    url: RedisUrl,
    role: Role,
    state: State,
    out: Vec<u8>,
    inflight: VecDeque<Pending<T>>,
    reader: Reader,
    backoff: Backoff,
    max_out: usize,
    /// The heartbeat PING in flight (when it was sent), or when the next one is due.
    ping_sent: Option<Instant>,
    next_ping: Instant,
    /// Commands every connection starts with after AUTH/SELECT (SCRIPT LOAD): a command
    /// that needs them can only be sent once Redis has answered them all.
    setup: Vec<Vec<Vec<u8>>>,
}

impl<T> Link<T> {
    /// A link that will connect at once. `seed` spreads the reconnect jitter.
    pub fn new(url: RedisUrl, role: Role, now: Instant, seed: u64, max_out: usize) -> Link<T> {
        Link {
            url,
            role,
            state: State::Idle { retry_at: now },
            out: Vec::new(),
            inflight: VecDeque::new(),
            reader: Reader::new(Limits::default()),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10), seed),
            max_out,
            ping_sent: None,
            next_ping: now,
            setup: Vec::new(),
        }
    }

    /// Adds a command to every connection's handshake (its reply must not be an error).
    pub fn add_setup(&mut self, args: &[&[u8]]) {
        self.setup.push(args.iter().map(|a| a.to_vec()).collect());
    }

    /// Takes the link down (as if the connection failed): it reconnects, handshake included.
    pub fn reset(&mut self, now: Instant, reason: &str) -> Event<T> {
        self.down(now, reason.to_string())
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// A socket is open (connecting, in the handshake, or ready).
    pub fn is_active(&self) -> bool {
        !matches!(self.state, State::Idle { .. })
    }

    /// Whether the loop should open a connection now.
    pub fn wants_connect(&self, now: Instant) -> bool {
        matches!(self.state, State::Idle { retry_at } if retry_at <= now)
    }

    /// The loop started a non-blocking connect.
    pub fn connecting(&mut self, now: Instant) {
        self.state = State::Connecting { deadline: now + CONNECT_TIMEOUT };
    }

    /// The socket is connected: the handshake goes first.
    pub fn connected(&mut self, now: Instant) -> Option<Event<T>> {
        let deadline = match self.state {
            State::Connecting { deadline } => deadline,
            _ => now + CONNECT_TIMEOUT,
        };
        self.out.clear();
        self.reader = Reader::new(Limits::default());
        let mut handshake = 0;
        match (&self.url.user, &self.url.password) {
            (Some(u), Some(p)) => {
                encode_command(&mut self.out, &[b"AUTH", u.as_bytes(), p.as_bytes()]);
                handshake += 1;
            }
            (None, Some(p)) => {
                encode_command(&mut self.out, &[b"AUTH", p.as_bytes()]);
                handshake += 1;
            }
            _ => {}
        }
        if self.url.db != 0 {
            encode_command(&mut self.out, &[b"SELECT", self.url.db.to_string().as_bytes()]);
            handshake += 1;
        }
        for cmd in &self.setup {
            let args: Vec<&[u8]> = cmd.iter().map(|a| &a[..]).collect();
            encode_command(&mut self.out, &args);
            handshake += 1;
        }
        // Ready only once Redis has answered: a TCP connect completes in the kernel even when
        // Redis itself is stopped, and a link must not look up before Redis is.
        encode_command(&mut self.out, &[b"PING"]);
        handshake += 1;
        for _ in 0..handshake {
            self.inflight.push_back(Pending::Handshake);
        }
        self.state = State::Handshaking { deadline };
        None
    }

    fn become_ready(&mut self, now: Instant) -> Event<T> {
        self.state = State::Ready;
        self.ping_sent = None;
        self.next_ping = now + HEARTBEAT;
        self.backoff.reset();
        Event::Ready
    }

    /// Queues a command; its reply comes back as `Event::Reply(tag, …)` (a subscriber
    /// link's answers come as pushes: its tags are never returned, except in `Down`).
    pub fn send(&mut self, args: &[&[u8]], tag: T) -> Result<(), SendError> {
        if self.state != State::Ready {
            return Err(SendError::NotReady);
        }
        if self.out.len() > self.max_out {
            return Err(SendError::Full);
        }
        encode_command(&mut self.out, args);
        if self.role == Role::Commands {
            self.inflight.push_back(Pending::Command(tag));
        }
        Ok(())
    }

    /// Bytes to write.
    pub fn transmit(&self) -> &[u8] {
        &self.out
    }

    /// The loop wrote the first `n` bytes of [`Link::transmit`].
    pub fn written(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
        if self.out.is_empty() && self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
    }

    /// Bytes read from the socket.
    pub fn on_input(&mut self, bytes: &[u8], now: Instant) -> Vec<Event<T>> {
        self.reader.feed(bytes);
        let mut events = Vec::new();
        loop {
            let reply = match self.reader.next_reply() {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(e) => {
                    events.push(self.down(now, format!("protocol error from Redis: {e}")));
                    break;
                }
            };
            if self.role == Role::Subscriber && self.state == State::Ready && is_pong(&reply) {
                self.answered(now);
                continue;
            }
            if let Value::Push(_) = reply {
                events.push(Event::Push(reply));
                continue;
            }
            match self.inflight.pop_front() {
                Some(Pending::Handshake) => {
                    if let Value::Error(e) = &reply {
                        let why = format!("handshake refused: {}", String::from_utf8_lossy(e));
                        events.push(self.down(now, why));
                        break;
                    }
                    if !self.inflight.iter().any(|p| matches!(p, Pending::Handshake)) {
                        events.push(self.become_ready(now));
                    }
                }
                Some(Pending::Command(tag)) => events.push(Event::Reply(tag, reply)),
                Some(Pending::Ping) => self.answered(now),
                // A subscriber link: everything after the handshake is a push.
                None if self.role == Role::Subscriber => events.push(Event::Push(reply)),
                None => {
                    events.push(self.down(now, "a reply nobody asked for".into()));
                    break;
                }
            }
        }
        events
    }

    /// The socket closed or failed.
    pub fn on_closed(&mut self, now: Instant, reason: &str) -> Event<T> {
        self.down(now, reason.to_string())
    }

    fn down(&mut self, now: Instant, reason: String) -> Event<T> {
        let failed = self
            .inflight
            .drain(..)
            .filter_map(|p| match p {
                Pending::Command(t) => Some(t),
                Pending::Handshake | Pending::Ping => None,
            })
            .collect();
        self.out.clear();
        self.state = State::Idle { retry_at: now + self.backoff.next_delay() };
        Event::Down { failed, reason }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle { retry_at } => Some(retry_at),
            State::Connecting { deadline } | State::Handshaking { deadline } => Some(deadline),
            State::Ready => Some(self.ping_sent.map_or(self.next_ping, |t| t + REPLY_TIMEOUT)),
        }
    }

    fn answered(&mut self, now: Instant) {
        self.ping_sent = None;
        self.next_ping = now + HEARTBEAT;
    }

    /// The deadline passed: a connect or handshake that took too long is given up (the
    /// loop closes the socket). An idle link's retry time is for [`Link::wants_connect`].
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Event<T>> {
        match self.state {
            State::Connecting { deadline } | State::Handshaking { deadline } if deadline <= now => {
                Some(self.down(now, "connect timed out".into()))
            }
            State::Ready => match self.ping_sent {
                Some(t) if t + REPLY_TIMEOUT <= now => Some(self.down(now, format!("Redis did not answer for {} s", REPLY_TIMEOUT.as_secs()))),
                None if self.next_ping <= now => {
                    encode_command(&mut self.out, &[b"PING"]);
                    if self.role == Role::Commands {
                        self.inflight.push_back(Pending::Ping);
                    }
                    self.ping_sent = Some(now);
                    None
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// A subscriber link's PING answer: `+PONG` before any SUBSCRIBE, `["pong", ""]` after.
fn is_pong(v: &Value) -> bool {
    match v {
        Value::Simple(s) => s == b"PONG",
        Value::Array(a) | Value::Push(a) => a.first().and_then(Value::as_bytes) == Some(b"pong"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RedisUrl {
        s.parse().unwrap()
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn handshake_then_pipelined_replies_in_order() {
        let t0 = Instant::now();
        let mut l: Link<u32> = Link::new(url("redis://u:p@h:1/2"), Role::Commands, t0, 1, 1 << 20);
        assert!(l.wants_connect(t0));
        l.connecting(t0);
        assert!(!l.wants_connect(t0));
        assert_eq!(l.connected(t0), None);
        assert_eq!(l.transmit(), b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(l.send(&[b"PING"], 9), Err(SendError::NotReady), "nothing before the handshake");
        let n = l.transmit().len();
        l.written(n);
        assert_eq!(l.on_input(b"+OK\r\n", t0), vec![]);
        assert_eq!(l.on_input(b"+OK\r\n", t0), vec![]);
        assert_eq!(l.on_input(b"+PONG\r\n", t0), vec![Event::Ready], "ready once Redis itself answered");
        l.send(&[b"PUBLISH", b"c", b"x"], 1).unwrap();
        l.send(&[b"GET", b"k"], 2).unwrap();
        // Replies split anywhere pair with their commands in order.
        assert_eq!(l.on_input(b":3\r\n$", t0), vec![Event::Reply(1, Value::Integer(3))]);
        assert_eq!(l.on_input(b"1\r\nv\r\n", t0), vec![Event::Reply(2, bulk("v"))]);
    }

    #[test]
    fn a_close_fails_what_is_in_flight_and_retries_with_backoff() {
        let t0 = Instant::now();
        let mut l: Link<u32> = Link::new(url("redis://h:1"), Role::Commands, t0, 1, 1 << 20);
        l.connecting(t0);
        assert_eq!(l.connected(t0), None);
        assert_eq!(l.on_input(b"+PONG\r\n", t0), vec![Event::Ready], "no AUTH or SELECT: the PING is the handshake");
        l.send(&[b"PUBLISH", b"c", b"1"], 1).unwrap();
        l.send(&[b"PUBLISH", b"c", b"2"], 2).unwrap();
        assert_eq!(l.on_input(b":1\r\n", t0), vec![Event::Reply(1, Value::Integer(1))]);
        let down = l.on_closed(t0, "reset");
        assert_eq!(down, Event::Down { failed: vec![2], reason: "reset".into() });
        assert!(!l.is_ready() && l.transmit().is_empty());
        let retry = l.poll_timeout().unwrap();
        assert!(retry > t0 && retry <= t0 + Duration::from_millis(100));
        assert!(!l.wants_connect(t0) && l.wants_connect(retry));
        assert_eq!(l.send(&[b"PING"], 3), Err(SendError::NotReady));
    }

    #[test]
    fn refused_handshakes_and_timeouts_are_down_events() {
        let t0 = Instant::now();
        let mut l: Link<u32> = Link::new(url("redis://:wrong@h:1"), Role::Commands, t0, 1, 1 << 20);
        l.connecting(t0);
        l.connected(t0);
        match l.on_input(b"-WRONGPASS invalid username-password pair\r\n", t0).as_slice() {
            [Event::Down { failed, reason }] => assert!(failed.is_empty() && reason.contains("WRONGPASS"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let mut l: Link<u32> = Link::new(url("redis://h:1"), Role::Commands, t0, 1, 1 << 20);
        l.connecting(t0);
        assert_eq!(l.handle_timeout(t0 + Duration::from_secs(1)), None);
        assert!(matches!(l.handle_timeout(t0 + CONNECT_TIMEOUT), Some(Event::Down { .. })));
    }

    #[test]
    fn output_is_capped_and_garbage_is_a_protocol_error() {
        let t0 = Instant::now();
        let mut l: Link<u32> = Link::new(url("redis://h:1"), Role::Commands, t0, 1, 100);
        l.connecting(t0);
        l.connected(t0);
        l.on_input(b"+PONG\r\n", t0);
        let big = [b'x'; 200];
        l.send(&[b"SET", b"k", &big], 1).unwrap();
        assert_eq!(l.send(&[b"PING"], 2), Err(SendError::Full), "Redis is not reading: stop queueing");
        match l.on_input(b"?what\r\n", t0).as_slice() {
            [Event::Down { failed, reason }] => assert!(failed == &vec![1] && reason.contains("protocol"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let mut l: Link<u32> = Link::new(url("redis://h:1"), Role::Commands, t0, 1, 100);
        l.connecting(t0);
        l.connected(t0);
        assert!(matches!(l.on_input(b"+PONG\r\n+OK\r\n", t0).as_slice(), [Event::Ready, Event::Down { .. }]), "a reply nobody asked for");
    }

    #[test]
    fn a_silent_redis_is_found_by_the_heartbeat() {
        let t0 = Instant::now();
        for role in [Role::Commands, Role::Subscriber] {
            let mut l: Link<u32> = Link::new(url("redis://h:1"), role, t0, 1, 1 << 20);
            l.connecting(t0);
            l.connected(t0);
            let n = l.transmit().len();
            l.written(n);
            assert_eq!(l.on_input(b"+PONG\r\n", t0), vec![Event::Ready]);
            assert_eq!(l.poll_timeout(), Some(t0 + HEARTBEAT));
            assert_eq!(l.handle_timeout(t0 + HEARTBEAT), None);
            assert_eq!(l.transmit(), b"*1\r\n$4\r\nPING\r\n");
            // Answered: nothing reaches the node, the next PING is a heartbeat later.
            let pong: &[u8] = if role == Role::Commands { b"+PONG\r\n" } else { b"*2\r\n$4\r\npong\r\n$0\r\n\r\n" };
            let t1 = t0 + Duration::from_secs(2);
            assert_eq!(l.on_input(pong, t1), vec![]);
            assert_eq!(l.poll_timeout(), Some(t1 + HEARTBEAT));
            l.handle_timeout(t1 + HEARTBEAT);
            // Not answered: down after REPLY_TIMEOUT, with the command sent meanwhile failed.
            if role == Role::Commands {
                l.send(&[b"PUBLISH", b"c", b"x"], 7).unwrap();
            }
            assert_eq!(l.handle_timeout(t1 + HEARTBEAT + REPLY_TIMEOUT - Duration::from_millis(1)), None);
            match l.handle_timeout(t1 + HEARTBEAT + REPLY_TIMEOUT) {
                Some(Event::Down { failed, reason }) => {
                    assert!(reason.contains("did not answer"), "{reason}");
                    assert_eq!(failed, if role == Role::Commands { vec![7] } else { vec![] });
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_subscriber_link_hands_out_pushes() {
        let t0 = Instant::now();
        let mut l: Link<()> = Link::new(url("redis://:pw@h:1"), Role::Subscriber, t0, 1, 1 << 20);
        l.connecting(t0);
        l.connected(t0);
        assert_eq!(l.on_input(b"+OK\r\n+PONG\r\n", t0), vec![Event::Ready]);
        l.send(&[b"SUBSCRIBE", b"a", b"b"], ()).unwrap();
        let got = l.on_input(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n>3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$1\r\nx\r\n", t0);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|e| matches!(e, Event::Push(_))));
        assert_eq!(got[1], Event::Push(Value::Array(vec![bulk("message"), bulk("a"), bulk("hi")])));
    }
}
