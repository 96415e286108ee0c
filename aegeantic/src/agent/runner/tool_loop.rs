//! The tool calls of one model answer: up to `tool_concurrency` at a time, started in the
//! model's order, their results put back in that order.

use std::sync::Arc;

use futures_core::Stream;
use futures_util::stream::{self, StreamExt};

use super::tool_call::{tool_call, CallItem};
use crate::agent::{Agent, AgentError, AgentEvent, ToolCallError, ToolCallResult};
use crate::llm::ToolCall;

/// A call of the round as the model made it, natively or in its text; for a call in text
/// that is none (bad JSON, no name, no end tag), why, so that it fails at once.
pub(super) struct RoundCall {
    pub(super) call: ToolCall,
    pub(super) malformed: Option<ToolCallError>,
}

/// What the round yields: the calls' events, then every result in the model's order, or
/// the error that ends the step.
pub(super) enum RoundItem {
    Event(AgentEvent),
    Done(Vec<ToolCallResult>),
    Failed(AgentError),
}

pub(super) fn tool_round(
    agent: Arc<Agent>,
    step_id: Arc<str>,
    iteration: u64,
    calls: Vec<RoundCall>,
) -> impl Stream<Item = RoundItem> + Send + 'static {
    let limit = agent.config.tool_concurrency.get();
    let count = calls.len();
    let streams = calls.into_iter().enumerate().map(move |(index, call)| {
        let call = tool_call(Arc::clone(&agent), step_id.clone(), iteration, call);
        call.map(move |item| (index, item))
    });
    // With a limit of 1, one call's stream ends before the next starts.
    let mut items = stream::iter(streams).flatten_unordered(limit);
    async_stream::stream! {
        let mut results: Vec<Option<ToolCallResult>> = vec![None; count];
        while let Some((index, item)) = items.next().await {
            match item {
                CallItem::Event(event) => yield RoundItem::Event(event),
                CallItem::Done(result) => {
                    if let Some(slot) = results.get_mut(index) {
                        *slot = Some(result);
                    }
                }
                CallItem::Failed(error) => {
                    yield RoundItem::Failed(error);
                    return;
                }
            }
        }
        yield RoundItem::Done(results.into_iter().flatten().collect());
    }
}
