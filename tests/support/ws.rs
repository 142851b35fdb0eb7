//! Raw WebSocket bytes for the integration tests: the RFC 6455 §1.3 example key, masked
//! client frames, and a reader of server frames that checks they are never masked.

use super::Client;

/// RFC 6455 §1.3's example key and the accept value the server must answer with.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A client frame: `first` is the first byte (FIN/RSV/opcode); masked with a fixed key
/// unless `masked` is false (to test that the server refuses it).
pub fn frame_raw(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if masked {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_raw(if fin { 0x80 } else { 0 } | opcode, payload, true)
}

/// Reads one server frame: (fin, opcode, payload). Server frames must be unmasked and, on
/// a connection without extensions, have no RSV bits.
pub fn read_frame(c: &mut Client) -> (bool, u8, Vec<u8>) {
    let (fin, rsv, op, payload) = read_frame_rsv(c);
    assert_eq!(rsv, 0, "no RSV bits");
    (fin, op, payload)
}

/// [`read_frame`] with the RSV bits: (fin, rsv (3 bits), opcode, payload).
pub fn read_frame_rsv(c: &mut Client) -> (bool, u8, u8, Vec<u8>) {
    let h = c.read_exact_quiet(2);
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => u16::from_be_bytes(c.read_exact_quiet(2).try_into().unwrap()) as usize,
        127 => u64::from_be_bytes(c.read_exact_quiet(8).try_into().unwrap()) as usize,
        n => n as usize,
    };
    (h[0] & 0x80 != 0, (h[0] >> 4) & 0x7, h[0] & 0x0f, c.read_exact_quiet(len))
}
