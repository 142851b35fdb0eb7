//! Integration tests of SSE subscriptions (issue 4): headers, `retry:`, heartbeats, `event:`/`id:`
//! lines, multi-line data, fan-out, HEAD on subscription routes, and the SSE round-trip property.

mod support;
use support::pubsub::*;
use support::*;

use pushwire::proto::sse::parse::{self, Event};

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
// HEAD on subscription routes: the headers a GET would get, no subscription
// ---------------------------------------------------------------------------------------------

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

/// Rule (issue 10): `HEAD` on every stream route sends exactly the headers its `GET` starts
/// with — the same names and values — but for `Date`, the length (a stream has none; a
/// long-poll's depends on what arrives) and `Connection` (a HEAD's answer ends at its head).
#[test]
fn head_on_stream_routes_sends_the_gets_headers() {
    let server = Server::start(&["--cors-origin", "https://app.example"]);
    let id = publish_id(&server, "hh", "x");
    let skip = |r: &Response| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| !["date", "content-length", "connection"].contains(&n.to_ascii_lowercase().as_str()))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        h.sort();
        h
    };
    let sse = "Accept: text/event-stream\r\n";
    let since = format!("?since={}", id - 1);
    for (path, accept) in [
        ("/channels/hh", sse),
        ("/subscribe?channel=hh", sse),
        ("/chat", ""),
        ("/stream", ""),
        (&format!("/channels/hh{since}") as &str, ""),
        (&format!("/subscribe?channel=hh&since={}", id - 1) as &str, ""),
        // A long-poll that would be held: its GET is answered by the publish below.
        ("/channels/held", ""),
    ] {
        let mut g = server.client();
        g.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{accept}\r\n").as_bytes());
        if path == "/channels/held" {
            wait_stats(&server, "the held poll", |v| v["subscribers"]["longpoll"] == 1);
            publish(&server, "held", "x");
        }
        let get = read_head(&mut g);
        let mut h = server.client();
        h.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n{accept}\r\n").as_bytes());
        let head = h.response_to(true);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(skip(&head), skip(&get), "{path}: HEAD and GET heads differ");
        assert_eq!(head.header("content-length"), None, "{path}: no Content-Length: 0 on a HEAD of a stream");
        // The connection carries on after the HEAD.
        h.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(h.response().text(), "ok\n", "{path}: the connection after the HEAD");
    }
}
