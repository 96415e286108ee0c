//! Provider-neutral request and response types.

use serde_json::Value;

use super::Quota;

/// Who wrote a [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call the model asked for.
    Tool,
}

impl Role {
    /// The role's wire name, as OpenAI-compatible APIs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A complete tool call the model made: the assembled form of [`ToolCallDelta`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ToolCall {
    /// The provider's id for the call; the tool's result refers to it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them: JSON text that may be invalid.
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text; may be empty for an assistant message that only calls tools.
    pub content: String,
    /// Tool calls made by an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message, the id of the call it answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message with text and the tool calls it made.
    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Message {
            tool_calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    /// The result of the tool call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// A JSON schema of its arguments object.
    pub parameters: Value,
}

/// What to ask a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call; empty for none.
    pub tools: Vec<ToolSpec>,
    /// A cap on the tokens generated.
    pub max_tokens: Option<u32>,
    /// A model that overrides the provider's configured one.
    pub model: Option<String>,
}

impl LlmRequest {
    /// A request with these messages and nothing else set.
    pub fn new(messages: Vec<Message>) -> Self {
        LlmRequest {
            messages,
            ..LlmRequest::default()
        }
    }
}

/// A fragment of a tool call, as it streams.
///
/// Fragments with the same `index` belong to one call: `id` and `name` usually come with
/// the first, and the `arguments` fragments are concatenated in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ToolCallDelta {
    /// Which of the response's tool calls this belongs to.
    pub index: u32,
    /// The call's id, when this fragment carries it.
    pub id: Option<String>,
    /// The tool's name, when this fragment carries it.
    pub name: Option<String>,
    /// The next piece of the arguments' JSON text.
    pub arguments: String,
}

/// Token counts for one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum FinishReason {
    /// A natural end, or a stop sequence.
    Stop,
    /// The token cap was reached.
    Length,
    /// The model wants its tool calls run.
    ToolCalls,
    /// Output was withheld by a content filter.
    ContentFilter,
    /// A reason this crate does not know, as the provider spelled it.
    Other(String),
}

impl FinishReason {
    /// Parses a provider's finish reason; unknown values are kept.
    pub fn parse(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

/// One typed piece of a streamed response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum LlmChunk {
    /// More response text.
    Text(String),
    /// A fragment of a tool call.
    ToolCall(ToolCallDelta),
    /// Token counts, usually just before the end.
    Usage(Usage),
    /// The model finished, for this reason.
    Finish(FinishReason),
    /// The server's rate-limit headers, first in a stream whose response carried them.
    Quota(Quota),
}

impl LlmChunk {
    /// The text of a [`LlmChunk::Text`]; `None` for any other chunk.
    pub fn text(&self) -> Option<&str> {
        match self {
            LlmChunk::Text(text) => Some(text),
            _ => None,
        }
    }
}
