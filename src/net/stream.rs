//! Subscriber connections: starting SSE streams and long-polls, pushing hub messages into any
//! subscriber's output (with the slow-consumer cut-off), and ending long-polls.

use std::borrow::Cow;
use std::rc::Rc;
use std::time::Instant;

use super::conn::{Conn, Life, Transport};
use super::http::Env;
use super::ws;
use crate::app::{ConnKind, StreamKind, Subscription};
use crate::config::Config;
use crate::hub::{Encoding, SinkRef, Hub, HubError, Message, Run, Subscriber, TopicKey};
use crate::proto::http1::{response, DateCache, Persist};
use crate::proto::sse;

/// An SSE stream: the response head is sent, events follow until the connection ends.
#[derive(Clone, Copy, Debug)]
pub struct Sse {
    /// When the next `:` heartbeat is due.
    pub next_beat: Instant,
    /// A forever-iframe document rather than an event stream (its messages, heartbeat and
    /// resets are script calls and comments).
    pub iframe: bool,
}

impl Sse {
    pub fn encoding(&self) -> Encoding {
        if self.iframe {
            Encoding::Iframe
        } else {
            Encoding::Sse
        }
    }

    pub fn heartbeat(&self) -> &'static [u8] {
        if self.iframe {
            crate::proto::iframe::HEARTBEAT
        } else {
            sse::HEARTBEAT
        }
    }

    /// Tells the stream its position may have lost messages: an SSE `reset` event, or for a
    /// forever-iframe the call `p({"reset": true, "id": …})`. `last_id`: where to continue
    /// from (given only when nothing follows, so the client's position moves to one that
    /// means something here).
    fn reset(&self, out: &mut Vec<u8>, last_id: Option<u64>, why: &[u8]) {
        if self.iframe {
            let v = serde_json::json!({"reset": true, "id": last_id.map(|i| i.to_string())});
            crate::proto::iframe::encode_call(out, &v.to_string());
        } else {
            let id = last_id.map(|i| i.to_string());
            sse::encode_event(out, id.as_deref(), Some("reset"), why);
        }
    }
}

const RESUME_RESET: &[u8] = b"history does not reach back to your last event id";

/// A held long-poll request.
#[derive(Debug)]
pub struct LongPoll {
    /// Answer 204 at this instant if nothing arrived.
    pub until: Instant,
    /// How the connection continues after the answer (keep-alive or close).
    pub persist: Persist,
    /// Extra headers for the answer (CORS).
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

/// Adds the connection to `key`'s subscribers and remembers the slot for unsubscribing.
/// Returns the id after which messages are delivered live.
pub fn subscribe(conn: &mut Conn, hub: &mut Hub, key: TopicKey, encoding: Encoding) -> Result<u64, HubError> {
    let sink = SinkRef::conn(conn.token, conn.id);
    // Messages published before this point reach the subscriber through its replay (or not
    // at all), never through live delivery: no duplicate when a publish and a resuming
    // subscribe happen while the same connection is handled.
    let after = hub.last_id();
    let slot = hub.subscribe(&key, Subscriber { sink, encoding, after })?;
    // Most connections follow one topic: room for exactly one, then for a few more at a
    // time (the list is a connection's idle cost).
    if conn.subs.len() == conn.subs.capacity() {
        conn.subs.reserve_exact(conn.subs.len().clamp(1, 8));
    }
    conn.subs.push((key, slot));
    Ok(after)
}

/// Subscribes to topics the route already checked room for (`Hub::check_room`, in the same
/// turn: nothing can have taken the room since). Should it fail anyway, the stream goes on
/// without that topic rather than failing a response already under way.
pub fn subscribe_checked(conn: &mut Conn, hub: &mut Hub, key: TopicKey, encoding: Encoding) {
    if let Err(e) = subscribe(conn, hub, key, encoding) {
        log::warn!("conn {}: {e}", conn.id);
    }
}

/// Holds back live messages on every topic the connection follows (a resume from Redis is
/// under way: what it replays must go first).
pub fn mute_all(conn: &mut Conn, hub: &mut Hub) {
    for (key, slot) in &conn.subs {
        hub.set_after(key, *slot, u64::MAX);
    }
}

/// Removes every subscription of the connection.
pub fn unsubscribe_all(conn: &mut Conn, hub: &mut Hub) {
    for (key, slot) in conn.subs.drain(..) {
        hub.unsubscribe(&key, slot);
    }
}

/// The head an SSE stream (or a forever-iframe document) starts with: what a GET gets, and
/// exactly what a HEAD gets.
fn stream_headers(iframe: bool, extra: &[(&'static str, Cow<'static, str>)]) -> Vec<(&'static str, Cow<'static, str>)> {
    let content_type = if iframe { "text/html; charset=utf-8" } else { "text/event-stream; charset=utf-8" };
    let mut headers = vec![
        ("Content-Type", Cow::Borrowed(content_type)),
        ("Cache-Control", Cow::Borrowed("no-cache")),
        // nginx buffers proxied responses unless told not to.
        ("X-Accel-Buffering", Cow::Borrowed("no")),
    ];
    headers.extend(extra.iter().cloned());
    headers
}

/// The headers of every long-poll answer besides its status and length.
fn poll_headers(extra: &[(&'static str, Cow<'static, str>)]) -> Vec<(&'static str, Cow<'static, str>)> {
    let mut headers = vec![("Content-Type", Cow::Borrowed("application/json")), ("Cache-Control", Cow::Borrowed("no-store"))];
    headers.extend(extra.iter().cloned());
    headers
}

/// Carries out `Reply::Subscribe`: starts an SSE stream (replay first), or answers a
/// long-poll at once from history, or holds it. For a HEAD (`head_only`): the head the GET
/// would start with, and no subscription.
pub fn start(conn: &mut Conn, sub: Subscription, persist: Persist, head_only: bool, env: &mut Env<'_>) {
    let now = env.now;
    if head_only {
        // The GET's headers, built by the same functions. Two differ by nature: no length
        // (a stream has none; a long-poll's depends on what arrives, and RFC 9110 §9.3.2
        // lets a HEAD leave it out), and `Connection`: a HEAD's answer ends at its head,
        // so the connection carries on as the request asked.
        let headers = match sub.kind {
            StreamKind::Sse => stream_headers(false, &sub.headers),
            StreamKind::Iframe => stream_headers(true, &sub.headers),
            StreamKind::LongPoll => poll_headers(&sub.headers),
        };
        let date = env.date;
        conn.out.with_tail(|v| response::write_head(v, 200, &headers, None, persist, date));
        if persist == Persist::Close {
            conn.life = Life::CloseAfterFlush;
        }
        return;
    }
    // In a cluster, what came after `since` is in Redis's streams: the subscriptions start
    // muted and the loop replays once Redis answers (`complete_resume`).
    let remote = sub.since.filter(|_| env.app.cluster.is_some());
    let backlog = if remote.is_some() { None } else { sub.since.map(|since| env.app.hub.backlog(&sub.topics, since, now)) };
    let resume = |conn: &mut Conn, env: &mut Env<'_>, topics: Vec<TopicKey>| {
        if let Some(since) = remote {
            mute_all(conn, &mut env.app.hub);
            // A keep-alive connection polls again and again: an answer from Redis must go to
            // the poll that asked (one that ended before it came must not answer the next).
            conn.requests = conn.requests.wrapping_add(1).max(1);
            env.app.resumes.push((SinkRef::conn(conn.token, conn.id), u32::from(conn.requests), topics, since));
        }
    };
    match sub.kind {
        StreamKind::Sse | StreamKind::Iframe => {
            let st = Sse { next_beat: now + env.app.config.sse_heartbeat, iframe: sub.kind == StreamKind::Iframe };
            let headers = stream_headers(st.iframe, &sub.headers);
            let date = env.date;
            conn.out.with_tail(|v| {
                response::write_head(v, 200, &headers, None, Persist::Stream, date);
                if st.iframe {
                    crate::proto::iframe::preamble(v, sub.callback.as_deref().unwrap_or("pushwire"));
                } else {
                    sse::encode_retry(v, sub.retry_ms);
                    if let Some((event, data)) = &sub.greeting {
                        sse::encode_event(v, None, *event, data);
                    }
                }
            });
            if let Some(b) = &backlog {
                if b.reset {
                    // With nothing to replay, the reset carries the newest id, so the
                    // browser's Last-Event-ID moves to a position that means something here
                    // (an id from the future would otherwise be reset on every reconnect).
                    let id = b.messages.is_empty().then_some(b.last_id);
                    conn.out.with_tail(|v| st.reset(v, id, RESUME_RESET));
                }
                for m in &b.messages {
                    conn.out.push_shared(m.encoded(st.encoding()).clone());
                }
            }
            for key in sub.topics.iter().cloned() {
                subscribe_checked(conn, &mut env.app.hub, key, st.encoding());
            }
            resume(conn, env, sub.topics);
            conn.transport = Transport::Sse(st);
            switch_kind(env, ConnKind::Sse);
        }
        StreamKind::LongPoll => {
            if let Some(b) = backlog.filter(|b| !b.messages.is_empty() || b.reset) {
                let reset = b.reset.then_some(b.last_id);
                // One answer is capped; the client's next poll, with the last id it got,
                // takes the rest (the answer is a prefix in id order, so nothing is skipped).
                let n = poll_answer_len(&b.messages);
                answer_poll(conn, &b.messages[..n], reset, n < b.messages.len(), persist, &sub.headers, env.date);
                return;
            }
            for key in sub.topics.iter().cloned() {
                subscribe_checked(conn, &mut env.app.hub, key, Encoding::LongPoll);
            }
            resume(conn, env, sub.topics);
            let until = now + env.app.config.poll_timeout;
            conn.transport = Transport::LongPoll(LongPoll { until, persist, headers: sub.headers });
            switch_kind(env, ConnKind::LongPoll);
        }
    }
}

fn switch_kind(env: &mut Env<'_>, to: ConnKind) {
    env.app.stats.conn_closed(ConnKind::Http);
    env.app.stats.conn_opened(to);
}

/// The long-poll answer: `200` with a JSON array of messages, or `204` when there is
/// nothing. `reset`: history did not reach back far enough (`X-Pushwire-Reset: true`), and
/// the newest id then (`X-Pushwire-Last-Id`: where to continue when the array is empty).
///
/// The body is the messages' shared encodings by reference (each carries the `,` before it):
/// a replay of the whole backlog to many pollers costs one queue entry per message, never a
/// copy of it.
fn answer_poll(
    conn: &mut Conn,
    msgs: &[Rc<Message>],
    reset: Option<u64>,
    more: bool,
    persist: Persist,
    extra: &[(&'static str, Cow<'static, str>)],
    date: &DateCache,
) {
    if msgs.is_empty() && reset.is_none() {
        let mut headers = vec![("Cache-Control", Cow::Borrowed("no-store"))];
        headers.extend(extra.iter().cloned());
        conn.out.with_tail(|v| response::write_head(v, 204, &headers, None, persist, date));
    } else {
        let mut headers = poll_headers(extra);
        if let Some(last) = reset {
            headers.push(("X-Pushwire-Reset", Cow::Borrowed("true")));
            headers.push(("X-Pushwire-Last-Id", Cow::Owned(last.to_string())));
        }
        if more {
            headers.push(("X-Pushwire-More", Cow::Borrowed("true")));
        }
        // Each encoding starts with its separator: the first message's goes after the `[`
        // without it (a small copy), the others by reference.
        let elements: usize = msgs.iter().map(|m| m.encoded(Encoding::LongPoll).len()).sum();
        let len = 2 + elements - usize::from(!msgs.is_empty()); // `[`, `]`, less the first `,`
        conn.out.with_tail(|v| {
            response::write_head(v, 200, &headers, Some(len as u64), persist, date);
            v.push(b'[');
            if let Some(first) = msgs.first() {
                v.extend_from_slice(&first.encoded(Encoding::LongPoll)[1..]);
            }
        });
        for m in msgs.iter().skip(1) {
            conn.out.push_shared(m.encoded(Encoding::LongPoll).clone());
        }
        conn.out.push_static(b"]");
    }
    if persist == Persist::Close {
        conn.life = Life::CloseAfterFlush;
    }
}

/// Most messages in one long-poll answer, and the most bytes of them (at least one message
/// always goes): a poller resuming from far back over many channels gets its backlog in
/// pieces, each a bounded part of its output cap.
const POLL_MAX_MESSAGES: usize = 1000;
const POLL_MAX_BYTES: usize = 1024 * 1024;

/// How many of `msgs` (a replay, in id order) one answer carries.
fn poll_answer_len(msgs: &[Rc<Message>]) -> usize {
    let mut bytes = 0;
    for (i, m) in msgs.iter().enumerate().take(POLL_MAX_MESSAGES) {
        bytes += m.encoded(Encoding::LongPoll).len();
        if bytes > POLL_MAX_BYTES && i > 0 {
            return i;
        }
    }
    msgs.len().min(POLL_MAX_MESSAGES)
}

/// Ends a held long-poll with these messages (none: the 204 of a timeout) and returns the
/// connection to plain HTTP. The caller unsubscribes it.
pub fn finish_poll(conn: &mut Conn, msgs: &[Rc<Message>], stats: &mut crate::app::Stats, cfg: &Config, date: &DateCache) {
    end_poll(conn, msgs, None, false, stats, cfg, date);
}

/// [`finish_poll`] with a reset (the newest id then) and a "more follows" mark.
fn end_poll(conn: &mut Conn, msgs: &[Rc<Message>], reset: Option<u64>, more: bool, stats: &mut crate::app::Stats, cfg: &Config, date: &DateCache) {
    let Transport::LongPoll(lp) = &conn.transport else { return };
    let (persist, headers) = (lp.persist, lp.headers.clone());
    answer_poll(conn, msgs, reset, more, persist, &headers, date);
    conn.back_to_http(cfg);
    stats.conn_closed(ConnKind::LongPoll);
    stats.conn_opened(ConnKind::Http);
}

/// A resume from Redis is complete: `msgs` (in id order) are what the subscriber missed;
/// `reset`: some may be missing; `last_id`: the newest id then. Replays them the way its
/// transport replays history, then lets live messages after `after` through.
#[allow(clippy::too_many_arguments)]
pub fn complete_resume(conn: &mut Conn, request: u32, keys: &[TopicKey], msgs: &[Rc<Message>], reset: bool, last_id: u64, after: u64, hub: &mut Hub, stats: &mut crate::app::Stats, cfg: &Config, date: &DateCache) {
    use crate::app::WsSession;
    if !matches!(conn.life, Life::Open) || conn.dead || (request != 0 && request != u32::from(conn.requests)) {
        return;
    }
    match &conn.transport {
        &Transport::Sse(st) => {
            let enc = st.encoding();
            if reset {
                let id = msgs.is_empty().then_some(last_id);
                conn.out.with_tail(|v| st.reset(v, id, RESUME_RESET));
            }
            for m in msgs {
                conn.out.push_shared(m.encoded(enc).clone());
            }
        }
        Transport::LongPoll(_) if !msgs.is_empty() || reset => {
            let n = poll_answer_len(msgs);
            end_poll(conn, &msgs[..n], reset.then_some(last_id), n < msgs.len(), stats, cfg, date);
            unsubscribe_all(conn, hub);
            return;
        }
        Transport::LongPoll(_) => {}
        Transport::WebSocket(w) => {
            let control = matches!(w.session, WsSession::Control { .. });
            let enc = w.encoding(if control { Encoding::WsEnvelope } else { Encoding::WsData });
            if reset && control {
                for k in keys {
                    ws::queue_text(conn, crate::app::control::reset_message(&k.name));
                }
            }
            for m in msgs {
                conn.out.push_shared(m.encoded(enc).clone());
            }
        }
        Transport::Http(_) | Transport::EioPoll(_) => return,
    }
    for (key, slot) in &conn.subs {
        if keys.contains(key) {
            hub.set_after(key, *slot, after);
        }
    }
}

/// After Redis came back, the gap in `key` could not be filled: the subscriber is told its
/// position is lost, as a resume from too far back is. A `/channels` WebSocket carries data
/// without ids (no position to lose) and a socket.io session has no such notion: they are
/// not told.
pub fn push_reset(conn: &mut Conn, key: &TopicKey, last_id: u64, hub: &mut Hub, stats: &mut crate::app::Stats, cfg: &Config, date: &DateCache) {
    use crate::app::WsSession;
    if !matches!(conn.life, Life::Open) || conn.dead {
        return;
    }
    match &conn.transport {
        &Transport::Sse(st) => {
            conn.out.with_tail(|v| st.reset(v, None, b"messages were lost while the cluster was down"));
        }
        Transport::LongPoll(_) => {
            end_poll(conn, &[], Some(last_id), false, stats, cfg, date);
            unsubscribe_all(conn, hub);
        }
        Transport::WebSocket(w) if matches!(w.session, WsSession::Control { .. }) => {
            ws::queue_text(conn, crate::app::control::reset_message(&key.name));
        }
        _ => {}
    }
}

/// What pushing a message to a subscriber did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; the connection needs a write.
    Queued,
    /// A long-poll that must now be answered.
    PollReady,
    /// Over its output cap: cut off (slow consumer).
    CutOff,
    /// Not a live subscriber any more (closing): nothing done.
    Skipped,
}

/// Queues a run of messages (see [`Run`]) for one subscriber, from its message `from` on (a
/// subscriber that joined in the middle of the run takes only the rest). The bytes are shared
/// encodings: a pointer and a length per recipient, never a copy — the run's, or for the rare
/// subscriber that joined in the middle, each remaining message's own. (A held long-poll is
/// answered by [`finish_poll`], from the messages' shared encodings too.)
pub fn push(conn: &mut Conn, run: &Run<'_>, from: usize, encoding: Encoding, cfg: &Config) -> Pushed {
    if !matches!(conn.life, Life::Open) || conn.dead {
        return Pushed::Skipped;
    }
    if encoding == Encoding::LongPoll {
        return if matches!(conn.transport, Transport::LongPoll(_)) { Pushed::PollReady } else { Pushed::Skipped };
    }
    // Only what is already waiting counts: a subscriber that keeps up takes any single
    // message, however large; one with more than the cap unread is cut off.
    if conn.out.footprint() > cfg.max_output_bytes {
        cut_off(conn);
        return Pushed::CutOff;
    }
    if from == 0 {
        conn.out.push_shared(run.encoded(encoding).clone());
    } else {
        for m in &run.messages()[from..] {
            conn.out.push_shared(m.encoded(encoding).clone());
        }
    }
    Pushed::Queued
}

/// A subscriber that lets more than `max_output_bytes` pile up is disconnected: what it has
/// not started receiving is dropped (memory stays bounded), a WebSocket is told why (1008),
/// and it can catch up by reconnecting with its last id.
fn cut_off(conn: &mut Conn) {
    conn.out.drop_unstarted();
    match conn.transport {
        Transport::WebSocket(_) => ws::queue_close(conn, crate::proto::ws::close::POLICY, "too slow: output limit exceeded"),
        _ => conn.life = Life::CloseAfterFlush,
    }
}
