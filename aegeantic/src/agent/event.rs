//! What an agent step reports.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{ExtractError, SegmentKind, ToolCallError};
use crate::events::{AsEventRef, CircuitEvent, EventRef, RateLimitEvent, RetryEvent};
use crate::llm::{FinishReason, LlmChunk, LlmError, ToolCall, Usage};
use crate::resilience::ResilienceError;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model call failed for good (after any retries).
    #[error("model call failed")]
    Llm(#[source] ResilienceError<LlmError>),
    /// The model's answer could not be read for the agent's patterns: it passed the input
    /// cap, or was not UTF-8.
    #[error("the model's answer was refused by the pattern extractor")]
    Patterns(#[source] ExtractError),
    /// The model was still calling tools after `max_iterations` model calls.
    #[error("no final answer after {max_iterations} model calls (max_iterations)")]
    MaxIterations {
        /// The configured limit.
        max_iterations: u32,
    },
}

/// One event of an agent step, in the order it happened. Every variant carries the
/// step's `step_id`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A piece of the model's answer. After a [`AgentEvent::Retry`] of the model call,
    /// the answer starts again from the beginning.
    LlmChunk {
        /// The step.
        step_id: Arc<str>,
        /// The piece.
        chunk: LlmChunk,
    },
    /// A model call finished.
    LlmComplete {
        /// The step.
        step_id: Arc<str>,
        /// Which model call of the step, from 1.
        iteration: u32,
        /// The whole text of the answer.
        text: String,
        /// The tool calls it made, assembled: the native ones, then those found in its
        /// text by the agent's patterns (a malformed one with no name, its segment's
        /// content as arguments). A [`AgentEvent::ToolStart`] follows for each.
        tool_calls: Vec<ToolCall>,
        /// Token counts, when the provider sent them.
        usage: Option<Usage>,
        /// Why the model stopped, when it said.
        finish_reason: Option<FinishReason>,
    },
    /// A segment of the agent's [`PatternSet`](super::PatternSet) opened in the model's
    /// text. After a [`AgentEvent::Retry`] of the model call, segments start again from 0,
    /// and none of the failed attempt's segments is run or kept.
    PatternStart {
        /// The step.
        step_id: Arc<str>,
        /// The segment's number in this model call's answer, from 0.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
    },
    /// More of a segment's content, as it streams.
    PatternContent {
        /// The step.
        step_id: Arc<str>,
        /// The segment's number.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
        /// The text.
        text: String,
    },
    /// A segment ended. A tool segment's call is then run like a native one (its
    /// [`AgentEvent::ToolStart`] follows the model call's [`AgentEvent::LlmComplete`]).
    PatternEnd {
        /// The step.
        step_id: Arc<str>,
        /// The segment's number.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
        /// Everything between its tags.
        content: String,
        /// Whether its end tag came; `false` when the answer ended inside it.
        closed: bool,
        /// For a tool segment, the call, or why it is none (the model is told, as for a
        /// native call with bad arguments).
        call: Option<Result<ToolCall, ToolCallError>>,
    },
    /// A tool call starts.
    ToolStart {
        /// The step.
        step_id: Arc<str>,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// The arguments as the model wrote them.
        arguments: String,
    },
    /// A tool call's result, exactly as it is sent back to the model.
    ToolOutput {
        /// The step.
        step_id: Arc<str>,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// The output, or the error message the model will see.
        output: Value,
        /// Whether the call failed.
        is_error: bool,
    },
    /// A tool call ended.
    ToolEnd {
        /// The step.
        step_id: Arc<str>,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// Whether it succeeded.
        success: bool,
        /// How long it took, retries included.
        duration: Duration,
    },
    /// A model or tool attempt failed and will be retried.
    Retry {
        /// The step.
        step_id: Arc<str>,
        /// The event, its `step_id` set.
        event: RetryEvent,
    },
    /// Rate-limit tokens were taken for a model or tool attempt.
    RateLimit {
        /// The step.
        step_id: Arc<str>,
        /// The event, its `step_id` set.
        event: RateLimitEvent,
    },
    /// A circuit breaker guarding a model or tool call changed state.
    Circuit {
        /// The step.
        step_id: Arc<str>,
        /// The event, its `step_id` set.
        event: CircuitEvent,
    },
    /// The step failed; no more events follow. The runner's history is as it was before
    /// the step.
    ///
    /// `error`'s own message names only its layer (`model call failed`); why it failed is
    /// in its [`source()`](std::error::Error::source) chain: the retry layer, then the
    /// provider's error, such as the server's answer. Show it to a person with
    /// [`DisplayChain`](crate::report::DisplayChain):
    ///
    /// ```
    /// use aegeantic::agent::AgentEvent;
    /// use aegeantic::report::DisplayChain;
    ///
    /// fn report(event: &AgentEvent) {
    ///     if let AgentEvent::Error { error, .. } = event {
    ///         // model call failed: operation failed after 1 attempt: HTTP 400
    ///         // invalid_request_error: Invalid value for 'messages[0].role' ...
    ///         eprintln!("step failed: {}", DisplayChain(&**error));
    ///     }
    /// }
    /// ```
    Error {
        /// The step.
        step_id: Arc<str>,
        /// Why; print it with its chain.
        error: Arc<AgentError>,
    },
    /// The model answered without calling tools; the step is done, and its messages are
    /// now in the runner's history.
    StepComplete {
        /// The step.
        step_id: Arc<str>,
        /// The final answer.
        response: String,
        /// Model calls made.
        iterations: u32,
    },
}

impl AgentEvent {
    /// The step the event belongs to.
    pub fn step_id(&self) -> &str {
        match self {
            AgentEvent::LlmChunk { step_id, .. }
            | AgentEvent::LlmComplete { step_id, .. }
            | AgentEvent::PatternStart { step_id, .. }
            | AgentEvent::PatternContent { step_id, .. }
            | AgentEvent::PatternEnd { step_id, .. }
            | AgentEvent::ToolStart { step_id, .. }
            | AgentEvent::ToolOutput { step_id, .. }
            | AgentEvent::ToolEnd { step_id, .. }
            | AgentEvent::Retry { step_id, .. }
            | AgentEvent::RateLimit { step_id, .. }
            | AgentEvent::Circuit { step_id, .. }
            | AgentEvent::Error { step_id, .. }
            | AgentEvent::StepComplete { step_id, .. } => step_id,
        }
    }
}

/// Lets a [`ResilienceMonitor`](crate::resilience::ResilienceMonitor) count a step stream.
impl AsEventRef for AgentEvent {
    fn as_event_ref(&self) -> Option<EventRef<'_>> {
        match self {
            AgentEvent::Retry { event, .. } => Some(EventRef::Retry(event)),
            AgentEvent::RateLimit { event, .. } => Some(EventRef::RateLimit(event)),
            AgentEvent::Circuit { event, .. } => Some(EventRef::Circuit(event)),
            _ => None,
        }
    }
}
