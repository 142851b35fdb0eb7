//! Issue 13's TLS figures, in one sitting: what TLS costs the server per message, beside
//! plain TCP, on the kit's two shapes: WebSocket echo (100 connections, 1 message in flight,
//! 32 bytes) and fan-out (1,000 WebSocket subscribers, one publisher pipelining 8 POSTs of 64
//! bytes). The kit's loadgen speaks plain only, so this is our own client (mio + rustls, the
//! same code for both runs, TLS or not); the publisher always uses a plain listener on
//! loopback (`--listen http://…`, as an operator would), so only the subscribers' side changes.
//! Server alone on CPU 0, client on CPU 1; server CPU from /proc/PID/stat; the figure to
//! compare is messages per server CPU second ("per server core").
//!
//!   cargo bench --bench tls_cost                   # REPS=3 DUR=10 CONNS=100 SUBS=1000
//!   REPS=1 DUR=3 cargo bench --bench tls_cost      # a quick look

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

mod common;
use common::{cpu_seconds, env, median, pin, publisher, stop, wait_for_ports};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const TLS_PORT: u16 = 9140;
const PLAIN_PORT: u16 = 9141;

/// A certificate for 127.0.0.1 and the client configuration that trusts it.
fn pki(dir: &std::path::Path) -> Arc<ClientConfig> {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.key_pair.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(c.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    Arc::new(cfg)
}

/// The server with a TLS listener and a plain one.
fn start_server(dir: &std::path::Path) -> Child {
    let bin = std::env::var("PUSHWIRE_BIN").unwrap_or_else(|_| "target/release/pushwire".into());
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let child = Command::new("taskset")
        .args(["-c", "0", &bin, "--stats-interval", "0", "--history", "0", "--max-output", "67108864"])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--listen", &format!("https://127.0.0.1:{TLS_PORT}"), "--listen", &format!("http://127.0.0.1:{PLAIN_PORT}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pushwire (cargo build --release first)");
    wait_for_ports(&[PLAIN_PORT, TLS_PORT]);
    child
}

/// One client connection: the socket and, over TLS, its rustls session.
struct Client {
    sock: mio::net::TcpStream,
    tls: Option<ClientConnection>,
    inbuf: Vec<u8>,
}

impl Client {
    /// Connects and upgrades to a WebSocket on `path` (blocking), then goes non-blocking.
    fn open(tls: Option<&Arc<ClientConfig>>, path: &str) -> Client {
        let port = if tls.is_some() { TLS_PORT } else { PLAIN_PORT };
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_nodelay(true).unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        let (sock, tls) = match tls {
            Some(cfg) => {
                let conn = ClientConnection::new(cfg.clone(), ServerName::try_from("127.0.0.1").unwrap()).unwrap();
                let mut s = StreamOwned::new(conn, sock);
                s.write_all(req.as_bytes()).unwrap();
                read_head(&mut s);
                (s.sock, Some(s.conn))
            }
            None => {
                let mut s = sock;
                s.write_all(req.as_bytes()).unwrap();
                read_head(&mut s);
                (s, None)
            }
        };
        sock.set_nonblocking(true).unwrap();
        Client { sock: mio::net::TcpStream::from_std(sock), tls, inbuf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        match &mut self.tls {
            Some(t) => {
                t.writer().write_all(bytes).unwrap();
                while t.wants_write() {
                    match t.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            None => {
                let mut at = 0;
                while at < bytes.len() {
                    match self.sock.write(&bytes[at..]) {
                        Ok(n) => at += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
    }

    /// Reads what is there into `inbuf`; false once the server closed.
    fn recv(&mut self, buf: &mut [u8]) -> bool {
        loop {
            let n = match &mut self.tls {
                Some(t) => match t.read_tls(&mut self.sock) {
                    Ok(0) => return false,
                    Ok(_) => {
                        t.process_new_packets().unwrap();
                        loop {
                            match t.reader().read(buf) {
                                Ok(0) => return false,
                                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                                Err(_) => break,
                            }
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(e) => panic!("{e}"),
                },
                None => match self.sock.read(buf) {
                    Ok(0) => return false,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(e) => panic!("{e}"),
                },
            };
            self.inbuf.extend_from_slice(&buf[..n]);
        }
    }

    /// Whole frames in `inbuf`, removed.
    fn take_frames(&mut self) -> u64 {
        let (mut at, mut n) = (0, 0);
        loop {
            let b = &self.inbuf[at..];
            if b.len() < 2 {
                break;
            }
            let (hl, len) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
                127 if b.len() >= 10 => (10, u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize),
                126 | 127 => break,
                l => (2, l as usize),
            };
            if b.len() < hl + len {
                break;
            }
            n += u64::from(b[0] & 0x0f == 1 || b[0] & 0x0f == 2);
            at += hl + len;
        }
        self.inbuf.drain(..at);
        n
    }
}

fn read_head(s: &mut impl Read) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
}

/// A masked 32-byte text frame.
fn echo_frame() -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | 32, 1, 2, 3, 4];
    f.extend((0..32u8).map(|i| (b'a' + i % 26) ^ [1, 2, 3, 4][i as usize % 4]));
    f
}

struct Row {
    per_core: f64,
    rate: f64,
    cpu: f64,
}

/// Runs the subscriber side until `dur` after a 1 s warm-up; `on_frames` is told each
/// connection's new frames (echo sends the next message from there).
fn measure(pid: u32, clients: &mut [Client], dur: u64, mut on_frames: impl FnMut(&mut Client, u64)) -> Row {
    let mut poll = Poll::new().unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        poll.registry().register(&mut c.sock, Token(i), Interest::READABLE).unwrap();
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let (t0, mut total) = (Instant::now(), 0u64);
    let mut start: Option<(Instant, u64, f64)> = None;
    while t0.elapsed() < Duration::from_secs(1 + dur) {
        if start.is_none() && t0.elapsed() >= Duration::from_secs(1) {
            start = Some((Instant::now(), total, cpu_seconds(pid)));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
        for ev in events.iter() {
            let c = &mut clients[ev.token().0];
            assert!(c.recv(&mut buf), "the server closed a connection");
            let n = c.take_frames();
            total += n;
            if n > 0 {
                on_frames(c, n);
            }
        }
    }
    let (ts, t_start, cpu0) = start.unwrap();
    let secs = ts.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let n = (total - t_start) as f64;
    Row { per_core: n / cpu, rate: n / secs, cpu: cpu / secs }
}

fn echo(tls: Option<&Arc<ClientConfig>>, dir: &std::path::Path, conns: usize, dur: u64) -> Row {
    let server = start_server(dir);
    let pid = server.id();
    let frame = echo_frame();
    let mut clients: Vec<Client> = (0..conns).map(|_| Client::open(tls, "/echo")).collect();
    for c in clients.iter_mut() {
        c.send(&frame);
    }
    let row = measure(pid, &mut clients, dur, |c, n| {
        for _ in 0..n {
            c.send(&frame);
        }
    });
    stop(server);
    row
}

fn fanout(tls: Option<&Arc<ClientConfig>>, dir: &std::path::Path, subs: usize, dur: u64) -> Row {
    let server = start_server(dir);
    let pid = server.id();
    let mut clients: Vec<Client> = (0..subs).map(|_| Client::open(tls, "/channels/bench")).collect();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop_flag = stop_flag.clone();
        std::thread::spawn(move || publisher(PLAIN_PORT, vec![b'x'; 64], 8, stop_flag))
    };
    let row = measure(pid, &mut clients, dur, |_, _| {});
    stop_flag.store(true, Ordering::Relaxed);
    stop(server);
    let _ = publisher.join();
    row
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pin(1);
    let (reps, dur, conns, subs) = (env("REPS", 3), env("DUR", 10) as u64, env("CONNS", 100), env("SUBS", 1000));
    let dir = std::env::temp_dir().join(format!("pushwire-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = pki(&dir);
    println!("tls_cost: echo {conns} connections x 1 in flight, 32 B; fan-out {subs} subscribers, 64 B; {dur} s x {reps}");
    let mut rows: Vec<(&str, bool, Vec<Row>)> = vec![("echo", false, vec![]), ("echo", true, vec![]), ("fan-out", false, vec![]), ("fan-out", true, vec![])];
    for rep in 0..reps {
        for (what, tls, runs) in rows.iter_mut() {
            let t = tls.then_some(&cfg);
            let r = if *what == "echo" { echo(t, &dir, conns, dur) } else { fanout(t, &dir, subs, dur) };
            println!(
                "  rep {rep} {what:<8} {:<5} msgs/s {:>10.0}  server CPU {:>5.1}%  per server core {:>10.0}  server us/msg {:>6.2}",
                if *tls { "tls" } else { "plain" },
                r.rate,
                r.cpu * 100.0,
                r.per_core,
                1e6 / r.per_core
            );
            runs.push(r);
        }
    }
    println!("\n| row | plain: per server core | TLS: per server core | TLS / plain | server µs per message, plain → TLS |");
    println!("| --- | --- | --- | --- | --- |");
    for pair in rows.chunks(2) {
        let (p, t) = (median(pair[0].2.iter().map(|r| r.per_core).collect()), median(pair[1].2.iter().map(|r| r.per_core).collect()));
        let (pr, tr) = (median(pair[0].2.iter().map(|r| r.rate).collect()), median(pair[1].2.iter().map(|r| r.rate).collect()));
        println!("| {} | {p:.0} ({pr:.0}/s) | {t:.0} ({tr:.0}/s) | {:.2}x | {:.2} → {:.2} |", pair[0].0, t / p, 1e6 / p, 1e6 / t);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
