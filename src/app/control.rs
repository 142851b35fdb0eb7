//! The `/ws` control protocol: JSON messages that subscribe, unsubscribe and publish.
//!
//! ```text
//! → {"op":"subscribe","channel":"a"}            ← {"ok":"subscribe","channel":"a"}
//! → {"op":"subscribe","channel":"a","since":"…"} ← the ack, {"reset":true,…} if history is
//!                                                  short, then every message after `since`
//!                                                  (on a followed channel: those it did not
//!                                                  have live)
//! → {"op":"unsubscribe","channel":"a"}          ← {"ok":"unsubscribe","channel":"a"}
//! → {"op":"publish","channel":"a","data":"…"}   ← {"ok":"publish","channel":"a","id":"…"}
//! ← {"channel":"a","id":"…","event":null,"data":"…"}   (each message on a subscribed channel)
//! ← {"error":"…"}                                       (a bad request; the socket stays open)
//! ```
//!
//! This is application logic: it knows the hub and the message formats, never a socket. The
//! connection it runs on is reached through [`ControlLink`], which the WebSocket transport
//! implements.

use std::time::Instant;

use serde_json::{json, Value};

use super::{App, WsPublish};
use super::cluster::{Published, Then};
use crate::hub::{valid_channel_name, Encoding, Hub, HubError, Message, SinkRef, TopicKey};

/// What the control protocol needs from the connection it runs on.
pub trait ControlLink {
    /// How many topics the connection follows.
    fn subscription_count(&self) -> usize;
    /// When the connection follows `key`: the id after which its messages come live.
    fn live_after(&self, hub: &Hub, key: &TopicKey) -> Option<u64>;
    /// Follows `key`; its messages arrive encoded as `encoding`. Returns the id after which
    /// they come live.
    fn subscribe(&mut self, hub: &mut Hub, key: TopicKey, encoding: Encoding) -> Result<u64, HubError>;
    fn unsubscribe(&mut self, hub: &mut Hub, key: &TopicKey);
    /// Queues one text message (a JSON reply).
    fn send_text(&mut self, text: Vec<u8>);
    /// Queues an already-encoded frame (a message replayed from history).
    /// A hub message in `plain` frames (compressed if the connection negotiated it).
    fn send_message(&mut self, m: &Message, plain: Encoding);
    /// The connection, as the hub knows it.
    fn sink(&self) -> SinkRef;
    /// Holds back live messages of a followed topic until a resume from Redis is complete.
    fn mute(&mut self, hub: &mut Hub, key: &TopicKey);
}

/// Most channels one control connection may follow.
const MAX_SUBSCRIPTIONS: usize = 256;

/// Acts on one control message and queues the answer (and, for a resuming subscribe, the
/// missed messages).
pub fn handle(link: &mut dyn ControlLink, app: &mut App, data: &[u8], publish: WsPublish, now: Instant, wall_us: u64) {
    if let Err(e) = run(link, app, data, publish, now, wall_us) {
        send(link, &json!({ "error": e }));
    }
}

fn run(link: &mut dyn ControlLink, app: &mut App, data: &[u8], publish: WsPublish, now: Instant, wall_us: u64) -> Result<(), String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
    let op = v.get("op").and_then(Value::as_str).ok_or("missing \"op\"")?;
    let channel = || -> Result<&str, String> {
        let c = v.get("channel").and_then(Value::as_str).ok_or("missing \"channel\"")?;
        if valid_channel_name(c) {
            Ok(c)
        } else {
            Err(format!("invalid channel name {c:?}"))
        }
    };
    match op {
        "subscribe" => {
            let name = channel()?;
            let since = match v.get("since") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(crate::hub::parse_message_id(s).ok_or("invalid \"since\": expected a message id")?),
                Some(Value::Number(n)) => Some(n.as_u64().ok_or("invalid \"since\"")?),
                Some(_) => return Err("invalid \"since\"".into()),
            };
            let key = TopicKey::channel(name);
            if name == super::dashboard::STATS_CHANNEL {
                app.ticker_wanted = true;
            }
            let followed = link.live_after(&app.hub, &key).is_some();
            let live_after = match link.live_after(&app.hub, &key) {
                Some(after) => after,
                None => {
                    if link.subscription_count() >= MAX_SUBSCRIPTIONS {
                        return Err(format!("at most {MAX_SUBSCRIPTIONS} channels per connection"));
                    }
                    link.subscribe(&mut app.hub, key.clone(), Encoding::WsEnvelope).map_err(|e| e.to_string())?
                }
            };
            send(link, &json!({"ok": "subscribe", "channel": name}));
            if let (Some(since), Some(_)) = (since, &app.cluster) {
                // In a cluster the streams in Redis know what came after `since`: live
                // messages wait until the loop has replayed those. Only for a new
                // subscription: one already followed has what it has (one resume per
                // subscription, however often a client asks).
                if !followed {
                    link.mute(&mut app.hub, &key);
                    app.resumes.push((link.sink(), 0, vec![key], since));
                }
                return Ok(());
            }
            if since.is_some_and(|s| s > app.hub.last_id()) {
                // An id no message has had (another deployment, a clock that was ahead):
                // the client's position means nothing here, and it must be told.
                link.send_text(reset_message(name));
                return Ok(());
            }
            // Only what live delivery does not bring: the socket has had (or is about to get)
            // everything after `live_after`. For a new subscription that is everything
            // published so far; on a followed channel, what came before it subscribed.
            if let Some(since) = since.filter(|&s| s < live_after) {
                let backlog = app.hub.backlog(std::slice::from_ref(&key), since, now);
                if backlog.reset {
                    link.send_text(reset_message(name));
                }
                for m in backlog.messages.iter().take_while(|m| m.id <= live_after) {
                    link.send_message(m, Encoding::WsEnvelope);
                }
            }
        }
        "unsubscribe" => {
            let name = channel()?;
            let key = TopicKey::channel(name);
            link.unsubscribe(&mut app.hub, &key);
            send(link, &json!({"ok": "unsubscribe", "channel": name}));
        }
        "publish" => {
            match publish {
                WsPublish::Allowed => {}
                WsPublish::Disabled => return Err("publishing over WebSocket is turned off on this server (--ws-publish=false)".into()),
                WsPublish::NeedsToken => return Err("publishing needs the publish token in the handshake".into()),
            }
            let name = channel()?;
            if super::dashboard::is_system_channel(name) {
                return Err("channels named pushwire:… are the server's: they can be followed, not published to".into());
            }
            let data = v.get("data").and_then(Value::as_str).ok_or("missing \"data\" (a string)")?;
            let event = match v.get("event") {
                None | Some(Value::Null) => None,
                Some(Value::String(e)) if !e.is_empty() && !e.contains(['\r', '\n']) => Some(e.as_str()),
                Some(_) => return Err("invalid \"event\": one line of text".into()),
            };
            let then = Then::WsAck { conn: link.sink(), channel: name.into() };
            match app.publish(&TopicKey::channel(name), event, data.as_bytes(), now, wall_us, then).map_err(|e| e.to_string())? {
                Published::Local(msg) => send(link, &json!({"ok": "publish", "channel": name, "id": msg.id.to_string()})),
                // The ack goes out when Redis has taken it.
                Published::Sent => {}
            }
        }
        other => return Err(format!("unknown op {other:?}: expected subscribe, unsubscribe or publish")),
    }
    Ok(())
}

/// `{"reset": true, "channel": …}`: the socket's position on the channel may have lost
/// messages (history too short, or lost with the cluster's Redis).
pub fn reset_message(channel: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"reset": true, "channel": channel})).unwrap_or_default()
}

fn send(link: &mut dyn ControlLink, v: &Value) {
    link.send_text(serde_json::to_vec(v).unwrap_or_default());
}
