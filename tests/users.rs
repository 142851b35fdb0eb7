//! Integration tests of user addressing (issue 4): `/users/{name}` over SSE, WebSocket and
//! long-poll, `202 {"delivered": N}`, and 404 when the user is offline.

mod support;
use support::pubsub::*;
use support::*;

use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts a JSON response: status, `Content-Type: application/json`, and the body.
fn assert_json(r: &Response, status: u16, body: &Value) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(&body_json(r), body);
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
