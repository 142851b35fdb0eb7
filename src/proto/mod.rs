//! Pure codecs: bytes in, values out. Nothing here touches a socket or reads a clock, so
//! every decoder can be unit-tested from byte tables and fuzzed without a server.

pub mod engineio;
pub mod http1;
pub mod iframe;
pub mod resp;
pub mod socketio;
pub mod sse;
pub mod ws;
