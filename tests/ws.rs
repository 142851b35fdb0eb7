//! WebSocket (RFC 6455) against the real server: happy paths with an independent client
//! (`tungstenite`), and every protocol error as raw bytes, each asserting the exact close code
//! the server sends and that the TCP connection is closed after it.

mod support;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::ws::{frame, frame_raw, read_frame, ACCEPT, KEY};
use support::*;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};


// ---- raw-byte helpers ----

fn handshake_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// Opens `/echo` with raw bytes and checks the 101.
fn raw_ws(server: &Server) -> Client {
    let mut c = server.client();
    c.send(handshake_request("/echo", "").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT));
    c
}

/// Reads frames until a close frame; asserts its code, then that the TCP connection closes.
fn expect_close(c: &mut Client, code: u16) {
    loop {
        let (_, op, payload) = read_frame(c);
        if op == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            let got = u16::from_be_bytes([payload[0], payload[1]]);
            assert_eq!(got, code, "close reason: {:?}", String::from_utf8_lossy(&payload[2..]));
            assert!(std::str::from_utf8(&payload[2..]).is_ok());
            break;
        }
    }
    assert!(c.is_closed(), "TCP connection still open after the close frame");
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

// ---- independent client ----

fn tungstenite_client(server: &Server, path: &str) -> WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let config = WebSocketConfig { max_message_size: Some(64 << 20), max_frame_size: Some(64 << 20), ..Default::default() };
    let (ws, resp) = tungstenite::client::connect_with_config(server.ws_url(path), Some(config), 3).expect("connect");
    assert_eq!(resp.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    ws
}

#[test]
fn echo_text_and_binary_at_every_length_encoding() {
    let server = Server::start(&[]);
    let mut ws = tungstenite_client(&server, "/echo");
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
        let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text), "text of {len} bytes");
        let bin: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(bin), "binary of {len} bytes");
    }
    ws.send(Message::text("héllo wörld ✓ 🎉")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo wörld ✓ 🎉"));
    ws.close(None).unwrap();
}

#[test]
fn echo_16_mib_message() {
    let server = Server::start(&[]);
    let mut ws = tungstenite_client(&server, "/echo");
    let big: Vec<u8> = (0..16 << 20).map(|i: usize| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b[..] == big[..], "16 MiB echo differs"),
        other => panic!("expected binary, got {other:?}"),
    }
}

#[test]
fn one_mib_message_in_one_byte_frames() {
    let server = Server::start(&[]);
    let mut c = raw_ws(&server);
    let msg: Vec<u8> = (0..1 << 20).map(|i: usize| b'a' + (i % 26) as u8).collect();
    let mut wire = Vec::with_capacity(msg.len() * 7);
    for (i, b) in msg.iter().enumerate() {
        let op = if i == 0 { 0x1 } else { 0x0 };
        wire.extend(frame(i == msg.len() - 1, op, std::slice::from_ref(b)));
    }
    // Write from another thread: the echo may start coming back before we finish.
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&wire).unwrap());
    let (fin, op, payload) = read_frame(&mut c);
    writer.join().unwrap();
    assert!(fin);
    assert_eq!(op, 0x1);
    assert!(payload == msg, "reassembled message differs");
}

#[test]
fn bytes_right_behind_the_handshake_are_kept() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut wire = handshake_request("/echo", "").into_bytes();
    wire.extend(frame(true, 0x1, b"early"));
    c.send(&wire);
    assert_eq!(c.response().status, 101);
    assert_eq!(read_frame(&mut c), (true, 0x1, b"early".to_vec()));
}

#[test]
fn ping_pong_and_interleaved_control_frames() {
    let server = Server::start(&[]);
    let mut c = raw_ws(&server);
    c.send(&frame(true, 0x9, b"are you there"));
    assert_eq!(read_frame(&mut c), (true, 0xA, b"are you there".to_vec()));
    // A ping between fragments is answered before the message is complete.
    c.send(&frame(false, 0x1, b"frag1-"));
    c.send(&frame(true, 0x9, b"mid"));
    assert_eq!(read_frame(&mut c), (true, 0xA, b"mid".to_vec()));
    // Unsolicited pong: ignored.
    c.send(&frame(true, 0xA, b"unsolicited"));
    c.send(&frame(false, 0x0, b"frag2-"));
    c.send(&frame(true, 0x0, b"frag3"));
    assert_eq!(read_frame(&mut c), (true, 0x1, b"frag1-frag2-frag3".to_vec()));
}

#[test]
fn close_handshake_echoes_valid_codes() {
    let server = Server::start(&[]);
    for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
        let mut c = raw_ws(&server);
        c.send(&frame(true, 0x8, &close_payload(code, b"bye")));
        expect_close(&mut c, code);
    }
    // An empty close frame is answered with an empty one.
    let mut c = raw_ws(&server);
    c.send(&frame(true, 0x8, b""));
    assert_eq!(read_frame(&mut c), (true, 0x8, vec![]));
    assert!(c.is_closed());
}

#[test]
fn nothing_is_processed_after_a_close_frame() {
    let server = Server::start(&[]);
    let mut c = raw_ws(&server);
    let mut wire = frame(true, 0x8, &close_payload(1000, b""));
    wire.extend(frame(true, 0x1, b"after close"));
    c.send(&wire);
    assert_eq!(read_frame(&mut c), (true, 0x8, close_payload(1000, b"")));
    assert!(c.is_closed(), "no echo may follow the close reply");
}

/// (name, bytes sent after the handshake, expected close code)
fn protocol_error_table() -> Vec<(&'static str, Vec<u8>, u16)> {
    let mut non_minimal16 = vec![0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4];
    non_minimal16.extend_from_slice(b"hello");
    let mut non_minimal64 = vec![0x81, 0x80 | 127];
    non_minimal64.extend_from_slice(&200u64.to_be_bytes());
    non_minimal64.extend_from_slice(&[1, 2, 3, 4]);
    let mut top_bit = vec![0x82, 0x80 | 127];
    top_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
    top_bit.extend_from_slice(&[1, 2, 3, 4]);
    let mut t = vec![
        ("unmasked frame", frame_raw(0x81, b"hi", false), 1002),
        ("rsv1", frame_raw(0x80 | 0x40 | 0x1, b"hi", true), 1002),
        ("rsv2", frame_raw(0x80 | 0x20 | 0x1, b"hi", true), 1002),
        ("rsv3", frame_raw(0x80 | 0x10 | 0x1, b"hi", true), 1002),
        ("reserved opcode 3", frame(true, 0x3, b""), 1002),
        ("reserved opcode 7", frame(true, 0x7, b""), 1002),
        ("reserved opcode 0xB", frame(true, 0xB, b""), 1002),
        ("reserved opcode 0xF", frame(true, 0xF, b""), 1002),
        ("fragmented ping", frame(false, 0x9, b"x"), 1002),
        ("fragmented close", frame(false, 0x8, &close_payload(1000, b"")), 1002),
        ("ping over 125 bytes", frame(true, 0x9, &[b'x'; 126]), 1002),
        ("continuation with no message", frame(true, 0x0, b"orphan"), 1002),
        ("new message while one is open", [frame(false, 0x1, b"a"), frame(true, 0x1, b"b")].concat(), 1002),
        ("binary while text open", [frame(false, 0x1, b"a"), frame(true, 0x2, b"b")].concat(), 1002),
        ("non-minimal 16-bit length", non_minimal16, 1002),
        ("non-minimal 64-bit length", non_minimal64, 1002),
        ("64-bit length with top bit", top_bit, 1002),
        ("close with 1-byte payload", frame(true, 0x8, &[0x03]), 1002),
        ("close reason not UTF-8", frame(true, 0x8, &close_payload(1000, &[0xff, 0xfe])), 1002),
        ("invalid UTF-8 text", frame(true, 0x1, &[b'a', 0xc3, 0x28]), 1007),
        ("invalid UTF-8 across fragments", [frame(false, 0x1, &[0xe2, 0x82]), frame(true, 0x0, &[0x28])].concat(), 1007),
        ("truncated UTF-8 at message end", frame(true, 0x1, &[b'a', 0xe2, 0x82]), 1007),
    ];
    for code in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535] {
        t.push(("invalid close code", frame(true, 0x8, &close_payload(code, b"")), 1002));
    }
    t
}

#[test]
fn every_protocol_error_gets_its_close_code() {
    let server = Server::start(&[]);
    for (name, wire, code) in protocol_error_table() {
        let mut c = raw_ws(&server);
        c.send(&wire);
        // A label in the panic message: which row failed.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expect_close(&mut c, code)));
        assert!(result.is_ok(), "case {name:?} failed");
    }
    // Other connections were not disturbed.
    let mut ws = tungstenite_client(&server, "/echo");
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still here"));
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    let server = Server::start(&[]);
    let mut c = raw_ws(&server);
    // First fragment is already invalid; the final fragment is never sent.
    c.send(&frame(false, 0x1, &[b'o', b'k', 0xff]));
    expect_close(&mut c, 1007);
}

#[test]
fn message_too_big_is_refused_from_the_header() {
    let server = Server::start(&["--max-message", "1000"]);
    let mut c = raw_ws(&server);
    // Only the header of a 2000-byte frame: the server must not wait for the payload.
    let mut hdr = vec![0x82, 0x80 | 126];
    hdr.extend_from_slice(&2000u16.to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    c.send(&hdr);
    expect_close(&mut c, 1009);
    // Across fragments too.
    let mut c = raw_ws(&server);
    c.send(&frame(false, 0x2, &[0u8; 600]));
    c.send(&frame(true, 0x0, &[0u8; 600]));
    expect_close(&mut c, 1009);
    // Exactly the limit is fine.
    let mut c = raw_ws(&server);
    c.send(&frame(true, 0x2, &[9u8; 1000]));
    assert_eq!(read_frame(&mut c), (true, 0x2, vec![9u8; 1000]));
}

// ---- handshake ----

#[test]
fn handshake_refusals() {
    let server = Server::start(&[]);
    let r = server.get("/echo");
    assert_eq!(r.status, 426, "plain GET on a WebSocket route");
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    let r = server.request(&handshake_request("/echo", "").replace("Version: 13", "Version: 8"));
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    let r = server.request(&handshake_request("/echo", "").replace(KEY, "c2hvcnQ="));
    assert_eq!(r.status, 400, "key of 5 bytes");
    let r = server.request(&handshake_request("/echo", "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""));
    assert_eq!(r.status, 400, "no key");
    let r = server.request(&handshake_request("/echo", "").replace("HTTP/1.1", "HTTP/1.0"));
    assert_eq!(r.status, 400, "HTTP/1.0");
    let r = server.request(&handshake_request("/echo", "Content-Length: 0\r\n").replace("GET", "POST"));
    assert_eq!(r.status, 405);
    // Any case in Upgrade, Connection as a token list.
    let req = handshake_request("/echo", "").replace("Upgrade: websocket", "Upgrade: WebSocket").replace("Connection: Upgrade", "Connection: keep-alive, upgrade");
    assert_eq!(server.request(&req).status, 101);
    // No subprotocol on /echo; an extension we do not speak is not answered
    // (permessage-deflate is: tests/ws_deflate.rs).
    let r = server.request(&handshake_request("/echo", "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\nSec-WebSocket-Protocol: chat\r\n"));
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-extensions"), None);
    assert_eq!(r.header("sec-websocket-protocol"), None);
}

#[test]
fn allowed_origin() {
    let server = Server::start(&["--allowed-origin", "https://good.example", "--allowed-origin", "http://localhost:8000"]);
    assert_eq!(server.request(&handshake_request("/echo", "Origin: https://evil.example\r\n")).status, 403);
    assert_eq!(server.request(&handshake_request("/echo", "Origin: https://good.example\r\n")).status, 101);
    assert_eq!(server.request(&handshake_request("/echo", "Origin: http://localhost:8000\r\n")).status, 101);
    assert_eq!(server.request(&handshake_request("/echo", "")).status, 101, "non-browser client without Origin");
    // Without --allowed-origin, any origin.
    let open = Server::start(&[]);
    assert_eq!(open.request(&handshake_request("/echo", "Origin: https://evil.example\r\n")).status, 101);
}

// ---- heartbeat, back-pressure, shutdown ----

#[test]
fn heartbeat_pings_and_drops_silent_peers() {
    let server = Server::start(&["--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3"]);
    // A peer that never answers: pinged, then dropped.
    let mut silent = raw_ws(&server);
    let (_, op, _) = read_frame(&mut silent);
    assert_eq!(op, 0x9, "expected a server ping");
    let start = Instant::now();
    assert!(silent.is_closed());
    assert!(start.elapsed() < Duration::from_secs(3));
    // A peer that answers stays.
    let mut alive = raw_ws(&server);
    for _ in 0..3 {
        let (_, op, payload) = read_frame(&mut alive);
        assert_eq!(op, 0x9);
        alive.send(&frame(true, 0xA, &payload));
    }
    alive.send(&frame(true, 0x1, b"still alive"));
    loop {
        let (_, op, payload) = read_frame(&mut alive);
        if op == 0x1 {
            assert_eq!(payload, b"still alive");
            break;
        }
        alive.send(&frame(true, 0xA, &payload));
    }
    wait_for("stats to show the dropped peer gone", || {
        let s: serde_json::Value = serde_json::from_slice(&server.get("/stats").body).unwrap();
        s["connections"]["websocket"] == 1
    });
}

#[test]
fn a_client_that_does_not_read_stops_being_read() {
    let server = Server::start(&[]);
    let c = raw_ws(&server);
    c.stream.set_nonblocking(true).unwrap();
    let msg = frame(true, 0x2, &[7u8; 16 * 1024]);
    let mut stream = &c.stream;
    let mut sent = 0usize;
    let deadline = Instant::now() + WAIT;
    // Keep sending echo requests without reading a byte. The server must stop reading us,
    // so our writes block long before 256 MiB have gone out.
    let mut blocked_since: Option<Instant> = None;
    while sent < 256 << 20 && Instant::now() < deadline {
        match stream.write(&msg) {
            Ok(n) => {
                sent += n;
                blocked_since = None;
                if n < msg.len() {
                    // Finish the frame so the stream stays well-formed.
                    let rest = &msg[n..];
                    let mut off = 0;
                    while off < rest.len() && Instant::now() < deadline {
                        match stream.write(&rest[off..]) {
                            Ok(k) => off += k,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    sent += off;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(sent < 64 << 20, "server kept reading {sent} bytes from a client that reads nothing");
    // The server is not slowed for others.
    let mut ws = tungstenite_client(&server, "/echo");
    ws.send(Message::text("others are fine")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("others are fine"));
}

#[test]
fn shutdown_sends_going_away() {
    let mut server = Server::start(&[]);
    let mut c = raw_ws(&server);
    c.send(&frame(true, 0x1, b"x"));
    assert_eq!(read_frame(&mut c), (true, 0x1, b"x".to_vec()));
    server.signal("TERM");
    expect_close(&mut c, 1001);
    let status = server.wait_exit(Duration::from_secs(8)).expect("server exits");
    assert!(status.success());
}
