//! One model call: its chunks and resilience events as step events, and the answer they
//! assemble into. Text-pattern extraction, when configured, reads the same chunks here.

use std::sync::Arc;

use futures_core::Stream;
use futures_util::StreamExt;

use super::stamp::{step_event, Step};
use crate::agent::assemble::Assembly;
use crate::agent::patterns::{TextCall, TextTools};
use crate::agent::{Agent, AgentError, AgentEvent, SegmentEvent};
use crate::events::unix_now;
use crate::llm::{LlmChunk, LlmRequest};

/// What a model call yields: events, then its answer or its error.
pub(super) enum ModelItem {
    Event(AgentEvent),
    Done(Answer),
    Failed(AgentError),
}

/// A model call's answer.
pub(super) struct Answer {
    pub(super) assembly: Assembly,
    /// With patterns, the response text and the calls found in the answer's text.
    pub(super) found: Option<(String, Vec<TextCall>)>,
}

/// The `iteration`-th model call of a step (from 1), which names the calls found in its
/// text that have no id of their own.
pub(super) fn model_call(
    agent: &Agent,
    step_id: Arc<str>,
    iteration: u32,
    request: &LlmRequest,
) -> impl Stream<Item = ModelItem> + Send + 'static {
    let mut answer = agent.provider.stream_events(request);
    let mut text_tools = agent
        .patterns
        .as_ref()
        .map(|set| TextTools::new(set, iteration));
    async_stream::stream! {
        let mut assembly = Assembly::default();
        while let Some(item) = answer.next().await {
            match item.map(|item| step_event(&step_id, item)) {
                Ok(Step::Data(chunk)) => {
                    assembly.add(&chunk);
                    let segments = match (&mut text_tools, &chunk) {
                        (Some(text_tools), LlmChunk::Text(text)) => text_tools.push(text),
                        _ => Ok(Vec::new()),
                    };
                    yield ModelItem::Event(AgentEvent::LlmChunk {
                        step_id: step_id.clone(),
                        timestamp: unix_now(),
                        chunk,
                    });
                    match segments {
                        Ok(segments) => {
                            for event in pattern_events(&step_id, segments) {
                                yield ModelItem::Event(event);
                            }
                        }
                        Err(error) => {
                            yield ModelItem::Failed(AgentError::Patterns(error));
                            return;
                        }
                    }
                }
                Ok(Step::Event(event)) => {
                    if matches!(event, AgentEvent::Retry { .. }) {
                        // The next attempt streams the answer from the start; nothing
                        // found in the failed one is run or kept.
                        assembly = Assembly::default();
                        if let Some(text_tools) = &mut text_tools {
                            text_tools.reset();
                        }
                    }
                    yield ModelItem::Event(event);
                }
                Err(error) => {
                    yield ModelItem::Failed(AgentError::Llm(error));
                    return;
                }
            }
        }
        let found = match &mut text_tools {
            None => None,
            Some(text_tools) => match text_tools.finish() {
                Ok(segments) => {
                    for event in pattern_events(&step_id, segments) {
                        yield ModelItem::Event(event);
                    }
                    Some(text_tools.take())
                }
                Err(error) => {
                    yield ModelItem::Failed(AgentError::Patterns(error));
                    return;
                }
            },
        };
        yield ModelItem::Done(Answer { assembly, found });
    }
}

/// The step events of the segments the extractor found; the text outside them is already
/// in the model chunks.
fn pattern_events(step_id: &Arc<str>, segments: Vec<SegmentEvent>) -> Vec<AgentEvent> {
    let timestamp = unix_now();
    segments
        .into_iter()
        .filter_map(|segment| {
            let step_id = step_id.clone();
            match segment {
                SegmentEvent::Text(_) => None,
                SegmentEvent::Start { segment, kind, .. } => Some(AgentEvent::PatternStart {
                    step_id,
                    timestamp,
                    segment,
                    kind,
                }),
                SegmentEvent::Content {
                    segment,
                    kind,
                    text,
                } => Some(AgentEvent::PatternContent {
                    step_id,
                    timestamp,
                    segment,
                    kind,
                    text,
                }),
                SegmentEvent::End(end) => Some(AgentEvent::PatternEnd {
                    step_id,
                    timestamp,
                    segment: end.segment,
                    kind: end.kind,
                    content: end.content,
                    closed: end.closed,
                    call: end.call,
                }),
            }
        })
        .collect()
}
