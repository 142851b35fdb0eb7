//! The opening handshake, server side (RFC 6455 §4.2): validate the client's upgrade request
//! and compute the response headers. Pure: a request head in, headers or an error out.

use base64::Engine;

use super::extensions::{self, Deflate};
use crate::proto::http1::{Method, RequestHead, Response};

/// RFC 6455 §1.3: the GUID appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request was refused; each maps to one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a WebSocket upgrade at all (a plain GET on a WebSocket-only route): 426.
    NotUpgrade,
    /// §4.2.1: the method MUST be GET (HTTP/1.1 or higher).
    BadMethodOrVersion,
    /// §4.2.1 item 6: the version MUST be 13; otherwise 426 naming the one we speak (§4.4).
    BadVersion,
    /// §4.2.1 item 5: the key MUST be base64 of 16 bytes.
    BadKey,
    /// The `Origin` is not one of `--allowed-origin` (cross-site WebSocket hijacking): 403.
    ForbiddenOrigin,
}

impl HandshakeError {
    /// The response that tells the client why.
    pub fn response(self) -> Response {
        match self {
            HandshakeError::NotUpgrade | HandshakeError::BadVersion => {
                let text = if self == HandshakeError::BadVersion {
                    "unsupported WebSocket version (13 only)\n"
                } else {
                    "this endpoint speaks WebSocket only\n"
                };
                Response::static_text(426, text)
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Version", "13")
            }
            HandshakeError::BadMethodOrVersion => {
                Response::static_text(400, "WebSocket upgrade needs GET over HTTP/1.1\n")
            }
            HandshakeError::BadKey => Response::static_text(400, "invalid Sec-WebSocket-Key\n"),
            HandshakeError::ForbiddenOrigin => Response::static_text(403, "origin not allowed\n"),
        }
    }
}

/// An accepted handshake: the 101 response's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub accept: String,
    /// The subprotocol chosen, if the client offered one the route speaks.
    pub protocol: Option<&'static str>,
    /// permessage-deflate, if offered acceptably and compression is on.
    pub deflate: Option<Deflate>,
}

impl Accepted {
    /// `101 Switching Protocols` with the handshake headers, naming the extension agreed.
    pub fn response(&self) -> Response {
        let mut r = Response::empty(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", self.accept.clone());
        if let Some(p) = self.protocol {
            r = r.header("Sec-WebSocket-Protocol", p);
        }
        if let Some(d) = self.deflate {
            r = r.header("Sec-WebSocket-Extensions", d.response());
        }
        r
    }
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`, any case).
pub fn wants_upgrade(head: &RequestHead) -> bool {
    head.header_has_token("upgrade", "websocket")
}

/// Validates an upgrade request. `protocols`: the subprotocols the route speaks, in the
/// route's order of preference is not used: the first one *the client* offers that the route
/// speaks wins. `allowed_origins`: empty means any. `compression`: whether
/// permessage-deflate may be agreed (`--ws-compression`).
pub fn accept(head: &RequestHead, protocols: &[&'static str], allowed_origins: &[String], compression: bool) -> Result<Accepted, HandshakeError> {
    // §4.2.1 item 3 and 4: `Upgrade: websocket` and a Connection list containing `Upgrade`.
    if !wants_upgrade(head) || !head.header_has_token("connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if head.method != Method::Get || head.minor_version < 1 {
        return Err(HandshakeError::BadMethodOrVersion);
    }
    if head.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::BadVersion);
    }
    let key = head.header("sec-websocket-key").map(<[u8]>::trim_ascii).ok_or(HandshakeError::BadKey)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if !allowed_origins.is_empty() {
        if let Some(origin) = head.header_str("origin") {
            if !allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin.trim())) {
                return Err(HandshakeError::ForbiddenOrigin);
            }
        }
    }
    let protocol = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find_map(|offered| protocols.iter().copied().find(|p| p.as_bytes() == offered));
    let deflate = if compression { offered_deflate(head) } else { None };
    Ok(Accepted { accept: accept_key(key), protocol, deflate })
}

/// The permessage-deflate offer we accept from the request's `Sec-WebSocket-Extensions`
/// headers (a header that breaks the grammar, or values that are not text, offer nothing).
fn offered_deflate(head: &RequestHead) -> Option<Deflate> {
    let values: Option<Vec<&str>> = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| std::str::from_utf8(v).ok())
        .collect();
    extensions::negotiate(&extensions::parse(&values?)?)
}

/// §4.2.2 item 5.4: base64(SHA-1(key ++ GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http1::{parse_head, HeadLimits};

    fn head(extra: &str) -> RequestHead {
        let req = format!("GET /echo HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
        parse_head(req.as_bytes(), HeadLimits { max_head_bytes: 16384, max_headers: 100 }).unwrap().unwrap().0
    }

    const OK: &str = "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn rfc_example_key() {
        // RFC 6455 §1.3's worked example.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let a = accept(&head(OK), &[], &[], false).unwrap();
        assert_eq!(a.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(a.protocol, None);
    }

    #[test]
    fn errors() {
        let table: &[(&str, HandshakeError)] = &[
            ("", HandshakeError::NotUpgrade),
            ("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n", HandshakeError::NotUpgrade),
            ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", HandshakeError::BadVersion),
            ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", HandshakeError::BadKey),
            ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n", HandshakeError::BadKey),
            ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: !!!\r\n", HandshakeError::BadKey),
        ];
        for (extra, want) in table {
            assert_eq!(accept(&head(extra), &[], &[], false).unwrap_err(), *want, "{extra:?}");
        }
    }

    #[test]
    fn permessage_deflate_is_answered_when_offered_and_on() {
        let h = head(&format!("{OK}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
        let a = accept(&h, &[], &[], true).unwrap();
        assert_eq!(a.deflate, Some(Deflate { client_no_context_takeover: false }));
        let ext = |a: &Accepted| a.response().headers.iter().find(|(n, _)| *n == "Sec-WebSocket-Extensions").map(|(_, v)| v.to_string());
        assert_eq!(ext(&a).as_deref(), Some("permessage-deflate; server_no_context_takeover"));
        assert_eq!(accept(&h, &[], &[], false).unwrap().deflate, None, "--ws-compression off");
        let a = accept(&head(OK), &[], &[], true).unwrap();
        assert_eq!(a.deflate, None, "not offered");
        assert_eq!(ext(&a), None, "nothing named");
        let h = head(&format!("{OK}Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n"));
        assert_eq!(accept(&h, &[], &[], true).unwrap().deflate, None, "an offer we cannot meet is declined");
    }

    #[test]
    fn origin_and_protocol() {
        let allowed = vec!["https://good.example".to_string()];
        let h = head(&format!("{OK}Origin: https://evil.example\r\n"));
        assert_eq!(accept(&h, &[], &allowed, false).unwrap_err(), HandshakeError::ForbiddenOrigin);
        let h = head(&format!("{OK}Origin: https://good.example\r\n"));
        assert!(accept(&h, &[], &allowed, false).is_ok());
        let h = head(&format!("{OK}Sec-WebSocket-Protocol: mqtt, chat\r\nSec-WebSocket-Protocol: json\r\n"));
        assert_eq!(accept(&h, &["json", "chat"], &[], false).unwrap().protocol, Some("chat"));
        assert_eq!(accept(&h, &["xml"], &[], false).unwrap().protocol, None);
    }
}
