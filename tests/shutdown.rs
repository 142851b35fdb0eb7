//! Integration tests of graceful shutdown (issue 2): on SIGTERM/SIGINT stop accepting, let
//! in-flight responses finish, close the rest, exit 0 within the drain time; a new subscription
//! to the hub during the drain gets 503.

mod support;
use support::http::*;
use support::*;

use std::net::{SocketAddr, TcpStream};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

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

// ---- The pub/sub hub during shutdown (issue 4) ----

// During a graceful shutdown a new subscription is refused with 503 (it would be cut at the
// drain deadline anyway), and the server still exits 0.
#[test]
fn subscribing_during_shutdown_gets_503() {
    subscription_during_shutdown_gets_503("GET");
}

/// The same for a HEAD on the stream route: it gets what the GET gets (issue 10).
#[test]
fn head_of_a_subscription_during_shutdown_gets_503() {
    subscription_during_shutdown_gets_503("HEAD");
}

fn subscription_during_shutdown_gets_503(method: &str) {
    let mut server = Server::start(&["--drain-timeout", "5"]);
    // Each /stats call adds its own request to bytes_in: learn how much, to see ours arrive.
    let b0 = stats(&server)["bytes_in"].as_u64().unwrap();
    let per_call = stats(&server)["bytes_in"].as_u64().unwrap() - b0;
    let partial = format!("{method} /channels/late HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n");
    let partial = partial.as_bytes();
    let mut c = server.client();
    c.send(partial);
    // The head is incomplete, so the connection is not idle: shutdown waits for it.
    let mut calls = 1;
    wait_for("the half-sent request to be read", || {
        calls += 1;
        stats(&server)["bytes_in"].as_u64().unwrap() >= b0 + calls * per_call + partial.len() as u64
    });
    server.signal("TERM");
    wait_for("shutdown to begin", || server.log().contains("shutting down"));
    c.send(b"\r\n");
    let r = c.response_to(method == "HEAD");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(c.is_closed());
    let status = server.wait_exit(Duration::from_secs(8)).expect("server exits");
    assert!(status.success());
}

/// Rule (issue 10): a second SIGINT/SIGTERM during the drain exits at once.
#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let mut server = Server::start(&["--drain-timeout", "60"]);
    let before = stats(&server);
    // A half-sent request keeps the drain waiting.
    let mut stuck = server.client();
    stuck.send(b"GET /healthz HTTP/1.1\r\n");
    wait_server_read(&server, &before, b"GET /healthz HTTP/1.1\r\n".len());
    server.signal("INT");
    assert!(server.wait_exit(Duration::from_millis(500)).is_none(), "still draining after one signal");
    let start = Instant::now();
    server.signal("INT");
    assert_exit_0(server.wait_exit(Duration::from_secs(5)), "second SIGINT");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    // The log is read by a thread: give it the moment the pipe takes.
    wait_for("the second-signal log line", || server.log().contains("second signal"));
}
