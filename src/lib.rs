//! pushwire: a real-time push server on one mio event loop.
//!
//! The layers, from the bytes up:
//!
//! - [`proto`]: pure codecs (HTTP/1.1 heads, chunked bodies, response heads). Bytes in,
//!   values out; no sockets, no clock. Each decoder has a fuzz target in `fuzz/`.
//! - [`hub`]: channels and users, subscribers, history for replay. Pure bookkeeping: publish
//!   returns the message, the loop asks who gets it in which encoding.
//! - [`net`]: the event loop ([`net::Server`]): a mio `Poll`, connections in a `Slab`,
//!   per-connection buffers with back-pressure, a timer heap. The only code that does I/O.
//! - [`app`]: the routes (registered in one place, `app/routes.rs`), the embedded pages,
//!   static files and counters. Handlers return a [`app::Reply`]; the loop carries it out.
//! - [`config`]: every limit and timeout, with its default and the reason for it.
//!
//! `PROTOCOL.md` is the contract a client sees: routes, statuses, limits.

pub mod app;
pub mod cluster;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod hub;
pub mod net;
pub mod proto;
pub mod sio;
pub mod tls;

pub use config::Config;
pub use net::Server;
