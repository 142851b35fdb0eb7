//! permessage-deflate's data transform (RFC 7692 §7.2), on `flate2` (raw DEFLATE, miniz_oxide):
//! a message is compressed on its own (the server never takes context over, see
//! `extensions.rs`) and the trailing `00 00 ff ff` of the sync flush is removed; a received
//! message gets it back before inflating. Inflating is capped: a small message that inflates
//! past the cap (a decompression bomb) is refused as soon as the output passes it, without
//! inflating the rest. Pure: bytes in, bytes out. Not wired into the connection yet.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The tail every sync flush ends with; §7.2.1 removes it, §7.2.2 puts it back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses one message on its own (no context kept between messages): the payload of a
/// frame with RSV1 set.
pub fn compress_message(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    loop {
        // compress_vec writes into the spare capacity only: grow it until all is flushed.
        out.reserve(data.len().max(64));
        let before = c.total_in() as usize;
        let _ = c.compress_vec(&data[before..], &mut out, FlushCompress::Sync);
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    // §7.2.3.6: an empty message compresses to a single 0x00 block, never to nothing.
    if out.is_empty() {
        out.push(0x00);
    }
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
    fn a_bomb_is_refused_at_the_cap_and_garbage_is_corrupt() {
        let bomb = compress_message(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 * 1024, "{} bytes for 10 MiB: a 200-fold bomb", bomb.len());
        assert_eq!(Inflater::new(false).message(&bomb, 1 << 20), Err(InflateError::TooBig));
        assert_eq!(Inflater::new(false).message(&compress_message(&[7; 100]), 99), Err(InflateError::TooBig));
        assert_eq!(Inflater::new(false).message(&compress_message(&[7; 100]), 100).unwrap().len(), 100, "exactly the cap is allowed");
        assert_eq!(Inflater::new(false).message(&[0xff, 0xff, 0xff, 0xff], 1000), Err(InflateError::Corrupt));
    }
}
