//! A published message and its wire encodings, each computed once and shared by every
//! recipient that speaks it (STYLE habit 7: encode once, share everywhere), and a run of
//! messages delivered together.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::time::Instant;

use super::{SinkRef, TopicKind};
use crate::sio::wire::{self, SioPayload};
use crate::proto::sse;

use crate::proto::ws::{deflate, encode_server_frame, OpCode};

/// How a subscriber wants messages on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A WebSocket frame holding the data (text if it is UTF-8, else binary).
    WsData,
    /// A WebSocket text frame holding the JSON envelope (the `/ws` control endpoint).
    WsEnvelope,
    /// A Server-Sent Event with `id:`, `event:` and `data:` lines.
    Sse,
    /// Long-poll: `,` and the JSON object, an element of a response array with the separator
    /// that goes before it (so an answer is one queue entry per message, not two).
    LongPoll,
    /// Socket.IO over a WebSocket: the EVENT packet as a text frame (and binary frames for
    /// attachments), in the namespace the channel maps to (`sio/names.rs`).
    SioWs,
    /// Socket.IO over polling: the same packets as payload elements, each with the 0x1E
    /// separator before it.
    SioPoll,
    /// The two above with the message id appended as the last argument: the offset a
    /// socket.io client resumes from (`--sio-recovery`).
    SioWsOffset,
    SioPollOffset,
    /// Forever-iframe: `<script>p(envelope)</script>` (`proto/iframe.rs`).
    Iframe,
    /// The WebSocket encodings above for a connection that negotiated permessage-deflate:
    /// the same frames, each data frame of at least `--ws-compression-min` bytes compressed
    /// on its own (RSV1 set). The server never takes context over, so one compressed copy
    /// serves every such subscriber.
    WsDataDeflate,
    WsEnvelopeDeflate,
    SioWsDeflate,
    SioWsOffsetDeflate,
}

const ENCODINGS: usize = 13;

impl Encoding {
    /// This encoding for a WebSocket that negotiated permessage-deflate (the encodings that
    /// are not WebSocket frames are returned as they are).
    pub fn deflated(self) -> Encoding {
        match self {
            Encoding::WsData => Encoding::WsDataDeflate,
            Encoding::WsEnvelope => Encoding::WsEnvelopeDeflate,
            Encoding::SioWs => Encoding::SioWsDeflate,
            Encoding::SioWsOffset => Encoding::SioWsOffsetDeflate,
            other => other,
        }
    }

    /// For a compressed encoding, the plain one it is made from.
    pub fn uncompressed(self) -> Option<Encoding> {
        match self {
            Encoding::WsDataDeflate => Some(Encoding::WsData),
            Encoding::WsEnvelopeDeflate => Some(Encoding::WsEnvelope),
            Encoding::SioWsDeflate => Some(Encoding::SioWs),
            Encoding::SioWsOffsetDeflate => Some(Encoding::SioWsOffset),
            _ => None,
        }
    }
}

thread_local! {
    /// `--ws-compression-min`. A setting of the loop's thread rather than an argument:
    /// encodings are built lazily wherever a message is first sent (delivery, replay,
    /// resume), and threading a number through each of them would only repeat it.
    static COMPRESSION_MIN: Cell<usize> = const { Cell::new(256) };
}

/// Sets the size under which compressed encodings leave a frame uncompressed (once, when
/// the server is built, on the thread that will run it).
pub fn set_compression_min(bytes: usize) {
    COMPRESSION_MIN.with(|c| c.set(bytes));
}

/// `--ws-compression-min`, for what a connection compresses on its own (echo, replies).
pub fn compression_min() -> usize {
    COMPRESSION_MIN.with(Cell::get)
}

pub struct Message {
    pub kind: TopicKind,
    pub topic: Rc<str>,
    /// Increasing per channel, and across restarts (see `Hub::next_id`).
    pub id: u64,
    pub event: Option<Rc<str>>,
    pub data: Rc<[u8]>,
    pub published: Instant,
    encoded: [OnceCell<Rc<[u8]>>; ENCODINGS],
    /// Bytes of the encodings built so far, allocation overhead included.
    encoded_bytes: Cell<usize>,
    /// While the message is kept in history: the hub's count of history bytes, which every
    /// encoding built later is added to (see [`super::history`]).
    pub(super) ledger: Cell<Option<Ledger>>,
    /// While kept in history: its node in the hub's publish-order list.
    pub(super) node: Cell<usize>,
    /// Emitted by a socket.io client: its exact arguments (what socket.io subscribers get).
    pub sio: Option<Box<SioPayload>>,
    /// The sink that published it, when it must not get it back (socket.io relays exclude
    /// the sender).
    pub origin: Option<SinkRef>,
}

/// The hub's count of the bytes its history holds, shared with the messages it keeps.
pub(super) type Ledger = Rc<Cell<usize>>;

/// What one heap allocation costs besides its bytes: glibc's malloc header and rounding
/// (16 bytes on 64-bit), plus the two reference counts of an `Rc`.
pub const RC_ALLOC_OVERHEAD: usize = 16 + 2 * std::mem::size_of::<usize>();

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("topic", &self.topic).field("id", &self.id).field("len", &self.data.len()).finish()
    }
}

impl Message {
    pub fn new(kind: TopicKind, topic: Rc<str>, id: u64, event: Option<Rc<str>>, data: Rc<[u8]>, now: Instant) -> Message {
        Message {
            kind,
            topic,
            id,
            event,
            data,
            published: now,
            encoded: Default::default(),
            encoded_bytes: Cell::new(0),
            ledger: Cell::new(None),
            node: Cell::new(usize::MAX),
            sio: None,
            origin: None,
        }
    }

    /// The payload's size (data and event name): what decides whether a message joins a run.
    pub fn size(&self) -> usize {
        let sio = self.sio.as_ref().map_or(0, |p| p.args.len() + p.attachments.iter().map(|a| a.len()).sum::<usize>());
        self.data.len() + self.event.as_ref().map_or(0, |e| e.len()) + sio
    }

    /// What keeping the message costs in memory, as the history budget counts it: the
    /// message itself, its data and event allocations, and every encoding built so far.
    /// (The history's own bookkeeping per message is added by the history.)
    pub fn cost(&self) -> usize {
        let event = self.event.as_ref().map_or(0, |e| e.len() + RC_ALLOC_OVERHEAD);
        let sio = self.sio.as_ref().map_or(0, |p| p.cost() + RC_ALLOC_OVERHEAD);
        std::mem::size_of::<Message>() + RC_ALLOC_OVERHEAD + self.data.len() + RC_ALLOC_OVERHEAD + event + sio + self.encoded_bytes.get()
    }

    /// The message's bytes in `enc`, encoded on first use. While the message is in history,
    /// the encoding's bytes are added to the history's count as soon as it is built.
    pub fn encoded(&self, enc: Encoding) -> &Rc<[u8]> {
        self.encoded[enc as usize].get_or_init(|| {
            let bytes = self.encode(enc);
            // A compressed encoding with nothing worth compressing is the plain one, shared.
            let shared = enc.uncompressed().is_some_and(|plain| Rc::ptr_eq(&bytes, self.encoded(plain)));
            let cost = if shared { 0 } else { bytes.len() + RC_ALLOC_OVERHEAD };
            self.encoded_bytes.set(self.encoded_bytes.get() + cost);
            if let Some(ledger) = self.ledger.take() {
                ledger.set(ledger.get() + cost);
                self.ledger.set(Some(ledger));
            }
            bytes
        })
    }

    fn encode(&self, enc: Encoding) -> Rc<[u8]> {
        if let Some(plain) = enc.uncompressed() {
            let (plain, min) = (self.encoded(plain), compression_min());
            // Every frame's payload is shorter than all the frames together.
            if plain.len() < min {
                return plain.clone();
            }
            return deflate::compress_frames(plain, min).into();
        }
        {
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
                Encoding::LongPoll => {
                    out.push(b',');
                    let _ = serde_json::to_writer(&mut out, &self.envelope());
                }
                Encoding::Iframe => {
                    let json = serde_json::to_string(&self.envelope()).unwrap_or_default();
                    crate::proto::iframe::encode_call(&mut out, &json);
                }
                Encoding::WsDataDeflate | Encoding::WsEnvelopeDeflate | Encoding::SioWsDeflate | Encoding::SioWsOffsetDeflate => {
                    unreachable!("made from the plain encoding above")
                }
                Encoding::SioWs | Encoding::SioPoll | Encoding::SioWsOffset | Encoding::SioPollOffset => {
                    let nsp = self.namespace();
                    let offset = matches!(enc, Encoding::SioWsOffset | Encoding::SioPollOffset).then_some(self.id);
                    let (packet, attachments) = wire::event_packet(self, &nsp, offset);
                    if matches!(enc, Encoding::SioWs | Encoding::SioWsOffset) {
                        wire::ws_frames(&mut out, &packet, attachments);
                    } else {
                        wire::poll_elements(&mut out, &packet, attachments);
                    }
                }
            }
            out.into()
        }
    }

    /// The Socket.IO namespace the message's channel belongs to (`/` outside the mapping).
    pub fn namespace(&self) -> String {
        match self.kind {
            TopicKind::Channel => crate::sio::names::parse_channel(&self.topic).map_or_else(|| "/".into(), |(nsp, _)| nsp),
            TopicKind::User => "/".into(),
        }
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

/// Consecutive messages of one topic, published while one connection was handled (pipelined
/// POSTs, a burst of WebSocket frames) or by one timer, delivered together: each subscriber
/// gets one shared buffer holding all of them, so a subscriber costs one queue entry (and one
/// `iovec`) per run instead of one per message. This is the batching uWebSockets does per
/// loop iteration; with pipelined publishers it divides the per-recipient work by the run's
/// length.
pub struct Run<'a> {
    msgs: &'a [Rc<Message>],
    encoded: [OnceCell<Rc<[u8]>>; ENCODINGS],
}

/// Messages larger than this are delivered on their own: next to their size the cost of a
/// queue entry is nothing, and joining them to a run would only copy them once more.
const RUN_MAX_MESSAGE: usize = 4096;
/// A run ends before its data passes this, so a run stays a small part of any output cap
/// (the cut-off is decided once per run) and of the memory it keeps alive.
const RUN_MAX_BYTES: usize = 64 * 1024;

impl<'a> Run<'a> {
    /// The run that starts `msgs` (not empty; in publish order): the first message and those
    /// after it of the same topic, while each is small and their total stays under the cap.
    pub fn first_of(msgs: &'a [Rc<Message>]) -> Run<'a> {
        let first = &msgs[0];
        let mut len = 1;
        let mut bytes = first.size();
        if first.size() <= RUN_MAX_MESSAGE {
            for m in &msgs[1..] {
                let same_topic = m.kind == first.kind && m.topic == first.topic;
                if !same_topic || m.size() > RUN_MAX_MESSAGE || bytes + m.size() > RUN_MAX_BYTES {
                    break;
                }
                bytes += m.size();
                len += 1;
            }
        }
        Run { msgs: &msgs[..len], encoded: Default::default() }
    }

    pub fn messages(&self) -> &'a [Rc<Message>] {
        self.msgs
    }

    /// Every message of the run in `enc`, back to back, built once on first use. The
    /// messages' own encodings stay cached for history replay.
    pub fn encoded(&self, enc: Encoding) -> &Rc<[u8]> {
        if let [one] = self.msgs {
            return one.encoded(enc);
        }
        self.encoded[enc as usize].get_or_init(|| {
            let mut out = Vec::with_capacity(self.msgs.iter().map(|m| m.encoded(enc).len()).sum());
            for m in self.msgs {
                out.extend_from_slice(m.encoded(enc));
            }
            out.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, data: &str) -> Rc<Message> {
        Rc::new(Message::new(TopicKind::Channel, "c".into(), id, None, data.as_bytes().into(), Instant::now()))
    }

    #[test]
    fn a_run_is_its_messages_back_to_back_built_once() {
        let msgs = [msg(1, "a"), msg(2, "bc")];
        let run = Run::first_of(&msgs);
        assert_eq!(run.messages().len(), 2);
        for enc in [Encoding::WsData, Encoding::WsEnvelope, Encoding::Sse] {
            let want: Vec<u8> = msgs.iter().flat_map(|m| m.encoded(enc).iter().copied()).collect();
            assert_eq!(&run.encoded(enc)[..], &want[..]);
            assert!(Rc::ptr_eq(run.encoded(enc), run.encoded(enc)), "built once, then shared");
        }
        let single = Run::first_of(&msgs[..1]);
        assert!(Rc::ptr_eq(single.encoded(Encoding::Sse), msgs[0].encoded(Encoding::Sse)), "a run of one is the message");
    }

    #[test]
    fn runs_end_at_another_topic_a_large_message_or_the_byte_cap() {
        let other = Rc::new(Message::new(TopicKind::Channel, "d".into(), 3, None, b"x"[..].into(), Instant::now()));
        let msgs = [msg(1, "a"), msg(2, "b"), other, msg(4, "c")];
        let lens = |msgs: &[Rc<Message>]| {
            let mut rest = msgs;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let n = Run::first_of(rest).messages().len();
                out.push(n);
                rest = &rest[n..];
            }
            out
        };
        assert_eq!(lens(&msgs), vec![2, 1, 1]);
        let big = "x".repeat(RUN_MAX_MESSAGE + 1);
        assert_eq!(lens(&[msg(1, "a"), msg(2, &big), msg(3, "b"), msg(4, "c")]), vec![1, 1, 2]);
        let chunk = "x".repeat(RUN_MAX_MESSAGE);
        let many: Vec<Rc<Message>> = (0..40).map(|i| msg(i, &chunk)).collect();
        let per_run = RUN_MAX_BYTES / RUN_MAX_MESSAGE;
        assert_eq!(lens(&many), vec![per_run, per_run, 40 - 2 * per_run]);
    }
}
