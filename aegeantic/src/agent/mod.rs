//! A tool-calling agent loop whose step stream carries resilience events.
//!
//! | file            | concern                                                       |
//! |-----------------|---------------------------------------------------------------|
//! | `builder`       | [`Agent`] and [`AgentBuilder`]                                |
//! | `config`        | [`AgentConfig`], [`PromptBuilder`]                            |
//! | `context`       | the [`Context`] trait and its backends                        |
//! | `decision`      | [`ToolApproval`], [`ToolDecision`]: which calls may run       |
//! | `tool`          | the [`Tool`] trait, [`ToolPolicy`], [`ToolContext`], [`ToolError`] |
//! | `event`         | [`AgentEvent`] and [`AgentError`]                             |
//! | `patterns`      | tool calls and other segments in plain text: [`PatternSet`], [`Extractor`] |
//! | `result`        | [`StepResult`], [`ToolCallResult`]                            |
//! | `assemble`      | building whole tool calls from streamed deltas                |
//! | `macro_support` | what `#[tool]`'s generated code calls                         |
//! | `runner`        | [`AgentRunner`]: steps, model calls, tool rounds              |

mod assemble;
mod builder;
mod config;
mod context;
mod decision;
mod event;
#[cfg(feature = "macros")]
pub(crate) mod macro_support;
mod patterns;
mod result;
mod runner;
mod tool;

pub use builder::{Agent, AgentBuilder, NoProvider};
pub use config::{AgentConfig, PromptBuilder};
#[cfg(feature = "context-redb")]
pub use context::RedbContext;
pub use context::{Context, ContextEntry, ContextError, ContextValue, InMemoryContext};
pub use decision::{DecidedBy, ToolApproval, ToolDecision};
pub use event::{AgentError, AgentEvent, BoxError};
pub use patterns::{
    ExtractError, Extraction, Extractor, OutsideText, Pattern, PatternFormat, PatternSet,
    PatternSetError, SegmentEnd, SegmentEvent, SegmentKind, ToolCallError, DEFAULT_INPUT_CAP,
};
pub use result::{StepResult, ToolCallResult};
pub use runner::{AgentRunner, StepStream};
pub use tool::{tool_retry_on, Tool, ToolContext, ToolError, ToolFuture, ToolPolicy, WithPolicy};
