//! The live dashboard: while anyone follows the system channel `pushwire:stats`, the server
//! publishes its figures there once a second (a JSON object, as an SSE `message`), and the
//! embedded page `/dashboard` draws them. The server's own channel: nobody else may publish
//! on `pushwire:…` channels. In a cluster each node publishes its own figures locally.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::json;

use super::Ctx;
use crate::hub::TopicKey;

/// The system channel the figures are published on.
pub const STATS_CHANNEL: &str = "pushwire:stats";

/// Channels named `pushwire:…` are the server's: clients may follow them, not publish.
pub fn is_system_channel(name: &str) -> bool {
    name.starts_with("pushwire:")
}

/// How many of the busiest channels each update lists.
const BUSIEST: usize = 10;

/// What the previous tick saw, to turn totals into rates.
#[derive(Debug, Default)]
pub struct Dashboard {
    published: HashMap<Rc<str>, u64>,
    /// `published` holds the previous tick's counts (false on the first tick of a watch).
    primed: bool,
}

/// Publishes one update if anyone follows the channel; returns whether to keep ticking.
pub fn tick(d: &mut Dashboard, ctx: &mut Ctx<'_>) -> bool {
    let key = TopicKey::channel(STATS_CHANNEL);
    if ctx.hub.subscriber_count(&key) == 0 {
        d.published.clear();
        d.primed = false;
        return false;
    }
    let mut busiest: Vec<(Rc<str>, u64, usize)> = Vec::new();
    let mut seen = HashMap::with_capacity(d.published.len());
    for (name, published, subscribers) in ctx.hub.channel_figures() {
        if is_system_channel(name) {
            continue;
        }
        // A channel first seen now counts from 0 (it was made since the last tick), unless
        // this is the first tick: what came before the dashboard opened is no burst.
        let before = d.published.get(name).copied().unwrap_or(if d.primed { 0 } else { published });
        busiest.push((name.clone(), published.saturating_sub(before), subscribers));
        seen.insert(name.clone(), published);
    }
    d.published = seen;
    d.primed = true;
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    busiest.truncate(BUSIEST);
    let st = ctx.stats;
    let subs = ctx.hub.stats.subscribers;
    let figures = json!({
        "t": ctx.wall_us / 1000,
        "uptime_secs": ctx.now.duration_since(st.started).as_secs(),
        "connections": {"http": st.open(super::ConnKind::Http), "websocket": st.open(super::ConnKind::WebSocket),
                        "sse": st.open(super::ConnKind::Sse), "longpoll": st.open(super::ConnKind::LongPoll)},
        "subscriptions": {"websocket": subs[0], "sse": subs[1], "longpoll": subs[2], "socketio": subs[3]},
        "channels": ctx.hub.channel_count(),
        "users_online": ctx.hub.users_online(),
        "socketio_sessions": ctx.sio.sessions.len(),
        "published": ctx.hub.stats.published,
        "delivered": ctx.hub.stats.delivered,
        "bytes_in": st.bytes_in,
        "bytes_out": st.bytes_out,
        "busiest": busiest.iter().map(|(c, n, s)| json!({"channel": &**c, "messages": n, "subscribers": s})).collect::<Vec<_>>(),
    });
    let data = serde_json::to_vec(&figures).unwrap_or_default();
    // Local, also in a cluster: these are this node's figures.
    match ctx.hub.publish(&key, None, data.into(), ctx.now, ctx.wall_us) {
        Ok(msg) => {
            ctx.outbox.push(msg);
            true
        }
        Err(_) => false,
    }
}
