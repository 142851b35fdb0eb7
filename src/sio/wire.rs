//! Hub messages as Socket.IO events on the wire: the EVENT packet a message becomes in a
//! namespace, as WebSocket frames and as a polling payload element. A message a socket.io
//! client emitted keeps its arguments exactly (their JSON text and binary attachments); any
//! other message is the event `[name, data]`, `data` parsed if it is JSON, else a string.

use std::rc::Rc;

use crate::hub::Message;
use crate::proto::engineio::{self, SEPARATOR};
use crate::proto::socketio::{self, compact_json, Kind};
use crate::proto::ws::{encode_server_frame, OpCode};

/// What a socket.io client emitted: the event's JSON array (name first, compact) and its
/// binary attachments in order.
#[derive(Clone, Debug, PartialEq)]
pub struct SioPayload {
    pub args: Box<str>,
    pub attachments: Vec<Rc<[u8]>>,
}

impl SioPayload {
    /// Bytes it holds (for the history budget).
    pub fn cost(&self) -> usize {
        self.args.len() + self.attachments.iter().map(|a| a.len() + 32).sum::<usize>() + std::mem::size_of::<SioPayload>()
    }

    /// What subscribers that are not socket.io clients see as the message's data: a single
    /// string argument as its text, a single other argument as its JSON, several as the
    /// JSON array of them.
    pub fn plain_data(args: &serde_json::Value) -> Vec<u8> {
        let a = args.as_array().map(|a| &a[1..]).unwrap_or(&[]);
        match a {
            [] => Vec::new(),
            [serde_json::Value::String(s)] => s.as_bytes().to_vec(),
            [one] => serde_json::to_vec(one).unwrap_or_default(),
            many => serde_json::to_vec(many).unwrap_or_default(),
        }
    }
}

/// The event's JSON array for a message that did not come from socket.io.
fn args_of(msg: &Message) -> String {
    // A reserved name (`disconnect`, …) would make every client's parser drop the connection.
    let name = msg.event.as_deref().filter(|e| !socketio::RESERVED_EVENTS.contains(e)).unwrap_or("message");
    let mut s = String::from("[");
    s.push_str(&serde_json::to_string(name).unwrap_or_default());
    s.push(',');
    let text = std::str::from_utf8(&msg.data).ok();
    match text.filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok()) {
        Some(json) => s.push_str(&compact_json(json.trim())),
        None => s.push_str(&serde_json::to_string(&String::from_utf8_lossy(&msg.data)).unwrap_or_default()),
    }
    s.push(']');
    s
}

/// The Engine.IO message packet (`4` + the Socket.IO EVENT) for `msg` in `nsp`, and its
/// attachments. `offset`: appended as the last argument, a string (connection-state
/// recovery: the client keeps the last one it saw and reconnects from it).
pub fn event_packet<'m>(msg: &'m Message, nsp: &str, offset: Option<u64>) -> (Vec<u8>, &'m [Rc<[u8]>]) {
    let mut out = vec![b'4'];
    let built;
    let (args, attachments): (&str, &'m [Rc<[u8]>]) = match &msg.sio {
        Some(p) => (&p.args, &p.attachments),
        None => {
            built = args_of(msg);
            (&built, &[])
        }
    };
    let with_offset;
    let args = match offset {
        // `[…]` → `[…,"id"]`: the array always has the event's name, so it is never empty.
        Some(id) => {
            with_offset = format!("{},\"{id}\"]", &args[..args.len() - 1]);
            &with_offset
        }
        None => args,
    };
    let kind = if attachments.is_empty() { Kind::Event } else { Kind::BinaryEvent };
    socketio::encode(&mut out, kind, attachments.len(), nsp, None, args);
    (out, attachments)
}

/// A packet and its attachments as WebSocket frames: a text frame, then one binary frame
/// per attachment (Engine.IO v4 sends binary raw).
pub fn ws_frames(out: &mut Vec<u8>, packet: &[u8], attachments: &[Rc<[u8]>]) {
    encode_server_frame(out, OpCode::Text, packet);
    for a in attachments {
        encode_server_frame(out, OpCode::Binary, a);
    }
}

/// A packet and its attachments as polling payload elements, each with the separator
/// before it (an answer drops the first byte).
pub fn poll_elements(out: &mut Vec<u8>, packet: &[u8], attachments: &[Rc<[u8]>]) {
    out.push(SEPARATOR);
    out.extend_from_slice(packet);
    for a in attachments {
        out.push(SEPARATOR);
        engineio::encode_poll_binary(out, a);
    }
}
