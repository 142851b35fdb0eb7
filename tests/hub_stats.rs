//! Integration tests of the hub's `/stats` counters (issue 4): channels, subscribers per
//! transport, users online, messages published and delivered, slow-consumer disconnects.

mod support;
use support::pubsub::*;
use support::*;

use serde_json::json;

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
    assert_eq!(s["subscribers"], json!({"websocket": 0, "sse": 0, "longpoll": 0, "socketio": 0}), "{s}");
    assert_eq!(s["messages_published"], 0, "{s}");
    assert_eq!(s["messages_delivered"], 0, "{s}");
    assert_eq!(s["slow_consumer_disconnects"], 0, "{s}");

    let mut ws = ws_open(&server, "/channels/s1", "");
    let mut sse = open_sse(&server, "/channels/s2", "");
    let mut user = open_sse(&server, "/users/u1", "");
    let mut lp = server.client();
    lp.send(poll_request("/channels/s3", "").as_bytes());
    let s = wait_stats(&server, "the long-poll", |s| s["subscribers"]["longpoll"] == 1);
    assert_eq!(s["subscribers"], json!({"websocket": 1, "sse": 2, "longpoll": 1, "socketio": 0}), "{s}");
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
    assert_eq!(s["subscribers"], json!({"websocket": 1, "sse": 2, "longpoll": 0, "socketio": 0}), "{s}");

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
    assert_eq!(s["subscribers"], json!({"websocket": 3, "sse": 2, "longpoll": 0, "socketio": 0}), "{s}");
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
    assert_eq!(s["subscribers"], json!({"websocket": 2, "sse": 0, "longpoll": 0, "socketio": 0}), "{s}");
}
