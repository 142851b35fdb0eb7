//! Server-Sent Events: an event → bytes (WHATWG HTML, "Server-sent events", §9.2.6).
//!
//! The browser's EventSource splits the stream into lines at CRLF, LF or CR and joins the
//! `data:` lines of one event with LF. So data containing any of the three line ends is sent
//! as one `data:` line per line, and the client rebuilds it with LF in their place: what the
//! browser sees is the published bytes with every line end normalized to LF, which is the
//! only form the format can carry. Field values never contain a line end (an `id` or `event`
//! with one would break the stream), so they are cut at the first.

/// Appends one event. `id` and `event` are optional; data may be empty (one `data:` line).
pub fn encode_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(first_line(id.as_bytes()));
        out.push(b'\n');
    }
    if let Some(ev) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(first_line(ev.as_bytes()));
        out.push(b'\n');
    }
    let mut rest = data;
    loop {
        out.extend_from_slice(b"data: ");
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                out.extend_from_slice(rest);
                out.push(b'\n');
                break;
            }
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.push(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
        }
    }
    out.push(b'\n');
}

/// `retry:` tells the browser how long to wait before reconnecting.
pub fn encode_retry(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(millis.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// A comment line: ignored by the browser, but it keeps proxies and idle timers from
/// deciding the stream is dead.
pub const HEARTBEAT: &[u8] = b":\n\n";

fn first_line(v: &[u8]) -> &[u8] {
    let end = v.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(v.len());
    &v[..end]
}

/// A parser following the WHATWG event-stream interpretation rules, used by the tests and the
/// fuzz target to check that what we encode is what a browser reads back.
pub mod parse {
    /// One dispatched event as EventSource delivers it.
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    pub struct Event {
        pub id: Option<String>,
        pub event: String,
        pub data: String,
    }

    /// Parses a whole stream (decoded as UTF-8, lossily, as the browser does).
    pub fn events(stream: &[u8]) -> Vec<Event> {
        let text = String::from_utf8_lossy(stream);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut out = Vec::new();
        let mut data = String::new();
        let mut event = String::new();
        let mut last_id: Option<String> = None;
        let mut lines = Vec::new();
        // Lines end at CRLF, LF or CR.
        let mut cur = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(std::mem::take(&mut cur));
                }
                '\n' => lines.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        for line in lines {
            if line.is_empty() {
                // Dispatch.
                if !data.is_empty() {
                    if data.ends_with('\n') {
                        data.pop();
                    }
                    out.push(Event {
                        id: last_id.clone(),
                        event: if event.is_empty() { "message".into() } else { event.clone() },
                        data: std::mem::take(&mut data),
                    });
                }
                data.clear();
                event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(' ').unwrap_or(v))
                }
                None => (line.as_str(), ""),
            };
            match field {
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "event" => event = value.to_string(),
                "id" if !value.contains('\0') => last_id = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) -> parse::Event {
        let mut out = Vec::new();
        encode_event(&mut out, Some("42"), Some("news"), data);
        let evs = parse::events(&out);
        assert_eq!(evs.len(), 1, "{:?}", String::from_utf8_lossy(&out));
        evs.into_iter().next().unwrap()
    }

    #[test]
    fn bytes() {
        let mut out = Vec::new();
        encode_event(&mut out, Some("7"), None, b"a\nb\r\nc\rd");
        assert_eq!(out, b"id: 7\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
        out.clear();
        encode_event(&mut out, None, Some("x\ny"), b"");
        assert_eq!(out, b"event: x\ndata: \n\n");
    }

    #[test]
    fn line_ends_come_back_as_lf() {
        // (published, what EventSource hands the page)
        let table: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("a\nb", "a\nb"),
            ("a\r\nb", "a\nb"),
            ("a\rb", "a\nb"),
            ("trailing\n", "trailing\n"),
            ("\n\nx", "\n\nx"),
            ("  spaced  ", "  spaced  "),
            (": not a comment", ": not a comment"),
            ("data: nested", "data: nested"),
            ("ünïcødé ✓", "ünïcødé ✓"),
        ];
        for (published, seen) in table {
            let ev = roundtrip(published.as_bytes());
            assert_eq!(ev.data, *seen, "{published:?}");
            assert_eq!(ev.id.as_deref(), Some("42"));
            assert_eq!(ev.event, "news");
        }
    }

    #[test]
    fn empty_data_is_dispatched_empty() {
        // One `data:` line with nothing after it leaves "\n" in the buffer, so the browser
        // dispatches an event whose data is "" (the trailing LF is removed).
        let ev = roundtrip(b"");
        assert_eq!(ev.data, "");
    }
}
