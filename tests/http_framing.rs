//! Integration tests of HTTP/1.1 message framing (issue 2): pipelining, persistent
//! connections, request bodies (Content-Length, chunked) and `Expect: 100-continue`.

mod support;
use support::http::*;
use support::*;

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
// Protocol corners (issue 10)
// ---------------------------------------------------------------------------------------------

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line. Two
/// (and bare LFs) are ignored too, on a fresh connection and between pipelined requests.
#[test]
fn empty_lines_before_the_request_line_are_ignored() {
    let server = Server::start(&[]);
    for prefix in ["\r\n", "\r\n\r\n", "\n\n", "\r\n\r\n\r\n\r\n"] {
        let (_c, r) = fresh(&server, format!("{prefix}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_ok_healthz(&r);
    }
    let mut c = server.client();
    c.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(recv(&mut c).status, 405);
    assert_ok_healthz(&recv(&mut c));
}

/// An empty line a client sends after a request (some send CRLF after a POST body) is not a
/// head in progress: the connection idles as keep-alive, with no 408 after the header timeout.
#[test]
fn an_empty_line_after_a_request_leaves_the_connection_idle() {
    let server = Server::start(&["--header-timeout", "0.5"]);
    let mut c = server.client();
    c.send(b"POST /channels/e HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx\r\n");
    assert_eq!(recv(&mut c).status, 202);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(c.buffered().is_empty(), "unsolicited bytes: {:?}", String::from_utf8_lossy(c.buffered()));
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// RFC 9112 §7.1 and RFC 9110 §8.6: lengths with leading zeros are well-formed; the value is
/// judged, not the number of digits.
#[test]
fn lengths_with_leading_zeros_are_judged_by_value() {
    let server = Server::start(&[]);
    let cl = "POST /channels/z HTTP/1.1\r\nHost: t\r\nContent-Length: 000000000000000000000005\r\n\r\nhello";
    let (_c, r) = fresh(&server, cl.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let chunked = "POST /channels/z HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n";
    let (_c, r) = fresh(&server, chunked.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    // A well-formed length far past any limit is too large (413), not malformed (400).
    let huge = "POST /channels/z HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    error_on_fresh(&server, huge.as_bytes(), 413);
    let huge_chunk = "POST /channels/z HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000200000\r\n";
    error_on_fresh(&server, huge_chunk.as_bytes(), 413);
}
