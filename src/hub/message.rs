//! A published message and its wire encodings, each computed once and shared by every
//! recipient that speaks it (STYLE habit 7: encode once, share everywhere).

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Instant;

use super::TopicKind;
use crate::proto::sse;
use crate::proto::ws::{encode_server_frame, OpCode};

/// How a subscriber wants messages on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A WebSocket frame holding the data (text if it is UTF-8, else binary).
    WsData,
    /// A WebSocket text frame holding the JSON envelope (the `/ws` control endpoint).
    WsEnvelope,
    /// A Server-Sent Event with `id:`, `event:` and `data:` lines.
    Sse,
    /// Long-poll: the JSON object, placed in a response array per request.
    LongPoll,
}

const ENCODINGS: usize = 4;

#[derive(Debug)]
pub struct Message {
    pub kind: TopicKind,
    pub topic: Rc<str>,
    /// Increasing per channel, and across restarts (see `Hub::next_id`).
    pub id: u64,
    pub event: Option<Rc<str>>,
    pub data: Rc<[u8]>,
    pub published: Instant,
    encoded: [OnceCell<Rc<[u8]>>; ENCODINGS],
}

impl Message {
    pub fn new(kind: TopicKind, topic: Rc<str>, id: u64, event: Option<Rc<str>>, data: Rc<[u8]>, now: Instant) -> Message {
        Message { kind, topic, id, event, data, published: now, encoded: Default::default() }
    }

    /// What the message counts for in the history budget: its data and event name.
    pub fn size(&self) -> usize {
        self.data.len() + self.event.as_ref().map_or(0, |e| e.len())
    }

    /// The message's bytes in `enc`, encoded on first use.
    pub fn encoded(&self, enc: Encoding) -> &Rc<[u8]> {
        self.encoded[enc as usize].get_or_init(|| {
            let mut out = Vec::with_capacity(self.data.len() + 64);
            match enc {
                Encoding::WsData => {
                    let op = if std::str::from_utf8(&self.data).is_ok() { OpCode::Text } else { OpCode::Binary };
                    encode_server_frame(&mut out, op, &self.data);
                }
                Encoding::WsEnvelope => {
                    let json = serde_json::to_vec(&self.envelope()).unwrap_or_default();
                    encode_server_frame(&mut out, OpCode::Text, &json);
                }
                Encoding::Sse => {
                    let id = self.id.to_string();
                    sse::encode_event(&mut out, Some(&id), self.event.as_deref(), &self.data);
                }
                Encoding::LongPoll => out = serde_json::to_vec(&self.envelope()).unwrap_or_default(),
            }
            out.into()
        })
    }

    /// `{"channel"|"user": name, "id": "...", "event": ..., "data": "..."}`. Data that is not
    /// UTF-8 is carried lossily: JSON strings are text.
    pub fn envelope(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert(self.kind.field().into(), self.topic.as_ref().into());
        m.insert("id".into(), self.id.to_string().into());
        m.insert("event".into(), self.event.as_deref().map_or(serde_json::Value::Null, Into::into));
        m.insert("data".into(), String::from_utf8_lossy(&self.data).into_owned().into());
        serde_json::Value::Object(m)
    }
}
