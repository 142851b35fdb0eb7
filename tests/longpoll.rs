//! Integration tests of long-polling (issue 4): `since` backlogs, held polls, 204 on timeout,
//! the reset flag, and keep-alive after an answer.

mod support;
use support::pubsub::*;
use support::*;

use std::time::Duration;

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Long-polling (issue: "Long-polling (Comet)")
// ---------------------------------------------------------------------------------------------

/// Rule: `?since=ID` answers at once with every message after ID as
/// `[{"id","channel","event","data"}]`.
#[test]
fn long_poll_since_answers_at_once_with_backlog() {
    let server = Server::start(&[]);
    let mut p = Publisher::new(&server);
    let first = p.publish("lp", b"first");
    let a = publish_answer(&p.post("/channels/lp?event=kind", b"with event")).0;
    let b = p.publish("lp", b"multi\nline \"quoted\" \xc3\xa9");
    p.publish("elsewhere", b"not this channel");
    let r = server.get(&format!("/channels/lp?since={first}"));
    assert_eq!(
        poll_messages(&r),
        vec![envelope("lp", a, Some("kind"), "with event"), envelope("lp", b, None, "multi\nline \"quoted\" é")]
    );
    assert_eq!(r.header("x-pushwire-reset"), None);
    let r = server.get(&format!("/channels/lp?since={a}"));
    assert_eq!(poll_messages(&r), vec![envelope("lp", b, None, "multi\nline \"quoted\" é")]);
    // Multi-channel: merged in id order.
    let c = p.publish("elsewhere", b"c");
    let r = server.get(&format!("/subscribe?channel=lp&channel=elsewhere&since={a}"));
    let got = poll_messages(&r);
    let ids: Vec<u64> = got.iter().map(|m| parse_id(&m["id"])).collect();
    assert_eq!(ids.len(), 3, "{got:?}");
    assert_eq!(ids[0], b);
    assert_eq!(ids[2], c);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

/// Rule: without `since`, a long-poll holds until a message arrives, then answers 200 with it.
#[test]
fn long_poll_holds_until_a_message_arrives() {
    let server = Server::start(&[]);
    let mut lp = server.client();
    lp.send(poll_request("/channels/hold", "").as_bytes());
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 1 && s["connections"]["longpoll"] == 1);
    assert_silent(&mut lp, Duration::from_millis(300), "a held long-poll");
    let (id, n) = publish(&server, "hold", "arrived");
    assert_eq!(n, 1);
    let r = lp.response();
    assert_eq!(poll_messages(&r), vec![envelope("hold", id, None, "arrived")]);
    assert_eq!(r.header("x-pushwire-reset"), None);
    wait_stats(&server, "the poll to end", |s| s["subscribers"]["longpoll"] == 0 && s["connections"]["longpoll"] == 0);
    // The cursor pattern: since = the last id holds until the next one.
    lp.send(poll_request(&format!("/channels/hold?since={id}"), "").as_bytes());
    wait_stats(&server, "the second held long-poll", |s| s["subscribers"]["longpoll"] == 1);
    assert_silent(&mut lp, Duration::from_millis(200), "a long-poll with nothing after its cursor");
    let next = publish_id(&server, "hold", "next");
    assert_eq!(poll_messages(&lp.response()), vec![envelope("hold", next, None, "next")]);
}

/// Rule: a multi-channel long-poll (`/subscribe`) is answered by a message on any channel.
#[test]
fn multi_channel_long_poll_holds_then_answers() {
    let server = Server::start(&[]);
    let mut lp = server.client();
    lp.send(poll_request("/subscribe?channel=pa&channel=pb", "").as_bytes());
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 2);
    assert_silent(&mut lp, Duration::from_millis(200), "a held multi-channel long-poll");
    let id = publish_id(&server, "pb", "on b");
    assert_eq!(poll_messages(&lp.response()), vec![envelope("pb", id, None, "on b")]);
    wait_stats(&server, "both subscriptions to end", |s| s["subscribers"]["longpoll"] == 0);
}

/// Rule: with nothing to deliver, the long-poll is answered 204 after `--poll-timeout`; the
/// connection stays usable.
#[test]
fn long_poll_times_out_with_204() {
    let server = Server::start(&["--poll-timeout", "0.5"]);
    let mut lp = server.client();
    lp.send(poll_request("/channels/quiet", "").as_bytes());
    let r = lp.response();
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), None, "204 has no Content-Length");
    wait_stats(&server, "the timed-out poll to unsubscribe", |s| s["subscribers"]["longpoll"] == 0);
    // Keep-alive: the same connection takes another request.
    lp.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = lp.response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    // And a message after the timeout is not lost to a resuming poller.
    let id = publish_id(&server, "quiet", "later");
    lp.send(poll_request("/channels/quiet?since=1", "").as_bytes());
    let r = lp.response();
    assert_eq!(poll_messages(&r), vec![envelope("quiet", id, None, "later")]);
}

/// Rule: a `since` older than the history is flagged in the reply (`X-Pushwire-Reset: true`)
/// along with what there is.
#[test]
fn long_poll_since_older_than_history_flags_reset() {
    let server = Server::start(&["--history", "3"]);
    let ids: Vec<u64> = (0..5).map(|i| publish_id(&server, "lr", &format!("m{i}"))).collect();
    let r = server.get(&format!("/channels/lr?since={}", ids[0]));
    assert_eq!(r.header("x-pushwire-reset"), Some("true"), "{r:?}");
    let expected: Vec<Value> = (2..5).map(|i| envelope("lr", ids[i], None, &format!("m{i}"))).collect();
    assert_eq!(poll_messages(&r), expected);
    // An id from before the server started, on a channel with no messages: answered at once,
    // empty, flagged.
    let r = server.get("/channels/empty?since=1");
    assert_eq!(r.header("x-pushwire-reset"), Some("true"), "{r:?}");
    assert_eq!(poll_messages(&r), Vec::<Value>::new());
    // From an id in history: no flag.
    let r = server.get(&format!("/channels/lr?since={}", ids[3]));
    assert_eq!(r.header("x-pushwire-reset"), None, "{r:?}");
    assert_eq!(poll_messages(&r), vec![envelope("lr", ids[4], None, "m4")]);
}

/// Rule: after a long-poll answer the connection stays usable (keep-alive): backlog, held,
/// and ordinary requests on one connection.
#[test]
fn long_poll_connection_is_kept_alive() {
    let server = Server::start(&[]);
    let first = publish_id(&server, "ka", "first");
    let second = publish_id(&server, "ka", "second");
    let mut c = server.client();
    c.send(poll_request(&format!("/channels/ka?since={first}"), "").as_bytes());
    let r = c.response();
    assert_ne!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(poll_messages(&r), vec![envelope("ka", second, None, "second")]);
    c.send(poll_request("/channels/ka", "").as_bytes());
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 1);
    let third = publish_id(&server, "ka", "third");
    let r = c.response();
    assert_ne!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(poll_messages(&r), vec![envelope("ka", third, None, "third")]);
    c.send(poll_request(&format!("/channels/ka?since={second}"), "").as_bytes());
    assert_eq!(poll_messages(&c.response()), vec![envelope("ka", third, None, "third")]);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

/// Rule (keep-alive): a request pipelined behind a held long-poll is answered after the poll's
/// answer (RFC 9112 §9.3.2: responses in request order), not dropped.
#[test]
fn request_pipelined_behind_a_held_long_poll_is_answered() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"GET /channels/pipe HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 1);
    let id = publish_id(&server, "pipe", "first answer");
    assert_eq!(poll_messages(&c.response()), vec![envelope("pipe", id, None, "first answer")]);
    let r = c.response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]), "the pipelined request's answer");
}

/// Rule (hygiene): a held long-poll whose client goes away stops being a subscriber.
#[test]
fn held_long_poll_client_that_leaves_is_unsubscribed() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(poll_request("/channels/gone", "").as_bytes());
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 1);
    drop(c);
    wait_stats(&server, "the long-poll to go", |s| s["subscribers"]["longpoll"] == 0 && s["connections"]["longpoll"] == 0);
    assert_eq!(publish(&server, "gone", "x").1, 0);
}
