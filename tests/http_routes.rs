//! Integration tests of HTTP errors and routing (issue 2): malformed requests, 404/405/OPTIONS,
//! HEAD, the headers every response carries, and the built-in routes (`/`, `/healthz`, `/stats`).

mod support;
use support::http::*;
use support::*;

// ---------------------------------------------------------------------------------------------
// Errors and routing (RFC 9112 §3, RFC 9110 §15)
// ---------------------------------------------------------------------------------------------

/// A malformed request line or header line → 400 and close.
#[test]
fn malformed_request_is_400() {
    let server = Server::start(&[]);
    let bad: &[&[u8]] = &[
        b"\x01\x02 / HTTP/1.1\r\nHost: t\r\n\r\n",             // control bytes as the method
        b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",                  // '(' is not a token character
        b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n", // header line without a colon
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",                 // RFC 9112 §5.1: space before the colon MUST be 400
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", // obs-fold (RFC 9112 §5.2)
    ];
    for raw in bad {
        let mut c = server.client();
        c.send(raw);
        let r = recv(&mut c);
        assert_eq!(r.status, 400, "{:?} → {} {:?}", String::from_utf8_lossy(raw), r.status, r.text());
        assert_error(&r, 400);
        assert!(is_close(&r));
        assert!(c.is_closed());
    }
}

/// Only HTTP/1.x is spoken: another major version → 505 and close.
#[test]
fn http2_request_line_is_505() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
}

/// RFC 9112 §3.2: an HTTP/1.1 request without Host → 400 (HTTP/1.0 needs none).
#[test]
fn http11_without_host_is_400() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"GET /healthz HTTP/1.1\r\n\r\n", 400);
    let (_, r) = fresh(&server, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_ok_healthz(&r);
}

/// RFC 9112 §3.2: a server MUST answer 400 to a request "that contains more than one Host
/// header field line".
#[test]
fn two_host_headers_is_400() {
    let server = Server::start(&[]);
    error_on_fresh(&server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

/// Unknown path → 404 with a text body and a correct Content-Length; the connection stays
/// usable (no stray bytes after the body).
#[test]
fn unknown_path_is_404() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let r = get_on(&mut c, "/no/such/thing");
    assert_error(&r, 404);
    assert!(!is_close(&r));
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// Known path, wrong method → 405 with `Allow` (RFC 9110 §15.5.6: MUST send Allow).
#[test]
fn wrong_method_is_405_with_allow() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for (method, path) in [("DELETE", "/healthz"), ("PUT", "/"), ("POST", "/stats"), ("PATCH", "/healthz")] {
        c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes());
        let r = recv(&mut c);
        assert_error(&r, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{method} {path}");
        assert!(!is_close(&r));
    }
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// OPTIONS on a known path → 204 with Allow; 204 carries no Content-Length (RFC 9110 §8.6).
#[test]
fn options_is_204_with_allow() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for path in ["/healthz", "/", "/stats"] {
        c.send(format!("OPTIONS {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = recv(&mut c);
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"), "{path}");
        assert_eq!(r.header("content-length"), None, "{path}");
        assert!(r.body.is_empty());
    }
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests".
#[test]
fn absolute_form_target_is_accepted() {
    let server = Server::start(&[]);
    let (_, r) = fresh(&server, b"GET http://t/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200, "absolute-form target got {} {:?}", r.status, r.text());
    assert_ok_healthz(&r);
}

// ---------------------------------------------------------------------------------------------
// HEAD (RFC 9110 §9.3.2: same headers as GET, no content)
// ---------------------------------------------------------------------------------------------

#[test]
fn head_is_get_without_a_body() {
    let server = Server::start(&[]);
    let mut c = server.client();
    for path in ["/", "/healthz", "/no/such/thing"] {
        let get = get_on(&mut c, path);
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = recv_head(&mut c);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(head.header("content-length"), Some(get.body.len().to_string().as_str()), "{path}");
        assert_eq!(head.header("content-type"), get.header("content-type"), "{path}");
        // If the HEAD response had carried body bytes, this response would not parse.
        assert_ok_healthz(&get_on(&mut c, "/healthz"));
    }
}

// ---------------------------------------------------------------------------------------------
// Date, Server and error bodies on every response
// ---------------------------------------------------------------------------------------------

/// One request per status the server can send; each response has Date and Server (checked
/// in `recv`), and every error has a short text body whose length is its Content-Length.
#[test]
fn every_response_has_date_server_and_error_text() {
    let dir = TempDir::new("every");
    dir.write("f.txt", b"file\n");
    let www = dir.path.to_str().unwrap();
    let server = Server::start(&["--static", www, "--header-timeout", "1", "--max-body", "100"]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /f.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
        (b"GET /f.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n".to_vec(), 304),
        (b"OPTIONS /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 204),
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 404),
        (b"DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nHost: t".to_vec(), 408),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n".to_vec(), 413),
        (head_with_headers(100).into_bytes(), 431),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n".to_vec(), 501),
        (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n".to_vec(), 505),
    ];
    for (raw, status) in cases {
        let (_c, r) = fresh(&server, &raw);
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&raw));
        if status >= 400 {
            assert_error(&r, status);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Built-in routes
// ---------------------------------------------------------------------------------------------

#[test]
fn index_page_is_html() {
    let server = Server::start(&[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"), "{:?}", r.headers);
    let html = r.text();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"), "{}", &html[..html.len().min(80)]);
    assert!(html.contains("pushwire"));
}

#[test]
fn healthz_is_200_ok() {
    let server = Server::start(&[]);
    let r = server.get("/healthz");
    assert_ok_healthz(&r);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"));
}

/// `/stats`: JSON with open connections by kind, requests, bytes in/out, uptime.
#[test]
fn stats_is_json_with_counters() {
    let server = Server::start(&[]);
    let a = stats(&server);
    for kind in ["http", "websocket", "sse", "longpoll", "total"] {
        assert!(a["connections"][kind].is_u64(), "connections.{kind} in {a}");
    }
    for key in ["requests", "bytes_in", "bytes_out", "uptime_secs"] {
        assert!(a[key].is_u64(), "{key} in {a}");
    }
    let b = stats(&server);
    assert_eq!(b["requests"].as_u64().unwrap(), a["requests"].as_u64().unwrap() + 1, "{a} then {b}");
    assert!(bytes_in(&b) >= bytes_in(&a) + STATS_REQ.len() as u64, "{a} then {b}");
    assert!(b["bytes_out"].as_u64().unwrap() > a["bytes_out"].as_u64().unwrap(), "{a} then {b}");

    // Open connections are counted by kind; the /stats connection itself is one of them.
    let conns = |v: &serde_json::Value, k: &str| v["connections"][k].as_u64().unwrap();
    wait_for("only the /stats connection open", || conns(&stats(&server), "http") == 1);
    let idle: Vec<Client> = (0..3).map(|_| server.client()).collect();
    wait_for("three more http connections", || {
        let s = stats(&server);
        conns(&s, "http") == 4 && conns(&s, "total") == 4
    });
    let s = stats(&server);
    for kind in ["websocket", "sse", "longpoll"] {
        assert_eq!(conns(&s, kind), 0, "{kind} in {s}");
    }
    drop(idle);
    wait_for("the idle connections to be counted as closed", || conns(&stats(&server), "total") == 1);
}
