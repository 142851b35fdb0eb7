//! Helpers of the HTTP-core tests (tests/http_*.rs, static_files.rs, shutdown.rs, cli.rs):
//! reading responses and checking what every response carries, errors, `/stats`, byte patterns,
//! and a static site in a temp folder.

use super::*;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What every response must carry: `Date` as an IMF-fixdate close to now (RFC 9110 §6.6.1)
/// and `Server: pushwire/VERSION` (issue 2, PROTOCOL.md "Every response").
pub fn check_common(r: &Response) {
    let server = r.header("server").unwrap_or_else(|| panic!("no Server header in {r:?}"));
    assert!(server.starts_with("pushwire/"), "Server: {server:?}");
    let date = r.header("date").unwrap_or_else(|| panic!("no Date header in {r:?}"));
    let t = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("Date {date:?} is not an HTTP date: {e}"));
    let skew = SystemTime::now().duration_since(t).unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(60), "Date {date:?} is far from now");
}

/// Reads one response (not to a HEAD) and checks the headers every response has.
pub fn recv(c: &mut Client) -> Response {
    let r = c.response();
    check_common(&r);
    r
}

/// Reads the response to a HEAD request (no body bytes follow the head).
pub fn recv_head(c: &mut Client) -> Response {
    let r = c.response_to(true);
    check_common(&r);
    r
}

/// `GET path` on an existing keep-alive connection.
pub fn get_on(c: &mut Client, path: &str) -> Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    recv(c)
}

/// One request on a fresh connection; returns the connection too, to check what follows.
pub fn fresh(server: &Server, raw: &[u8]) -> (Client, Response) {
    let mut c = server.client();
    c.send(raw);
    let r = recv(&mut c);
    (c, r)
}

pub fn is_close(r: &Response) -> bool {
    r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// An error response: the status, a short `text/plain` body whose length is the
/// Content-Length (issue 2: "Every error response has a short text body and a correct
/// Content-Length").
pub fn assert_error(r: &Response, status: u16) {
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
pub fn expect_error_close(c: &mut Client, status: u16) -> Response {
    let r = recv(c);
    assert_error(&r, status);
    assert!(is_close(&r), "{status} without Connection: close: {:?}", r.headers);
    assert!(c.is_closed(), "connection still open (or more bytes sent) after {status}");
    r
}

/// Sends `raw` on a fresh connection and expects `status` and a close.
pub fn error_on_fresh(server: &Server, raw: &[u8], status: u16) -> Response {
    let mut c = server.client();
    c.send(raw);
    expect_error_close(&mut c, status)
}

pub fn assert_ok_healthz(r: &Response) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok\n");
    assert_eq!(r.header("content-length"), Some("3"));
}

/// The exact request `stats` sends, so its length can be subtracted from `bytes_in`.
pub const STATS_REQ: &str = "GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

pub fn stats(server: &Server) -> serde_json::Value {
    let (_c, r) = fresh(server, STATS_REQ.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {}", r.text()))
}

pub fn bytes_in(v: &serde_json::Value) -> u64 {
    v["bytes_in"].as_u64().expect("bytes_in")
}

/// Waits until the server has read `n` bytes more than the `before` snapshot showed (the
/// /stats requests made while waiting are subtracted). Used to know that a partial request
/// has reached the server before the test acts on it.
pub fn wait_server_read(server: &Server, before: &serde_json::Value, n: usize) {
    let base = bytes_in(before);
    let mut polls = 0u64;
    wait_for("the server to read the bytes sent", || {
        polls += 1;
        bytes_in(&stats(server)) >= base + n as u64 + polls * STATS_REQ.len() as u64
    });
}

/// A request with `Host` plus `extra` more headers.
pub fn head_with_headers(extra: usize) -> String {
    let mut s = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..extra {
        s.push_str(&format!("X-H{i}: v\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// Bytes that are not periodic at any power of two, so a misplaced piece shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

pub fn assert_same_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("bytes differ first at offset {i}");
    }
}

/// Asserts that `elapsed` lies in [lo, hi] seconds.
pub fn assert_between(what: &str, elapsed: Duration, lo: f64, hi: f64) {
    let s = elapsed.as_secs_f64();
    assert!(s >= lo && s <= hi, "{what}: took {s:.2}s, expected between {lo}s and {hi}s");
}

// ---- Static files ----

pub const SECRET: &[u8] = b"TOP SECRET: outside the static folder\n";
pub const INDEX: &[u8] = b"<!doctype html><title>static index</title>\n";
pub const JS: &[u8] = b"console.log('hello from file.js');\n";
pub const SUB_INDEX: &[u8] = b"<p>sub index</p>\n";

/// A temp folder `base` with `base/secret` (outside) and `base/www` (served):
/// index.html, file.js, sub/index.html, "hello world.txt", a/b.txt, and symlinks
/// `link-out` → ../secret, `dir-out` → .., `link-in.js` → file.js.
pub struct Site {
    pub base: TempDir,
    www: PathBuf,
}

impl Site {
    pub fn new(tag: &str) -> Site {
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

    pub fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["--static", self.www.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        self.base.write(&format!("www/{rel}"), bytes)
    }
}
