//! Shared by the integration tests: start the real `pushwire` binary on an ephemeral port,
//! talk to it over raw TCP, parse what comes back.
#![allow(dead_code)]

pub mod http;
pub mod pubsub;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `pushwire --listen 127.0.0.1:0 --stats-interval 0 ARGS...` and waits for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwire"));
        cmd.args(["--listen", "127.0.0.1:0", "--stats-interval", "0"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::spawn(cmd)
    }

    /// Starts the server with at most `limit` open file descriptors (`ulimit -n`).
    pub fn start_with_fd_limit(limit: u32, args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_pushwire"))
            .args(["--listen", "127.0.0.1:0", "--stats-interval", "0"])
            .args(args);
        Server::spawn(cmd)
    }

    /// Runs `cmd` (the server, however started) and waits for its "listening on" line.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pushwire");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            // Keep draining stderr so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1).or_else(|| line.split("listening on https://").nth(1)) {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("server did not start; log:\n{}", log.lock().unwrap()));
        Server { child, addr: addr.parse().expect("address"), log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A raw client connection with read timeouts set.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection; returns the parsed response.
    pub fn request(&self, raw: &str) -> Response {
        let mut c = self.client();
        c.send(raw.as_bytes());
        c.response()
    }

    /// `GET path` with `Connection: close`.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. "INT", "TERM") with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw TCP client that keeps unread bytes between responses.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends `bytes` one byte per write, with a short pause so each lands in its own segment.
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.stream.write_all(std::slice::from_ref(b)).expect("send");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 65536];
        // A signal (a child process ending) may interrupt the read: read again.
        let mut read = || loop {
            match self.stream.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        };
        match read() {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => 0,
            Err(e) => panic!("read: {e} (have {:?})", String::from_utf8_lossy(&self.buf)),
        }
    }

    pub fn response(&mut self) -> Response {
        self.response_to(false)
    }

    /// True when the server closed the connection (EOF or reset) with nothing more sent.
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }

    /// Reads until EOF and returns everything that came.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// Reads until `n` bytes are buffered, returns them.
    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "EOF after {} of {n} bytes", self.buf.len());
        }
        self.buf.drain(..n).collect()
    }

    /// Reads until `pat` has arrived; returns everything up to and including it.
    pub fn read_until(&mut self, pat: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(pat.len()).position(|w| w == pat) {
                return self.buf.drain(..i + pat.len()).collect();
            }
            assert!(self.fill() > 0, "EOF before {:?}; got {:?}", String::from_utf8_lossy(pat), String::from_utf8_lossy(&self.buf));
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `WAIT` passes.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- Added for the HTTP-core tests (tests/http_*.rs and others) ----

impl Server {
    /// Starts the binary with exactly `args` (no `--listen` or `--stats-interval` added), with
    /// `env` set and the variables in `unset` removed, and waits for its "listening on" line.
    /// For testing how the listen address is chosen (`PORT`, `HOST`).
    pub fn start_exact(args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pushwire"));
        cmd.args(args);
        for k in unset {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::spawn(cmd)
    }
}

impl Client {
    /// Bytes received but not yet consumed by a `response`/`read_*` call.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

/// A fresh folder under the system temp dir, removed (with its contents) when dropped.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("pushwire-{tag}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir { path }
    }

    /// Writes `rel` (creating parent folders) and returns its full path.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&p, bytes).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Client {
    /// Like `fill`, but a read error reports how much is buffered instead of all of it
    /// (for multi-megabyte bodies).
    fn fill_quiet(&mut self) -> usize {
        let mut tmp = [0u8; 65536];
        // A signal (a child process ending) may interrupt the read: read again.
        let mut read = || loop {
            match self.stream.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        };
        match read() {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => 0,
            Err(e) => panic!("read: {e} (with {} bytes buffered)", self.buf.len()),
        }
    }

    /// Like `response_to` (which it is): the name the large-file tests use.
    pub fn large_response_to(&mut self, head_only: bool) -> Response {
        self.response_to(head_only)
    }

    /// Reads one response. `head_only`: the response to a HEAD request (no body follows).
    /// Failures report byte counts and the start of what came, never megabytes of body.
    pub fn response_to(&mut self, head_only: bool) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            let parsed = resp.parse(&self.buf).unwrap_or_else(|e| {
                let start = String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).into_owned();
                panic!("invalid response head ({e}): {start:?}")
            });
            match parsed {
                httparse::Status::Complete(n) => {
                    let status = resp.code.unwrap();
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    self.buf.drain(..n);
                    let len = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.parse::<usize>().unwrap());
                    let no_body = head_only || status < 200 || status == 204 || status == 304;
                    let body = match (no_body, len) {
                        (true, _) => Vec::new(),
                        (false, Some(len)) => self.read_exact_quiet(len),
                        (false, None) => {
                            while self.fill_quiet() > 0 {}
                            std::mem::take(&mut self.buf)
                        }
                    };
                    return Response { status, headers, body };
                }
                httparse::Status::Partial => {
                    assert!(self.fill_quiet() > 0, "EOF before a complete response ({} bytes)", self.buf.len());
                }
            }
        }
    }

    /// Like `read_exact_n`, but failures report byte counts only.
    pub fn read_exact_quiet(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill_quiet() > 0, "EOF after {} of {n} bytes", self.buf.len());
        }
        self.buf.drain(..n).collect()
    }
}

impl Client {
    /// A client on a socket the test set up itself (e.g. with a small receive buffer).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new() }
    }

    /// A connection whose receive buffer is as small as the kernel allows, so that output
    /// the test does not read backs up in the server quickly.
    pub fn connect_small_window(addr: SocketAddr) -> Client {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        Client::from_stream(sock.into())
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmSize`).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Raises this test process's open-files soft limit to its hard limit; returns the limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read or write the one struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Writes `requests` on one connection while a second thread reads the answers, so neither
/// side blocks on a full socket; returns how many answers had each status.
pub fn pipeline(addr: SocketAddr, requests: &[Vec<u8>]) -> std::collections::BTreeMap<u16, usize> {
    let mut c = Client::connect(addr);
    let mut reader = Client::from_stream(c.stream.try_clone().unwrap());
    let n = requests.len();
    let t = std::thread::spawn(move || {
        let mut statuses = std::collections::BTreeMap::new();
        for _ in 0..n {
            *statuses.entry(reader.response().status).or_insert(0) += 1;
        }
        statuses
    });
    for chunk in requests.chunks(256) {
        c.send(&chunk.concat());
    }
    t.join().unwrap()
}
