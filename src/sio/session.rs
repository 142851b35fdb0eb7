//! The Engine.IO v4 session: a sans-IO state machine, in the manner of quinn-proto's
//! `Connection`. Packets and the time go in ([`EioSession::on_packet`],
//! [`EioSession::handle_timeout`]); packets to send wait in its queue until the loop takes
//! them for whichever transport is attached ([`EioSession::take_queue`]), and
//! [`EioSession::poll_timeout`] says when it next needs the clock. It never sees a socket:
//! the loop attaches a held polling GET or a WebSocket to it and carries out what it asks.
//!
//! ```text
//!            2probe on a new WebSocket           5 on that WebSocket
//!  Polling ───────────────────────────▶ Probing ─────────────────────▶ WebSocket
//!     (a held GET is released with 6;        (packets keep going over polling
//!      the client stops polling)              until the 5; none is lost or repeated)
//! ```
//! Heartbeat, as the reference server does it: a ping `2` `pingInterval` after the open and
//! after each pong; no pong `3` within `pingTimeout` of the ping being queued closes the
//! session.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::hub::Message;
use crate::proto::engineio::Packet;

#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// A probe that has not completed (`2probe` … `5`) this long after its WebSocket opened is
/// given up (engine.io's `upgradeTimeout`): the client may poll again, and probe again.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport packets go over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

/// A packet waiting for a transport.
#[derive(Debug)]
pub enum Out {
    /// An Engine.IO text packet, type digit first (`2`, `40{…}`, `43[…]`).
    Text(Box<[u8]>),
    /// A binary message (an attachment).
    Binary(Rc<[u8]>),
    /// A hub message: its shared Socket.IO encoding for the transport that takes it.
    Msg(Rc<Message>),
}

impl Out {
    fn size(&self) -> usize {
        match self {
            Out::Text(t) => t.len(),
            Out::Binary(b) => b.len(),
            Out::Msg(m) => m.size(),
        }
    }
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `1`.
    ClientClose,
    PingTimeout,
    /// Its WebSocket or its held GET connection closed.
    TransportClose,
    /// A payload or packet that does not decode, a second GET while one is held.
    TransportError,
    /// A Socket.IO packet that is malformed or out of place.
    ParseError,
    /// No Socket.IO CONNECT within `--sio-connect-timeout`.
    ConnectTimeout,
    /// More output waiting than `--max-output`.
    SlowConsumer,
    /// The server is shutting down.
    ServerShutdown,
}

/// What a packet from the client asks of the layer above or of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// Handled inside the session (pong, noop).
    Nothing,
    /// A text message: a Socket.IO packet.
    Message(&'a [u8]),
    /// A binary message.
    Binary(Vec<u8>),
    /// Answer `3probe` on the probing WebSocket.
    ProbeAnswer,
    /// The upgrade completed: packets now go over the WebSocket.
    Upgraded,
    /// The probing WebSocket broke the upgrade protocol: close it (the session goes on).
    CloseProbe,
}

/// Where a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The session's current transport (a POST, or its WebSocket).
    Transport,
    /// A WebSocket that is probing for an upgrade.
    Probe,
}

#[derive(Debug)]
pub struct EioSession {
    pub transport: TransportKind,
    /// A WebSocket is probing for an upgrade, until then at the latest.
    probe_until: Option<Instant>,
    /// ...and it sent `2probe` (answered `3probe`): the upgrade waits for its `5`.
    probe_answered: bool,
    /// A ping is out and `heartbeat` is when its pong is due; else `heartbeat` is when the
    /// next ping goes.
    awaiting_pong: bool,
    heartbeat: Instant,
    pub closed: Option<CloseReason>,
    queued_bytes: usize,
    /// Packets waiting for a transport (a `Vec`: packets only join at the back and leave
    /// all at once; empty, it holds no memory).
    queue: Vec<Out>,
}

impl EioSession {
    pub fn new(transport: TransportKind, now: Instant, times: &Times) -> EioSession {
        EioSession {
            transport,
            probe_until: None,
            probe_answered: false,
            awaiting_pong: false,
            heartbeat: now + times.ping_interval,
            closed: None,
            queued_bytes: 0,
            queue: Vec::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    pub fn close(&mut self, why: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(why);
        }
    }

    /// A held GET must be answered now even if nothing waits: a probe asked the client to
    /// stop polling (it gets `6`).
    pub fn releases_polls(&self) -> bool {
        self.probe_answered
    }

    /// A WebSocket for the upgrade opened: it has `UPGRADE_TIMEOUT` to complete it.
    pub fn begin_probe(&mut self, now: Instant) {
        self.probe_until = Some(now + UPGRADE_TIMEOUT);
        self.probe_answered = false;
    }

    /// The probe is over (completed, failed, timed out, or its WebSocket went away).
    pub fn end_probe(&mut self) {
        self.probe_until = None;
        self.probe_answered = false;
    }

    /// One packet from the client.
    pub fn on_packet<'a>(&mut self, p: Packet<'a>, via: Via, now: Instant, times: &Times) -> Input<'a> {
        if self.closed.is_some() {
            return Input::Nothing;
        }
        if via == Via::Probe {
            return match p {
                Packet::Ping(b"probe") if self.transport == TransportKind::Polling && self.probe_until.is_some() && !self.probe_answered => {
                    self.probe_answered = true;
                    Input::ProbeAnswer
                }
                Packet::Upgrade if self.probe_answered => {
                    self.end_probe();
                    self.transport = TransportKind::WebSocket;
                    Input::Upgraded
                }
                Packet::Noop => Input::Nothing,
                _ => {
                    self.end_probe();
                    Input::CloseProbe
                }
            };
        }
        match p {
            Packet::Pong(_) => {
                if self.awaiting_pong {
                    self.awaiting_pong = false;
                    self.heartbeat = now + times.ping_interval;
                }
                Input::Nothing
            }
            Packet::Message(m) => Input::Message(m),
            Packet::Binary(b) => Input::Binary(b.into_owned()),
            Packet::Close => {
                self.close(CloseReason::ClientClose);
                Input::Nothing
            }
            Packet::Noop => Input::Nothing,
            // A v4 client never pings, opens or upgrades over its transport.
            Packet::Ping(_) | Packet::Open(_) | Packet::Upgrade => {
                self.close(CloseReason::TransportError);
                Input::Nothing
            }
        }
    }

    /// When [`EioSession::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        Some(self.probe_until.map_or(self.heartbeat, |p| p.min(self.heartbeat)))
    }

    /// Returns true when a probe timed out (the loop closes its WebSocket).
    pub fn handle_timeout(&mut self, now: Instant, times: &Times) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let probe_expired = self.probe_until.is_some_and(|t| t <= now);
        if probe_expired {
            self.end_probe();
        }
        if self.heartbeat > now {
            return probe_expired;
        }
        if self.awaiting_pong {
            self.close(CloseReason::PingTimeout);
        } else {
            // Timed from the moment the ping is queued, whether or not a transport is
            // attached to carry it: a polling client must poll to see it.
            self.awaiting_pong = true;
            self.heartbeat = now + times.ping_timeout;
            self.send(Out::Text(Box::from(&b"2"[..])));
        }
        probe_expired
    }

    /// Queues a packet for the client.
    pub fn send(&mut self, out: Out) {
        if self.closed.is_none() {
            self.queued_bytes += out.size();
            self.queue.push(out);
        }
    }

    /// Bytes waiting (what `--max-output` bounds).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    pub fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Everything waiting, for the transport that carries it now.
    pub fn take_queue(&mut self) -> Vec<Out> {
        self.queued_bytes = 0;
        std::mem::take(&mut self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times() -> Times {
        Times { ping_interval: Duration::from_millis(300), ping_timeout: Duration::from_millis(200) }
    }

    fn texts(s: &mut EioSession) -> Vec<String> {
        s.take_queue()
            .into_iter()
            .map(|o| match o {
                Out::Text(t) => String::from_utf8(t.into_vec()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn pings_on_schedule_and_times_out_without_a_pong() {
        let t0 = Instant::now();
        let (t, ms) = (times(), Duration::from_millis);
        let mut s = EioSession::new(TransportKind::WebSocket, t0, &t);
        assert_eq!(s.poll_timeout(), Some(t0 + ms(300)), "the first ping is pingInterval after the open");
        s.handle_timeout(t0 + ms(299), &t);
        assert!(!s.has_output());
        s.handle_timeout(t0 + ms(300), &t);
        assert_eq!(texts(&mut s), vec!["2"]);
        assert_eq!(s.poll_timeout(), Some(t0 + ms(500)), "pingTimeout from the ping, no grace");
        assert_eq!(s.on_packet(Packet::Pong(b""), Via::Transport, t0 + ms(350), &t), Input::Nothing);
        assert_eq!(s.poll_timeout(), Some(t0 + ms(650)), "the next ping is pingInterval after the pong");
        s.handle_timeout(t0 + ms(650), &t);
        assert_eq!(texts(&mut s), vec!["2"]);
        s.handle_timeout(t0 + ms(849), &t);
        assert!(s.is_open());
        s.handle_timeout(t0 + ms(850), &t);
        assert_eq!(s.closed, Some(CloseReason::PingTimeout));
        assert_eq!(s.poll_timeout(), None);
        s.send(Out::Text(Box::from(&b"4x"[..])));
        assert!(!s.has_output(), "a closed session queues nothing");
    }

    #[test]
    fn upgrade_probe_then_5() {
        let (t0, t) = (Instant::now(), times());
        let mut s = EioSession::new(TransportKind::Polling, t0, &t);
        s.begin_probe(t0);
        assert_eq!(s.on_packet(Packet::Upgrade, Via::Probe, t0, &t), Input::CloseProbe, "5 before the probe");
        s.begin_probe(t0);
        assert_eq!(s.on_packet(Packet::Ping(b"probe"), Via::Probe, t0, &t), Input::ProbeAnswer);
        assert!(s.releases_polls());
        assert_eq!(s.on_packet(Packet::Ping(b"probe"), Via::Probe, t0, &t), Input::CloseProbe, "one probe at a time");
        assert_eq!(s.transport, TransportKind::Polling);
        s.begin_probe(t0);
        assert_eq!(s.on_packet(Packet::Ping(b"probe"), Via::Probe, t0, &t), Input::ProbeAnswer);
        // Packets keep arriving over polling while the probe waits for its 5.
        assert_eq!(s.on_packet(Packet::Message(b"2[\"a\"]"), Via::Transport, t0, &t), Input::Message(b"2[\"a\"]"));
        assert_eq!(s.on_packet(Packet::Upgrade, Via::Probe, t0, &t), Input::Upgraded);
        assert_eq!(s.transport, TransportKind::WebSocket);
        assert!(!s.releases_polls());
        assert_eq!(s.on_packet(Packet::Ping(b"probe"), Via::Probe, t0, &t), Input::CloseProbe, "no second upgrade");
    }

    #[test]
    fn a_probe_that_never_sends_5_is_given_up() {
        let (t0, t) = (Instant::now(), times());
        let mut s = EioSession::new(TransportKind::Polling, t0, &t);
        s.begin_probe(t0);
        s.on_packet(Packet::Ping(b"probe"), Via::Probe, t0, &t);
        assert!(s.releases_polls());
        // Ponged along, so the heartbeat is not what ends it.
        let mut now = t0;
        while now < t0 + UPGRADE_TIMEOUT {
            now += Duration::from_millis(300);
            s.handle_timeout(now, &t);
            s.on_packet(Packet::Pong(b""), Via::Transport, now, &t);
        }
        s.handle_timeout(t0 + UPGRADE_TIMEOUT, &t);
        assert!(!s.releases_polls() && s.is_open(), "polling goes on");
        s.begin_probe(now);
        assert_eq!(s.on_packet(Packet::Ping(b"probe"), Via::Probe, now, &t), Input::ProbeAnswer, "and may probe again");
    }

    #[test]
    fn client_close_and_protocol_errors() {
        let (t0, t) = (Instant::now(), times());
        let mut s = EioSession::new(TransportKind::Polling, t0, &t);
        s.on_packet(Packet::Close, Via::Transport, t0, &t);
        assert_eq!(s.closed, Some(CloseReason::ClientClose));
        let mut s = EioSession::new(TransportKind::Polling, t0, &t);
        s.on_packet(Packet::Ping(b""), Via::Transport, t0, &t);
        assert_eq!(s.closed, Some(CloseReason::TransportError), "a v4 client does not ping");
    }
}
