//! The only code that touches mio: the event loop, connections, buffers and timers.

mod conn;
mod drive;
mod eio;
mod event_loop;
mod http;
mod redis;
pub mod outbuf;
pub mod timers;
mod stream;
mod wire;
mod ws;

pub use event_loop::{Server, MAX_LISTENERS};
