//! The agent loop: ask the model, run the tools it calls, send the results back, repeat.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_core::Stream;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::assemble::Assembly;
use super::patterns::{TextCall, TextTools};
use super::tool::ToolEventItem;
use super::{AgentError, AgentEvent, PatternSet, SegmentEvent, Tool, ToolContext, ToolError};
use crate::llm::{LlmChunk, LlmProvider, LlmRequest, Message, ToolCall, ToolSpec};
use crate::report::DisplayChain;
use crate::resilience::{resilient_stream, ResilienceError, Resilient};

/// How an agent behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The most model calls in one step; a step still calling tools then fails with
    /// [`AgentError::MaxIterations`]. Default 10.
    pub max_iterations: u32,
    /// Sent first in every conversation.
    pub system_prompt: Option<String>,
    /// A cap on tokens per model call.
    pub max_tokens: Option<u32>,
    /// A model that overrides the provider's.
    pub model: Option<String>,
    /// Tool calls and other segments to find in the model's text, for models without
    /// native function calling. With a set, the tools are described to the model in the
    /// system prompt ([`PatternSet::tool_instructions`]) instead of being sent as native
    /// tool specs; calls found in the text run through the same tool loop as native
    /// ones, and their results go back in one user message, in the set's style
    /// ([`PatternSet::format_result`]). The step's response is then the set's response
    /// text, trimmed. `None` (the default): native function calling only.
    pub patterns: Option<PatternSet>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_iterations: 10,
            system_prompt: None,
            max_tokens: None,
            model: None,
            patterns: None,
        }
    }
}

/// A model with tools. Give it a [`ResilientProvider`](crate::llm::ResilientProvider) and
/// the retries and rate-limit waits of its model calls appear in the step stream.
pub struct Agent {
    config: AgentConfig,
    provider: Arc<dyn LlmProvider>,
    tools: Vec<Arc<dyn Tool>>,
}

impl Agent {
    /// An agent that answers with `provider` and may call `tools`.
    pub fn new(
        config: AgentConfig,
        provider: impl LlmProvider + 'static,
        tools: Vec<Arc<dyn Tool>>,
    ) -> Self {
        Agent {
            config,
            provider: Arc::new(provider),
            tools,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn tool(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|tool| tool.name() == name)
    }

    fn tool_specs(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|tool| ToolSpec {
                name: tool.name().to_owned(),
                description: tool.description().to_owned(),
                parameters: tool.parameters(),
            })
            .collect()
    }
}

/// Runs an agent's steps and keeps the conversation between them.
pub struct AgentRunner {
    agent: Arc<Agent>,
    history: Vec<Message>,
    steps: u64,
}

/// The events of one step.
pub type StepStream<'a> = Pin<Box<dyn Stream<Item = AgentEvent> + Send + 'a>>;

impl AgentRunner {
    /// A runner with an empty conversation (the system prompt aside).
    pub fn new(agent: Agent) -> Self {
        let instructions = agent
            .config
            .patterns
            .as_ref()
            .and_then(|set| set.tool_instructions(&agent.tool_specs()));
        let system = match (&agent.config.system_prompt, instructions) {
            (Some(prompt), Some(instructions)) => Some(format!("{prompt}\n\n{instructions}")),
            (prompt, instructions) => prompt.clone().or(instructions),
        };
        let history = system.into_iter().map(Message::system).collect();
        AgentRunner {
            agent: Arc::new(agent),
            history,
            steps: 0,
        }
    }

    /// The conversation so far: the system prompt, then the messages of each completed
    /// step. A step that failed or whose stream was dropped left nothing here (see
    /// [`step_stream`](AgentRunner::step_stream)).
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Runs one step for the user's `input`: model calls and tool calls until the model
    /// answers without tools. The stream ends after [`AgentEvent::StepComplete`] or
    /// [`AgentEvent::Error`].
    ///
    /// Tool arguments that are not valid JSON, unknown tools and failed tools do not end the
    /// step: the model is sent the error as the tool's result and may correct itself.
    ///
    /// A step's messages (the user's input, the model's answers, the tools' results) join
    /// the [`history`](AgentRunner::history) all at once, when the step yields
    /// [`AgentEvent::StepComplete`]; until then the step's model calls are sent the history
    /// followed by the step's messages so far. A step that ends with
    /// [`AgentEvent::Error`], or whose stream is dropped at any point, leaves the history
    /// exactly as it was before the step, so the next step never sends the model a tool
    /// call without its result (which OpenAI-compatible servers refuse).
    pub fn step_stream(&mut self, input: impl Into<String>) -> StepStream<'_> {
        self.steps += 1;
        let step_id: Arc<str> = format!("step-{}", self.steps).into();
        let agent = Arc::clone(&self.agent);
        let history = &mut self.history;
        let input = Message::user(input);
        Box::pin(async_stream::stream! {
            let mut step = vec![input];
            let max_iterations = agent.config.max_iterations;
            for iteration in 1..=max_iterations {
                let request = LlmRequest {
                    messages: history.iter().chain(&step).cloned().collect(),
                    tools: if agent.config.patterns.is_some() { Vec::new() } else { agent.tool_specs() },
                    max_tokens: agent.config.max_tokens,
                    model: agent.config.model.clone(),
                };
                let mut answer = agent.provider.stream_events(&request);
                let mut assembly = Assembly::default();
                let mut text_tools = agent.config.patterns.as_ref().map(TextTools::new);
                while let Some(item) = answer.next().await {
                    match item.map(|item| step_event(&step_id, item)) {
                        Ok(Step::Data(chunk)) => {
                            assembly.add(&chunk);
                            let segments = match (&mut text_tools, &chunk) {
                                (Some(text_tools), LlmChunk::Text(text)) => text_tools.push(text),
                                _ => Ok(Vec::new()),
                            };
                            yield AgentEvent::LlmChunk { step_id: step_id.clone(), chunk };
                            match segments {
                                Ok(segments) => for event in pattern_events(&step_id, segments) {
                                    yield event;
                                },
                                Err(error) => {
                                    yield AgentEvent::Error {
                                        step_id: step_id.clone(),
                                        error: Arc::new(AgentError::Patterns(error)),
                                    };
                                    return;
                                }
                            }
                        }
                        Ok(Step::Event(event)) => {
                            if matches!(event, AgentEvent::Retry { .. }) {
                                // The next attempt streams the answer from the start.
                                assembly = Assembly::default();
                                if let Some(text_tools) = &mut text_tools {
                                    text_tools.reset();
                                }
                            }
                            yield event;
                        }
                        Err(error) => {
                            yield AgentEvent::Error {
                                step_id: step_id.clone(),
                                error: Arc::new(AgentError::Llm(error)),
                            };
                            return;
                        }
                    }
                }
                let native_calls = assembly.tool_calls();
                let (response, text_calls) = match &mut text_tools {
                    None => (assembly.text.clone(), Vec::new()),
                    Some(text_tools) => match text_tools.finish() {
                        Ok(segments) => {
                            for event in pattern_events(&step_id, segments) {
                                yield event;
                            }
                            text_tools.take()
                        }
                        Err(error) => {
                            yield AgentEvent::Error {
                                step_id: step_id.clone(),
                                error: Arc::new(AgentError::Patterns(error)),
                            };
                            return;
                        }
                    },
                };
                let calls: Vec<Planned> = native_calls
                    .iter()
                    .cloned()
                    .map(Planned::Native)
                    .chain(text_calls.into_iter().map(Planned::Text))
                    .collect();
                yield AgentEvent::LlmComplete {
                    step_id: step_id.clone(),
                    iteration,
                    text: assembly.text.clone(),
                    tool_calls: calls.iter().map(|planned| planned.call().clone()).collect(),
                    usage: assembly.usage,
                    finish_reason: assembly.finish.clone(),
                };
                step.push(Message::assistant(assembly.text.clone(), native_calls));
                if calls.is_empty() {
                    // Committed before the yield: a consumer that has seen the event and
                    // drops the stream finds the step in the history.
                    history.append(&mut step);
                    yield AgentEvent::StepComplete {
                        step_id: step_id.clone(),
                        response,
                        iterations: iteration,
                    };
                    return;
                }
                // Results of calls found in the text, sent back together after the native
                // calls' tool messages.
                let mut text_results = Vec::new();
                for planned in calls {
                    let call = planned.call().clone();
                    yield AgentEvent::ToolStart {
                        step_id: step_id.clone(),
                        call_id: call.id.clone(),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    };
                    let started = Instant::now();
                    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
                    let context = ToolContext::new(step_id.clone(), call.id.as_str().into(), events_tx);
                    let mut attempts = match &planned {
                        Planned::Text(TextCall { error: Some(error), .. }) => {
                            failed_at_once(ToolError::InvalidArguments(DisplayChain(error).to_string()))
                        }
                        _ => tool_attempts(&agent, &call, context),
                    };
                    let mut outcome: Option<Result<Value, String>> = None;
                    loop {
                        // Events a tool reports come first, so they appear while it runs.
                        let next = tokio::select! {
                            biased;
                            Some(event) = events_rx.recv() => Progress::Reported(event),
                            item = attempts.next() => Progress::Attempt(item),
                        };
                        match next {
                            Progress::Reported(event) => yield reported(&step_id, event),
                            Progress::Attempt(None) => break,
                            Progress::Attempt(Some(Ok(item))) => match step_event(&step_id, item) {
                                Step::Data(value) => outcome = Some(Ok(value)),
                                Step::Event(event) => yield event,
                            },
                            Progress::Attempt(Some(Err(error))) => {
                                outcome = Some(Err(tool_failure(error)));
                            }
                        }
                    }
                    drop(attempts);
                    while let Ok(event) = events_rx.try_recv() {
                        yield reported(&step_id, event);
                    }
                    let outcome = outcome.unwrap_or_else(|| Err("error: the tool returned nothing".to_owned()));
                    let success = outcome.is_ok();
                    let output = match outcome {
                        Ok(value) => value,
                        Err(message) => Value::String(message),
                    };
                    match (&planned, &agent.config.patterns) {
                        (Planned::Text(text), Some(set)) => text_results.push(
                            set.format_result(text.format, &call, &output, !success),
                        ),
                        _ => step.push(Message::tool_result(call.id.clone(), output_text(&output))),
                    }
                    yield AgentEvent::ToolOutput {
                        step_id: step_id.clone(),
                        call_id: call.id.clone(),
                        name: call.name.clone(),
                        output,
                        is_error: !success,
                    };
                    yield AgentEvent::ToolEnd {
                        step_id: step_id.clone(),
                        call_id: call.id,
                        name: call.name,
                        success,
                        duration: started.elapsed(),
                    };
                }
                if !text_results.is_empty() {
                    step.push(Message::user(text_results.join("\n")));
                }
            }
            yield AgentEvent::Error {
                step_id: step_id.clone(),
                error: Arc::new(AgentError::MaxIterations { max_iterations }),
            };
        })
    }
}

enum Progress<T> {
    Reported(ToolEventItem),
    Attempt(Option<T>),
}

type Attempts =
    Pin<Box<dyn Stream<Item = Result<Resilient<Value>, ResilienceError<ToolError>>> + Send>>;

/// A tool call the model made natively or in its text.
enum Planned {
    Native(ToolCall),
    Text(TextCall),
}

impl Planned {
    fn call(&self) -> &ToolCall {
        match self {
            Planned::Native(call) | Planned::Text(TextCall { call, .. }) => call,
        }
    }
}

/// The step events of segments the extractor found; text outside them is already in the
/// step's `LlmChunk`s.
fn pattern_events(step_id: &Arc<str>, segments: Vec<SegmentEvent>) -> Vec<AgentEvent> {
    let step_id = step_id.clone();
    segments
        .into_iter()
        .filter_map(|segment| match segment {
            SegmentEvent::Start { segment, kind, .. } => Some(AgentEvent::PatternStart {
                step_id: step_id.clone(),
                segment,
                kind,
            }),
            SegmentEvent::Content {
                segment,
                kind,
                text,
            } => Some(AgentEvent::PatternContent {
                step_id: step_id.clone(),
                segment,
                kind,
                text,
            }),
            SegmentEvent::End(end) => Some(AgentEvent::PatternEnd {
                step_id: step_id.clone(),
                segment: end.segment,
                kind: end.kind,
                content: end.content,
                closed: end.closed,
                call: end.call,
            }),
            SegmentEvent::Text(_) => None,
        })
        .collect()
}

/// Attempts that fail at once with `error`, calling nothing.
fn failed_at_once(error: ToolError) -> Attempts {
    Box::pin(stream::iter([Err(ResilienceError::Operation {
        source: error,
        attempts: 1,
    })]))
}

/// The call's attempts under the tool's policy. Bad arguments and unknown tools fail at
/// once, without calling anything.
fn tool_attempts(agent: &Agent, call: &ToolCall, context: ToolContext) -> Attempts {
    let Some(tool) = agent.tool(&call.name).cloned() else {
        return failed_at_once(ToolError::UnknownTool(call.name.clone()));
    };
    // Models send "" for a call without arguments.
    let text = if call.arguments.trim().is_empty() {
        "{}"
    } else {
        &call.arguments
    };
    let args = match serde_json::from_str::<Value>(text) {
        Ok(args) => args,
        Err(error) => {
            return failed_at_once(ToolError::InvalidArguments(format!(
                "arguments are not valid JSON ({error})"
            )))
        }
    };
    let policy = tool.policy();
    let timeout = policy.timeout;
    let operation_name = tool.name().to_owned();
    let factory = move || {
        let tool = Arc::clone(&tool);
        let args = args.clone();
        let context = context.clone();
        stream::once(async move {
            let call = tool.call(args, context);
            match timeout {
                Some(limit) => tokio::time::timeout(limit, call)
                    .await
                    .unwrap_or_else(|_| Err(ToolError::timeout(limit))),
                None => call.await,
            }
        })
    };
    Box::pin(resilient_stream(
        factory,
        policy.retry,
        policy.rate_limiter,
        operation_name,
        "tool",
    ))
}

fn tool_failure(error: ResilienceError<ToolError>) -> String {
    match error {
        ResilienceError::Operation { source, attempts } if attempts > 1 => {
            format!("error: {source} (after {attempts} attempts)")
        }
        ResilienceError::Operation { source, .. } => format!("error: {source}"),
        // Deadlines, budgets, breakers, limiters: the why is in the chain.
        other => format!("error: {}", DisplayChain(&other)),
    }
}

/// A resilience event a tool reported while it ran, for the step stream.
fn reported(step_id: &Arc<str>, event: ToolEventItem) -> AgentEvent {
    match step_event(step_id, event) {
        Step::Data(never) => match never {},
        Step::Event(event) => event,
    }
}

/// A data item, or a resilience event made a step event.
enum Step<T> {
    Data(T),
    Event(AgentEvent),
}

/// Passes data items through; turns resilience events into step events, stamped with the
/// step.
fn step_event<T>(step_id: &Arc<str>, item: Resilient<T>) -> Step<T> {
    let step_id = step_id.clone();
    Step::Event(match item {
        Resilient::Item(item) => return Step::Data(item),
        Resilient::Retry(mut event) => {
            event.step_id = Some(step_id.clone());
            AgentEvent::Retry { step_id, event }
        }
        Resilient::RateLimit(mut event) => {
            event.step_id = Some(step_id.clone());
            AgentEvent::RateLimit { step_id, event }
        }
        Resilient::Circuit(mut event) => {
            event.step_id = Some(step_id.clone());
            AgentEvent::Circuit { step_id, event }
        }
    })
}

/// A tool result as the model reads it: strings as they are, other values as JSON.
fn output_text(output: &Value) -> String {
    match output {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
