//! A tool-calling agent loop whose step stream carries resilience events.
//!
//! | file       | concern                                                        |
//! |------------|----------------------------------------------------------------|
//! | `tool`     | the [`Tool`] trait, [`ToolPolicy`], [`ToolContext`], [`ToolError`] |
//! | `event`    | [`AgentEvent`] and [`AgentError`]                               |
//! | `assemble` | building whole tool calls from streamed deltas                 |
//! | `macro_support` | what `#[tool]`'s generated code calls                  |
//! | `patterns` | tool calls and other segments in plain text: [`PatternSet`], [`Extractor`] |
//! | `runner`   | [`Agent`], [`AgentConfig`] and [`AgentRunner`]                  |

mod assemble;
mod event;
#[cfg(feature = "macros")]
pub(crate) mod macro_support;
mod patterns;
mod runner;
mod tool;

pub use event::{AgentError, AgentEvent};
pub use patterns::{
    ExtractError, Extraction, Extractor, OutsideText, Pattern, PatternFormat, PatternSet,
    PatternSetError, SegmentEnd, SegmentEvent, SegmentKind, ToolCallError, DEFAULT_INPUT_CAP,
};
pub use runner::{Agent, AgentConfig, AgentRunner, StepStream};
pub use tool::{tool_retry_on, Tool, ToolContext, ToolError, ToolFuture, ToolPolicy, WithPolicy};
