//! Helpers of the pub/sub hub tests (sse.rs, publish.rs, replay.rs, longpoll.rs, ws_*.rs,
//! users.rs, auth_cors.rs, slow_consumers.rs, hub_stats.rs): publishing, JSON answers, SSE
//! streams, WebSocket and /ws control sockets, long-polls.
//!
//! Races are avoided by confirming a subscription before publishing: an SSE stream is
//! registered before its head and `retry:` are written, a WebSocket before its 101, a /ws
//! subscription before its ack, and a held long-poll is waited for in `GET /stats`.

use super::ws::{frame, read_frame, ACCEPT, KEY};
use super::*;

use std::io::{ErrorKind, Read};
use std::time::Duration;

use pushwire::proto::sse::parse::{self, Event};
use serde_json::{json, Value};

/// Reads a response head only (for streams, whose body never ends).
pub fn read_head(c: &mut Client) -> Response {
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

pub fn body_json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", r.text()))
}

/// Asserts `{"error": "<non-empty text>"}` with this status.
pub fn assert_json_error(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{r:?} {:?}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = body_json(r);
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.len(), 1, "{v}");
    assert!(obj["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(server: &Server, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut c = server.client();
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n", body.len())
            .as_bytes(),
    );
    c.send(body);
    c.response()
}

pub fn post(server: &Server, path: &str, body: &[u8]) -> Response {
    request(server, "POST", path, "", body)
}

pub fn parse_id(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("id is not a string: {v}"));
    assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()), "id {s:?}");
    s.parse().unwrap()
}

/// Checks a publish answer (`202 {"id": "<string>", "subscribers": N}`); returns (id, N).
pub fn publish_answer(r: &Response) -> (u64, u64) {
    assert_eq!(r.status, 202, "{r:?} {:?}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = body_json(r);
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.len(), 2, "exactly id and subscribers: {v}");
    (parse_id(&obj["id"]), obj["subscribers"].as_u64().unwrap_or_else(|| panic!("subscribers: {v}")))
}

/// Publishes on a fresh connection; returns (id, local deliveries).
pub fn publish(server: &Server, channel: &str, data: &str) -> (u64, u64) {
    publish_answer(&post(server, &format!("/channels/{channel}"), data.as_bytes()))
}

pub fn publish_id(server: &Server, channel: &str, data: &str) -> u64 {
    publish(server, channel, data).0
}

/// A keep-alive publishing connection.
pub struct Publisher {
    c: Client,
    headers: String,
}

impl Publisher {
    pub fn new(server: &Server) -> Publisher {
        Publisher { c: server.client(), headers: String::new() }
    }

    pub fn post(&mut self, path: &str, body: &[u8]) -> Response {
        let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{}\r\n", body.len(), self.headers);
        self.c.send(head.as_bytes());
        self.c.send(body);
        self.c.large_response_to(false)
    }

    /// Publishes `data` to `channel`; returns the id.
    pub fn publish(&mut self, channel: &str, data: &[u8]) -> u64 {
        publish_answer(&self.post(&format!("/channels/{channel}"), data)).0
    }
}

pub fn stats(server: &Server) -> Value {
    let r = server.get("/stats");
    assert_eq!(r.status, 200);
    body_json(&r)
}

/// Polls `/stats` until `cond` holds; returns the stats that satisfied it.
pub fn wait_stats(server: &Server, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, || {
        last = stats(server);
        cond(&last)
    });
    last
}

/// Asserts that nothing arrives on `c` within `d`: the read times out (WouldBlock/TimedOut).
pub fn assert_silent(c: &mut Client, d: Duration, what: &str) {
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
pub fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

// ---- SSE ----

/// An open event stream: its response head, and the `retry:` block that started it.
pub struct SseStream {
    pub c: Client,
    pub head: Response,
    pub first: Vec<u8>,
}

pub fn sse_request(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n")
}

/// Opens an SSE stream and reads its head and first block (the `retry:` field). When this
/// returns, the subscription is registered.
pub fn open_sse(server: &Server, path: &str, extra: &str) -> SseStream {
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
    pub fn block(&mut self) -> Vec<u8> {
        self.c.read_until(b"\n\n")
    }

    /// The next dispatched event, parsed by the WHATWG rules; comments are skipped.
    pub fn next(&mut self) -> Event {
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
    pub fn message(&mut self) -> (u64, String) {
        let ev = self.next();
        assert_eq!(ev.event, "message", "{ev:?}");
        let id = ev.id.as_deref().unwrap_or_else(|| panic!("no id: {ev:?}")).parse().unwrap();
        (id, ev.data)
    }

    /// The next `n` messages as (id, data).
    pub fn messages(&mut self, n: usize) -> Vec<(u64, String)> {
        (0..n).map(|_| self.message()).collect()
    }
}

// ---- WebSocket (frame helpers as in tests/ws.rs) ----

pub fn ws_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// Opens a WebSocket with raw bytes and checks the 101. The subscription of a
/// `/channels/{name}` or `/users/{name}` socket is registered when the 101 is sent.
pub fn ws_open(server: &Server, path: &str, extra: &str) -> Client {
    let mut c = server.client();
    c.send(ws_request(path, extra).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 101, "{r:?} {:?}", r.text());
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT));
    c
}

pub fn ws_send_text(c: &mut Client, text: &str) {
    c.send(&frame(true, 0x1, text.as_bytes()));
}

/// Reads one frame and asserts it is a single, complete text frame; returns its text.
pub fn ws_text(c: &mut Client) -> String {
    let (fin, op, payload) = read_frame(c);
    assert_eq!(op, 0x1, "expected a text frame, got opcode {op:#x} {:?}", String::from_utf8_lossy(&payload));
    assert!(fin, "a message is one unfragmented frame");
    String::from_utf8(payload).expect("text frames hold UTF-8")
}

/// The /ws control socket, JSON in and out.
pub fn ctl_send(c: &mut Client, v: &Value) {
    ws_send_text(c, &v.to_string());
}

pub fn ctl_recv(c: &mut Client) -> Value {
    let t = ws_text(c);
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("control reply is not JSON ({e}): {t:?}"))
}

pub fn ctl_subscribe(c: &mut Client, channel: &str) {
    ctl_send(c, &json!({"op": "subscribe", "channel": channel}));
    assert_eq!(ctl_recv(c), json!({"ok": "subscribe", "channel": channel}));
}

/// Asserts an `{"error": "<text>"}` control reply.
pub fn assert_ctl_error(v: &Value, after: &str) {
    let obj = v.as_object().unwrap_or_else(|| panic!("after {after}: not an object: {v}"));
    assert_eq!(obj.len(), 1, "after {after}: {v}");
    assert!(obj.get("error").and_then(Value::as_str).is_some_and(|s| !s.is_empty()), "after {after}: {v}");
}

// ---- long-poll ----

pub fn poll_request(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

/// Checks a long-poll answer with messages: 200, JSON array; returns its elements.
pub fn poll_messages(r: &Response) -> Vec<Value> {
    assert_eq!(r.status, 200, "{r:?} {:?}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    match body_json(r) {
        Value::Array(a) => a,
        v => panic!("not an array: {v}"),
    }
}

pub fn envelope(channel: &str, id: u64, event: Option<&str>, data: &str) -> Value {
    json!({"channel": channel, "id": id.to_string(), "event": event, "data": data})
}
