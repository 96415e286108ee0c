//! The streaming extractor: model text in, chunk by chunk; segment events out.

use super::call::parse_call;
use super::matcher::{find, Found};
use super::{OutsideText, PatternSet, SegmentKind, ToolCallError};
use crate::llm::ToolCall;

/// What the extractor found, in the order of the text.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SegmentEvent {
    /// Text outside every pattern, when the set makes it the response
    /// ([`OutsideText::Response`]).
    Text(String),
    /// A segment opened: its start tag was read.
    Start {
        /// The segment's number in the answer, from 0.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
        /// Its pattern's index in the set.
        pattern: usize,
    },
    /// More of an open segment's content (never empty).
    Content {
        /// The segment's number.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
        /// The text.
        text: String,
    },
    /// A segment ended.
    End(SegmentEnd),
}

/// A segment's end: its whole content and, for a tool segment, the call read from it.
#[derive(Clone, Debug)]
pub struct SegmentEnd {
    /// The segment's number in the answer, from 0.
    pub segment: u32,
    /// What it is.
    pub kind: SegmentKind,
    /// Its pattern's index in the set.
    pub pattern: usize,
    /// Everything between the tags.
    pub content: String,
    /// Whether its end tag was read; `false` when the answer ended inside it.
    pub closed: bool,
    /// For a [`SegmentKind::Tool`] segment, the call, or why it is none. A call without a
    /// `call_id` of its own gets `{prefix}{segment}`, the prefix `text_call_` unless set
    /// with [`Extractor::with_call_id_prefix`].
    pub call: Option<Result<ToolCall, ToolCallError>>,
}

/// Why the extractor refused a chunk. The chunk is not taken in: the extractor's state is
/// what it was before the call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The answer would exceed the extractor's input cap.
    #[error("the model's answer exceeds the pattern extractor's cap of {cap} bytes")]
    InputCap {
        /// The cap.
        cap: usize,
    },
    /// The bytes are not UTF-8.
    #[error("the model's answer is not UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Where the bad sequence starts, counted from the start of the answer.
        offset: usize,
    },
    /// [`finish`](Extractor::finish) was called inside a UTF-8 character.
    #[error("the model's answer ends inside a UTF-8 character")]
    TruncatedUtf8,
}

/// Finds a [`PatternSet`]'s segments in a model's answer as it streams.
///
/// Push the answer's text chunk by chunk (any split, even inside a tag or, with
/// [`push_bytes`](Extractor::push_bytes), inside a character); each push returns the
/// events that chunk completes. Text that may be the beginning of a tag is held until the
/// next chunk decides, so the events of an answer are the same however it is chunked,
/// except that text and content may come in more, smaller pieces.
///
/// - Several segments may follow each other in one answer; they are numbered from 0.
/// - Segments do not nest: inside one, only its own end tag is recognised, and anything
///   else (another start tag too) is its content. Content that contains the end tag ends
///   the segment there.
/// - [`finish`](Extractor::finish) ends the answer: held text is released, and a segment
///   still open ends with `closed: false` (a tool segment with
///   [`ToolCallError::Unclosed`], so a cut-off call never runs).
/// - A tool segment whose content is no call (bad JSON, no name) ends with the error in
///   [`SegmentEnd::call`]; extraction goes on.
/// - The bytes taken in since the last [`reset`](Extractor::reset) never exceed the set's
///   [`input_cap`](PatternSet::input_cap) (1 MiB unless set): a chunk that would pass it
///   is refused with [`ExtractError::InputCap`], so what the extractor holds stays under
///   the cap, whatever the stream sends.
///
/// ```
/// use aegeantic::agent::{Extractor, PatternSet, SegmentEvent};
///
/// let mut extractor = Extractor::new(PatternSet::tool_tags());
/// let mut events = Vec::new();
/// for chunk in ["Sure. <to", "ol>{\"name\": \"add\", \"argu", "ments\": {\"a\": 1}}</tool", ">"] {
///     events.extend(extractor.push(chunk)?);
/// }
/// events.extend(extractor.finish()?);
/// let call = events.iter().find_map(|event| match event {
///     SegmentEvent::End(end) => end.call.clone(),
///     _ => None,
/// });
/// let call = call.expect("a tool segment").expect("a valid call");
/// assert_eq!((call.name.as_str(), call.arguments.as_str()), ("add", r#"{"a":1}"#));
/// assert!(matches!(&events[0], SegmentEvent::Text(text) if text == "Sure. "));
/// # Ok::<(), aegeantic::agent::ExtractError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Extractor {
    set: PatternSet,
    /// Bytes taken in since the last reset.
    taken: usize,
    /// The end of the text taken in that may begin a tag.
    held: String,
    /// The bytes of a character the last chunk began but did not end (at most 3).
    utf8_tail: Vec<u8>,
    open: Option<Open>,
    next_segment: u32,
    call_id_prefix: String,
}

#[derive(Clone, Debug)]
struct Open {
    segment: u32,
    pattern: usize,
    content: String,
}

impl Extractor {
    /// An extractor for `set`.
    pub fn new(set: PatternSet) -> Self {
        Extractor {
            set,
            taken: 0,
            held: String::new(),
            utf8_tail: Vec::new(),
            open: None,
            next_segment: 0,
            call_id_prefix: "text_call_".to_owned(),
        }
    }

    /// The same extractor, naming calls without a `call_id` of their own
    /// `{prefix}{segment}`. A loop over several answers gives each answer a prefix of its
    /// own, so that ids stay unique (the runner uses `text_call_{model call}_`).
    #[must_use]
    pub fn with_call_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.call_id_prefix = prefix.into();
        self
    }

    /// The id of segment `segment`'s call when the model gave it none.
    pub(crate) fn fallback_id(&self, segment: u32) -> String {
        format!("{}{segment}", self.call_id_prefix)
    }

    /// The pattern set.
    pub fn set(&self) -> &PatternSet {
        &self.set
    }

    /// Bytes held for the answer so far: text that may begin a tag, the open segment's
    /// content, a partial character. Never more than the cap.
    pub fn buffered(&self) -> usize {
        let content = self.open.as_ref().map_or(0, |open| open.content.len());
        self.held.len() + content + self.utf8_tail.len()
    }

    /// Forgets the answer so far, for a model call that starts again (a retry): no event
    /// of the old answer is repeated or completed, and the cap counts from zero.
    pub fn reset(&mut self) {
        self.taken = 0;
        self.held.clear();
        self.utf8_tail.clear();
        self.open = None;
        self.next_segment = 0;
    }

    /// Takes in the next chunk of text.
    ///
    /// # Errors
    /// [`ExtractError::InputCap`] when the answer would pass the cap;
    /// [`ExtractError::InvalidUtf8`] when the previous chunk, from
    /// [`push_bytes`](Extractor::push_bytes), ended inside a character that this one does
    /// not complete. The chunk is then not taken in.
    pub fn push(&mut self, text: &str) -> Result<Vec<SegmentEvent>, ExtractError> {
        self.push_bytes(text.as_bytes())
    }

    /// Takes in the next chunk of bytes, which may end inside a character; the character
    /// is completed by the next chunk.
    ///
    /// # Errors
    /// [`ExtractError::InputCap`] when the answer would pass the cap,
    /// [`ExtractError::InvalidUtf8`] for bytes that are not UTF-8. The chunk is then not
    /// taken in.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<Vec<SegmentEvent>, ExtractError> {
        let cap = self.set.input_cap();
        let taken = self
            .taken
            .checked_add(bytes.len())
            .filter(|taken| *taken <= cap)
            .ok_or(ExtractError::InputCap { cap })?;
        let joined;
        let bytes = if self.utf8_tail.is_empty() {
            bytes
        } else {
            joined = [self.utf8_tail.as_slice(), bytes].concat();
            joined.as_slice()
        };
        let (text, tail) = match std::str::from_utf8(bytes) {
            Ok(text) => (text, &[][..]),
            Err(error) if error.error_len().is_none() => {
                let (valid, tail) = bytes.split_at(error.valid_up_to());
                // `valid_up_to` is where the valid prefix ends.
                (std::str::from_utf8(valid).unwrap_or_default(), tail)
            }
            Err(error) => {
                let offset = self.taken.saturating_sub(self.utf8_tail.len()) + error.valid_up_to();
                return Err(ExtractError::InvalidUtf8 { offset });
            }
        };
        let tail = tail.to_vec();
        let mut events = Vec::new();
        self.feed(text, &mut events);
        self.utf8_tail = tail;
        self.taken = taken;
        Ok(events)
    }

    /// Ends the answer: releases held text, ends a segment left open, and makes the
    /// extractor ready for the next answer (as [`reset`](Extractor::reset) does).
    ///
    /// # Errors
    /// [`ExtractError::TruncatedUtf8`] when the last chunk ended inside a character; the
    /// state is then kept, for the caller to [`reset`](Extractor::reset).
    pub fn finish(&mut self) -> Result<Vec<SegmentEvent>, ExtractError> {
        if !self.utf8_tail.is_empty() {
            return Err(ExtractError::TruncatedUtf8);
        }
        let mut events = Vec::new();
        let held = std::mem::take(&mut self.held);
        match self.open.take() {
            None => self.outside(&held, &mut events),
            Some(mut open) => {
                self.content(&mut open, &held, &mut events);
                let pattern = &self.set.patterns()[open.pattern];
                let unclosed = ToolCallError::Unclosed {
                    end: pattern.end.clone(),
                };
                events.push(SegmentEvent::End(SegmentEnd {
                    segment: open.segment,
                    kind: pattern.kind,
                    pattern: open.pattern,
                    content: open.content,
                    closed: false,
                    call: (pattern.kind == SegmentKind::Tool).then_some(Err(unclosed)),
                }));
            }
        }
        self.reset();
        Ok(events)
    }

    fn feed(&mut self, text: &str, events: &mut Vec<SegmentEvent>) {
        let mut buffer = std::mem::take(&mut self.held);
        buffer.push_str(text);
        let mut rest = buffer.as_str();
        loop {
            let patterns = self.set.patterns();
            match self.open.take() {
                None => match find(rest, patterns.iter().map(|p| p.start.as_str())) {
                    Found::Tag { at, tag } => {
                        self.outside(&rest[..at], events);
                        rest = &rest[at + patterns[tag].start.len()..];
                        let segment = self.next_segment;
                        self.next_segment = self.next_segment.saturating_add(1);
                        events.push(SegmentEvent::Start {
                            segment,
                            kind: patterns[tag].kind,
                            pattern: tag,
                        });
                        self.open = Some(Open {
                            segment,
                            pattern: tag,
                            content: String::new(),
                        });
                    }
                    Found::Partial { at } => {
                        self.outside(&rest[..at], events);
                        self.held = rest[at..].to_owned();
                        return;
                    }
                    Found::Nothing => {
                        self.outside(rest, events);
                        return;
                    }
                },
                Some(mut open) => {
                    let end = patterns[open.pattern].end.as_str();
                    match find(rest, std::iter::once(end)) {
                        Found::Tag { at, .. } => {
                            self.content(&mut open, &rest[..at], events);
                            rest = &rest[at + end.len()..];
                            events.push(SegmentEvent::End(self.close(open)));
                        }
                        Found::Partial { at } => {
                            self.content(&mut open, &rest[..at], events);
                            self.held = rest[at..].to_owned();
                            self.open = Some(open);
                            return;
                        }
                        Found::Nothing => {
                            self.content(&mut open, rest, events);
                            self.open = Some(open);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn outside(&self, text: &str, events: &mut Vec<SegmentEvent>) {
        if !text.is_empty() && self.set.outside() == OutsideText::Response {
            events.push(SegmentEvent::Text(text.to_owned()));
        }
    }

    fn content(&self, open: &mut Open, text: &str, events: &mut Vec<SegmentEvent>) {
        if text.is_empty() {
            return;
        }
        open.content.push_str(text);
        events.push(SegmentEvent::Content {
            segment: open.segment,
            kind: self.set.patterns()[open.pattern].kind,
            text: text.to_owned(),
        });
    }

    fn close(&self, open: Open) -> SegmentEnd {
        let pattern = &self.set.patterns()[open.pattern];
        let call = (pattern.kind == SegmentKind::Tool).then(|| {
            parse_call(
                &open.content,
                pattern.format,
                self.fallback_id(open.segment),
            )
        });
        SegmentEnd {
            segment: open.segment,
            kind: pattern.kind,
            pattern: open.pattern,
            content: open.content,
            closed: true,
            call,
        }
    }
}
