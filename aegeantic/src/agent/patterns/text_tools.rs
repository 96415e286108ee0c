//! What the runner keeps of one model call's text patterns: the calls to run and the
//! response.

use super::{
    ExtractError, Extraction, Extractor, PatternFormat, PatternSet, SegmentEvent, ToolCallError,
};
use crate::llm::ToolCall;

/// A call found in the model's text, to run in the tool loop.
#[derive(Debug)]
pub(crate) struct TextCall {
    /// The call; for a malformed one, an id made from its segment, no name, and the
    /// segment's content as its arguments.
    pub(crate) call: ToolCall,
    /// How its result is written back.
    pub(crate) format: PatternFormat,
    /// Why it is no call: it fails at once, the model told why.
    pub(crate) error: Option<ToolCallError>,
}

/// One model call's extractor and what it found.
#[derive(Debug)]
pub(crate) struct TextTools {
    extractor: Extractor,
    found: Extraction,
    calls: Vec<TextCall>,
}

impl TextTools {
    /// For the `model_call`-th model call of a step, from 1.
    pub(crate) fn new(set: &PatternSet, model_call: u32) -> Self {
        let prefix = format!("text_call_{model_call}_");
        TextTools {
            extractor: Extractor::new(set.clone()).with_call_id_prefix(prefix),
            found: Extraction::default(),
            calls: Vec::new(),
        }
    }

    /// Takes in a chunk of the answer.
    pub(crate) fn push(&mut self, text: &str) -> Result<Vec<SegmentEvent>, ExtractError> {
        let events = self.extractor.push(text)?;
        self.gather(&events);
        Ok(events)
    }

    /// Ends the answer.
    pub(crate) fn finish(&mut self) -> Result<Vec<SegmentEvent>, ExtractError> {
        let events = self.extractor.finish()?;
        self.gather(&events);
        Ok(events)
    }

    /// Forgets the answer so far: its model call is retried.
    pub(crate) fn reset(&mut self) {
        self.extractor.reset();
        self.found = Extraction::default();
        self.calls.clear();
    }

    /// The response text, trimmed, and the calls, in the order of the answer.
    pub(crate) fn take(&mut self) -> (String, Vec<TextCall>) {
        let found = std::mem::take(&mut self.found);
        (
            found.response.trim().to_owned(),
            std::mem::take(&mut self.calls),
        )
    }

    fn gather(&mut self, events: &[SegmentEvent]) {
        for event in events {
            self.found.add(event);
            let SegmentEvent::End(end) = event else {
                continue;
            };
            let Some(call) = &end.call else { continue };
            let format = self.extractor.set().patterns()[end.pattern].format;
            self.calls.push(match call {
                Ok(call) => TextCall {
                    call: call.clone(),
                    format,
                    error: None,
                },
                Err(error) => TextCall {
                    call: ToolCall {
                        id: self.extractor.fallback_id(end.segment),
                        name: String::new(),
                        arguments: end.content.clone(),
                    },
                    format,
                    error: Some(error.clone()),
                },
            });
        }
    }
}
