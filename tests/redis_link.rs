//! The Redis link's state machine and the RESP codec against a real `redis-server` (Debian
//! package, installed by scripts/setup-e2e.sh) on an ephemeral port, driven over a plain
//! blocking socket: the handshake with a password and a database, pipelined replies in order,
//! Streams ids, a subscriber link's pushes, and what a killed Redis does to commands in flight.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pushwire::cluster::link::{Event, Link, Role};
use pushwire::proto::resp::Value;

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis(extra: &[&str]) -> Redis {
    // One start at a time: a port picked by binding 0 is free only until someone takes it,
    // and the tests of this file run in parallel.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server; scripts/setup-e2e.sh does it)");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "redis-server exited at start");
        assert!(t0.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis { child, port }
}

/// Drives a link over a blocking socket until `want` events have come.
struct Driver<T> {
    link: Link<T>,
    sock: TcpStream,
}

impl<T: std::fmt::Debug> Driver<T> {
    fn connect(url: &str, role: Role) -> (Driver<T>, Vec<Event<T>>) {
        let now = Instant::now();
        let mut link = Link::new(url.parse().unwrap(), role, now, 7, 1 << 20);
        assert!(link.wants_connect(now));
        link.connecting(now);
        let u = link.url().clone();
        let sock = TcpStream::connect((u.host.as_str(), u.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let first: Vec<Event<T>> = link.connected(now).into_iter().collect();
        let mut d = Driver { link, sock };
        d.flush();
        (d, first)
    }

    fn flush(&mut self) {
        let out = self.link.transmit().to_vec();
        self.sock.write_all(&out).unwrap();
        self.link.written(out.len());
    }

    fn events(&mut self, want: usize) -> Vec<Event<T>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want {
            // A killed Redis may reset the connection rather than close it: both are a close.
            let n = match self.sock.read(&mut buf) {
                Ok(0) => {
                    got.push(self.link.on_closed(Instant::now(), "closed"));
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    got.push(self.link.on_closed(Instant::now(), "reset"));
                    break;
                }
                Err(e) => panic!("read: {e}"),
            };
            got.extend(self.link.on_input(&buf[..n], Instant::now()));
        }
        got
    }
}

#[test]
fn handshake_pipelining_and_streams_against_redis() {
    let r = redis(&["--requirepass", "s3cret"]);
    let (mut d, first) = Driver::<u32>::connect(&format!("redis://:s3cret@127.0.0.1:{}/2", r.port), Role::Commands);
    assert!(first.is_empty());
    assert_eq!(d.events(1), vec![Event::Ready], "AUTH and SELECT answered +OK");
    d.link.send(&[b"PUBLISH", b"news", b"hello"], 1).unwrap();
    d.link.send(&[b"XADD", b"s:news", b"MAXLEN", b"~", b"100", b"*", b"d", b"hello"], 2).unwrap();
    d.link.send(&[b"XADD", b"s:news", b"*", b"d", b"again"], 3).unwrap();
    d.link.send(&[b"XRANGE", b"s:news", b"-", b"+"], 4).unwrap();
    d.link.send(&[b"NOSUCHCOMMAND"], 5).unwrap();
    d.flush();
    let got = d.events(5);
    assert_eq!(got[0], Event::Reply(1, Value::Integer(0)), "nobody subscribed");
    let id = |e: &Event<u32>| match e {
        Event::Reply(_, Value::Bulk(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    let (a, b) = (id(&got[1]), id(&got[2]));
    let parse = |s: &str| -> (u64, u64) {
        let (ms, seq) = s.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    assert!(parse(&a) < parse(&b), "stream ids increase: {a} {b}");
    match &got[3] {
        Event::Reply(4, Value::Array(entries)) => assert_eq!(entries.len(), 2),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&got[4], Event::Reply(5, Value::Error(e)) if e.starts_with(b"ERR")), "{:?}", got[4]);
}

#[test]
fn a_wrong_password_is_a_down_event() {
    let r = redis(&["--requirepass", "right"]);
    let (mut d, _) = Driver::<u32>::connect(&format!("redis://:wrong@127.0.0.1:{}", r.port), Role::Commands);
    match d.events(1).as_slice() {
        [Event::Down { reason, .. }] => assert!(reason.contains("WRONGPASS") || reason.contains("invalid"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!d.link.is_ready());
}

#[test]
fn subscriber_pushes_and_a_killed_redis() {
    let mut r = redis(&[]);
    let url = format!("redis://127.0.0.1:{}", r.port);
    let (mut sub, first) = Driver::<()>::connect(&url, Role::Subscriber);
    assert!(first.is_empty(), "ready when Redis answers the handshake's PING");
    assert_eq!(sub.events(1), vec![Event::Ready]);
    sub.link.send(&[b"SUBSCRIBE", b"a", b"b"], ()).unwrap();
    sub.flush();
    assert_eq!(sub.events(2).len(), 2, "two subscribe confirmations");
    let (mut cmd, _) = Driver::<u32>::connect(&url, Role::Commands);
    assert_eq!(cmd.events(1), vec![Event::Ready]);
    cmd.link.send(&[b"PUBLISH", b"b", b"hi"], 1).unwrap();
    cmd.flush();
    assert_eq!(cmd.events(1), vec![Event::Reply(1, Value::Integer(1))], "one subscriber: the other link");
    let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
    assert_eq!(sub.events(1), vec![Event::Push(Value::Array(vec![bulk("message"), bulk("b"), bulk("hi")]))]);
    // Redis dies with a command in flight: it comes back as failed, and the link waits to retry.
    cmd.link.send(&[b"BLPOP", b"nothing", b"0"], 2).unwrap();
    cmd.flush();
    r.child.kill().unwrap();
    r.child.wait().unwrap();
    match cmd.events(1).as_slice() {
        [Event::Down { failed, .. }] => assert_eq!(failed, &vec![2]),
        other => panic!("{other:?}"),
    }
    let retry = cmd.link.poll_timeout().unwrap();
    assert!(!cmd.link.wants_connect(Instant::now() - Duration::from_secs(1)) && cmd.link.wants_connect(retry));
}
