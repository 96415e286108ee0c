//! Running an agent's steps: ask the model, run the tools it calls, send the results back,
//! repeat until it answers.
//!
//! | file         | concern                                                         |
//! |--------------|-----------------------------------------------------------------|
//! | `step`       | one step: the prompt, the model calls, the tool rounds, the end |
//! | `model_call` | one model call as step events, and the answer it assembles      |
//! | `tool_loop`  | the tool calls of one answer, one after another or concurrently |
//! | `tool_call`  | one tool call: decision, attempts, reports, result              |
//! | `store`      | the context, called from blocking threads; the runner's writes  |
//! | `stamp`      | resilience items made step events                               |

mod model_call;
mod stamp;
mod step;
mod store;
mod tool_call;
mod tool_loop;

use std::pin::{pin, Pin};
use std::sync::Arc;

use futures_core::Stream;
use futures_util::StreamExt;

use super::{Agent, AgentError, AgentEvent, StepResult};
use crate::events::unix_now;
use crate::llm::Message;

/// Runs an agent's steps and keeps the conversation between them.
///
/// Each step writes what it produced to the agent's [`Context`](super::Context), each
/// write reported as an [`AgentEvent::ContextWrite`]:
///
/// | key                                 | value                                          | written |
/// |-------------------------------------|------------------------------------------------|---------|
/// | `tool:result:{iteration}:{call_id}` | `{"name", "arguments", "output", "is_error"}`   | after each tool call, rejected ones too |
/// | `response`                          | the final answer, a JSON string                | a new version at the end of each step |
///
/// `{iteration}` is the context's iteration counter, advanced once at the start of each
/// step (so two runners sharing a store never write the same key), and `{call_id}` the
/// model's id for the call. `arguments` are the model's JSON (its text when it is not
/// JSON). `history("response", n)` gives the last `n` answers, newest first.
pub struct AgentRunner {
    agent: Arc<Agent>,
    history: Vec<Message>,
}

/// The events of one step.
pub type StepStream<'a> = Pin<Box<dyn Stream<Item = AgentEvent> + Send + 'a>>;

impl AgentRunner {
    /// A runner with an empty conversation (the system prompt aside). Runners of one
    /// `Arc<Agent>` share its tools and context, each with a conversation of its own.
    pub fn new(agent: impl Into<Arc<Agent>>) -> Self {
        let agent = agent.into();
        let history = agent
            .system_message()
            .into_iter()
            .map(Message::system)
            .collect();
        AgentRunner { agent, history }
    }

    /// The agent.
    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// The conversation so far: the system prompt, then the messages of each completed
    /// step. A step that failed or whose stream was dropped left nothing here (see
    /// [`step_stream`](AgentRunner::step_stream)).
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Runs one step for the user's `input`: model calls and tool calls until the model
    /// answers without tools. The stream ends after [`AgentEvent::StepComplete`] or
    /// [`AgentEvent::Error`]; the order of the events between is documented on
    /// [`AgentEvent`]. Every event carries the step's id, unique across runners and
    /// processes (128 random bits).
    ///
    /// Tool arguments that are not valid JSON, unknown tools, failed and rejected tools
    /// do not end the step: the model is sent the error as the tool's result and may
    /// correct itself.
    ///
    /// A step's messages (the user's input, the model's answers, the tools' results) join
    /// the [`history`](AgentRunner::history) all at once, when the step yields
    /// [`AgentEvent::StepComplete`]; until then the step's model calls are sent the history
    /// followed by the step's messages so far. A step that ends with
    /// [`AgentEvent::Error`], or whose stream is dropped at any point, leaves the history
    /// exactly as it was before the step, so the next step never sends the model a tool
    /// call without its result (which OpenAI-compatible servers refuse). What the step
    /// wrote to the context stays there.
    pub fn step_stream(&mut self, input: impl Into<String>) -> StepStream<'_> {
        let step_id = new_step_id();
        let agent = Arc::clone(&self.agent);
        let events = step::run(agent, step_id.clone(), &mut self.history, input.into());
        Box::pin(events.map(move |item| match item {
            Ok(event) => event,
            Err(error) => AgentEvent::Error {
                step_id: step_id.clone(),
                timestamp: unix_now(),
                error: Arc::new(error),
            },
        }))
    }

    /// Runs one step as [`step_stream`](AgentRunner::step_stream) does, and returns its
    /// result without the events.
    ///
    /// # Errors
    /// What [`AgentEvent::Error`] would carry.
    pub async fn step(&mut self, input: impl Into<String>) -> Result<StepResult, AgentError> {
        let agent = Arc::clone(&self.agent);
        let mut events = pin!(step::run(
            agent,
            new_step_id(),
            &mut self.history,
            input.into()
        ));
        while let Some(item) = events.next().await {
            if let AgentEvent::StepComplete { result, .. } = item? {
                return Ok(result);
            }
        }
        unreachable!("a step ends with StepComplete or an error")
    }
}

/// 128 random bits: unique across runners and processes without coordination.
fn new_step_id() -> Arc<str> {
    format!("step_{:032x}", rand::random::<u128>()).into()
}
