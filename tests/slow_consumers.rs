//! Integration tests of slow consumers (issue 4): a subscriber of any transport that does not
//! read is cut off at `--max-output`, while the others get everything.

mod support;
use support::pubsub::*;
use support::ws::read_frame;
use support::*;

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire::proto::sse::parse;

// ---------------------------------------------------------------------------------------------
// Slow consumers (issue: "A slow subscriber of any transport is cut off at its output cap")
// ---------------------------------------------------------------------------------------------
//
// Two subscribers of one channel with `--max-output 65536`: one never reads, one reads. The
// publisher stays at most PACE messages ahead of what the reading one has fully received, so
// the reading one never has more than (PACE + 1) × 16 KiB ≈ 48 KiB outstanding: it cannot
// legitimately be cut off, however the two cores are scheduled (unpaced, a debug-build reader
// descheduled for a few milliseconds does fall 64 KiB behind and is, correctly, cut off). If
// the server let the stuck subscriber hold up the others, the reading one would stall and the
// publisher's bounded wait would fail.

const SLOW_N: usize = 2000;

const SLOW_SIZE: usize = 16 * 1024;

const PACE: usize = 2;

/// Message `i` of the slow-consumer tests: 16 KiB of text that names its index.
fn slow_msg(i: usize) -> Vec<u8> {
    let mut m = format!("{i:06}:").into_bytes();
    m.extend((m.len()..SLOW_SIZE).map(|j| b'a' + ((i + j) % 26) as u8));
    m
}

/// Publishes the slow-consumer messages on one keep-alive connection, each only once the
/// reading subscriber has received all but PACE of the earlier ones; returns their ids.
fn publish_paced(server: &Server, channel: &'static str, received: Arc<AtomicUsize>) -> std::thread::JoinHandle<Vec<u64>> {
    let mut p = Publisher::new(server);
    std::thread::spawn(move || {
        let mut ids = Vec::with_capacity(SLOW_N);
        for i in 0..SLOW_N {
            let start = Instant::now();
            while received.load(Ordering::Acquire) + PACE < i {
                let got = received.load(Ordering::Acquire);
                assert!(start.elapsed() < WAIT, "the reading subscriber stalled at {got} of {i} published");
                std::thread::sleep(Duration::from_micros(100));
            }
            ids.push(p.publish(channel, &slow_msg(i)));
        }
        ids
    })
}

/// Reads raw bytes from `c` into one buffer, as fast as the socket delivers them, until
/// `count(&buf)` (complete messages so far) reaches SLOW_N; publishes the count as it goes.
fn read_fast(mut c: Client, received: Arc<AtomicUsize>, mut count: impl FnMut(&[u8], usize) -> usize + Send + 'static) -> std::thread::JoinHandle<(Client, Vec<u8>)> {
    std::thread::spawn(move || {
        let mut all = c.buffered().to_vec();
        let mut tmp = vec![0u8; 1 << 20];
        let mut n = count(&all, 0);
        received.store(n, Ordering::Release);
        while n < SLOW_N {
            let before = all.len();
            match c.stream.read(&mut tmp) {
                Ok(0) => panic!("the reading subscriber's connection ended after {n} messages ({} bytes): {:?}", all.len(), String::from_utf8_lossy(&all[all.len().saturating_sub(60)..])),
                Ok(k) => all.extend_from_slice(&tmp[..k]),
                Err(e) => panic!("the reading subscriber: {e} after {n} messages"),
            }
            n = count(&all, before);
            received.store(n, Ordering::Release);
        }
        (c, all)
    })
}

/// Waits (bounded) for `/stats` to count a slow-consumer disconnect while the publisher runs.
fn wait_for_cut_off(server: &Server, publisher: &std::thread::JoinHandle<Vec<u64>>) {
    let start = Instant::now();
    loop {
        if stats(server)["slow_consumer_disconnects"].as_u64() >= Some(1) {
            return;
        }
        if publisher.is_finished() {
            let s = stats(server);
            assert!(s["slow_consumer_disconnects"].as_u64() >= Some(1), "all messages published (or the publisher failed) and the slow subscriber was not cut off: {s}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the slow subscriber was never cut off");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Splits unmasked server frames: (fin, opcode, payload) each.
fn split_frames(mut b: &[u8]) -> Vec<(bool, u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 2, "a partial frame header");
        assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
        let (len, hl) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        assert!(b.len() >= hl + len, "a partial frame");
        out.push((b[0] & 0x80 != 0, b[0] & 0x0f, &b[hl..hl + len]));
        b = &b[hl + len..];
    }
    out
}

/// Rule: a WebSocket subscriber that does not read is cut off (close 1008) at `--max-output`,
/// and counted; a reading subscriber of the same channel gets everything, in order.
#[test]
fn slow_websocket_subscriber_is_cut_off() {
    let server = Server::start(&["--max-output", "65536"]);
    let mut slow = ws_open(&server, "/channels/firehose", "");
    let fast = ws_open(&server, "/channels/firehose", "");
    let received = Arc::new(AtomicUsize::new(0));
    // Each message is a 4-byte frame header and its payload.
    let reader = read_fast(fast, received.clone(), |all, _| all.len() / (4 + SLOW_SIZE));
    let publisher = publish_paced(&server, "firehose", received);
    wait_for_cut_off(&server, &publisher);
    // The slow one now reads: a prefix of the messages in order, then close 1008, then EOF.
    let mut got = 0;
    loop {
        let (fin, op, payload) = read_frame(&mut slow);
        assert!(fin);
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            assert_eq!(code, 1008, "policy violation: {:?}", String::from_utf8_lossy(&payload[2..]));
            break;
        }
        assert_eq!(op, 0x1);
        assert!(payload == slow_msg(got), "slow subscriber's message {got} differs");
        got += 1;
        assert!(got < SLOW_N, "the slow subscriber got everything: it was not cut off");
    }
    assert!(slow.is_closed(), "TCP connection still open after the close frame");
    let ids = publisher.join().expect("publisher");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let (mut fast, all) = reader.join().expect("the reading subscriber");
    let frames = split_frames(&all);
    assert_eq!(frames.len(), SLOW_N, "exactly every message, nothing else (no close frame)");
    for (i, (fin, op, payload)) in frames.into_iter().enumerate() {
        assert!(fin && op == 0x1, "message {i}: opcode {op:#x}");
        assert!(payload == slow_msg(i), "message {i} differs: starts {:?}", String::from_utf8_lossy(&payload[..payload.len().min(20)]));
    }
    let s = wait_stats(&server, "the slow subscriber to be gone", |s| s["subscribers"]["websocket"] == 1);
    assert_eq!(s["slow_consumer_disconnects"], 1, "only the slow one was cut off: {s}");
    // The reading one is still subscribed and live.
    publish(&server, "firehose", "still here");
    assert_eq!(ws_text(&mut fast), "still here");
}

/// Rule: the same for SSE, and the cut-off subscriber recovers what it missed by reconnecting
/// with its last id.
#[test]
fn slow_sse_subscriber_is_cut_off_and_recovers() {
    let server = Server::start(&["--max-output", "65536", "--history", "3000"]);
    let mut slow = open_sse(&server, "/channels/stream", "");
    let fast = open_sse(&server, "/channels/stream", "");
    let received = Arc::new(AtomicUsize::new(0));
    // Each event ends with the only blank line in it (the data has no line ends); count the
    // blank lines that end in the bytes just read.
    let mut events = 0;
    let reader = read_fast(fast.c, received.clone(), move |all, before| {
        events += all[before.saturating_sub(1)..].windows(2).filter(|w| w == b"\n\n").count();
        events
    });
    let publisher = publish_paced(&server, "stream", received);
    wait_for_cut_off(&server, &publisher);
    // The slow stream ends after a prefix of complete events.
    let mut tail = slow.c.buffered().to_vec();
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        match slow.c.stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => tail.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the cut-off stream: {e} after {} bytes", tail.len()),
        }
    }
    let evs = parse::events(&tail);
    let got = evs.len();
    assert!(got < SLOW_N, "the slow subscriber got everything: it was not cut off");
    assert!(got > 0, "the slow subscriber received nothing before the cut-off");
    let ids = publisher.join().expect("publisher");
    for (i, ev) in evs.iter().enumerate() {
        assert!(ev.data.as_bytes() == slow_msg(i), "slow subscriber's message {i} differs");
        assert_eq!(ev.id, Some(ids[i].to_string()));
    }
    let (fast_c, all) = reader.join().expect("the reading subscriber");
    let evs = parse::events(&all);
    assert_eq!(evs.len(), SLOW_N);
    for (i, ev) in evs.iter().enumerate() {
        assert_eq!(ev.id, Some(ids[i].to_string()), "message {i}");
        assert!(ev.data.as_bytes() == slow_msg(i), "message {i} differs: starts {:?}", &ev.data[..ev.data.len().min(20)]);
    }
    let s = wait_stats(&server, "the slow subscriber to be gone", |s| s["subscribers"]["sse"] == 1);
    assert_eq!(s["slow_consumer_disconnects"], 1, "only the slow one was cut off: {s}");
    // Recovery: reconnect with the last id received; get exactly the rest, no reset.
    let last = ids[got - 1];
    let mut back = open_sse(&server, "/channels/stream", &format!("Last-Event-ID: {last}\r\n"));
    for (i, id) in ids.iter().enumerate().skip(got) {
        let ev = back.next();
        assert_eq!(ev.event, "message", "no reset: history holds all {SLOW_N}");
        assert_eq!(ev.id, Some(id.to_string()));
        assert!(ev.data.as_bytes() == slow_msg(i), "recovered message {i} differs");
    }
    let (id, _) = publish(&server, "stream", "live");
    assert_eq!(back.message(), (id, "live".to_string()));
    let mut fast = SseStream { c: fast_c, head: fast.head, first: fast.first };
    assert_eq!(fast.message(), (id, "live".to_string()));
}

// A single message larger than --max-output still reaches a subscriber that keeps up: only
// output already waiting counts towards the cut-off.
#[test]
fn one_large_message_does_not_cut_off_a_fast_subscriber() {
    let server = Server::start(&["--max-output", "65536"]);
    let mut sse = open_sse(&server, "/channels/big", "");
    let big = "x".repeat(200_000);
    let (_, n) = publish(&server, "big", &big);
    assert_eq!(n, 1);
    let (_, data) = sse.message();
    assert_eq!(data.len(), big.len());
    assert_eq!(stats(&server)["slow_consumer_disconnects"], 0);
}
