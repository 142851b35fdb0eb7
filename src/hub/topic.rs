//! One channel or user: its subscribers and its recent history.

use std::collections::VecDeque;
use std::rc::Rc;

use slab::Slab;

use super::{Encoding, Message, SinkRef};

/// A sink that receives a topic's messages, and the form it wants them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub sink: SinkRef,
    pub encoding: Encoding,
    /// The last message id when it subscribed: only later messages are delivered live.
    pub after: u64,
}

#[derive(Debug)]
pub struct Topic {
    /// A slab: O(1) unsubscribe by slot (the connection remembers its slots) and a dense
    /// walk on publish.
    pub subscribers: Slab<Subscriber>,
    history: VecDeque<Rc<Message>>,
    /// Messages with ids above this are all in `history` (or were never published); at or
    /// below it some may be gone. Raised by every eviction.
    pub floor: u64,
    /// Messages published on it while it existed (the dashboard's busiest channels).
    pub published: u64,
}

impl Topic {
    pub fn new(floor: u64) -> Topic {
        Topic { subscribers: Slab::new(), history: VecDeque::new(), floor, published: 0 }
    }

    pub fn history_is_empty(&self) -> bool {
        self.history.is_empty()
    }

    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Appends to the topic's history (the hub enforces the limits).
    pub fn push(&mut self, msg: Rc<Message>) {
        self.history.push_back(msg);
    }

    /// Drops the oldest message, raising the floor: a client behind it gets a reset.
    pub fn pop_front(&mut self) -> Option<Rc<Message>> {
        let m = self.history.pop_front()?;
        self.floor = self.floor.max(m.id);
        if self.history.is_empty() && self.history.capacity() > 16 {
            self.history = VecDeque::new();
        }
        Some(m)
    }

    pub fn front(&self) -> Option<&Rc<Message>> {
        self.history.front()
    }

    /// History after `id`, oldest first.
    pub fn since(&self, id: u64) -> impl Iterator<Item = &Rc<Message>> {
        let start = self.history.partition_point(|m| m.id <= id);
        self.history.range(start..)
    }
}
