//! Engine.IO v4 and Socket.IO v5 on the wire, from raw sockets: every error path the
//! reference server answers, the heartbeat, the upgrade from polling without a packet lost
//! or repeated, and malformed Socket.IO packets. (The official client is driven by
//! tests/e2e/sio.mjs.)

mod support;
use support::pubsub::*;
use support::ws::read_frame;
use support::*;

use serde_json::Value;
use std::time::{Duration, Instant};

const EIO: &str = "/socket.io/?EIO=4";

fn get(server: &Server, query: &str) -> Response {
    server.get(&format!("{EIO}&{query}"))
}

fn poll_get(c: &mut Client, sid: &str) {
    c.send(format!("GET {EIO}&transport=polling&sid={sid} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
}

fn poll_post(server: &Server, sid: &str, body: &[u8]) -> Response {
    post(server, &format!("{EIO}&transport=polling&sid={sid}"), body)
}

/// A polling handshake: the sid and the open packet's JSON.
fn handshake(server: &Server) -> (String, Value) {
    let r = get(server, "transport=polling");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    let text = r.text();
    let open: Value = serde_json::from_str(text.strip_prefix('0').expect("an open packet")).unwrap();
    (open["sid"].as_str().unwrap().to_string(), open)
}

fn assert_eio_error(r: &Response, code: u8, message: &str) {
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.text(), format!(r#"{{"code":{code},"message":"{message}"}}"#));
}

#[test]
fn handshake_errors_are_the_reference_servers() {
    let server = Server::start(&[]);
    assert_eio_error(&get(&server, "transport=carrier-pigeon"), 0, "Transport unknown");
    assert_eio_error(&server.get("/socket.io/?transport=polling"), 5, "Unsupported protocol version");
    assert_eio_error(&server.get("/socket.io/?EIO=3&transport=polling"), 5, "Unsupported protocol version");
    assert_eio_error(&get(&server, "transport=polling&sid=AAAAAAAAAAAAAAAAAAAA"), 1, "Session ID unknown");
    assert_eio_error(&post(&server, &format!("{EIO}&transport=polling"), b"40"), 2, "Bad handshake method");
    assert_eio_error(&get(&server, "transport=websocket"), 3, "Bad request");
    let (sid, _) = handshake(&server);
    // A polling request for a session is not a WebSocket one, and the other way round.
    let mut c = server.client();
    c.send(ws_request(&format!("{EIO}&transport=polling&sid={sid}"), "").as_bytes());
    assert_eio_error(&c.response(), 3, "Bad request");
}

#[test]
fn the_open_packet_has_exactly_the_reference_keys() {
    let server = Server::start(&["--sio-ping-interval", "7", "--sio-ping-timeout", "3", "--sio-max-payload", "5000"]);
    let r = get(&server, "transport=polling");
    let text = r.text();
    let keys: Vec<&str> = ["\"sid\":", "\"upgrades\":", "\"pingInterval\":", "\"pingTimeout\":", "\"maxPayload\":"].to_vec();
    let mut at = 0;
    for k in &keys {
        let i = text[at..].find(k).unwrap_or_else(|| panic!("{k} in order in {text}")) + at;
        at = i;
    }
    let (_, open) = handshake(&server);
    let obj = open.as_object().unwrap();
    assert_eq!(obj.len(), 5, "{open}");
    assert_eq!(obj["sid"].as_str().unwrap().len(), 20);
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!((open["pingInterval"].as_u64(), open["pingTimeout"].as_u64(), open["maxPayload"].as_u64()), (Some(7000), Some(3000), Some(5000)));
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket"), "");
    let first = ws_text(&mut ws);
    let open: Value = serde_json::from_str(first.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!([]), "a direct WebSocket offers no upgrade");
}

#[test]
fn a_post_answers_ok_and_its_replies_come_in_the_next_get() {
    let server = Server::start(&[]);
    let (sid, _) = handshake(&server);
    let r = poll_post(&server, &sid, b"40");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = get(&server, &format!("transport=polling&sid={sid}"));
    assert!(r.text().starts_with(r#"40{"sid":""#), "{:?}", r.text());
    // A held GET is answered when a packet appears: two events in one payload, 0x1E apart.
    let mut held = server.client();
    poll_get(&mut held, &sid);
    assert_silent(&mut held, Duration::from_millis(200), "a GET with nothing to send is held");
    let r = poll_post(&server, &sid, b"421[\"join\",\"room\"]\x1e422[\"join\",\"other\"]");
    assert_eq!(r.text(), "ok");
    let r = held.response();
    assert_eq!(r.text(), "431[1]\x1e432[1]");
}

#[test]
fn payload_errors_end_the_session() {
    let server = Server::start(&["--sio-max-payload", "100"]);
    // Over maxPayload: 413, the session goes on.
    let (sid, _) = handshake(&server);
    let r = poll_post(&server, &sid, &[b'4'; 101]);
    assert_eq!(r.status, 413);
    assert_eq!(poll_post(&server, &sid, b"40").text(), "ok");
    // A payload that does not decode: 400, the held GET gets a close packet, the sid is gone.
    let mut held = server.client();
    poll_get(&mut held, &sid);
    get_drained(&mut held);
    poll_get(&mut held, &sid);
    assert_silent(&mut held, Duration::from_millis(100), "held");
    let r = poll_post(&server, &sid, b"9nonsense");
    assert_eio_error(&r, 3, "Bad request");
    assert_eq!(held.response().text(), "1");
    assert_eio_error(&get(&server, &format!("transport=polling&sid={sid}")), 1, "Session ID unknown");
    // Base64 that is not base64.
    let (sid, _) = handshake(&server);
    assert_eq!(poll_post(&server, &sid, b"b!!!").status, 400);
    assert_eio_error(&poll_post(&server, &sid, b"40"), 1, "Session ID unknown");
}

/// Reads the answer to a GET that has something waiting.
fn get_drained(c: &mut Client) -> String {
    c.response().text()
}

#[test]
fn a_second_get_while_one_is_held_ends_the_session() {
    let server = Server::start(&[]);
    let (sid, _) = handshake(&server);
    let mut first = server.client();
    poll_get(&mut first, &sid);
    assert_silent(&mut first, Duration::from_millis(100), "held");
    let second = get(&server, &format!("transport=polling&sid={sid}"));
    assert_eio_error(&second, 3, "Bad request");
    assert_eq!(first.response().text(), "1", "the held GET gets a close packet");
    assert_eio_error(&poll_post(&server, &sid, b"40"), 1, "Session ID unknown");
}

#[test]
fn the_clients_close_packet_releases_the_held_get_with_a_noop() {
    let server = Server::start(&[]);
    let (sid, _) = handshake(&server);
    let mut held = server.client();
    poll_get(&mut held, &sid);
    assert_silent(&mut held, Duration::from_millis(100), "held");
    assert_eq!(poll_post(&server, &sid, b"1").text(), "ok");
    assert_eq!(held.response().text(), "6");
    assert_eio_error(&get(&server, &format!("transport=polling&sid={sid}")), 1, "Session ID unknown");
    wait_stats(&server, "no session left", |s| s["socketio"]["sessions"] == 0);
}

#[test]
fn heartbeat_pings_at_the_interval_and_a_missing_pong_closes() {
    let server = Server::start(&["--sio-ping-interval", "0.3", "--sio-ping-timeout", "0.2"]);
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket"), "");
    let t0 = Instant::now();
    assert!(ws_text(&mut ws).starts_with('0'));
    ws_send_text(&mut ws, "40");
    assert!(ws_text(&mut ws).starts_with("40{"));
    for _ in 0..2 {
        assert_eq!(ws_text(&mut ws), "2");
        ws_send_text(&mut ws, "3");
    }
    let pings = t0.elapsed();
    assert!(pings >= Duration::from_millis(600), "two pings 300 ms apart, after {pings:?}");
    assert_eq!(ws_text(&mut ws), "2");
    let t1 = Instant::now();
    // No pong: the session is closed pingTimeout after the ping, the WebSocket with it.
    let (_, op, _) = read_frame(&mut ws);
    assert_eq!(op, 0x8, "a close frame");
    let waited = t1.elapsed();
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(2), "closed after {waited:?}");
    wait_stats(&server, "no session left", |s| s["socketio"]["sessions"] == 0);
}

#[test]
fn polling_sessions_time_out_without_a_pong_too() {
    let server = Server::start(&["--sio-ping-interval", "0.2", "--sio-ping-timeout", "0.2"]);
    let (sid, _) = handshake(&server);
    let r = get(&server, &format!("transport=polling&sid={sid}"));
    assert_eq!(r.text(), "2", "the held GET is released by the ping");
    std::thread::sleep(Duration::from_millis(500));
    assert_eio_error(&poll_post(&server, &sid, b"3"), 1, "Session ID unknown");
}

#[test]
fn upgrade_from_polling_loses_and_repeats_nothing() {
    let server = Server::start(&[]);
    let (sid, _) = handshake(&server);
    assert_eq!(poll_post(&server, &sid, b"40").text(), "ok");
    assert!(get(&server, &format!("transport=polling&sid={sid}")).text().starts_with("40{"));
    let mut held = server.client();
    poll_get(&mut held, &sid);
    assert_silent(&mut held, Duration::from_millis(100), "held");
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket&sid={sid}"), "");
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    assert_eq!(held.response().text(), "6", "the held GET is released with a noop");
    // Published while the upgrade waits for its 5: goes over polling.
    publish(&server, "sio:", "during");
    assert_eq!(get(&server, &format!("transport=polling&sid={sid}")).text(), r#"42["message","during"]"#);
    publish(&server, "sio:", "queued");
    ws_send_text(&mut ws, "5");
    assert_eq!(ws_text(&mut ws), r#"42["message","queued"]"#, "what waited goes over the WebSocket");
    publish(&server, "sio:", "after");
    assert_eq!(ws_text(&mut ws), r#"42["message","after"]"#);
    // Polling is over for this session; a second WebSocket is closed, the first goes on.
    assert_eio_error(&get(&server, &format!("transport=polling&sid={sid}")), 3, "Bad request");
    let mut second = ws_open(&server, &format!("{EIO}&transport=websocket&sid={sid}"), "");
    let (_, op, _) = read_frame(&mut second);
    assert_eq!(op, 0x8);
    publish(&server, "sio:", "still");
    assert_eq!(ws_text(&mut ws), r#"42["message","still"]"#);
}

#[test]
fn a_broken_probe_closes_the_probe_not_the_session() {
    let server = Server::start(&[]);
    let (sid, _) = handshake(&server);
    assert_eq!(poll_post(&server, &sid, b"40").text(), "ok");
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket&sid={sid}"), "");
    ws_send_text(&mut ws, "5");
    let (_, op, _) = read_frame(&mut ws);
    assert_eq!(op, 0x8, "an upgrade without a probe is refused");
    assert!(get(&server, &format!("transport=polling&sid={sid}")).text().starts_with("40{"), "the session goes on");
}

#[test]
fn malformed_socketio_packets_close_the_connection() {
    let server = Server::start(&[]);
    for bad in ["47", r#"42{"not":"an array"}"#, r#"42abc["x"]"#, r#"42["x""#, "4", r#"42/nsp,["x"]"#, r#"451-["x"]\x1e42["y"]"#] {
        let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket"), "");
        ws_text(&mut ws);
        ws_send_text(&mut ws, "40");
        assert!(ws_text(&mut ws).starts_with("40{"));
        for part in bad.split("\\x1e") {
            ws_send_text(&mut ws, part);
        }
        let (_, op, _) = read_frame(&mut ws);
        assert_eq!(op, 0x8, "{bad:?} closes");
    }
    wait_stats(&server, "no session left", |s| s["socketio"]["sessions"] == 0);
}

#[test]
fn invalid_namespace_and_namespace_parsing() {
    let server = Server::start(&["--sio-namespace", "/", "--sio-namespace", "/custom"]);
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket"), "");
    ws_text(&mut ws);
    ws_send_text(&mut ws, "40/nope,");
    assert_eq!(ws_text(&mut ws), r#"44/nope,{"message":"Invalid namespace"}"#);
    ws_send_text(&mut ws, "40/custom");
    assert!(ws_text(&mut ws).starts_with(r#"40/custom,{"sid":""#), "no comma accepted, the reply has it");
    ws_send_text(&mut ws, "40/custom,");
    assert!(ws_text(&mut ws).starts_with(r#"40/custom,{"sid":""#));
    ws_send_text(&mut ws, "40");
    assert!(ws_text(&mut ws).starts_with(r#"40{"sid":""#));
    ws_send_text(&mut ws, "41/custom,");
    publish(&server, "sio:", "main still connected");
    assert_eq!(ws_text(&mut ws), r#"42["message","main still connected"]"#);
}

#[test]
fn no_connect_within_the_timeout_closes_the_session() {
    let server = Server::start(&["--sio-connect-timeout", "0.3"]);
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket"), "");
    ws_text(&mut ws);
    let t0 = Instant::now();
    let (_, op, _) = read_frame(&mut ws);
    assert_eq!(op, 0x8);
    assert!(t0.elapsed() >= Duration::from_millis(200), "{:?}", t0.elapsed());
}

/// Target: an idle socket.io session (WebSocket transport, connected to `/`) costs at most
/// 1 KiB of server memory.
#[test]
fn an_idle_session_costs_at_most_a_kibibyte() {
    raise_fd_limit();
    let server = Server::start(&[]);
    let open = |n: usize| -> Vec<Client> {
        let mut all = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = server.client();
            c.send(ws_request(&format!("{EIO}&transport=websocket"), "").as_bytes());
            all.push(c);
        }
        for c in &mut all {
            assert_eq!(c.response().status, 101);
            ws_text(c);
            ws_send_text(c, "40");
        }
        for c in &mut all {
            assert!(ws_text(c).starts_with("40{"));
        }
        all
    };
    let warm = open(2000);
    let rss0 = proc_kib(server.pid(), "VmRSS");
    let n = 5000;
    let more = open(n);
    wait_stats(&server, "all sessions", |s| s["socketio"]["sockets"] == (2000 + n) as u64);
    let rss1 = proc_kib(server.pid(), "VmRSS");
    let per = (rss1.saturating_sub(rss0)) * 1024 / n as u64;
    println!("idle socket.io session: {per} bytes ({rss0} KiB -> {rss1} KiB over {n})");
    assert!(per <= 1024, "an idle session costs {per} bytes");
    drop((warm, more));
}

#[test]
fn the_conformance_preset_is_the_test_suites_application() {
    let server = Server::start(&["--preset", "sio-conformance"]);
    // Engine.IO alone at /engine.io/: every message comes back, text and binary.
    let mut eio = ws_open(&server, "/engine.io/?EIO=4&transport=websocket", "");
    let open: Value = serde_json::from_str(ws_text(&mut eio).strip_prefix('0').unwrap()).unwrap();
    assert_eq!((open["pingInterval"].as_u64(), open["pingTimeout"].as_u64(), open["maxPayload"].as_u64()), (Some(300), Some(200), Some(1_000_000)));
    ws_send_text(&mut eio, "4hello");
    assert_eq!(ws_text(&mut eio), "4hello");
    eio.send(&support::ws::frame(true, 0x2, &[1, 2, 3]));
    assert_eq!(read_frame(&mut eio), (true, 0x2, vec![1, 2, 3]));
    let r = server.get("/engine.io/?EIO=4&transport=polling");
    assert!(r.text().starts_with(r#"0{"sid":""#));
    // Socket.IO at /socket.io/: an auth event after each CONNECT, message-back, acks.
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket"), "");
    ws_text(&mut ws);
    ws_send_text(&mut ws, "40");
    assert!(ws_text(&mut ws).starts_with(r#"40{"sid":""#));
    assert_eq!(ws_text(&mut ws), r#"42["auth",{}]"#);
    ws_send_text(&mut ws, r#"40/custom,{"token":"123"}"#);
    assert!(ws_text(&mut ws).starts_with(r#"40/custom,{"sid":""#));
    assert_eq!(ws_text(&mut ws), r#"42/custom,["auth",{"token":"123"}]"#);
    ws_send_text(&mut ws, "40/random,");
    assert_eq!(ws_text(&mut ws), r#"44/random,{"message":"Invalid namespace"}"#);
    ws_send_text(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(ws_text(&mut ws), r#"42["message-back",1,"2",{"3":[true]}]"#);
    ws_send_text(&mut ws, r#"4256["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(ws_text(&mut ws), r#"4356[1,"2",{"3":[false]}]"#);
    ws_send_text(&mut ws, r#"451-["message",{"_placeholder":true,"num":0}]"#);
    ws.send(&support::ws::frame(true, 0x2, &[7, 8]));
    assert_eq!(ws_text(&mut ws), r#"451-["message-back",{"_placeholder":true,"num":0}]"#);
    assert_eq!(read_frame(&mut ws), (true, 0x2, vec![7, 8]));
    ws_send_text(&mut ws, r#"451-19["message-with-ack",{"_placeholder":true,"num":0}]"#);
    ws.send(&support::ws::frame(true, 0x2, &[9]));
    assert_eq!(ws_text(&mut ws), r#"461-19[{"_placeholder":true,"num":0}]"#);
    assert_eq!(read_frame(&mut ws), (true, 0x2, vec![9]));
}

#[test]
fn the_emit_api_refuses_reserved_event_names() {
    let server = Server::start(&[]);
    let r = post(&server, "/socket.io-api/emit", br#"{"event":"disconnect","args":[]}"#);
    assert_json_error(&r, 400);
    let r = post(&server, "/socket.io-api/emit", br#"{"event":"fine","args":{"not":"an array"}}"#);
    assert_json_error(&r, 400);
    let r = post(&server, "/socket.io-api/emit", b"[1]");
    assert_json_error(&r, 400);
}

/// engine.io's upgradeTimeout: a probe that never completes is closed after 10 s and the
/// session goes on polling (and may probe again).
#[test]
fn an_upgrade_that_never_completes_is_given_up() {
    let server = Server::start(&[]);
    let (sid, _) = handshake(&server);
    assert_eq!(poll_post(&server, &sid, b"40").text(), "ok");
    assert!(get(&server, &format!("transport=polling&sid={sid}")).text().starts_with("40{"));
    let mut ws = ws_open(&server, &format!("{EIO}&transport=websocket&sid={sid}"), "");
    ws_send_text(&mut ws, "2probe");
    assert_eq!(ws_text(&mut ws), "3probe");
    let t0 = Instant::now();
    ws.stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let (_, op, _) = read_frame(&mut ws);
    assert_eq!(op, 0x8, "the probe is closed");
    assert!(t0.elapsed() >= Duration::from_secs(9), "after the upgrade timeout, not {:?}", t0.elapsed());
    // Polling goes on: a GET is held again (not released at once with a noop).
    let mut held = server.client();
    poll_get(&mut held, &sid);
    assert_silent(&mut held, Duration::from_millis(200), "held again");
    let mut again = ws_open(&server, &format!("{EIO}&transport=websocket&sid={sid}"), "");
    ws_send_text(&mut again, "2probe");
    assert_eq!(ws_text(&mut again), "3probe", "a new probe is answered");
}

#[test]
fn cross_origin_polling_gets_its_preflight_and_cors_headers() {
    let server = Server::start(&["--cors-origin", "https://app.example"]);
    let r = request(&server, "OPTIONS", &format!("{EIO}&transport=polling"), "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n", b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(r.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")), "{r:?}");
    let r = get(&server, "transport=polling");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
}

/// Sessions that come and go leave nothing behind: after rounds of 1,000 sessions that
/// connect, join a room, relay, and leave (half by closing, half by a dropped connection),
/// RSS is where it was after the first round, and no session, socket or subscription is left.
/// (Without history: kept messages are retention, not a leak; `tests/memory.rs` bounds them.
/// With short timers: a closed session's or connection's timer entry stays in the heap
/// until its time comes, so each measurement waits for them.)
#[test]
fn sessions_that_come_and_go_leave_nothing_behind() {
    raise_fd_limit();
    let server = Server::start(&[
        "--history", "0", "--sio-ping-interval", "0.3", "--sio-connect-timeout", "0.3", "--header-timeout", "0.3", "--ws-ping-interval", "0.3",
    ]);
    let settled_rss = || {
        std::thread::sleep(Duration::from_millis(800));
        // A request, so the loop has run its due timers.
        server.get("/healthz");
        proc_kib(server.pid(), "VmRSS")
    };
    let round = |r: usize| {
        let mut all = Vec::new();
        for _ in 0..1000 {
            let mut c = server.client();
            c.send(ws_request(&format!("{EIO}&transport=websocket"), "").as_bytes());
            all.push(c);
        }
        for (i, c) in all.iter_mut().enumerate() {
            assert_eq!(c.response().status, 101);
            ws_text(c);
            ws_send_text(c, "40");
            ws_send_text(c, &format!(r#"421["join","room{}"]"#, i % 50));
            ws_send_text(c, &format!(r#"42["msg","round {r}"]"#));
        }
        for c in all.iter_mut() {
            assert!(ws_text(c).starts_with("40{"));
        }
        for (i, mut c) in all.into_iter().enumerate() {
            if i % 2 == 0 {
                ws_send_text(&mut c, "1");
            }
            drop(c);
        }
        wait_stats(&server, "every session gone", |s| s["socketio"]["sessions"] == 0);
    };
    round(0);
    let rss0 = settled_rss();
    for r in 1..6 {
        round(r);
    }
    let s = stats(&server);
    assert_eq!((s["socketio"]["sockets"].as_u64(), s["subscribers"]["socketio"].as_u64()), (Some(0), Some(0)), "{s}");
    let rss1 = settled_rss();
    println!("RSS after the first round {rss0} KiB, after six {rss1} KiB (timers settled)");
    assert_eq!(s["channels"], 0, "rooms without members or history are dropped: {s}");
    assert!(rss1 < rss0 + 512, "RSS grew from {rss0} KiB to {rss1} KiB over five more rounds");
}
