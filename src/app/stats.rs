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

/// Publish-to-write latency: from a message's publish to the write that finished putting
/// it (and what was queued with it) on a subscriber's socket. Recorded once per drained
/// write, for the oldest message in it, so it is the worst case of each batch. Bucket upper
/// bounds in microseconds, as Prometheus buckets (`le`, in seconds).
pub const LATENCY_BUCKETS_US: [u64; 14] = [250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];

#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Counts per bucket (not cumulative), and one for above the last.
    pub counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub fn record(&mut self, d: std::time::Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us += us;
        self.count += 1;
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
    pub latency: Histogram,
}

impl Stats {
    pub fn new(now: Instant) -> Self {
        Stats { started: now, open: [0; 4], accepted: 0, requests: 0, bytes_in: 0, bytes_out: 0, write_timeouts: 0, latency: Histogram::default() }
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
                "evicted": hub.stats.evicted,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latencies_land_in_their_buckets() {
        let mut h = Histogram::default();
        for us in [0, 250, 251, 9_999, 10_000_001] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.counts[0], 2, "0 and 250 are <= 250 us");
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[5], 1, "9,999 us <= 10 ms");
        assert_eq!(h.counts[LATENCY_BUCKETS_US.len()], 1, "above the last bucket");
        assert_eq!((h.count, h.sum_us), (5, 250 + 251 + 9_999 + 10_000_001));
    }
}
