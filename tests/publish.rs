//! Integration tests of publishing (issue 4): `POST /channels/{name}` answers 202 with the id and
//! the local deliveries; ids increase; channel names and methods are checked.

mod support;
use support::pubsub::*;
use support::*;

// ---------------------------------------------------------------------------------------------
// Publishing (issue: "POST /channels/{name} publishes ... 202 {"id", "subscribers"}")
// ---------------------------------------------------------------------------------------------

/// Rule: 202 JSON `{"id": "<message id>", "subscribers": <local deliveries>}`, counting every
/// transport.
#[test]
fn publish_answers_202_with_id_and_local_deliveries() {
    let server = Server::start(&[]);
    let (_, n) = publish(&server, "p", "nobody listens");
    assert_eq!(n, 0);
    let mut sse = open_sse(&server, "/channels/p", "");
    let mut ws = ws_open(&server, "/channels/p", "");
    let mut lp = server.client();
    lp.send(poll_request("/channels/p", "").as_bytes());
    wait_stats(&server, "the long-poll", |s| s["subscribers"]["longpoll"] == 1);
    let (id, n) = publish(&server, "p", "three");
    assert_eq!(n, 3, "SSE + WebSocket + long-poll");
    assert_eq!(sse.message(), (id, "three".to_string()));
    assert_eq!(ws_text(&mut ws), "three");
    assert_eq!(poll_messages(&lp.response()), vec![envelope("p", id, None, "three")]);
    // The long-poll was answered: two subscribers left.
    wait_stats(&server, "the answered long-poll to unsubscribe", |s| s["subscribers"]["longpoll"] == 0);
    let (_, n) = publish(&server, "p", "two");
    assert_eq!(n, 2);
    // Another channel's subscribers do not count.
    assert_eq!(publish(&server, "other", "x").1, 0);
}

/// Rule: every message gets an id, increasing (per channel, and across channels).
#[test]
fn publish_ids_increase() {
    let server = Server::start(&[]);
    let mut p = Publisher::new(&server);
    let mut last = 0;
    for i in 0..50 {
        let ch = if i % 3 == 0 { "ids-a" } else { "ids-b" };
        let id = p.publish(ch, format!("m{i}").as_bytes());
        assert!(id > last, "id {id} after {last}");
        last = id;
    }
}

/// Rule: channel names are 1–128 bytes of `[A-Za-z0-9._:@-]`; anything else → 400, for
/// subscribing and publishing.
#[test]
fn bad_channel_names_are_400() {
    let server = Server::start(&[]);
    let long = "x".repeat(129);
    let bad = ["a%20b", long.as_str(), "%C3%A9", "a%2Fb", "a+b", "a%00b", "a%22b", "caf%C3%A9", "a,b", "~x"];
    for name in bad {
        let path = format!("/channels/{name}");
        assert_json_error(&server.get(&path), 400);
        assert_json_error(&request(&server, "GET", &path, "Accept: text/event-stream\r\n", b""), 400);
        assert_json_error(&post(&server, &path, b"x"), 400);
        assert_json_error(&server.request(&ws_request(&path, "")), 400);
        assert_json_error(&server.get(&format!("/subscribe?channel=ok&channel={name}")), 400);
    }
    // The edges of the valid set.
    let max = "y".repeat(128);
    for good in [max.as_str(), "news.sport:eu@v1_2-x", "A", "0"] {
        publish(&server, good, "fine");
    }
    assert_json_error(&server.get("/subscribe"), 400);
}

/// Rule: "anything else → 400" also holds for a name that is not UTF-8.
#[test]
fn channel_name_that_is_not_utf8_is_400() {
    let server = Server::start(&[]);
    assert_json_error(&post(&server, "/channels/%FF", b"x"), 400);
    assert_json_error(&server.get("/channels/%FF"), 400);
}

/// Rule: the hub's paths answer other methods with 405 and `Allow`.
#[test]
fn wrong_method_is_405() {
    let server = Server::start(&[]);
    for (method, path, allow) in [
        ("PUT", "/channels/x", "GET, POST, HEAD, OPTIONS"),
        ("DELETE", "/channels/x", "GET, POST, HEAD, OPTIONS"),
        ("PATCH", "/users/x", "GET, POST, HEAD, OPTIONS"),
        ("POST", "/subscribe?channel=x", "GET, HEAD, OPTIONS"),
        ("POST", "/ws", "GET, HEAD, OPTIONS"),
    ] {
        let r = request(&server, method, path, "", b"");
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
}
