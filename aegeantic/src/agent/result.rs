//! What a completed step produced.

use serde_json::Value;

use crate::llm::{ToolCall, Usage};

/// The outcome of a step: what [`AgentRunner::step`](super::AgentRunner::step) returns and
/// [`AgentEvent::StepComplete`](super::AgentEvent::StepComplete) carries.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StepResult {
    /// The model's final answer.
    pub response: String,
    /// Every tool call of the step, in the order the model made them, with its result.
    pub tool_calls: Vec<ToolCallResult>,
    /// The token counts of the step's model calls added up; `None` when no call reported
    /// any.
    pub usage: Option<Usage>,
    /// Model calls made.
    pub iterations: u32,
    /// The context's iteration counter for this step (the `{iteration}` of its keys).
    pub context_iteration: u64,
}

/// One tool call and its result.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ToolCallResult {
    /// The call as the model made it.
    pub call: ToolCall,
    /// What the model was sent: the tool's output, or the error or rejection message.
    pub output: Value,
    /// Whether the call failed or was rejected.
    pub is_error: bool,
}
