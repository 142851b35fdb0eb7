//! Integration tests of `--static DIR` (issue 2): content types, index files, validators and
//! 304, large and pipelined files, and no way out of DIR.

mod support;
use support::http::*;
use support::*;

use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Static files (--static DIR)
// ---------------------------------------------------------------------------------------------

/// Content-Type by extension; a query string does not change which file is served.
#[test]
fn static_file_with_content_type() {
    let site = Site::new("ctype");
    let server = site.serve(&[]);
    let mut c = server.client();
    for path in ["/file.js", "/file.js?v=3"] {
        let r = get_on(&mut c, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, JS, "{path}");
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.contains("javascript"), "{path}: Content-Type {ct:?}");
    }
    let r = get_on(&mut c, "/hello%20world.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "hello world\n"));
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"));
    let r = get_on(&mut c, "/missing.txt");
    assert_error(&r, 404);
}

/// `/` → DIR/index.html when present (over the built-in page); a folder → its index.html.
#[test]
fn static_index_files() {
    let site = Site::new("index");
    let server = site.serve(&[]);
    let mut c = server.client();
    let r = get_on(&mut c, "/");
    assert_eq!((r.status, &r.body[..]), (200, INDEX));
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    let r = get_on(&mut c, "/sub/");
    assert_eq!((r.status, &r.body[..]), (200, SUB_INDEX));
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    // A folder without index.html is a 404, not a listing.
    let r = get_on(&mut c, "/a/");
    assert_error(&r, 404);
}

/// Without DIR/index.html, `/` is still the built-in page.
#[test]
fn static_dir_without_index_keeps_builtin_page() {
    let dir = TempDir::new("noindex");
    dir.write("x.txt", b"x");
    let server = Server::start(&["--static", dir.path.to_str().unwrap()]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    assert!(r.text().contains("pushwire"));
}

/// ETag and Last-Modified on files; If-None-Match / If-Modified-Since with the current
/// validator → 304 (RFC 9110 §13.1.2, §13.1.3), and If-None-Match wins over
/// If-Modified-Since (§13.2.2).
#[test]
fn static_validators_give_304() {
    let site = Site::new("etag");
    let server = site.serve(&[]);
    let mut c = server.client();
    let r = get_on(&mut c, "/file.js");
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("ETag").to_string();
    let lm = r.header("last-modified").expect("Last-Modified").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "ETag {etag:?}");
    httpdate::parse_http_date(&lm).unwrap_or_else(|e| panic!("Last-Modified {lm:?}: {e}"));

    let cond = |c: &mut Client, headers: &str| {
        c.send(format!("GET /file.js HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
        recv(c)
    };
    let r = cond(&mut c, &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());
    let r = cond(&mut c, &format!("If-None-Match: \"other\", {etag}\r\n"));
    assert_eq!(r.status, 304);
    let r = cond(&mut c, &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!(r.status, 304);
    let r = cond(&mut c, "If-None-Match: \"other\"\r\n");
    assert_eq!((r.status, &r.body[..]), (200, JS));
    let r = cond(&mut c, "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    assert_eq!((r.status, &r.body[..]), (200, JS));
    // §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    let r = cond(&mut c, &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"));
    assert_eq!((r.status, &r.body[..]), (200, JS));
    // 304s carried no body bytes: the connection is still in step.
    assert_ok_healthz(&get_on(&mut c, "/healthz"));
}

/// A large file is streamed intact; HEAD gives its length and no body.
#[test]
fn static_large_file_and_head() {
    let site = Site::new("large");
    let data = pattern(5 << 20);
    site.write("big.bin", &data);
    let server = site.serve(&[]);
    let mut c = server.client();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.large_response_to(false);
    check_common(&r);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5242880"));
    assert_same_bytes(&r.body, &data);
    c.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = recv_head(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5242880"));
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    // No body followed the HEAD response: the next response parses from its first byte.
    let r = get_on(&mut c, "/file.js");
    assert_eq!((r.status, &r.body[..]), (200, JS));
}

/// Requests pipelined behind a streamed file wait their turn and come out in order.
#[test]
fn static_pipelined_around_a_large_file() {
    let site = Site::new("pipe");
    let data = pattern(3 << 20);
    site.write("big.bin", &data);
    let server = site.serve(&[]);
    let mut c = server.client();
    c.send(
        b"GET /file.js HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /hello%20world.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(recv(&mut c).body, JS);
    let r = c.large_response_to(false);
    assert_eq!(r.status, 200);
    assert_same_bytes(&r.body, &data);
    let r = recv_head(&mut c);
    assert_eq!(r.header("content-length"), Some(data.len().to_string().as_str()));
    assert_eq!(recv(&mut c).text(), "hello world\n");
    assert_ok_healthz(&recv(&mut c));
    assert!(c.is_closed());
}

/// Issue 2: "no way out of DIR (`..`, encoded `%2e%2e`, symlinks leaving DIR → 404)".
/// The secret file exists just outside DIR, so a traversal that worked would return it.
#[test]
fn static_traversal_attempts_are_404() {
    let site = Site::new("traverse");
    let server = site.serve(&[]);
    let secret_abs = site.base.path.join("secret");
    let abs = secret_abs.to_str().unwrap();
    let encoded_abs = abs.replace('/', "%2F");
    let mut paths: Vec<String> = [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E/secret",
        "/a/%2E%2E/%2e%2e/secret",
        "/a/../../secret",
        "/..%2fsecret",
        "/..%2Fsecret",
        "/%2e%2e%2fsecret",
        "/a%2f..%2f..%2fsecret",
        "/..%5csecret",
        "/.%2e/secret",
        "/link-out",     // symlink to a file outside DIR
        "/dir-out/secret", // through a symlinked folder pointing outside DIR
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(format!("/{abs}")); // "//tmp/…/secret"
    paths.push(format!("/{encoded_abs}"));
    for path in &paths {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path} → {} {:?}", r.status, r.text());
        assert_error(&r, 404);
        assert!(!r.text().contains("TOP SECRET"), "{path} leaked the secret");
    }
    // A symlink that stays inside DIR is served (the 404s above are about leaving DIR).
    let r = server.get("/link-in.js");
    assert_eq!((r.status, &r.body[..]), (200, JS));
    assert!(Path::new(&secret_abs).exists());
}
