//! One tool call: the allow-list and the approval hook, the attempts under the tool's
//! policy, what the tool reports while it runs, its result and the context write of it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_core::Stream;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::stamp::{event_only, step_event, Step};
use super::store;
use super::tool_loop::RoundCall;
use crate::agent::decision::{DecidedBy, ToolDecision};
use crate::agent::tool::ToolReport;
use crate::agent::{Agent, AgentError, AgentEvent, ToolCallResult, ToolContext, ToolError};
use crate::events::unix_now;
use crate::llm::ToolCall;
use crate::report::DisplayChain;
use crate::resilience::{resilient_stream, ResilienceError, Resilient};

/// What a tool call yields: events, then its result or the error that ends the step.
pub(super) enum CallItem {
    Event(AgentEvent),
    Done(ToolCallResult),
    Failed(AgentError),
}

pub(super) type CallStream = Pin<Box<dyn Stream<Item = CallItem> + Send>>;

/// The call's events and result. `iteration` is the context's, for the result's key.
pub(super) fn tool_call(
    agent: Arc<Agent>,
    step_id: Arc<str>,
    iteration: u64,
    call: RoundCall,
) -> CallStream {
    let RoundCall { call, malformed } = call;
    Box::pin(async_stream::stream! {
        let mut rejection = None;
        // A malformed call in text names nothing to decide about; it fails at once.
        let decision = match malformed {
            Some(_) => None,
            None => decide(&agent, &call).await,
        };
        if let Some((decision, decided_by)) = decision {
            if let ToolDecision::Reject { reason } = &decision {
                rejection = Some(format!("rejected: {reason}"));
            }
            yield CallItem::Event(decision_event(&step_id, &call, decision, decided_by));
        }
        let outcome = match rejection {
            Some(rejection) => Err(rejection),
            None => {
                yield CallItem::Event(AgentEvent::ToolStart {
                    step_id: step_id.clone(),
                    timestamp: unix_now(),
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
                let started = Instant::now();
                let (reports_tx, mut reports) = mpsc::unbounded_channel();
                let context = ToolContext::new(step_id.clone(), call.id.as_str().into(), reports_tx);
                let mut attempts = match &malformed {
                    Some(error) => failed_at_once(ToolError::InvalidArguments(DisplayChain(error).to_string())),
                    None => tool_attempts(&agent, &call, context),
                };
                let mut outcome: Option<Result<Value, String>> = None;
                loop {
                    // What a tool reports comes first, so that it appears while it runs.
                    let next = tokio::select! {
                        biased;
                        Some(report) = reports.recv() => Progress::Reported(report),
                        item = attempts.next() => Progress::Attempt(item),
                    };
                    match next {
                        Progress::Reported(report) => {
                            yield CallItem::Event(reported(&step_id, &call, report));
                        }
                        Progress::Attempt(None) => break,
                        Progress::Attempt(Some(Ok(item))) => match step_event(&step_id, item) {
                            Step::Data(value) => outcome = Some(Ok(value)),
                            Step::Event(event) => yield CallItem::Event(event),
                        },
                        Progress::Attempt(Some(Err(error))) => {
                            outcome = Some(Err(tool_failure(error)));
                        }
                    }
                }
                drop(attempts);
                while let Ok(report) = reports.try_recv() {
                    yield CallItem::Event(reported(&step_id, &call, report));
                }
                let outcome = outcome
                    .unwrap_or_else(|| Err("error: the tool returned nothing".to_owned()));
                let success = outcome.is_ok();
                let (output, is_error) = match outcome {
                    Ok(value) => (value, false),
                    Err(message) => (Value::String(message), true),
                };
                yield CallItem::Event(output_event(&step_id, &call, output.clone(), is_error));
                yield CallItem::Event(AgentEvent::ToolEnd {
                    step_id: step_id.clone(),
                    timestamp: unix_now(),
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    success,
                    duration: started.elapsed(),
                });
                Ok((output, is_error))
            }
        };
        let (output, is_error) = match outcome {
            Ok(done) => done,
            Err(rejection) => {
                let output = Value::String(rejection);
                yield CallItem::Event(output_event(&step_id, &call, output.clone(), true));
                (output, true)
            }
        };
        let arguments = serde_json::from_str::<Value>(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        let record = json!({
            "name": call.name,
            "arguments": arguments,
            "output": output,
            "is_error": is_error,
        });
        let key = format!("tool:result:{iteration}:{}", call.id);
        match store::write(&agent.context, &step_id, iteration, key, record.into()).await {
            Ok(event) => yield CallItem::Event(event),
            Err(error) => {
                yield CallItem::Failed(AgentError::Context(error));
                return;
            }
        }
        yield CallItem::Done(ToolCallResult { call, output, is_error });
    })
}

/// The allow-list's refusal, or the hook's answer; `None` when nobody had to decide.
async fn decide(agent: &Agent, call: &ToolCall) -> Option<(ToolDecision, DecidedBy)> {
    if !agent.config.allows(&call.name) {
        let reason = format!("the tool {:?} is not allowed", call.name);
        return Some((ToolDecision::reject(reason), DecidedBy::AllowList));
    }
    match &agent.config.on_tool_detected {
        Some(approval) => Some(approval.decide(call).await),
        None => None,
    }
}

fn decision_event(
    step_id: &Arc<str>,
    call: &ToolCall,
    decision: ToolDecision,
    decided_by: DecidedBy,
) -> AgentEvent {
    AgentEvent::ToolDecision {
        step_id: step_id.clone(),
        timestamp: unix_now(),
        call_id: call.id.clone(),
        name: call.name.clone(),
        decision,
        decided_by,
    }
}

fn output_event(step_id: &Arc<str>, call: &ToolCall, output: Value, is_error: bool) -> AgentEvent {
    AgentEvent::ToolOutput {
        step_id: step_id.clone(),
        timestamp: unix_now(),
        call_id: call.id.clone(),
        name: call.name.clone(),
        output,
        is_error,
        partial: false,
    }
}

/// What a running tool reported, as a step event.
fn reported(step_id: &Arc<str>, call: &ToolCall, report: ToolReport) -> AgentEvent {
    match report {
        ToolReport::Event(item) => event_only(step_id, item),
        ToolReport::Partial(output) => AgentEvent::ToolOutput {
            step_id: step_id.clone(),
            timestamp: unix_now(),
            call_id: call.id.clone(),
            name: call.name.clone(),
            output,
            is_error: false,
            partial: true,
        },
    }
}

enum Progress<T> {
    Reported(ToolReport),
    Attempt(Option<T>),
}

type Attempts =
    Pin<Box<dyn Stream<Item = Result<Resilient<Value>, ResilienceError<ToolError>>> + Send>>;

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
