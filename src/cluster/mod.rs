//! Several pushwire nodes joined by Redis (issue 12), built as sans-IO parts first:
//!
//! - [`url`]: `--redis redis://[user:password@]HOST:PORT[/db]`;
//! - [`backoff`]: reconnect delays, exponential with jitter;
//! - [`link`]: one Redis connection as a state machine (handshake, pipelined replies in
//!   order, capped output, reconnect), tested without sockets;
//! - the RESP codec itself is `proto/resp.rs`.
//!
//! - [`wire`]: key names, ids, the message body, the publish and resume scripts;
//! - [`node`]: this node's side (which topics it follows, gap fills, resumes), sans-IO;
//! - the sockets are `net/redis.rs`; publishing and parked answers are `app/cluster.rs`.

pub mod backoff;
pub mod link;
pub mod node;
pub mod url;
pub mod wire;
