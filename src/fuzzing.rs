//! The bodies of the fuzz targets in `fuzz/`, kept here so that `cargo test` can replay the
//! committed seed corpus through exactly the same code (`tests/fuzz_seeds.rs`). Each checks
//! invariants with `assert!`: a panic is a finding.

use crate::proto::http1::{body::ChunkedDecoder, HeadLimits, ReadEvent, ReaderLimits, RequestReader};
use crate::proto::ws::extensions::Deflate;
use crate::proto::ws::{Assembler, WsEvent};

/// The request reader fed the input (all but the first byte) whole, in two pieces split where
/// the first byte says, and byte by byte: all three must agree, and nothing may panic.
pub fn http_head(data: &[u8]) {
    let limits = ReaderLimits { head: HeadLimits { max_head_bytes: 4096, max_headers: 32 }, max_body_bytes: 4096 };
    let Some((&first, input)) = data.split_first() else { return };
    let whole = read_all(limits, &[input]);
    let split = first as usize % (input.len() + 1);
    let two = read_all(limits, &[&input[..split], &input[split..]]);
    assert_eq!(two, whole, "split at {split} changed the outcome");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(read_all(limits, &bytes), whole, "byte by byte changed the outcome");
}

/// (method, target, body) of each request read, and the status of the error that ended it.
type ReadOutcome = (Vec<(String, String, Vec<u8>)>, Option<u16>);

/// Runs a reader over pieces the way the loop does.
fn read_all(limits: ReaderLimits, pieces: &[&[u8]]) -> ReadOutcome {
    let mut r = RequestReader::new(limits);
    let (events, err) = feed_pieces(pieces, |buf| r.advance(buf));
    let got = events
        .into_iter()
        .filter_map(|ev| match ev {
            ReadEvent::Request(req) => {
                assert!(req.body.len() <= limits.max_body_bytes);
                Some((req.head.method_str().to_string(), req.head.target().to_string(), req.body))
            }
            ReadEvent::SendContinue => None,
        })
        .collect();
    (got, err.map(|e| e.status()))
}

/// Feeds `pieces` to an incremental decoder the way the event loop does: bytes it does not
/// use stay buffered and are offered again, longer, with the next piece. Returns every event
/// and the error that stopped it, if any. The decoders' tests and fuzz targets all drive
/// them through this one function.
pub fn feed_pieces<E, X>(
    pieces: &[&[u8]],
    mut advance: impl FnMut(&[u8]) -> Result<(usize, Option<E>), X>,
) -> (Vec<E>, Option<X>) {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match advance(&buf) {
                Err(e) => return (got, Some(e)),
                Ok((used, ev)) => {
                    assert!(used <= buf.len(), "a decoder used more bytes than it was given");
                    buf.drain(..used);
                    match ev {
                        Some(ev) => got.push(ev),
                        None if used == 0 || buf.is_empty() => break,
                        None => {}
                    }
                }
            }
        }
    }
    (got, None)
}

/// The chunked decoder fed `data` whole and byte by byte: same body, same bytes used.
pub fn chunked(data: &[u8]) {
    let mut whole = ChunkedDecoder::new(1 << 16);
    let mut out_whole = Vec::new();
    let res_whole = whole.decode(data, &mut out_whole);

    let mut bytewise = ChunkedDecoder::new(1 << 16);
    let mut out_bytes = Vec::new();
    let mut used = 0;
    let mut err = None;
    for b in data {
        if bytewise.is_done() {
            break;
        }
        match bytewise.decode(std::slice::from_ref(b), &mut out_bytes) {
            Ok(n) => used += n,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    match res_whole {
        Ok(n) => {
            assert_eq!(err, None);
            assert_eq!(n, used);
            assert_eq!(out_whole, out_bytes);
            assert_eq!(whole.is_done(), bytewise.is_done());
        }
        Err(e) => assert_eq!(Some(e), err),
    }
}

/// Message limit for the WebSocket target: small, so the fuzzer reaches "message too big".
const WS_MAX_MESSAGE: usize = 1000;

/// The WebSocket assembler fed a client's raw bytes (`data` after its first byte) whole,
/// byte by byte, and in two pieces split at the point the first byte picks: all must agree
/// on the events and the error, the events must keep the protocol's promises, and nothing
/// may panic.
pub fn ws_assembler(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else { return };
    // The first byte's top bits: permessage-deflate off, with or without context takeover.
    let deflate = match first >> 6 {
        1 => Some(Deflate { client_no_context_takeover: false }),
        2 => Some(Deflate { client_no_context_takeover: true }),
        _ => None,
    };
    let whole = ws_run(&[stream], deflate);
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(ws_run(&bytewise, deflate), whole, "byte by byte changed the outcome");
    let split = first as usize % (stream.len() + 1);
    assert_eq!(ws_run(&[&stream[..split], &stream[split..]], deflate), whole, "split at {split} changed the outcome");
}

/// Runs an assembler over pieces the way the loop does; returns the events and the error's
/// close code and reason, if any, after checking the promises each event keeps.
fn ws_run(pieces: &[&[u8]], deflate: Option<Deflate>) -> (Vec<WsEvent<'static>>, Option<(u16, &'static str)>) {
    let mut a = Assembler::new(WS_MAX_MESSAGE);
    if let Some(d) = deflate {
        a.set_deflate(d);
    }
    let (events, err) = feed_pieces(pieces, |buf| a.advance_copy(buf));
    for (i, ev) in events.iter().enumerate() {
        match ev {
            WsEvent::Text(t) => {
                assert!(t.len() <= WS_MAX_MESSAGE);
                assert!(std::str::from_utf8(t).is_ok(), "text event is not UTF-8");
            }
            WsEvent::Binary(b) => assert!(b.len() <= WS_MAX_MESSAGE),
            WsEvent::Ping(p) | WsEvent::Pong(p) => assert!(p.len() <= 125),
            WsEvent::Close(c) => {
                if let Some((code, reason)) = c {
                    assert!(crate::proto::ws::is_valid_received_code(*code));
                    assert!(reason.len() <= 123);
                }
                // Nothing after a close is processed.
                assert_eq!(i, events.len() - 1, "an event after the close");
                assert!(a.is_closed());
                assert_eq!(a.advance_copy(b"\x81\x80\0\0\0\0"), Ok((0, None)));
            }
        }
    }
    (events, err.map(|e| (e.close_code(), e.reason())))
}

/// SSE encoding read back by the WHATWG event-stream rules: the data comes back as sent,
/// with CR and CRLF line ends as LF (the only form an event stream can carry).
pub fn sse_roundtrip(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    crate::proto::sse::encode_event(&mut out, Some("1"), Some("e"), text.as_bytes());
    let events = crate::proto::sse::parse::events(&out);
    assert_eq!(events.len(), 1);
    let want = text.replace("\r\n", "\n").replace('\r', "\n");
    assert_eq!(events[0].data, want);
    assert_eq!(events[0].event, "e");
    assert_eq!(events[0].id.as_deref(), Some("1"));
}

/// An Engine.IO polling payload: decoding never panics, and what decodes re-encodes to a
/// payload that decodes to the same packets.
pub fn engineio_payload(data: &[u8]) {
    use crate::proto::engineio::{decode_payload, encode_poll_packet, SEPARATOR};
    let Ok(packets) = decode_payload(data) else { return };
    assert!(!packets.is_empty());
    let mut again = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            again.push(SEPARATOR);
        }
        encode_poll_packet(&mut again, p);
    }
    assert_eq!(decode_payload(&again).expect("a re-encoded payload decodes"), packets);
}

/// A Socket.IO packet: decoding never panics, and a packet that decodes, encoded again with
/// its data compacted, decodes to the same packet.
pub fn socketio_packet(data: &[u8]) {
    use crate::proto::socketio::{compact_json, decode, encode};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(p) = decode(text) else { return };
    let mut again = Vec::new();
    let compact = p.data.map(|d| compact_json(d).into_owned()).unwrap_or_default();
    encode(&mut again, p.kind, p.attachments, p.nsp, p.id, &compact);
    let again = String::from_utf8(again).expect("UTF-8 in, UTF-8 out");
    let q = decode(&again).unwrap_or_else(|e| panic!("{again:?} does not decode: {e}"));
    assert_eq!((q.kind, q.attachments, q.nsp, q.id, &q.value), (p.kind, p.attachments, p.nsp, p.id, &p.value), "{again:?}");
}

/// A RESP reply stream: the reader fed it whole, split where the first byte says, and byte
/// by byte must hand out the same replies and the same error, and nothing may panic.
pub fn resp_reader(data: &[u8]) {
    use crate::proto::resp::{Limits, Reader};
    let Some((&first, input)) = data.split_first() else { return };
    let limits = Limits { max_bulk: 4096, max_elements: 256, max_depth: 8 };
    let read = |pieces: &[&[u8]]| {
        let mut r = Reader::new(limits);
        let mut got = Vec::new();
        for p in pieces {
            r.feed(p);
            loop {
                match r.next_reply() {
                    Ok(Some(v)) => got.push(format!("{v:?}")),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
        }
        (got, None)
    };
    let whole = read(&[input]);
    let split = first as usize % (input.len() + 1);
    assert_eq!(read(&[&input[..split], &input[split..]]), whole, "split at {split}");
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(read(&bytes), whole, "byte by byte");
}

/// A message body as another node (or a hostile Redis) may send it: decoding never panics,
/// and what decodes encodes back to the same message. The first line before a space, if
/// any, is also read as a stream id, which must spell its number back the same way.
pub fn cluster_body(data: &[u8]) {
    use crate::cluster::wire::{decode_body, encode_body, parse_stream_id, stream_id};
    if let Some(sp) = data.iter().position(|&b| b == b' ') {
        if let Some(id) = parse_stream_id(&data[..sp]) {
            assert_eq!(parse_stream_id(stream_id(id).as_bytes()), Some(id));
        }
    }
    let Some(b) = decode_body(data) else { return };
    let origin = b.origin.as_ref().map(|(n, s)| (&**n, *s));
    let again = encode_body(b.event.as_deref(), &b.data, b.sio.as_deref(), origin);
    assert_eq!(decode_body(&again).as_ref(), Some(&b), "re-encoded differently");
}

/// A `Sec-WebSocket-Extensions` value from a client: parsing never panics, and an accepted
/// permessage-deflate offer is answered with a value that parses and names only what RFC
/// 7692 lets a response name.
pub fn ws_extensions(data: &[u8]) {
    use crate::proto::ws::extensions::{negotiate, parse};
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Some(exts) = parse(&[s]) else { return };
    if let Some(d) = negotiate(&exts) {
        let resp = d.response();
        let back = parse(&[&resp]).expect("our response parses");
        assert_eq!(back.len(), 1);
        assert!(back[0].params.iter().all(|(k, v)| v.is_none() && (k == "server_no_context_takeover" || k == "client_no_context_takeover")));
    }
}

/// A compressed message from a client: inflating never panics and never passes the cap,
/// with or without context taken over between messages (the input is cut into two messages
/// where the first byte says); what inflates compresses and inflates back the same.
pub fn ws_inflate(data: &[u8]) {
    use crate::proto::ws::deflate::{compress_message, Inflater};
    let Some((&first, input)) = data.split_first() else { return };
    let split = first as usize % (input.len() + 1);
    let mut keep = Inflater::new(true);
    for part in [&input[..split], &input[split..]] {
        let Ok(out) = keep.message(part, 4096) else { return };
        assert!(out.len() <= 4096);
        assert_eq!(Inflater::new(false).message(&compress_message(&out), 4096).as_deref(), Ok(&out[..]));
    }
}
