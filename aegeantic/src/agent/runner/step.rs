//! One step: the prompt, then model calls and tool rounds until the model answers without
//! tools.

use std::sync::Arc;

use futures_core::Stream;
use futures_util::StreamExt;

use super::model_call::{model_call, Answer, ModelItem};
use super::store::{self, on_store};
use super::tool_loop::{tool_round, RoundCall, RoundItem};
use crate::agent::patterns::TextCall;
use crate::agent::{Agent, AgentError, AgentEvent, PatternFormat, StepResult, ToolCallResult};
use crate::events::unix_now;
use crate::llm::{LlmRequest, Message, ToolCall, Usage};

/// The step's events; an `Err` is the last item.
pub(super) fn run(
    agent: Arc<Agent>,
    step_id: Arc<str>,
    history: &mut Vec<Message>,
    input: String,
) -> impl Stream<Item = Result<AgentEvent, AgentError>> + Send + '_ {
    async_stream::stream! {
        let iteration = match on_store(&agent.context, |context| context.next_iteration()).await {
            Ok(iteration) => iteration,
            Err(error) => {
                yield Err(AgentError::Context(error));
                return;
            }
        };
        let prompt = match prompt(&agent, input).await {
            Ok(prompt) => prompt,
            Err(error) => {
                yield Err(error);
                return;
            }
        };
        let mut step = vec![Message::user(prompt)];
        let mut tool_calls = Vec::new();
        let mut usage: Option<Usage> = None;
        let max_iterations = agent.config.max_iterations;
        for model_iteration in 1..=max_iterations {
            let request = LlmRequest {
                messages: history.iter().chain(&step).cloned().collect(),
                tools: agent.native_tool_specs(),
                max_tokens: agent.config.max_tokens,
                model: agent.config.model.clone(),
            };
            let mut answer = None;
            let mut call = std::pin::pin!(model_call(&agent, step_id.clone(), model_iteration, &request));
            while let Some(item) = call.next().await {
                match item {
                    ModelItem::Event(event) => yield Ok(event),
                    ModelItem::Done(assembly) => answer = Some(assembly),
                    ModelItem::Failed(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
            let Some(Answer { assembly: mut answer, found }) = answer else {
                unreachable!("a model call ends with its answer or its error")
            };
            let native = answer.tool_calls();
            let (response, text_calls) = match found {
                Some((response, calls)) => (Some(response), calls),
                None => (None, Vec::new()),
            };
            let (round, formats) = round_calls(&native, text_calls);
            let calls: Vec<ToolCall> = round.iter().map(|planned| planned.call.clone()).collect();
            usage = add_usage(usage, answer.usage);
            yield Ok(AgentEvent::LlmComplete {
                step_id: step_id.clone(),
                timestamp: unix_now(),
                iteration: model_iteration,
                text: answer.text.clone(),
                tool_calls: calls.clone(),
                usage: answer.usage,
                finish_reason: answer.finish.clone(),
            });
            step.push(Message::assistant(answer.text.clone(), native));
            if calls.is_empty() {
                let response = response.unwrap_or(answer.text);
                match store::write(&agent.context, &step_id, iteration, "response".to_owned(), response.clone().into()).await {
                    Ok(event) => yield Ok(event),
                    Err(error) => {
                        yield Err(AgentError::Context(error));
                        return;
                    }
                }
                // Committed before the yield: a consumer that has seen the event and
                // drops the stream finds the step in the history.
                history.append(&mut step);
                yield Ok(AgentEvent::StepComplete {
                    step_id: step_id.clone(),
                    timestamp: unix_now(),
                    result: StepResult {
                        response,
                        tool_calls,
                        usage,
                        iterations: model_iteration,
                        context_iteration: iteration,
                    },
                });
                return;
            }
            let mut round = std::pin::pin!(tool_round(Arc::clone(&agent), step_id.clone(), iteration, round));
            while let Some(item) = round.next().await {
                match item {
                    RoundItem::Event(event) => yield Ok(event),
                    RoundItem::Done(results) => {
                        send_back(&agent, &results, &formats, &mut step);
                        tool_calls.extend(results);
                    }
                    RoundItem::Failed(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
        }
        yield Err(AgentError::MaxIterations { max_iterations });
    }
}

/// The round's calls, native ones first, and for each how its result goes back: a tool
/// message (`None`), or in the patterns' style for a call found in text.
fn round_calls(
    native: &[ToolCall],
    text_calls: Vec<TextCall>,
) -> (Vec<RoundCall>, Vec<Option<PatternFormat>>) {
    let formats = native
        .iter()
        .map(|_| None)
        .chain(text_calls.iter().map(|text| Some(text.format)))
        .collect();
    let native = native.iter().map(|call| RoundCall {
        call: call.clone(),
        malformed: None,
    });
    let text = text_calls.into_iter().map(|text| RoundCall {
        call: text.call,
        malformed: text.error,
    });
    (native.chain(text).collect(), formats)
}

/// Adds the round's results to the step's messages: a tool message for each native call,
/// then one user message with the results of the calls found in text.
fn send_back(
    agent: &Agent,
    results: &[ToolCallResult],
    formats: &[Option<PatternFormat>],
    step: &mut Vec<Message>,
) {
    let mut text_results = Vec::new();
    for (result, format) in results.iter().zip(formats) {
        match (format, &agent.patterns) {
            (Some(format), Some(set)) => text_results.push(set.format_result(
                *format,
                &result.call,
                &result.output,
                result.is_error,
            )),
            _ => step.push(Message::tool_result(
                result.call.id.clone(),
                output_text(&result.output),
            )),
        }
    }
    if !text_results.is_empty() {
        step.push(Message::user(text_results.join("\n")));
    }
}

/// The step's user message: the input, or what the prompt builder makes of it.
async fn prompt(agent: &Agent, input: String) -> Result<String, AgentError> {
    let Some(builder) = agent.config.prompt.clone() else {
        return Ok(input);
    };
    let built = on_store(&agent.context, move |context| {
        Ok(builder.build(context, &input))
    })
    .await
    .map_err(AgentError::Context)?;
    built.map_err(AgentError::Prompt)
}

fn add_usage(total: Option<Usage>, more: Option<Usage>) -> Option<Usage> {
    match (total, more) {
        (Some(total), Some(more)) => Some(Usage {
            prompt_tokens: total.prompt_tokens.saturating_add(more.prompt_tokens),
            completion_tokens: total
                .completion_tokens
                .saturating_add(more.completion_tokens),
        }),
        (total, more) => total.or(more),
    }
}

/// A tool result as the model reads it: strings as they are, other values as JSON.
fn output_text(output: &serde_json::Value) -> String {
    match output {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
