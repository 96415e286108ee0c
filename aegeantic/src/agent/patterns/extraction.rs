//! What a whole answer holds: the response, the reasoning, the tool calls.

use super::{ExtractError, Extractor, PatternSet, SegmentEvent, SegmentKind, ToolCallError};
use crate::llm::ToolCall;

/// The segments of a whole answer, gathered from an [`Extractor`]'s events.
#[derive(Clone, Debug, Default)]
pub struct Extraction {
    /// The text outside every pattern (unless the set ignores it) and the content of
    /// response segments, in order.
    pub response: String,
    /// The content of each reasoning segment.
    pub reasoning: Vec<String>,
    /// Each tool segment's call, or why it is none, in order.
    pub tool_calls: Vec<Result<ToolCall, ToolCallError>>,
}

impl Extraction {
    /// Gathers `event`.
    pub fn add(&mut self, event: &SegmentEvent) {
        match event {
            SegmentEvent::Text(text) => self.response.push_str(text),
            SegmentEvent::End(end) => match end.kind {
                SegmentKind::Response => self.response.push_str(&end.content),
                SegmentKind::Reasoning => self.reasoning.push(end.content.clone()),
                SegmentKind::Tool => self.tool_calls.extend(end.call.clone()),
            },
            SegmentEvent::Start { .. } | SegmentEvent::Content { .. } => {}
        }
    }
}

impl PatternSet {
    /// The segments of a whole answer `text`.
    ///
    /// ```
    /// use aegeantic::agent::PatternSet;
    ///
    /// let text = "<think>Needs the tool.</think>Checking.\
    ///             <tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>";
    /// let found = PatternSet::xml_tags().extract(text)?;
    /// assert_eq!(found.response, "Checking.");
    /// assert_eq!(found.reasoning, ["Needs the tool."]);
    /// let call = found.tool_calls[0].as_ref().expect("a valid call");
    /// assert_eq!((call.id.as_str(), call.name.as_str()), ("text_call_1", "weather"));
    /// # Ok::<(), aegeantic::agent::ExtractError>(())
    /// ```
    ///
    /// # Errors
    /// [`ExtractError::InputCap`] for a text over the set's
    /// [`input_cap`](PatternSet::input_cap).
    pub fn extract(&self, text: &str) -> Result<Extraction, ExtractError> {
        let mut extractor = Extractor::new(self.clone());
        let mut extraction = Extraction::default();
        let events = extractor.push(text)?;
        for event in events.iter().chain(&extractor.finish()?) {
            extraction.add(event);
        }
        Ok(extraction)
    }
}
