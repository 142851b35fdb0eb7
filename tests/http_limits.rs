//! Integration tests of the HTTP core's limits and timeouts (issue 2): head size, header
//! count, body size, header/body/keep-alive timeouts, running out of file descriptors.

mod support;
use support::http::*;
use support::*;

use std::io::{Read, Write};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A request head of exactly `total` bytes (request line, Host, one padding header).
fn head_of_len(path: &str, total: usize) -> String {
    let skeleton = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n");
    assert!(total >= skeleton.len());
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "a".repeat(total - skeleton.len()))
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
