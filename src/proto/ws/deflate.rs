//! permessage-deflate's data transform (RFC 7692 §7.2), on `flate2` (raw DEFLATE, miniz_oxide):
//! a message is compressed on its own (the server never takes context over, see
//! `extensions.rs`) and the trailing `00 00 ff ff` of the sync flush is removed; a received
//! message gets it back before inflating. Inflating is capped: a small message that inflates
//! past the cap (a decompression bomb) is refused as soon as the output passes it, without
//! inflating the rest. Pure: bytes in, bytes out.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{FrameHeader, OpCode, RSV1};

/// The tail every sync flush ends with; §7.2.1 removes it, §7.2.2 puts it back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses one message on its own (no context kept between messages): the payload of a
/// frame with RSV1 set.
///
/// In two stages, because miniz_oxide's sync flush cannot be trusted to finish in the call
/// that consumes the last input, nor to fill the output before it stops (a message of 1 MiB
/// of noise came out truncated when the two were one loop): first all input with no flush,
/// then sync flushes until the output ends with the flush's tail and the call left room.
pub fn compress_message(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| compress_with(&mut c.borrow_mut(), data))
}

thread_local! {
    /// One compressor for the thread, reset before each message. A fresh `Compress` is a few
    /// hundred KiB of zeroed tables: made per message it cost more than the compression
    /// (fan-out to 200 compressing subscribers ran at 0.28x of plain; reset clears the same
    /// state without the allocation).
    static COMPRESSOR: std::cell::RefCell<Compress> = std::cell::RefCell::new(Compress::new(Compression::fast(), false));
}

fn compress_with(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    c.reset();
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    while (c.total_in() as usize) < data.len() {
        // compress_vec writes into the spare capacity only.
        out.reserve(data.len() / 2 + 64);
        let used = c.total_in() as usize;
        let _ = c.compress_vec(&data[used..], &mut out, FlushCompress::None);
    }
    loop {
        out.reserve(1024);
        let _ = c.compress_vec(&[], &mut out, FlushCompress::Sync);
        if out.ends_with(&TAIL) && out.len() < out.capacity() {
            break;
        }
    }
    out.truncate(out.len() - TAIL.len());
    // §7.2.3.6: an empty message compresses to a single 0x00 block, never to nothing.
    if out.is_empty() {
        out.push(0x00);
    }
    out
}

/// Appends one server data message, compressed (RSV1 set) when its payload has at least `min`
/// bytes, as it is otherwise: small messages gain nothing and cost the peer an inflate.
pub fn encode_message(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], min: usize) {
    debug_assert!(!opcode.is_control(), "RFC 7692 §6.1: control frames are never compressed");
    if payload.len() < min {
        return super::encode_server_frame(out, opcode, payload);
    }
    let z = compress_message(payload);
    FrameHeader { fin: true, rsv: RSV1, opcode, mask: None, payload_len: z.len() as u64 }.encode(out);
    out.extend_from_slice(&z);
}

/// Our own server frames (whole, unfragmented, unmasked, as `encode_server_frame` writes
/// them) with each data frame of at least `min` payload bytes compressed: the shared frames
/// of a fan-out message (a Socket.IO event is a text frame and its attachments' binary
/// frames) compressed once for every subscriber that negotiated permessage-deflate.
pub fn compress_frames(frames: &[u8], min: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len());
    let mut rest = frames;
    while let Ok(Some((h, n))) = FrameHeader::decode(rest) {
        let end = n + h.payload_len as usize;
        let payload = &rest[n..end];
        if h.opcode.is_control() || !h.fin || h.rsv != 0 {
            out.extend_from_slice(&rest[..end]);
        } else {
            encode_message(&mut out, h.opcode, payload, min);
        }
        rest = &rest[end..];
    }
    debug_assert!(rest.is_empty(), "our own frames decode whole");
    out.extend_from_slice(rest);
    out
}

/// Why a compressed message was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the cap (`--max-message`): close 1009.
    TooBig,
    /// Not DEFLATE data: close 1007 (invalid payload data).
    Corrupt,
}

/// One connection's inflater. With client context takeover the window carries over from
/// message to message (the client's back-references may reach into earlier messages); with
/// `client_no_context_takeover` it starts afresh each time and can be dropped between
/// messages.
pub struct Inflater {
    d: Decompress,
    takeover: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("takeover", &self.takeover).finish()
    }
}

impl Inflater {
    pub fn new(client_context_takeover: bool) -> Inflater {
        Inflater { d: Decompress::new(false), takeover: client_context_takeover }
    }

    /// Inflates one whole message's payload (the frames' payloads concatenated), at most
    /// `max` bytes out.
    pub fn message(&mut self, payload: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        if !self.takeover {
            self.d.reset(false);
        }
        let mut out = Vec::new();
        for input in [payload, &TAIL[..]] {
            let mut used = 0;
            loop {
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                // Never more room than the cap allows (plus one byte to see it passed).
                let room = (max + 1 - out.len()).min(64 * 1024);
                out.reserve(room);
                let (in0, out0) = (self.d.total_in(), out.len());
                let status = self.d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync).map_err(|_| InflateError::Corrupt)?;
                used += (self.d.total_in() - in0) as usize;
                let progressed = out.len() > out0 || used == input.len();
                if status == Status::StreamEnd {
                    // BFINAL set: legal, and the end of this message's stream.
                    self.d.reset(false);
                    break;
                }
                if used == input.len() && out.len() < out.capacity() {
                    break;
                }
                if !progressed && out.len() < out.capacity() {
                    return Err(InflateError::Corrupt);
                }
            }
        }
        if out.len() > max {
            return Err(InflateError::TooBig);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_examples_inflate() {
        // RFC 7692 §7.2.3.1: "Hello" as one compressed message.
        let mut i = Inflater::new(true);
        assert_eq!(i.message(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 1000).unwrap(), b"Hello");
        // §7.2.3.2: the second "Hello" with the context taken over: a back-reference.
        assert_eq!(i.message(&[0xf2, 0x00, 0x11, 0x00, 0x00], 1000).unwrap(), b"Hello");
        // §7.2.3.3: uncompressed (stored) block; §7.2.3.6: an empty block.
        let mut i = Inflater::new(false);
        assert_eq!(i.message(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00], 1000).unwrap(), b"Hello");
        assert_eq!(i.message(&[0x00], 1000).unwrap(), b"");
        // §7.2.3.5: two DEFLATE blocks in one message.
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(Inflater::new(false).message(&two, 1000).unwrap(), b"Hello");
    }

    #[test]
    fn what_we_compress_inflates_back() {
        let mut i = Inflater::new(false);
        for data in [&b""[..], b"a", &b"hello hello hello hello ".repeat(200), &(0..=255u8).cycle().take(70_000).collect::<Vec<_>>()] {
            let c = compress_message(data);
            assert!(!c.ends_with(&TAIL), "the tail is removed");
            assert_eq!(i.message(&c, 1 << 20).unwrap(), data);
        }
        assert!(compress_message(&b"x".repeat(10_000)).len() < 100, "repetition compresses");
    }

    #[test]
    fn messages_over_the_threshold_are_compressed_frames() {
        let big = b"{\"price\": 1} ".repeat(40);
        let mut one = Vec::new();
        encode_message(&mut one, OpCode::Text, &big, 100);
        let (h, n) = FrameHeader::decode(&one).unwrap().unwrap();
        assert_eq!((h.rsv, h.opcode, h.fin), (RSV1, OpCode::Text, true));
        assert_eq!(Inflater::new(false).message(&one[n..], 1 << 20).unwrap(), big);
        let mut small = Vec::new();
        encode_message(&mut small, OpCode::Text, b"hi", 100);
        assert_eq!(small, [0x81, 2, b'h', b'i'], "under the threshold: a plain frame");

        // A text frame and a binary attachment, compressed frame by frame; a small one kept.
        let mut frames = Vec::new();
        super::super::encode_server_frame(&mut frames, OpCode::Text, &big);
        super::super::encode_server_frame(&mut frames, OpCode::Binary, b"tiny");
        super::super::encode_server_frame(&mut frames, OpCode::Binary, &[9; 500]);
        let z = compress_frames(&frames, 100);
        let mut rest = &z[..];
        let mut got = Vec::new();
        while let Some((h, n)) = FrameHeader::decode(rest).unwrap() {
            let p = &rest[n..n + h.payload_len as usize];
            got.push(if h.rsv == RSV1 { Inflater::new(false).message(p, 1 << 20).unwrap() } else { p.to_vec() });
            rest = &rest[n + h.payload_len as usize..];
        }
        assert_eq!(got, vec![big.clone(), b"tiny".to_vec(), vec![9; 500]]);
        assert!(z.len() < frames.len() / 4);
    }

    /// Inflates with flate2's own loop, not ours: the compressor is checked against a
    /// reader it did not write.
    fn independent_inflate(c: &[u8], n: usize) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let input = [c, &TAIL[..]].concat();
        let mut out = Vec::with_capacity(n + 64);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
        assert_eq!(d.total_in() as usize, input.len());
        out
    }

    #[test]
    fn every_size_and_kind_of_data_compresses_correctly() {
        let mut x: u32 = 2463534242;
        let mut noise = |n: usize| -> Vec<u8> { (0..n).map(|_| { x ^= x << 13; x ^= x >> 17; x ^= x << 5; x as u8 }).collect() };
        for n in [0, 1, 100, 4095, 65535, 65536, 100_000, 300_000, 1 << 20, 3 << 20] {
            let half: Vec<u8> = noise(n / 2).into_iter().chain(std::iter::repeat_n(b'a', n - n / 2)).collect();
            for data in [noise(n), half, b"{\"k\":1}".iter().copied().cycle().take(n).collect()] {
                let c = compress_message(&data);
                assert!(independent_inflate(&c, data.len()) == data, "{n} bytes");
            }
        }
    }

    #[test]
    fn a_bomb_is_refused_at_the_cap_and_garbage_is_corrupt() {
        let bomb = compress_message(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 * 1024, "{} bytes for 10 MiB: a 200-fold bomb", bomb.len());
        assert_eq!(Inflater::new(false).message(&bomb, 1 << 20), Err(InflateError::TooBig));
        assert_eq!(Inflater::new(false).message(&compress_message(&[7; 100]), 99), Err(InflateError::TooBig));
        assert_eq!(Inflater::new(false).message(&compress_message(&[7; 100]), 100).unwrap().len(), 100, "exactly the cap is allowed");
        assert_eq!(Inflater::new(false).message(&[0xff, 0xff, 0xff, 0xff], 1000), Err(InflateError::Corrupt));
    }
}
