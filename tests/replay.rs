//! Integration tests of message ids, history and replay (issue 4): `Last-Event-ID`, `since`,
//! `reset`, history size and TTL, and runs (messages published together) delivered once, in order.

mod support;
use support::pubsub::*;
use support::ws::frame;
use support::*;

use std::time::Duration;

use pushwire::proto::sse::parse::Event;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts the event is the `reset` signal (no id of its own).
fn assert_reset(ev: &Event) {
    assert_eq!(ev.event, "reset", "expected the reset event first, got {ev:?}");
}

// ---------------------------------------------------------------------------------------------
// Ids, history and replay (issue: "Message ids, history and replay")
// ---------------------------------------------------------------------------------------------

/// Rule: a subscriber that returns with `Last-Event-ID` gets every message it missed, in
/// order, then live ones: no gap, no duplicate.
#[test]
fn sse_resume_with_last_event_id_header() {
    let server = Server::start(&[]);
    let mut s = open_sse(&server, "/channels/re", "");
    let seen: Vec<(u64, String)> = (0..3).map(|i| (publish_id(&server, "re", &format!("seen{i}")), format!("seen{i}"))).collect();
    assert_eq!(s.messages(3), seen);
    drop(s);
    let missed: Vec<(u64, String)> = (0..4).map(|i| (publish_id(&server, "re", &format!("missed{i}")), format!("missed{i}"))).collect();
    let last = seen[2].0;
    let mut s = open_sse(&server, "/channels/re", &format!("Last-Event-ID: {last}\r\n"));
    assert_eq!(s.messages(4), missed, "exactly the missed messages, in order");
    let live = publish_id(&server, "re", "live");
    assert_eq!(s.message(), (live, "live".to_string()), "then live ones, nothing in between");
    // Resuming from the newest id replays nothing and signals no reset.
    let mut s2 = open_sse(&server, "/channels/re", &format!("Last-Event-ID: {live}\r\n"));
    let next = publish_id(&server, "re", "next");
    assert_eq!(s2.message(), (next, "next".to_string()));
    assert_eq!(s.message(), (next, "next".to_string()));
}

/// Rule: `?lastEventId=` (EventSource polyfills) resumes like the header.
#[test]
fn sse_resume_with_last_event_id_query() {
    let server = Server::start(&[]);
    let first = publish_id(&server, "rq", "first");
    let missed: Vec<(u64, String)> = (0..3).map(|i| (publish_id(&server, "rq", &format!("m{i}")), format!("m{i}"))).collect();
    let mut s = open_sse(&server, &format!("/channels/rq?lastEventId={first}"), "");
    assert_eq!(s.messages(3), missed);
    let live = publish_id(&server, "rq", "live");
    assert_eq!(s.message(), (live, "live".to_string()));
}

/// Rule: a `Last-Event-ID` that is not a message id is refused.
#[test]
fn invalid_last_event_id_is_400() {
    let server = Server::start(&[]);
    assert_json_error(&request(&server, "GET", "/channels/x", "Accept: text/event-stream\r\nLast-Event-ID: abc\r\n", b""), 400);
    assert_json_error(&server.get("/channels/x?since=-1"), 400);
}

/// Rule: replay also works for multi-channel subscriptions: one `Last-Event-ID` resumes
/// `/subscribe?channel=a&channel=b` across both channels, merged in order.
#[test]
fn multi_channel_sse_resumes_across_channels() {
    let server = Server::start(&[]);
    let mut s = open_sse(&server, "/subscribe?channel=ma&channel=mb", "");
    let mut p = Publisher::new(&server);
    let a1 = p.publish("ma", b"a1");
    let b1 = p.publish("mb", b"b1");
    let a2 = p.publish("ma", b"a2");
    p.publish("other", b"not subscribed");
    assert_eq!(s.messages(3), vec![(a1, "a1".into()), (b1, "b1".into()), (a2, "a2".into())]);
    drop(s);
    let b2 = p.publish("mb", b"b2");
    let a3 = p.publish("ma", b"a3");
    let b3 = p.publish("mb", b"b3");
    let mut s = open_sse(&server, "/subscribe?channel=ma&channel=mb", &format!("Last-Event-ID: {a2}\r\n"));
    assert_eq!(s.messages(3), vec![(b2, "b2".into()), (a3, "a3".into()), (b3, "b3".into())]);
    let a4 = p.publish("ma", b"a4");
    let b4 = p.publish("mb", b"b4");
    assert_eq!(s.messages(2), vec![(a4, "a4".into()), (b4, "b4".into())]);
    // The resume point may be an id of either channel.
    let mut s = open_sse(&server, &format!("/subscribe?channel=mb&channel=ma&lastEventId={b3}"), "");
    assert_eq!(s.messages(2), vec![(a4, "a4".into()), (b4, "b4".into())]);
}

/// Rule (multi-channel): a channel named twice in `/subscribe` is still one subscription: each
/// message arrives once, in the backlog and live.
#[test]
fn multi_channel_subscription_naming_a_channel_twice_delivers_once() {
    let server = Server::start(&[]);
    let first = publish_id(&server, "dup", "first");
    let second = publish_id(&server, "dup", "second");
    let mut s = open_sse(&server, &format!("/subscribe?channel=dup&channel=other&channel=dup&lastEventId={first}"), "");
    let (live, n) = publish(&server, "dup", "live");
    let marker = publish_id(&server, "other", "marker");
    assert_eq!(
        s.messages(3),
        vec![(second, "second".into()), (live, "live".into()), (marker, "marker".into())],
        "each message of the doubly named channel once"
    );
    assert_eq!(n, 1, "one subscriber");
}

/// Rule: an id older than the history (here: evicted by `--history 3`) gets an SSE event named
/// `reset` before what there is.
#[test]
fn sse_resume_older_than_history_gets_reset() {
    let server = Server::start(&["--history", "3"]);
    let mut s = open_sse(&server, "/channels/h3", "");
    let seen = publish_id(&server, "h3", "seen");
    assert_eq!(s.message(), (seen, "seen".to_string()));
    drop(s);
    let ids: Vec<u64> = (0..5).map(|i| publish_id(&server, "h3", &format!("away{i}"))).collect();
    let mut s = open_sse(&server, "/channels/h3", &format!("Last-Event-ID: {seen}\r\n"));
    let ev = s.next();
    assert_reset(&ev);
    assert_eq!(ev.id, None, "the reset event has no id of its own");
    let kept: Vec<(u64, String)> = (2..5).map(|i| (ids[i], format!("away{i}"))).collect();
    assert_eq!(s.messages(3), kept, "what history still has");
    let live = publish_id(&server, "h3", "live");
    assert_eq!(s.message(), (live, "live".to_string()));
    // From an id still in history: no reset.
    let mut s = open_sse(&server, "/channels/h3", &format!("Last-Event-ID: {}\r\n", ids[3]));
    assert_eq!(s.messages(2), vec![(ids[4], "away4".to_string()), (live, "live".to_string())]);
}

/// Rule: an id from before this server started (`1`) may have missed messages: `reset`, then
/// all of the history, then live.
#[test]
fn sse_resume_from_before_server_start_gets_reset() {
    let server = Server::start(&[]);
    let a = publish_id(&server, "old", "a");
    let b = publish_id(&server, "old", "b");
    let mut s = open_sse(&server, "/channels/old", "Last-Event-ID: 1\r\n");
    assert_reset(&s.next());
    assert_eq!(s.messages(2), vec![(a, "a".to_string()), (b, "b".to_string())]);
    let live = publish_id(&server, "old", "live");
    assert_eq!(s.message(), (live, "live".to_string()));
    // On a channel that never existed, too.
    let mut s = open_sse(&server, "/channels/never", "Last-Event-ID: 1\r\n");
    assert_reset(&s.next());
    let live = publish_id(&server, "never", "first");
    assert_eq!(s.message(), (live, "first".to_string()));
}

/// Rule: history lasts at most `--history-ttl`; a subscriber resuming after that is told
/// (reset) and gets nothing replayed.
#[test]
fn history_ttl_expires_messages() {
    let server = Server::start(&["--history-ttl", "0.5"]);
    let before = publish_id(&server, "ttl", "before");
    let gone = publish_id(&server, "ttl", "gone");
    // At first the message is in history: a since-poll answers with it, no reset.
    let r = server.get(&format!("/channels/ttl?since={before}"));
    assert_eq!(poll_messages(&r), vec![envelope("ttl", gone, None, "gone")]);
    assert_eq!(r.header("x-pushwire-reset"), None);
    // Wait for it to expire (each poll answers at once: with the message, or with the reset).
    wait_for("history to expire", || {
        let r = server.get(&format!("/channels/ttl?since={before}"));
        let msgs = poll_messages(&r);
        if r.header("x-pushwire-reset") == Some("true") {
            assert_eq!(msgs, Vec::<Value>::new(), "expired messages are not replayed");
            true
        } else {
            assert_eq!(msgs, vec![envelope("ttl", gone, None, "gone")]);
            false
        }
    });
    let mut s = open_sse(&server, "/channels/ttl", &format!("Last-Event-ID: {before}\r\n"));
    assert_reset(&s.next());
    let live = publish_id(&server, "ttl", "live");
    assert_eq!(s.message(), (live, "live".to_string()), "nothing replayed between reset and live");
}

/// Rule: a WebSocket subscriber resumes with `?since=` too: missed messages as frames, then
/// live ones.
#[test]
fn websocket_subscriber_resumes_with_since() {
    let server = Server::start(&[]);
    let first = publish_id(&server, "wr", "first");
    publish_id(&server, "wr", "m1");
    publish_id(&server, "wr", "m2");
    let mut ws = ws_open(&server, &format!("/channels/wr?since={first}"), "");
    assert_eq!(ws_text(&mut ws), "m1");
    assert_eq!(ws_text(&mut ws), "m2");
    publish_id(&server, "wr", "live");
    assert_eq!(ws_text(&mut ws), "live");
}

// The newest of the ids given wins: a page opened with ?lastEventId=A reconnects to the same
// URL with the header saying B > A.
#[test]
fn newest_resume_id_wins() {
    let server = Server::start(&[]);
    let a = publish_id(&server, "ids", "one");
    let b = publish_id(&server, "ids", "two");
    publish_id(&server, "ids", "three");
    let mut sse = open_sse(&server, &format!("/channels/ids?lastEventId={a}"), &format!("Last-Event-ID: {b}\r\n"));
    let (_, data) = sse.message();
    assert_eq!(data, "three");
}

// ---------------------------------------------------------------------------------------------
// Runs: small messages of one channel published together go out together
// ---------------------------------------------------------------------------------------------

/// Pipelined publishes to two channels (read by the server in one go, so consecutive ones
/// to the same channel are delivered as one run), one of them large: every transport gets
/// each message once, in publish order, also across channels.
#[test]
fn pipelined_publishes_reach_every_transport_once_and_in_order() {
    let server = Server::start(&[]);
    let mut sse = open_sse(&server, "/subscribe?channel=ra&channel=rb", "");
    let mut ws_a = ws_open(&server, "/channels/ra", "");
    let mut ctl = ws_open(&server, "/ws", "");
    ctl_subscribe(&mut ctl, "ra");
    ctl_subscribe(&mut ctl, "rb");
    let mut lp = server.client();
    lp.send(poll_request("/subscribe?channel=ra&channel=rb", "").as_bytes());
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 2);

    // a5 is over the size that joins runs: it goes alone, between a4 and a6.
    let big = "5".repeat(5000);
    let plan = [("ra", "a1"), ("ra", "a2"), ("rb", "b3"), ("ra", "a4"), ("ra", big.as_str()), ("ra", "a6")];
    let mut raw = Vec::new();
    for (ch, data) in plan {
        raw.extend_from_slice(format!("POST /channels/{ch} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{data}", data.len()).as_bytes());
    }
    let mut p = server.client();
    p.send(&raw);
    let ids: Vec<u64> = plan.iter().map(|_| publish_answer(&p.response()).0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let want: Vec<(u64, String)> = ids.iter().zip(plan).map(|(id, (_, d))| (*id, d.to_string())).collect();
    assert_eq!(sse.messages(plan.len()), want, "SSE on both channels, in publish order");
    for (id, (ch, d)) in ids.iter().zip(plan) {
        assert_eq!(ctl_recv(&mut ctl), envelope(ch, *id, None, d), "/ws on both channels, in publish order");
        if ch == "ra" {
            assert_eq!(ws_text(&mut ws_a), d, "the channel's WebSocket");
        }
    }
    // The long-poll is answered by the first run that reaches it (how many of the pipelined
    // requests one read takes is up to the kernel): a prefix of the messages, in order.
    let got = poll_messages(&lp.response());
    let all: Vec<Value> = ids.iter().zip(plan).map(|(id, (ch, d))| envelope(ch, *id, None, d)).collect();
    assert!(!got.is_empty() && got.len() <= all.len() && got[..] == all[..got.len()], "{got:?}");
    for c in [&mut sse.c, &mut ws_a, &mut ctl] {
        assert_silent(c, Duration::from_millis(150), "nothing more: each message once");
    }
    assert_eq!(stats(&server)["messages_published"], plan.len());
}

/// A `/ws` socket that publishes, subscribes and publishes again in one read joins in the
/// middle of a run: it gets only the message published after it subscribed.
#[test]
fn subscriber_that_joins_in_the_middle_of_a_run_gets_the_rest() {
    let server = Server::start(&[]);
    let mut c = ws_open(&server, "/ws", "");
    let mut raw = Vec::new();
    for v in [
        json!({"op": "publish", "channel": "mid", "data": "x"}),
        json!({"op": "subscribe", "channel": "mid"}),
        json!({"op": "publish", "channel": "mid", "data": "y"}),
    ] {
        raw.extend_from_slice(&frame(true, 0x1, v.to_string().as_bytes()));
    }
    c.send(&raw);
    let x = ctl_recv(&mut c);
    assert_eq!(x["ok"], "publish", "{x}");
    assert_eq!(ctl_recv(&mut c), json!({"ok": "subscribe", "channel": "mid"}));
    let y = parse_id(&ctl_recv(&mut c)["id"]);
    assert_eq!(ctl_recv(&mut c), envelope("mid", y, None, "y"));
    assert_silent(&mut c, Duration::from_millis(150), "the message published before it subscribed");
}

/// Rule (issue 10): a resume id newer than the newest message (from a process whose clock was
/// ahead, or another deployment) is a reset, not silence. SSE: a `reset` event carrying the
/// newest id, so the browser's next reconnect resumes from a position that means something;
/// then live messages. Long-poll: `X-Pushwire-Reset` at once, with `X-Pushwire-Last-Id` to
/// continue from, which then holds as usual.
#[test]
fn a_resume_id_from_the_future_is_a_reset() {
    let server = Server::start(&[]);
    let newest = publish_id(&server, "fut", "before");
    let future = newest + 3_600_000_000; // an hour ahead
    let mut s = open_sse(&server, "/channels/fut", &format!("Last-Event-ID: {future}\r\n"));
    let ev = s.next();
    assert_reset(&ev);
    assert_eq!(ev.id.as_deref(), Some(newest.to_string().as_str()), "the reset moves the client's id back: {ev:?}");
    let (id, _) = publish(&server, "fut", "live");
    assert_eq!(s.message(), (id, "live".to_string()), "what is published after the reset arrives");

    let r = server.get(&format!("/channels/fut?since={future}"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-pushwire-reset"), Some("true"), "{r:?}");
    let cursor: u64 = r.header("x-pushwire-last-id").expect("a cursor to continue from").parse().unwrap();
    assert_eq!(cursor, id);
    assert_eq!(poll_messages(&r), Vec::<Value>::new());
    // From the cursor the poll holds (nothing newer), then gets the next message.
    let mut c = server.client();
    c.send(poll_request(&format!("/channels/fut?since={cursor}"), "").as_bytes());
    wait_stats(&server, "the held poll", |v| v["subscribers"]["longpoll"] == 1);
    let (next, _) = publish(&server, "fut", "after");
    let r = c.response();
    assert_eq!(poll_messages(&r), vec![envelope("fut", next, None, "after")]);
}

/// Rule (issue 10): one long-poll answer is capped (1,000 messages or 1 MiB); it says
/// `X-Pushwire-More: true`, and polling again with the last id got takes the rest with no gap
/// and no duplicate.
#[test]
fn a_long_backlog_is_answered_in_pieces() {
    let server = Server::start(&["--history", "2000"]);
    let mut p = Publisher::new(&server);
    let first = p.publish("lb", b"m0");
    for i in 1..1500 {
        p.publish("lb", format!("m{i}").as_bytes());
    }
    let mut since = first - 1;
    let mut got = Vec::new();
    let mut answers = 0;
    loop {
        let r = server.get(&format!("/channels/lb?since={since}"));
        answers += 1;
        assert_eq!(r.status, 200, "{r:?}");
        let msgs = poll_messages(&r);
        assert!(msgs.len() <= 1000, "{} messages in one answer", msgs.len());
        since = parse_id(&msgs[msgs.len() - 1]["id"]);
        got.extend(msgs.into_iter().map(|m| m["data"].as_str().unwrap().to_string()));
        if r.header("x-pushwire-more").is_none() {
            break;
        }
        assert!(answers < 5, "more than 5 answers");
    }
    assert_eq!(answers, 2);
    let want: Vec<String> = (0..1500).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

/// Rule (issue 10): the other cap of one long-poll answer, 1 MiB of messages: 35 messages of
/// 100 KB come in four answers (10, 10, 10, 5), every one of them once and in order.
#[test]
fn a_long_poll_answer_holds_at_most_a_mebibyte() {
    let server = Server::start(&["--max-body", "200000"]);
    let mut p = Publisher::new(&server);
    let first = p.publish("big", &vec![b'0'; 100_000]);
    for i in 1..35u8 {
        p.publish("big", &vec![b'0' + i % 10; 100_000]);
    }
    let (mut since, mut count, mut answers) = (first - 1, 0, 0);
    loop {
        let r = server.get(&format!("/channels/big?since={since}"));
        answers += 1;
        assert!(r.body.len() <= (1 << 20) + 200_000, "{} bytes in one answer", r.body.len());
        let msgs = poll_messages(&r);
        for m in &msgs {
            assert_eq!(m["data"].as_str().unwrap().as_bytes()[0], b'0' + (count % 10) as u8, "message {count}");
            count += 1;
        }
        since = parse_id(&msgs[msgs.len() - 1]["id"]);
        if r.header("x-pushwire-more").is_none() {
            break;
        }
        assert!(answers < 10);
    }
    assert_eq!((count, answers), (35, 4));
}
