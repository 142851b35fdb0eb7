//! Counters shown by `GET /stats` and logged every `--stats-interval`.

use std::time::Instant;

use crate::hub::Hub;

/// What a connection currently is; counted per kind in `/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    Http,
    WebSocket,
    Sse,
    LongPoll,
}

impl ConnKind {
    pub const ALL: [ConnKind; 4] = [ConnKind::Http, ConnKind::WebSocket, ConnKind::Sse, ConnKind::LongPoll];

    pub fn name(self) -> &'static str {
        match self {
            ConnKind::Http => "http",
            ConnKind::WebSocket => "websocket",
            ConnKind::Sse => "sse",
            ConnKind::LongPoll => "longpoll",
        }
    }
}

#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    open: [u64; 4],
    pub accepted: u64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connections closed because their output made no progress for `--write-timeout`.
    pub write_timeouts: u64,
}

impl Stats {
    pub fn new(now: Instant) -> Self {
        Stats { started: now, open: [0; 4], accepted: 0, requests: 0, bytes_in: 0, bytes_out: 0, write_timeouts: 0 }
    }

    pub fn conn_opened(&mut self, kind: ConnKind) {
        self.open[kind as usize] += 1;
    }

    pub fn conn_closed(&mut self, kind: ConnKind) {
        self.open[kind as usize] -= 1;
    }

    pub fn open(&self, kind: ConnKind) -> u64 {
        self.open[kind as usize]
    }

    pub fn open_total(&self) -> u64 {
        self.open.iter().sum()
    }

    pub fn to_json(&self, now: Instant, hub: &Hub) -> serde_json::Value {
        let mut conns = serde_json::Map::new();
        for k in ConnKind::ALL {
            conns.insert(k.name().into(), self.open(k).into());
        }
        conns.insert("total".into(), self.open_total().into());
        serde_json::json!({
            "connections": conns,
            "connections_accepted": self.accepted,
            "requests": self.requests,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "uptime_secs": now.duration_since(self.started).as_secs(),
            "channels": hub.channel_count(),
            "users_online": hub.users_online(),
            "subscribers": {
                "websocket": hub.stats.subscribers[0],
                "sse": hub.stats.subscribers[1],
                "longpoll": hub.stats.subscribers[2],
                "socketio": hub.stats.subscribers[3],
            },
            "messages_published": hub.stats.published,
            "messages_delivered": hub.stats.delivered,
            "slow_consumer_disconnects": hub.stats.slow_consumer_disconnects,
            "write_timeouts": self.write_timeouts,
            "history": {
                "messages": hub.history_messages(),
                "bytes": hub.history_bytes().0,
                "budget": hub.history_bytes().1,
            },
        })
    }

    /// One log line with the same counters.
    pub fn summary(&self, now: Instant, hub: &Hub) -> String {
        format!(
            "connections={} (http={} websocket={} sse={} longpoll={}) accepted={} requests={} bytes_in={} bytes_out={} uptime={}s \
             channels={} published={} delivered={} slow_consumers={} write_timeouts={} history={}/{}B",
            self.open_total(),
            self.open(ConnKind::Http),
            self.open(ConnKind::WebSocket),
            self.open(ConnKind::Sse),
            self.open(ConnKind::LongPoll),
            self.accepted,
            self.requests,
            self.bytes_in,
            self.bytes_out,
            now.duration_since(self.started).as_secs(),
            hub.channel_count(),
            hub.stats.published,
            hub.stats.delivered,
            hub.stats.slow_consumer_disconnects,
            self.write_timeouts,
            hub.history_bytes().0,
            hub.history_bytes().1,
        )
    }
}
