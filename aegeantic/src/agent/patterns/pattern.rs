//! One pattern: the tags around a segment of the model's text, and what the segment is.

/// What a tagged segment of the model's text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SegmentKind {
    /// A tool call, run like a native one.
    Tool,
    /// The model's reasoning, kept apart from the answer.
    Reasoning,
    /// (Part of) the answer for the user.
    Response,
}

/// How a segment's content is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatternFormat {
    /// A JSON object `{"name": "...", "arguments": {...}, "call_id": "..."}`; `arguments`
    /// may also be a string holding JSON text, or absent for none; `call_id` is optional.
    Json,
    /// Lines `Name: tool_name` and `Arguments: {...}` (the JSON may run over several
    /// lines; the `Arguments:` line may be left out for none). Other lines are ignored.
    NameArguments,
    /// Text as it is, for reasoning and response segments.
    Text,
}

/// A start tag, an end tag, and what lies between them.
///
/// Tags are matched byte for byte (case-sensitive). Inside a segment only its own end tag
/// is recognised: patterns do not nest, and a start tag inside a segment is content.
///
/// ```
/// use aegeantic::agent::{Pattern, PatternFormat, SegmentKind};
///
/// let tool = Pattern::tool("<call>", "</call>", PatternFormat::Json);
/// assert_eq!(tool.kind, SegmentKind::Tool);
/// let thoughts = Pattern::reasoning("<think>", "</think>");
/// assert_eq!(thoughts.format, PatternFormat::Text);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// The tag that opens the segment.
    pub start: String,
    /// The tag that closes it.
    pub end: String,
    /// What the segment is.
    pub kind: SegmentKind,
    /// How its content is written: [`PatternFormat::Json`] or
    /// [`PatternFormat::NameArguments`] for tools, [`PatternFormat::Text`] for the others.
    pub format: PatternFormat,
}

impl Pattern {
    /// A tool call between `start` and `end`, written in `format`.
    pub fn tool(start: impl Into<String>, end: impl Into<String>, format: PatternFormat) -> Self {
        Pattern {
            start: start.into(),
            end: end.into(),
            kind: SegmentKind::Tool,
            format,
        }
    }

    /// Reasoning between `start` and `end`.
    pub fn reasoning(start: impl Into<String>, end: impl Into<String>) -> Self {
        Pattern {
            start: start.into(),
            end: end.into(),
            kind: SegmentKind::Reasoning,
            format: PatternFormat::Text,
        }
    }

    /// Response text between `start` and `end`.
    pub fn response(start: impl Into<String>, end: impl Into<String>) -> Self {
        Pattern {
            start: start.into(),
            end: end.into(),
            kind: SegmentKind::Response,
            format: PatternFormat::Text,
        }
    }
}
