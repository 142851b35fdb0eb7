//! Forever-iframe streaming (`?transport=iframe`): the document's head and padding, one
//! script call per message that no message can break out of, the callback rule, replay and
//! reset as for SSE.

mod support;

use support::pubsub::*;
use support::Server;

fn open_iframe(server: &Server, path: &str) -> support::Client {
    let mut c = server.client();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let head = read_head(&mut c);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    c
}

/// Reads the document up to the end of the next script element.
fn next_script(c: &mut support::Client) -> String {
    String::from_utf8(c.read_until(b"</script>\n")).unwrap()
}

#[test]
fn messages_arrive_as_script_calls_that_cannot_break_out() {
    let server = Server::start(&[]);
    let mut c = open_iframe(&server, "/channels/f?transport=iframe");
    let pre = next_script(&mut c);
    assert!(pre.starts_with("<!doctype html>") && pre.len() > 2048, "padded head: {} bytes", pre.len());
    assert!(pre.ends_with("<script>function p(m){try{parent.pushwire(m)}catch(e){}}</script>\n"), "{pre}");
    let id = publish_id(&server, "f", "</script><script>alert(1)</script>");
    let call = next_script(&mut c);
    assert_eq!(call.matches("</script>").count(), 1, "the message cannot close the element: {call}");
    let json = call.strip_prefix("<script>p(").and_then(|s| s.strip_suffix(")</script>\n")).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v, envelope("f", id, None, "</script><script>alert(1)</script>"), "the escapes are JSON's: the data arrives intact");
    assert_silent(&mut c, std::time::Duration::from_millis(200), "one call per message");
}

#[test]
fn callbacks_are_validated_and_history_replays() {
    let server = Server::start(&[]);
    let first = publish_id(&server, "r", "one");
    publish_id(&server, "r", "two");
    let mut c = open_iframe(&server, &format!("/channels/r?transport=iframe&callback=app.onPush&since={first}"));
    assert!(next_script(&mut c).contains("parent.app.onPush(m)"));
    assert!(next_script(&mut c).contains("\"data\":\"two\""), "what came after the id, then live");
    for bad in ["alert(1)", "a;b", "1x", "a..b"] {
        let r = server.get(&format!("/channels/r?transport=iframe&callback={}", bad.replace(';', "%3B")));
        assert_json_error(&r, 400);
    }
    // An id older than the history: a reset call first.
    let mut old = open_iframe(&server, "/channels/r?transport=iframe&since=5");
    next_script(&mut old);
    let reset = next_script(&mut old);
    assert!(reset.starts_with("<script>p({\"id\":null,\"reset\":true})") || reset.contains("\"reset\":true"), "{reset}");
    assert!(next_script(&mut old).contains("\"data\":\"one\""));
}

#[test]
fn a_quiet_document_gets_comments_as_heartbeat() {
    let server = Server::start(&["--sse-heartbeat", "0.3"]);
    let mut c = open_iframe(&server, "/channels/q?transport=iframe");
    next_script(&mut c);
    assert_eq!(c.read_until(b"\n"), b"<!-- -->\n", "an HTML comment: harmless in the document");
}
