//! HTTP/1.1 (RFC 9110, RFC 9112): request heads, body framing, the per-connection request
//! reader, and the response writer.

pub mod body;
pub mod reader;
pub mod request;
pub mod response;

pub use body::{ChunkedDecoder, Framing};
pub use reader::{ReadEvent, ReaderLimits, Request, RequestReader};
pub use request::{parse_head, HeadLimits, Method, RequestHead};
pub use response::{Body, DateCache, Persist, Response};
