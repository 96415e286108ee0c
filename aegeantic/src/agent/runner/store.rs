//! The agent's context, called from tokio's blocking threads, and the writes the runner
//! makes to it.

use std::sync::Arc;

use crate::agent::context::{Context, ContextError, ContextValue};
use crate::agent::AgentEvent;
use crate::events::unix_now;

/// Runs `call` on the context from a blocking thread, since a backend may block on I/O.
pub(super) async fn on_store<T, F>(context: &Arc<dyn Context>, call: F) -> Result<T, ContextError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Context) -> Result<T, ContextError> + Send + 'static,
{
    let context = Arc::clone(context);
    tokio::task::spawn_blocking(move || call(&*context))
        .await
        .map_err(ContextError::Interrupted)?
}

/// Sets `key` to `value` and describes the write as a step event.
pub(super) async fn write(
    context: &Arc<dyn Context>,
    step_id: &Arc<str>,
    iteration: u64,
    key: String,
    value: ContextValue,
) -> Result<AgentEvent, ContextError> {
    let preview: String = value.to_text().chars().take(200).collect();
    let version = {
        let key = key.clone();
        on_store(context, move |context| context.set(&key, value)).await?
    };
    Ok(AgentEvent::ContextWrite {
        step_id: step_id.clone(),
        timestamp: unix_now(),
        key,
        version,
        iteration,
        preview,
    })
}
