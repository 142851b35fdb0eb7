//! Integration tests for real deployments (issue 4): the publish token, CORS headers and
//! preflight, and the warning when listening beyond loopback without a token.

mod support;
use support::pubsub::*;
use support::ws::{frame, read_frame};
use support::*;

use serde_json::json;

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

/// Rule (issue 10): one token rule for every way in. With `--publish-token`, every HTTP route
/// that publishes or delivers answers 401 without it — the demos' `/chat` and `/rest/message`
/// included — and nothing reaches a subscriber; with it, each works.
#[test]
fn every_publishing_route_needs_the_token() {
    let server = Server::start(&["--publish-token", "secret"]);
    let mut chat = open_sse(&server, "/chat", "");
    assert_eq!(chat.next().data, "Connected");
    let mut bob = ws_open(&server, "/ws/bob", "");
    let routes: [(&str, &[u8]); 4] = [
        ("/channels/chat", b"via channels"),
        ("/users/bob", b"via users"),
        ("/chat", br#"{"name":"eve","msg":"via chat"}"#),
        ("/rest/message", br#"{"from":"eve","to":"bob","content":"via rest"}"#),
    ];
    for (path, body) in routes {
        for auth in ["", "Authorization: Bearer wrong\r\n"] {
            let r = request(&server, "POST", path, auth, body);
            assert_eq!(r.status, 401, "{path} {auth:?}: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{path}: {r:?}");
            let v = body_json(&r);
            assert!(v["error"].is_string() || v["succeed"] == false, "{path}: a JSON error: {v}");
        }
    }
    assert_eq!(stats(&server)["messages_published"], 0, "nothing was published without the token");
    let auth = "Authorization: Bearer secret\r\n";
    assert_eq!(request(&server, "POST", "/chat", auth, br#"{"name":"al","msg":"hi"}"#).status, 204);
    assert_eq!(chat.next().data, r#"{"name":"al","msg":"hi"}"#, "the first chat message is the authorized one");
    let r = request(&server, "POST", "/rest/message", auth, br#"{"from":"al","to":"bob","content":"yo"}"#);
    assert_eq!(body_json(&r)["succeed"], true, "{r:?}");
    assert_eq!(ws_text(&mut bob), r#"{"content":"yo","from":"al"}"#, "the first message bob gets is the authorized one");
}
