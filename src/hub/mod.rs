//! The hub: channels and users, their subscribers and recent history.
//!
//! Pure bookkeeping, no I/O: [`Hub::publish`] records a message and the loop then asks
//! [`Hub::subscribers`] who gets it and in which [`Encoding`]; the loop writes the bytes. A
//! subscriber is a connection reference (slab token + the connection's unique id), so a hub
//! entry can never reach the next connection that reuses the slot.
//!
//! Channels and users are the same thing underneath (a [`Topic`]) in two namespaces: a user is
//! a topic every connection of that person subscribes to.
//!
//! Message ids are microseconds since the Unix epoch, made strictly increasing: they increase
//! per channel, compare across channels (so one `Last-Event-ID` resumes a multi-channel
//! stream), and keep increasing across restarts (a browser that comes back to a restarted
//! server with an old id gets what was published since, not nothing).

mod message;
mod topic;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use message::{Encoding, Message, Run};
pub use topic::{Subscriber, Topic};

/// A connection, as the hub knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub token: usize,
    pub id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Channel,
    User,
}

impl TopicKind {
    /// The JSON field that names the topic in envelopes.
    pub fn field(self) -> &'static str {
        match self {
            TopicKind::Channel => "channel",
            TopicKind::User => "user",
        }
    }
}

/// A channel or a user, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicKey {
    pub kind: TopicKind,
    pub name: Rc<str>,
}

impl TopicKey {
    pub fn channel(name: &str) -> TopicKey {
        TopicKey { kind: TopicKind::Channel, name: name.into() }
    }

    pub fn user(name: &str) -> TopicKey {
        TopicKey { kind: TopicKind::User, name: name.into() }
    }
}

/// Channel names: 1–128 bytes of `[A-Za-z0-9._:@-]`.
pub fn valid_channel_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// User names: 1–128 bytes of printable text without `/` (they are URL segments).
pub fn valid_user_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(|c| !c.is_control() && c != '/')
}

/// What a subscriber that resumes from an id gets first.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Messages after the id, in id order (merged across topics).
    pub messages: Vec<Rc<Message>>,
    /// Some messages after the id may be gone (expired, evicted, or lost with a restart).
    pub reset: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct HubStats {
    pub published: u64,
    pub delivered: u64,
    pub slow_consumer_disconnects: u64,
    /// Subscriptions by transport: WebSocket, SSE, long-poll.
    pub subscribers: [u64; 3],
}

fn transport_index(e: Encoding) -> usize {
    match e {
        Encoding::WsData | Encoding::WsEnvelope => 0,
        Encoding::Sse => 1,
        Encoding::LongPoll => 2,
    }
}

pub struct Hub {
    topics: HashMap<TopicKey, Topic>,
    history_len: usize,
    history_ttl: Duration,
    /// Bytes of message data kept in all histories, and the most that may be.
    history_bytes: usize,
    history_budget: usize,
    /// The last id handed out.
    last_id: u64,
    /// The highest floor of any topic forgotten so far. A topic created anew starts there:
    /// it cannot know which of its old messages expired, so it assumes any may have. It
    /// starts at the process's start: a client resuming from an older id may have missed
    /// messages that died with the previous process.
    forgotten_floor: u64,
    pub stats: HubStats,
}

impl Hub {
    /// `wall_us`: microseconds since the Unix epoch now (a parameter: the hub reads no clock).
    pub fn new(history_len: usize, history_ttl: Duration, history_budget: usize, wall_us: u64) -> Hub {
        Hub {
            topics: HashMap::new(),
            history_len,
            history_ttl,
            history_bytes: 0,
            history_budget,
            last_id: wall_us,
            forgotten_floor: wall_us,
            stats: HubStats::default(),
        }
    }

    /// The id of the latest message published (or the start point, before any).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    fn next_id(&mut self, wall_us: u64) -> u64 {
        self.last_id = wall_us.max(self.last_id + 1);
        self.last_id
    }

    fn topic(&mut self, key: &TopicKey) -> &mut Topic {
        let floor = self.forgotten_floor;
        self.topics.entry(key.clone()).or_insert_with(|| Topic::new(floor))
    }

    /// Drops a topic that has neither subscribers nor history, keeping its floor.
    fn forget_if_empty(&mut self, key: &TopicKey) {
        if let Some(t) = self.topics.get(key) {
            if t.subscribers.is_empty() && t.history_is_empty() {
                self.forgotten_floor = self.forgotten_floor.max(t.floor);
                self.topics.remove(key);
            }
        }
    }

    /// Adds a subscriber; returns its slot, which [`Hub::unsubscribe`] takes.
    pub fn subscribe(&mut self, key: &TopicKey, sub: Subscriber) -> usize {
        self.stats.subscribers[transport_index(sub.encoding)] += 1;
        self.topic(key).subscribers.insert(sub)
    }

    pub fn unsubscribe(&mut self, key: &TopicKey, slot: usize) {
        if let Some(t) = self.topics.get_mut(key) {
            if let Some(sub) = t.subscribers.try_remove(slot) {
                self.stats.subscribers[transport_index(sub.encoding)] -= 1;
            }
        }
        self.forget_if_empty(key);
    }

    /// Records a message (in the topic's history, if it keeps one) and returns it; the
    /// caller delivers it to [`Hub::subscribers`].
    pub fn publish(&mut self, key: &TopicKey, event: Option<&str>, data: Rc<[u8]>, now: Instant, wall_us: u64) -> Rc<Message> {
        let id = self.next_id(wall_us);
        let (len, ttl) = (self.history_len, self.history_ttl);
        let msg = Rc::new(Message::new(key.kind, key.name.clone(), id, event.map(Rc::from), data, now));
        let delta = self.topic(key).record(msg.clone(), len, ttl, now);
        self.history_bytes = self.history_bytes.saturating_add_signed(delta);
        self.enforce_budget();
        self.stats.published += 1;
        self.forget_if_empty(key);
        msg
    }

    /// Over the byte budget, the oldest messages of all channels go first. A scan of the
    /// channels per eviction: only reached when publishers push more data than the budget
    /// holds, where each eviction stands for a large amount of received data anyway.
    fn enforce_budget(&mut self) {
        while self.history_bytes > self.history_budget {
            let oldest = self.topics.iter().filter_map(|(k, t)| t.oldest().map(|id| (id, k))).min_by_key(|(id, _)| *id);
            let Some((_, key)) = oldest else { break };
            let key = key.clone();
            let freed = self.topics.get_mut(&key).map_or(0, Topic::evict_front);
            self.history_bytes -= freed;
            self.forget_if_empty(&key);
        }
    }

    /// The subscriber in `slot` of `key` (as [`Hub::subscribe`] returned it).
    pub fn subscriber(&self, key: &TopicKey, slot: usize) -> Option<&Subscriber> {
        self.topics.get(key)?.subscribers.get(slot)
    }

    pub fn subscribers(&self, key: &TopicKey) -> impl Iterator<Item = &Subscriber> {
        self.topics.get(key).into_iter().flat_map(|t| t.subscribers.iter().map(|(_, s)| s))
    }

    pub fn subscriber_count(&self, key: &TopicKey) -> usize {
        self.topics.get(key).map_or(0, |t| t.subscribers.len())
    }

    /// Everything after `since` in these topics, merged in id order, and whether something
    /// after `since` may be missing.
    pub fn backlog(&mut self, keys: &[TopicKey], since: u64, now: Instant) -> Backlog {
        let ttl = self.history_ttl;
        let mut b = Backlog::default();
        for key in keys {
            match self.topics.get_mut(key) {
                Some(t) => {
                    self.history_bytes -= t.expire(ttl, now);
                    b.reset |= since < t.floor;
                    b.messages.extend(t.since(since).cloned());
                }
                None => b.reset |= since < self.forgotten_floor,
            }
        }
        b.messages.sort_by_key(|m| m.id);
        b
    }

    /// Expires old history and forgets topics with neither subscribers nor history. Returns
    /// whether any history is left (the loop only keeps a sweep timer while there is).
    pub fn sweep(&mut self, now: Instant) -> bool {
        let ttl = self.history_ttl;
        let mut floor = self.forgotten_floor;
        let mut freed = 0;
        self.topics.retain(|_, t| {
            freed += t.expire(ttl, now);
            let keep = !(t.subscribers.is_empty() && t.history_is_empty());
            if !keep {
                floor = floor.max(t.floor);
            }
            keep
        });
        self.forgotten_floor = floor;
        self.history_bytes -= freed;
        self.topics.values().any(|t| !t.history_is_empty())
    }

    pub fn channel_count(&self) -> usize {
        self.topics.keys().filter(|k| k.kind == TopicKind::Channel).count()
    }

    pub fn users_online(&self) -> usize {
        self.topics.iter().filter(|(k, t)| k.kind == TopicKind::User && !t.subscribers.is_empty()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Rc<[u8]> {
        s.as_bytes().into()
    }

    fn sub(token: usize) -> Subscriber {
        Subscriber { conn: ConnRef { token, id: token as u64 }, encoding: Encoding::Sse, after: 0 }
    }

    #[test]
    fn ids_increase_even_when_the_clock_does_not() {
        let now = Instant::now();
        let mut hub = Hub::new(10, Duration::from_secs(60), 1 << 20, 1000);
        let a = TopicKey::channel("a");
        let ids: Vec<u64> = (0..5).map(|_| hub.publish(&a, None, data("x"), now, 500).id).collect();
        assert_eq!(ids, vec![1001, 1002, 1003, 1004, 1005]);
        assert_eq!(hub.publish(&a, None, data("x"), now, 9000).id, 9000);
    }

    #[test]
    fn backlog_merges_channels_and_signals_gaps() {
        let now = Instant::now();
        let mut hub = Hub::new(3, Duration::from_secs(60), 1 << 20, 100);
        let (a, b) = (TopicKey::channel("a"), TopicKey::channel("b"));
        hub.subscribe(&a, sub(1));
        hub.subscribe(&b, sub(2));
        let ids: Vec<u64> = ["a1", "b1", "a2", "b2"]
            .iter()
            .map(|s| hub.publish(if s.starts_with('a') { &a } else { &b }, None, data(s), now, 0).id)
            .collect();
        let bl = hub.backlog(&[a.clone(), b.clone()], ids[0], now);
        let got: Vec<&[u8]> = bl.messages.iter().map(|m| &m.data[..]).collect();
        assert_eq!(got, vec![&b"b1"[..], b"a2", b"b2"]);
        assert!(!bl.reset);
        // A client from before this process started: told it may have missed some.
        assert!(hub.backlog(std::slice::from_ref(&a), 50, now).reset);
        // Evicting from history raises the floor.
        for i in 0..3 {
            hub.publish(&a, None, data(&format!("more{i}")), now, 0);
        }
        let bl = hub.backlog(std::slice::from_ref(&a), ids[0], now);
        assert!(bl.reset);
        assert_eq!(bl.messages.len(), 3);
    }

    #[test]
    fn history_expires_and_empty_topics_are_forgotten() {
        let t0 = Instant::now();
        let mut hub = Hub::new(100, Duration::from_secs(5), 1 << 20, 0);
        let a = TopicKey::channel("a");
        let id = hub.publish(&a, None, data("x"), t0, 0).id;
        assert_eq!(hub.channel_count(), 1);
        assert!(hub.sweep(t0 + Duration::from_secs(1)));
        assert!(!hub.sweep(t0 + Duration::from_secs(6)));
        assert_eq!(hub.channel_count(), 0);
        // What expired is reported as a gap.
        assert!(hub.backlog(std::slice::from_ref(&a), id - 1, t0 + Duration::from_secs(6)).reset);
        let slot = hub.subscribe(&a, sub(1));
        assert_eq!(hub.subscriber_count(&a), 1);
        hub.unsubscribe(&a, slot);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn byte_budget_evicts_the_oldest_across_channels() {
        let now = Instant::now();
        let mut hub = Hub::new(100, Duration::from_secs(60), 10, 0);
        let (a, b) = (TopicKey::channel("a"), TopicKey::channel("b"));
        let first = hub.publish(&a, None, data("aaaa"), now, 0).id;
        hub.publish(&b, None, data("bbbb"), now, 0);
        hub.publish(&b, None, data("cccc"), now, 0); // 12 bytes: "aaaa" goes
        let bl = hub.backlog(std::slice::from_ref(&a), first - 1, now);
        assert!(bl.reset && bl.messages.is_empty());
        assert_eq!(hub.backlog(std::slice::from_ref(&b), first, now).messages.len(), 2);
        assert_eq!(hub.history_bytes, 8);
        assert_eq!(hub.channel_count(), 1, "channel a, empty and unsubscribed, is forgotten");
    }

    #[test]
    fn names() {
        assert!(valid_channel_name("news.sport:eu@v1_2-x"));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_channel_name(bad), "{bad:?}");
        }
        assert!(valid_user_name("Alice Smith"));
        assert!(!valid_user_name("a/b"));
    }
}
