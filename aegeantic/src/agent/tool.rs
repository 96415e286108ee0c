//! Tools the model can call.

use std::error::Error;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::events::{AsEventRef, EventRef};
use crate::resilience::{RateLimiter, Resilient, RetryConfig, RetryOn};

/// The future of one tool call.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send + 'a>>;

/// A function the model may call.
///
/// Object-safe, so an agent holds its tools as `Arc<dyn Tool>`; the call returns a boxed
/// future for the same reason.
///
/// The `#[tool("...")]` attribute (feature `macros`) implements it for an async function,
/// with the parameters' schema derived by `schemars` and the arguments parsed by `serde`.
/// By hand:
///
/// ```
/// use serde_json::{json, Value};
/// use aegeantic::agent::{Tool, ToolContext, ToolError, ToolFuture};
///
/// struct Add;
///
/// impl Tool for Add {
///     fn name(&self) -> &str { "add" }
///     fn description(&self) -> &str { "Adds two integers" }
///     fn parameters(&self) -> Value {
///         json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
///                "required": ["a", "b"]})
///     }
///     fn call(&self, args: Value, _ctx: ToolContext) -> ToolFuture<'_> {
///         Box::pin(async move {
///             let int = |key: &str| args[key].as_i64()
///                 .ok_or_else(|| ToolError::InvalidArguments(format!("{key} must be an integer")));
///             Ok(json!(int("a")? + int("b")?))
///         })
///     }
/// }
/// ```
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;

    /// What it does, for the model.
    fn description(&self) -> &str;

    /// A JSON schema of its arguments object.
    fn parameters(&self) -> Value;

    /// Runs the tool with the arguments the model gave. A returned string is passed to the
    /// model as is; any other value as JSON text.
    fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_>;

    /// Retry, rate limiting and timeout for calls to this tool. None by default.
    fn policy(&self) -> ToolPolicy {
        ToolPolicy::default()
    }
}

/// How the runner calls a tool: a timeout per attempt, retries, and a rate limiter.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ToolPolicy {
    /// Retries failed attempts; use [`tool_retry_on`] to retry transient [`ToolError`]s.
    pub retry: Option<RetryConfig>,
    /// Takes a token before every attempt.
    pub rate_limiter: Option<RateLimiter>,
    /// Fails an attempt that runs longer with [`ToolError::Timeout`].
    pub timeout: Option<Duration>,
}

impl ToolPolicy {
    /// Sets the retry config.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(config);
        self
    }

    /// Sets the rate limiter.
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// Sets the timeout per attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A tool with a policy set from outside, for tools that do not choose their own.
pub struct WithPolicy<T> {
    tool: T,
    policy: ToolPolicy,
}

impl<T: Tool> WithPolicy<T> {
    /// `tool`, called with `policy`.
    pub fn new(tool: T, policy: ToolPolicy) -> Self {
        WithPolicy { tool, policy }
    }
}

impl<T: Tool> Tool for WithPolicy<T> {
    fn name(&self) -> &str {
        self.tool.name()
    }

    fn description(&self) -> &str {
        self.tool.description()
    }

    fn parameters(&self) -> Value {
        self.tool.parameters()
    }

    fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_> {
        self.tool.call(args, ctx)
    }

    fn policy(&self) -> ToolPolicy {
        self.policy.clone()
    }
}

/// What a running tool knows about its call, and where it reports resilience events and
/// partial output.
///
/// A tool that wraps its own work in [`resilient`](crate::resilience::resilient) or
/// [`resilient_stream`](crate::resilience::resilient_stream) passes each event to
/// [`report`](ToolContext::report); the events appear in the agent's step stream while the
/// tool is still running. [`partial`](ToolContext::partial) does the same for output.
#[derive(Clone, Debug)]
pub struct ToolContext {
    step_id: Arc<str>,
    call_id: Arc<str>,
    events: Option<mpsc::UnboundedSender<ToolReport>>,
}

/// What a running tool reports to the step stream.
#[derive(Debug)]
pub(crate) enum ToolReport {
    /// A resilience event: a [`Resilient`] that holds no data.
    Event(Resilient<std::convert::Infallible>),
    /// Output before the result.
    Partial(Value),
}

impl ToolContext {
    pub(crate) fn new(
        step_id: Arc<str>,
        call_id: Arc<str>,
        events: mpsc::UnboundedSender<ToolReport>,
    ) -> Self {
        ToolContext {
            step_id,
            call_id,
            events: Some(events),
        }
    }

    /// A context whose reports go nowhere, for calling a tool outside an agent.
    pub fn detached(call_id: impl Into<Arc<str>>) -> Self {
        ToolContext {
            step_id: "detached".into(),
            call_id: call_id.into(),
            events: None,
        }
    }

    /// The agent step this call belongs to.
    pub fn step_id(&self) -> &str {
        &self.step_id
    }

    /// The model's id for this call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Forwards the resilience event in `item`, if it holds one, to the step stream.
    pub fn report<I: AsEventRef + ?Sized>(&self, item: &I) {
        let (Some(events), Some(event)) = (&self.events, item.as_event_ref()) else {
            return;
        };
        let event = match event {
            EventRef::Retry(event) => Resilient::Retry(event.clone()),
            EventRef::RateLimit(event) => Resilient::RateLimit(event.clone()),
            EventRef::Circuit(event) => Resilient::Circuit(event.clone()),
        };
        // The step stream is gone when the receiver is: nobody is left to tell.
        let _ = events.send(ToolReport::Event(event));
    }

    /// Shows `output` in the step stream now, as an
    /// [`AgentEvent::ToolOutput`](super::AgentEvent::ToolOutput) with `partial: true`,
    /// before the call's result. The model is sent only the result.
    ///
    /// ```
    /// use aegeantic::agent::{ToolContext, ToolError};
    /// use serde_json::json;
    ///
    /// async fn crawl(pages: u32, ctx: ToolContext) -> Result<u32, ToolError> {
    ///     for page in 1..=pages {
    ///         ctx.partial(json!({"crawled": page, "of": pages}));
    ///     }
    ///     Ok(pages)
    /// }
    /// ```
    pub fn partial(&self, output: impl Into<Value>) {
        if let Some(events) = &self.events {
            // As for `report`: a gone receiver means a gone step.
            let _ = events.send(ToolReport::Partial(output.into()));
        }
    }
}

/// Why a tool call failed. The model sees the message and may try again differently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments are not valid JSON or do not fit the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The model asked for a tool the agent does not have.
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    /// An attempt ran longer than the policy's timeout. Transient.
    #[error("timed out after {after:?}")]
    Timeout {
        /// The timeout.
        after: Duration,
        /// An [`io::ErrorKind::TimedOut`], so that `RetryOn::transient` retries it.
        #[source]
        source: io::Error,
    },
    /// The tool failed.
    #[error("{message}")]
    Failed {
        /// What went wrong, for the model.
        message: String,
        /// Whether another attempt may succeed.
        transient: bool,
    },
}

impl ToolError {
    /// A failure that another attempt would repeat.
    pub fn failed(message: impl Into<String>) -> Self {
        ToolError::Failed {
            message: message.into(),
            transient: false,
        }
    }

    /// A failure that another attempt may not repeat.
    pub fn transient(message: impl Into<String>) -> Self {
        ToolError::Failed {
            message: message.into(),
            transient: true,
        }
    }

    /// A timeout after `after`.
    pub fn timeout(after: Duration) -> Self {
        ToolError::Timeout {
            after,
            source: io::Error::new(io::ErrorKind::TimedOut, "tool timed out"),
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ToolError::Timeout { .. }
                | ToolError::Failed {
                    transient: true,
                    ..
                }
        )
    }
}

/// A [`RetryOn`] for tool policies: transient [`ToolError`]s anywhere in the chain, plus
/// what [`RetryOn::transient`] matches.
pub fn tool_retry_on() -> RetryOn {
    RetryOn::when(|error: &(dyn Error + 'static)| {
        error
            .downcast_ref::<ToolError>()
            .is_some_and(ToolError::is_transient)
    })
    .or(RetryOn::transient())
}
