//! What an agent step reports.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::context::ContextError;
use super::decision::{DecidedBy, ToolDecision};
use super::result::StepResult;
use super::{ExtractError, SegmentKind, ToolCallError};
use crate::events::{AsEventRef, CircuitEvent, EventRef, RateLimitEvent, RetryEvent};
use crate::llm::{FinishReason, LlmChunk, LlmError, ToolCall, Usage};
use crate::resilience::ResilienceError;

/// A boxed error from a user's closure, such as a prompt builder.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model call failed for good (after any retries).
    #[error("model call failed")]
    Llm(#[source] ResilienceError<LlmError>),
    /// The model was still calling tools after `max_iterations` model calls.
    #[error("no final answer after {max_iterations} model calls (max_iterations)")]
    MaxIterations {
        /// The configured limit.
        max_iterations: u32,
    },
    /// Reading or writing the agent's context failed.
    #[error("the agent's context failed")]
    Context(#[source] ContextError),
    /// The model's answer could not be read for the agent's patterns: it passed the input
    /// cap, or was not UTF-8.
    #[error("the model's answer was refused by the pattern extractor")]
    Patterns(#[source] ExtractError),
    /// The configured prompt builder failed.
    #[error("the prompt builder failed")]
    Prompt(#[source] BoxError),
}

/// One event of an agent step, in the order it happened. Every variant carries the
/// step's `step_id` and a `timestamp` (Unix seconds, when the event was made).
///
/// With feature `serde` it serialises as an object tagged with its snake_case type:
/// `{"type": "llm_chunk", "step_id": "...", "timestamp": 1767225600.5, "chunk": {"text":
/// "Hel"}}`; durations are seconds, the error of [`AgentEvent::Error`] its whole chain as
/// text.
///
/// The order of a step: for each model call, its chunks (and the retries, rate-limit
/// waits and breaker changes of the call; with [`patterns`](super::AgentBuilder::patterns),
/// after each chunk the [`AgentEvent::PatternStart`], [`AgentEvent::PatternContent`] and
/// [`AgentEvent::PatternEnd`] it completes, and the end of a segment the answer left open
/// last) then [`AgentEvent::LlmComplete`]; then, for
/// each tool call the model made, [`AgentEvent::ToolDecision`] (when an allow-list or an
/// approval hook decided), [`AgentEvent::ToolStart`], the tool's own resilience events
/// and partial [`AgentEvent::ToolOutput`]s, its final `ToolOutput`, [`AgentEvent::ToolEnd`]
/// and the [`AgentEvent::ContextWrite`] of its result. A rejected call has a decision,
/// its `ToolOutput` and its `ContextWrite`, and neither start nor end. With
/// [`tool_concurrency`](super::AgentConfig::tool_concurrency) above 1, the calls start in
/// the model's order and the events of different calls interleave as they happen; the
/// events of one call keep their order. The step ends with the `ContextWrite` of the
/// response and [`AgentEvent::StepComplete`], or with [`AgentEvent::Error`].
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum AgentEvent {
    /// A piece of the model's answer. After a [`AgentEvent::Retry`] of the model call,
    /// the answer starts again from the beginning.
    LlmChunk {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The piece.
        chunk: LlmChunk,
    },
    /// A model call finished.
    LlmComplete {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// Which model call of the step, from 1.
        iteration: u32,
        /// The whole text of the answer.
        text: String,
        /// The tool calls it made, assembled: the native ones, then those found in its
        /// text by the agent's patterns (a malformed one with no name and its segment's
        /// content as arguments). A tool round for them follows.
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
        /// When.
        timestamp: f64,
        /// The segment's number in this model call's answer, from 0.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
    },
    /// More of a segment's content, as it streams.
    PatternContent {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The segment's number.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
        /// The text.
        text: String,
    },
    /// A segment ended. A tool segment's call then runs like a native one, after the
    /// model call's [`AgentEvent::LlmComplete`].
    PatternEnd {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The segment's number.
        segment: u32,
        /// What it is.
        kind: SegmentKind,
        /// Everything between its tags.
        content: String,
        /// Whether its end tag came; `false` when the answer ended inside it.
        closed: bool,
        /// For a tool segment, the call, or why it is none (the model is told, as for a
        /// native call with bad arguments). Serialised as `{"ok": {...}}` or
        /// `{"error": "..."}` (the whole chain).
        #[cfg_attr(feature = "serde", serde(serialize_with = "segment_call"))]
        call: Option<Result<ToolCall, ToolCallError>>,
    },
    /// Whether a tool call may run, as the allow-list or the approval hook decided.
    ToolDecision {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// Accepted, or rejected with the reason the model is sent.
        decision: ToolDecision,
        /// Who decided.
        decided_by: DecidedBy,
    },
    /// A tool call starts.
    ToolStart {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// The arguments as the model wrote them.
        arguments: String,
    },
    /// A tool's output. With `partial: false`, the call's result, exactly as it is sent
    /// back to the model; with `partial: true`, something the tool reported while running
    /// (see [`ToolContext::partial`](super::ToolContext::partial)), which the model is not
    /// sent.
    ToolOutput {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// The output, or the error message the model will see.
        output: Value,
        /// Whether the call failed (or was rejected).
        is_error: bool,
        /// Whether more is to come from this call.
        partial: bool,
    },
    /// A tool call ended.
    ToolEnd {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        name: String,
        /// Whether it succeeded.
        success: bool,
        /// How long it took, retries included.
        #[cfg_attr(feature = "serde", serde(serialize_with = "seconds"))]
        duration: Duration,
    },
    /// A model or tool attempt failed and will be retried.
    Retry {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The event, its `step_id` set.
        event: RetryEvent,
    },
    /// Rate-limit tokens were taken for a model or tool attempt.
    RateLimit {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The event, its `step_id` set.
        event: RateLimitEvent,
    },
    /// A circuit breaker guarding a model or tool call changed state.
    Circuit {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The event, its `step_id` set.
        event: CircuitEvent,
    },
    /// The runner wrote to the agent's context (see [`AgentRunner`](super::AgentRunner)
    /// for the keys).
    ContextWrite {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// The key written.
        key: String,
        /// The version written.
        version: u64,
        /// The context's iteration of this step.
        iteration: u64,
        /// The value as text, cut to its first 200 characters.
        preview: String,
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
        /// When.
        timestamp: f64,
        /// Why; print it with its chain.
        #[cfg_attr(feature = "serde", serde(serialize_with = "chain"))]
        error: Arc<AgentError>,
    },
    /// The model answered without calling tools; the step is done, and its messages are
    /// now in the runner's history.
    StepComplete {
        /// The step.
        step_id: Arc<str>,
        /// When.
        timestamp: f64,
        /// What the step produced.
        result: StepResult,
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
            | AgentEvent::ToolDecision { step_id, .. }
            | AgentEvent::ToolStart { step_id, .. }
            | AgentEvent::ToolOutput { step_id, .. }
            | AgentEvent::ToolEnd { step_id, .. }
            | AgentEvent::Retry { step_id, .. }
            | AgentEvent::RateLimit { step_id, .. }
            | AgentEvent::Circuit { step_id, .. }
            | AgentEvent::ContextWrite { step_id, .. }
            | AgentEvent::Error { step_id, .. }
            | AgentEvent::StepComplete { step_id, .. } => step_id,
        }
    }

    /// When the event was made, in Unix seconds.
    pub fn timestamp(&self) -> f64 {
        match self {
            AgentEvent::LlmChunk { timestamp, .. }
            | AgentEvent::LlmComplete { timestamp, .. }
            | AgentEvent::PatternStart { timestamp, .. }
            | AgentEvent::PatternContent { timestamp, .. }
            | AgentEvent::PatternEnd { timestamp, .. }
            | AgentEvent::ToolDecision { timestamp, .. }
            | AgentEvent::ToolStart { timestamp, .. }
            | AgentEvent::ToolOutput { timestamp, .. }
            | AgentEvent::ToolEnd { timestamp, .. }
            | AgentEvent::Retry { timestamp, .. }
            | AgentEvent::RateLimit { timestamp, .. }
            | AgentEvent::Circuit { timestamp, .. }
            | AgentEvent::ContextWrite { timestamp, .. }
            | AgentEvent::Error { timestamp, .. }
            | AgentEvent::StepComplete { timestamp, .. } => *timestamp,
        }
    }

    /// The text of a model chunk, for the usual "print the tokens" loop; `None` for any
    /// other event.
    ///
    /// ```no_run
    /// # async fn run(runner: &mut aegeantic::agent::AgentRunner) {
    /// use futures::StreamExt;
    /// use std::io::Write;
    ///
    /// let mut events = runner.step_stream("Hello");
    /// while let Some(event) = events.next().await {
    ///     if let Some(text) = event.text() {
    ///         print!("{text}");
    ///         std::io::stdout().flush().ok();
    ///     }
    /// }
    /// # }
    /// ```
    pub fn text(&self) -> Option<&str> {
        match self {
            AgentEvent::LlmChunk { chunk, .. } => chunk.text(),
            _ => None,
        }
    }
}

#[cfg(feature = "serde")]
fn seconds<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(feature = "serde")]
fn segment_call<S: serde::Serializer>(
    call: &Option<Result<ToolCall, ToolCallError>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let Some(call) = call else {
        return serializer.serialize_none();
    };
    let mut map = serializer.serialize_map(Some(1))?;
    match call {
        Ok(call) => map.serialize_entry("ok", call)?,
        Err(error) => {
            map.serialize_entry("error", &crate::report::DisplayChain(error).to_string())?
        }
    }
    map.end()
}

#[cfg(feature = "serde")]
fn chain<S: serde::Serializer>(error: &Arc<AgentError>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&crate::report::DisplayChain(&**error))
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
