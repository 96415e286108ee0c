//! Deciding whether a tool call the model made may run: the allow-list and the approval
//! hook.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::llm::ToolCall;

/// Whether a tool call may run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ToolDecision {
    /// Run it.
    Accept,
    /// Do not run it; the model is sent `reason` as the tool's result.
    Reject {
        /// Why, for the model.
        reason: String,
    },
}

impl ToolDecision {
    /// A rejection for `reason`.
    pub fn reject(reason: impl Into<String>) -> Self {
        ToolDecision::Reject {
            reason: reason.into(),
        }
    }

    /// Whether the call may run.
    pub fn is_accepted(&self) -> bool {
        matches!(self, ToolDecision::Accept)
    }
}

/// Who made a [`ToolDecision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum DecidedBy {
    /// [`AgentConfig::allowed_tools`](super::AgentConfig::allowed_tools) does not name the
    /// tool.
    AllowList,
    /// The approval hook answered.
    Hook,
    /// The approval hook did not answer in time; the configured answer applies.
    Timeout,
}

type Hook = dyn Fn(ToolCall) -> Pin<Box<dyn Future<Output = ToolDecision> + Send>> + Send + Sync;

/// An approval hook: asked about every tool call before it runs, under a timeout.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::agent::{AgentConfig, ToolApproval, ToolDecision};
///
/// let config = AgentConfig {
///     on_tool_detected: Some(
///         ToolApproval::new(|call| async move {
///             if call.name == "delete_everything" {
///                 ToolDecision::reject("not without a person's consent")
///             } else {
///                 ToolDecision::Accept
///             }
///         })
///         .timeout(Duration::from_secs(30))
///         .on_timeout(ToolDecision::reject("nobody approved the call in time")),
///     ),
///     ..AgentConfig::default()
/// };
/// ```
#[derive(Clone)]
pub struct ToolApproval {
    hook: Arc<Hook>,
    timeout: Duration,
    on_timeout: ToolDecision,
}

impl fmt::Debug for ToolApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolApproval")
            .field("timeout", &self.timeout)
            .field("on_timeout", &self.on_timeout)
            .finish_non_exhaustive()
    }
}

impl ToolApproval {
    /// Asks `hook` about each call (with the call's name, id and arguments as the model
    /// wrote them). Unless set otherwise, a hook that has not answered after 60 seconds
    /// rejects the call: "no approval within 60s".
    pub fn new<F, Fut>(hook: F) -> Self
    where
        F: Fn(ToolCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ToolDecision> + Send + 'static,
    {
        let timeout = Duration::from_secs(60);
        ToolApproval {
            hook: Arc::new(move |call| Box::pin(hook(call))),
            timeout,
            on_timeout: ToolDecision::reject(format!("no approval within {timeout:?}")),
        }
    }

    /// How long the hook may take; [`Duration::MAX`] waits for ever.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The answer when the hook takes longer than the timeout.
    #[must_use]
    pub fn on_timeout(mut self, decision: ToolDecision) -> Self {
        self.on_timeout = decision;
        self
    }

    pub(crate) async fn decide(&self, call: &ToolCall) -> (ToolDecision, DecidedBy) {
        match tokio::time::timeout(self.timeout, (self.hook)(call.clone())).await {
            Ok(decision) => (decision, DecidedBy::Hook),
            Err(_) => (self.on_timeout.clone(), DecidedBy::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: "wipe".into(),
            arguments: "{}".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_answer_applies_when_the_hook_is_late() {
        let slow = |after: Duration| {
            ToolApproval::new(move |_| async move {
                tokio::time::sleep(after).await;
                ToolDecision::Accept
            })
        };
        let late = slow(Duration::from_secs(61)).decide(&call()).await;
        assert_eq!(
            late,
            (
                ToolDecision::reject("no approval within 60s"),
                DecidedBy::Timeout
            )
        );
        let in_time = slow(Duration::from_secs(59)).decide(&call()).await;
        assert_eq!(in_time, (ToolDecision::Accept, DecidedBy::Hook));
        let started = tokio::time::Instant::now();
        let answer = slow(Duration::from_secs(3))
            .timeout(Duration::from_secs(1))
            .on_timeout(ToolDecision::Accept)
            .decide(&call())
            .await;
        assert_eq!(answer, (ToolDecision::Accept, DecidedBy::Timeout));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_too_far_to_reach_waits_for_the_hook() {
        let approval = ToolApproval::new(|_| async {
            tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
            ToolDecision::reject("a year later")
        })
        .timeout(Duration::MAX);
        assert_eq!(
            approval.decide(&call()).await,
            (ToolDecision::reject("a year later"), DecidedBy::Hook)
        );
    }
}
