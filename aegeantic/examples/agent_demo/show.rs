//! How the demo prints each event of the agent step.

use std::io::{self, Write};

use aegeantic::agent::AgentEvent;
use aegeantic::llm::{LlmChunk, QuotaWindow};
use aegeantic::report::DisplayChain;

/// ANSI colours, only when printing to a terminal.
pub struct Paint(pub bool);

impl Paint {
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Writes `event` to `out` as it happens: text and tool-call arguments as they stream, the
/// rest one line each.
pub fn event(out: &mut dyn Write, paint: &Paint, event: &AgentEvent) -> io::Result<()> {
    match event {
        AgentEvent::LlmChunk {
            chunk: LlmChunk::Text(text),
            ..
        } => write!(out, "{text}"),
        AgentEvent::LlmChunk {
            chunk: LlmChunk::ToolCall(delta),
            ..
        } => write!(out, "{}", paint.paint("2", &delta.arguments)),
        AgentEvent::LlmChunk {
            chunk: LlmChunk::Quota(quota),
            ..
        } => {
            let left = |window: Option<QuotaWindow>| {
                window.map_or("?".to_owned(), |w| match w.limit {
                    Some(limit) => format!("{}/{limit}", w.remaining),
                    None => w.remaining.to_string(),
                })
            };
            let line = format!(
                "[server quota left: {} requests, {} tokens]",
                left(quota.requests),
                left(quota.tokens)
            );
            writeln!(out, "{}", paint.paint("2", &line))
        }
        AgentEvent::LlmChunk { .. } => Ok(()),
        AgentEvent::LlmComplete {
            iteration,
            usage,
            finish_reason,
            ..
        } => {
            let line = format!("[model call {iteration} done: {finish_reason:?}, {usage:?}]");
            writeln!(out, "\n{}", paint.paint("2", &line))
        }
        AgentEvent::Retry { event, .. } => {
            let line = format!(
                "[retry {}/{} of {} {} in {:.2}s, {} chunks to discard: {}]",
                event.attempt,
                event.max_attempts,
                event.operation_type,
                event.operation_name,
                event.next_delay_seconds,
                event.items_delivered,
                event.error
            );
            writeln!(out, "\n{}", paint.paint("33", &line))
        }
        AgentEvent::RateLimit { event, .. } => {
            let line = format!(
                "[rate limit {}: {} taken after {:.3}s, {:.0} left]",
                event.operation_name,
                event.tokens,
                event.waited.as_secs_f64(),
                event.tokens_remaining
            );
            writeln!(out, "{}", paint.paint("36", &line))
        }
        AgentEvent::ToolStart {
            name, arguments, ..
        } => writeln!(
            out,
            "{}",
            paint.paint("35", &format!("[tool {name}({arguments})]"))
        ),
        AgentEvent::ToolOutput {
            output, is_error, ..
        } => {
            let colour = if *is_error { "31" } else { "32" };
            writeln!(out, "{}", paint.paint(colour, &format!("  -> {output}")))
        }
        AgentEvent::ToolEnd { name, duration, .. } => writeln!(
            out,
            "{}",
            paint.paint("2", &format!("[tool {name} took {duration:?}]"))
        ),
        AgentEvent::Error { error, .. } => {
            // The whole chain: "model call failed" alone would not say why.
            let line = format!("[step failed: {}]", DisplayChain(&**error));
            writeln!(out, "\n{}", paint.paint("31", &line))
        }
        AgentEvent::ContextWrite { key, version, .. } => writeln!(
            out,
            "{}",
            paint.paint("2", &format!("[context: {key} v{version}]"))
        ),
        AgentEvent::StepComplete { result, .. } => {
            let line = format!("[step complete after {} model calls]", result.iterations);
            writeln!(out, "{}", paint.paint("1", &line))
        }
        other => writeln!(out, "{other:?}"),
    }
}
