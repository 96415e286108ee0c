//! One model call: its chunks and resilience events as step events, and the answer they
//! assemble into. Text-pattern extraction, when configured, reads the same chunks here.

use std::sync::Arc;

use futures_core::Stream;
use futures_util::StreamExt;

use super::stamp::{step_event, Step};
use crate::agent::assemble::Assembly;
use crate::agent::{Agent, AgentError, AgentEvent};
use crate::events::unix_now;
use crate::llm::LlmRequest;

/// What a model call yields: events, then its answer or its error.
pub(super) enum ModelItem {
    Event(AgentEvent),
    Done(Assembly),
    Failed(AgentError),
}

pub(super) fn model_call(
    agent: &Agent,
    step_id: Arc<str>,
    request: &LlmRequest,
) -> impl Stream<Item = ModelItem> + Send + 'static {
    let mut answer = agent.provider.stream_events(request);
    async_stream::stream! {
        let mut assembly = Assembly::default();
        while let Some(item) = answer.next().await {
            match item.map(|item| step_event(&step_id, item)) {
                Ok(Step::Data(chunk)) => {
                    assembly.add(&chunk);
                    yield ModelItem::Event(AgentEvent::LlmChunk {
                        step_id: step_id.clone(),
                        timestamp: unix_now(),
                        chunk,
                    });
                }
                Ok(Step::Event(event)) => {
                    if matches!(event, AgentEvent::Retry { .. }) {
                        // The next attempt streams the answer from the start.
                        assembly = Assembly::default();
                    }
                    yield ModelItem::Event(event);
                }
                Err(error) => {
                    yield ModelItem::Failed(AgentError::Llm(error));
                    return;
                }
            }
        }
        yield ModelItem::Done(assembly);
    }
}
