//! Forever-iframe streaming, the HTTP-streaming Comet technique of the classic tutorials: one
//! HTML document that never ends, loaded in a hidden iframe, with one `<script>` element per
//! message calling a function of the parent page.
//!
//! The document starts with [`preamble`]: padding (old browsers render a streamed document
//! only after the first kilobytes) and a local function `p` that hands each message to the
//! parent's callback. Messages are then `<script>p({...})</script>`, the same bytes whatever
//! callback a subscriber named, so one encoding is shared by all. The JSON is made safe for a
//! script element: `<`, `>` and `&` are escaped (no `</script>` or `<!--` can end or confuse
//! it) and so are U+2028 and U+2029 (line terminators in older JavaScript).

/// Bytes of padding after the head: more than the 1–2 KiB IE and old WebKit buffered.
pub const PADDING: usize = 2048;

/// Sent when nothing else was for a while: keeps proxies from timing out the document.
pub const HEARTBEAT: &[u8] = b"<!-- -->\n";

/// A callback is a dotted JavaScript name (`pushwire`, `app.onMessage`): letters, digits,
/// `_` and `$`, not starting with a digit, at most 64 bytes. Anything else would be code.
pub fn valid_callback(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.split('.').all(|part| {
            let mut b = part.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        })
}

/// The start of the document, calling `parent.CALLBACK(message)` for each message.
pub fn preamble(out: &mut Vec<u8>, callback: &str) {
    debug_assert!(valid_callback(callback));
    out.extend_from_slice(b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pushwire</title></head><body>\n<!--");
    out.resize(out.len() + PADDING, b' ');
    out.extend_from_slice(b"-->\n<script>function p(m){try{parent.");
    out.extend_from_slice(callback.as_bytes());
    out.extend_from_slice(b"(m)}catch(e){}}</script>\n");
}

/// One message: `<script>p(JSON)</script>`, `json` being any JSON text.
pub fn encode_call(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(b"<script>p(");
    for c in json.chars() {
        match c {
            '<' => out.extend_from_slice(b"\\u003c"),
            '>' => out.extend_from_slice(b"\\u003e"),
            '&' => out.extend_from_slice(b"\\u0026"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.extend_from_slice(b")</script>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_names_never_code() {
        for ok in ["pushwire", "app.onMessage", "$", "_a1.b_2.$c"] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in ["", "1a", "a..b", "a.", ".a", "alert(1)", "a;b", "a b", "a[0]", "é", &"a".repeat(65)] {
            assert!(!valid_callback(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_call_cannot_break_out_of_its_script_element() {
        let mut out = Vec::new();
        // JSON text as serde_json writes it: the string holds a closing tag and a comment.
        encode_call(&mut out, "{\"data\":\"</script><!--&\u{2028}x\"}");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "<script>p({\"data\":\"\\u003c/script\\u003e\\u003c!--\\u0026\\u2028x\"})</script>\n");
        assert_eq!(s.matches("</script>").count(), 1, "only the element's own end tag");
    }

    #[test]
    fn the_preamble_pads_and_names_the_callback() {
        let mut out = Vec::new();
        preamble(&mut out, "app.onMessage");
        let s = String::from_utf8(out).unwrap();
        assert!(s.len() > PADDING && s.starts_with("<!doctype html>"));
        assert!(s.ends_with("<script>function p(m){try{parent.app.onMessage(m)}catch(e){}}</script>\n"), "{s}");
    }
}
