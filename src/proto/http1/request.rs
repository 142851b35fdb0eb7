//! The request head: request line and headers, parsed with `httparse`.
//!
//! [`parse_head`] never consumes partial input: it answers `Ok(None)` until the whole head
//! is in the buffer, then returns an owned [`RequestHead`] and the number of bytes it used.
//! The head is copied once into its own buffer and its parts are kept as ranges, so a
//! request costs two small allocations however many headers it has.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::Framing;
use crate::error::HttpError;

/// The most headers any configuration may allow; bounds the stack array given to httparse.
pub const HARD_MAX_HEADERS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn from_bytes(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other => "OTHER",
        }
    }
}

/// Limits the head parser enforces (from [`crate::config::Config`]).
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

/// A parsed request head. Header names keep their case; lookups ignore it.
#[derive(Clone, Debug)]
pub struct RequestHead {
    raw: Box<[u8]>,
    pub method: Method,
    method_range: Range<usize>,
    target: Range<usize>,
    /// Within the target: the path (origin-form) and the query.
    path: Range<usize>,
    query: Option<Range<usize>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// How the body is delimited (RFC 9112 §6.3), already validated.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

impl RequestHead {
    pub fn method_str(&self) -> &str {
        // httparse only accepts token characters in the method, which are ASCII.
        std::str::from_utf8(&self.raw[self.method_range.clone()]).unwrap_or("")
    }

    /// The request target as sent (path and query, still percent-encoded).
    pub fn target(&self) -> &str {
        // httparse only accepts visible ASCII in the target (it rejects bytes >= 0x80 as
        // a token error only in strict builds), so check rather than assume.
        std::str::from_utf8(&self.raw[self.target.clone()]).unwrap_or("")
    }

    /// The path part of the target, without the query, in origin-form (RFC 9112 §3.2.2:
    /// "A server MUST accept the absolute-form in requests", so `http://host/p?q` gives `/p`).
    pub fn path(&self) -> &str {
        if self.path.is_empty() {
            return "/";
        }
        &self.target()[self.path.clone()]
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        let t = self.target();
        self.query.clone().map(|q| &t[q])
    }

    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The values of every header with this name, in order. Compares bytes: a lookup must
    /// not cost a UTF-8 check of every header name.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| self.raw[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| &self.raw[v.clone()])
    }

    /// The first header with this name, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(move |(n, v)| {
            (
                std::str::from_utf8(&self.raw[n.clone()]).unwrap_or(""),
                &self.raw[v.clone()],
            )
        })
    }

    /// Whether the comma-separated token list in every `name` header contains `token`
    /// (ASCII case-insensitive), e.g. `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).any(|v| list_has_token(v, token))
    }
}

fn list_has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Finds the end of a request head in `buf`, starting the search at `from` (so a head that
/// trickles in one byte at a time is scanned once, not once per byte). Returns the length
/// of the head including its blank line. Accepts bare LF line ends, like httparse.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Parses one request head from the start of `buf`.
///
/// `Ok(None)`: incomplete, nothing consumed (but `buf` is already too long → 431).
/// `Ok(Some((head, n)))`: the head used `n` bytes; the body (if any) starts at `buf[n..]`.
pub fn parse_head(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let max_headers = limits.max_headers.min(HARD_MAX_HEADERS);
    let mut storage: [MaybeUninit<httparse::Header<'_>>; HARD_MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; HARD_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut storage[..max_headers]);
    let used = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HttpError::VersionNotSupported),
        Err(_) => return Err(HttpError::BadRequest("malformed request head")),
    };
    if used > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }

    // httparse hands out slices of `buf`; keep their offsets into our own copy.
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let method_s = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    let minor_version = req.version.unwrap_or(1);
    if path.is_empty() {
        return Err(HttpError::BadRequest("empty request target"));
    }
    let headers: Vec<_> = req
        .headers
        .iter()
        .map(|h| (range(h.name.as_bytes()), range(h.value)))
        .collect();
    let method_range = range(method_s.as_bytes());
    let target = range(path.as_bytes());
    let (path_r, query_r) = split_target(path);
    let mut head = RequestHead {
        raw: buf[..used].into(),
        method: Method::from_bytes(method_s),
        method_range,
        target,
        path: path_r,
        query: query_r,
        minor_version,
        headers,
        framing: Framing::None,
        keep_alive: true,
        expect_continue: false,
    };
    head.framing = body_framing(&head)?;
    head.keep_alive = keep_alive(&head);
    // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    // request MUST ignore that expectation."
    head.expect_continue = head.minor_version == 1
        && head.header("expect").is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field".
    let hosts = head.values("host").count();
    if hosts > 1 {
        return Err(HttpError::BadRequest("more than one Host header"));
    }
    if head.minor_version == 1 && hosts == 0 {
        return Err(HttpError::BadRequest("missing Host header"));
    }
    Ok(Some((head, used)))
}

/// Where the path and the query lie within a target, which may be in absolute-form.
fn split_target(t: &str) -> (Range<usize>, Option<Range<usize>>) {
    let path_start = if t.starts_with('/') {
        0
    } else {
        match t.find("://") {
            // absolute-form: skip the scheme and authority; an empty path is "/".
            Some(i) => t[i + 3..].find(['/', '?']).map_or(t.len(), |j| i + 3 + j),
            None => 0,
        }
    };
    let (path_end, query) = match t[path_start..].find('?') {
        Some(q) => (path_start + q, Some(path_start + q + 1..t.len())),
        None => (t.len(), None),
    };
    let path = if path_end == path_start { 0..0 } else { path_start..path_end };
    (path, query)
}

/// RFC 9112 §6.3: how the body is delimited.
fn body_framing(head: &RequestHead) -> Result<Framing, HttpError> {
    let mut te = head.values("transfer-encoding");
    let mut cl = head.values("content-length");
    let te_first = te.next();
    let cl_first = cl.next();
    match (te_first, cl_first) {
        (Some(_), Some(_)) => {
            // §6.3: a message with both "ought to be handled as an error"; answering 400
            // closes the request-smuggling door that a proxy in front might leave open.
            Err(HttpError::BadRequest("both Content-Length and Transfer-Encoding"))
        }
        (Some(v), None) => {
            if te.next().is_some() || !v.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                // We only decode `chunked`, and it must be the only (final) coding.
                return Err(HttpError::NotImplemented("unsupported Transfer-Encoding"));
            }
            if head.minor_version == 0 {
                // §6.1: chunked is not defined in HTTP/1.0.
                return Err(HttpError::BadRequest("Transfer-Encoding in an HTTP/1.0 request"));
            }
            Ok(Framing::Chunked)
        }
        (None, Some(v)) => {
            let n = parse_content_length(v)?;
            // Repeated Content-Length headers must all agree (§6.3, item 5).
            for other in cl {
                if parse_content_length(other)? != n {
                    return Err(HttpError::BadRequest("conflicting Content-Length headers"));
                }
            }
            Ok(if n == 0 { Framing::None } else { Framing::Length(n) })
        }
        (None, None) => Ok(Framing::None),
    }
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. Leading zeros are well-formed, so the value
/// is judged, not the digit count: a value past `u64` saturates, and the body limit then
/// answers it with 413 like any other length over the limit.
fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest("invalid Content-Length"));
    }
    Ok(v.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
fn keep_alive(head: &RequestHead) -> bool {
    if head.header_has_token("connection", "close") {
        return false;
    }
    head.minor_version == 1 || head.header_has_token("connection", "keep-alive")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_head_bytes: 16384, max_headers: 100 };

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, HttpError> {
        parse_head(s.as_bytes(), LIMITS)
    }

    #[test]
    fn complete_get() {
        let (h, n) = parse("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Y: z\r\n\r\nrest").unwrap().unwrap();
        assert_eq!(n, 42);
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(), "/a/b");
        assert_eq!(h.query(), Some("x=1"));
        assert_eq!(h.header("x-y"), Some(&b"z"[..]));
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn absolute_form() {
        let t = |target: &str| {
            let (h, _) = parse(&format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n")).unwrap().unwrap();
            (h.path().to_string(), h.query().map(str::to_string))
        };
        assert_eq!(t("http://h/a/b?x=1"), ("/a/b".into(), Some("x=1".into())));
        assert_eq!(t("http://h:8000"), ("/".into(), None));
        assert_eq!(t("http://h?q"), ("/".into(), Some("q".into())));
        assert_eq!(t("/?q"), ("/".into(), Some("q".into())));
    }

    #[test]
    fn partial_is_none_at_every_split() {
        let full = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for i in 0..full.len() {
            assert!(parse(&full[..i]).unwrap().is_none(), "split at {i}");
        }
        let (h, n) = parse(full).unwrap().unwrap();
        assert_eq!(n, full.len());
        assert_eq!(h.framing, Framing::Length(3));
    }

    // (name, request, expected error)
    const ERRORS: &[(&str, &str, HttpError)] = &[
        ("garbage", "\x01\x02 / HTTP/1.1\r\n\r\n", HttpError::BadRequest("malformed request head")),
        ("no host", "GET / HTTP/1.1\r\n\r\n", HttpError::BadRequest("missing Host header")),
        ("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpError::BadRequest("more than one Host header")),
        ("both framings", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            HttpError::BadRequest("both Content-Length and Transfer-Encoding")),
        ("bad length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", HttpError::BadRequest("invalid Content-Length")),
        ("negative length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", HttpError::BadRequest("invalid Content-Length")),
        ("conflicting lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            HttpError::BadRequest("conflicting Content-Length headers")),
        ("gzip te", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", HttpError::NotImplemented("unsupported Transfer-Encoding")),
        ("http/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", HttpError::VersionNotSupported),
    ];

    #[test]
    fn error_table() {
        for (name, req, want) in ERRORS {
            assert_eq!(parse(req).unwrap_err(), *want, "{name}");
        }
    }

    #[test]
    fn content_length_values_not_digit_counts() {
        let len = |v: &str| parse(&format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n")).map(|r| r.unwrap().0.framing);
        assert_eq!(len("00000000000000000000005"), Ok(Framing::Length(5)));
        assert_eq!(len("0000000000000000000000"), Ok(Framing::None));
        // Past u64: saturated, so the reader's body limit answers it (413).
        assert_eq!(len("99999999999999999999999"), Ok(Framing::Length(u64::MAX)));
    }

    #[test]
    fn limits() {
        let many: String = (0..101).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        assert_eq!(parse(&req).unwrap_err(), HttpError::TooManyHeaders);
        let big = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(17000));
        assert_eq!(parse(&big).unwrap_err(), HttpError::HeadTooLarge);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| parse(s).unwrap().unwrap().0.keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, keep-alive\r\n\r\n"));
    }

    #[test]
    fn head_end_scan() {
        let b = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nX";
        assert_eq!(find_head_end(b, 0), Some(27));
        for from in 0..27 {
            assert_eq!(find_head_end(b, from), Some(27), "from {from}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\n", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: h\r\n", 0), None);
    }
}
