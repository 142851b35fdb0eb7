//! `GET /metrics`: the `/stats` figures in the Prometheus text exposition format (0.0.4),
//! named by Prometheus conventions: a `pushwire_` prefix, `_total` on counters, base units
//! (seconds, bytes), labels for what differs only by transport.

use std::fmt::Write;

use super::stats::LATENCY_BUCKETS_US;
use super::{ConnKind, Ctx, Params, Reply};
use crate::proto::http1::{Body, Request, Response};

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Out(String);

impl Out {
    /// One metric family: its HELP and TYPE lines, then its samples (`labels` may be empty).
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {v}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
            }
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help, &[("", v)]);
    }
}

pub fn metrics(ctx: &mut Ctx<'_>, _: &Request, _: &Params) -> Reply {
    let (st, hub) = (ctx.stats, &*ctx.hub);
    let mut o = Out(String::with_capacity(4096));
    let conns: Vec<(String, f64)> = ConnKind::ALL.iter().map(|k| (format!("transport=\"{}\"", k.name()), st.open(*k) as f64)).collect();
    let conns: Vec<(&str, f64)> = conns.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    o.family("pushwire_connections", "gauge", "Open connections by what they speak now.", &conns);
    o.one("pushwire_connections_accepted_total", "counter", "Connections accepted.", st.accepted as f64);
    o.one("pushwire_requests_total", "counter", "HTTP requests routed.", st.requests as f64);
    o.one("pushwire_received_bytes_total", "counter", "Bytes read from client sockets.", st.bytes_in as f64);
    o.one("pushwire_sent_bytes_total", "counter", "Bytes written to client sockets.", st.bytes_out as f64);
    o.one("pushwire_uptime_seconds", "gauge", "Seconds since the server started.", ctx.now.duration_since(st.started).as_secs_f64());
    o.one("pushwire_channels", "gauge", "Channels that exist (with subscribers or history).", hub.channel_count() as f64);
    o.one("pushwire_users_online", "gauge", "Users with at least one connection.", hub.users_online() as f64);
    let subs = hub.stats.subscribers;
    o.family(
        "pushwire_subscriptions",
        "gauge",
        "Subscriptions by transport (one stream on two channels counts twice).",
        &[("transport=\"websocket\"", subs[0] as f64), ("transport=\"sse\"", subs[1] as f64), ("transport=\"longpoll\"", subs[2] as f64), ("transport=\"socketio\"", subs[3] as f64)],
    );
    o.one("pushwire_messages_published_total", "counter", "Messages published (in a cluster: received from Redis).", hub.stats.published as f64);
    o.one("pushwire_messages_delivered_total", "counter", "Messages queued to subscribers.", hub.stats.delivered as f64);
    o.one("pushwire_slow_consumer_disconnects_total", "counter", "Subscribers cut off for letting more than --max-output pile up.", hub.stats.slow_consumer_disconnects as f64);
    o.one("pushwire_write_timeouts_total", "counter", "Connections closed because their output did not move for --write-timeout.", st.write_timeouts as f64);
    let (bytes, budget) = hub.history_bytes();
    o.one("pushwire_history_messages", "gauge", "Messages kept for replay.", hub.history_messages() as f64);
    o.one("pushwire_history_bytes", "gauge", "What kept history is counted at against --history-bytes.", bytes as f64);
    o.one("pushwire_history_budget_bytes", "gauge", "--history-bytes.", budget as f64);
    o.one("pushwire_history_evictions_total", "counter", "Kept messages dropped before their time (past --history, or by the byte budget).", hub.stats.evicted as f64);
    o.one("pushwire_socketio_sessions", "gauge", "Engine.IO sessions.", ctx.sio.sessions.len() as f64);
    o.one("pushwire_socketio_sockets", "gauge", "Socket.IO namespace connections.", ctx.sio.socket_count() as f64);
    if let Some(node) = ctx.cluster.as_ref() {
        let (live, pending) = node.subscription_counts();
        o.one("pushwire_cluster_up", "gauge", "1 while both Redis links are up.", f64::from(u8::from(node.unavailable().is_none())));
        o.family(
            "pushwire_cluster_subscriptions",
            "gauge",
            "Topics this node follows on Redis, by whether Redis confirmed them.",
            &[("state=\"confirmed\"", live as f64), ("state=\"pending\"", pending as f64)],
        );
    }
    // The histogram: cumulative buckets, then sum and count.
    let h = &st.latency;
    let name = "pushwire_delivery_latency_seconds";
    let _ = writeln!(o.0, "# HELP {name} From a message's publish to the write that put it on a subscriber's socket (the oldest message of each drained write).\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, le) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += h.counts[i];
        let _ = writeln!(o.0, "{name}_bucket{{le=\"{}\"}} {cumulative}", *le as f64 / 1e6);
    }
    let _ = writeln!(o.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o.0, "{name}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(o.0, "{name}_count {}", h.count);
    Response::new(200, CONTENT_TYPE, Body::Owned(o.0.into_bytes())).header("Cache-Control", "no-store").into()
}
