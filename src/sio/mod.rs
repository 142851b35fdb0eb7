//! Socket.IO v5 over Engine.IO v4: sessions that outlive their TCP connections.
//!
//! - [`session`]: the Engine.IO session as a sans-IO state machine (heartbeat, upgrade,
//!   the queue of packets waiting for a transport). Tested without sockets.
//! - [`server`]: the sessions of the process ([`SioServer`], a slab addressed by slot and
//!   generation like connections) and what the server does with Socket.IO packets: CONNECT
//!   to namespaces, rooms as hub channels, relaying events, acks, users.
//! - [`names`]: the one mapping between rooms/namespaces and hub channels.
//! - [`wire`]: hub messages as Socket.IO events on WebSocket frames and polling payloads.
//!
//! The loop (`net/eio.rs`) attaches transports: a held polling GET, a WebSocket, a
//! WebSocket probing for an upgrade. After anything touches a session the loop flushes it:
//! its queue goes to the attached transport, its deadline to the timer heap, and a closed
//! session is taken apart.

pub mod names;
pub mod server;
pub mod session;
pub mod wire;

pub use server::{Session, SioServer};
