//! WebSocket (RFC 6455) framing and messages, as a pure codec: no sockets, no clock.
//!
//! Read it in the order the bytes meet it:
//!
//! 1. [`frame`]: the frame header (§5.2). [`FrameHeader::decode`] reads a client's header
//!    whole or not at all and refuses what the header alone shows to be wrong (reserved
//!    opcodes and bits, non-minimal lengths, fragmented or oversized control frames, §5.5).
//!    [`encode_server_frame`] writes ours: FIN, unmasked, minimal length.
//! 2. [`mask`]: the XOR masking of client payloads (§5.3), a word at a time, resumable at
//!    any offset so a payload can be unmasked piece by piece as it arrives.
//! 3. [`close`]: close codes (§7.4) and close payloads (§5.5.1).
//! 4. [`assembler`]: one connection's receive side (§5.4 fragmentation, §5.6 and §8.1
//!    UTF-8, §5.1 masking): raw client bytes in, [`WsEvent`]s out, one at a time, with the
//!    message size capped before anything is buffered.
//! 5. [`error`]: [`WsError`], each variant with the one close code that answers it.
//!
//! [`handshake`] (§4.2, the opening handshake) is the event loop's side of the upgrade. The
//! connection's life (answering pings, sending and awaiting the close, heartbeats) belongs
//! to the event loop, which uses these pieces.

pub mod assembler;
pub mod close;
pub mod deflate;
pub mod error;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod mask;

pub use assembler::{Assembler, WsEvent};
pub use close::{encode_close_frame, is_valid_received_code, parse_close_payload};
pub use error::WsError;
pub use frame::{encode_server_frame, server_header_len, FrameHeader, OpCode};
pub use mask::{apply_mask, apply_mask_reference};
