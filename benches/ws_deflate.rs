//! Issue 13's permessage-deflate figures, in one sitting: WebSocket fan-out deliveries per
//! server core with and without compression, and the memory of an idle WebSocket with and
//! without deflate negotiated. The kit's loadgen does not speak permessage-deflate (it fails
//! a connection whose 101 names an extension), so this is our own client: mio, raw frames,
//! one thread for the subscribers and one pipelining publisher, both on CPU 1; the server
//! runs alone on CPU 0 (as the kit's bench.sh does). Only ever talks to 127.0.0.1.
//!
//!   cargo bench --bench ws_deflate                    # REPS=3 DUR=10 SUBS=1000 SIZE=1024 IDLE=5000
//!   REPS=1 DUR=3 cargo bench --bench ws_deflate       # a quick look
//!
//! Deliveries are counted from frame headers (each data frame is one message); the share
//! of frames with RSV1 is printed to show compression was on. Server CPU is read from
//! /proc/PID/stat around each measurement; "per core" = deliveries / server CPU seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

mod common;
use common::{cpu_seconds, env, median, pin, publisher, stop, wait_for_ports};

const PORT: u16 = 9130;
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn start_server(extra: &[&str]) -> Child {
    let bin = std::env::var("PUSHWIRE_BIN").unwrap_or_else(|_| "target/release/pushwire".into());
    let listen = format!("127.0.0.1:{PORT}");
    let child = Command::new("taskset")
        .args(["-c", "0", &bin, "--listen", &listen, "--stats-interval", "0", "--history", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pushwire (cargo build --release first)");
    wait_for_ports(&[PORT]);
    child
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Opens a WebSocket (blocking handshake); checks the extension answer is as offered.
fn open_ws(path: &str, deflate: bool) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
    let offer = if deflate { OFFER } else { "" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert_eq!(head.contains("sec-websocket-extensions: permessage-deflate"), deflate, "{head}");
    s
}

/// A compressible ~`size`-byte JSON message, as a push server's tickers send.
fn message(size: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < size - 2 {
        s.push_str(&format!("{{\"sym\":\"S{:03}\",\"bid\":{}.{:02},\"ask\":{}.{:02}}},", i % 500, 100 + i * 7 % 50, i * 13 % 100, 101 + i * 7 % 50, i * 17 % 100));
        i += 1;
    }
    s.truncate(size - 1);
    s.push(']');
    s.into_bytes()
}

/// Per subscriber: where in the frame stream it is.
struct Sub {
    sock: mio::net::TcpStream,
    head: Vec<u8>,
    left: usize,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    frames: u64,
    compressed: u64,
    bytes: u64,
}

/// Reads what is there; counts whole data frames.
fn drain(sub: &mut Sub, buf: &mut [u8], c: &mut Counts) -> bool {
    loop {
        match sub.sock.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                c.bytes += n as u64;
                let mut i = 0;
                while i < n {
                    if sub.left > 0 {
                        let take = sub.left.min(n - i);
                        sub.left -= take;
                        i += take;
                        continue;
                    }
                    sub.head.push(buf[i]);
                    i += 1;
                    let h = &sub.head;
                    let need = match h.get(1).map(|b| b & 0x7f) {
                        None => 2,
                        Some(126) => 4,
                        Some(127) => 10,
                        Some(_) => 2,
                    };
                    if h.len() < need {
                        continue;
                    }
                    let len = match h[1] & 0x7f {
                        126 => u16::from_be_bytes([h[2], h[3]]) as usize,
                        127 => u64::from_be_bytes(h[2..10].try_into().unwrap()) as usize,
                        n => n as usize,
                    };
                    if h[0] & 0x0f != 0 && h[0] & 0x08 == 0 {
                        c.frames += 1;
                        c.compressed += u64::from(h[0] & 0x40 != 0);
                    }
                    sub.head.clear();
                    sub.left = len;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) => panic!("{e}"),
        }
    }
}

struct Fanout {
    per_core: f64,
    rate: f64,
    cpu: f64,
    compressed: f64,
    wire_per_msg: f64,
}

fn fanout(deflate: bool, subs: usize, size: usize, dur: u64) -> Fanout {
    let server = start_server(&["--max-output", "67108864"]);
    let pid = server.id();
    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<Sub> = (0..subs)
        .map(|i| {
            let s = open_ws("/channels/bench", deflate);
            s.set_nonblocking(true).unwrap();
            let mut sock = mio::net::TcpStream::from_std(s);
            poll.registry().register(&mut sock, Token(i), Interest::READABLE).unwrap();
            Sub { sock, head: Vec::new(), left: 0 }
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let p = {
        let (stop, body) = (stop.clone(), message(size));
        std::thread::spawn(move || publisher(PORT, body, 8, stop))
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut c = Counts::default();
    let t0 = Instant::now();
    let warm = Duration::from_secs(1);
    let (mut start, mut cpu0) = (None, 0.0);
    let end = warm + Duration::from_secs(dur);
    while t0.elapsed() < end {
        if start.is_none() && t0.elapsed() >= warm {
            start = Some((Instant::now(), c));
            cpu0 = cpu_seconds(pid);
        }
        poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        for ev in events.iter() {
            assert!(drain(&mut conns[ev.token().0], &mut buf, &mut c), "a subscriber was cut off");
        }
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let (t_start, c0) = start.unwrap();
    let secs = t_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    stop_server(server, p);
    let frames = (c.frames - c0.frames) as f64;
    Fanout {
        per_core: frames / cpu,
        rate: frames / secs,
        cpu: cpu / secs,
        compressed: (c.compressed - c0.compressed) as f64 / frames,
        wire_per_msg: (c.bytes - c0.bytes) as f64 / frames,
    }
}

fn stop_server(server: Child, publisher: std::thread::JoinHandle<()>) {
    // The publisher may be blocked on a read: the server going away ends it.
    stop(server);
    let _ = publisher.join();
}

/// Bytes of server RSS per idle WebSocket, `n` of them on /echo.
fn idle(deflate: bool, n: usize) -> f64 {
    let server = start_server(&[]);
    let pid = server.id();
    let _warm: Vec<TcpStream> = (0..200).map(|_| open_ws("/echo", deflate)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let conns: Vec<TcpStream> = (0..n).map(|_| open_ws("/echo", deflate)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(pid);
    drop(conns);
    stop(server);
    (after - before) as f64 * 1024.0 / n as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks
    }
    pin(1);
    let (reps, dur, subs, size, idle_n) = (env("REPS", 3), env("DUR", 10) as u64, env("SUBS", 1000), env("SIZE", 1024), env("IDLE", 5000));
    println!("ws_deflate: {subs} subscribers, {size}-byte messages, {dur} s x {reps}; idle {idle_n} connections");
    let mut rows: Vec<(bool, Vec<Fanout>)> = vec![(false, Vec::new()), (true, Vec::new())];
    for rep in 0..reps {
        for (deflate, runs) in rows.iter_mut() {
            let f = fanout(*deflate, subs, size, dur);
            println!(
                "  rep {rep} {:<8} deliveries/s {:>10.0}  server CPU {:>5.1}%  per server core {:>10.0}  compressed {:>4.0}%  wire bytes/msg {:>6.0}",
                if *deflate { "deflate" } else { "plain" },
                f.rate,
                f.cpu * 100.0,
                f.per_core,
                f.compressed * 100.0,
                f.wire_per_msg
            );
            runs.push(f);
        }
    }
    let mut idle_rows = [(false, Vec::new()), (true, Vec::new())];
    for _ in 0..reps {
        for (deflate, v) in idle_rows.iter_mut() {
            v.push(idle(*deflate, idle_n));
        }
    }
    println!("\n| fan-out, {subs} WS subscribers, {size} B | deliveries/s | server CPU | per server core | wire bytes/msg |");
    println!("| --- | --- | --- | --- | --- |");
    let base = median(rows[0].1.iter().map(|f| f.per_core).collect());
    for (deflate, runs) in &rows {
        let pc = median(runs.iter().map(|f| f.per_core).collect());
        println!(
            "| {} | {:.0} | {:.0}% | {:.0} ({:.2}x) | {:.0} |",
            if *deflate { "permessage-deflate" } else { "plain" },
            median(runs.iter().map(|f| f.rate).collect()),
            median(runs.iter().map(|f| f.cpu * 100.0).collect()),
            pc,
            pc / base,
            median(runs.iter().map(|f| f.wire_per_msg).collect())
        );
    }
    let (plain, z) = (median(idle_rows[0].1.clone()), median(idle_rows[1].1.clone()));
    println!("\n| idle WebSocket, {idle_n} connections | server bytes per connection |\n| --- | --- |");
    println!("| plain | {plain:.0} |\n| permessage-deflate negotiated | {z:.0} ({:+.0}) |", z - plain);
}
