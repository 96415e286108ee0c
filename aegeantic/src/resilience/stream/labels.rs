//! What a stream's events say about it, and how they are made.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{unix_now, CircuitEvent, OperationType, RateLimitEvent, RetryEvent};
use crate::resilience::limiter::Acquired;
use crate::resilience::{Fallback, TimeoutKind, Transition};

/// The name a stream's events give its operation.
///
/// A string literal is kept as it is: most streams emit no event, and those that do share
/// one copy of the name among all their events. Anything else is shared from the start.
#[derive(Clone)]
pub struct OperationName(Name);

#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl OperationName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }

    /// The name as a metrics label value, copied only if it is not a literal.
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_label(&self) -> metrics::SharedString {
        match &self.0 {
            Name::Static(name) => metrics::SharedString::const_str(name),
            Name::Shared(name) => name.clone().into(),
        }
    }

    /// The name as events carry it, made now.
    pub(super) fn into_shared(self) -> Self {
        match self.0 {
            Name::Static(name) => OperationName(Name::Shared(name.into())),
            shared => OperationName(shared),
        }
    }

    /// The name as events carry it, made on the first event and kept for the others.
    fn shared(&mut self) -> Arc<str> {
        match &self.0 {
            Name::Static(name) => {
                let shared: Arc<str> = Arc::from(*name);
                self.0 = Name::Shared(shared.clone());
                shared
            }
            Name::Shared(name) => name.clone(),
        }
    }
}

impl From<&'static str> for OperationName {
    fn from(name: &'static str) -> Self {
        OperationName(Name::Static(name))
    }
}

impl From<Arc<str>> for OperationName {
    fn from(name: Arc<str>) -> Self {
        OperationName(Name::Shared(name))
    }
}

impl From<&Arc<str>> for OperationName {
    fn from(name: &Arc<str>) -> Self {
        OperationName(Name::Shared(name.clone()))
    }
}

impl From<String> for OperationName {
    fn from(name: String) -> Self {
        OperationName(Name::Shared(name.into()))
    }
}

impl From<Box<str>> for OperationName {
    fn from(name: Box<str>) -> Self {
        OperationName(Name::Shared(name.into()))
    }
}

impl From<Cow<'static, str>> for OperationName {
    fn from(name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(name) => name.into(),
            Cow::Owned(name) => name.into(),
        }
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Labels {
    pub(super) operation_name: OperationName,
    pub(super) operation_type: OperationType,
    pub(super) step_id: Option<Arc<str>>,
}

/// The facts of one retry, for its event.
pub(super) struct Retry {
    pub(super) attempt: u32,
    pub(super) max_attempts: u32,
    pub(super) error: String,
    pub(super) delay: Duration,
    pub(super) items_delivered: u64,
    pub(super) timeout: Option<TimeoutKind>,
    pub(super) server_directed: bool,
    pub(super) budget_fallback: Option<Fallback>,
}

impl Labels {
    /// The operation's metrics labels.
    #[cfg(feature = "metrics")]
    pub(super) fn metrics(&self) -> crate::observe::metrics::Operation {
        crate::observe::metrics::Operation {
            name: self.operation_name.metrics_label(),
            kind: self.operation_type.metrics_label(),
        }
    }

    pub(super) fn retry(&mut self, retry: Retry) -> RetryEvent {
        let event = RetryEvent {
            operation_type: self.operation_type.clone(),
            operation_name: self.operation_name.shared(),
            attempt: retry.attempt,
            max_attempts: retry.max_attempts,
            error: retry.error,
            next_delay_seconds: retry.delay.as_secs_f64(),
            items_delivered: retry.items_delivered,
            timeout: retry.timeout,
            server_directed: retry.server_directed,
            budget_fallback: retry.budget_fallback,
            step_id: self.step_id.clone(),
            timestamp: unix_now(),
        };
        event.record();
        event
    }

    pub(super) fn rate_limit(&mut self, acquired: Acquired) -> RateLimitEvent {
        RateLimitEvent {
            step_id: self.step_id.clone(),
            ..RateLimitEvent::granted(self.operation_name.shared(), &acquired)
        }
    }

    pub(super) fn circuit(&mut self, transition: Transition) -> CircuitEvent {
        let event = CircuitEvent {
            operation_name: self.operation_name.shared(),
            from: transition.from,
            to: transition.to,
            failure_ratio: transition.failure_ratio,
            fallback: transition.fallback,
            step_id: self.step_id.clone(),
            timestamp: unix_now(),
        };
        #[cfg(feature = "tracing")]
        tracing::warn!(
            operation_name = &*event.operation_name,
            from = ?event.from,
            to = ?event.to,
            failure_ratio = ?event.failure_ratio,
            fallback = ?event.fallback,
            "circuit breaker changed state"
        );
        #[cfg(feature = "metrics")]
        crate::observe::metrics::circuit(
            event.operation_name.clone().into(),
            event.from.label(),
            (event.to.label(), event.to.gauge()),
        );
        event
    }
}
