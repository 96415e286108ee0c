//! One soak stream: a resilient stream over the provider, read by a consumer that may drop
//! it mid-way, checked against what the server sent on its successful attempt.

use std::sync::Arc;
use std::time::Duration;

use aegeantic::llm::{LlmChunk, LlmProvider, LlmRequest, Message, OpenAiCompatible};
use aegeantic::report::DisplayChain;
use aegeantic::resilience::{
    resilient_stream, CircuitBreaker, RateLimiter, Resilient, RetryConfig,
};
use aegeantic::testing::{FaultServer, RandomFault};
use futures::StreamExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use tokio::time::Instant;

use super::admissions::Admissions;
use super::tally::Tally;

/// What every stream of a phase shares.
pub struct Shared {
    pub provider: Arc<OpenAiCompatible>,
    pub limiter: RateLimiter,
    pub breaker: CircuitBreaker,
    pub retry: RetryConfig,
    pub server: Arc<FaultServer>,
    pub tally: Arc<Tally>,
    pub admissions: Arc<Admissions>,
    pub deadline: Duration,
    pub grace: Duration,
    pub drop_fraction: f64,
}

/// Runs the stream `key` to its end, or to the consumer's drop.
pub async fn one(shared: &Shared, key: String, rng: &mut Xoshiro256PlusPlus) {
    let tally = &shared.tally;
    Tally::add(&tally.started);
    let request = LlmRequest::new(vec![Message::user(key.clone())]);
    let provider = Arc::clone(&shared.provider);
    let open = move || provider.stream(&request);
    let stream = resilient_stream(
        open,
        Some(shared.retry.clone()),
        Some(shared.limiter.clone()),
        "soak",
        "llm",
    )
    .with_circuit_breaker(shared.breaker.clone());
    let drop_after = rng
        .random_bool(shared.drop_fraction)
        .then(|| rng.random_range(1..=3usize));
    let started = Instant::now();
    // The current attempt's items, text or not; a retry discards the failed attempt's.
    let mut items: Vec<Option<String>> = Vec::new();
    let read = async {
        let mut stream = std::pin::pin!(stream);
        let mut texts = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(Resilient::Item(chunk)) => {
                    if let LlmChunk::Text(text) = chunk {
                        Tally::add(&tally.items);
                        texts += 1;
                        items.push(Some(text));
                        if drop_after.is_some_and(|after| texts >= after) {
                            return End::Dropped;
                        }
                    } else {
                        items.push(None);
                    }
                }
                Ok(Resilient::Retry(event)) => {
                    tally.retry(&event);
                    let delivered = usize::try_from(event.items_delivered).unwrap_or(usize::MAX);
                    items.truncate(items.len().saturating_sub(delivered));
                }
                Ok(Resilient::RateLimit(event)) => {
                    shared
                        .admissions
                        .record(event.acquired_at, event.fallback.is_some());
                    if !event.waited.is_zero() {
                        Tally::add(&tally.waits);
                        let micros = u64::try_from(event.waited.as_micros()).unwrap_or(u64::MAX);
                        tally
                            .wait_micros
                            .fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
                    }
                    if event.fallback.is_some() {
                        Tally::add(&tally.fallbacks);
                    }
                }
                Ok(Resilient::Circuit(_)) => Tally::add(&tally.circuit_events),
                Ok(_) => {}
                Err(error) => return End::Failed(error_kind(&DisplayChain(&error).to_string())),
            }
        }
        End::Completed
    };
    let end = tokio::time::timeout(shared.deadline + shared.grace * 2, read).await;
    let took = started.elapsed();
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    tally
        .slowest_micros
        .fetch_max(micros, std::sync::atomic::Ordering::Relaxed);
    if took > shared.deadline + shared.grace {
        Tally::add(&tally.overdue);
        tally.sample(format!(
            "{key} took {took:?}, past its deadline {:?}",
            shared.deadline
        ));
    }
    let served = shared.server.take_served(&key);
    match end {
        Err(_) => {
            Tally::add(&tally.hung);
            tally.sample(format!("{key} hung"));
        }
        Ok(End::Dropped) => Tally::add(&tally.dropped),
        Ok(End::Failed(kind)) => {
            Tally::add(&tally.failed);
            tally.error(kind);
        }
        Ok(End::Completed) => {
            Tally::add(&tally.completed);
            let got: String = items.into_iter().flatten().collect();
            let sent = served.last().filter(|s| s.fault == RandomFault::Complete);
            match sent {
                Some(sent) if checksum(&sent.text) == checksum(&got) => {}
                _ => {
                    Tally::add(&tally.mismatched);
                    tally.sample(format!(
                        "{key}: delivered {got:?}, the server's last answer was {:?}",
                        served.last()
                    ));
                }
            }
        }
    }
}

enum End {
    Completed,
    Dropped,
    Failed(String),
}

/// A stream's error, as a short kind for the summary: the chain's first layer and the
/// innermost cause's first words, with every word that holds a number (a count, a
/// duration) shown as `N`, so that the summary's map has one entry per kind, not per
/// stream.
fn error_kind(chain: &str) -> String {
    let words = |text: &str, take: usize| {
        text.split_whitespace()
            .take(take)
            .map(|word| {
                if word.bytes().any(|b| b.is_ascii_digit()) {
                    "N"
                } else {
                    word
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let outer = chain.split(':').next().unwrap_or(chain);
    let inner = chain.rsplit(": ").next().unwrap_or(chain);
    format!("{} / {}", words(outer, usize::MAX), words(inner, 4))
}

/// FNV-1a, 64 bits.
fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::error_kind;

    #[test]
    fn errors_that_differ_only_in_their_numbers_are_one_kind() {
        let one = error_kind(
            "deadline exceeded after 8 attempts in 86.358587525s: waiting 9.861598923s for tokens",
        );
        let other = error_kind(
            "deadline exceeded after 9 attempts in 89.997193167s: waiting 9.83283637s for tokens",
        );
        assert_eq!(one, other);
        assert_eq!(
            one,
            "deadline exceeded after N attempts in N / waiting N for tokens"
        );
    }
}
