//! An agent on a model without function calling: the model writes its tool calls in tagged
//! text, streamed in small pieces that split the tags; the agent finds them as they stream,
//! runs the tool, and sends the result back in the same style. Offline: the model is the
//! in-process fault server, scripted to answer in tagged text.
//!
//! `cargo run --example agent_patterns --features demo`

use std::sync::Arc;
use std::time::Duration;

use aegeantic::agent::{
    Agent, AgentConfig, AgentEvent, AgentRunner, PatternSet, SegmentKind, Tool, ToolError,
};
use aegeantic::llm::{OpenAiCompatible, OpenAiConfig};
use aegeantic::report::Report;
use aegeantic::testing::{FaultServer, Reply};
use aegeantic::tool;
use futures::StreamExt;

#[tool("Converts degrees Celsius to Fahrenheit")]
async fn to_fahrenheit(celsius: f64) -> Result<f64, ToolError> {
    Ok(celsius * 9.0 / 5.0 + 32.0)
}

#[tokio::main]
async fn main() -> Result<(), Report> {
    let gap = Duration::from_millis(15);
    // How a Qwen- or Hermes-style model answers, cut as a server streams it.
    let model = FaultServer::start([
        Reply::text(
            &[
                "<think>The user wants °F; ",
                "I have a tool.</th",
                "ink>Let me convert. <tool_",
                "call>{\"name\": \"to_fahren",
                "heit\", \"arguments\": {\"celsius\": 21}}</tool_ca",
                "ll>",
            ],
            gap,
        ),
        Reply::text(&["21 °C is ", "69.8 °F."], gap),
    ])
    .await?;
    let provider = OpenAiCompatible::new(OpenAiConfig::new(model.base_url(), "no-tools-model"))?;
    let tools: Vec<Arc<dyn Tool>> = vec![Arc::new(ToFahrenheit)];
    let agent = Agent::builder()
        .config(AgentConfig {
            system_prompt: Some("You answer briefly.".into()),
            ..AgentConfig::default()
        })
        .patterns(PatternSet::xml_tags())
        .tools(tools)
        .llm_provider(provider)
        .build();
    let mut runner = AgentRunner::new(agent);
    let mut events = runner.step_stream("What is 21 °C in Fahrenheit?");
    while let Some(event) = events.next().await {
        match event {
            AgentEvent::PatternStart { kind, .. } => print!("[{kind:?} "),
            AgentEvent::PatternContent {
                kind: SegmentKind::Reasoning,
                text,
                ..
            } => print!("{text}"),
            AgentEvent::PatternEnd { call, .. } => match call {
                Some(Ok(call)) => println!("{}({})]", call.name, call.arguments),
                Some(Err(error)) => println!("malformed: {error}]"),
                None => println!("]"),
            },
            AgentEvent::ToolOutput { name, output, .. } => println!("[{name} -> {output}]"),
            AgentEvent::StepComplete { result, .. } => {
                println!("step complete: {}", result.response);
            }
            AgentEvent::Error { error, .. } => return Err(Report::from(error)),
            _ => {}
        }
    }
    drop(events);
    let results = &runner.history()[runner.history().len() - 2];
    println!("sent back to the model: {}", results.content);
    Ok(())
}
