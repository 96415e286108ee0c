//! How an agent behaves.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::context::Context;
use super::decision::ToolApproval;
use super::event::BoxError;

/// How an agent behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The most model calls in one step; a step still calling tools then fails with
    /// [`AgentError::MaxIterations`](super::AgentError::MaxIterations). Default 10.
    pub max_iterations: u32,
    /// Sent first in every conversation.
    pub system_prompt: Option<String>,
    /// A cap on tokens per model call.
    pub max_tokens: Option<u32>,
    /// A model that overrides the provider's.
    pub model: Option<String>,
    /// Makes the user message of each step from the context and the step's input. `None`
    /// (the default): the input is the message.
    pub prompt: Option<PromptBuilder>,
    /// The only tools the model is offered and may run, by name; `None` (the default): all
    /// of the agent's tools. A call to another tool is rejected
    /// ([`DecidedBy::AllowList`](super::DecidedBy::AllowList)).
    pub allowed_tools: Option<Vec<String>>,
    /// Asked before each allowed tool call runs; `None` (the default): every call runs.
    pub on_tool_detected: Option<ToolApproval>,
    /// How many tool calls of one model answer may run at once. Default 1: one after the
    /// other, in the model's order.
    pub tool_concurrency: NonZeroUsize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_iterations: 10,
            system_prompt: None,
            max_tokens: None,
            model: None,
            prompt: None,
            allowed_tools: None,
            on_tool_detected: None,
            tool_concurrency: NonZeroUsize::MIN,
        }
    }
}

impl AgentConfig {
    pub(crate) fn allows(&self, tool: &str) -> bool {
        self.allowed_tools
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|name| name == tool))
    }
}

type Build = dyn Fn(&dyn Context, &str) -> Result<String, BoxError> + Send + Sync;

/// Builds a step's user message from the agent's context and the step's input, so that a
/// workflow of steps passes its state through the store.
///
/// ```
/// use aegeantic::agent::{AgentConfig, PromptBuilder};
///
/// let config = AgentConfig {
///     prompt: Some(PromptBuilder::new(|context, input| {
///         let plan = context.get("plan")?.map(|plan| plan.to_text()).unwrap_or_default();
///         let previous = context.get("response")?.map(|r| r.to_text()).unwrap_or_default();
///         Ok(format!("Plan: {plan}\nYour last answer: {previous}\nTask: {input}"))
///     })),
///     ..AgentConfig::default()
/// };
/// ```
///
/// It runs on a blocking thread, as every call to the context does; an error fails the
/// step with [`AgentError::Prompt`](super::AgentError::Prompt).
#[derive(Clone)]
pub struct PromptBuilder(Arc<Build>);

impl PromptBuilder {
    /// A builder calling `build(context, input)`.
    pub fn new<F>(build: F) -> Self
    where
        F: Fn(&dyn Context, &str) -> Result<String, BoxError> + Send + Sync + 'static,
    {
        PromptBuilder(Arc::new(build))
    }

    pub(crate) fn build(&self, context: &dyn Context, input: &str) -> Result<String, BoxError> {
        (self.0)(context, input)
    }
}

impl fmt::Debug for PromptBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PromptBuilder(..)")
    }
}
