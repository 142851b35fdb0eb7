//! One channel or user: its subscribers and its recent history.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::{ConnRef, Encoding, Message};

/// A connection that receives a topic's messages, and the form it wants them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub conn: ConnRef,
    pub encoding: Encoding,
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
}

impl Topic {
    pub fn new(floor: u64) -> Topic {
        Topic { subscribers: Slab::new(), history: VecDeque::new(), floor }
    }

    pub fn history_is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Appends to history, evicting past `len` messages or `ttl` of age.
    pub fn record(&mut self, msg: Rc<Message>, len: usize, ttl: Duration, now: Instant) {
        if len == 0 {
            self.floor = self.floor.max(msg.id);
            return;
        }
        self.history.push_back(msg);
        while self.history.len() > len {
            self.evict_front();
        }
        self.expire(ttl, now);
    }

    pub fn expire(&mut self, ttl: Duration, now: Instant) {
        while self.history.front().is_some_and(|m| now.duration_since(m.published) >= ttl) {
            self.evict_front();
        }
    }

    fn evict_front(&mut self) {
        if let Some(m) = self.history.pop_front() {
            self.floor = self.floor.max(m.id);
        }
    }

    /// History after `id`, oldest first.
    pub fn since(&self, id: u64) -> impl Iterator<Item = &Rc<Message>> {
        let start = self.history.partition_point(|m| m.id <= id);
        self.history.range(start..)
    }
}
