//! permessage-deflate (RFC 7692) against the real server, with raw frames and `flate2`'s raw
//! DEFLATE on the client side (an implementation independent of the server's own codec): what
//! the handshake answers, compressed messages both ways on `/echo`, compressed fan-out and
//! control frames, and every misuse of RSV1 with the close code it gets.

mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::pubsub::{publish, ws_request};
use support::ws::{frame, frame_raw, read_frame_rsv, ACCEPT};
use support::*;

const CHROME: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Opens a WebSocket with `extra` headers; returns the connection and the extension answer.
fn open(server: &Server, path: &str, extra: &str) -> (Client, Option<String>) {
    let mut c = server.client();
    c.send(ws_request(path, extra).as_bytes());
    let r = c.response();
    assert_eq!(r.status, 101, "{:?}", r.text());
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT));
    let ext = r.header("sec-websocket-extensions").map(str::to_owned);
    (c, ext)
}

/// A client compressor; with context takeover unless reset between messages.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        Deflater(Compress::new(Compression::default(), false))
    }

    /// One message's compressed payload (the sync flush's 00 00 ff ff removed, §7.2.1).
    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let start = self.0.total_in();
        loop {
            out.reserve(data.len() + 1024);
            let used = (self.0.total_in() - start) as usize;
            self.0.compress_vec(&data[used..], &mut out, FlushCompress::Sync).unwrap();
            if (self.0.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflates a server message on its own (the server compresses without context takeover).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    loop {
        let used = d.total_in() as usize;
        d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync).unwrap();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// Reads one whole message: (compressed, opcode, data inflated). Asserts RSV1 is only ever on
/// a first frame.
fn read_message(c: &mut Client) -> (bool, u8, Vec<u8>) {
    let (mut fin, rsv, op, mut data) = read_frame_rsv(c);
    assert!(rsv == 0 || rsv == 0x4, "only RSV1 is ever set");
    while !fin {
        let (f, r, o, more) = read_frame_rsv(c);
        assert_eq!((r, o), (0, 0), "continuations carry no RSV1");
        data.extend(more);
        fin = f;
    }
    if rsv == 0x4 {
        assert!(op == 1 || op == 2, "RSV1 on a data frame only");
        (true, op, inflate(&data))
    } else {
        (false, op, data)
    }
}

fn close_code(c: &mut Client) -> u16 {
    loop {
        let (_, _, op, payload) = read_frame_rsv(c);
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            assert!(c.is_closed(), "TCP closed after the close frame");
            return code;
        }
    }
}

/// JSON-like text that compresses, `n` bytes.
fn json_text(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!("{{\"seq\":{i},\"price\":{}.25,\"symbol\":\"PWR\"}},", i * 7 % 1000));
        i += 1;
    }
    s.truncate(n);
    s
}

#[test]
fn the_handshake_answers_what_the_rfc_allows() {
    let server = Server::start(&[]);
    // (offer, answer)
    let table: &[(&str, Option<&str>)] = &[
        (CHROME, Some("permessage-deflate; server_no_context_takeover")),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits=12\r\n",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        ("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=15\r\n", Some("permessage-deflate; server_no_context_takeover")),
        // A smaller server window is not kept: declined, never answered wrongly.
        ("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n", None),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, permessage-deflate\r\n",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        ("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n", None),
        ("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", None),
        ("", None),
    ];
    for path in ["/echo", "/channels/hs", "/ws", "/ws/alice"] {
        for (offer, want) in table {
            let (_, got) = open(&server, path, offer);
            assert_eq!(got.as_deref(), *want, "{path} {offer:?}");
        }
    }
    let off = Server::start(&["--ws-compression", "off"]);
    assert_eq!(open(&off, "/echo", CHROME).1, None, "--ws-compression off");
}

#[test]
fn echo_round_trips_compressed_messages_at_every_size_and_fragmentation() {
    let server = Server::start(&[]);
    let (mut c, ext) = open(&server, "/echo", CHROME);
    assert!(ext.is_some());
    let mut z = Deflater::new(); // context taken over from message to message
    for n in [0, 1, 100, 255, 256, 1000, 20_000, 70_000, 300_000] {
        let text = json_text(n);
        let payload = z.message(text.as_bytes());
        // Whole, then cut into up to four frames with RSV1 on the first only.
        for pieces in [1, 2, 4] {
            let payload = if pieces == 1 { payload.clone() } else { z.message(text.as_bytes()) };
            let step = payload.len().div_ceil(pieces).max(1);
            let chunks: Vec<&[u8]> = if payload.is_empty() { vec![&[]] } else { payload.chunks(step).collect() };
            for (i, chunk) in chunks.iter().enumerate() {
                let fin = if i + 1 == chunks.len() { 0x80 } else { 0 };
                let first = if i == 0 { 0x40 | 0x1 } else { 0 };
                c.send(&frame_raw(fin | first, chunk, true));
            }
            let (compressed, op, data) = read_message(&mut c);
            assert_eq!(op, 1);
            assert_eq!(data, text.as_bytes(), "{n} bytes in {pieces} frames");
            assert_eq!(compressed, n >= 256, "{n} bytes: compressed from --ws-compression-min (256) up");
        }
    }
    // Uncompressed messages still work on a compressing connection; binary too.
    let bin: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    c.send(&frame(true, 0x2, &bin));
    assert_eq!(read_message(&mut c), (true, 2, bin.clone()));
    c.send(&frame_raw(0x80 | 0x40 | 0x2, &z.message(&bin), true));
    assert_eq!(read_message(&mut c), (true, 2, bin));
}

#[test]
fn a_client_without_context_takeover_and_a_threshold_of_zero() {
    let server = Server::start(&["--ws-compression-min", "0"]);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";
    let (mut c, _) = open(&server, "/echo", offer);
    for text in ["", "a", "hello hello hello"] {
        let mut z = Deflater::new(); // a fresh context per message
        c.send(&frame_raw(0x80 | 0x40 | 0x1, &z.message(text.as_bytes()), true));
        assert_eq!(read_message(&mut c), (true, 1, text.as_bytes().to_vec()), "{text:?}");
    }
}

#[test]
fn misuse_of_rsv1_and_bad_compressed_data_get_their_close_codes() {
    let server = Server::start(&["--max-message", "65536"]);
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("RSV1 without the extension", "", frame_raw(0x80 | 0x40 | 0x1, &Deflater::new().message(b"hi"), true), 1002),
        ("RSV1 on a ping", CHROME, frame_raw(0x80 | 0x40 | 0x9, b"", true), 1002),
        (
            "RSV1 on a continuation",
            CHROME,
            [frame_raw(0x40 | 0x1, b"", true), frame_raw(0x80 | 0x40, &Deflater::new().message(b"hi"), true)].concat(),
            1002,
        ),
        ("RSV2 with the extension", CHROME, frame_raw(0x80 | 0x20 | 0x1, b"hi", true), 1002),
        ("not DEFLATE data", CHROME, frame_raw(0x80 | 0x40 | 0x2, &[0xff, 0xff, 0xff, 0xff], true), 1007),
        ("text that is not UTF-8 once inflated", CHROME, frame_raw(0x80 | 0x40 | 0x1, &Deflater::new().message(&[b'a', 0xff]), true), 1007),
        // 16 MiB of zeros is 16 KiB on the wire, under the cap; inflated it is 256 times it.
        ("a decompression bomb", CHROME, frame_raw(0x80 | 0x40 | 0x2, &Deflater::new().message(&vec![0; 16 << 20]), true), 1009),
    ];
    for (name, offer, bytes, code) in cases {
        let (mut c, _) = open(&server, "/echo", offer);
        c.send(&bytes);
        assert_eq!(close_code(&mut c), code, "{name}");
    }
    // The server is unharmed and compresses for the next client.
    let (mut c, _) = open(&server, "/echo", CHROME);
    let text = json_text(4000);
    c.send(&frame(true, 0x1, text.as_bytes()));
    assert_eq!(read_message(&mut c), (true, 1, text.into_bytes()));
}

#[test]
fn fan_out_is_compressed_for_those_that_negotiated_it_and_plain_for_the_rest() {
    let server = Server::start(&[]);
    let (mut z1, _) = open(&server, "/channels/news", CHROME);
    let (mut z2, _) = open(&server, "/channels/news", "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n");
    let (mut plain, _) = open(&server, "/channels/news", "");
    let (mut control, _) = open(&server, "/ws", CHROME);
    control.send(&frame(true, 0x1, br#"{"op":"subscribe","channel":"news"}"#));
    let (_, _, ack) = read_message(&mut control);
    assert!(String::from_utf8_lossy(&ack).contains(r#""ok":"subscribe""#), "{}", String::from_utf8_lossy(&ack));
    let big = json_text(3000);
    let (id, n) = publish(&server, "news", &big);
    assert_eq!(n, 4);
    assert_eq!(read_message(&mut z1), (true, 1, big.clone().into_bytes()));
    assert_eq!(read_message(&mut z2), (true, 1, big.clone().into_bytes()));
    assert_eq!(read_message(&mut plain), (false, 1, big.clone().into_bytes()));
    let (compressed, _, env) = read_message(&mut control);
    let env: serde_json::Value = serde_json::from_slice(&env).unwrap();
    assert!(compressed, "the control envelope is compressed too");
    assert_eq!((env["data"].as_str(), env["id"].as_str()), (Some(big.as_str()), Some(id.to_string().as_str())));
    // Small messages go as they are, to everyone.
    publish(&server, "news", "tick");
    for c in [&mut z1, &mut z2, &mut plain] {
        assert_eq!(read_message(c), (false, 1, b"tick".to_vec()));
    }
    // Replay (?since=) brings the compressed frame for a compressing subscriber.
    let (mut late, _) = open(&server, &format!("/channels/news?since={}", id - 1), CHROME);
    assert_eq!(read_message(&mut late), (true, 1, big.into_bytes()));
    assert_eq!(read_message(&mut late), (false, 1, b"tick".to_vec()));
}
