//! Rebuilding a whole answer from its streamed chunks.

use std::collections::BTreeMap;

use crate::llm::{FinishReason, LlmChunk, ToolCall, Usage};

/// Accumulates one model call's chunks.
#[derive(Debug, Default)]
pub(crate) struct Assembly {
    pub(crate) text: String,
    calls: BTreeMap<u32, ToolCall>,
    pub(crate) usage: Option<Usage>,
    pub(crate) finish: Option<FinishReason>,
}

impl Assembly {
    pub(crate) fn add(&mut self, chunk: &LlmChunk) {
        match chunk {
            LlmChunk::Text(text) => self.text.push_str(text),
            LlmChunk::ToolCall(delta) => {
                let call = self.calls.entry(delta.index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = &delta.id {
                    call.id.clone_from(id);
                }
                if let Some(name) = &delta.name {
                    call.name.push_str(name);
                }
                call.arguments.push_str(&delta.arguments);
            }
            LlmChunk::Usage(usage) => self.usage = Some(*usage),
            LlmChunk::Finish(reason) => self.finish = Some(reason.clone()),
            LlmChunk::Quota(_) => {}
        }
    }

    /// The tool calls in index order. A call the provider sent without an id gets one made
    /// from its index, so that its result can still refer to it.
    pub(crate) fn tool_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, mut call)| {
                if call.id.is_empty() {
                    call.id = format!("call_{index}");
                }
                call
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCallDelta;

    #[test]
    fn interleaved_deltas_are_joined_per_index() {
        let mut assembly = Assembly::default();
        let delta = |index, id: Option<&str>, name: Option<&str>, args: &str| {
            LlmChunk::ToolCall(ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: args.to_owned(),
            })
        };
        for chunk in [
            LlmChunk::Text("Let me ".into()),
            delta(1, None, Some("b"), "{\"y\""),
            delta(0, Some("c0"), Some("a"), "{\"x\":"),
            delta(0, None, None, "1}"),
            delta(1, None, None, ":2}"),
            LlmChunk::Text("check.".into()),
            LlmChunk::Finish(FinishReason::ToolCalls),
        ] {
            assembly.add(&chunk);
        }
        assert_eq!(assembly.text, "Let me check.");
        let calls = assembly.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (&*calls[0].id, &*calls[0].name, &*calls[0].arguments),
            ("c0", "a", "{\"x\":1}")
        );
        assert_eq!(
            (&*calls[1].id, &*calls[1].name, &*calls[1].arguments),
            ("call_1", "b", "{\"y\":2}")
        );
        assert_eq!(assembly.finish, Some(FinishReason::ToolCalls));
    }
}
