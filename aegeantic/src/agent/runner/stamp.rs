//! Resilience items made step events, stamped with the step.

use std::sync::Arc;

use crate::agent::AgentEvent;
use crate::events::unix_now;
use crate::resilience::Resilient;

/// A data item, or a resilience event made a step event.
pub(super) enum Step<T> {
    Data(T),
    Event(AgentEvent),
}

/// Passes data items through; turns resilience events into step events, stamped with the
/// step.
pub(super) fn step_event<T>(step_id: &Arc<str>, item: Resilient<T>) -> Step<T> {
    let step_id = step_id.clone();
    let timestamp = unix_now();
    Step::Event(match item {
        Resilient::Item(item) => return Step::Data(item),
        Resilient::Retry(mut event) => {
            event.step_id = Some(step_id.clone());
            AgentEvent::Retry {
                step_id,
                timestamp,
                event,
            }
        }
        Resilient::RateLimit(mut event) => {
            event.step_id = Some(step_id.clone());
            AgentEvent::RateLimit {
                step_id,
                timestamp,
                event,
            }
        }
        Resilient::Circuit(mut event) => {
            event.step_id = Some(step_id.clone());
            AgentEvent::Circuit {
                step_id,
                timestamp,
                event,
            }
        }
    })
}

/// A resilience event that holds no data, for the step stream.
pub(super) fn event_only(
    step_id: &Arc<str>,
    item: Resilient<std::convert::Infallible>,
) -> AgentEvent {
    match step_event(step_id, item) {
        Step::Data(never) => match never {},
        Step::Event(event) => event,
    }
}
