//! Payload masking (RFC 6455 §5.3).
//!
//! Every byte a client sends in a payload is XORed with its frame's 4-byte key:
//!
//! > j = i MOD 4
//! > transformed-octet-i = original-octet-i XOR masking-key-octet-j
//!
//! Unmasking is the same operation. It touches every received byte, so [`apply_mask`] works a
//! `u64` at a time (the compiler turns this into vector instructions) without `unsafe`;
//! [`apply_mask_reference`] is the plain byte loop of the RFC, kept for the tests and the
//! benchmark that hold the fast one to it.
//!
//! Both take `offset`, the position of `buf[0]` within the frame's payload, because the
//! assembler unmasks a payload piecewise as it arrives: unmasking `[0..a]` with offset 0 and
//! then `[a..n]` with offset `a` gives the same bytes as unmasking `[0..n]` at once.

/// XORs `buf` with `key`, `buf[0]` being byte `offset` of the frame payload.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Line the key up with buf[0]: byte i of buf takes key[(offset + i) % 4]. (A rotation of
    // the key as one integer: `<[u8]>::rotate_left` is a general slice rotation, and was a
    // tenth of the server's instructions per echoed 32-byte message.)
    let key = u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32).to_le_bytes();
    let [k0, k1, k2, k3] = key;
    let wide = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        // Native byte order on both sides: the XOR is bytewise, so endianness cancels out.
        let x = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ wide;
        word.copy_from_slice(&x.to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the rotated key is still lined up.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The RFC's definition, one byte at a time.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[offset.wrapping_add(i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let masked = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for f in [apply_mask, apply_mask_reference] {
            let mut buf = *b"Hello";
            f(&mut buf, key, 0);
            assert_eq!(buf, masked);
            f(&mut buf, key, 0);
            assert_eq!(&buf, b"Hello");
        }
    }

    #[test]
    fn fast_matches_reference_at_every_alignment_and_offset() {
        let key = [0x12, 0x9A, 0xF0, 0x3C];
        let backing: Vec<u8> = (0..320u32).map(|i| (i * 7 + 3) as u8).collect();
        for align in 0..16 {
            for offset in 0..16 {
                for len in 0..300 {
                    let mut fast = backing.clone();
                    let mut slow = backing.clone();
                    apply_mask(&mut fast[align..align + len], key, offset);
                    apply_mask_reference(&mut slow[align..align + len], key, offset);
                    assert_eq!(fast, slow, "align {align} offset {offset} len {len}");
                }
            }
        }
    }

    #[test]
    fn pieces_match_whole() {
        let key = [0xDE, 0xAD, 0xBE, 0xEF];
        let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let mut whole = payload.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..payload.len() {
            for cut2 in [cut, (cut + 1).min(payload.len()), (cut + 9).min(payload.len())] {
                let mut pieces = payload.clone();
                apply_mask(&mut pieces[..cut], key, 0);
                apply_mask(&mut pieces[cut..cut2], key, cut);
                apply_mask(&mut pieces[cut2..], key, cut2);
                assert_eq!(pieces, whole, "cuts {cut} {cut2}");
            }
        }
        // The offset only matters modulo 4, even near the top of usize.
        let mut a = payload.clone();
        let mut b = payload.clone();
        apply_mask(&mut a, key, usize::MAX);
        apply_mask_reference(&mut b, key, 3);
        assert_eq!(a, b);
    }
}
