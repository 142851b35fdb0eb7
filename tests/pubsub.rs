//! Integration tests of the pub/sub hub (issue 4): the real binary on an ephemeral port,
//! spoken to over raw TCP on 127.0.0.1.
//!
//! Sections: SSE · publishing · ids, history and replay · long-polling · WebSocket
//! subscribers · the /ws control protocol · users · publish token, CORS, listen warning ·
//! slow consumers · /stats · the SSE round-trip property.
//!
//! Races are avoided by confirming a subscription before publishing: an SSE stream is
//! registered before its head and `retry:` are written, a WebSocket before its 101, a /ws
//! subscription before its ack, and a held long-poll is waited for in `GET /stats`.

mod support;
use support::ws::{frame, read_frame, ACCEPT, KEY};
use support::*;

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire::proto::sse::parse::{self, Event};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Reads a response head only (for streams, whose body never ends).
fn read_head(c: &mut Client) -> Response {
    let raw = c.read_until(b"\r\n\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, raw.len()),
        other => panic!("bad response head {other:?}: {:?}", String::from_utf8_lossy(&raw)),
    }
    assert_eq!(r.version, Some(1), "HTTP/1.1 expected: {:?}", String::from_utf8_lossy(&raw));
    Response {
        status: r.code.unwrap(),
        headers: r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect(),
        body: Vec::new(),
    }
}

fn body_json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", r.text()))
}

/// Asserts a JSON response: status, `Content-Type: application/json`, and the body.
fn assert_json(r: &Response, status: u16, body: &Value) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(&body_json(r), body);
}

/// Asserts `{"error": "<non-empty text>"}` with this status.
fn assert_json_error(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{r:?} {:?}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = body_json(r);
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.len(), 1, "{v}");
    assert!(obj["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
}

/// One request on a fresh connection (`Connection: close`).
fn request(server: &Server, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut c = server.client();
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n", body.len())
            .as_bytes(),
    );
    c.send(body);
    c.response()
}

fn post(server: &Server, path: &str, body: &[u8]) -> Response {
    request(server, "POST", path, "", body)
}

fn parse_id(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("id is not a string: {v}"));
    assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()), "id {s:?}");
    s.parse().unwrap()
}

/// Checks a publish answer (`202 {"id": "<string>", "subscribers": N}`); returns (id, N).
fn publish_answer(r: &Response) -> (u64, u64) {
    assert_eq!(r.status, 202, "{r:?} {:?}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = body_json(r);
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.len(), 2, "exactly id and subscribers: {v}");
    (parse_id(&obj["id"]), obj["subscribers"].as_u64().unwrap_or_else(|| panic!("subscribers: {v}")))
}

/// Publishes on a fresh connection; returns (id, local deliveries).
fn publish(server: &Server, channel: &str, data: &str) -> (u64, u64) {
    publish_answer(&post(server, &format!("/channels/{channel}"), data.as_bytes()))
}

fn publish_id(server: &Server, channel: &str, data: &str) -> u64 {
    publish(server, channel, data).0
}

/// A keep-alive publishing connection.
struct Publisher {
    c: Client,
    headers: String,
}

impl Publisher {
    fn new(server: &Server) -> Publisher {
        Publisher { c: server.client(), headers: String::new() }
    }

    fn post(&mut self, path: &str, body: &[u8]) -> Response {
        let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{}\r\n", body.len(), self.headers);
        self.c.send(head.as_bytes());
        self.c.send(body);
        self.c.large_response_to(false)
    }

    /// Publishes `data` to `channel`; returns the id.
    fn publish(&mut self, channel: &str, data: &[u8]) -> u64 {
        publish_answer(&self.post(&format!("/channels/{channel}"), data)).0
    }
}

fn stats(server: &Server) -> Value {
    let r = server.get("/stats");
    assert_eq!(r.status, 200);
    body_json(&r)
}

/// Polls `/stats` until `cond` holds; returns the stats that satisfied it.
fn wait_stats(server: &Server, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, || {
        last = stats(server);
        cond(&last)
    });
    last
}

/// Asserts that nothing arrives on `c` within `d`: the read times out (WouldBlock/TimedOut).
fn assert_silent(c: &mut Client, d: Duration, what: &str) {
    assert!(c.buffered().is_empty(), "{what}: already received {:?}", String::from_utf8_lossy(c.buffered()));
    c.stream.set_read_timeout(Some(d)).unwrap();
    let mut b = [0u8; 256];
    match c.stream.read(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("{what}: the connection closed"),
        Ok(n) => panic!("{what}: received {:?}", String::from_utf8_lossy(&b[..n])),
        Err(e) => panic!("{what}: {e}"),
    }
    c.stream.set_read_timeout(Some(WAIT)).unwrap();
}

/// What EventSource hands the page for published data: every CRLF, CR and LF becomes LF.
fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

// ---- SSE ----

/// An open event stream: its response head, and the `retry:` block that started it.
struct SseStream {
    c: Client,
    head: Response,
    first: Vec<u8>,
}

fn sse_request(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n")
}

/// Opens an SSE stream and reads its head and first block (the `retry:` field). When this
/// returns, the subscription is registered.
fn open_sse(server: &Server, path: &str, extra: &str) -> SseStream {
    let mut c = server.client();
    c.send(sse_request(path, extra).as_bytes());
    let head = read_head(&mut c);
    assert_eq!(head.status, 200, "{head:?}");
    let first = c.read_until(b"\n\n");
    assert!(first.starts_with(b"retry: "), "stream starts with {:?}", String::from_utf8_lossy(&first));
    SseStream { c, head, first }
}

impl SseStream {
    /// The next block (bytes up to and including the blank line that ends it).
    fn block(&mut self) -> Vec<u8> {
        self.c.read_until(b"\n\n")
    }

    /// The next dispatched event, parsed by the WHATWG rules; comments are skipped.
    fn next(&mut self) -> Event {
        for _ in 0..10_000 {
            let block = self.block();
            let mut evs = parse::events(&block);
            match evs.len() {
                0 => continue,
                1 => return evs.pop().unwrap(),
                n => panic!("{n} events in one block: {:?}", String::from_utf8_lossy(&block)),
            }
        }
        panic!("no event in 10000 blocks");
    }

    /// The next event; asserts it is a plain message with an id, returns (id, data).
    fn message(&mut self) -> (u64, String) {
        let ev = self.next();
        assert_eq!(ev.event, "message", "{ev:?}");
        let id = ev.id.as_deref().unwrap_or_else(|| panic!("no id: {ev:?}")).parse().unwrap();
        (id, ev.data)
    }

    /// The next `n` messages as (id, data).
    fn messages(&mut self, n: usize) -> Vec<(u64, String)> {
        (0..n).map(|_| self.message()).collect()
    }
}

/// Asserts the event is the `reset` signal (no id of its own).
fn assert_reset(ev: &Event) {
    assert_eq!(ev.event, "reset", "expected the reset event first, got {ev:?}");
}

// ---- WebSocket (frame helpers as in tests/ws.rs) ----


fn ws_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// Opens a WebSocket with raw bytes and checks the 101. The subscription of a
/// `/channels/{name}` or `/users/{name}` socket is registered when the 101 is sent.
fn ws_open(server: &Server, path: &str, extra: &str) -> Client {
    let mut c = server.client();
    c.send(ws_request(path, extra).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 101, "{r:?} {:?}", r.text());
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT));
    c
}

fn ws_send_text(c: &mut Client, text: &str) {
    c.send(&frame(true, 0x1, text.as_bytes()));
}

/// Reads one frame and asserts it is a single, complete text frame; returns its text.
fn ws_text(c: &mut Client) -> String {
    let (fin, op, payload) = read_frame(c);
    assert_eq!(op, 0x1, "expected a text frame, got opcode {op:#x} {:?}", String::from_utf8_lossy(&payload));
    assert!(fin, "a message is one unfragmented frame");
    String::from_utf8(payload).expect("text frames hold UTF-8")
}

/// The /ws control socket, JSON in and out.
fn ctl_send(c: &mut Client, v: &Value) {
    ws_send_text(c, &v.to_string());
}

fn ctl_recv(c: &mut Client) -> Value {
    let t = ws_text(c);
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("control reply is not JSON ({e}): {t:?}"))
}

fn ctl_subscribe(c: &mut Client, channel: &str) {
    ctl_send(c, &json!({"op": "subscribe", "channel": channel}));
    assert_eq!(ctl_recv(c), json!({"ok": "subscribe", "channel": channel}));
}

/// Asserts an `{"error": "<text>"}` control reply.
fn assert_ctl_error(v: &Value, after: &str) {
    let obj = v.as_object().unwrap_or_else(|| panic!("after {after}: not an object: {v}"));
    assert_eq!(obj.len(), 1, "after {after}: {v}");
    assert!(obj.get("error").and_then(Value::as_str).is_some_and(|s| !s.is_empty()), "after {after}: {v}");
}

// ---- long-poll ----

fn poll_request(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

/// Checks a long-poll answer with messages: 200, JSON array; returns its elements.
fn poll_messages(r: &Response) -> Vec<Value> {
    assert_eq!(r.status, 200, "{r:?} {:?}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    match body_json(r) {
        Value::Array(a) => a,
        v => panic!("not an array: {v}"),
    }
}

fn envelope(channel: &str, id: u64, event: Option<&str>, data: &str) -> Value {
    json!({"channel": channel, "id": id.to_string(), "event": event, "data": data})
}

// ---------------------------------------------------------------------------------------------
// SSE (issue: "SSE, by hand")
// ---------------------------------------------------------------------------------------------

/// Rule: headers `Content-Type: text/event-stream; charset=utf-8`, `Cache-Control: no-cache`,
/// `X-Accel-Buffering: no`, no Content-Length (the stream ends with the connection); `retry:`
/// first, 3000 ms by default.
#[test]
fn sse_headers_and_default_retry() {
    let server = Server::start(&[]);
    let s = open_sse(&server, "/channels/h", "");
    assert_eq!(s.head.header("content-type"), Some("text/event-stream; charset=utf-8"));
    assert_eq!(s.head.header("cache-control"), Some("no-cache"));
    assert_eq!(s.head.header("x-accel-buffering"), Some("no"));
    assert_eq!(s.head.header("content-length"), None, "{:?}", s.head);
    assert_eq!(s.head.header("transfer-encoding"), None, "{:?}", s.head);
    assert_eq!(s.first, b"retry: 3000\n\n");
}

/// Rule: `--sse-retry` sets the `retry:` field.
#[test]
fn sse_retry_option() {
    let server = Server::start(&["--sse-retry", "1234"]);
    let s = open_sse(&server, "/channels/r", "");
    assert_eq!(s.first, b"retry: 1234\n\n");
}

/// Rule: a `:` comment every `--sse-heartbeat`.
#[test]
fn sse_heartbeat_comment() {
    let server = Server::start(&["--sse-heartbeat", "0.3"]);
    let mut s = open_sse(&server, "/channels/hb", "");
    assert_eq!(s.block(), b":\n\n", "a heartbeat comment");
    assert_eq!(s.block(), b":\n\n", "and another");
    // The stream still carries events after heartbeats.
    let id = publish_id(&server, "hb", "after beats");
    assert_eq!(s.message(), (id, "after beats".to_string()));
}

/// Rule: `?event=NAME` → an `event:` line; every message has an `id:` line (the id the
/// publish answered).
#[test]
fn sse_event_and_id_lines() {
    let server = Server::start(&[]);
    let mut s = open_sse(&server, "/channels/ev", "");
    let (id, _) = publish_answer(&post(&server, "/channels/ev?event=greeting", b"hello"));
    assert_eq!(s.block(), format!("id: {id}\nevent: greeting\ndata: hello\n\n").into_bytes());
    let id2 = publish_id(&server, "ev", "plain");
    assert_eq!(s.block(), format!("id: {id2}\ndata: plain\n\n").into_bytes());
    let (id3, _) = publish_answer(&post(&server, "/channels/ev?event=news.sport", b"goal"));
    let ev = s.next();
    assert_eq!(ev, Event { id: Some(id3.to_string()), event: "news.sport".into(), data: "goal".into() });
}

/// Rule: event names are one line of text: an empty or multi-line `?event=` is refused.
#[test]
fn sse_bad_event_names_are_400() {
    let server = Server::start(&[]);
    assert_json_error(&post(&server, "/channels/ev?event=", b"x"), 400);
    assert_json_error(&post(&server, "/channels/ev?event=a%0Ab", b"x"), 400);
    assert_json_error(&post(&server, "/channels/ev?event=a%0Db", b"x"), 400);
}

/// Rule: data containing LF, CR or CRLF becomes several `data:` lines, and the WHATWG parser
/// rebuilds the published data with each line end as LF.
#[test]
fn sse_multiline_data_roundtrips() {
    let server = Server::start(&[]);
    let mut s = open_sse(&server, "/channels/ml", "");
    // Exact bytes for one mixed case.
    let id = publish_id(&server, "ml", "a\r\nb\rc\nd");
    assert_eq!(s.block(), format!("id: {id}\ndata: a\ndata: b\ndata: c\ndata: d\n\n").into_bytes());
    let table = [
        "one\ntwo",
        "one\rtwo",
        "one\r\ntwo",
        "\n",
        "\r",
        "\r\n",
        "\n\n\n",
        "\r\r",
        "\r\n\r\n",
        "\n\r",
        "trailing\n",
        "trailing\r",
        "trailing\r\n",
        "\nleading",
        "\rleading",
        "a\r\n\nb\r\rc",
        "data: nested\nid: 9\nevent: x\n: comment\nretry: 1",
        "  spaced  \n  lines  ",
        "ünïcødé ✓\r\n🎉",
        "",
    ];
    for data in table {
        let id = publish_id(&server, "ml", data);
        let ev = s.next();
        assert_eq!(ev.data, normalize(data), "published {data:?}");
        assert_eq!(ev.id, Some(id.to_string()), "published {data:?}");
        assert_eq!(ev.event, "message");
    }
}

/// Rule: every subscriber gets every message ("several SSE subscribers all receive").
#[test]
fn sse_several_subscribers_all_receive() {
    let server = Server::start(&[]);
    let mut subs: Vec<SseStream> = (0..4).map(|_| open_sse(&server, "/channels/fan", "")).collect();
    let mut sent = Vec::new();
    for i in 0..5 {
        let data = format!("m{i}");
        let (id, n) = publish(&server, "fan", &data);
        assert_eq!(n, 4, "four local deliveries");
        sent.push((id, data));
    }
    for (i, s) in subs.iter_mut().enumerate() {
        assert_eq!(s.messages(5), sent, "subscriber {i}");
    }
}

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

// ---------------------------------------------------------------------------------------------
// WebSocket subscribers on /channels/{name} (issue: "Upgrade: websocket → a WebSocket")
// ---------------------------------------------------------------------------------------------

/// Rule: each message arrives as one text frame holding exactly the message data.
#[test]
fn websocket_subscriber_gets_each_message_as_one_text_frame() {
    let server = Server::start(&[]);
    let mut ws = ws_open(&server, "/channels/wsc", "");
    let big: String = (0..70_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let datas = ["hello", "", "multi\r\nline\rdata\n", "ünïcødé ✓ 🎉", "{\"json\": true}", big.as_str()];
    for d in datas {
        let (_, n) = publish(&server, "wsc", d);
        assert_eq!(n, 1);
        assert_eq!(ws_text(&mut ws), d, "exactly the published data");
    }
    // An `?event=` name does not change the frame: it holds the data alone.
    publish_answer(&post(&server, "/channels/wsc?event=named", b"just data"));
    assert_eq!(ws_text(&mut ws), "just data");
}

/// Rule: text frames a WebSocket subscriber sends are published to its channel.
#[test]
fn websocket_text_frames_are_published_to_the_channel() {
    let server = Server::start(&[]);
    let mut a = ws_open(&server, "/channels/chat", "");
    let mut b = ws_open(&server, "/channels/chat", "");
    let mut sse = open_sse(&server, "/channels/chat", "");
    ws_send_text(&mut a, "from a");
    assert_eq!(ws_text(&mut b), "from a");
    let (id, data) = sse.message();
    assert_eq!(data, "from a");
    // It is a message like any other: in history, with an id.
    let r = server.get(&format!("/channels/chat?since={}", id - 1));
    assert_eq!(poll_messages(&r), vec![envelope("chat", id, None, "from a")]);
    ws_send_text(&mut b, "from b");
    // `a` gets its own message first (it is a subscriber too), then b's.
    assert_eq!(ws_text(&mut a), "from a");
    assert_eq!(ws_text(&mut a), "from b");
    assert_eq!(sse.message().1, "from b");
    assert_eq!(stats(&server)["messages_published"], 2);
}

/// Rule: `--ws-publish=false` turns publishing by WebSocket subscribers off.
#[test]
fn ws_publish_false_turns_subscriber_publishing_off() {
    let server = Server::start(&["--ws-publish=false"]);
    let mut a = ws_open(&server, "/channels/ro", "");
    let mut b = ws_open(&server, "/channels/ro", "");
    ws_send_text(&mut a, "should not be published");
    // A ping after the text frame: its pong proves the server handled the text frame.
    a.send(&frame(true, 0x9, b"sync"));
    assert_eq!(read_frame(&mut a), (true, 0xA, b"sync".to_vec()));
    assert_eq!(stats(&server)["messages_published"], 0);
    let (id, n) = publish(&server, "ro", "marker");
    assert_eq!(n, 2);
    assert_eq!(ws_text(&mut b), "marker", "the first frame b gets is the HTTP-published marker");
    assert_eq!(ws_text(&mut a), "marker");
    let r = server.get(&format!("/channels/ro?since={}", id - 1));
    assert_eq!(poll_messages(&r), vec![envelope("ro", id, None, "marker")]);
}

// ---------------------------------------------------------------------------------------------
// The /ws control protocol (issue: "GET /ws speaks JSON control messages")
// ---------------------------------------------------------------------------------------------

/// Rule: subscribe, unsubscribe and publish with their acks; deliveries as
/// `{"channel","id","event","data"}`.
#[test]
fn control_subscribe_publish_unsubscribe() {
    let server = Server::start(&[]);
    let mut c1 = ws_open(&server, "/ws", "");
    let mut c2 = ws_open(&server, "/ws", "");
    ctl_subscribe(&mut c1, "ca");
    ctl_subscribe(&mut c1, "cb");
    // Subscribing twice is harmless (still one delivery).
    ctl_subscribe(&mut c1, "ca");
    // HTTP publish, with an event name.
    let (id, n) = publish_answer(&post(&server, "/channels/ca?event=ev", b"over http"));
    assert_eq!(n, 1);
    assert_eq!(ctl_recv(&mut c1), envelope("ca", id, Some("ev"), "over http"));
    // Publish over the control socket.
    ctl_send(&mut c2, &json!({"op": "publish", "channel": "ca", "data": "from c2"}));
    let ack = ctl_recv(&mut c2);
    assert_eq!(ack["ok"], "publish", "{ack}");
    assert_eq!(ack["channel"], "ca", "{ack}");
    assert_eq!(ack.as_object().unwrap().len(), 3, "{ack}");
    let id = parse_id(&ack["id"]);
    assert_eq!(ctl_recv(&mut c1), envelope("ca", id, None, "from c2"));
    ctl_send(&mut c2, &json!({"op": "publish", "channel": "cb", "data": "line1\nline2", "event": "e"}));
    let id = parse_id(&ctl_recv(&mut c2)["id"]);
    assert_eq!(ctl_recv(&mut c1), envelope("cb", id, Some("e"), "line1\nline2"));
    // Unsubscribe: ca's next message is not delivered; cb's is.
    ctl_send(&mut c1, &json!({"op": "unsubscribe", "channel": "ca"}));
    assert_eq!(ctl_recv(&mut c1), json!({"ok": "unsubscribe", "channel": "ca"}));
    publish(&server, "ca", "not delivered");
    let id = publish_id(&server, "cb", "delivered");
    assert_eq!(ctl_recv(&mut c1), envelope("cb", id, None, "delivered"));
    // c2 never subscribed: it got only its acks.
    assert_silent(&mut c2, Duration::from_millis(100), "a control socket with no subscription");
}

/// Rule: bad JSON, an unknown op, a missing channel or an invalid name get an
/// `{"error": "..."}` reply, not a dropped connection.
#[test]
fn control_errors_keep_the_socket_open() {
    let server = Server::start(&[]);
    let mut c = ws_open(&server, "/ws", "");
    let bad = [
        "{nope",
        "",
        "not json at all",
        "[1,2,3]",
        "42",
        r#"{"channel":"a"}"#,
        r#"{"op":42,"channel":"a"}"#,
        r#"{"op":"dance","channel":"a"}"#,
        r#"{"op":"subscribe"}"#,
        r#"{"op":"subscribe","channel":17}"#,
        r#"{"op":"subscribe","channel":"a b"}"#,
        r#"{"op":"subscribe","channel":""}"#,
        r#"{"op":"unsubscribe"}"#,
        r#"{"op":"publish","channel":"a"}"#,
        r#"{"op":"publish","data":"x"}"#,
        r#"{"op":"publish","channel":"a/b","data":"x"}"#,
        r#"{"op":"publish","channel":"a","data":"x","event":"two\nlines"}"#,
        r#"{"op":"subscribe","channel":"a","since":"not-an-id"}"#,
    ];
    for msg in bad {
        ws_send_text(&mut c, msg);
        assert_ctl_error(&ctl_recv(&mut c), msg);
    }
    // Still open and working.
    ctl_subscribe(&mut c, "a");
    let id = publish_id(&server, "a", "works");
    assert_eq!(ctl_recv(&mut c), envelope("a", id, None, "works"));
    // Nothing was published by the bad ops.
    assert_eq!(stats(&server)["messages_published"], 1);
}

/// Rule: a /ws subscribe with `since` replays what was missed (after the ack), and says
/// `{"reset":true}` when history is short.
#[test]
fn control_subscribe_with_since_replays_and_flags_reset() {
    let server = Server::start(&["--history", "3"]);
    let ids: Vec<u64> = (0..5).map(|i| publish_id(&server, "cr", &format!("m{i}"))).collect();
    let mut c = ws_open(&server, "/ws", "");
    ctl_send(&mut c, &json!({"op": "subscribe", "channel": "cr", "since": ids[3].to_string()}));
    assert_eq!(ctl_recv(&mut c), json!({"ok": "subscribe", "channel": "cr"}));
    assert_eq!(ctl_recv(&mut c), envelope("cr", ids[4], None, "m4"));
    let mut c = ws_open(&server, "/ws", "");
    ctl_send(&mut c, &json!({"op": "subscribe", "channel": "cr", "since": ids[0].to_string()}));
    assert_eq!(ctl_recv(&mut c), json!({"ok": "subscribe", "channel": "cr"}));
    assert_eq!(ctl_recv(&mut c), json!({"reset": true, "channel": "cr"}));
    for (i, id) in ids.iter().enumerate().skip(2) {
        assert_eq!(ctl_recv(&mut c), envelope("cr", *id, None, &format!("m{i}")));
    }
    let live = publish_id(&server, "cr", "live");
    assert_eq!(ctl_recv(&mut c), envelope("cr", live, None, "live"));
}

/// Rule (no duplicate): a `subscribe` with `since` on a channel the socket already follows
/// replays only what came before its subscription; what it had live does not come twice.
#[test]
fn control_resubscribe_with_since_replays_only_what_was_missed() {
    let server = Server::start(&[]);
    let before = publish_id(&server, "rr", "before");
    let mut c = ws_open(&server, "/ws", "");
    ctl_subscribe(&mut c, "rr");
    let live: Vec<u64> = (0..2).map(|i| publish_id(&server, "rr", &format!("live{i}"))).collect();
    for (i, id) in live.iter().enumerate() {
        assert_eq!(ctl_recv(&mut c), envelope("rr", *id, None, &format!("live{i}")));
    }
    ctl_send(&mut c, &json!({"op": "subscribe", "channel": "rr", "since": (before - 1).to_string()}));
    assert_eq!(ctl_recv(&mut c), json!({"ok": "subscribe", "channel": "rr"}));
    assert_eq!(ctl_recv(&mut c), envelope("rr", before, None, "before"));
    assert_silent(&mut c, Duration::from_millis(200), "messages it already had live");
    let next = publish_id(&server, "rr", "next");
    assert_eq!(ctl_recv(&mut c), envelope("rr", next, None, "next"));
    assert_silent(&mut c, Duration::from_millis(100), "one delivery per message");
}

/// Rule (reset only when something may be missing): a followed channel whose history no
/// longer reaches back to `since` gives no reset when everything after `since` came live.
#[test]
fn control_resubscribe_behind_short_history_has_nothing_to_reset() {
    let server = Server::start(&["--history", "2"]);
    let mut c = ws_open(&server, "/ws", "");
    ctl_subscribe(&mut c, "nr");
    let ids: Vec<u64> = (0..5).map(|i| publish_id(&server, "nr", &format!("m{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(ctl_recv(&mut c), envelope("nr", *id, None, &format!("m{i}")));
    }
    // m2 is out of history (only m3, m4 are kept), but the socket had it live.
    ctl_send(&mut c, &json!({"op": "subscribe", "channel": "nr", "since": ids[1].to_string()}));
    assert_eq!(ctl_recv(&mut c), json!({"ok": "subscribe", "channel": "nr"}));
    assert_silent(&mut c, Duration::from_millis(200), "no reset and no replay");
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

// ---------------------------------------------------------------------------------------------
// Users (issue: "Users: messages to one person")
// ---------------------------------------------------------------------------------------------

/// Rule: a user may have several connections (tabs), over SSE and WebSocket; each gets every
/// message; `POST /users/{name}` answers `202 {"delivered": N}`.
#[test]
fn user_gets_every_message_on_every_connection() {
    let server = Server::start(&[]);
    let mut sse = open_sse(&server, "/users/Alice%20Smith", "");
    let mut ws = ws_open(&server, "/users/Alice%20Smith", "");
    let mut sse2 = open_sse(&server, "/users/Alice%20Smith", "");
    assert_eq!(stats(&server)["users_online"], 1);
    for msg in ["hi", "second\nline", "third"] {
        let r = post(&server, "/users/Alice%20Smith", msg.as_bytes());
        assert_json(&r, 202, &json!({"delivered": 3}));
        assert_eq!(normalize(&sse.next().data), normalize(msg));
        assert_eq!(sse2.next().data, normalize(msg));
        assert_eq!(ws_text(&mut ws), msg);
    }
    // Another user gets nothing of it.
    assert_json(&post(&server, "/users/bob", b"x"), 404, &json!({"error": "user offline"}));
}

/// Rule: a user with no connection is `404 {"error":"user offline"}`, and is again once all
/// of its connections have closed.
#[test]
fn user_offline_is_404_before_and_after() {
    let server = Server::start(&[]);
    assert_json(&post(&server, "/users/bob", b"anyone?"), 404, &json!({"error": "user offline"}));
    let sse = open_sse(&server, "/users/bob", "");
    let ws = ws_open(&server, "/users/bob", "");
    assert_json(&post(&server, "/users/bob", b"here"), 202, &json!({"delivered": 2}));
    drop(sse);
    drop(ws);
    wait_for("bob to be offline", || {
        let r = post(&server, "/users/bob", b"still?");
        if r.status == 404 {
            assert_json(&r, 404, &json!({"error": "user offline"}));
            true
        } else {
            assert_eq!(r.status, 202, "{r:?}");
            false
        }
    });
    wait_stats(&server, "users_online to drop", |s| s["users_online"] == 0);
}

/// Rule: users work over long-poll like channels.
#[test]
fn user_long_poll() {
    let server = Server::start(&[]);
    let mut lp = server.client();
    lp.send(poll_request("/users/carol", "").as_bytes());
    wait_stats(&server, "carol's long-poll", |s| s["users_online"] == 1 && s["subscribers"]["longpoll"] == 1);
    assert_json(&post(&server, "/users/carol", b"for carol"), 202, &json!({"delivered": 1}));
    let msgs = poll_messages(&lp.response());
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["data"], "for carol");
    assert_eq!(msgs[0]["user"], "carol");
    parse_id(&msgs[0]["id"]);
    wait_stats(&server, "carol offline after the answer", |s| s["users_online"] == 0);
    assert_json(&post(&server, "/users/carol", b"again"), 404, &json!({"error": "user offline"}));
}

// ---------------------------------------------------------------------------------------------
// For real deployments: publish token, CORS, the listen warning
// ---------------------------------------------------------------------------------------------

fn check_token_rules(server: &Server, token: &str) {
    for path in ["/channels/sec", "/users/someone"] {
        let r = post(server, path, b"x");
        assert_json_error(&r, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r:?}");
        assert_json_error(&request(server, "POST", path, "Authorization: Bearer wrong\r\n", b"x"), 401);
        assert_json_error(&request(server, "POST", path, &format!("Authorization: Basic {token}\r\n"), b"x"), 401);
        assert_json_error(&request(server, "POST", path, &format!("Authorization: Bearer {token}x\r\n"), b"x"), 401);
    }
    // Subscribing needs no token.
    let mut s = open_sse(server, "/channels/sec", "");
    let r = request(server, "POST", "/channels/sec", &format!("Authorization: Bearer {token}\r\n"), b"allowed");
    let (id, n) = publish_answer(&r);
    assert_eq!(n, 1);
    assert_eq!(s.message(), (id, "allowed".to_string()), "only the authorized message was published");
    let r = request(server, "POST", "/channels/sec", &format!("Authorization: bearer {token}\r\n"), b"scheme is case-insensitive");
    assert_eq!(r.status, 202);
}

/// Rule: `--publish-token`: publishing needs `Authorization: Bearer TOKEN`, else 401.
#[test]
fn publish_token_option() {
    let server = Server::start(&["--publish-token", "secret"]);
    check_token_rules(&server, "secret");
}

/// Rule: the token may come from the environment (`PUSHWIRE_PUBLISH_TOKEN`).
#[test]
fn publish_token_from_env() {
    let server = Server::start_with_env(&[], &[("PUSHWIRE_PUBLISH_TOKEN", "envsecret")]);
    check_token_rules(&server, "envsecret");
}

/// Rule: with a token, WebSocket publishing needs it in the handshake too (`?token=` or
/// `Authorization`), on /ws and on /channels sockets.
#[test]
fn publish_token_applies_to_websockets() {
    let server = Server::start(&["--publish-token", "secret"]);
    let mut c = ws_open(&server, "/ws", "");
    ctl_send(&mut c, &json!({"op": "publish", "channel": "t", "data": "x"}));
    assert_ctl_error(&ctl_recv(&mut c), "publish without the token");
    let mut c = ws_open(&server, "/ws?token=secret", "");
    ctl_send(&mut c, &json!({"op": "publish", "channel": "t", "data": "x"}));
    assert_eq!(ctl_recv(&mut c)["ok"], "publish");
    // A channel socket without the token: its frames are not published.
    let mut listener = ws_open(&server, "/channels/t2", "");
    let mut anon = ws_open(&server, "/channels/t2", "");
    ws_send_text(&mut anon, "anonymous");
    anon.send(&frame(true, 0x9, b"sync"));
    assert_eq!(read_frame(&mut anon), (true, 0xA, b"sync".to_vec()));
    let mut authed = ws_open(&server, "/channels/t2", "Authorization: Bearer secret\r\n");
    ws_send_text(&mut authed, "authorized");
    assert_eq!(ws_text(&mut listener), "authorized", "the first message on t2 is the authorized one");
}

/// Rule: `--cors-origin`: CORS headers on SSE, long-poll and publish responses.
#[test]
fn cors_headers_on_sse_long_poll_and_publish() {
    let origin = "https://app.example";
    let server = Server::start(&["--cors-origin", origin]);
    let hdr = format!("Origin: {origin}\r\n");
    let mut s = open_sse(&server, "/channels/co", &hdr);
    assert_eq!(s.head.header("access-control-allow-origin"), Some(origin), "SSE: {:?}", s.head);
    let r = request(&server, "POST", "/channels/co", &hdr, b"x");
    assert_eq!(r.header("access-control-allow-origin"), Some(origin), "publish: {r:?}");
    let (id, _) = publish_answer(&r);
    assert_eq!(s.message().0, id);
    // Long-poll answered at once.
    let r = request(&server, "GET", &format!("/channels/co?since={}", id - 1), &hdr, b"");
    assert_eq!(poll_messages(&r).len(), 1);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin), "long-poll: {r:?}");
    // Held, then answered.
    let mut lp = server.client();
    lp.send(poll_request("/channels/co", &hdr).as_bytes());
    wait_stats(&server, "the held long-poll", |s| s["subscribers"]["longpoll"] == 1);
    publish(&server, "co", "y");
    let r = lp.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin), "held long-poll: {r:?}");
    // User publish and error answers too.
    let r = request(&server, "POST", "/users/nobody", &hdr, b"x");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (404, Some(origin)), "{r:?}");
    let r = request(&server, "POST", "/channels/a%20b", &hdr, b"x");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (400, Some(origin)), "{r:?}");
}

/// Rule: `--cors-origin`: a long-poll that times out (204) carries the CORS header too.
#[test]
fn cors_header_on_long_poll_timeout() {
    let origin = "https://app.example";
    let server = Server::start(&["--cors-origin", origin, "--poll-timeout", "0.3"]);
    let mut lp = server.client();
    lp.send(poll_request("/channels/co", &format!("Origin: {origin}\r\n")).as_bytes());
    let r = lp.response();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin), "{r:?}");
}

/// Rule: `OPTIONS` preflight answered (204, allowed methods and headers).
#[test]
fn cors_preflight() {
    let origin = "https://app.example";
    let server = Server::start(&["--cors-origin", origin]);
    for path in ["/channels/x", "/users/x", "/subscribe?channel=x"] {
        let r = request(
            &server,
            "OPTIONS",
            path,
            &format!("Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n"),
            b"",
        );
        assert_eq!(r.status, 204, "{path}: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin), "{path}: {r:?}");
        let methods = r.header("access-control-allow-methods").unwrap_or_else(|| panic!("{path}: {r:?}"));
        assert!(methods.contains("GET"), "{methods}");
        if path != "/subscribe?channel=x" {
            assert!(methods.contains("POST"), "{methods}");
        }
        let headers = r.header("access-control-allow-headers").unwrap_or_else(|| panic!("{path}: {r:?}")).to_ascii_lowercase();
        for h in ["authorization", "content-type", "last-event-id"] {
            assert!(headers.contains(h), "{path}: {headers}");
        }
    }
    // `*` works as well.
    let server = Server::start(&["--cors-origin", "*"]);
    let r = request(&server, "OPTIONS", "/channels/x", "Origin: https://x.example\r\nAccess-Control-Request-Method: POST\r\n", b"");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (204, Some("*")));
}

/// Rule: listening on a non-loopback address without a token logs a warning at start.
#[test]
fn non_loopback_listen_without_token_warns() {
    let server = Server::start(&["--listen", "0.0.0.0:0"]);
    wait_for("the warning", || server.log().lines().any(|l| l.contains("WARN") && l.contains("publish-token")));
    // With a token, or on loopback, no warning.
    let quiet = Server::start(&["--listen", "0.0.0.0:0", "--publish-token", "t"]);
    let loopback = Server::start(&[]);
    for s in [&quiet, &loopback] {
        assert!(!s.log().contains("WARN"), "{}", s.log());
    }
}

// ---------------------------------------------------------------------------------------------
// Slow consumers (issue: "A slow subscriber of any transport is cut off at its output cap")
// ---------------------------------------------------------------------------------------------
//
// Two subscribers of one channel with `--max-output 65536`: one never reads, one reads. The
// publisher stays at most PACE messages ahead of what the reading one has fully received, so
// the reading one never has more than (PACE + 1) × 16 KiB ≈ 48 KiB outstanding: it cannot
// legitimately be cut off, however the two cores are scheduled (unpaced, a debug-build reader
// descheduled for a few milliseconds does fall 64 KiB behind and is, correctly, cut off). If
// the server let the stuck subscriber hold up the others, the reading one would stall and the
// publisher's bounded wait would fail.

const SLOW_N: usize = 2000;
const SLOW_SIZE: usize = 16 * 1024;
const PACE: usize = 2;

/// Message `i` of the slow-consumer tests: 16 KiB of text that names its index.
fn slow_msg(i: usize) -> Vec<u8> {
    let mut m = format!("{i:06}:").into_bytes();
    m.extend((m.len()..SLOW_SIZE).map(|j| b'a' + ((i + j) % 26) as u8));
    m
}

/// Publishes the slow-consumer messages on one keep-alive connection, each only once the
/// reading subscriber has received all but PACE of the earlier ones; returns their ids.
fn publish_paced(server: &Server, channel: &'static str, received: Arc<AtomicUsize>) -> std::thread::JoinHandle<Vec<u64>> {
    let mut p = Publisher::new(server);
    std::thread::spawn(move || {
        let mut ids = Vec::with_capacity(SLOW_N);
        for i in 0..SLOW_N {
            let start = Instant::now();
            while received.load(Ordering::Acquire) + PACE < i {
                let got = received.load(Ordering::Acquire);
                assert!(start.elapsed() < WAIT, "the reading subscriber stalled at {got} of {i} published");
                std::thread::sleep(Duration::from_micros(100));
            }
            ids.push(p.publish(channel, &slow_msg(i)));
        }
        ids
    })
}

/// Reads raw bytes from `c` into one buffer, as fast as the socket delivers them, until
/// `count(&buf)` (complete messages so far) reaches SLOW_N; publishes the count as it goes.
fn read_fast(mut c: Client, received: Arc<AtomicUsize>, mut count: impl FnMut(&[u8], usize) -> usize + Send + 'static) -> std::thread::JoinHandle<(Client, Vec<u8>)> {
    std::thread::spawn(move || {
        let mut all = c.buffered().to_vec();
        let mut tmp = vec![0u8; 1 << 20];
        let mut n = count(&all, 0);
        received.store(n, Ordering::Release);
        while n < SLOW_N {
            let before = all.len();
            match c.stream.read(&mut tmp) {
                Ok(0) => panic!("the reading subscriber's connection ended after {n} messages ({} bytes): {:?}", all.len(), String::from_utf8_lossy(&all[all.len().saturating_sub(60)..])),
                Ok(k) => all.extend_from_slice(&tmp[..k]),
                Err(e) => panic!("the reading subscriber: {e} after {n} messages"),
            }
            n = count(&all, before);
            received.store(n, Ordering::Release);
        }
        (c, all)
    })
}

/// Waits (bounded) for `/stats` to count a slow-consumer disconnect while the publisher runs.
fn wait_for_cut_off(server: &Server, publisher: &std::thread::JoinHandle<Vec<u64>>) {
    let start = Instant::now();
    loop {
        if stats(server)["slow_consumer_disconnects"].as_u64() >= Some(1) {
            return;
        }
        if publisher.is_finished() {
            let s = stats(server);
            assert!(s["slow_consumer_disconnects"].as_u64() >= Some(1), "all messages published (or the publisher failed) and the slow subscriber was not cut off: {s}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the slow subscriber was never cut off");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Splits unmasked server frames: (fin, opcode, payload) each.
fn split_frames(mut b: &[u8]) -> Vec<(bool, u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 2, "a partial frame header");
        assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
        let (len, hl) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        assert!(b.len() >= hl + len, "a partial frame");
        out.push((b[0] & 0x80 != 0, b[0] & 0x0f, &b[hl..hl + len]));
        b = &b[hl + len..];
    }
    out
}

/// Rule: a WebSocket subscriber that does not read is cut off (close 1008) at `--max-output`,
/// and counted; a reading subscriber of the same channel gets everything, in order.
#[test]
fn slow_websocket_subscriber_is_cut_off() {
    let server = Server::start(&["--max-output", "65536"]);
    let mut slow = ws_open(&server, "/channels/firehose", "");
    let fast = ws_open(&server, "/channels/firehose", "");
    let received = Arc::new(AtomicUsize::new(0));
    // Each message is a 4-byte frame header and its payload.
    let reader = read_fast(fast, received.clone(), |all, _| all.len() / (4 + SLOW_SIZE));
    let publisher = publish_paced(&server, "firehose", received);
    wait_for_cut_off(&server, &publisher);
    // The slow one now reads: a prefix of the messages in order, then close 1008, then EOF.
    let mut got = 0;
    loop {
        let (fin, op, payload) = read_frame(&mut slow);
        assert!(fin);
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            assert_eq!(code, 1008, "policy violation: {:?}", String::from_utf8_lossy(&payload[2..]));
            break;
        }
        assert_eq!(op, 0x1);
        assert!(payload == slow_msg(got), "slow subscriber's message {got} differs");
        got += 1;
        assert!(got < SLOW_N, "the slow subscriber got everything: it was not cut off");
    }
    assert!(slow.is_closed(), "TCP connection still open after the close frame");
    let ids = publisher.join().expect("publisher");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let (mut fast, all) = reader.join().expect("the reading subscriber");
    let frames = split_frames(&all);
    assert_eq!(frames.len(), SLOW_N, "exactly every message, nothing else (no close frame)");
    for (i, (fin, op, payload)) in frames.into_iter().enumerate() {
        assert!(fin && op == 0x1, "message {i}: opcode {op:#x}");
        assert!(payload == slow_msg(i), "message {i} differs: starts {:?}", String::from_utf8_lossy(&payload[..payload.len().min(20)]));
    }
    let s = wait_stats(&server, "the slow subscriber to be gone", |s| s["subscribers"]["websocket"] == 1);
    assert_eq!(s["slow_consumer_disconnects"], 1, "only the slow one was cut off: {s}");
    // The reading one is still subscribed and live.
    publish(&server, "firehose", "still here");
    assert_eq!(ws_text(&mut fast), "still here");
}

/// Rule: the same for SSE, and the cut-off subscriber recovers what it missed by reconnecting
/// with its last id.
#[test]
fn slow_sse_subscriber_is_cut_off_and_recovers() {
    let server = Server::start(&["--max-output", "65536", "--history", "3000"]);
    let mut slow = open_sse(&server, "/channels/stream", "");
    let fast = open_sse(&server, "/channels/stream", "");
    let received = Arc::new(AtomicUsize::new(0));
    // Each event ends with the only blank line in it (the data has no line ends); count the
    // blank lines that end in the bytes just read.
    let mut events = 0;
    let reader = read_fast(fast.c, received.clone(), move |all, before| {
        events += all[before.saturating_sub(1)..].windows(2).filter(|w| w == b"\n\n").count();
        events
    });
    let publisher = publish_paced(&server, "stream", received);
    wait_for_cut_off(&server, &publisher);
    // The slow stream ends after a prefix of complete events.
    let mut tail = slow.c.buffered().to_vec();
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        match slow.c.stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => tail.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the cut-off stream: {e} after {} bytes", tail.len()),
        }
    }
    let evs = parse::events(&tail);
    let got = evs.len();
    assert!(got < SLOW_N, "the slow subscriber got everything: it was not cut off");
    assert!(got > 0, "the slow subscriber received nothing before the cut-off");
    let ids = publisher.join().expect("publisher");
    for (i, ev) in evs.iter().enumerate() {
        assert!(ev.data.as_bytes() == slow_msg(i), "slow subscriber's message {i} differs");
        assert_eq!(ev.id, Some(ids[i].to_string()));
    }
    let (fast_c, all) = reader.join().expect("the reading subscriber");
    let evs = parse::events(&all);
    assert_eq!(evs.len(), SLOW_N);
    for (i, ev) in evs.iter().enumerate() {
        assert_eq!(ev.id, Some(ids[i].to_string()), "message {i}");
        assert!(ev.data.as_bytes() == slow_msg(i), "message {i} differs: starts {:?}", &ev.data[..ev.data.len().min(20)]);
    }
    let s = wait_stats(&server, "the slow subscriber to be gone", |s| s["subscribers"]["sse"] == 1);
    assert_eq!(s["slow_consumer_disconnects"], 1, "only the slow one was cut off: {s}");
    // Recovery: reconnect with the last id received; get exactly the rest, no reset.
    let last = ids[got - 1];
    let mut back = open_sse(&server, "/channels/stream", &format!("Last-Event-ID: {last}\r\n"));
    for (i, id) in ids.iter().enumerate().skip(got) {
        let ev = back.next();
        assert_eq!(ev.event, "message", "no reset: history holds all {SLOW_N}");
        assert_eq!(ev.id, Some(id.to_string()));
        assert!(ev.data.as_bytes() == slow_msg(i), "recovered message {i} differs");
    }
    let (id, _) = publish(&server, "stream", "live");
    assert_eq!(back.message(), (id, "live".to_string()));
    let mut fast = SseStream { c: fast_c, head: fast.head, first: fast.first };
    assert_eq!(fast.message(), (id, "live".to_string()));
}

// ---------------------------------------------------------------------------------------------
// /stats (issue: "/stats adds channels, subscribers per transport, users online, messages
// published and delivered, slow-consumer disconnects")
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_count_the_hub() {
    let server = Server::start(&[]);
    let s = stats(&server);
    assert_eq!(s["channels"], 0, "{s}");
    assert_eq!(s["users_online"], 0, "{s}");
    assert_eq!(s["subscribers"], json!({"websocket": 0, "sse": 0, "longpoll": 0}), "{s}");
    assert_eq!(s["messages_published"], 0, "{s}");
    assert_eq!(s["messages_delivered"], 0, "{s}");
    assert_eq!(s["slow_consumer_disconnects"], 0, "{s}");

    let mut ws = ws_open(&server, "/channels/s1", "");
    let mut sse = open_sse(&server, "/channels/s2", "");
    let mut user = open_sse(&server, "/users/u1", "");
    let mut lp = server.client();
    lp.send(poll_request("/channels/s3", "").as_bytes());
    let s = wait_stats(&server, "the long-poll", |s| s["subscribers"]["longpoll"] == 1);
    assert_eq!(s["subscribers"], json!({"websocket": 1, "sse": 2, "longpoll": 1}), "{s}");
    assert_eq!(s["channels"], 3, "{s}");
    assert_eq!(s["users_online"], 1, "{s}");

    publish(&server, "s1", "1");
    publish(&server, "s2", "2");
    publish(&server, "s3", "3");
    assert_eq!(post(&server, "/users/u1", b"4").status, 202);
    assert_eq!(ws_text(&mut ws), "1");
    assert_eq!(sse.message().1, "2");
    assert_eq!(poll_messages(&lp.response()).len(), 1);
    assert_eq!(user.next().data, "4");
    let s = stats(&server);
    assert_eq!(s["messages_published"], 4, "{s}");
    assert_eq!(s["messages_delivered"], 4, "{s}");
    assert_eq!(s["subscribers"], json!({"websocket": 1, "sse": 2, "longpoll": 0}), "{s}");

    // Nobody listens: published, not delivered; the channel exists for its history.
    publish(&server, "nobody", "5");
    // A /ws connection with two subscriptions counts two WebSocket subscribers.
    let mut c = ws_open(&server, "/ws", "");
    ctl_subscribe(&mut c, "s1");
    ctl_subscribe(&mut c, "s2");
    let s = stats(&server);
    assert_eq!(s["messages_published"], 5, "{s}");
    assert_eq!(s["messages_delivered"], 4, "{s}");
    assert_eq!(s["channels"], 4, "{s}");
    assert_eq!(s["subscribers"], json!({"websocket": 3, "sse": 2, "longpoll": 0}), "{s}");
    // One message to s2: SSE + /ws.
    publish(&server, "s2", "6");
    assert_eq!(stats(&server)["messages_delivered"], 6);

    drop(user);
    drop(sse);
    let s = wait_stats(&server, "the SSE subscribers to leave", |s| s["subscribers"]["sse"] == 0);
    assert_eq!(s["users_online"], 0, "{s}");
    ctl_send(&mut c, &json!({"op": "unsubscribe", "channel": "s2"}));
    ctl_recv(&mut c);
    let s = stats(&server);
    assert_eq!(s["subscribers"], json!({"websocket": 2, "sse": 0, "longpoll": 0}), "{s}");
}

// ---------------------------------------------------------------------------------------------
// Property (issue: "for arbitrary data, the SSE encoding parsed by the WHATWG event-stream
// parsing rules yields the original data")
// ---------------------------------------------------------------------------------------------

/// xorshift64*: a small deterministic generator (no extra crates).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_data(rng: &mut Rng) -> String {
    // Pieces chosen to stress the format: line ends of each kind, field-like prefixes, colons,
    // spaces, a BOM, NUL, multi-byte characters.
    const PIECES: &[&str] = &[
        "a", "b", "Z", "0", " ", "  ", ":", "\n", "\r", "\r\n", "\n\r", "\n\n", "data:", "data: ", "id:", "event:",
        "retry:", ": comment", "\t", "\u{0}", "\u{feff}", "é", "✓", "🎉", "\u{2028}", "xxx",
    ];
    let len = rng.below(24);
    (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

#[test]
fn sse_roundtrip_property() {
    let server = Server::start(&[]);
    let mut s = open_sse(&server, "/channels/prop", "");
    let mut p = Publisher::new(&server);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const N: usize = 400;
    let mut sent = Vec::with_capacity(N);
    for _ in 0..N {
        let data = random_data(&mut rng);
        let id = p.publish("prop", data.as_bytes());
        sent.push((id, data));
    }
    // Read the raw stream until it holds N events, then parse it all at once, as a browser
    // would.
    let mut stream = Vec::new();
    let mut blocks_with_events = 0;
    for _ in 0..10 * N {
        if blocks_with_events == N {
            break;
        }
        let block = s.block();
        blocks_with_events += parse::events(&block).len();
        stream.extend(block);
    }
    let evs = parse::events(&stream);
    assert_eq!(evs.len(), N);
    for ((id, data), ev) in sent.iter().zip(&evs) {
        assert_eq!(ev.data, normalize(data), "published {data:?}");
        assert_eq!(ev.id.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(ev.event, "message");
    }
}

// A HEAD on a subscription route answers with the headers a GET would get, and subscribes
// nothing (it neither streams nor holds).
#[test]
fn head_on_a_subscription_does_not_subscribe() {
    let server = Server::start(&[]);
    for accept in ["Accept: text/event-stream\r\n", ""] {
        let mut c = server.client();
        c.send(format!("HEAD /channels/h HTTP/1.1\r\nHost: t\r\n{accept}\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.response_to(true);
        assert_eq!(r.status, 200, "{accept:?}");
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with(if accept.is_empty() { "application/json" } else { "text/event-stream" }), "{ct}");
        // The next pipelined response follows at once: no body, no held request.
        let next = c.response();
        assert_eq!((next.status, next.text()), (200, "ok\n".to_string()));
    }
    let s = stats(&server);
    assert_eq!(s["subscribers"]["sse"], 0);
    assert_eq!(s["subscribers"]["longpoll"], 0);
}

// ---- Found in review ----

// A single message larger than --max-output still reaches a subscriber that keeps up: only
// output already waiting counts towards the cut-off.
#[test]
fn one_large_message_does_not_cut_off_a_fast_subscriber() {
    let server = Server::start(&["--max-output", "65536"]);
    let mut sse = open_sse(&server, "/channels/big", "");
    let big = "x".repeat(200_000);
    let (_, n) = publish(&server, "big", &big);
    assert_eq!(n, 1);
    let (_, data) = sse.message();
    assert_eq!(data.len(), big.len());
    assert_eq!(stats(&server)["slow_consumer_disconnects"], 0);
}

// A publish and a resuming subscribe in the same turn of the loop (one write on /ws): the
// message comes once, from the replay, not again as a live delivery.
#[test]
fn publish_then_resuming_subscribe_in_one_write_delivers_once() {
    let server = Server::start(&[]);
    let since = publish_id(&server, "once", "before");
    let mut ws = ws_open(&server, "/ws", "");
    let mut wire = frame(true, 0x1, br#"{"op":"publish","channel":"once","data":"x"}"#);
    wire.extend(frame(true, 0x1, format!(r#"{{"op":"subscribe","channel":"once","since":"{since}"}}"#).as_bytes()));
    wire.extend(frame(true, 0x1, br#"{"op":"publish","channel":"once","data":"after"}"#));
    ws.send(&wire);
    let mut datas = Vec::new();
    for _ in 0..20 {
        let (_, op, payload) = read_frame(&mut ws);
        assert_eq!(op, 0x1);
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if let Some(d) = v.get("data").and_then(Value::as_str) {
            datas.push(d.to_string());
            if d == "after" {
                break;
            }
        }
    }
    assert_eq!(datas, vec!["x", "after"]);
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

// HEAD on the classic SSE routes answers at once and subscribes nothing.
#[test]
fn head_on_chat_and_stream() {
    let server = Server::start(&[]);
    for path in ["/chat", "/stream"] {
        let mut c = server.client();
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.response_to(true);
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
        assert_eq!(c.response().status, 200, "{path}: the next request is answered");
    }
    assert_eq!(stats(&server)["subscribers"]["sse"], 0);
}

// During a graceful shutdown a new subscription is refused with 503 (it would be cut at the
// drain deadline anyway), and the server still exits 0.
#[test]
fn subscribing_during_shutdown_gets_503() {
    let mut server = Server::start(&["--drain-timeout", "5"]);
    // Each /stats call adds its own request to bytes_in: learn how much, to see ours arrive.
    let b0 = stats(&server)["bytes_in"].as_u64().unwrap();
    let per_call = stats(&server)["bytes_in"].as_u64().unwrap() - b0;
    let partial = b"GET /channels/late HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n";
    let mut c = server.client();
    c.send(partial);
    // The head is incomplete, so the connection is not idle: shutdown waits for it.
    let mut calls = 1;
    wait_for("the half-sent request to be read", || {
        calls += 1;
        stats(&server)["bytes_in"].as_u64().unwrap() >= b0 + calls * per_call + partial.len() as u64
    });
    server.signal("TERM");
    wait_for("shutdown to begin", || server.log().contains("shutting down"));
    c.send(b"\r\n");
    let r = c.response();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(c.is_closed());
    let status = server.wait_exit(Duration::from_secs(8)).expect("server exits");
    assert!(status.success());
}
