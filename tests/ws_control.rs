//! Integration tests of the `/ws` JSON control protocol (issue 4): subscribe, unsubscribe and
//! publish with acks, error replies, and replay with `since`.

mod support;
use support::pubsub::*;
use support::ws::{frame, read_frame};
use support::*;

use std::time::Duration;

use serde_json::{json, Value};

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

/// Rule (issue 10): `--ws-publish=false` turns off every WebSocket way to publish, the `/ws`
/// `publish` op included: it answers an error that says why, and nothing is published.
#[test]
fn ws_publish_false_refuses_the_publish_op() {
    let server = Server::start(&["--ws-publish=false"]);
    let mut c = ws_open(&server, "/ws", "");
    ctl_subscribe(&mut c, "ro");
    ctl_send(&mut c, &json!({"op": "publish", "channel": "ro", "data": "x"}));
    let v = ctl_recv(&mut c);
    assert_ctl_error(&v, "publish with --ws-publish=false");
    assert!(v["error"].as_str().unwrap().contains("--ws-publish"), "{v}");
    assert_eq!(stats(&server)["messages_published"], 0);
    // The socket stays usable: an HTTP publish still reaches it.
    let (id, _) = publish(&server, "ro", "from http");
    assert_eq!(ctl_recv(&mut c), envelope("ro", id, None, "from http"));
}

/// Rule (issue 10): a `since` newer than any message (another deployment, a clock that was
/// ahead) is a reset on `/ws` too, and live messages still arrive after it.
#[test]
fn ws_control_since_from_the_future_is_a_reset() {
    let server = Server::start(&[]);
    let future = publish_id(&server, "fut", "old") + 3_600_000_000;
    let mut c = ws_open(&server, "/ws", "");
    ctl_send(&mut c, &json!({"op": "subscribe", "channel": "fut", "since": future.to_string()}));
    assert_eq!(ctl_recv(&mut c), json!({"ok": "subscribe", "channel": "fut"}));
    assert_eq!(ctl_recv(&mut c), json!({"reset": true, "channel": "fut"}));
    let (id, _) = publish(&server, "fut", "new");
    assert_eq!(ctl_recv(&mut c), envelope("fut", id, None, "new"));
}
