//! The server side of one HTTP/1.1 connection's input: bytes in, requests out.
//!
//! ```text
//!            head complete, no body
//!   Head ─────────────────────────────▶ (Request) ─▶ Head
//!    │ head complete, body announced          ▲
//!    ▼                                        │ body complete
//!   Body { Content-Length | chunked } ────────┘
//! ```
//!
//! Sans-IO: the connection hands in whatever bytes it has buffered, the reader says how many
//! it used and what happened. It never reads a clock; the loop owns the timeouts.

use super::body::{ChunkedDecoder, Framing};
use super::request::{find_head_end, parse_head, HeadLimits, RequestHead};
use crate::error::HttpError;

/// The most a body buffer starts with; past it, it grows with what arrives.
const BODY_FIRST_CAPACITY: usize = 16 * 1024;

/// The length of the empty lines (CRLF or bare LF) at the start of `input`.
fn leading_empty_lines(input: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match input[i..] {
            [b'\n', ..] => i += 1,
            [b'\r', b'\n', ..] => i += 2,
            _ => return i,
        }
    }
}

/// A complete request: head and (de-chunked) body.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum ReadEvent {
    Request(Request),
    /// The client sent `Expect: 100-continue` and waits for `100 Continue` before the body.
    SendContinue,
}

#[derive(Clone, Copy, Debug)]
pub struct ReaderLimits {
    pub head: HeadLimits,
    pub max_body_bytes: usize,
}

/// The body phases are boxed: a connection waiting for its next request (the common state,
/// and the one every idle connection is in) then carries a few words, not a parsed head.
#[derive(Debug)]
enum Phase {
    /// Waiting for a complete head; `scanned` bytes were already searched for its end.
    Head { scanned: usize },
    Body(Box<LengthBody>),
    Chunked(Box<ChunkedBody>),
}

#[derive(Debug)]
struct LengthBody {
    head: Option<RequestHead>,
    left: u64,
    body: Vec<u8>,
}

#[derive(Debug)]
struct ChunkedBody {
    head: Option<RequestHead>,
    decoder: ChunkedDecoder,
    body: Vec<u8>,
}

#[derive(Debug)]
pub struct RequestReader {
    phase: Phase,
    limits: ReaderLimits,
    /// Bytes of empty lines consumed since the last request (capped like a head).
    empty_lines: usize,
}

impl RequestReader {
    pub fn new(limits: ReaderLimits) -> Self {
        RequestReader { phase: Phase::Head { scanned: 0 }, limits, empty_lines: 0 }
    }

    /// True while a body is being received (the loop applies the body timeout).
    pub fn in_body(&self) -> bool {
        !matches!(self.phase, Phase::Head { .. })
    }

    /// Uses bytes from the start of `input`, which must begin where the previous call's used
    /// bytes ended. Returns the bytes used and, if one completed, an event. Call again while
    /// it returns an event: several pipelined requests may be waiting.
    pub fn advance(&mut self, input: &[u8]) -> Result<(usize, Option<ReadEvent>), HttpError> {
        match &mut self.phase {
            Phase::Head { scanned } => {
                // RFC 9112 §2.2: "a server that is expecting to receive and parse a
                // request-line SHOULD ignore at least one empty line (CRLF) received prior to
                // the request-line". Consumed at once, so a CRLF some clients send after a
                // body leaves the connection idle (not a head in progress that would time
                // out with a 408); counted, so an endless stream of them ends in 431.
                let skip = leading_empty_lines(input);
                if skip > 0 {
                    self.empty_lines += skip;
                    if self.empty_lines > self.limits.head.max_head_bytes {
                        return Err(HttpError::HeadTooLarge);
                    }
                    *scanned = 0;
                    return Ok((skip, None));
                }
                let Some(end) = find_head_end(input, *scanned) else {
                    if input.len() > self.limits.head.max_head_bytes {
                        return Err(HttpError::HeadTooLarge);
                    }
                    *scanned = input.len();
                    return Ok((0, None));
                };
                let Some((head, used)) = parse_head(&input[..end], self.limits.head)? else {
                    // find_head_end saw a blank line, so httparse must see a complete head.
                    return Err(HttpError::BadRequest("malformed request head"));
                };
                debug_assert_eq!(used, end);
                self.empty_lines = 0;
                match head.framing {
                    Framing::None => {
                        self.phase = Phase::Head { scanned: 0 };
                        Ok((used, Some(ReadEvent::Request(Request { head, body: Vec::new() }))))
                    }
                    Framing::Length(n) => {
                        if n > self.limits.max_body_bytes as u64 {
                            return Err(HttpError::PayloadTooLarge);
                        }
                        let expect = head.expect_continue && input.len() == used;
                        // Grown as bytes arrive, never reserved from the announced length: a
                        // head announcing 500 MB costs nothing until 500 MB are sent.
                        let body = Vec::with_capacity((n as usize).min(BODY_FIRST_CAPACITY));
                        self.phase = Phase::Body(Box::new(LengthBody { head: Some(head), left: n, body }));
                        Ok((used, expect.then_some(ReadEvent::SendContinue)))
                    }
                    Framing::Chunked => {
                        let expect = head.expect_continue && input.len() == used;
                        let decoder = ChunkedDecoder::new(self.limits.max_body_bytes);
                        self.phase = Phase::Chunked(Box::new(ChunkedBody { head: Some(head), decoder, body: Vec::new() }));
                        Ok((used, expect.then_some(ReadEvent::SendContinue)))
                    }
                }
            }
            Phase::Body(b) => {
                let take = input.len().min(b.left as usize);
                b.body.extend_from_slice(&input[..take]);
                b.left -= take as u64;
                if b.left > 0 {
                    return Ok((take, None));
                }
                let req = Request { head: b.head.take().expect("head"), body: std::mem::take(&mut b.body) };
                self.phase = Phase::Head { scanned: 0 };
                Ok((take, Some(ReadEvent::Request(req))))
            }
            Phase::Chunked(c) => {
                let used = c.decoder.decode(input, &mut c.body)?;
                if !c.decoder.is_done() {
                    return Ok((used, None));
                }
                let req = Request { head: c.head.take().expect("head"), body: std::mem::take(&mut c.body) };
                self.phase = Phase::Head { scanned: 0 };
                Ok((used, Some(ReadEvent::Request(req))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ReaderLimits = ReaderLimits {
        head: HeadLimits { max_head_bytes: 16384, max_headers: 100 },
        max_body_bytes: 1024,
    };

    /// Feeds `input` in pieces of `step` bytes the way the loop does (keeping unused bytes)
    /// and collects (path, body) of each request.
    fn run(input: &[u8], step: usize) -> Result<Vec<(String, Vec<u8>)>, HttpError> {
        let mut r = RequestReader::new(LIMITS);
        let pieces: Vec<&[u8]> = input.chunks(step).collect();
        let (events, err) = crate::fuzzing::feed_pieces(&pieces, |buf| r.advance(buf));
        if let Some(e) = err {
            return Err(e);
        }
        Ok(events
            .into_iter()
            .filter_map(|ev| match ev {
                ReadEvent::Request(req) => Some((req.head.path().to_string(), req.body)),
                ReadEvent::SendContinue => None,
            })
            .collect())
    }

    #[test]
    fn pipelined_mixed_bodies_any_split() {
        let input = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\nHost: h\r\n\r\n";
        let want = vec![
            ("/a".to_string(), vec![]),
            ("/b".to_string(), b"hello".to_vec()),
            ("/c".to_string(), b"abc".to_vec()),
            ("/d".to_string(), vec![]),
        ];
        for step in [1, 2, 3, 7, 50, input.len()] {
            assert_eq!(run(input, step).unwrap(), want, "step {step}");
        }
    }

    #[test]
    fn body_limit() {
        let big = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1025\r\n\r\n";
        assert_eq!(run(big, 1000).unwrap_err(), HttpError::PayloadTooLarge);
        let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n";
        assert_eq!(run(chunked, 1000).unwrap_err(), HttpError::PayloadTooLarge);
    }

    #[test]
    fn empty_lines_before_the_request_line_are_ignored() {
        for prefix in ["\r\n", "\r\n\r\n", "\n\n\r\n"] {
            let input = format!("{prefix}GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
            for step in [1, 2, input.len()] {
                assert_eq!(run(input.as_bytes(), step).unwrap(), vec![("/a".to_string(), vec![])], "{prefix:?} step {step}");
            }
        }
        // Between pipelined requests too (some clients send a CRLF after a POST body).
        let two = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(run(two, 3).unwrap().len(), 2);
        // Endless empty lines are a head over the limit, not a connection held forever.
        let endless = "\r\n".repeat(LIMITS.head.max_head_bytes);
        assert_eq!(run(endless.as_bytes(), 4096).unwrap_err(), HttpError::HeadTooLarge);
        // An empty line after a request is consumed: nothing is left as a head in progress.
        let mut r = RequestReader::new(LIMITS);
        let req = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\r\n";
        let (used, ev) = r.advance(req).unwrap();
        assert!(matches!(ev, Some(ReadEvent::Request(_))));
        assert!(matches!(r.advance(&req[used..]).unwrap(), (2, None)));
    }

    #[test]
    fn a_large_announced_body_reserves_nothing_up_front() {
        let limits = ReaderLimits { max_body_bytes: 1 << 30, ..LIMITS };
        let mut r = RequestReader::new(limits);
        let head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 500000000\r\n\r\n";
        assert_eq!(r.advance(head).unwrap().0, head.len());
        let Phase::Body(b) = &r.phase else { panic!("in body") };
        assert!(b.body.capacity() <= BODY_FIRST_CAPACITY, "reserved {}", b.body.capacity());
    }

    #[test]
    fn continue_only_when_body_missing() {
        let mut r = RequestReader::new(LIMITS);
        let head = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let (used, ev) = r.advance(head).unwrap();
        assert_eq!(used, head.len());
        assert!(matches!(ev, Some(ReadEvent::SendContinue)));
        let (_, ev) = r.advance(b"ok").unwrap();
        assert!(matches!(ev, Some(ReadEvent::Request(ref q)) if q.body == b"ok"));
    }
}
