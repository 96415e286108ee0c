//! Language-model providers behind one streaming interface.
//!
//! | file         | concern                                                         |
//! |--------------|-----------------------------------------------------------------|
//! | `types`      | requests, messages, tool specs and the typed [`LlmChunk`]        |
//! | `error`      | [`LlmError`]                                                     |
//! | `classify`   | which errors are transient: [`classify`], [`llm_retry_on`]       |
//! | `provider`   | the [`LlmProvider`] trait and the [`GenerateAdapter`]            |
//! | `quota`      | the server's rate-limit headers: [`Quota`]                       |
//! | `resilient`  | [`ResilientProvider`]: retry and rate limiting with events       |
//! | `measured`   | the GenAI metrics of a call (feature `metrics`)                  |
//! | `tokens`     | tokens-per-minute reservations and quota corrections            |
//! | `sse`        | a small server-sent-events parser                               |
//! | `http_util`  | what the HTTP providers share: [`ApiKey`], timeouts, retry-after, |
//! |              | the streamed exchange                                            |
//! | `openai`     | [`OpenAiCompatible`] (feature `openai`)                          |
//! | `anthropic`  | [`Anthropic`], the Messages API (feature `anthropic`)            |

mod classify;
mod error;
#[cfg(feature = "metrics")]
mod measured;
mod provider;
mod quota;
mod resilient;
pub mod sse;
mod tokens;
mod types;

#[cfg(feature = "anthropic")]
mod anthropic;
#[cfg(all(test, feature = "openai", feature = "anthropic"))]
mod hostile_headers;
#[cfg(any(feature = "openai", feature = "anthropic"))]
mod http_util;
#[cfg(feature = "openai")]
mod openai;

pub use classify::{classify, classify_status, llm_retry_on};
pub use error::LlmError;
pub use provider::{GenerateAdapter, LlmEventStream, LlmProvider, LlmStream};
#[cfg(any(feature = "openai", feature = "tower"))]
pub(crate) use quota::x_ratelimit;
pub use quota::{parse_reset, Quota, QuotaWindow};
pub use resilient::ResilientProvider;
pub use tokens::estimate_prompt;
pub use types::{
    FinishReason, LlmChunk, LlmRequest, Message, Role, ToolCall, ToolCallDelta, ToolSpec, Usage,
};

#[cfg(feature = "anthropic")]
pub use anthropic::{Anthropic, AnthropicConfig};
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub use http_util::ApiKey;
#[cfg(feature = "openai")]
pub use openai::{OpenAiCompatible, OpenAiConfig};
