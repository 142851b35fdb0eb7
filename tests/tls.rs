//! TLS (`--tls-cert`, `--tls-key`) against the real server: certificates made here with
//! `rcgen` (a test CA and a leaf for localhost and 127.0.0.1), rustls and curl as clients.
//! HTTPS, WSS with large messages (the drain-until-WouldBlock read path and the two-stage
//! write), close_notify, the handshake timeout, refusals at start, and SIGHUP reloading.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::*;

/// A CA and a leaf it signed, written as PEM files.
struct Pki {
    dir: PathBuf,
    ca_der: Vec<u8>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("pushwire-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir, ca_der: Vec::new() };
        pki.issue("cert.pem", "key.pem")
    }

    /// A new CA and leaf, written to `cert` and `key` in the directory.
    fn issue(self, cert: &str, key: &str) -> Pki {
        self.issue_dated(cert, key, None)
    }

    /// ... with the leaf valid from and until the given years, if given.
    fn issue_dated(mut self, cert: &str, key: &str, years: Option<(i32, i32)>) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "pushwire test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        if let Some((from, until)) = years {
            leaf_params.not_before = rcgen::date_time_ymd(from, 1, 1);
            leaf_params.not_after = rcgen::date_time_ymd(until, 1, 1);
        }
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        std::fs::write(self.dir.join(cert), leaf.pem()).unwrap();
        std::fs::write(self.dir.join(key), leaf_key.serialize_pem()).unwrap();
        std::fs::write(self.dir.join("ca.pem"), ca.pem()).unwrap();
        self.ca_der = ca.der().to_vec();
        self
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn start(&self, extra: &[&str]) -> Server {
        let (cert, key) = (self.path("cert.pem"), self.path("key.pem"));
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    fn client_config(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone().into()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = ClientConfig::builder_with_provider(provider).with_protocol_versions(versions).unwrap().with_root_certificates(roots).with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(c)
    }

    fn connect(&self, server: &Server, versions: &[&'static rustls::SupportedProtocolVersion]) -> StreamOwned<ClientConnection, TcpStream> {
        let sock = TcpStream::connect(server.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = ClientConnection::new(self.client_config(versions), ServerName::try_from("localhost").unwrap()).unwrap();
        StreamOwned::new(conn, sock)
    }
}

const BOTH: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reads a response head (through its blank line) from `s`.
fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads one HTTP response (head and Content-Length body) from `s`.
fn response(s: &mut impl Read) -> (String, Vec<u8>) {
    let head = read_head(s);
    let len: usize = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap())).unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (head, body)
}

/// Publishes with `post` (which sends one POST and reads its answer) until the answer counts
/// one subscriber: the stream under test has been registered by then.
fn publish_until_counted(mut post: impl FnMut() -> (String, Vec<u8>)) {
    let t0 = Instant::now();
    loop {
        let (head, body) = post();
        assert!(head.starts_with("HTTP/1.1 202"), "{head}");
        if String::from_utf8_lossy(&body).contains("\"subscribers\":1") {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the subscriber never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads from `s` until what came contains `want`.
fn read_until(s: &mut impl Read, want: &str) {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(want) {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before {want:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn https_requests_on_tls_1_3_and_1_2_with_alpn_http_1_1() {
    let pki = Pki::new("https");
    let server = pki.start(&[]);
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let mut s = pki.connect(&server, versions);
        // Keep-alive: two requests on one TLS connection.
        for _ in 0..2 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            let (head, body) = response(&mut s);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(body, b"ok\n");
        }
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "h2 is offered first and not chosen");
        assert_eq!(s.conn.protocol_version().unwrap(), versions[0].version);
    }
    // A publish and an SSE subscriber over TLS.
    let mut sub = pki.connect(&server, BOTH);
    sub.write_all(b"GET /channels/t HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    read_head(&mut sub);
    let mut publisher = pki.connect(&server, BOTH);
    publish_until_counted(|| {
        publisher.write_all(b"POST /channels/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        response(&mut publisher)
    });
    read_until(&mut sub, "data: hello\n\n");
}

#[test]
fn wss_echo_with_large_messages() {
    let pki = Pki::new("wss");
    let server = pki.start(&[]);
    let s = pki.connect(&server, BOTH);
    let (mut ws, _) = tungstenite::client(format!("wss://localhost:{}/echo", server.addr.port()), s).expect("WebSocket over TLS");
    for n in [0usize, 5, 70_000, 1 << 20, 3 << 20] {
        let text: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        ws.send(tungstenite::Message::text(text.clone())).unwrap();
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => assert!(t.as_str() == text, "{n} bytes came back changed"),
            other => panic!("{other:?}"),
        }
    }
    ws.close(None).unwrap();
    // The close handshake completes and the server ends TLS with close_notify.
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn connection_close_ends_with_close_notify() {
    let pki = Pki::new("notify");
    let server = pki.start(&[]);
    let mut s = pki.connect(&server, BOTH);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    // rustls reports a connection that ends without close_notify as UnexpectedEof.
    s.read_to_end(&mut all).expect("a clean TLS close");
    assert!(String::from_utf8_lossy(&all).ends_with("\r\n\r\nok\n"), "{}", String::from_utf8_lossy(&all));
}

#[test]
fn curl_with_the_test_ca() {
    let pki = Pki::new("curl");
    let server = pki.start(&[]);
    let port = server.addr.port();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", &pki.path("ca.pem"), "--resolve", &format!("localhost:{port}:127.0.0.1"), &format!("https://localhost:{port}/healthz")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"ok\n");
    // Without the CA, curl refuses the certificate: it is the test CA's, not a public one.
    let out = std::process::Command::new("curl").args(["-sS", &format!("https://127.0.0.1:{port}/healthz")]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn bad_clients_are_dropped_and_the_handshake_is_timed() {
    let pki = Pki::new("bad");
    let server = pki.start(&["--header-timeout", "1"]);
    // Plain HTTP on the TLS port: not a ClientHello; the server closes the connection.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1"), "no plaintext answer: {buf:?}");
    // A client that connects and never says hello is closed by --header-timeout.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    // At most a TLS alert record (never the 408's plaintext) before the close.
    assert!(got.len() <= 7 && (got.is_empty() || got[0] == 0x15), "{got:?}");
    assert!(t0.elapsed() >= Duration::from_millis(900) && t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    // The server is unharmed.
    let mut s = pki.connect(&server, BOTH);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(response(&mut s).0.starts_with("HTTP/1.1 200"));
}

fn start_fails(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pushwire")).args(["--listen", "127.0.0.1:0"]).args(args).output().unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificates_are_refused_at_start_with_a_clear_message() {
    let pki = Pki::new("refuse").issue("other.pem", "other-key.pem");
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let other_key = pki.path("other-key.pem");
    // The key of another certificate.
    let e = start_fails(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert!(e.contains("--tls-key") && e.contains("cannot start"), "{e}");
    // A missing file, a file with no certificate, a key file with no key, one without the other.
    let e = start_fails(&["--tls-cert", "/nonexistent/cert.pem", "--tls-key", &key]);
    assert!(e.contains("--tls-cert /nonexistent/cert.pem"), "{e}");
    let e = start_fails(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = start_fails(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(e.contains("--tls-key"), "{e}");
    let e = start_fails(&["--tls-cert", &cert]);
    assert!(e.contains("--tls-cert and --tls-key go together"), "{e}");
    // Expired, and not valid yet.
    let pki = pki.issue_dated("old.pem", "old-key.pem", Some((2019, 2021))).issue_dated("future.pem", "future-key.pem", Some((2090, 2095)));
    let e = start_fails(&["--tls-cert", &pki.path("old.pem"), "--tls-key", &pki.path("old-key.pem")]);
    assert!(e.contains("old.pem: the certificate has expired"), "{e}");
    let e = start_fails(&["--tls-cert", &pki.path("future.pem"), "--tls-key", &pki.path("future-key.pem")]);
    assert!(e.contains("future.pem: the certificate is not valid yet"), "{e}");
    // A self-signed certificate (leaf and CA in one, as `openssl req -x509` makes) starts.
    let selfsigned = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(pki.dir.join("self.pem"), selfsigned.cert.pem()).unwrap();
    std::fs::write(pki.dir.join("self-key.pem"), selfsigned.key_pair.serialize_pem()).unwrap();
    drop(Server::start(&["--tls-cert", &pki.path("self.pem"), "--tls-key", &pki.path("self-key.pem")]));
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let old = Pki::new("reload");
    let server = old.start(&[]);
    let mut before = old.connect(&server, BOTH);
    before.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(response(&mut before).0.starts_with("HTTP/1.1 200"));
    // Renew: a new CA and leaf in the same files.
    let new = Pki { dir: old.dir.clone(), ca_der: Vec::new() }.issue("cert.pem", "key.pem");
    // A broken renewal first: the old certificate stays.
    std::fs::write(new.dir.join("key.pem.bak"), std::fs::read(new.dir.join("key.pem")).unwrap()).unwrap();
    std::fs::write(new.dir.join("key.pem"), b"not a key").unwrap();
    server.signal("HUP");
    wait_for_log(&server, "keeping the current certificate");
    std::fs::rename(new.dir.join("key.pem.bak"), new.dir.join("key.pem")).unwrap();
    server.signal("HUP");
    wait_for_log(&server, "TLS certificate reloaded");
    // New handshakes get the new certificate; the old connection goes on.
    let mut after = new.connect(&server, BOTH);
    after.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(response(&mut after).0.starts_with("HTTP/1.1 200"));
    before.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(response(&mut before).0.starts_with("HTTP/1.1 200"), "the connection from before the reload");
    let mut s = old.connect(&server, BOTH);
    assert!(s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").and_then(|_| s.read(&mut [0u8; 1])).is_err(), "the old CA no longer verifies");
}

fn wait_for_log(server: &Server, what: &str) {
    let t0 = Instant::now();
    while !server.log().contains(what) {
        assert!(t0.elapsed() < Duration::from_secs(5), "no {what:?} in the log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_plain_listener_beside_the_tls_one() {
    let pki = Pki::new("two");
    // The harness's bare --listen speaks TLS (a certificate is given); the second is plain.
    let server = pki.start(&["--listen", "http://127.0.0.1:0"]);
    wait_for_log(&server, "listening on http://");
    let log = server.log();
    let plain: std::net::SocketAddr = log.split("listening on http://").nth(1).expect("a plain listener in the log").split('/').next().unwrap().parse().unwrap();
    assert_ne!(plain, server.addr);
    assert!(log.contains(&format!("listening on https://{}/", server.addr)), "{log}");
    // An SSE subscriber over TLS, a publisher over plain HTTP on the loopback listener.
    let mut sub = pki.connect(&server, BOTH);
    sub.write_all(b"GET /channels/mixed HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    read_head(&mut sub);
    publish_until_counted(|| {
        let mut p = TcpStream::connect(plain).unwrap();
        p.write_all(b"POST /channels/mixed HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        response(&mut p)
    });
    read_until(&mut sub, "data: hi\n\n");
    // TLS on the plain listener fails; the plain one answers plain HTTP.
    let sock = TcpStream::connect(plain).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = ClientConnection::new(pki.client_config(BOTH), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    assert!(s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").and_then(|_| s.read(&mut [0u8; 1])).is_err());
}

#[test]
fn https_listen_needs_a_certificate() {
    let e = start_fails(&["--listen", "https://127.0.0.1:0"]);
    assert!(e.contains("needs --tls-cert and --tls-key"), "{e}");
}
