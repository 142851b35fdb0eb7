//! Request body framing (RFC 9112 §6): `Content-Length` and the chunked decoder.
//!
//! The chunked decoder is an incremental state machine: feed it any slice of the stream,
//! it appends the data it finds to `out` and says how many bytes it used. Splitting the
//! input anywhere gives the same result as feeding it whole (the fuzz target checks this).

use crate::error::HttpError;

/// How a request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, or zero).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Longest chunk extension or trailer line we skip over. Nothing we serve uses either; the
/// cap keeps a client from making us scan forever without producing body bytes.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` so far.
    Size { digits: u16 },
    /// After the size: optional `;ext` up to CR (skipped, counted).
    Ext { len: usize },
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting the CR, then LF, after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line (skipped).
    Trailer { len: usize },
    /// Expecting the LF of a trailer line (`final_` when it is the empty last line).
    TrailerLf { final_: bool },
    Done,
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1).
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the current chunk; while in `Data`, what is left of it.
    remaining: u64,
    /// Body bytes produced so far, checked against `max`.
    total: u64,
    max: u64,
}

impl ChunkedDecoder {
    pub fn new(max_body: usize) -> Self {
        ChunkedDecoder { state: State::Size { digits: 0 }, remaining: 0, total: 0, max: max_body as u64 }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, appending body data to `out`.
    /// Returns the bytes used; stops right after the end of the body, so what follows
    /// (a pipelined request) is left for the caller.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        const BAD: HttpError = HttpError::BadRequest("invalid chunked body");
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => {
                    if let Some(d) = hex_value(b) {
                        // RFC 9112 §7.1: `chunk-size = 1*HEXDIG`; leading zeros are
                        // well-formed, so the value is judged, not the digit count. The
                        // digits are capped like an extension line, so a client cannot keep
                        // us scanning zeros forever.
                        if usize::from(digits) >= MAX_LINE {
                            return Err(BAD);
                        }
                        self.remaining = self.remaining.saturating_mul(16).saturating_add(u64::from(d));
                        if self.total.saturating_add(self.remaining) > self.max {
                            return Err(HttpError::PayloadTooLarge);
                        }
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(BAD);
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = State::Ext { len: 1 };
                    } else {
                        return Err(BAD);
                    }
                    i += 1;
                }
                State::Ext { len } => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' || len >= MAX_LINE {
                        return Err(BAD);
                    } else {
                        self.state = State::Ext { len: len + 1 };
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    i += 1;
                    if self.remaining == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.total = self.total.saturating_add(self.remaining);
                        if self.total > self.max {
                            return Err(HttpError::PayloadTooLarge);
                        }
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let take = (input.len() - i).min(self.remaining as usize);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(BAD);
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::TrailerLf { final_: true }
                    } else if b == b'\n' {
                        return Err(BAD);
                    } else {
                        State::Trailer { len: 1 }
                    };
                    i += 1;
                }
                State::Trailer { len } => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { final_: false };
                    } else if b == b'\n' || len >= MAX_LINE {
                        return Err(BAD);
                    } else {
                        self.state = State::Trailer { len: len + 1 };
                    }
                    i += 1;
                }
                State::TrailerLf { final_ } => {
                    if b != b'\n' {
                        return Err(BAD);
                    }
                    i += 1;
                    if final_ {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn table() {
        // (input, expected body, bytes used, done)
        let ok: &[(&[u8], &[u8], usize, bool)] = &[
            (b"0\r\n\r\n", b"", 5, true),
            (b"5\r\nhello\r\n0\r\n\r\nGET", b"hello", 15, true),
            (b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", b"abcde", 34, true),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20, true),
            (b"5\r\nhel", b"hel", 6, false),
        ];
        for (input, body, used, done) in ok {
            let (out, n, d) = decode_all(input).unwrap();
            assert_eq!((&out[..], n, d), (*body, *used, *done), "{:?}", String::from_utf8_lossy(input));
        }
        let bad: &[&[u8]] = &[b"\r\n", b"g\r\n", b"5\r\nhelloXX", b"5\nhello", b"0\r\n\n", b"-1\r\n"];
        for input in bad {
            assert!(decode_all(input).is_err(), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn every_split_matches_whole() {
        let input = b"4\r\nWiki\r\n6;a=b\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: x\r\n\r\n";
        let (whole, n, _) = decode_all(input).unwrap();
        assert_eq!(&whole[..], b"Wikipedia in \r\n\r\nchunks.");
        for split in 0..input.len() {
            let mut d = ChunkedDecoder::new(1 << 20);
            let mut out = Vec::new();
            let a = d.decode(&input[..split], &mut out).unwrap();
            assert_eq!(a, split);
            let b = d.decode(&input[split..], &mut out).unwrap();
            assert_eq!((a + b, &out[..]), (n, &whole[..]), "split {split}");
            assert!(d.is_done());
        }
    }

    #[test]
    fn leading_zeros_in_sizes() {
        let (out, _, done) = decode_all(b"0000000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n").unwrap();
        assert_eq!((&out[..], done), (&b"hello"[..], true));
        let zeros = "0".repeat(MAX_LINE + 1);
        assert_eq!(decode_all(zeros.as_bytes()).unwrap_err(), HttpError::BadRequest("invalid chunked body"));
    }

    #[test]
    fn size_limit() {
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(d.decode(b"5\r\nhello\r\n", &mut Vec::new()), Err(HttpError::PayloadTooLarge));
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(d.decode(b"ffffffffffffffffff\r\n", &mut Vec::new()), Err(HttpError::PayloadTooLarge));
    }
}
