//! The `/ws` control protocol: JSON messages that subscribe, unsubscribe and publish.
//!
//! ```text
//! → {"op":"subscribe","channel":"a"}            ← {"ok":"subscribe","channel":"a"}
//! → {"op":"subscribe","channel":"a","since":"…"} ← the ack, {"reset":true,…} if history is
//!                                                  short, then every message after `since`
//! → {"op":"unsubscribe","channel":"a"}          ← {"ok":"unsubscribe","channel":"a"}
//! → {"op":"publish","channel":"a","data":"…"}   ← {"ok":"publish","channel":"a","id":"…"}
//! ← {"channel":"a","id":"…","event":null,"data":"…"}   (each message on a subscribed channel)
//! ← {"error":"…"}                                       (a bad request; the socket stays open)
//! ```

use serde_json::{json, Value};

use super::conn::Conn;
use super::http::Env;
use super::stream;
use super::ws::queue_frame;
use crate::hub::{valid_channel_name, Encoding, TopicKey};
use crate::proto::ws::OpCode;

/// Most channels one control connection may follow.
const MAX_SUBSCRIPTIONS: usize = 256;

/// Acts on one control message and queues the answer (and, for a resuming subscribe, the
/// missed messages).
pub fn handle(conn: &mut Conn, data: &[u8], publish_allowed: bool, env: &mut Env<'_>) {
    if let Err(e) = run(conn, data, publish_allowed, env) {
        send(conn, &json!({ "error": e }));
    }
}

fn run(conn: &mut Conn, data: &[u8], publish_allowed: bool, env: &mut Env<'_>) -> Result<(), String> {
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
                Some(Value::String(s)) => Some(s.parse::<u64>().map_err(|_| "invalid \"since\": expected a message id")?),
                Some(Value::Number(n)) => Some(n.as_u64().ok_or("invalid \"since\"")?),
                Some(_) => return Err("invalid \"since\"".into()),
            };
            let key = TopicKey::channel(name);
            if !conn.subs.iter().any(|(k, _)| *k == key) {
                if conn.subs.len() >= MAX_SUBSCRIPTIONS {
                    return Err(format!("at most {MAX_SUBSCRIPTIONS} channels per connection"));
                }
                stream::subscribe(conn, &mut env.app.hub, key.clone(), Encoding::WsEnvelope);
            }
            send(conn, &json!({"ok": "subscribe", "channel": name}));
            if let Some(since) = since {
                let backlog = env.app.hub.backlog(std::slice::from_ref(&key), since, env.now);
                if backlog.reset {
                    send(conn, &json!({"reset": true, "channel": name}));
                }
                for m in &backlog.messages {
                    conn.out.push_shared(m.encoded(Encoding::WsEnvelope).clone());
                }
            }
        }
        "unsubscribe" => {
            let name = channel()?;
            let key = TopicKey::channel(name);
            if let Some(i) = conn.subs.iter().position(|(k, _)| *k == key) {
                let (key, slot) = conn.subs.swap_remove(i);
                env.app.hub.unsubscribe(&key, slot);
            }
            send(conn, &json!({"ok": "unsubscribe", "channel": name}));
        }
        "publish" => {
            if !publish_allowed {
                return Err("publishing needs the publish token in the handshake".into());
            }
            let name = channel()?;
            let data = v.get("data").and_then(Value::as_str).ok_or("missing \"data\" (a string)")?;
            let event = match v.get("event") {
                None | Some(Value::Null) => None,
                Some(Value::String(e)) if !e.is_empty() && !e.contains(['\r', '\n']) => Some(e.as_str()),
                Some(_) => return Err("invalid \"event\": one line of text".into()),
            };
            let msg = env.app.publish(&TopicKey::channel(name), event, data.as_bytes(), env.now, env.wall_us);
            send(conn, &json!({"ok": "publish", "channel": name, "id": msg.id.to_string()}));
        }
        other => return Err(format!("unknown op {other:?}: expected subscribe, unsubscribe or publish")),
    }
    Ok(())
}

fn send(conn: &mut Conn, v: &Value) {
    queue_frame(&mut conn.out, OpCode::Text, serde_json::to_vec(v).unwrap_or_default());
}
