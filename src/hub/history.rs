//! Every message kept for replay, across all topics, in publish order.
//!
//! Each topic keeps its own recent messages (for replay by id); this list links all of them
//! in the order they were published, so the two global limits evict oldest-first in O(1):
//! the byte budget (`--history-bytes`) and the age limit (`--history-ttl`) both take the
//! list's head. A topic that drops a message for its own reason (`--history` messages per
//! topic) unlinks it from the middle, also in O(1). The list is a slab of nodes linked by
//! index (the node's key is kept in the message), so there is no allocation per message
//! beyond the slab's amortized growth.
//!
//! The byte count is a [`Ledger`] shared with the kept messages: an encoding built after a
//! message was recorded (a fan-out's first delivery, a replay) is counted the moment it
//! exists, so the budget sees what the history really holds.

use std::cell::Cell;
use std::rc::Rc;

use slab::Slab;

use super::message::Ledger;
use super::Message;

const NIL: usize = usize::MAX;

struct Node {
    msg: Rc<Message>,
    prev: usize,
    next: usize,
}

/// What keeping one message costs besides the message ([`Message::cost`]): its node here and
/// its slot in its topic's queue.
pub const PER_MESSAGE: usize = std::mem::size_of::<Node>() + std::mem::size_of::<Rc<Message>>();

pub struct History {
    nodes: Slab<Node>,
    head: usize,
    tail: usize,
    ledger: Ledger,
}

impl Default for History {
    fn default() -> Self {
        History { nodes: Slab::new(), head: NIL, tail: NIL, ledger: Rc::new(Cell::new(0)) }
    }
}

impl History {
    /// Bytes counted: every kept message's cost, its bookkeeping, and whatever was
    /// [`charge`](History::charge)d.
    pub fn bytes(&self) -> usize {
        self.ledger.get()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Counts bytes held on behalf of the history (a topic's name and entry while it keeps
    /// messages).
    pub fn charge(&mut self, bytes: usize) {
        self.ledger.set(self.ledger.get() + bytes);
    }

    pub fn refund(&mut self, bytes: usize) {
        self.ledger.set(self.ledger.get().saturating_sub(bytes));
    }

    /// Appends a newly kept message.
    pub fn push(&mut self, msg: &Rc<Message>) {
        debug_assert_eq!(msg.node.get(), NIL, "a message is kept once");
        let key = self.nodes.insert(Node { msg: msg.clone(), prev: self.tail, next: NIL });
        match self.tail {
            NIL => self.head = key,
            t => self.nodes[t].next = key,
        }
        self.tail = key;
        msg.node.set(key);
        self.charge(msg.cost() + PER_MESSAGE);
        msg.ledger.set(Some(self.ledger.clone()));
    }

    /// Unlinks a kept message (its topic dropped it, or it is the oldest being evicted).
    pub fn remove(&mut self, msg: &Message) {
        let key = msg.node.replace(NIL);
        if key == NIL {
            return;
        }
        let node = self.nodes.remove(key);
        match node.prev {
            NIL => self.head = node.next,
            p => self.nodes[p].next = node.next,
        }
        match node.next {
            NIL => self.tail = node.prev,
            n => self.nodes[n].prev = node.prev,
        }
        // Taken first: the cost read next must not race an encoding built later (it will
        // not be counted: the message is no longer kept).
        drop(msg.ledger.take());
        self.refund(msg.cost() + PER_MESSAGE);
        if self.nodes.is_empty() && self.nodes.capacity() > 1024 {
            // A burst that filled the budget is over: give the node table back.
            self.nodes = Slab::new();
        }
    }

    /// The oldest kept message of all topics.
    pub fn oldest(&self) -> Option<&Rc<Message>> {
        (self.head != NIL).then(|| &self.nodes[self.head].msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Encoding, TopicKind};
    use std::time::Instant;

    fn msg(id: u64) -> Rc<Message> {
        Rc::new(Message::new(TopicKind::Channel, "c".into(), id, None, b"data"[..].into(), Instant::now()))
    }

    #[test]
    fn oldest_first_with_removal_from_the_middle() {
        let mut h = History::default();
        let ms: Vec<_> = (1..=4).map(msg).collect();
        for m in &ms {
            h.push(m);
        }
        assert_eq!(h.bytes(), 4 * (ms[0].cost() + PER_MESSAGE));
        h.remove(&ms[1]);
        h.remove(&ms[3]);
        assert_eq!(h.oldest().map(|m| m.id), Some(1));
        h.remove(&ms[0]);
        assert_eq!(h.oldest().map(|m| m.id), Some(3));
        h.remove(&ms[2]);
        assert!(h.oldest().is_none() && h.is_empty());
        assert_eq!(h.bytes(), 0);
        h.remove(&ms[2]); // twice is harmless
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn encodings_built_while_kept_are_counted_and_refunded() {
        let mut h = History::default();
        let m = msg(1);
        h.push(&m);
        let before = h.bytes();
        let len = m.encoded(Encoding::Sse).len();
        assert_eq!(h.bytes(), before + len + crate::hub::message::RC_ALLOC_OVERHEAD);
        m.encoded(Encoding::Sse); // built once, counted once
        assert_eq!(h.bytes(), before + len + crate::hub::message::RC_ALLOC_OVERHEAD);
        h.remove(&m);
        assert_eq!(h.bytes(), 0);
        // No longer kept: later encodings are not the history's.
        m.encoded(Encoding::WsData);
        assert_eq!(h.bytes(), 0);
    }
}
