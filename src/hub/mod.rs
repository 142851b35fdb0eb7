//! The hub: channels and users, their subscribers and recent history.
//!
//! Pure bookkeeping, no I/O: [`Hub::publish`] records a message and the loop then asks
//! [`Hub::subscribers`] who gets it and in which [`Encoding`]; the loop writes the bytes. A
//! subscriber is a *sink* ([`SinkRef`]): a connection, or an Engine.IO session that outlives
//! its connections. It is addressed by slot and a generation that is never reused, so a hub
//! entry can never reach the next connection or session that takes the slot. Each sink owns
//! its subscriptions (it remembers the slots `subscribe` returned) and drops them when it ends.
//!
//! Channels and users are the same thing underneath (a [`Topic`]) in two namespaces: a user is
//! a topic every connection of that person subscribes to.
//!
//! What the hub holds is bounded by [`HubLimits`]: each topic keeps its last `history_len`
//! messages, and all kept messages sit in one publish-order list (`history.rs`) from which the
//! age limit and the byte budget evict oldest-first in O(1). The budget counts real cost (see
//! [`Message::cost`]); a topic with neither subscribers nor history is dropped at once; channels
//! are capped. The counters `/stats` shows are kept as things change, never computed by a walk.
//!
//! Message ids are microseconds since the Unix epoch, made strictly increasing: they increase
//! per channel, compare across channels (so one `Last-Event-ID` resumes a multi-channel
//! stream), and keep increasing across restarts (a browser that comes back to a restarted
//! server with an old id gets what was published since, not nothing).

mod history;
mod message;
mod topic;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use history::History;
pub use message::{compression_min, set_compression_min, Encoding, Message, Run};
pub use topic::{Subscriber, Topic};

/// What a sink is: the loop keeps each kind in its own slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SinkKind {
    /// A TCP connection (a WebSocket, an SSE stream, a held long-poll).
    Conn,
    /// An Engine.IO session: its packets go to whichever transport is attached, or wait.
    Session,
}

/// Something messages are delivered to, as the hub (and the timer heap) knows it: its slab
/// slot and its generation (a counter per process, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SinkRef {
    pub kind: SinkKind,
    pub slot: u32,
    pub id: u64,
}

impl SinkRef {
    pub fn conn(token: u32, id: u64) -> SinkRef {
        SinkRef { kind: SinkKind::Conn, slot: token, id }
    }

    pub fn session(slot: usize, id: u64) -> SinkRef {
        SinkRef { kind: SinkKind::Session, slot: slot as u32, id }
    }
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

/// A message id as a client sends it back: the decimal number ids are sent as, or the
/// `ms-seq` a cluster's Redis streams spell the same number with (`seq` < 1000).
pub fn parse_message_id(s: &str) -> Option<u64> {
    if s.contains('-') {
        return crate::cluster::wire::parse_stream_id(s.as_bytes());
    }
    s.parse::<u64>().ok()
}

/// What a subscriber that resumes from an id gets first.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Messages after the id, in id order (merged across topics).
    pub messages: Vec<Rc<Message>>,
    /// Some messages after the id may be gone (expired, evicted, lost with a restart), or
    /// the id is newer than any message (from a process whose clock was ahead, or another
    /// deployment): either way the client cannot trust its position.
    pub reset: bool,
    /// The newest id when the backlog was taken: where a client told to reset continues from.
    pub last_id: u64,
}

/// What a message may carry besides its data (see [`Hub::publish_with`]).
#[derive(Debug, Default)]
pub struct Extra {
    pub sio: Option<Box<crate::sio::wire::SioPayload>>,
    pub origin: Option<SinkRef>,
    /// The id Redis gave it (a message from the cluster), instead of one from this hub.
    pub id: Option<u64>,
}

/// Why the hub refused to create a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubError {
    /// `--max-channels` channels exist already.
    TooManyChannels(usize),
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubError::TooManyChannels(n) => write!(f, "the server holds its maximum of {n} channels (--max-channels)"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct HubStats {
    pub published: u64,
    pub delivered: u64,
    pub slow_consumer_disconnects: u64,
    /// Kept messages dropped before their time: past `--history` on their topic, or by the
    /// byte budget (expiry by `--history-ttl` is not counted: that is their time).
    pub evicted: u64,
    /// Subscriptions by transport: WebSocket, SSE, long-poll, Socket.IO.
    pub subscribers: [u64; 4],
}

fn transport_index(e: Encoding) -> usize {
    match e {
        Encoding::WsData | Encoding::WsEnvelope | Encoding::WsDataDeflate | Encoding::WsEnvelopeDeflate => 0,
        // Streams over plain HTTP: SSE and forever-iframe.
        Encoding::Sse | Encoding::Iframe => 1,
        Encoding::LongPoll => 2,
        Encoding::SioWs | Encoding::SioPoll | Encoding::SioWsOffset | Encoding::SioPollOffset | Encoding::SioWsDeflate | Encoding::SioWsOffsetDeflate => 3,
    }
}

/// What a topic costs while it keeps history, besides its messages: its map entry (key,
/// topic, the table's control byte and padding) and its name's allocation.
fn topic_cost(key: &TopicKey) -> usize {
    std::mem::size_of::<TopicKey>() + std::mem::size_of::<Topic>() + 16 + key.name.len() + message::RC_ALLOC_OVERHEAD
}

/// The limits on what the hub keeps (from [`crate::config::Config`]).
#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    /// Messages each topic keeps.
    pub history_len: usize,
    /// Age past which kept messages go.
    pub history_ttl: Duration,
    /// Bytes all history together may cost (messages, their encodings, their topics).
    pub history_bytes: usize,
    /// Channels that may exist at once.
    pub max_channels: usize,
}

pub struct Hub {
    topics: HashMap<TopicKey, Topic>,
    /// Every kept message in publish order: what the byte budget and the TTL evict from.
    history: History,
    limits: HubLimits,
    /// The last id handed out.
    last_id: u64,
    /// The highest floor of any topic forgotten so far. A topic created anew starts there:
    /// it cannot know which of its old messages expired, so it assumes any may have. It
    /// starts at the process's start: a client resuming from an older id may have missed
    /// messages that died with the previous process.
    forgotten_floor: u64,
    /// Channel topics in `topics`, and user topics with a subscriber: kept as they change,
    /// so `/stats` never walks the topics.
    channels: usize,
    users_online: usize,
    pub stats: HubStats,
    /// In a cluster: topics whose first subscriber came or last one left since the loop
    /// last looked (it follows them on Redis only while they have local subscribers).
    pub changes: Option<Vec<TopicKey>>,
}

impl Hub {
    /// `wall_us`: microseconds since the Unix epoch now (a parameter: the hub reads no clock).
    pub fn new(limits: HubLimits, wall_us: u64) -> Hub {
        Hub {
            topics: HashMap::new(),
            history: History::default(),
            limits,
            last_id: wall_us,
            forgotten_floor: wall_us,
            channels: 0,
            users_online: 0,
            stats: HubStats::default(),
            changes: None,
        }
    }

    /// The id of the latest message published (or the start point, before any).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    fn next_id(&mut self, wall_us: u64) -> u64 {
        // In a cluster the ids are Redis's (its clock): a message kept local (the ticker, the
        // dashboard) follows the latest of them, never this machine's clock, which may be
        // ahead of Redis's and would make later messages look old.
        let base = if self.clustered() { 0 } else { wall_us };
        self.last_id = base.max(self.last_id + 1);
        self.last_id
    }

    /// In a cluster (only then are subscription changes recorded for the loop).
    fn clustered(&self) -> bool {
        self.changes.is_some()
    }

    /// Ids come from Redis (`--redis`): the hub starts at 0 and never reads the clock.
    pub fn set_clustered(&mut self) {
        self.changes = Some(Vec::new());
        self.last_id = 0;
        self.forgotten_floor = 0;
    }

    /// The topic, created if need be (within `--max-channels`).
    fn topic_mut(&mut self, key: &TopicKey) -> Result<&mut Topic, HubError> {
        if !self.topics.contains_key(key) {
            if key.kind == TopicKind::Channel {
                if self.channels >= self.limits.max_channels {
                    return Err(HubError::TooManyChannels(self.limits.max_channels));
                }
                self.channels += 1;
            }
            self.topics.insert(key.clone(), Topic::new(self.forgotten_floor));
        }
        Ok(self.topics.get_mut(key).expect("just inserted"))
    }

    /// Drops a topic that has neither subscribers nor history, keeping its floor.
    fn forget_if_empty(&mut self, key: &TopicKey) {
        if let Some(t) = self.topics.get(key) {
            if t.subscribers.is_empty() && t.history_is_empty() {
                self.forgotten_floor = self.forgotten_floor.max(t.floor);
                self.topics.remove(key);
                if key.kind == TopicKind::Channel {
                    self.channels -= 1;
                }
                if self.topics.is_empty() && self.topics.capacity() > 1024 {
                    // A burst of channels is over: give the table back.
                    self.topics = HashMap::new();
                }
            }
        }
    }

    /// Adds a subscriber; returns its slot, which [`Hub::unsubscribe`] takes.
    pub fn subscribe(&mut self, key: &TopicKey, sub: Subscriber) -> Result<usize, HubError> {
        let topic = self.topic_mut(key)?;
        let first = topic.subscribers.is_empty();
        let slot = topic.subscribers.insert(sub);
        if first && key.kind == TopicKind::User {
            self.users_online += 1;
        }
        if let (true, Some(c)) = (first, &mut self.changes) {
            c.push(key.clone());
        }
        self.stats.subscribers[transport_index(sub.encoding)] += 1;
        Ok(slot)
    }

    pub fn unsubscribe(&mut self, key: &TopicKey, slot: usize) {
        if let Some(t) = self.topics.get_mut(key) {
            if let Some(sub) = t.subscribers.try_remove(slot) {
                self.stats.subscribers[transport_index(sub.encoding)] -= 1;
                if t.subscribers.is_empty() && key.kind == TopicKind::User {
                    self.users_online -= 1;
                }
                if let (true, Some(c)) = (t.subscribers.is_empty(), &mut self.changes) {
                    c.push(key.clone());
                }
            }
        }
        self.forget_if_empty(key);
    }

    /// Records a message (in the topic's history, if it keeps one) and returns it; the
    /// caller delivers it to [`Hub::subscribers`]. Fails only when the topic does not exist
    /// and may not be created.
    pub fn publish(&mut self, key: &TopicKey, event: Option<&str>, data: Rc<[u8]>, now: Instant, wall_us: u64) -> Result<Rc<Message>, HubError> {
        self.publish_with(key, event, data, Extra::default(), now, wall_us)
    }

    /// [`Hub::publish`] with what a socket.io emit adds: its exact arguments and its sender.
    pub fn publish_with(&mut self, key: &TopicKey, event: Option<&str>, data: Rc<[u8]>, extra: Extra, now: Instant, wall_us: u64) -> Result<Rc<Message>, HubError> {
        self.topic_mut(key)?;
        // The name the topic's entry holds, shared: the caller's key may be a fresh copy
        // (every publish request parses its own), and the budget counts the name once.
        let name = self.topics.get_key_value(key).map_or_else(|| key.name.clone(), |(k, _)| k.name.clone());
        let id = match extra.id {
            // Redis's ids increase per topic; the hub's latest is the newest of them all.
            Some(id) => {
                self.last_id = self.last_id.max(id);
                id
            }
            None => self.next_id(wall_us),
        };
        let mut msg = Message::new(key.kind, name, id, event.map(Rc::from), data, now);
        msg.sio = extra.sio;
        msg.origin = extra.origin;
        let msg = Rc::new(msg);
        let Hub { topics, history, limits, .. } = self;
        let topic = topics.get_mut(key).expect("created above");
        topic.published += 1;
        if limits.history_len == 0 {
            topic.floor = topic.floor.max(id);
        } else {
            if topic.history_is_empty() {
                history.charge(topic_cost(key));
            }
            topic.push(msg.clone());
            history.push(&msg);
            while topic.history_len() > limits.history_len {
                if let Some(old) = topic.pop_front() {
                    history.remove(&old);
                    self.stats.evicted += 1;
                }
            }
        }
        self.stats.published += 1;
        self.enforce_limits(now);
        self.forget_if_empty(key);
        Ok(msg)
    }

    /// Evicts what the age limit and the byte budget no longer allow, oldest first across
    /// all topics: O(1) per evicted message. Called after each publish and by the loop after
    /// deliveries (which may have built encodings that count in the budget).
    pub fn enforce_limits(&mut self, now: Instant) {
        let ttl = self.limits.history_ttl;
        while self.history.oldest().is_some_and(|m| now.duration_since(m.published) >= ttl) {
            self.evict_oldest();
        }
        while self.history.bytes() > self.limits.history_bytes && self.evict_oldest() {
            self.stats.evicted += 1;
        }
    }

    /// Drops the oldest kept message of all topics (the front of its topic's history).
    fn evict_oldest(&mut self) -> bool {
        let Some(msg) = self.history.oldest().cloned() else { return false };
        let key = TopicKey { kind: msg.kind, name: msg.topic.clone() };
        if let Some(topic) = self.topics.get_mut(&key) {
            debug_assert!(topic.front().is_some_and(|f| Rc::ptr_eq(f, &msg)), "per-topic and global order agree");
            topic.pop_front();
            if topic.history_is_empty() {
                self.history.refund(topic_cost(&key));
            }
        }
        self.history.remove(&msg);
        self.forget_if_empty(&key);
        true
    }

    /// The history is counted at more than its budget (encodings built since the last
    /// eviction): [`Hub::enforce_limits`] makes room.
    pub fn over_budget(&self) -> bool {
        self.history.bytes() > self.limits.history_bytes
    }

    /// Bytes the history is counted at (messages, encodings, topics), and its budget.
    pub fn history_bytes(&self) -> (usize, usize) {
        (self.history.bytes(), self.limits.history_bytes)
    }

    /// Messages kept in all histories.
    pub fn history_messages(&self) -> usize {
        self.history.len()
    }

    /// The key as the hub holds it (its name shared with the topic's entry), for a sink to
    /// keep with its subscription: one copy of the name however many follow the topic.
    pub fn shared_key(&self, key: &TopicKey) -> TopicKey {
        self.topics.get_key_value(key).map_or_else(|| key.clone(), |(k, _)| k.clone())
    }

    /// Sets from where a subscriber gets live messages (a resume from Redis is complete).
    pub fn set_after(&mut self, key: &TopicKey, slot: usize, after: u64) {
        if let Some(s) = self.topics.get_mut(key).and_then(|t| t.subscribers.get_mut(slot)) {
            s.after = after;
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

    /// Whether all of `keys` (distinct) may be subscribed to now: the channels among them
    /// that do not exist yet fit under `--max-channels`.
    pub fn check_room(&self, keys: &[TopicKey]) -> Result<(), HubError> {
        let new = keys.iter().filter(|k| k.kind == TopicKind::Channel && !self.topics.contains_key(*k)).count();
        if self.channels + new > self.limits.max_channels {
            return Err(HubError::TooManyChannels(self.limits.max_channels));
        }
        Ok(())
    }

    /// Everything after `since` in these topics, merged in id order, and whether something
    /// after `since` may be missing.
    pub fn backlog(&mut self, keys: &[TopicKey], since: u64, now: Instant) -> Backlog {
        self.enforce_limits(now);
        // An id no message has had yet: the client's position means nothing here.
        let mut b = Backlog { reset: since > self.last_id, last_id: self.last_id, ..Backlog::default() };
        for key in keys {
            match self.topics.get(key) {
                Some(t) => {
                    b.reset |= since < t.floor;
                    b.messages.extend(t.since(since).cloned());
                }
                None => b.reset |= since < self.forgotten_floor,
            }
        }
        b.messages.sort_by_key(|m| m.id);
        b
    }

    /// Expires old history (forgetting topics left with neither subscribers nor history).
    /// Returns whether any history is left (the loop only keeps a sweep timer while there is).
    pub fn sweep(&mut self, now: Instant) -> bool {
        self.enforce_limits(now);
        !self.history.is_empty()
    }

    /// Every channel with its publish count and subscribers: a walk, for the dashboard's
    /// once-a-second figures while someone watches it.
    pub fn channel_figures(&self) -> impl Iterator<Item = (&Rc<str>, u64, usize)> {
        self.topics.iter().filter(|(k, _)| k.kind == TopicKind::Channel).map(|(k, t)| (&k.name, t.published, t.subscribers.len()))
    }

    pub fn channel_count(&self) -> usize {
        self.channels
    }

    pub fn users_online(&self) -> usize {
        self.users_online
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Rc<[u8]> {
        s.as_bytes().into()
    }

    fn limits(history_len: usize, ttl_secs: u64, history_bytes: usize) -> HubLimits {
        HubLimits { history_len, history_ttl: Duration::from_secs(ttl_secs), history_bytes, max_channels: 1000 }
    }

    fn sub(token: usize) -> Subscriber {
        Subscriber { sink: SinkRef::conn(token as u32, token as u64), encoding: Encoding::Sse, after: 0 }
    }

    #[test]
    fn ids_increase_even_when_the_clock_does_not() {
        let now = Instant::now();
        let mut hub = Hub::new(limits(10, 60, 1 << 20), 1000);
        let a = TopicKey::channel("a");
        let ids: Vec<u64> = (0..5).map(|_| hub.publish(&a, None, data("x"), now, 500).unwrap().id).collect();
        assert_eq!(ids, vec![1001, 1002, 1003, 1004, 1005]);
        assert_eq!(hub.publish(&a, None, data("x"), now, 9000).unwrap().id, 9000);
    }

    #[test]
    fn backlog_merges_channels_and_signals_gaps() {
        let now = Instant::now();
        let mut hub = Hub::new(limits(3, 60, 1 << 20), 100);
        let (a, b) = (TopicKey::channel("a"), TopicKey::channel("b"));
        hub.subscribe(&a, sub(1)).unwrap();
        hub.subscribe(&b, sub(2)).unwrap();
        let ids: Vec<u64> = ["a1", "b1", "a2", "b2"]
            .iter()
            .map(|s| hub.publish(if s.starts_with('a') { &a } else { &b }, None, data(s), now, 0).unwrap().id)
            .collect();
        let bl = hub.backlog(&[a.clone(), b.clone()], ids[0], now);
        let got: Vec<&[u8]> = bl.messages.iter().map(|m| &m.data[..]).collect();
        assert_eq!(got, vec![&b"b1"[..], b"a2", b"b2"]);
        assert!(!bl.reset);
        // A client from before this process started: told it may have missed some.
        assert!(hub.backlog(std::slice::from_ref(&a), 50, now).reset);
        // Evicting from history raises the floor.
        for i in 0..3 {
            hub.publish(&a, None, data(&format!("more{i}")), now, 0).unwrap();
        }
        let bl = hub.backlog(std::slice::from_ref(&a), ids[0], now);
        assert!(bl.reset);
        assert_eq!(bl.messages.len(), 3);
    }

    #[test]
    fn history_expires_and_empty_topics_are_forgotten() {
        let t0 = Instant::now();
        let mut hub = Hub::new(limits(100, 5, 1 << 20), 0);
        let a = TopicKey::channel("a");
        let id = hub.publish(&a, None, data("x"), t0, 0).unwrap().id;
        assert_eq!(hub.channel_count(), 1);
        assert!(hub.sweep(t0 + Duration::from_secs(1)));
        assert!(!hub.sweep(t0 + Duration::from_secs(6)));
        assert_eq!(hub.channel_count(), 0);
        // What expired is reported as a gap.
        assert!(hub.backlog(std::slice::from_ref(&a), id - 1, t0 + Duration::from_secs(6)).reset);
        let slot = hub.subscribe(&a, sub(1)).unwrap();
        assert_eq!(hub.subscriber_count(&a), 1);
        hub.unsubscribe(&a, slot);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn byte_budget_evicts_the_oldest_across_channels() {
        let now = Instant::now();
        // Room for channel a with one message and channel b with two, not for a third.
        let probe = Rc::new(Message::new(TopicKind::Channel, "a".into(), 0, None, data("aaaa"), now));
        let one = probe.cost() + history::PER_MESSAGE;
        let budget = 3 * one + 2 * topic_cost(&TopicKey::channel("a"));
        let mut hub = Hub::new(limits(100, 60, budget), 0);
        let (a, b) = (TopicKey::channel("a"), TopicKey::channel("b"));
        let first = hub.publish(&a, None, data("aaaa"), now, 0).unwrap().id;
        hub.publish(&b, None, data("bbbb"), now, 0).unwrap();
        hub.publish(&b, None, data("cccc"), now, 0).unwrap();
        assert_eq!(hub.history_messages(), 3);
        hub.publish(&b, None, data("dddd"), now, 0).unwrap(); // over: "aaaa" goes
        let bl = hub.backlog(std::slice::from_ref(&a), first - 1, now);
        assert!(bl.reset && bl.messages.is_empty());
        assert_eq!(hub.backlog(std::slice::from_ref(&b), first, now).messages.len(), 3);
        assert_eq!(hub.history_bytes().0, 3 * one + topic_cost(&b), "a's name is no longer counted");
        assert_eq!(hub.channel_count(), 1, "channel a, empty and unsubscribed, is forgotten");
        // An encoding built while kept counts; the next publish makes room for it.
        for m in hub.backlog(std::slice::from_ref(&b), first, now).messages {
            m.encoded(Encoding::Sse);
            m.encoded(Encoding::WsEnvelope);
        }
        assert!(hub.history_bytes().0 > budget);
        hub.enforce_limits(now);
        assert!(hub.history_bytes().0 <= budget);
        assert_eq!(hub.history_messages(), 2);
    }

    #[test]
    fn eviction_and_expiry_keep_every_count_exact() {
        let t0 = Instant::now();
        let mut hub = Hub::new(limits(2, 5, 1 << 20), 0);
        let keys: Vec<TopicKey> = (0..50).map(|i| TopicKey::channel(&format!("c{i}"))).collect();
        for (i, k) in keys.iter().enumerate() {
            for _ in 0..3 {
                hub.publish(k, None, data("x"), t0 + Duration::from_millis(i as u64), 0).unwrap();
            }
        }
        assert_eq!(hub.history_messages(), 100, "two per channel");
        assert_eq!(hub.channel_count(), 50);
        assert!(hub.sweep(t0 + Duration::from_millis(5024)), "the last 25 channels are younger than 5 s");
        assert_eq!(hub.channel_count(), 25);
        assert!(!hub.sweep(t0 + Duration::from_secs(6)));
        assert_eq!((hub.channel_count(), hub.history_messages(), hub.history_bytes().0), (0, 0, 0));
    }

    #[test]
    fn max_channels_refuses_new_channels_only() {
        let now = Instant::now();
        let mut hub = Hub::new(HubLimits { max_channels: 2, ..limits(10, 60, 1 << 20) }, 0);
        let (a, b, c) = (TopicKey::channel("a"), TopicKey::channel("b"), TopicKey::channel("c"));
        hub.publish(&a, None, data("x"), now, 0).unwrap();
        let slot = hub.subscribe(&b, sub(1)).unwrap();
        assert_eq!(hub.publish(&c, None, data("x"), now, 0).unwrap_err(), HubError::TooManyChannels(2));
        assert!(hub.subscribe(&c, sub(2)).is_err() && hub.check_room(std::slice::from_ref(&c)).is_err());
        assert!(hub.publish(&a, None, data("y"), now, 0).is_ok() && hub.check_room(&[a.clone(), b.clone()]).is_ok());
        // Users are bounded by connections, not by the channel cap.
        assert!(hub.subscribe(&TopicKey::user("u"), sub(3)).is_ok());
        assert_eq!(hub.users_online(), 1);
        hub.unsubscribe(&b, slot);
        assert!(hub.subscribe(&c, sub(2)).is_ok(), "a channel freed a place");
    }

    #[test]
    fn messages_share_their_topics_name() {
        let now = Instant::now();
        let mut hub = Hub::new(limits(10, 60, 1 << 20), 0);
        let long = "n".repeat(128);
        let first = hub.publish(&TopicKey::channel(&long), None, data("x"), now, 0).unwrap();
        // Every publish request parses its own key: the message must not keep that copy,
        // which the budget does not count.
        let second = hub.publish(&TopicKey::channel(&long), None, data("y"), now, 0).unwrap();
        assert!(Rc::ptr_eq(&first.topic, &second.topic));
    }

    #[test]
    fn an_id_from_the_future_is_a_reset() {
        let now = Instant::now();
        let mut hub = Hub::new(limits(10, 60, 1 << 20), 1000);
        let a = TopicKey::channel("a");
        let id = hub.publish(&a, None, data("x"), now, 2000).unwrap().id;
        assert!(!hub.backlog(std::slice::from_ref(&a), id, now).reset);
        let b = hub.backlog(std::slice::from_ref(&a), id + 1, now);
        assert!(b.reset && b.messages.is_empty());
        assert_eq!(b.last_id, id);
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
