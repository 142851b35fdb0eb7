//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and the permessage-deflate offer (RFC 7692
//! §7.1): which offer the server accepts and the response it sends. Pure: header values in,
//! a decision out. Not wired into the handshake yet (issue 13 continues with the frame side).
//!
//! The server's side of the bargain, and why:
//! - It compresses every message on its own (`server_no_context_takeover`, always sent, which
//!   §7.1.1.1 allows even when not offered): a fan-out message is compressed once and the
//!   compressed frame shared by every subscriber, and no connection holds a compressor.
//! - It compresses with a 32 KiB window only: an offer with `server_max_window_bits` below 15
//!   cannot be met and is declined (§7.1.2.1), never answered with a window it would not keep.
//! - It inflates with a 32 KiB window, enough for any `client_max_window_bits`, so that
//!   parameter is accepted and not answered (the client then uses its own choice, ≤ 15).
//! - `client_no_context_takeover`, when offered, is answered: the inflater can then be dropped
//!   after each message (an idle connection keeps no 32 KiB window).
//!
//! An offer with an unknown parameter, a parameter twice, or a bad value is declined (§7.1);
//! the next offer is tried; none acceptable means no compression, never a failed handshake.

/// What was agreed for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// The client compresses each message on its own: no inflate state between messages.
    pub client_no_context_takeover: bool,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn response(&self) -> String {
        let mut s = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        s
    }
}

/// One extension of a header value: its name and parameters (values unquoted).
#[derive(Debug, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub params: Vec<(String, Option<String>)>,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn token(s: &str) -> Option<&str> {
    let t = s.trim_matches([' ', '\t']);
    (!t.is_empty() && t.bytes().all(is_tchar)).then_some(t)
}

/// Parses header values (a header may come several times; their lists join). `None` for a
/// value that does not follow the grammar: the whole header is then ignored, as a client
/// that cannot write it cannot be trusted to speak the extension.
pub fn parse(values: &[&str]) -> Option<Vec<Extension>> {
    let mut out = Vec::new();
    for value in values {
        for ext in split_outside_quotes(value, ',') {
            if ext.trim().is_empty() {
                continue; // the list grammar allows empty elements
            }
            let mut parts = split_outside_quotes(ext, ';').into_iter();
            let name = token(parts.next()?)?.to_ascii_lowercase();
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = match p.split_once('=') {
                    None => (token(p)?, None),
                    Some((k, v)) => {
                        let v = v.trim_matches([' ', '\t']);
                        let v = match v.strip_prefix('"') {
                            Some(q) => unquote(q.strip_suffix('"')?)?,
                            None => token(v)?.to_string(),
                        };
                        (token(k)?, Some(v))
                    }
                };
                params.push((k.to_ascii_lowercase(), v));
            }
            out.push(Extension { name, params });
        }
    }
    Some(out)
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A quoted string's content with its escapes undone.
fn unquote(q: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A window size parameter's value: 8 to 15, plain digits (RFC 7692 §7.1.2.1: `1*DIGIT`
/// with no leading zero).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// The first permessage-deflate offer the server can accept, in the client's order.
pub fn negotiate(extensions: &[Extension]) -> Option<Deflate> {
    extensions.iter().filter(|e| e.name == "permessage-deflate").find_map(accept)
}

fn accept(offer: &Extension) -> Option<Deflate> {
    let mut seen: Vec<&str> = Vec::new();
    let mut agreed = Deflate { client_no_context_takeover: false };
    for (k, v) in &offer.params {
        if seen.contains(&k.as_str()) {
            return None;
        }
        seen.push(k);
        match (k.as_str(), v.as_deref()) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
            // We keep a 32 KiB window only: a smaller one asked of us cannot be honoured.
            ("server_max_window_bits", Some(v)) if window_bits(v)? == 15 => {}
            ("server_max_window_bits", Some(_)) => return None,
            // We inflate with a 32 KiB window: whatever the client uses fits.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    Some(agreed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(values: &[&str]) -> Option<String> {
        negotiate(&parse(values)?).map(|d| d.response())
    }

    #[test]
    fn what_browsers_offer_is_accepted() {
        // Chrome and Firefox.
        assert_eq!(neg(&["permessage-deflate; client_max_window_bits"]).as_deref(), Some("permessage-deflate; server_no_context_takeover"));
        // Safari, and clients that offer to drop their context.
        assert_eq!(
            neg(&["permessage-deflate; client_no_context_takeover; client_max_window_bits=15"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(neg(&["permessage-deflate"]).as_deref(), Some("permessage-deflate; server_no_context_takeover"));
        assert_eq!(neg(&["PerMessage-Deflate; Server_Max_Window_Bits=15"]).as_deref(), Some("permessage-deflate; server_no_context_takeover"), "names are case-insensitive");
    }

    #[test]
    fn offers_that_cannot_be_met_are_declined_and_the_next_is_tried() {
        assert_eq!(neg(&["permessage-deflate; server_max_window_bits=10"]), None, "a window we would not keep");
        assert_eq!(
            neg(&["permessage-deflate; server_max_window_bits=10, permessage-deflate; client_no_context_takeover"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            "the fallback offer"
        );
        assert_eq!(neg(&["x-webkit-deflate-frame", "permessage-deflate"]).as_deref(), Some("permessage-deflate; server_no_context_takeover"), "two headers join");
    }

    #[test]
    fn bad_offers_are_declined() {
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; server_max_window_bits",
        ] {
            assert_eq!(neg(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn the_header_grammar() {
        let e = parse(&[r#"foo; a="x,y;z", permessage-deflate; client_max_window_bits="12""#]).unwrap();
        assert_eq!(e[0], Extension { name: "foo".into(), params: vec![("a".into(), Some("x,y;z".into()))] });
        assert_eq!(e[1].params, vec![("client_max_window_bits".into(), Some("12".into()))]);
        assert_eq!(neg(&[r#"permessage-deflate; client_max_window_bits="12""#]).as_deref(), Some("permessage-deflate; server_no_context_takeover"), "a quoted value");
        assert!(parse(&["permessage-deflate; a=\"open"]).is_none(), "an unterminated quote");
        assert!(parse(&["perm essage"]).is_none(), "not a token");
        assert_eq!(parse(&[", ,"]).unwrap(), vec![], "empty list elements");
    }
}
