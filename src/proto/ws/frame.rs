//! The frame header (RFC 6455 §5.2): decoding what a client sends, encoding what we send.
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!  | |1|2|3|       |K|             |                               |
//!  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!  |     Extended payload length continued, if payload len == 127  |
//!  + - - - - - - - - - - - - - - - +-------------------------------+
//!  |                               |Masking-key, if MASK set to 1  |
//!  +-------------------------------+-------------------------------+
//! ```
//!
//! Only the header lives here: a header is at most 14 bytes and is decoded whole or not at
//! all, while the payload (up to `max_message`) is consumed piecewise by the
//! [`Assembler`](super::Assembler) as it arrives. Every rule that can be checked from the
//! header alone is checked here, so a bad frame is refused before any of its payload is read.

use super::error::WsError;

/// RSV1 within [`FrameHeader::rsv`]: permessage-deflate's "this message is compressed".
pub const RSV1: u8 = 0x4;

/// The longest header: 2 bytes, a 64-bit length, a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The frame types of RFC 6455 §5.2 / §11.8. The reserved values (3-7, 0xB-0xF) have no
/// variant: [`OpCode::from_u8`] refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for the low 4 bits of a frame's first byte; `None` for a reserved one.
    pub fn from_u8(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// RFC 6455 §5.5: "Control frames are identified by opcodes where the most significant
    /// bit of the opcode is 1."
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// A decoded frame header. The payload follows it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last fragment of a message.
    pub fin: bool,
    /// The RSV1-3 bits (3 bits). [`FrameHeader::decode`] refuses RSV2 and RSV3 (no extension
    /// we speak defines them); RSV1 (permessage-deflate's "compressed", RFC 7692 §6) is judged
    /// by the [`Assembler`](super::Assembler), which knows what was negotiated and where in a
    /// message the frame falls.
    pub rsv: u8,
    pub opcode: OpCode,
    /// The masking key; every client frame has one, no server frame does.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`. Returns the header and its length in bytes,
    /// `Ok(None)` if `buf` does not yet hold the whole header (nothing is consumed), or the
    /// rule the header breaks. Rules visible in the first two bytes are checked as soon as
    /// those two bytes are there, so a bad frame fails without waiting for more input.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        // §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings for
        // non-zero values. If a nonzero value is received [...] the receiving endpoint MUST
        // _Fail the WebSocket Connection_."
        if rsv & RSV1 != rsv {
            return Err(WsError::Protocol("reserved bits set"));
        }
        // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
        // WebSocket Connection_."
        let Some(opcode) = OpCode::from_u8(b0 & 0x0F) else {
            return Err(WsError::Protocol("reserved opcode"));
        };
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less and
            // MUST NOT be fragmented."
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(WsError::Protocol("control frame over 125 bytes"));
            }
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        // §5.2: "the minimal number of bytes MUST be used to encode the length". The RFC puts
        // this on the sender; a receiver that tolerated it would accept two spellings of one
        // frame, so we fail the connection instead.
        let payload_len = match len7 {
            126 => {
                let n = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
                if n < 126 {
                    return Err(WsError::Protocol("non-minimal 16-bit payload length"));
                }
                n
            }
            127 => {
                let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                // §5.2: "the most significant bit MUST be 0".
                if n >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit payload length with top bit set"));
                }
                if n < 0x1_0000 {
                    return Err(WsError::Protocol("non-minimal 64-bit payload length"));
                }
                n
            }
            n => u64::from(n),
        };
        let mask = masked.then(|| buf[2 + ext..6 + ext].try_into().expect("4 bytes"));
        Ok(Some((FrameHeader { fin, rsv, opcode, mask, payload_len }, header_len)))
    }

    /// Bytes [`FrameHeader::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header (not the payload) with the minimal length encoding. Used by tests
    /// and tools that play the client; the server's own frames go through
    /// [`encode_server_frame`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.rsv <= 0x7, "rsv is 3 bits");
        debug_assert!(self.payload_len >> 63 == 0, "§5.2: the most significant bit MUST be 0");
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0x7) << 4 | self.opcode as u8);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload_len {
            n @ 0..=125 => out.push(mask_bit | n as u8),
            n @ 126..=0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

/// Header bytes of an unmasked frame carrying `payload_len` bytes: 2, 4 or 10.
pub fn server_header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends one whole server frame: FIN set, no RSV bits, unmasked, minimal length encoding.
/// This is the hot path of every send (and is done once per fan-out, not per recipient), so
/// it builds the header in a small array and appends header and payload with one
/// reservation.
pub fn encode_server_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    // §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD);
    let len = payload.len();
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode as u8;
    // §5.1: "A server MUST NOT mask any frames that it sends to the client", so the MASK bit
    // stays clear and no key follows.
    let head_len = match len {
        0..=125 => {
            head[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    out.reserve(head_len + len);
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: fn(&'static str) -> WsError = WsError::Protocol;

    #[test]
    fn rsv1_is_left_to_the_assembler() {
        let (h, n) = FrameHeader::decode(&[0xC1, 0x80, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.rsv, h.opcode, n), (RSV1, OpCode::Text, 6));
        let (h, _) = FrameHeader::decode(&[0xC9, 0x80, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.rsv, h.opcode), (RSV1, OpCode::Ping), "even on a control frame: the assembler refuses it");
    }

    #[test]
    fn decode_errors() {
        // (name, header bytes, the error). Each input is complete enough to be judged.
        let table: &[(&str, &[u8], WsError)] = &[
            ("opcode 3", &[0x83, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode 4", &[0x84, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode 5", &[0x85, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode 6", &[0x86, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode 7", &[0x87, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode B", &[0x8B, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode C", &[0x8C, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode D", &[0x8D, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode E", &[0x8E, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode F", &[0x8F, 0x80, 1, 2, 3, 4], P("reserved opcode")),
            ("opcode 3 without fin", &[0x03, 0x80], P("reserved opcode")),
            ("rsv2", &[0xA1, 0x80, 1, 2, 3, 4], P("reserved bits set")),
            ("rsv3", &[0x91, 0x80, 1, 2, 3, 4], P("reserved bits set")),
            ("rsv on ping", &[0xF9, 0x80], P("reserved bits set")),
            ("rsv1 and rsv3", &[0xD1, 0x80, 1, 2, 3, 4], P("reserved bits set")),
            ("16-bit length 0", &[0x82, 0xFE, 0, 0, 1, 2, 3, 4], P("non-minimal 16-bit payload length")),
            ("16-bit length 125", &[0x82, 0xFE, 0, 125, 1, 2, 3, 4], P("non-minimal 16-bit payload length")),
            ("16-bit length 125, unmasked", &[0x82, 0x7E, 0, 125], P("non-minimal 16-bit payload length")),
            (
                "64-bit length 0",
                &[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                P("non-minimal 64-bit payload length"),
            ),
            (
                "64-bit length 65535",
                &[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4],
                P("non-minimal 64-bit payload length"),
            ),
            (
                "64-bit length 2^63",
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                P("64-bit payload length with top bit set"),
            ),
            (
                "64-bit length all ones",
                &[0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4],
                P("64-bit payload length with top bit set"),
            ),
            ("ping without fin", &[0x09, 0x80], P("fragmented control frame")),
            ("pong without fin", &[0x0A, 0x80], P("fragmented control frame")),
            ("close without fin", &[0x08, 0x80], P("fragmented control frame")),
            ("ping 126", &[0x89, 0xFE, 0, 126, 1, 2, 3, 4], P("control frame over 125 bytes")),
            ("ping 127 (judged from 2 bytes)", &[0x89, 0xFF], P("control frame over 125 bytes")),
            ("close 126 (judged from 2 bytes)", &[0x88, 0xFE], P("control frame over 125 bytes")),
        ];
        for (name, bytes, err) in table {
            assert_eq!(FrameHeader::decode(bytes), Err(*err), "{name}");
        }
    }

    #[test]
    fn decode_needs_the_whole_header() {
        // (name, complete header). Every proper prefix is Ok(None); the whole is Some.
        let table: &[(&str, &[u8])] = &[
            ("7-bit masked", &[0x81, 0x85, 1, 2, 3, 4]),
            ("7-bit unmasked", &[0x81, 0x05]),
            ("16-bit masked", &[0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4]),
            ("64-bit masked", &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]),
            ("64-bit unmasked", &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (name, bytes) in table {
            for cut in 0..bytes.len() {
                assert_eq!(FrameHeader::decode(&bytes[..cut]), Ok(None), "{name} cut at {cut}");
            }
            let (_, used) = FrameHeader::decode(bytes).unwrap().expect(name);
            assert_eq!(used, bytes.len(), "{name}");
            // Trailing payload bytes are not part of the header.
            let mut more = bytes.to_vec();
            more.extend_from_slice(b"payload");
            assert_eq!(FrameHeader::decode(&more).unwrap().unwrap().1, bytes.len(), "{name}");
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7, as (name, frame bytes, header, header bytes).
        let h = |fin, opcode, mask, payload_len| FrameHeader { fin, rsv: 0, opcode, mask, payload_len };
        let key = Some([0x37, 0xfa, 0x21, 0x3d]);
        let table: &[(&str, &[u8], FrameHeader, usize)] = &[
            ("unmasked text", &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], h(true, OpCode::Text, None, 5), 2),
            (
                "masked text",
                &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
                h(true, OpCode::Text, key, 5),
                6,
            ),
            ("first fragment", &[0x01, 0x03, 0x48, 0x65, 0x6c], h(false, OpCode::Text, None, 3), 2),
            ("last fragment", &[0x80, 0x02, 0x6c, 0x6f], h(true, OpCode::Continuation, None, 2), 2),
            ("unmasked ping", &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], h(true, OpCode::Ping, None, 5), 2),
            (
                "masked pong",
                &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
                h(true, OpCode::Pong, key, 5),
                6,
            ),
            ("256 bytes binary", &[0x82, 0x7E, 0x01, 0x00], h(true, OpCode::Binary, None, 256), 4),
            ("64 KiB binary", &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0], h(true, OpCode::Binary, None, 65536), 10),
        ];
        for (name, bytes, header, used) in table {
            assert_eq!(FrameHeader::decode(bytes), Ok(Some((*header, *used))), "{name}");
            let mut out = Vec::new();
            header.encode(&mut out);
            assert_eq!(out, &bytes[..*used], "{name}");
            assert_eq!(header.encoded_len(), *used, "{name}");
        }
        let mut out = Vec::new();
        encode_server_frame(&mut out, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_server_frame(&mut out, OpCode::Ping, b"Hello");
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn lengths_round_trip() {
        // (payload length, header bytes unmasked)
        let table = [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (1 << 32, 10)];
        for (len, head_len) in table {
            for mask in [None, Some([0xA1, 0xB2, 0xC3, 0xD4])] {
                for opcode in [OpCode::Text, OpCode::Binary, OpCode::Continuation] {
                    for fin in [true, false] {
                        let h = FrameHeader { fin, rsv: 0, opcode, mask, payload_len: len };
                        let mut out = Vec::new();
                        h.encode(&mut out);
                        let want = head_len + if mask.is_some() { 4 } else { 0 };
                        assert_eq!((out.len(), h.encoded_len()), (want, want), "{len} {mask:?}");
                        assert_eq!(FrameHeader::decode(&out), Ok(Some((h, want))), "{len} {mask:?}");
                    }
                }
            }
            if len <= 65536 {
                let payload = vec![0x5A; len as usize];
                let mut out = Vec::new();
                encode_server_frame(&mut out, OpCode::Binary, &payload);
                assert_eq!(server_header_len(len as usize), head_len, "{len}");
                assert_eq!(out.len(), head_len + len as usize, "{len}");
                let want = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: len };
                assert_eq!(FrameHeader::decode(&out), Ok(Some((want, head_len))), "{len}");
                assert_eq!(&out[head_len..], &payload[..], "{len}");
            }
        }
        // Control frames up to 125 bytes round-trip too.
        for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            for len in [0usize, 125] {
                let mut out = Vec::new();
                encode_server_frame(&mut out, opcode, &vec![7; len]);
                let want = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: len as u64 };
                assert_eq!(FrameHeader::decode(&out), Ok(Some((want, 2))), "{opcode:?} {len}");
            }
        }
    }

    #[test]
    fn opcodes() {
        for bits in 0..16u8 {
            match OpCode::from_u8(bits) {
                Some(op) => {
                    assert_eq!(op as u8, bits);
                    assert_eq!(op.is_control(), bits >= 8, "{op:?}");
                }
                None => assert!(matches!(bits, 3..=7 | 0xB..=0xF), "{bits}"),
            }
        }
    }
}
