//! Several pushwire nodes joined by Redis (issue 12), built as sans-IO parts first:
//!
//! - [`url`]: `--redis redis://[user:password@]HOST:PORT[/db]`;
//! - [`backoff`]: reconnect delays, exponential with jitter;
//! - [`link`]: one Redis connection as a state machine (handshake, pipelined replies in
//!   order, capped output, reconnect), tested without sockets;
//! - the RESP codec itself is `proto/resp.rs`.
//!
//! Not yet: the loop attaching links to `Poll` (outbound sockets beside the listener),
//! parked replies, the channel ↔ Redis mapping, Streams ids. See the notes.

pub mod backoff;
pub mod link;
pub mod url;
