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
}

impl Topic {
    pub fn new(floor: u64) -> Topic {
        Topic { subscribers: Slab::new(), history: VecDeque::new(), floor }
    }

    pub fn history_is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Appends to history, evicting past `len` messages or `ttl` of age. Returns the change
    /// in history bytes (added minus evicted) for the hub's budget.
    pub fn record(&mut self, msg: Rc<Message>, len: usize, ttl: Duration, now: Instant) -> isize {
        if len == 0 {
            self.floor = self.floor.max(msg.id);
            return 0;
        }
        let mut delta = msg.size() as isize;
        self.history.push_back(msg);
        while self.history.len() > len {
            delta -= self.evict_front() as isize;
        }
        delta - self.expire(ttl, now) as isize
    }

    /// Drops messages older than `ttl`; returns the bytes freed.
    pub fn expire(&mut self, ttl: Duration, now: Instant) -> usize {
        let mut freed = 0;
        while self.history.front().is_some_and(|m| now.duration_since(m.published) >= ttl) {
            freed += self.evict_front();
        }
        freed
    }

    /// Drops the oldest message (raising the floor: a client behind it gets a reset);
    /// returns the bytes freed.
    pub fn evict_front(&mut self) -> usize {
        match self.history.pop_front() {
            Some(m) => {
                self.floor = self.floor.max(m.id);
                m.size()
            }
            None => 0,
        }
    }

    /// The id of the oldest message kept.
    pub fn oldest(&self) -> Option<u64> {
        self.history.front().map(|m| m.id)
    }

    /// History after `id`, oldest first.
    pub fn since(&self, id: u64) -> impl Iterator<Item = &Rc<Message>> {
        let start = self.history.partition_point(|m| m.id <= id);
        self.history.range(start..)
    }
}
