//! The receive side of one WebSocket connection: a client's raw bytes in, messages out.
//!
//! ```text
//!                 header of a data frame (checked)           payload done, FIN: Text | Binary
//!   ┌──────────▶ Header ─────────────────────────────▶ Data ──────────────────────────────┐
//!   │             │  ▲                                   │ payload done, no FIN: wait for   │
//!   │             │  └───────────────────────────────────┘ the next fragment              │
//!   │             │ header of a control frame                                            │
//!   │             ▼                                                                      │
//!   │           Control ──payload done──▶ Ping | Pong ──────────────▶ Header             │
//!   │                                 └─▶ Close ────────────────────▶ Closed (final)     │
//!   └────────────────────────────────────────────────────────────────────────────────────┘
//!   any error ──▶ Failed (the same error again on every call)
//! ```
//!
//! Whether a fragmented data message is open is kept apart from the frame state, because
//! RFC 6455 §5.4 lets control frames arrive between its fragments: "Control frames [...]
//! MAY be injected in the middle of a fragmented message", and "An endpoint MUST be capable
//! of handling control frames in the middle of a fragmented message". A ping in the middle
//! of a long message is delivered as soon as it is complete, so its pong is not held up.
//!
//! Payload is consumed as it arrives, never waited for whole: each piece is appended to the
//! message, unmasked in place, and (for text) validated as UTF-8 from where the last check
//! stopped. So the payload is copied once (input buffer → message), each byte is unmasked
//! once and validated about once, a bad message fails at its first bad byte, and the
//! connection's input buffer never has to hold a whole frame. The size limit is applied to
//! each frame header, before any of its payload is buffered.
//!
//! With permessage-deflate negotiated (RFC 7692), a data message whose first frame has RSV1
//! set is compressed: its frames' payloads are collected as they are (capped a little above
//! `max_message`, what deflate's framing can add to incompressible data), inflated once the
//! message is complete (capped at `max_message`: a decompression bomb is refused as soon as
//! its output passes the cap), and a text message's UTF-8 is validated after inflating. The
//! inflater exists only while it is needed: made at the first compressed message, dropped
//! after each one when the client compresses without context takeover.
//!
//! Sans-IO, like [`RequestReader`](crate::proto::http1::RequestReader): the connection hands
//! in the bytes it has not yet used, the assembler says how many it used and what happened.

use std::borrow::Cow;

use super::close::parse_close_payload;
use super::deflate::{InflateError, Inflater};
use super::error::WsError;
use super::extensions::Deflate;
use super::frame::{FrameHeader, OpCode, RSV1};
use super::mask::apply_mask;

/// What a client's bytes amount to. Each data message is delivered whole, once its last
/// fragment has arrived; control frames as soon as each is complete. A frame that arrived
/// whole in one piece of input is unmasked in place and lent out of that input (no copy, no
/// allocation: the common case); a message assembled across pieces is handed over owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A text message; the bytes are valid UTF-8.
    Text(Cow<'a, [u8]>),
    Binary(Cow<'a, [u8]>),
    /// A ping: answer with a pong carrying the same payload (§5.5.2).
    Ping(Cow<'a, [u8]>),
    /// A pong, solicited or not (§5.5.3 allows unsolicited ones; they need no answer).
    Pong(Cow<'a, [u8]>),
    /// A close frame, with its code and reason if it had a payload. Nothing after it is
    /// processed; the loop answers with a close frame and closes the connection.
    Close(Option<(u16, String)>),
}

impl WsEvent<'_> {
    /// The same event, owning its payload.
    pub fn into_owned(self) -> WsEvent<'static> {
        let own = |c: Cow<'_, [u8]>| Cow::Owned(c.into_owned());
        match self {
            WsEvent::Text(c) => WsEvent::Text(own(c)),
            WsEvent::Binary(c) => WsEvent::Binary(own(c)),
            WsEvent::Ping(c) => WsEvent::Ping(own(c)),
            WsEvent::Pong(c) => WsEvent::Pong(own(c)),
            WsEvent::Close(c) => WsEvent::Close(c),
        }
    }
}

/// Most bytes reserved for a message when its frame header arrives. A small frame then costs
/// exactly one allocation; a large one grows as its bytes actually arrive, so announcing a
/// 16 MiB frame and sending nothing does not pin 16 MiB.
const PREALLOC_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Where the assembler is in the frame stream. Small and `Copy`: what a frame in progress
/// has collected lives in [`Slow`]. (`pos` and `left` fit a u32: a frame's payload is at
/// most the message cap, under 4 GiB even for compressed data.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between frames: waiting for a complete header.
    Header,
    /// Inside a data frame's payload: `pos` bytes of it received (the masking offset),
    /// `left` to come.
    Data { key: [u8; 4], pos: u32, left: u32, fin: bool },
    /// Inside a control frame's payload (at most 125 bytes), collected masked in
    /// `Slow::control`.
    Control { opcode: OpCode, key: [u8; 4], left: u8 },
    /// A close frame was delivered: nothing more is processed.
    Closed,
    /// An error was returned (kept in `Slow::failed`); every later call returns it again.
    Failed,
}

/// What only a connection in the middle of something holds: a message whose frames span
/// pieces of input, a control frame cut in two, a kept inflater, the error it failed with.
/// Boxed and made on demand, and dropped as soon as it holds nothing: an idle connection's
/// assembler is a few words.
#[derive(Debug, Default)]
struct Slow {
    /// The kind of the data message being received, from its first frame to the end of its
    /// FIN frame.
    open: Option<Kind>,
    /// The open message's payload so far, unmasked.
    message: Vec<u8>,
    /// For a text message: how much of `message` is known to be valid UTF-8. Always on a
    /// character boundary; what follows it is at most an incomplete character.
    checked: u32,
    /// The open message had RSV1 on its first frame: `message` is DEFLATE data.
    compressed: bool,
    /// A control frame's payload so far, masked.
    control: Vec<u8>,
    /// Made at the first compressed message, kept while the client compresses with context
    /// takeover (boxed: its window is tens of KiB).
    inflater: Option<Box<Inflater>>,
    failed: Option<WsError>,
}

/// The per-connection message assembler.
#[derive(Debug)]
pub struct Assembler {
    slow: Option<Box<Slow>>,
    /// u32: a message over 2 GiB is refused anyway.
    max_message: u32,
    state: State,
    /// permessage-deflate as negotiated; `None`: RSV1 is a protocol error.
    deflate: Option<Deflate>,
}

/// The largest `max_message`: 2 GiB, so that a compressed message's cap fits a u32 too.
const MAX_MESSAGE_CAP: usize = 1 << 31;

/// What a compressed message may occupy before inflating: deflate's stored blocks add 5 bytes
/// per 64 KiB to data that does not compress, so a message of exactly `max` bytes still fits.
fn compressed_cap(max: usize) -> usize {
    max.saturating_add(max / 1024 + 64)
}

impl Assembler {
    /// An assembler refusing messages (the sum of their fragments) over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        let max_message = max_message.min(MAX_MESSAGE_CAP) as u32;
        Assembler { slow: None, max_message, state: State::Header, deflate: None }
    }

    /// Accepts compressed messages as `d` agreed (set once, right after the handshake).
    pub fn set_deflate(&mut self, d: Deflate) {
        self.deflate = Some(d);
    }

    /// What was agreed, if permessage-deflate was negotiated.
    pub fn deflate(&self) -> Option<Deflate> {
        self.deflate
    }

    /// True while an inflater is kept (a client compressing with context takeover).
    pub fn holds_inflater(&self) -> bool {
        self.slow.as_ref().is_some_and(|s| s.inflater.is_some())
    }

    /// True while anything is kept between calls (a message or control frame in progress, an
    /// inflater, an error): false for an idle connection.
    pub fn holds_memory(&self) -> bool {
        self.slow.is_some()
    }

    /// True once a close frame has been delivered.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Uses bytes from the start of `input`, which must begin where the previous call's used
    /// bytes ended. Returns the bytes used and at most one event. Call again while it
    /// returns an event or uses bytes: several frames may be waiting. Without an event it
    /// has used everything it can (the rest is an incomplete header).
    ///
    /// The bytes it used may have been unmasked in place (the event may borrow them); the
    /// bytes it did not use are untouched.
    ///
    /// An error means: fail the connection with the error's close code (RFC 6455 §7.1.7).
    pub fn advance<'a>(&mut self, input: &'a mut [u8]) -> Result<(usize, Option<WsEvent<'a>>), WsError> {
        let res = self.step(input);
        match res {
            Err(e) => {
                self.state = State::Failed;
                self.slow = Some(Box::new(Slow { failed: Some(e), ..Slow::default() }));
            }
            Ok(_) => self.settle(),
        }
        res
    }

    /// [`Assembler::advance`] on input that is not the caller's to modify (tests, fuzz
    /// targets): works on a copy, and the event owns its payload.
    pub fn advance_copy(&mut self, input: &[u8]) -> Result<(usize, Option<WsEvent<'static>>), WsError> {
        let mut copy = input.to_vec();
        self.advance(&mut copy).map(|(n, ev)| (n, ev.map(WsEvent::into_owned)))
    }

    fn slow(&mut self) -> &mut Slow {
        self.slow.get_or_insert_with(Box::default)
    }

    /// Lets go of the slow state once it holds nothing: no frame or message in progress, no
    /// inflater, no error (one check per call; nothing to do while it is `None`).
    fn settle(&mut self) {
        if let Some(s) = &self.slow {
            if s.open.is_none() && s.inflater.is_none() && s.failed.is_none() && matches!(self.state, State::Header) {
                self.slow = None;
            }
        }
    }

    fn open(&self) -> Option<Kind> {
        self.slow.as_ref().and_then(|s| s.open)
    }

    // Runs the state machine over `input` until an event, an error, or the end of the input.
    // Looping here (rather than returning after each frame) lets one call swallow a run of
    // header + payload + header + ... that produces no event, like empty fragments.
    fn step<'a>(&mut self, input: &'a mut [u8]) -> Result<(usize, Option<WsEvent<'a>>), WsError> {
        let mut used = 0;
        loop {
            match self.state {
                State::Failed => return Err(self.slow.as_ref().and_then(|s| s.failed).expect("a failed assembler keeps its error")),
                State::Closed => return Ok((used, None)),
                State::Header => {
                    let Some((header, n)) = FrameHeader::decode(&input[used..])? else {
                        return Ok((used, None));
                    };
                    let key = self.check_header(&header)?;
                    let start = used + n;
                    used = start;
                    // The common case: a whole frame that is a whole message, or a whole
                    // control frame, already here. Unmasked where it lies and lent out.
                    let whole = header.payload_len <= (input.len() - start) as u64;
                    let data_whole = header.fin && matches!(header.opcode, OpCode::Text | OpCode::Binary) && self.open().is_none();
                    if whole && header.rsv & RSV1 == 0 && (data_whole || header.opcode.is_control()) {
                        let end = start + header.payload_len as usize;
                        if !header.opcode.is_control() && header.payload_len > u64::from(self.max_message) {
                            return Err(WsError::MessageTooBig);
                        }
                        let payload = &mut input[start..end];
                        apply_mask(payload, key, 0);
                        let ev = match header.opcode {
                            OpCode::Text => {
                                // §8.1: text that is not UTF-8 fails the connection. (ASCII
                                // first: a word at a time, and most text is ASCII.)
                                if !payload.is_ascii() {
                                    std::str::from_utf8(payload).map_err(|_| WsError::InvalidUtf8)?;
                                }
                                WsEvent::Text(Cow::Borrowed(payload))
                            }
                            OpCode::Binary => WsEvent::Binary(Cow::Borrowed(payload)),
                            op => self.control_event(op, Cow::Borrowed(payload))?,
                        };
                        return Ok((end, Some(ev)));
                    }
                    if let Some(ev) = self.start_frame(header, key)? {
                        return Ok((used, Some(ev)));
                    }
                }
                State::Data { key, pos, left, fin } => {
                    let take = (left as usize).min(input.len() - used);
                    let s = self.slow();
                    let start = s.message.len();
                    s.message.extend_from_slice(&input[used..used + take]);
                    apply_mask(&mut s.message[start..], key, pos as usize);
                    used += take;
                    if s.open == Some(Kind::Text) && !s.compressed {
                        s.check_utf8()?;
                    }
                    if take < left as usize {
                        self.state = State::Data { key, pos: pos + take as u32, left: left - take as u32, fin };
                        return Ok((used, None));
                    }
                    self.state = State::Header;
                    if fin {
                        return Ok((used, Some(self.finish_message()?)));
                    }
                }
                State::Control { opcode, key, left } => {
                    let take = (left as usize).min(input.len() - used);
                    let s = self.slow();
                    s.control.extend_from_slice(&input[used..used + take]);
                    used += take;
                    if take < left as usize {
                        self.state = State::Control { opcode, key, left: left - take as u8 };
                        return Ok((used, None));
                    }
                    let mut payload = std::mem::take(&mut s.control);
                    apply_mask(&mut payload, key, 0);
                    self.state = State::Header;
                    return Ok((used, Some(self.control_event(opcode, Cow::Owned(payload))?)));
                }
            }
        }
    }

    // The rules every frame header must keep, whatever follows it. Returns its masking key.
    fn check_header(&self, h: &FrameHeader) -> Result<[u8; 4], WsError> {
        // §5.1: "The server MUST close the connection upon receiving a frame that is not
        // masked."
        let Some(key) = h.mask else {
            return Err(WsError::Protocol("unmasked client frame"));
        };
        // RFC 7692 §6.1: RSV1 marks a compressed message, on its first frame only; "An
        // endpoint MUST NOT set the RSV1 bit of control frames" nor of continuation frames.
        // Without the extension it is a reserved bit like the others (RFC 6455 §5.2).
        let rsv1 = h.rsv & RSV1 != 0;
        if rsv1 && self.deflate.is_none() {
            return Err(WsError::Protocol("reserved bits set"));
        }
        if rsv1 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(WsError::Protocol("RSV1 set on a control or continuation frame"));
        }
        Ok(key)
    }

    // Enters the state for a checked header's payload, which is not all here (or belongs to a
    // fragmented or compressed message). An empty payload may complete an event right away.
    fn start_frame(&mut self, h: FrameHeader, key: [u8; 4]) -> Result<Option<WsEvent<'static>>, WsError> {
        if h.opcode.is_control() {
            // FrameHeader::decode has refused control payloads over 125 bytes; an empty one
            // took the whole-frame path.
            let len = h.payload_len as usize;
            self.slow().control.reserve_exact(len);
            self.state = State::Control { opcode: h.opcode, key, left: len as u8 };
            return Ok(None);
        }
        // §5.4: "A fragmented message consists of a single frame with the FIN bit clear and
        // an opcode other than 0, followed by zero or more frames with the FIN bit clear and
        // the opcode set to 0, and terminated by a single frame with the FIN bit set and an
        // opcode of 0." and "The fragments of one message MUST NOT be interleaved between the
        // fragments of another message".
        let kind = match (h.opcode, self.open()) {
            (OpCode::Continuation, Some(kind)) => kind,
            (OpCode::Continuation, None) => return Err(WsError::Protocol("continuation with no message open")),
            (_, Some(_)) => return Err(WsError::Protocol("new message inside a fragmented message")),
            (OpCode::Text, None) => Kind::Text,
            (_, None) => Kind::Binary,
        };
        let max = self.max_message as usize;
        let s = self.slow();
        // §10.4: "implementations will likely want to impose implementation-specific limits
        // on frame size and the total message size after reassembly from multiple frames".
        // Checked on the header, before any of the payload is buffered.
        if h.opcode != OpCode::Continuation {
            s.compressed = h.rsv & RSV1 != 0;
        }
        let cap = if s.compressed { compressed_cap(max) } else { max };
        if h.payload_len > (cap - s.message.len()) as u64 {
            return Err(WsError::MessageTooBig);
        }
        let len = h.payload_len as usize;
        s.open = Some(kind);
        if len == 0 {
            return if h.fin { self.finish_message().map(Some) } else { Ok(None) };
        }
        s.message.reserve(len.min(PREALLOC_MAX));
        self.state = State::Data { key, pos: 0, left: len as u32, fin: h.fin };
        Ok(None)
    }

    // The FIN frame's payload is all in: hand the message over.
    fn finish_message(&mut self) -> Result<WsEvent<'static>, WsError> {
        let s = self.slow();
        let kind = s.open.take().expect("a message is open");
        let mut data = std::mem::take(&mut s.message);
        if std::mem::take(&mut s.compressed) {
            data = self.inflate(&data)?;
            if kind == Kind::Text && std::str::from_utf8(&data).is_err() {
                return Err(WsError::InvalidUtf8);
            }
        } else if kind == Kind::Text {
            // §5.6: "a particular text frame might include a partial UTF-8 sequence;
            // however, the whole message MUST contain valid UTF-8."
            if s.checked as usize != data.len() {
                return Err(WsError::InvalidUtf8);
            }
            s.checked = 0;
        }
        let data = Cow::Owned(data);
        Ok(if kind == Kind::Text { WsEvent::Text(data) } else { WsEvent::Binary(data) })
    }

    // Inflates a whole compressed message, at most `max_message` bytes out. Never inlined:
    // making an inflater puts its state (tens of KiB) on the stack first, and inlined into
    // `finish_message` that frame was probed page by page on every plain message (perf: 3.5%
    // of the server's time at 16 echoes in flight).
    #[inline(never)]
    fn inflate(&mut self, payload: &[u8]) -> Result<Vec<u8>, WsError> {
        let d = self.deflate.expect("RSV1 is refused without the extension");
        let max = self.max_message as usize;
        let s = self.slow();
        let inflater = s.inflater.get_or_insert_with(|| Box::new(Inflater::new(!d.client_no_context_takeover)));
        let out = inflater.message(payload, max).map_err(|e| match e {
            InflateError::TooBig => WsError::MessageTooBig,
            InflateError::Corrupt => WsError::BadCompressedData,
        });
        // Without context takeover nothing carries over: the window (tens of KiB) goes.
        if d.client_no_context_takeover {
            s.inflater = None;
        }
        out
    }

    // A complete control frame (already unmasked) as an event.
    fn control_event<'a>(&mut self, opcode: OpCode, payload: Cow<'a, [u8]>) -> Result<WsEvent<'a>, WsError> {
        Ok(match opcode {
            OpCode::Ping => WsEvent::Ping(payload),
            OpCode::Pong => WsEvent::Pong(payload),
            OpCode::Close => {
                let close = parse_close_payload(&payload)?.map(|(code, reason)| (code, reason.to_owned()));
                // §5.5.1: after sending a Close frame, an endpoint "MUST NOT send any more
                // data frames"; a peer's data after its Close is not ours to process either.
                self.state = State::Closed;
                WsEvent::Close(close)
            }
            OpCode::Continuation | OpCode::Text | OpCode::Binary => unreachable!("not a control opcode"),
        })
    }
}

impl Slow {
    // Validates the text received since the last check. An incomplete character at the end
    // waits for more bytes; an invalid sequence fails now, not at the end of the message:
    // §8.1 "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte
    // stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
    // Connection_."
    fn check_utf8(&mut self) -> Result<(), WsError> {
        match std::str::from_utf8(&self.message[self.checked as usize..]) {
            Ok(_) => self.checked = self.message.len() as u32,
            // error_len() is None when the bytes are a valid prefix cut short by the end.
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to() as u32,
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ws::mask::apply_mask_reference;

    const KEY: [u8; 4] = [0x9C, 0x01, 0x7E, 0xD3];
    const MAX: usize = 1 << 17;
    const P: fn(&'static str) -> WsError = WsError::Protocol;

    /// A masked client frame.
    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader { fin, rsv: 0, opcode, mask: Some(KEY), payload_len: payload.len() as u64 };
        let mut out = Vec::new();
        h.encode(&mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask_reference(&mut out[start..], KEY, 0);
        out
    }

    fn text(s: &str) -> Vec<u8> {
        frame(true, OpCode::Text, s.as_bytes())
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    /// Feeds `pieces` the way the loop does (keeping unused bytes in a buffer) and collects
    /// the events and the error, if any.
    fn run_pieces(max: usize, pieces: &[&[u8]]) -> (Vec<WsEvent<'static>>, Option<WsError>) {
        let mut a = Assembler::new(max);
        crate::fuzzing::feed_pieces(pieces, |buf| a.advance_copy(buf))
    }

    /// The outcome of feeding `input` whole, after checking that every way of cutting it in
    /// two, and a few ways of cutting it in many, gives the same.
    fn run(max: usize, input: &[u8]) -> (Vec<WsEvent<'static>>, Option<WsError>) {
        let whole = run_pieces(max, &[input]);
        for cut in 0..=input.len() {
            assert_eq!(run_pieces(max, &[&input[..cut], &input[cut..]]), whole, "cut at {cut}");
        }
        for step in [1, 2, 3, 5, 13] {
            let pieces: Vec<&[u8]> = input.chunks(step).collect();
            assert_eq!(run_pieces(max, &pieces), whole, "step {step}");
        }
        whole
    }

    fn t(s: &str) -> WsEvent<'static> {
        WsEvent::Text(s.as_bytes().to_vec().into())
    }

    #[test]
    fn events() {
        use OpCode::*;
        let close = |p: &[u8]| frame(true, Close, p);
        let table: Vec<(&str, Vec<u8>, Vec<WsEvent>)> = vec![
            (
                "RFC 5.7 masked Hello",
                vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
                vec![t("Hello")],
            ),
            ("text", text("héllo wörld"), vec![t("héllo wörld")]),
            ("empty text", text(""), vec![t("")]),
            ("binary", frame(true, Binary, &[0, 0xFF, 0x80]), vec![WsEvent::Binary(vec![0, 0xFF, 0x80].into())]),
            ("empty binary", frame(true, Binary, b""), vec![WsEvent::Binary(vec![].into())]),
            ("ping", frame(true, Ping, b"hb"), vec![WsEvent::Ping(b"hb".to_vec().into())]),
            ("empty ping", frame(true, Ping, b""), vec![WsEvent::Ping(vec![].into())]),
            ("pong", frame(true, Pong, &[7; 125]), vec![WsEvent::Pong(vec![7; 125].into())]),
            (
                "fragmented with ping, pong and empty fragments",
                cat(&[
                    frame(false, Text, b"Hel"),
                    frame(true, Ping, b"p1"),
                    frame(false, Continuation, b""),
                    frame(true, Pong, b""),
                    frame(false, Continuation, b"lo"),
                    frame(true, Ping, b"p2"),
                    frame(true, Continuation, b"!"),
                    text("next"),
                ]),
                vec![
                    WsEvent::Ping(b"p1".to_vec().into()),
                    WsEvent::Pong(vec![].into()),
                    WsEvent::Ping(b"p2".to_vec().into()),
                    t("Hello!"),
                    t("next"),
                ],
            ),
            (
                "fragmented binary ending in an empty fragment",
                cat(&[frame(false, Binary, b"ab"), frame(true, Continuation, b"")]),
                vec![WsEvent::Binary(b"ab".to_vec().into())],
            ),
            ("close, no payload", close(b""), vec![WsEvent::Close(None)]),
            ("close 1000", close(b"\x03\xE8"), vec![WsEvent::Close(Some((1000, String::new())))]),
            ("close 4000 with reason", close(b"\x0F\xA0bye"), vec![WsEvent::Close(Some((4000, "bye".into())))]),
            (
                "nothing after close is processed, not even garbage",
                cat(&[close(b"\x03\xE9"), text("ignored"), vec![0xFF, 0xFF, 0xFF]]),
                vec![WsEvent::Close(Some((1001, String::new())))],
            ),
            ("close between fragments", cat(&[frame(false, Text, b"ab"), close(b"")]), vec![WsEvent::Close(None)]),
            ("incomplete frame: no event yet", text("Hello")[..8].to_vec(), vec![]),
        ];
        for (name, input, want) in table {
            assert_eq!(run(MAX, &input), (want, None), "{name}");
        }
    }

    #[test]
    fn errors() {
        use OpCode::*;
        let close = |p: &[u8]| frame(true, Close, p);
        let unmasked = |b0: u8, p: &[u8]| {
            let mut v = vec![b0, p.len() as u8];
            v.extend_from_slice(p);
            v
        };
        // (name, input, events before the error, the error)
        let table: Vec<(&str, Vec<u8>, Vec<WsEvent>, WsError)> = vec![
            ("unmasked text", unmasked(0x81, b"hi"), vec![], P("unmasked client frame")),
            ("unmasked ping", unmasked(0x89, b""), vec![], P("unmasked client frame")),
            (
                "unmasked after a good frame",
                cat(&[text("a"), unmasked(0x82, b"")]),
                vec![t("a")],
                P("unmasked client frame"),
            ),
            ("reserved opcode", vec![0x83, 0x80, 1, 2, 3, 4], vec![], P("reserved opcode")),
            ("rsv1", vec![0xC1, 0x80, 1, 2, 3, 4], vec![], P("reserved bits set")),
            ("fragmented ping", vec![0x09, 0x80, 1, 2, 3, 4], vec![], P("fragmented control frame")),
            ("ping over 125", vec![0x89, 0xFE, 0, 126], vec![], P("control frame over 125 bytes")),
            ("non-minimal 16-bit", vec![0x82, 0xFE, 0, 5, 1, 2, 3, 4], vec![], P("non-minimal 16-bit payload length")),
            (
                "64-bit top bit",
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                vec![],
                P("64-bit payload length with top bit set"),
            ),
            ("continuation first", frame(true, Continuation, b"x"), vec![], P("continuation with no message open")),
            (
                "continuation after a complete message",
                cat(&[text("a"), frame(true, Continuation, b"x")]),
                vec![t("a")],
                P("continuation with no message open"),
            ),
            (
                "text inside a fragmented text",
                cat(&[frame(false, Text, b"a"), text("b")]),
                vec![],
                P("new message inside a fragmented message"),
            ),
            (
                "binary inside a fragmented text, after a ping",
                cat(&[frame(false, Text, b"a"), frame(true, Ping, b""), frame(false, Binary, b"b")]),
                vec![WsEvent::Ping(vec![].into())],
                P("new message inside a fragmented message"),
            ),
            ("invalid UTF-8", frame(true, Text, b"ab\xFFcd"), vec![], WsError::InvalidUtf8),
            ("overlong encoding", frame(true, Text, b"\xC0\xAF"), vec![], WsError::InvalidUtf8),
            ("surrogate", frame(true, Text, b"\xED\xA0\x80"), vec![], WsError::InvalidUtf8),
            ("above U+10FFFF", frame(true, Text, b"\xF4\x90\x80\x80"), vec![], WsError::InvalidUtf8),
            ("text ends mid-character", frame(true, Text, b"a\xE2\x82"), vec![], WsError::InvalidUtf8),
            (
                "message ends mid-character in an empty final fragment",
                cat(&[frame(false, Text, b"\xE2\x82"), frame(true, Continuation, b"")]),
                vec![],
                WsError::InvalidUtf8,
            ),
            (
                "binary is not checked, text is",
                cat(&[frame(true, Binary, b"\xFF"), frame(true, Text, b"\xFF")]),
                vec![WsEvent::Binary(vec![0xFF].into())],
                WsError::InvalidUtf8,
            ),
            ("close with one byte", close(b"\x03"), vec![], P("one-byte close payload")),
            ("close 1005", close(b"\x03\xED"), vec![], P("invalid close code")),
            ("close 1006", close(b"\x03\xEE"), vec![], P("invalid close code")),
            ("close 999", close(b"\x03\xE7"), vec![], P("invalid close code")),
            ("close 5000", close(b"\x13\x88"), vec![], P("invalid close code")),
            ("close reason not UTF-8", close(b"\x03\xE8\xFF"), vec![], P("close reason not UTF-8")),
        ];
        for (name, input, events, err) in table {
            assert_eq!(run(MAX, &input), (events, Some(err)), "{name}");
        }
    }

    #[test]
    fn error_is_sticky() {
        let mut a = Assembler::new(MAX);
        assert_eq!(a.advance_copy(&[0x81, 0x00]), Err(P("unmasked client frame")));
        assert_eq!(a.advance_copy(&text("ok")), Err(P("unmasked client frame")));
    }

    #[test]
    fn close_is_final() {
        let mut a = Assembler::new(MAX);
        let input = cat(&[frame(true, OpCode::Close, b""), text("after")]);
        assert_eq!(a.advance_copy(&input), Ok((6, Some(WsEvent::Close(None)))));
        assert!(a.is_closed());
        assert_eq!(a.advance_copy(&input[6..]), Ok((0, None)));
        assert_eq!(a.advance_copy(&[0xFF; 20]), Ok((0, None)));
    }

    #[test]
    fn ping_between_fragments_is_delivered_at_once() {
        let mut a = Assembler::new(MAX);
        let first = cat(&[frame(false, OpCode::Text, b"Hel"), frame(true, OpCode::Ping, b"now")]);
        let (used, ev) = a.advance_copy(&first).unwrap();
        assert_eq!((used, ev), (first.len(), Some(WsEvent::Ping(b"now".to_vec().into()))));
        assert_eq!(a.advance_copy(&[]), Ok((0, None)));
        let last = frame(true, OpCode::Continuation, b"lo");
        assert_eq!(a.advance_copy(&last), Ok((last.len(), Some(t("Hello")))));
    }

    #[test]
    fn large_frame_is_consumed_as_it_arrives() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let input = frame(true, OpCode::Binary, &payload);
        let mut a = Assembler::new(MAX);
        let mut fed = 0;
        for piece in input.chunks(4099) {
            let (used, ev) = a.advance_copy(piece).unwrap();
            assert_eq!(used, piece.len(), "every byte is used at once");
            fed += used;
            if fed < input.len() {
                assert_eq!(ev, None);
            } else {
                assert_eq!(ev, Some(WsEvent::Binary(payload.clone().into())));
            }
        }
    }

    #[test]
    fn invalid_utf8_fails_before_the_message_ends() {
        // In the first fragment, before the final one arrives.
        let mut a = Assembler::new(MAX);
        assert_eq!(a.advance_copy(&frame(false, OpCode::Text, b"ok\xC3\x28")), Err(WsError::InvalidUtf8));
        // In the first bytes of a large frame, with most of its payload still to come.
        let mut a = Assembler::new(MAX);
        let big = frame(true, OpCode::Text, &[b"\xFE".as_slice(), &[b'a'; 70_000]].concat());
        assert_eq!(a.advance_copy(&big[..15]), Err(WsError::InvalidUtf8), "14 header bytes and 1 payload byte");
        // A character split across frames whose second byte is already impossible.
        let mut a = Assembler::new(MAX);
        let one = frame(false, OpCode::Text, b"\xF4");
        assert_eq!(a.advance_copy(&one), Ok((one.len(), None)));
        assert_eq!(a.advance_copy(&frame(false, OpCode::Continuation, b"\x90")), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn text_in_one_byte_frames() {
        // Every byte its own frame, so the 2-, 3- and 4-byte characters are split across frames.
        let s = "aé€𝄞κόσμε";
        let bytes = s.as_bytes();
        let mut input = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            let opcode = if i == 0 { OpCode::Text } else { OpCode::Continuation };
            input.extend(frame(i == bytes.len() - 1, opcode, &[*b]));
            if i % 3 == 1 && i < bytes.len() - 1 {
                input.extend(frame(true, OpCode::Ping, &[i as u8]));
            }
        }
        let (events, err) = run(MAX, &input);
        assert_eq!(err, None);
        assert_eq!(events.last(), Some(&t(s)));
        let pings: Vec<WsEvent> = (1..bytes.len() - 1).step_by(3).map(|i| WsEvent::Ping(vec![i as u8].into())).collect();
        assert_eq!(events[..events.len() - 1], pings[..]);
    }

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut a = Assembler::new(MAX);
            let input = frame(true, OpCode::Binary, &payload);
            assert_eq!(a.advance_copy(&input), Ok((input.len(), Some(WsEvent::Binary(payload.into())))), "{len}");
            let s = "ü".repeat(len / 2);
            let input = text(&s);
            assert_eq!(a.advance_copy(&input), Ok((input.len(), Some(t(&s)))), "text {len}");
        }
    }

    #[test]
    fn message_size_limit() {
        let max = 1000;
        let ok = cat(&[frame(false, OpCode::Binary, &[1; 600]), frame(true, OpCode::Continuation, &[2; 400])]);
        assert_eq!(run_pieces(max, &[&ok]).1, None, "exactly max is fine");
        // The header alone is enough to refuse: nothing of the payload is sent.
        let mut a = Assembler::new(max);
        let head = &frame(true, OpCode::Binary, &[0; 1001])[..8];
        assert_eq!(a.advance_copy(head), Err(WsError::MessageTooBig));
        // Over the limit in the sum of fragments, refused at the second header.
        let mut a = Assembler::new(max);
        let first = frame(false, OpCode::Text, &[b'a'; 600]);
        assert_eq!(a.advance_copy(&first), Ok((first.len(), None)));
        let second = frame(true, OpCode::Continuation, &[b'b'; 401]);
        assert_eq!(a.advance_copy(&second[..8]), Err(WsError::MessageTooBig));
        // A 64-bit length far over any limit.
        let mut a = Assembler::new(max);
        assert_eq!(
            a.advance_copy(&[0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]),
            Err(WsError::MessageTooBig)
        );
        // Control frames do not count towards the message.
        let input = cat(&[
            frame(false, OpCode::Binary, &[1; 1000]),
            frame(true, OpCode::Ping, &[0; 125]),
            frame(true, OpCode::Continuation, b""),
        ]);
        assert_eq!(run(max, &input), (vec![WsEvent::Ping(vec![0; 125].into()), WsEvent::Binary(vec![1; 1000].into())], None));
    }

    /// A small deterministic generator, so the property test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn any_split_matches_whole() {
        // Streams of mostly valid frames (with occasional bad ones and stray bytes), fed whole
        // and cut at random points: same events, same error.
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let pieces_of_text = ["", "a", "héllo", "€", "𝄞x", "\u{7FF}\u{800}"];
        for _ in 0..400 {
            let mut input = Vec::new();
            let mut open = false;
            for _ in 0..rng.below(8) + 1 {
                let s = pieces_of_text[rng.below(pieces_of_text.len())].as_bytes();
                let cut = rng.below(s.len() + 1);
                // A data frame that fits: a continuation while a message is open.
                let data = |fin, op, p| if open { frame(fin, OpCode::Continuation, p) } else { frame(fin, op, p) };
                match rng.below(10) {
                    0 => input.extend(frame(true, OpCode::Ping, &s[..cut])),
                    1 => input.extend(frame(true, OpCode::Pong, s)),
                    2 | 3 => {
                        // Two fragments, splitting a character if `cut` falls inside one.
                        input.extend(data(false, OpCode::Text, &s[..cut]));
                        input.extend(frame(false, OpCode::Continuation, &s[cut..]));
                        open = true;
                    }
                    4 => {
                        input.extend(data(true, OpCode::Binary, s));
                        open = false;
                    }
                    5 if rng.below(4) == 0 => input.push(rng.next() as u8),
                    6 if rng.below(8) == 0 => input.extend(frame(true, OpCode::Close, b"\x03\xE8")),
                    _ => {
                        input.extend(data(true, OpCode::Text, s));
                        open = false;
                    }
                }
            }
            let whole = run_pieces(200, &[&input]);
            for _ in 0..4 {
                let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(input.len() + 1)).collect();
                cuts.sort();
                let mut pieces = Vec::new();
                let mut prev = 0;
                for c in cuts {
                    pieces.push(&input[prev..c]);
                    prev = c;
                }
                pieces.push(&input[prev..]);
                assert_eq!(run_pieces(200, &pieces), whole, "{input:02x?} in {pieces:02x?}");
            }
        }
    }

    /// A masked client frame with RSV1 as given.
    fn zframe(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(fin, opcode, payload);
        if rsv1 {
            f[0] |= RSV1 << 4;
        }
        f
    }

    fn run_deflate(max: usize, d: Deflate, pieces: &[&[u8]]) -> (Vec<WsEvent<'static>>, Option<WsError>, bool) {
        let mut a = Assembler::new(max);
        a.set_deflate(d);
        let (ev, err) = crate::fuzzing::feed_pieces(pieces, |buf| a.advance_copy(buf));
        (ev, err, a.holds_inflater())
    }

    const TAKEOVER: Deflate = Deflate { client_no_context_takeover: false };
    const NO_TAKEOVER: Deflate = Deflate { client_no_context_takeover: true };

    #[test]
    fn compressed_messages() {
        use crate::proto::ws::deflate::compress_message;
        use OpCode::*;
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]; // RFC 7692 §7.2.3.1
        let input = cat(&[
            zframe(true, true, Text, &hello),
            // §7.2.3.2: the same again with the context taken over.
            zframe(true, true, Text, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            // An uncompressed message in between is allowed (RSV1 clear).
            text("plain"),
            // Fragmented: RSV1 on the first frame only, a ping between the fragments.
            zframe(false, true, Binary, &hello[..3]),
            frame(true, Ping, b"p"),
            zframe(true, false, Continuation, &hello[3..]),
        ]);
        let want = vec![t("Hello"), t("Hello"), t("plain"), WsEvent::Ping(b"p".to_vec().into()), WsEvent::Binary(b"Hello".to_vec().into())];
        for step in [input.len(), 1, 3, 7] {
            let pieces: Vec<&[u8]> = input.chunks(step).collect();
            assert_eq!(run_deflate(MAX, TAKEOVER, &pieces), (want.clone(), None, true), "step {step}: the window is kept");
        }
        // Without context takeover the inflater goes after each message.
        let (ev, err, kept) = run_deflate(MAX, NO_TAKEOVER, &[&zframe(true, true, Text, &compress_message("héllo".as_bytes()))]);
        assert_eq!((ev, err, kept), (vec![t("héllo")], None, false));
        // Nothing compressed: nothing allocated.
        assert_eq!(run_deflate(MAX, TAKEOVER, &[&text("a")]), (vec![t("a")], None, false));
    }

    #[test]
    fn compressed_message_errors() {
        use crate::proto::ws::deflate::compress_message;
        use OpCode::*;
        let z = |data: &[u8]| compress_message(data);
        let table: Vec<(&str, Deflate, Vec<u8>, WsError)> = vec![
            ("RSV1 on a ping", TAKEOVER, zframe(true, true, Ping, b""), P("RSV1 set on a control or continuation frame")),
            (
                "RSV1 on a continuation",
                TAKEOVER,
                cat(&[zframe(false, true, Text, &z(b"ab")[..1]), zframe(true, true, Continuation, &z(b"ab")[1..])]),
                P("RSV1 set on a control or continuation frame"),
            ),
            ("not deflate data", TAKEOVER, zframe(true, true, Binary, &[0xff, 0xff, 0xff]), WsError::BadCompressedData),
            ("invalid UTF-8, checked after inflating", NO_TAKEOVER, zframe(true, true, Text, &z(&[0x68, 0xff, 0x69])), WsError::InvalidUtf8),
            // 64 KiB of zeros is a few hundred bytes on the wire: refused at the cap.
            ("a bomb", TAKEOVER, zframe(true, true, Binary, &z(&[0; 65536])), WsError::MessageTooBig),
        ];
        for (name, d, input, want) in table {
            let (_, err, kept) = run_deflate(1000, d, &[&input]);
            assert_eq!(err, Some(want), "{name}");
            assert!(!kept, "{name}: a failed connection keeps no inflater");
        }
        // Exactly the cap inflates; the compressed size of incompressible data may pass it.
        let noise: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let (ev, err, _) = run_deflate(1000, TAKEOVER, &[&zframe(true, true, Binary, &z(&noise))]);
        assert_eq!((ev, err), (vec![WsEvent::Binary(noise.into())], None));
        // Without the extension, RSV1 is a reserved bit.
        assert_eq!(run(MAX, &zframe(true, true, Text, &z(b"a"))).1, Some(P("reserved bits set")));
    }

    /// Issue 14: an idle connection's assembler holds nothing but its few words. A frame
    /// that arrives whole is lent out of the input, unmasked in place, with nothing kept; a
    /// message spread over pieces holds its partial state only until it is complete.
    #[test]
    fn only_a_message_in_progress_holds_memory() {
        let mut a = Assembler::new(MAX);
        let mut whole = text("Hello");
        let n = whole.len();
        let (used, ev) = a.advance(&mut whole).unwrap();
        assert_eq!((used, ev), (n, Some(t("Hello"))));
        assert!(matches!(a.advance(&mut text("x")).unwrap().1, Some(WsEvent::Text(Cow::Borrowed(_)))), "a whole frame is lent, not copied");
        assert!(!a.holds_memory());

        let f = cat(&[frame(false, OpCode::Text, b"Hel"), frame(true, OpCode::Continuation, b"lo")]);
        assert_eq!(a.advance_copy(&f[..7]), Ok((7, None)), "header and one payload byte");
        assert!(a.holds_memory(), "a frame cut in two is kept");
        assert_eq!(a.advance_copy(&f[7..9]), Ok((2, None)));
        assert!(a.holds_memory(), "an open fragmented message is kept");
        let mut rest = f[9..].to_vec();
        let (_, ev) = a.advance(&mut rest).unwrap();
        assert_eq!(ev, Some(t("Hello")));
        assert!(!a.holds_memory(), "complete: the partial state is let go");
    }
}
