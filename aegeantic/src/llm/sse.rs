//! A small, incremental parser for server-sent events (the `text/event-stream` format).
//!
//! Feed it the body's bytes as they arrive; it returns each event once its terminating
//! blank line has been seen. Lines may end in `\n`, `\r\n` or `\r`, and may be split
//! anywhere across chunks, including inside a UTF-8 character.
//!
//! ```
//! use aegeantic::llm::sse::SseParser;
//!
//! let mut parser = SseParser::new();
//! assert!(parser.push(b"data: hel").is_empty());
//! let events = parser.push(b"lo\n\n: a comment\nevent: error\ndata: a\ndata: b\n\n");
//! assert_eq!(events[0].data, "hello");
//! assert_eq!((events[1].event.as_deref(), events[1].data.as_str()), (Some("error"), "a\nb"));
//! ```

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Parses a byte stream into [`SseEvent`]s.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being read.
    line: Vec<u8>,
    /// The last byte seen was `\r`: a following `\n` belongs to the same line end.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `bytes` and returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        events.push(event);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    /// Bytes held for the event being read (its unfinished line, data and name): what a
    /// caller bounds against a server that never ends a line or an event.
    pub fn pending_len(&self) -> usize {
        self.line.len()
            + self.data.as_ref().map_or(0, String::len)
            + self.event.as_ref().map_or(0, String::len)
    }

    /// Whether an event or line was started but not finished: what is left when a body
    /// ends early. The SSE rules drop such an event, so the caller decides what it means.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.data.is_some() || self.event.is_some()
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            // An event without data is not dispatched.
            return data.map(|data| SseEvent { event, data });
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` drive browser reconnection, which must not be used for
            // LLM POSTs (a reconnect re-runs and re-bills the generation).
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseEvent> {
        chunks.iter().flat_map(|chunk| parser.push(chunk)).collect()
    }

    #[test]
    fn pending_bytes_are_counted_until_the_event_ends() {
        let mut parser = SseParser::new();
        assert_eq!(parser.pending_len(), 0);
        parser.push(b"event: e\ndata: abc\ndata: de\nda");
        assert_eq!(
            parser.pending_len(),
            "e".len() + "abc\nde".len() + "da".len()
        );
        parser.push(b"ta: x\n\n");
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let body = "data: {\"a\":1}\r\n\r\ndata: caf\u{e9}\n\nevent: x\rdata:y\r\rdata: [DONE]\n\n";
        let bytes = body.as_bytes();
        let whole = all(&mut SseParser::new(), &[bytes]);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[1].data, "caf\u{e9}");
        assert_eq!(whole[2].event.as_deref(), Some("x"));
        assert_eq!(whole[2].data, "y");
        assert_eq!(whole[3].data, "[DONE]");
        for split in 0..bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                all(&mut SseParser::new(), &[a, b]),
                whole,
                "split at {split}"
            );
        }
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(all(&mut SseParser::new(), &single), whole);
    }

    #[test]
    fn comments_unknown_fields_and_empty_events_are_skipped() {
        let events = SseParser::new().push(b": keep-alive\nid: 7\nretry: 10\n\nfield\n\n");
        assert!(events.is_empty());
    }

    #[test]
    fn an_unfinished_event_is_reported_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: partial\n").is_empty());
        assert!(parser.has_partial());
        let mut parser = SseParser::new();
        parser.push(b"data: whole\n\n");
        assert!(!parser.has_partial());
    }

    #[test]
    fn invalid_utf8_does_not_panic() {
        let events = SseParser::new().push(b"data: \xff\xfe\n\n");
        assert_eq!(events[0].data, "\u{fffd}\u{fffd}");
    }
}
