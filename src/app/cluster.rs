//! Publishing when the node is part of a cluster: every publish goes through Redis (which
//! gives it its id and carries it to every node, this one included), and a request whose
//! answer depends on Redis is parked until Redis answers.

use std::rc::Rc;

use super::{Ctx, Reply};
use crate::cluster::wire;
use crate::hub::{Extra, HubError, Message, SinkRef, TopicKey, TopicKind};
use crate::proto::http1::Response;

/// What to do once Redis has answered a publish.
#[derive(Debug)]
pub enum Then {
    /// Nothing waits (a frame a WebSocket published, the ticker, a socket.io relay).
    Nothing,
    /// Answer the HTTP request parked on this connection.
    Http { conn: SinkRef, answer: Answer },
    /// Send a `/ws` control socket its `{"ok":"publish"}` (or the error).
    WsAck { conn: SinkRef, channel: Rc<str> },
}

/// Which route's answer a parked request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Channel,
    User,
    Chat,
    RestMessage,
    SioEmit,
}

/// How a publish went out.
#[derive(Debug)]
pub enum Published {
    /// Standalone: recorded and queued for local delivery.
    Local(Rc<Message>),
    /// Sent to Redis; the answer comes later (see [`Then`]).
    Sent,
}

#[derive(Debug)]
pub enum PublishError {
    Hub(HubError),
    /// Redis is unreachable (or not keeping up): why.
    Cluster(String),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Hub(e) => e.fmt(f),
            PublishError::Cluster(why) => write!(f, "the cluster is unavailable: {why}"),
        }
    }
}

/// Where publishes go: the local hub, or Redis.
pub struct Publisher<'a> {
    pub hub: &'a mut crate::hub::Hub,
    pub outbox: &'a mut Vec<Rc<Message>>,
    pub cluster: Option<&'a mut crate::cluster::node::Node<Then>>,
    pub now: std::time::Instant,
    pub wall_us: u64,
}

impl Publisher<'_> {
    /// Publishes a message. A user's message goes only where the user is connected
    /// (`Published::Local` with no subscribers is never made for users: see `send_to_user`).
    pub fn publish(&mut self, key: &TopicKey, event: Option<&str>, data: Rc<[u8]>, extra: Extra, then: Then) -> Result<Published, PublishError> {
        match self.cluster.as_deref_mut() {
            None => {
                let msg = self.hub.publish_with(key, event, data, extra, self.now, self.wall_us).map_err(PublishError::Hub)?;
                self.outbox.push(msg.clone());
                Ok(Published::Local(msg))
            }
            Some(node) => {
                if let Some(why) = node.unavailable() {
                    return Err(PublishError::Cluster(why.to_string()));
                }
                let origin = extra.origin.map(|o| (node.node_id.as_str(), o));
                let body = wire::encode_body(event, &data, extra.sio.as_deref(), origin);
                node.publish(key, &body, key.kind == TopicKind::User, then).map_err(|e| {
                    PublishError::Cluster(match e {
                        crate::cluster::link::SendError::NotReady => "not connected to Redis".into(),
                        crate::cluster::link::SendError::Full => "Redis is not keeping up".into(),
                    })
                })?;
                Ok(Published::Sent)
            }
        }
    }
}

impl Ctx<'_> {
    pub fn publisher(&mut self) -> Publisher<'_> {
        Publisher { hub: self.hub, outbox: self.outbox, cluster: self.cluster.as_deref_mut(), now: self.now, wall_us: self.wall_us }
    }

    /// Publishes for an HTTP route: in a cluster the request is parked with `answer`.
    pub fn publish_for(&mut self, key: &TopicKey, event: Option<&str>, data: Rc<[u8]>, extra: Extra, answer: Answer) -> Result<Published, PublishError> {
        let then = Then::Http { conn: self.conn, answer };
        self.publisher().publish(key, event, data, extra, then)
    }
}

/// What a publish that cannot be taken now is told: 503, try again shortly.
pub fn unavailable(ctx: &Ctx<'_>, e: PublishError) -> Reply {
    match e {
        PublishError::Hub(e) => super::pubsub::hub_error(ctx, e),
        PublishError::Cluster(_) => {
            let r = Response::json(503, &serde_json::json!({"error": e.to_string()})).header("Retry-After", "1");
            super::pubsub::with_cors(ctx, r).into()
        }
    }
}

/// The answer to a parked request, once Redis answered (`Ok((id, receiving nodes))`; no id:
/// a user no node has).
pub fn answer(cfg: &crate::config::Config, answer: Answer, result: Result<(Option<u64>, i64), String>) -> Response {
    use serde_json::json;
    let cors = |mut r: Response| {
        r.headers.extend(super::cors_headers(cfg));
        r
    };
    let (id, nodes) = match result {
        Ok(r) => r,
        Err(why) => {
            let body = json!({"error": format!("the cluster is unavailable: {why}")});
            return cors(Response::json(503, &body).header("Retry-After", "1"));
        }
    };
    match (answer, id) {
        (Answer::Chat, _) => Response::empty(204),
        (Answer::RestMessage, None) => Response::json(200, &json!({"succeed": false, "msg": "recipient offline"})),
        (Answer::RestMessage, Some(_)) => Response::json(200, &json!({"succeed": true})),
        (Answer::User, None) => cors(Response::json(404, &json!({"error": "user offline"}))),
        (_, id) => cors(Response::json(202, &json!({"id": id.unwrap_or(0).to_string(), "nodes": nodes}))),
    }
}
