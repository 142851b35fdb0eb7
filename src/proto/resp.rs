//! RESP2 / RESP3, the Redis protocol: commands out, replies in.
//!
//! Commands are arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`). Replies are read
//! the way hiredis' reader does it (`redisReaderFeed` / `redisReaderGetReply`): bytes are fed
//! as they arrive, and [`Reader::next_reply`] hands out one complete reply at a time. A partial
//! reply is never consumed: its bytes stay buffered until the rest comes. So that a large
//! reply arriving in many reads is not parsed again from its start after every read, the
//! reader remembers how many bytes the reply needs at least before it is worth another look.
//!
//! RESP3 types are decoded too (`HELLO 3` is optional): null `_`, boolean `#`, double `,`,
//! big number `(`, bulk error `!`, verbatim string `=`, map `%`, set `~`, push `>`;
//! attributes `|` are read and dropped. Pure: no sockets, no clock.

use std::fmt;

/// A reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `+OK`
    Simple(Vec<u8>),
    /// `-ERR …` (and RESP3 bulk errors `!`).
    Error(Vec<u8>),
    Integer(i64),
    /// `$n` bulk strings (and RESP3 verbatim strings, without their format prefix).
    Bulk(Vec<u8>),
    /// `$-1`, `*-1`, RESP3 `_`.
    Nil,
    Array(Vec<Value>),
    /// RESP3 `%`: key, value pairs in order.
    Map(Vec<(Value, Value)>),
    /// RESP3 `~`.
    Set(Vec<Value>),
    /// RESP3 `>`: an out-of-band message (pub/sub), told apart from replies.
    Push(Vec<Value>),
    Boolean(bool),
    Double(f64),
    /// RESP3 `(`, as its digits.
    BigNumber(Vec<u8>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// A type byte that is none of RESP's.
    UnknownType(u8),
    /// A length or integer that is not a number, or a negative length other than -1.
    BadNumber,
    /// A line without its CR LF, or a bulk string not followed by CR LF.
    BadTerminator,
    /// A bulk string or aggregate over the reader's limits.
    TooLarge,
    /// Aggregates nested deeper than the limit.
    TooDeep,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(b) => write!(f, "unknown RESP type byte {b:#04x}"),
            RespError::BadNumber => f.write_str("invalid number in a RESP reply"),
            RespError::BadTerminator => f.write_str("a RESP line not ended by CR LF"),
            RespError::TooLarge => f.write_str("a RESP reply over the reader's limits"),
            RespError::TooDeep => f.write_str("RESP aggregates nested too deep"),
        }
    }
}

/// What a reader accepts. A Redis link only ever asks for small things (publish counts,
/// stream entries a page at a time), so anything larger is a broken or hostile peer.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bulk: usize,
    pub max_elements: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_bulk: 64 * 1024 * 1024, max_elements: 1 << 20, max_depth: 16 }
    }
}

/// Not enough bytes yet: the reply needs at least this many (from its start).
struct Incomplete(usize);

type Step<T> = Result<Result<(T, usize), Incomplete>, RespError>;

/// Decodes one reply from the start of `buf`. `Ok(Ok((value, used)))`, or `Ok(Err(n))` when
/// the reply is not complete (it needs at least `n` bytes).
fn decode(buf: &[u8], limits: &Limits, depth: usize) -> Step<Option<Value>> {
    if depth > limits.max_depth {
        return Err(RespError::TooDeep);
    }
    let Some(&t) = buf.first() else { return Ok(Err(Incomplete(1))) };
    if !b"+-:_#,($!=*~>%|".contains(&t) {
        // Decided on the first byte, whatever follows (or has yet to arrive).
        return Err(RespError::UnknownType(t));
    }
    // A line longer than any number or status we accept is not a line. Judged the same
    // whether its CR LF has arrived or not, so a split never changes the outcome.
    let max_line = limits.max_bulk.min(64 * 1024) + 64;
    // (Searched after the type byte: a reply that starts with CR LF has no type.)
    let Some(end) = find_crlf(&buf[1..buf.len().min(max_line + 2)]).map(|e| e + 1) else {
        if buf.len() >= max_line + 2 {
            return Err(RespError::TooLarge);
        }
        return Ok(Err(Incomplete(buf.len() + 1)));
    };
    let line = &buf[1..end];
    let after = end + 2;
    let simple = |v: Value| Ok(Ok((Some(v), after)));
    match t {
        b'+' => simple(Value::Simple(line.to_vec())),
        b'-' => simple(Value::Error(line.to_vec())),
        b':' => simple(Value::Integer(parse_int(line)?)),
        b'_' if line.is_empty() => simple(Value::Nil),
        b'#' => match line {
            b"t" => simple(Value::Boolean(true)),
            b"f" => simple(Value::Boolean(false)),
            _ => Err(RespError::BadNumber),
        },
        b',' => {
            let s = std::str::from_utf8(line).map_err(|_| RespError::BadNumber)?;
            let d = match s {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                _ => s.parse().map_err(|_| RespError::BadNumber)?,
            };
            simple(Value::Double(d))
        }
        b'(' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(RespError::BadNumber);
            }
            simple(Value::BigNumber(line.to_vec()))
        }
        b'$' | b'!' | b'=' => {
            let n = parse_int(line)?;
            if n == -1 && t == b'$' {
                return simple(Value::Nil);
            }
            let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
            if n > limits.max_bulk {
                return Err(RespError::TooLarge);
            }
            let total = after + n + 2;
            if buf.len() < total {
                return Ok(Err(Incomplete(total)));
            }
            if &buf[after + n..total] != b"\r\n" {
                return Err(RespError::BadTerminator);
            }
            let body = &buf[after..after + n];
            let v = match t {
                b'$' => Value::Bulk(body.to_vec()),
                b'!' => Value::Error(body.to_vec()),
                // `=` bodies start with a three-letter format and `:`.
                _ if body.len() >= 4 && body[3] == b':' => Value::Bulk(body[4..].to_vec()),
                _ => return Err(RespError::BadNumber),
            };
            Ok(Ok((Some(v), total)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_int(line)?;
            if n == -1 && t == b'*' {
                return simple(Value::Nil);
            }
            let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
            let items = if matches!(t, b'%' | b'|') { n.checked_mul(2).ok_or(RespError::TooLarge)? } else { n };
            if items > limits.max_elements {
                return Err(RespError::TooLarge);
            }
            let mut pos = after;
            // Elements are pushed as they decode: the count is bounded by what arrived.
            let mut elems = Vec::with_capacity(items.min(1024));
            while elems.len() < items {
                match decode(&buf[pos..], limits, depth + 1)? {
                    Ok((Some(v), used)) => {
                        elems.push(v);
                        pos += used;
                    }
                    // An attribute inside an aggregate describes the next element: dropped.
                    Ok((None, used)) => pos += used,
                    Err(Incomplete(need)) => return Ok(Err(Incomplete(pos + need))),
                }
            }
            let v = match t {
                b'*' => Value::Array(elems),
                b'~' => Value::Set(elems),
                b'>' => Value::Push(elems),
                b'%' => {
                    let mut it = elems.into_iter();
                    let mut pairs = Vec::with_capacity(n);
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Value::Map(pairs)
                }
                // `|`: an attribute, then the reply it describes.
                _ => {
                    return match decode(&buf[pos..], limits, depth + 1)? {
                        Ok((v, used)) => Ok(Ok((v, pos + used))),
                        Err(Incomplete(need)) => Ok(Err(Incomplete(pos + need))),
                    };
                }
            };
            Ok(Ok((Some(v), pos)))
        }
        b'_' => Err(RespError::BadNumber),
        other => Err(RespError::UnknownType(other)),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn parse_int(line: &[u8]) -> Result<i64, RespError> {
    let s = std::str::from_utf8(line).map_err(|_| RespError::BadNumber)?;
    if s.is_empty() || s.starts_with('+') {
        return Err(RespError::BadNumber);
    }
    s.parse().map_err(|_| RespError::BadNumber)
}

/// Replies from a stream of bytes, fed as they arrive.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as replies.
    pos: usize,
    /// The reply at `pos` needs at least this many bytes from `pos`: no use parsing before.
    need: usize,
    limits: Option<Limits>,
    /// Set once the stream is broken: every later call gives the same error.
    failed: Option<RespError>,
}

impl Reader {
    pub fn new(limits: Limits) -> Reader {
        Reader { limits: Some(limits), ..Reader::default() }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, if one has arrived. A protocol error is final.
    pub fn next_reply(&mut self) -> Result<Option<Value>, RespError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let limits = self.limits.unwrap_or_default();
        loop {
            let avail = self.buf.len() - self.pos;
            if avail == 0 || avail < self.need {
                self.compact();
                return Ok(None);
            }
            match decode(&self.buf[self.pos..], &limits, 0) {
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
                Ok(Err(Incomplete(need))) => {
                    self.need = need;
                    self.compact();
                    return Ok(None);
                }
                Ok(Ok((v, used))) => {
                    self.pos += used;
                    self.need = 0;
                    // A top-level attribute alone describes the next reply: keep reading.
                    if let Some(v) = v {
                        return Ok(Some(v));
                    }
                }
            }
        }
    }

    /// Bytes buffered that are not yet a reply.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Drops what was handed out, so the buffer holds only the partial reply.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

/// Appends a command: an array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Result<Option<Value>, RespError> {
        let mut r = Reader::new(Limits::default());
        r.feed(bytes);
        r.next_reply()
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_table() {
        let table: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple(b"OK".to_vec())),
            (b"-ERR unknown command\r\n", Value::Error(b"ERR unknown command".to_vec())),
            (b":1000\r\n", Value::Integer(1000)),
            (b":-42\r\n", Value::Integer(-42)),
            (b"$5\r\nhello\r\n", bulk("hello")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$-1\r\n", Value::Nil),
            (b"*-1\r\n", Value::Nil),
            (b"*0\r\n", Value::Array(vec![])),
            (b"$4\r\na\r\nb\r\n", bulk("a\r\nb")),
            (b"*2\r\n$3\r\nfoo\r\n:7\r\n", Value::Array(vec![bulk("foo"), Value::Integer(7)])),
            (b"*2\r\n*1\r\n+a\r\n$-1\r\n", Value::Array(vec![Value::Array(vec![Value::Simple(b"a".to_vec())]), Value::Nil])),
            // RESP3
            (b"_\r\n", Value::Nil),
            (b"#t\r\n", Value::Boolean(true)),
            (b",1.5\r\n", Value::Double(1.5)),
            (b",-inf\r\n", Value::Double(f64::NEG_INFINITY)),
            (b"(3492890328409238509324850943850943825024385\r\n", Value::BigNumber(b"3492890328409238509324850943850943825024385".to_vec())),
            (b"!21\r\nSYNTAX invalid syntax\r\n", Value::Error(b"SYNTAX invalid syntax".to_vec())),
            (b"=15\r\ntxt:Some string\r\n", bulk("Some string")),
            (b"%1\r\n+first\r\n:1\r\n", Value::Map(vec![(Value::Simple(b"first".to_vec()), Value::Integer(1))])),
            (b"~2\r\n+a\r\n+b\r\n", Value::Set(vec![Value::Simple(b"a".to_vec()), Value::Simple(b"b".to_vec())])),
            (b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", Value::Push(vec![bulk("message"), bulk("ch"), bulk("hi")])),
            (b"|1\r\n+ttl\r\n:3600\r\n:5\r\n", Value::Integer(5)),
            (b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", Value::Array(vec![Value::Integer(1), Value::Integer(2)])),
        ];
        for (bytes, want) in table {
            assert_eq!(one(bytes), Ok(Some(want.clone())), "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn refuses_what_is_not_resp() {
        for (bytes, e) in [
            (&b"?x\r\n"[..], RespError::UnknownType(b'?')),
            (b":12a\r\n", RespError::BadNumber),
            (b":\r\n", RespError::BadNumber),
            (b":+1\r\n", RespError::BadNumber),
            (b"$-2\r\n", RespError::BadNumber),
            (b"$3\r\nabcXY", RespError::BadTerminator),
            (b"*-2\r\n", RespError::BadNumber),
            (b"#x\r\n", RespError::BadNumber),
            (b"=3\r\nabc\r\n", RespError::BadNumber),
            (b"_x\r\n", RespError::BadNumber),
            (b"\r\n", RespError::UnknownType(b'\r')),
        ] {
            assert_eq!(one(bytes), Err(e), "{:?}", String::from_utf8_lossy(bytes));
        }
        let small = Limits { max_bulk: 10, max_elements: 3, max_depth: 2 };
        let mut r = Reader::new(small);
        r.feed(b"$11\r\n");
        assert_eq!(r.next_reply(), Err(RespError::TooLarge), "decided from the header, before the body");
        let mut r = Reader::new(small);
        r.feed(b"*4\r\n");
        assert_eq!(r.next_reply(), Err(RespError::TooLarge));
        let mut r = Reader::new(small);
        r.feed(b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n");
        assert_eq!(r.next_reply(), Err(RespError::TooDeep));
        assert_eq!(r.next_reply(), Err(RespError::TooDeep), "an error is final");
    }

    #[test]
    fn split_anywhere_gives_the_same_replies() {
        let stream: &[u8] = b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n$-1\r\n%1\r\n$1\r\nk\r\n*2\r\n:1\r\n:2\r\n:99\r\n";
        let whole = {
            let mut r = Reader::new(Limits::default());
            r.feed(stream);
            std::iter::from_fn(|| r.next_reply().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(whole.len(), 5);
        for split in 0..=stream.len() {
            let mut r = Reader::new(Limits::default());
            let mut got = Vec::new();
            for piece in [&stream[..split], &stream[split..]] {
                r.feed(piece);
                while let Some(v) = r.next_reply().unwrap() {
                    got.push(v);
                }
            }
            assert_eq!(got, whole, "split at {split}");
            assert_eq!(r.pending(), 0);
        }
        let mut r = Reader::new(Limits::default());
        let mut got = Vec::new();
        for b in stream {
            r.feed(std::slice::from_ref(b));
            while let Some(v) = r.next_reply().unwrap() {
                got.push(v);
            }
        }
        assert_eq!(got, whole, "byte by byte");
    }

    #[test]
    fn a_partial_reply_is_never_consumed() {
        let mut r = Reader::new(Limits::default());
        r.feed(b"$10\r\nhello");
        assert_eq!(r.next_reply(), Ok(None));
        assert_eq!(r.pending(), 10);
        r.feed(b"world\r\n+x");
        assert_eq!(r.next_reply(), Ok(Some(bulk("helloworld"))));
        assert_eq!(r.next_reply(), Ok(None));
        r.feed(b"\r\n");
        assert_eq!(r.next_reply(), Ok(Some(Value::Simple(b"x".to_vec()))));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"XADD", b"sio:chat", b"*", b"d", b"a\r\nb"]);
        assert_eq!(out, b"*5\r\n$4\r\nXADD\r\n$8\r\nsio:chat\r\n$1\r\n*\r\n$1\r\nd\r\n$4\r\na\r\nb\r\n");
        // What we send, a Redis reads back as the same arguments.
        let mut r = Reader::new(Limits::default());
        r.feed(&out);
        assert_eq!(
            r.next_reply(),
            Ok(Some(Value::Array(vec![bulk("XADD"), bulk("sio:chat"), bulk("*"), bulk("d"), bulk("a\r\nb")])))
        );
    }
}
