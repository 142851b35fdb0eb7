//! Integration tests of the HTTP/1.1 core (issue 2): the real binary on an ephemeral port,
//! spoken to over raw TCP on 127.0.0.1.
//!
//! Sections: framing and pipelining · persistence · request bodies · Expect: 100-continue ·
//! limits · timeouts · errors and routing · HEAD · built-in routes · static files ·
//! graceful shutdown · command line.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What every response must carry: `Date` as an IMF-fixdate close to now (RFC 9110 §6.6.1)
/// and `Server: pushwire/VERSION` (issue 2, PROTOCOL.md "Every response").
fn check_common(r: &Response) {
    let server = r.header("server").unwrap_or_else(|| panic!("no Server header in {r:?}"));
    assert!(server.starts_with("pushwire/"), "Server: {server:?}");
    let date = r.header("date").unwrap_or_else(|| panic!("no Date header in {r:?}"));
    let t = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("Date {date:?} is not an HTTP date: {e}"));
    let skew = SystemTime::now().duration_since(t).unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(60), "Date {date:?} is far from now");
}

/// Reads one response (not to a HEAD) and checks the headers every response has.
fn recv(c: &mut Client) -> Response {
    let r = c.response();
    check_common(&r);
    r
}

/// Reads the response to a HEAD request (no body bytes follow the head).
fn recv_head(c: &mut Client) -> Response {
    let r = c.response_to(true);
    check_common(&r);
    r
}

/// `GET path` on an existing keep-alive connection.
fn get_on(c: &mut Client, path: &str) -> Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    recv(c)
}

/// One request on a fresh connection; returns the connection too, to check what follows.
fn fresh(server: &Server, raw: &[u8]) -> (Client, Response) {
    let mut c = server.client();
    c.send(raw);
    let r = recv(&mut c);
    (c, r)
}

fn is_close(r: &Response) -> bool {
    r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// An error response: the status, a short `text/plain` body whose length is the
/// Content-Length (issue 2: "Every error response has a short text body and a correct
/// Content-Length").
fn assert_error(r: &Response, status: u16) {
    assert_eq!(r.status, status, "status; body {:?}", r.text());
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "{status}: Content-Type {ct:?}");
    assert!(!r.body.is_empty() && r.body.len() <= 200, "{status}: body {:?}", r.text());
    assert!(std::str::from_utf8(&r.body).is_ok(), "{status}: body is not text");
    let len = r.body.len().to_string();
    assert_eq!(r.header("content-length"), Some(len.as_str()), "{status}: Content-Length");
}

/// A request error (400, 408, 413, 431, 501, 505): the error response says
/// `Connection: close`, then the server closes without sending another byte.
fn expect_error_close(c: &mut Client, status: u16) -> Response {
    let r = recv(c);
    assert_error(&r, status);
    assert!(is_close(&r), "{status} without Connection: close: {:?}", r.headers);
    assert!(c.is_closed(), "connection still open (or more bytes sent) after {status}");
    r
}

/// Sends `raw` on a fresh connection and expects `status` and a close.
fn error_on_fresh(server: &Server, raw: &[u8], status: u16) -> Response {
    let mut c = server.client();
    c.send(raw);
    expect_error_close(&mut c, status)
}

fn assert_ok_healthz(r: &Response) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok\n");
    assert_eq!(r.header("content-length"), Some("3"));
}

/// The exact request `stats` sends, so its length can be subtracted from `bytes_in`.
const STATS_REQ: &str = "GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

fn stats(server: &Server) -> serde_json::Value {
    let (_c, r) = fresh(server, STATS_REQ.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {}", r.text()))
}

fn bytes_in(v: &serde_json::Value) -> u64 {
    v["bytes_in"].as_u64().expect("bytes_in")
}

/// Waits until the server has read `n` bytes more than the `before` snapshot showed (the
/// /stats requests made while waiting are subtracted). Used to know that a partial request
/// has reached the server before the test acts on it.
fn wait_server_read(server: &Server, before: &serde_json::Value, n: usize) {
    let base = bytes_in(before);
    let mut polls = 0u64;
    wait_for("the server to read the bytes sent", || {
        polls += 1;
        bytes_in(&stats(server)) >= base + n as u64 + polls * STATS_REQ.len() as u64
    });
}

/// A request head of exactly `total` bytes (request line, Host, one padding header).
fn head_of_len(path: &str, total: usize) -> String {
    let skeleton = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n");
    assert!(total >= skeleton.len());
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "a".repeat(total - skeleton.len()))
}

/// A request with `Host` plus `extra` more headers.
fn head_with_headers(extra: usize) -> String {
    let mut s = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..extra {
        s.push_str(&format!("X-H{i}: v\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// Bytes that are not periodic at any power of two, so a misplaced piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

fn assert_same_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("bytes differ first at offset {i}");
    }
}

/// Asserts that `elapsed` lies in [lo, hi] seconds.
fn assert_between(what: &str, elapsed: Duration, lo: f64, hi: f64) {
    let s = elapsed.as_secs_f64();
    assert!(s >= lo && s <= hi, "{what}: took {s:.2}s, expected between {lo}s and {hi}s");
}

// ---------------------------------------------------------------------------------------------
// Framing and pipelining (RFC 9112 §2, §9.3.2)
// ---------------------------------------------------------------------------------------------

/// Issue 2: "a request split across many reads works" — every byte in its own segment.
#[test]
fn request_sent_one_byte_at_a_time() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send_bytewise(b"GET /healthz HTTP/1.1\r\nHost: t\r\nUser-Agent: bytewise\r\n\r\n");
    assert_ok_healthz(&recv(&mut c));
    // A request with a body, also byte by byte, on the same connection.
    c.send_bytewise(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let r = recv(&mut c);
    assert_error(&r, 405);
    assert!(!is_close(&r));
    // The body was consumed: the next request is parsed from its first byte.
    c.send_bytewise(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = recv(&mut c);
    assert_ok_healthz(&r);
    assert!(is_close(&r));
    assert!(c.is_closed());
}

/// RFC 9112 §9.3.2: pipelined requests are answered in the order received. The POST's body
/// (which looks like a request) must be consumed as a body, not parsed as a request.
#[test]
fn pipelined_requests_in_one_write_answered_in_order() {
    let server = Server::start(&[]);
    let smuggled = "GET /nope HTTP/1.1\r\n\r\n";
    let raw = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{smuggled}\
         GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
         HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
         GET / HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    let mut c = server.client();
    c.send(raw.as_bytes());
    assert_ok_healthz(&recv(&mut c));
    let r = recv(&mut c);
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = recv(&mut c);
    assert_error(&r, 404);
    let r = recv_head(&mut c);
    assert_eq!((r.status, r.header("content-length")), (200, Some("3")));
    let r = recv(&mut c);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    let r = recv(&mut c);
    assert_ok_healthz(&r);
    assert!(is_close(&r));
    assert!(c.is_closed(), "bytes after the last response");
}

/// More pipelined requests than the server handles per wake-up (64): all answered, in order.
#[test]
fn many_pipelined_requests_answered_in_order() {
    let server = Server::start(&[]);
    let n = 200;
    let mut raw = String::new();
    for i in 0..n {
        let path = if i % 3 == 0 { "/nope" } else { "/healthz" };
        let close = if i == n - 1 { "Connection: close\r\n" } else { "" };
        raw.push_str(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n"));
    }
    let mut c = server.client();
    c.send(raw.as_bytes());
    for i in 0..n {
        let r = recv(&mut c);
        let want = if i % 3 == 0 { 404 } else { 200 };
        assert_eq!(r.status, want, "response {i}");
    }
    assert!(c.is_closed());
}

/// A second pipelined request whose head is split across writes: the first is answered
/// at once, the second when it completes.
#[test]
fn pipelined_request_split_across_writes() {
    let server = Server::start(&[]);
    let second = b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut c = server.client();
    let mut first = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    first.extend_from_slice(&second[..10]);
    c.send(&first);
    assert_ok_healthz(&recv(&mut c));
    c.send(&second[10..]);
    assert_error(&recv(&mut c), 404);
}

// ---------------------------------------------------------------------------------------------
// Persistence (RFC 9112 §9.3)
// ---------------------------------------------------------------------------------------------

/// HTTP/1.1 persists by default: two requests on one connection, no `Connection: close`.
#[test]
fn http11_keeps_the_connection_open() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for _ in 0..2 {
        let r = get_on(&mut c, "/healthz");
        assert_ok_healthz(&r);
        assert!(!is_close(&r), "{:?}", r.headers);
    }
}

/// `Connection: close` (any case) is honoured: the response says so and the socket closes.
#[test]
fn connection_close_is_honoured() {
    let server = Server::start(&[]);
    for value in ["close", "Close", "keep-alive, close"] {
        let raw = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: {value}\r\n\r\n");
        let (mut c, r) = fresh(&server, raw.as_bytes());
        assert_ok_healthz(&r);
        assert!(is_close(&r), "Connection: {value} → {:?}", r.headers);
        assert!(c.is_closed(), "Connection: {value}: socket not closed");
    }
    // RFC 9112 §9.6: after the response to a request with "close", the server "MUST NOT
    // process any further requests received on that connection" (even pipelined ones).
    let (mut c, r) = fresh(
        &server,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_ok_healthz(&r);
    assert!(c.is_closed(), "a request after Connection: close was answered");
}

/// HTTP/1.0 closes unless the client asks for keep-alive.
#[test]
fn http10_without_keep_alive_closes() {
    let server = Server::start(&[]);
    let (mut c, r) = fresh(&server, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_ok_healthz(&r);
    assert!(is_close(&r), "{:?}", r.headers);
    assert!(c.is_closed());
}

/// HTTP/1.0 with `Connection: keep-alive` persists, and the response must say so (RFC 9112 §9.3).
#[test]
fn http10_with_keep_alive_stays_open() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for _ in 0..2 {
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = recv(&mut c);
        assert_ok_healthz(&r);
        assert_eq!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"));
    }
    // Without the token the third one closes.
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let r = recv(&mut c);
    assert!(is_close(&r));
    assert!(c.is_closed());
}

// ---------------------------------------------------------------------------------------------
// Request bodies (RFC 9112 §6, §7)
// ---------------------------------------------------------------------------------------------

/// Chunked body with extensions (RFC 9112 §7.1.1) and trailers (§7.1.2), uppercase hex and
/// data that looks like a request; the pipelined request behind it is answered correctly.
#[test]
fn chunked_body_with_extensions_and_trailers() {
    let server = Server::start(&[]);
    let data = "GET / HTTP/1.1\r\n\r\n"; // 18 bytes = 0x12
    let raw = format!(
        "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;name=value\r\nhello\r\n\
         6;a;b=\"q;x\"\r\n world\r\n\
         12\r\n{data}\r\n\
         A\r\n0123456789\r\n\
         0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    let mut c = server.client();
    c.send(raw.as_bytes());
    let r = recv(&mut c);
    assert_error(&r, 405);
    assert!(!is_close(&r));
    assert_ok_healthz(&recv(&mut c));
    // And the same body again, one byte at a time.
    c.send_bytewise(raw.as_bytes());
    assert_error(&recv(&mut c), 405);
    assert_ok_healthz(&recv(&mut c));
}

/// A malformed chunked body → 400 and close (RFC 9112 §7.1).
#[test]
fn invalid_chunked_body_is_400() {
    let server = Server::start(&[]);
    let bodies: &[&str] = &[
        "zz\r\nhello\r\n0\r\n\r\n",    // size is not hex
        "5\r\nhelloXX0\r\n\r\n",       // no CRLF after the chunk data
        "\r\n0\r\n\r\n",               // empty size line
        "-1\r\nx\r\n0\r\n\r\n",        // negative size
        "5\r\nhello\r\n0\r\n\n",       // final line not CRLF
    ];
    for body in bodies {
        let raw = format!("POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let r = error_on_fresh(&server, raw.as_bytes(), 400);
        assert!(!r.text().is_empty(), "{body:?}");
    }
}

/// RFC 9112 §6.3: both Content-Length and Transfer-Encoding → 400 and close (in either order).
#[test]
fn content_length_with_transfer_encoding_is_400() {
    let server = Server::start(&[]);
    for headers in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let raw = format!("POST /healthz HTTP/1.1\r\nHost: t\r\n{headers}\r\n0\r\n\r\n");
        error_on_fresh(&server, raw.as_bytes(), 400);
    }
}

/// RFC 9112 §6.3 item 5: an invalid (or conflicting) Content-Length → 400 and close.
#[test]
fn invalid_content_length_is_400() {
    let server = Server::start(&[]);
    for cl in [
        "Content-Length: abc\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 1x\r\n",
        "Content-Length: 0x10\r\n",
        "Content-Length: \r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ] {
        let raw = format!("POST /healthz HTTP/1.1\r\nHost: t\r\n{cl}\r\nhello");
        error_on_fresh(&server, raw.as_bytes(), 400);
    }
}

/// RFC 9112 §6.1: a transfer coding the server does not understand → 501 (and close: the
/// body's length is unknown).
#[test]
fn transfer_encoding_gzip_is_501() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxxxx", 501);
}

/// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing → 400, close.
#[test]
fn transfer_encoding_in_http10_is_400() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

// ---------------------------------------------------------------------------------------------
// Expect: 100-continue (RFC 9110 §10.1.1)
// ---------------------------------------------------------------------------------------------

/// The client sends the head alone and gets `100 Continue` before it sends the body; then
/// the final response, and the connection carries on.
#[test]
fn expect_100_continue_with_content_length() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_until(b"\r\n\r\n"), b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    let r = recv(&mut c);
    assert_error(&r, 405);
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

#[test]
fn expect_100_continue_with_chunked_body() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 100);
    c.send(b"3\r\nabc\r\n0\r\n\r\n");
    assert_error(&recv(&mut c), 405);
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// RFC 9110 §10.1.1: a server may answer with the final status instead of 100; a body the
/// head already announces as too large gets 413 straight away, never 100.
#[test]
fn expect_100_continue_not_sent_for_a_body_over_the_limit() {
    let server = Server::start(&["--max-body", "1000"]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    expect_error_close(&mut c, 413);
}

/// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
/// request MUST ignore that expectation." The first response must be the final one.
#[test]
fn expect_100_continue_ignored_for_http10() {
    let server = Server::start(&[]);
    let before = stats(&server);
    let head = b"POST /healthz HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let mut c = server.client();
    c.send(head);
    // Make sure the head was read on its own (so the server had the chance to send 100).
    wait_server_read(&server, &before, head.len());
    c.send(b"hello");
    let r = c.response();
    assert_eq!(r.status, 405, "HTTP/1.0 request got {} first (a 100 Continue must not be sent)", r.status);
    check_common(&r);
}

// ---------------------------------------------------------------------------------------------
// Limits (issue 2: each configurable, each with its status)
// ---------------------------------------------------------------------------------------------

/// A head over 16 KiB → 431 and close, whether or not it is terminated; exactly 16 KiB passes.
#[test]
fn head_over_16_kib_is_431() {
    let server = Server::start(&[]);
    let (_, r) = fresh(&server, head_of_len("/healthz", 16384).as_bytes());
    assert_ok_healthz(&r);
    error_on_fresh(&server, head_of_len("/healthz", 16385).as_bytes(), 431);
    // A head that never ends: 20 KB without a blank line.
    let unterminated = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: {}", "a".repeat(20_000));
    error_on_fresh(&server, unterminated.as_bytes(), 431);
}

/// More than 100 headers → 431 and close; exactly 100 pass.
#[test]
fn more_than_100_headers_is_431() {
    let server = Server::start(&[]);
    let (_, r) = fresh(&server, head_with_headers(99).as_bytes()); // Host + 99 = 100
    assert_ok_healthz(&r);
    error_on_fresh(&server, head_with_headers(100).as_bytes(), 431); // 101
}

/// `--max-head-bytes` and `--max-headers` move the 431 limits.
#[test]
fn head_limits_are_configurable() {
    let server = Server::start(&["--max-head-bytes", "300", "--max-headers", "5"]);
    let (_, r) = fresh(&server, head_of_len("/healthz", 300).as_bytes());
    assert_ok_healthz(&r);
    error_on_fresh(&server, head_of_len("/healthz", 301).as_bytes(), 431);
    let (_, r) = fresh(&server, head_with_headers(4).as_bytes());
    assert_ok_healthz(&r);
    error_on_fresh(&server, head_with_headers(5).as_bytes(), 431);
}

/// A Content-Length over 1 MiB → 413 and close. The client keeps sending part of the body
/// before and after it reads the answer; the server lingers (shuts down its side, reads and
/// discards) instead of closing with unread input, which would reset the connection and
/// could destroy the 413 or fail the client's upload.
#[test]
fn body_over_1_mib_is_413_and_readable_while_client_sends() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n");
    let piece = vec![b'x'; 16 * 1024];
    for _ in 0..16 {
        c.send(&piece); // 256 KiB of the announced 2 MiB
    }
    let r = recv(&mut c);
    assert_error(&r, 413);
    assert!(is_close(&r));
    // The client has not noticed yet and sends more; the lingering server swallows it.
    for i in 0..16 {
        if let Err(e) = c.stream.write_all(&piece) {
            panic!("sending body piece {i} after the 413 failed (the server did not linger): {e}");
        }
    }
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    // An orderly end: EOF, not a reset, and no bytes after the 413.
    let mut rest = Vec::new();
    match c.stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty() && c.buffered().is_empty(), "bytes after the 413"),
        Err(e) => panic!("connection ended with {e} instead of EOF after the 413"),
    }
    // The server is fine afterwards.
    assert_ok_healthz(&server.get("/healthz"));
}

/// A body of exactly 1 MiB is accepted (read whole; the route then answers 405).
#[test]
fn body_of_exactly_1_mib_is_accepted() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    c.send(&pattern(1 << 20));
    let r = recv(&mut c);
    assert_error(&r, 405);
    assert!(!is_close(&r));
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// `--max-body` moves the 413 limit: 1000 bytes pass, 1001 do not.
#[test]
fn max_body_is_configurable() {
    let server = Server::start(&["--max-body", "1000"]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
    c.send(&[b'y'; 1000]);
    assert_error(&recv(&mut c), 405);
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
    let mut raw = b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".to_vec();
    raw.extend_from_slice(&[b'y'; 1001]);
    error_on_fresh(&server, &raw, 413);
}

/// A chunked body over the limit → 413 and close: a single oversized chunk, and chunks that
/// only add up to too much. Chunks adding up to exactly the limit pass.
#[test]
fn chunked_body_over_the_limit_is_413() {
    let server = Server::start(&["--max-body", "1000"]);
    let head = "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = |n: usize| format!("{n:x}\r\n{}\r\n", "z".repeat(n));
    let exact = format!("{head}{}{}0\r\n\r\n", chunk(600), chunk(400));
    let (mut c, r) = fresh(&server, exact.as_bytes());
    assert_error(&r, 405);
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
    let one_big = format!("{head}{}0\r\n\r\n", chunk(1001));
    error_on_fresh(&server, one_big.as_bytes(), 413);
    let adds_up = format!("{head}{}{}{}0\r\n\r\n", chunk(600), chunk(400), chunk(1));
    error_on_fresh(&server, adds_up.as_bytes(), 413);
}

/// The default limit (1 MiB) applies to chunked bodies too.
#[test]
fn chunked_body_over_1_mib_is_413() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = format!("10000\r\n{}\r\n", "q".repeat(0x10000)); // 64 KiB chunks
    for _ in 0..17 {
        c.send(piece.as_bytes()); // 17 × 64 KiB = 1 MiB + 64 KiB
    }
    expect_error_close(&mut c, 413);
}

// ---------------------------------------------------------------------------------------------
// Timeouts (issue 2: slowloris → 408 and close; idle keep-alive closes silently)
// ---------------------------------------------------------------------------------------------

/// A connection that sends part of a head and stops gets 408 and is closed.
#[test]
fn partial_head_gets_408() {
    let server = Server::start(&["--header-timeout", "0.5"]);
    let start = Instant::now();
    let mut c = server.client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    expect_error_close(&mut c, 408);
    assert_between("408 after a partial head", start.elapsed(), 0.4, 3.0);
}

/// A connection that sends nothing at all also gets 408 (the clock runs from connecting).
#[test]
fn silent_connection_gets_408() {
    let server = Server::start(&["--header-timeout", "0.5"]);
    let start = Instant::now();
    let mut c = server.client();
    expect_error_close(&mut c, 408);
    assert_between("408 on a silent connection", start.elapsed(), 0.4, 3.0);
}

/// The header timeout also applies to a later request on a keep-alive connection, counted
/// from that head's first byte.
#[test]
fn partial_second_head_gets_408() {
    let server = Server::start(&["--header-timeout", "0.5"]);
    let mut c = server.client();
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
    let start = Instant::now();
    c.send(b"GET /healthz HT");
    expect_error_close(&mut c, 408);
    assert_between("408 for a partial second head", start.elapsed(), 0.4, 3.0);
}

/// An idle keep-alive connection (between requests) is closed without a word.
#[test]
fn idle_keepalive_connection_closes_silently() {
    let server = Server::start(&["--keepalive-timeout", "0.5"]);
    let mut c = server.client();
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
    let start = Instant::now();
    assert!(c.is_closed(), "bytes were sent on an idle connection: {:?}", String::from_utf8_lossy(c.buffered()));
    assert_between("idle close", start.elapsed(), 0.4, 3.0);
}

/// A body that stops arriving gets 408 and close after `--body-timeout`.
#[test]
fn stalled_body_gets_408() {
    let server = Server::start(&["--body-timeout", "0.5"]);
    let start = Instant::now();
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    expect_error_close(&mut c, 408);
    assert_between("408 for a stalled body", start.elapsed(), 0.4, 3.0);
}

// ---------------------------------------------------------------------------------------------
// Errors and routing (RFC 9112 §3, RFC 9110 §15)
// ---------------------------------------------------------------------------------------------

/// A malformed request line or header line → 400 and close.
#[test]
fn malformed_request_is_400() {
    let server = Server::start(&[]);
    let bad: &[&[u8]] = &[
        b"\x01\x02 / HTTP/1.1\r\nHost: t\r\n\r\n",             // control bytes as the method
        b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",                  // '(' is not a token character
        b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n", // header line without a colon
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",                 // RFC 9112 §5.1: space before the colon MUST be 400
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", // obs-fold (RFC 9112 §5.2)
    ];
    for raw in bad {
        let mut c = server.client();
        c.send(raw);
        let r = recv(&mut c);
        assert_eq!(r.status, 400, "{:?} → {} {:?}", String::from_utf8_lossy(raw), r.status, r.text());
        assert_error(&r, 400);
        assert!(is_close(&r));
        assert!(c.is_closed());
    }
}

/// Only HTTP/1.x is spoken: another major version → 505 and close.
#[test]
fn http2_request_line_is_505() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
}

/// RFC 9112 §3.2: an HTTP/1.1 request without Host → 400 (HTTP/1.0 needs none).
#[test]
fn http11_without_host_is_400() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"GET /healthz HTTP/1.1\r\n\r\n", 400);
    let (_, r) = fresh(&server, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_ok_healthz(&r);
}

/// RFC 9112 §3.2: a server MUST answer 400 to a request "that contains more than one Host
/// header field line".
#[test]
fn two_host_headers_is_400() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

/// Unknown path → 404 with a text body and a correct Content-Length; the connection stays
/// usable (no stray bytes after the body).
#[test]
fn unknown_path_is_404() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let r = get_on(&mut c, "/no/such/thing");
    assert_error(&r, 404);
    assert!(!is_close(&r));
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// Known path, wrong method → 405 with `Allow` (RFC 9110 §15.5.6: MUST send Allow).
#[test]
fn wrong_method_is_405_with_allow() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for (method, path) in [("DELETE", "/healthz"), ("PUT", "/"), ("POST", "/stats"), ("PATCH", "/healthz")] {
        c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes());
        let r = recv(&mut c);
        assert_error(&r, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{method} {path}");
        assert!(!is_close(&r));
    }
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// OPTIONS on a known path → 204 with Allow; 204 carries no Content-Length (RFC 9110 §8.6).
#[test]
fn options_is_204_with_allow() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for path in ["/healthz", "/", "/stats"] {
        c.send(format!("OPTIONS {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = recv(&mut c);
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{path}");
        assert_eq!(r.header("content-length"), None, "{path}");
        assert!(r.body.is_empty());
    }
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests".
#[test]
fn absolute_form_target_is_accepted() {
    let server = Server::start(&[]);
    let (_, r) = fresh(&server, b"GET http://t/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200, "absolute-form target got {} {:?}", r.status, r.text());
    assert_ok_healthz(&r);
}

// ---------------------------------------------------------------------------------------------
// HEAD (RFC 9110 §9.3.2: same headers as GET, no content)
// ---------------------------------------------------------------------------------------------

#[test]
fn head_is_get_without_a_body() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for path in ["/", "/healthz", "/no/such/thing"] {
        let get = get_on(&mut c, path);
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = recv_head(&mut c);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(head.header("content-length"), Some(get.body.len().to_string().as_str()), "{path}");
        assert_eq!(head.header("content-type"), get.header("content-type"), "{path}");
        // If the HEAD response had carried body bytes, this response would not parse.
        assert_ok_healthz(&get_on(&mut c, "/healthz"));
    }
}

// ---------------------------------------------------------------------------------------------
// Date, Server and error bodies on every response
// ---------------------------------------------------------------------------------------------

/// One request per status the server can send; each response has Date and Server (checked
/// in `recv`), and every error has a short text body whose length is its Content-Length.
#[test]
fn every_response_has_date_server_and_error_text() {
    let dir = TempDir::new("every");
    dir.write("f.txt", b"file\n");
    let www = dir.path.to_str().unwrap();
    let server = Server::start(&["--static", www, "--header-timeout", "1", "--max-body", "100"]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /f.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /f.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n".to_vec(), 304),
        (b"OPTIONS /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 204),
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 404),
        (b"DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t".to_vec(), 408),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n".to_vec(), 413),
        (head_with_headers(100).into_bytes(), 431),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n".to_vec(), 501),
        (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n".to_vec(), 505),
    ];
    for (raw, status) in cases {
        let (_c, r) = fresh(&server, &raw);
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&raw));
        if status >= 400 {
            assert_error(&r, status);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Built-in routes
// ---------------------------------------------------------------------------------------------

#[test]
fn index_page_is_html() {
    let server = Server::start(&[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"), "{:?}", r.headers);
    let html = r.text();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"), "{}", &html[..html.len().min(80)]);
    assert!(html.contains("pushwire"));
}

#[test]
fn healthz_is_200_ok() {
    let server = Server::start(&[]);
    let r = server.get("/healthz");
    assert_ok_healthz(&r);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"));
}

/// `/stats`: JSON with open connections by kind, requests, bytes in/out, uptime.
#[test]
fn stats_is_json_with_counters() {
    let server = Server::start(&[]);
    let a = stats(&server);
    for kind in ["http", "websocket", "sse", "longpoll", "total"] {
        assert!(a["connections"][kind].is_u64(), "connections.{kind} in {a}");
    }
    for key in ["requests", "bytes_in", "bytes_out", "uptime_secs"] {
        assert!(a[key].is_u64(), "{key} in {a}");
    }
    let b = stats(&server);
    assert_eq!(b["requests"].as_u64().unwrap(), a["requests"].as_u64().unwrap() + 1, "{a} then {b}");
    assert!(bytes_in(&b) >= bytes_in(&a) + STATS_REQ.len() as u64, "{a} then {b}");
    assert!(b["bytes_out"].as_u64().unwrap() > a["bytes_out"].as_u64().unwrap(), "{a} then {b}");

    // Open connections are counted by kind; the /stats connection itself is one of them.
    let conns = |v: &serde_json::Value, k: &str| v["connections"][k].as_u64().unwrap();
    wait_for("only the /stats connection open", || conns(&stats(&server), "http") == 1);
    let idle: Vec<Client> = (0..3).map(|_| server.client()).collect();
    wait_for("three more http connections", || {
        let s = stats(&server);
        conns(&s, "http") == 4 && conns(&s, "total") == 4
    });
    let s = stats(&server);
    for kind in ["websocket", "sse", "longpoll"] {
        assert_eq!(conns(&s, kind), 0, "{kind} in {s}");
    }
    drop(idle);
    wait_for("the idle connections to be counted as closed", || conns(&stats(&server), "total") == 1);
}

// ---------------------------------------------------------------------------------------------
// Static files (--static DIR)
// ---------------------------------------------------------------------------------------------

const SECRET: &[u8] = b"TOP SECRET: outside the static folder\n";
const INDEX: &[u8] = b"<!doctype html><title>static index</title>\n";
const JS: &[u8] = b"console.log('hello from file.js');\n";
const SUB_INDEX: &[u8] = b"<p>sub index</p>\n";

/// A temp folder `base` with `base/secret` (outside) and `base/www` (served):
/// index.html, file.js, sub/index.html, "hello world.txt", a/b.txt, and symlinks
/// `link-out` → ../secret, `dir-out` → .., `link-in.js` → file.js.
struct Site {
    base: TempDir,
    www: PathBuf,
}

impl Site {
    fn new(tag: &str) -> Site {
        let base = TempDir::new(tag);
        base.write("secret", SECRET);
        base.write("www/index.html", INDEX);
        base.write("www/file.js", JS);
        base.write("www/sub/index.html", SUB_INDEX);
        base.write("www/hello world.txt", b"hello world\n");
        base.write("www/a/b.txt", b"b\n");
        let www = base.path.join("www");
        std::os::unix::fs::symlink(base.path.join("secret"), www.join("link-out")).unwrap();
        std::os::unix::fs::symlink(&base.path, www.join("dir-out")).unwrap();
        std::os::unix::fs::symlink(www.join("file.js"), www.join("link-in.js")).unwrap();
        Site { base, www }
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["--static", self.www.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        self.base.write(&format!("www/{rel}"), bytes)
    }
}

/// Content-Type by extension; a query string does not change which file is served.
#[test]
fn static_file_with_content_type() {
    let site = Site::new("ctype");
    let server = site.serve(&[]);
    let mut c = server.client();
    for path in ["/file.js", "/file.js?v=3"] {
        let r = get_on(&mut c, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, JS, "{path}");
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.contains("javascript"), "{path}: Content-Type {ct:?}");
    }
    let r = get_on(&mut c, "/hello%20world.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "hello world\n"));
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"));
    let r = get_on(&mut c, "/missing.txt");
    assert_error(&r, 404);
}

/// `/` → DIR/index.html when present (over the built-in page); a folder → its index.html.
#[test]
fn static_index_files() {
    let site = Site::new("index");
    let server = site.serve(&[]);
    let mut c = server.client();
    let r = get_on(&mut c, "/");
    assert_eq!((r.status, &r.body[..]), (200, INDEX));
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    let r = get_on(&mut c, "/sub/");
    assert_eq!((r.status, &r.body[..]), (200, SUB_INDEX));
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    // A folder without index.html is a 404, not a listing.
    let r = get_on(&mut c, "/a/");
    assert_error(&r, 404);
}

/// Without DIR/index.html, `/` is still the built-in page.
#[test]
fn static_dir_without_index_keeps_builtin_page() {
    let dir = TempDir::new("noindex");
    dir.write("x.txt", b"x");
    let server = Server::start(&["--static", dir.path.to_str().unwrap()]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    assert!(r.text().contains("pushwire"));
}

/// ETag and Last-Modified on files; If-None-Match / If-Modified-Since with the current
/// validator → 304 (RFC 9110 §13.1.2, §13.1.3), and If-None-Match wins over
/// If-Modified-Since (§13.2.2).
#[test]
fn static_validators_give_304() {
    let site = Site::new("etag");
    let server = site.serve(&[]);
    let mut c = server.client();
    let r = get_on(&mut c, "/file.js");
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("ETag").to_string();
    let lm = r.header("last-modified").expect("Last-Modified").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "ETag {etag:?}");
    httpdate::parse_http_date(&lm).unwrap_or_else(|e| panic!("Last-Modified {lm:?}: {e}"));

    let cond = |c: &mut Client, headers: &str| {
        c.send(format!("GET /file.js HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
        recv(c)
    };
    let r = cond(&mut c, &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());
    let r = cond(&mut c, &format!("If-None-Match: \"other\", {etag}\r\n"));
    assert_eq!(r.status, 304);
    let r = cond(&mut c, &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!(r.status, 304);
    let r = cond(&mut c, "If-None-Match: \"other\"\r\n");
    assert_eq!((r.status, &r.body[..]), (200, JS));
    let r = cond(&mut c, "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    assert_eq!((r.status, &r.body[..]), (200, JS));
    // §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    let r = cond(&mut c, &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"));
    assert_eq!((r.status, &r.body[..]), (200, JS));
    // 304s carried no body bytes: the connection is still in step.
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// A large file is streamed intact; HEAD gives its length and no body.
#[test]
fn static_large_file_and_head() {
    let site = Site::new("large");
    let data = pattern(5 << 20);
    site.write("big.bin", &data);
    let server = site.serve(&[]);
    let mut c = server.client();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.large_response_to(false);
    check_common(&r);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5242880"));
    assert_same_bytes(&r.body, &data);
    c.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = recv_head(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5242880"));
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    // No body followed the HEAD response: the next response parses from its first byte.
    let r = get_on(&mut c, "/file.js");
    assert_eq!((r.status, &r.body[..]), (200, JS));
}

/// Requests pipelined behind a streamed file wait their turn and come out in order.
#[test]
fn static_pipelined_around_a_large_file() {
    let site = Site::new("pipe");
    let data = pattern(3 << 20);
    site.write("big.bin", &data);
    let server = site.serve(&[]);
    let mut c = server.client();
    c.send(
        b"GET /file.js HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /hello%20world.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(recv(&mut c).body, JS);
    let r = c.large_response_to(false);
    assert_eq!(r.status, 200);
    assert_same_bytes(&r.body, &data);
    let r = recv_head(&mut c);
    assert_eq!(r.header("content-length"), Some(data.len().to_string().as_str()));
    assert_eq!(recv(&mut c).text(), "hello world\n");
    assert_ok_healthz(&recv(&mut c));
    assert!(c.is_closed());
}

/// Issue 2: "no way out of DIR (`..`, encoded `%2e%2e`, symlinks leaving DIR → 404)".
/// The secret file exists just outside DIR, so a traversal that worked would return it.
#[test]
fn static_traversal_attempts_are_404() {
    let site = Site::new("traverse");
    let server = site.serve(&[]);
    let secret_abs = site.base.path.join("secret");
    let abs = secret_abs.to_str().unwrap();
    let encoded_abs = abs.replace('/', "%2F");
    let mut paths: Vec<String> = [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E/secret",
        "/a/%2E%2E/%2e%2e/secret",
        "/a/../../secret",
        "/..%2fsecret",
        "/..%2Fsecret",
        "/%2e%2e%2fsecret",
        "/a%2f..%2f..%2fsecret",
        "/..%5csecret",
        "/.%2e/secret",
        "/link-out",     // symlink to a file outside DIR
        "/dir-out/secret", // through a symlinked folder pointing outside DIR
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(format!("/{abs}")); // "//tmp/…/secret"
    paths.push(format!("/{encoded_abs}"));
    for path in &paths {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path} → {} {:?}", r.status, r.text());
        assert_error(&r, 404);
        assert!(!r.text().contains("TOP SECRET"), "{path} leaked the secret");
    }
    // A symlink that stays inside DIR is served (the 404s above are about leaving DIR).
    let r = server.get("/link-in.js");
    assert_eq!((r.status, &r.body[..]), (200, JS));
    assert!(Path::new(&secret_abs).exists());
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown (issue 2: stop accepting, let in-flight responses finish, close the
// rest, exit 0 within the drain time)
// ---------------------------------------------------------------------------------------------

fn assert_exit_0(st: Option<ExitStatus>, what: &str) {
    let st = st.unwrap_or_else(|| panic!("{what}: the server did not exit in time"));
    assert_eq!(st.code(), Some(0), "{what}: exit status {st}");
}

fn connect_refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

#[test]
fn sigterm_drains_gracefully() {
    let mut server = Server::start(&["--drain-timeout", "4"]);
    let addr = server.addr;
    // An idle keep-alive connection.
    let mut idle = server.client();
    assert_ok_healthz(&get_on(&mut idle, "/healthz"));
    // A connection in the middle of sending a request head.
    let before = stats(&server);
    let mut busy = server.client();
    let part = b"GET /healthz HTTP/1.1\r\nHost: t\r\n";
    busy.send(part);
    wait_server_read(&server, &before, part.len());

    let signalled = Instant::now();
    server.signal("TERM");
    assert!(idle.is_closed(), "the idle connection was not closed (or got bytes) after SIGTERM");
    // New connections are refused once shutdown began.
    assert!(connect_refused(addr), "a new connection was accepted after SIGTERM");
    // The half-sent request still gets its answer, which closes the connection.
    busy.send(b"\r\n");
    let r = recv(&mut busy);
    assert_ok_healthz(&r);
    assert!(is_close(&r), "response during shutdown without Connection: close: {:?}", r.headers);
    assert!(busy.is_closed());
    drop(busy);
    assert_exit_0(server.wait_exit(Duration::from_secs(4) + Duration::from_secs(2)), "SIGTERM");
    assert!(signalled.elapsed() < Duration::from_secs(6));
}

/// A file download under way when SIGTERM arrives completes intact, then the connection closes.
#[test]
fn sigterm_lets_a_file_download_finish() {
    let site = Site::new("drainfile");
    let data = pattern(24 << 20); // more than the socket buffers hold
    site.write("big.bin", &data);
    let mut server = site.serve(&["--drain-timeout", "10"]);
    let mut c = server.client();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_until(b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.contains(&format!("Content-Length: {}\r\n", data.len())), "{head}");
    server.signal("TERM");
    let body = c.read_exact_quiet(data.len());
    assert_same_bytes(&body, &data);
    assert!(c.is_closed(), "connection not closed after the download during shutdown");
    drop(c);
    assert_exit_0(server.wait_exit(WAIT), "SIGTERM during a download");
}

/// A connection that never finishes its request does not hold shutdown past the drain time.
#[test]
fn drain_timeout_bounds_shutdown() {
    let mut server = Server::start(&["--drain-timeout", "1"]);
    let before = stats(&server);
    let mut stuck = server.client();
    stuck.send(b"GET /healthz HTTP/1.1\r\n");
    wait_server_read(&server, &before, b"GET /healthz HTTP/1.1\r\n".len());
    let start = Instant::now();
    server.signal("TERM");
    let st = server.wait_exit(Duration::from_secs(5));
    let took = start.elapsed();
    assert_exit_0(st, "SIGTERM with a stuck connection");
    assert_between("drain with a stuck connection", took, 0.8, 4.0);
    assert!(stuck.is_closed());
}

#[test]
fn sigint_exits_0() {
    let mut server = Server::start(&[]);
    let mut c = server.client();
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
    server.signal("INT");
    assert!(c.is_closed());
    assert_exit_0(server.wait_exit(WAIT), "SIGINT");
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Runs the binary to completion (bounded by WAIT); returns status, stdout, stderr.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwire"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn pushwire");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("pushwire {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_prints_usage_and_exits_0() {
    for flag in ["--help", "-h"] {
        let (st, out, _) = run_cli(&["--listen", "127.0.0.1:0", flag], &[]);
        assert_eq!(st.code(), Some(0), "{flag}");
        assert!(out.contains("Usage: pushwire"), "{flag}: {out}");
        for opt in ["--listen", "--static", "--max-body", "--header-timeout", "--drain-timeout"] {
            assert!(out.contains(opt), "{flag} does not mention {opt}");
        }
    }
}

#[test]
fn version_prints_the_version() {
    for flag in ["--version", "-V"] {
        let (st, out, _) = run_cli(&["--listen", "127.0.0.1:0", flag], &[]);
        assert_eq!(st.code(), Some(0), "{flag}");
        assert_eq!(out.trim(), format!("pushwire {}", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

#[test]
fn bad_command_line_exits_2() {
    let (st, _, err) = run_cli(&["--listen", "127.0.0.1:0", "--no-such-option"], &[]);
    assert_eq!(st.code(), Some(2), "unknown option: {err}");
    assert!(err.contains("no-such-option"), "{err}");
    let (st, _, err) = run_cli(&["--listen", "127.0.0.1:0", "--max-body", "lots"], &[]);
    assert_eq!(st.code(), Some(2), "bad value: {err}");
    let (st, _, err) = run_cli(&["--listen"], &[]);
    assert_eq!(st.code(), Some(2), "missing value: {err}");
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Issue 2: "the `PORT` environment variable sets the port when `--listen` is absent".
#[test]
fn port_env_sets_the_port() {
    let port = free_port();
    let p = port.to_string();
    let server = Server::start_exact(&["--stats-interval", "0"], &[("PORT", p.as_str())], &["HOST"]);
    assert_eq!(server.addr, SocketAddr::from(([127, 0, 0, 1], port)));
    let mut c = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// `--listen` wins over `PORT`; a `PORT` that is not a port number is a usage error.
#[test]
fn listen_overrides_port_env_and_bad_port_exits_2() {
    let port = free_port();
    let p = port.to_string();
    let server = Server::start_with_env(&[], &[("PORT", p.as_str())]);
    assert_ne!(server.addr.port(), port);
    assert_ok_healthz(&server.get("/healthz"));
    let (st, _, err) = run_cli(&["--stats-interval", "0"], &[("PORT", "notaport")]);
    assert_eq!(st.code(), Some(2), "{err}");
}

// ---------------------------------------------------------------------------------------
// Accept errors (EMFILE): the loop neither spins nor stops; it serves the connections it
// has and accepts again once descriptors are free.
// ---------------------------------------------------------------------------------------

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn running_out_of_descriptors_does_not_stop_the_server() {
    let server = Server::start_with_fd_limit(32, &[]);
    let mut first = server.client();
    first.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.response().status, 200);
    // More connections than descriptors: the rest wait in the listen backlog.
    let mut held: Vec<Client> = (0..60).map(|_| server.client()).collect();
    wait_for("the server to run out of descriptors", || server.log().contains("pausing accepts"));
    // No busy loop while the backlog cannot be accepted.
    let before = cpu_ticks(server.pid());
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let used = cpu_ticks(server.pid()) - before;
    assert!(used < 20, "the server used {used} ticks of CPU in 1 s while out of descriptors");
    // The connections it has are still served.
    first.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(first.response().status, 200);
    // Free descriptors: new connections are accepted and served again.
    held.clear();
    let mut again = server.client();
    again.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(again.response().status, 200);
}

// A client that sends its request and its FIN together (`printf ... | nc -N`) gets its
// answer and then the close at once, not after the keep-alive timeout: epoll reported the
// FIN with the data, and no later event would.
#[test]
fn request_and_fin_together_get_answer_and_close() {
    let server = Server::start(&[]);
    for _ in 0..20 {
        let mut c = server.client();
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.response().status, 200);
        // The read timeout is 10 s and the keep-alive 75 s: EOF here means the server noticed.
        assert!(c.is_closed());
    }
}
