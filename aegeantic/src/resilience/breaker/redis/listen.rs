//! Hears the transitions of the fleet's breaker, and the failures added to its window, as
//! the script publishes them, so that an opening reaches every process within a hop
//! rather than with its next call of the script.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use futures_core::Stream;
use redis::{Client, RedisError};

use super::FleetBreaker;

/// Subscribes to `channel` on one of `clients` and hands each message to the breaker;
/// `retry` after the connection is lost, or a subscription fails or takes longer than
/// `timeout`, subscribes again on the next client. Aborted when the breaker goes.
pub(super) async fn listen(
    breaker: Weak<FleetBreaker>,
    (clients, channel): (Vec<Client>, String),
    (timeout, retry): (Duration, Duration),
) {
    for client in clients.iter().cycle() {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        if let Ok(Ok(mut messages)) = tokio::time::timeout(timeout, subscribe).await {
            match breaker.upgrade() {
                Some(breaker) => breaker.resync(),
                None => return,
            }
            while let Some(message) = poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await {
                let Some(breaker) = breaker.upgrade() else {
                    return;
                };
                if let Ok(text) = message.get_payload::<String>() {
                    breaker.hear(&text);
                }
            }
        }
        tokio::time::sleep(retry).await;
    }
}
