//! What a stream's events say about it, and how they are made.

use std::sync::Arc;
use std::time::Duration;

use crate::events::{unix_now, CircuitEvent, OperationType, RateLimitEvent, RetryEvent};
use crate::resilience::limiter::Acquired;
use crate::resilience::{TimeoutKind, Transition};

#[derive(Clone, Debug)]
pub(super) struct Labels {
    pub(super) operation_name: Arc<str>,
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
}

impl Labels {
    pub(super) fn retry(&self, retry: Retry) -> RetryEvent {
        let event = RetryEvent {
            operation_type: self.operation_type.clone(),
            operation_name: self.operation_name.clone(),
            attempt: retry.attempt,
            max_attempts: retry.max_attempts,
            error: retry.error,
            next_delay_seconds: retry.delay.as_secs_f64(),
            items_delivered: retry.items_delivered,
            timeout: retry.timeout,
            server_directed: retry.server_directed,
            step_id: self.step_id.clone(),
            timestamp: unix_now(),
        };
        #[cfg(feature = "tracing")]
        tracing::warn!(
            operation_name = &*event.operation_name,
            operation_type = %event.operation_type,
            attempt = event.attempt,
            max_attempts = event.max_attempts,
            next_delay_seconds = event.next_delay_seconds,
            items_delivered = event.items_delivered,
            server_directed = event.server_directed,
            error = %event.error,
            "retrying"
        );
        event
    }

    pub(super) fn rate_limit(&self, acquired: Acquired) -> RateLimitEvent {
        RateLimitEvent {
            step_id: self.step_id.clone(),
            ..RateLimitEvent::granted(self.operation_name.clone(), &acquired)
        }
    }

    pub(super) fn circuit(&self, transition: Transition) -> CircuitEvent {
        let event = CircuitEvent {
            operation_name: self.operation_name.clone(),
            from: transition.from,
            to: transition.to,
            failure_ratio: transition.failure_ratio,
            step_id: self.step_id.clone(),
            timestamp: unix_now(),
        };
        #[cfg(feature = "tracing")]
        tracing::warn!(
            operation_name = &*event.operation_name,
            from = ?event.from,
            to = ?event.to,
            failure_ratio = ?event.failure_ratio,
            "circuit breaker changed state"
        );
        event
    }
}
