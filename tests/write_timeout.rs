//! Integration tests of connections that stop taking output (issue 10): `--write-timeout` closes
//! any connection whose unsent output has not moved for that long, whatever it speaks, and TCP
//! keep-alive is on for every accepted socket so vanished peers go away.

mod support;
use support::pubsub::*;
use support::*;

use std::process::Command;
use std::time::{Duration, Instant};

/// Publishes `n` messages of `size` bytes to `channel` on one keep-alive connection.
fn flood_channel(server: &Server, channel: &str, n: usize, size: usize) {
    let mut p = Publisher::new(server);
    let body = vec![b'y'; size];
    for _ in 0..n {
        p.publish(channel, &body);
    }
}

/// Rule: an SSE subscriber that never reads, on a channel that then goes quiet, is closed once
/// its output has made no progress for `--write-timeout` (and counted in `/stats`); before this
/// rule it held its slot and its queued output forever (SSE has no ping to time out). An idle
/// subscriber with nothing queued is not touched.
#[test]
fn a_never_reading_sse_subscriber_is_closed_after_the_write_timeout() {
    let server = Server::start(&["--write-timeout", "1", "--max-output", "67108864", "--max-body", "200000"]);
    let mut idle = open_sse(&server, "/channels/other", "");
    let mut stuck = Client::connect_small_window(server.addr);
    stuck.send(sse_request("/channels/quiet", "").as_bytes());
    let head = read_head(&mut stuck);
    assert_eq!(head.status, 200);
    // More than the kernel's socket buffers take: the rest waits in the server.
    flood_channel(&server, "quiet", 80, 100_000);
    let start = Instant::now();
    let s = wait_stats(&server, "the stuck subscriber to be closed", |v| v["write_timeouts"] == 1);
    assert_eq!(s["connections"]["sse"], 1, "only the stuck one went: {s}");
    assert_eq!(s["slow_consumer_disconnects"], 0, "closed by the timeout, not the output cap: {s}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    // The idle subscriber, quiet for longer than the timeout, is still served.
    let (id, _) = publish(&server, "other", "still open");
    assert_eq!(idle.message(), (id, "still open".to_string()));
    // What reached the stuck client before the close is a clean prefix, then EOF.
    stuck.stream.set_read_timeout(Some(WAIT)).unwrap();
    let got = stuck.read_to_end();
    assert!(got.len() < 80 * 100_000, "{} bytes", got.len());
}

/// Rule: the same for a WebSocket subscriber that stops reading (its TCP window stays zero
/// long before any heartbeat would notice).
#[test]
fn a_never_reading_websocket_subscriber_is_closed_after_the_write_timeout() {
    let server = Server::start(&["--write-timeout", "1", "--max-output", "67108864", "--max-body", "200000"]);
    let mut stuck = Client::connect_small_window(server.addr);
    stuck.send(ws_request("/channels/wsq", "").as_bytes());
    let head = read_head(&mut stuck);
    assert_eq!(head.status, 101);
    flood_channel(&server, "wsq", 80, 100_000);
    let s = wait_stats(&server, "the stuck WebSocket to be closed", |v| v["write_timeouts"] == 1);
    assert_eq!(s["connections"]["websocket"], 0, "{s}");
}

/// Rule: TCP keep-alive is on for accepted sockets (the kernel's keepalive timer runs on an
/// idle connection), and the listen backlog is deep (4096, `ss` shows it as Send-Q).
#[test]
fn accepted_sockets_have_keepalive_and_the_backlog_is_deep() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let port = server.addr.port();
    let ss = |args: &[&str]| {
        let out = Command::new("ss").args(args).arg(format!("( sport = :{port} )")).output().expect("ss (iproute2)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let est = ss(&["-tnoH", "state", "established"]);
    assert!(est.contains("timer:(keepalive"), "no keepalive timer on the server's socket: {est:?}");
    let listen = ss(&["-ltnH"]);
    let backlog: u32 = listen.split_whitespace().nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(backlog >= 1024, "listen backlog {backlog}: {listen:?}");
}
