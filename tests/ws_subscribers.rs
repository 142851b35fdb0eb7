//! Integration tests of WebSocket subscribers on `/channels/{name}` (issue 4): one text frame per
//! message, frames they send published, `--ws-publish=false`.

mod support;
use support::pubsub::*;
use support::ws::{frame, read_frame};
use support::*;

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
