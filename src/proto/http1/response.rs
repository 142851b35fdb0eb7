//! Responses: what a route returns, and the writer of the status line and headers.

use std::borrow::Cow;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const SERVER: &str = concat!("pushwire/", env!("CARGO_PKG_VERSION"));

/// A response body held in memory. Embedded pages are `Static` (never copied), fan-out
/// payloads are `Shared`.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl Body {
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Empty => &[],
            Body::Static(b) => b,
            Body::Owned(v) => v,
            Body::Shared(r) => r,
        }
    }
}

/// A complete response, as a route builds it. The writer adds `Date`, `Server`,
/// `Content-Length` and `Connection`.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Body) -> Self {
        let headers = if content_type.is_empty() {
            Vec::new()
        } else {
            vec![("Content-Type", Cow::Borrowed(content_type))]
        };
        Response { status, headers, body }
    }

    pub fn text(status: u16, text: impl Into<String>) -> Self {
        let mut body = text.into().into_bytes();
        body.push(b'\n');
        Response::new(status, "text/plain; charset=utf-8", Body::Owned(body))
    }

    pub fn static_text(status: u16, text: &'static str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", Body::Static(text.as_bytes()))
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response::new(status, "application/json", Body::Owned(body))
    }

    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// RFC 9110 §15: the reason phrases of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// RFC 9110 §6.4.1 / §8.6: these statuses never carry content, and 1xx/204 no Content-Length.
pub fn status_has_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

/// The `Date` header value, formatted once per second (RFC 9110 §6.6.1: IMF-fixdate).
/// Time is a parameter so the codec stays clock-free.
pub struct DateCache {
    secs: u64,
    text: String,
}

impl DateCache {
    pub fn new(now: SystemTime) -> Self {
        let mut d = DateCache { secs: u64::MAX, text: String::new() };
        d.update(now);
        d
    }

    pub fn update(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = httpdate::fmt_http_date(now);
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// How the connection continues after this response, which decides the `Connection` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    /// HTTP/1.1 keep-alive: nothing to say.
    KeepAlive11,
    /// HTTP/1.0 keep-alive: must be stated.
    KeepAlive10,
    /// The server closes after this response.
    Close,
    /// The connection becomes a stream that ends with the connection (SSE): no length.
    Stream,
    /// The connection switches protocols (101): the route's headers say `Connection: Upgrade`.
    Upgrade,
}

/// Writes the status line and headers. `content_length` is `None` for statuses without
/// content and for streams.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&'static str, Cow<'static, str>)],
    content_length: Option<u64>,
    persist: Persist,
    date: &DateCache,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // A header value never carries CR or LF: routes build values from request data
        // (paths, origins), and response splitting must be impossible.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            out.extend(value.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        } else {
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_u64(out, n);
        out.extend_from_slice(b"\r\n");
    }
    match persist {
        Persist::KeepAlive11 | Persist::Upgrade => {}
        Persist::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close | Persist::Stream => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits without going through `fmt` (this runs once per response).
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_bytes() {
        let date = DateCache::new(UNIX_EPOCH);
        let mut out = Vec::new();
        let hdrs = [("Content-Type", Cow::Borrowed("text/plain")), ("X-Evil", Cow::Borrowed("a\r\nSet-Cookie: x"))];
        write_head(&mut out, 200, &hdrs, Some(2), Persist::Close, &date);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            format!(
                "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
                 Content-Type: text/plain\r\nX-Evil: aSet-Cookie: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
            )
        );
    }

    #[test]
    fn digits() {
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
    }
}
