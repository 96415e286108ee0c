//! Tokens-per-minute limiting of model calls, and quota corrections from response headers.
//!
//! A call's token cost is known only when its usage arrives, at the end. So each attempt
//! reserves a bound before it starts (the prompt estimate plus the answer's cap) and settles
//! at the reported usage: the unused part goes back to the bucket, use beyond the bound is
//! charged on top. An attempt that fails, or a call without usage, keeps its whole
//! reservation: servers count failed requests too.
//!
//! Some servers charge differently from what they report: OpenAI counts a request as
//! `max(max_tokens, prompt estimate)` when it arrives and refunds nothing. Its responses
//! carry `x-ratelimit-remaining-tokens`, which the next response's [`Quota`] applies to the
//! bucket, so a refund that was too generous lasts one call at most.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::{LlmChunk, LlmEventStream, LlmRequest, Quota};
use crate::events::RateLimitEvent;
use crate::resilience::{
    AttemptError, RateLimitError, RateLimiter, ResilienceError, Resilient, RetryConfig,
};

/// Characters per token of the prompt estimate: about right for English text with the
/// tokenizers of current models, and a bound that the settlement corrects either way.
const CHARS_PER_TOKEN: usize = 4;

/// A tokens-per-minute limiter and how to size reservations against it.
#[derive(Clone, Debug)]
pub(super) struct TokenBudget {
    pub(super) limiter: RateLimiter,
    /// Reserved for the answer when a request sets no `max_tokens`.
    pub(super) default_output: u32,
}

impl TokenBudget {
    /// The prompt estimate plus the answer's cap.
    pub(super) fn reservation(&self, request: &LlmRequest) -> u32 {
        let output = request.max_tokens.unwrap_or(self.default_output);
        estimate_prompt(request).saturating_add(output)
    }
}

/// The prompt's size in tokens, estimated from its characters (bytes of UTF-8, a quarter
/// of them, rounded up): message texts, tool calls, and the tools' names, descriptions and
/// schemas.
///
/// ```
/// use aegeantic::llm::{estimate_prompt, LlmRequest, Message};
///
/// let request = LlmRequest::new(vec![Message::user("Twelve chars")]);
/// assert_eq!(estimate_prompt(&request), 3);
/// ```
pub fn estimate_prompt(request: &LlmRequest) -> u32 {
    let messages: usize = request
        .messages
        .iter()
        .map(|message| {
            message.content.len()
                + message
                    .tool_calls
                    .iter()
                    .map(|call| call.name.len() + call.arguments.len())
                    .sum::<usize>()
        })
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|tool| tool.name.len() + tool.description.len() + tool.parameters.to_string().len())
        .sum();
    u32::try_from((messages + tools).div_ceil(CHARS_PER_TOKEN)).unwrap_or(u32::MAX)
}

/// Where a quota correction goes.
#[derive(Clone, Debug, Default)]
pub(super) struct Buckets {
    pub(super) requests: Option<RateLimiter>,
    pub(super) tokens: Option<TokenBudget>,
}

impl Buckets {
    /// Nothing to reserve from or correct.
    pub(super) fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Lowers each local bucket to what the server says is left. A failure here (Redis
    /// unreachable) only loses the correction; admission itself reports its own errors.
    async fn correct(&self, quota: &Quota) {
        let pairs = [
            (self.requests.as_ref(), quota.requests),
            (
                self.tokens.as_ref().map(|budget| &budget.limiter),
                quota.tokens,
            ),
        ];
        for (limiter, window) in pairs {
            if let (Some(limiter), Some(window)) = (limiter, window) {
                let remaining = u32::try_from(window.remaining).unwrap_or(u32::MAX);
                let _corrected = limiter.cap_available(remaining).await;
                #[cfg(feature = "tracing")]
                if let Err(error) = _corrected {
                    tracing::warn!(error = %crate::report::DisplayChain(&error), "rate limit: quota correction failed");
                }
            }
        }
    }
}

/// The calls that `open` makes under `retry`, with a token reservation before each
/// attempt, settled from the usage it reports, and every [`Quota`] applied to `buckets`.
///
/// The operation starts at the first poll, before the first reservation, so its
/// `max_elapsed` covers every reservation: one that would end past the deadline fails at
/// once with [`ResilienceError::DeadlineExceeded`], and the calls are opened with what is
/// left of the time.
pub(super) fn metered(
    open: impl FnOnce(Option<RetryConfig>) -> LlmEventStream + Send + 'static,
    retry: Option<RetryConfig>,
    buckets: Buckets,
    reserve: u32,
    name: Arc<str>,
) -> LlmEventStream {
    Box::pin(async_stream::stream! {
        let started = Instant::now();
        let max_elapsed = retry.as_ref().and_then(RetryConfig::max_elapsed);
        let deadline = max_elapsed.and_then(|max| started.checked_add(max));
        let mut open = Some(open);
        let mut calls = None;
        let token_name: Arc<str> = format!("{name}.tokens").into();
        let mut reservation = None;
        let mut usage = None;
        let mut attempt_starts = true;
        // Attempts that ran and failed.
        let mut failed = 0;
        loop {
            if attempt_starts {
                attempt_starts = false;
                if let Some(budget) = &buckets.tokens {
                    match budget.limiter.reserve_before(reserve, &token_name, deadline).await {
                        Ok(granted) => {
                            let event = RateLimitEvent::granted(token_name.clone(), granted.acquired());
                            reservation = Some(granted);
                            yield Ok(Resilient::RateLimit(event));
                        }
                        Err(error @ RateLimitError::PastDeadline { .. }) => {
                            yield Err(ResilienceError::DeadlineExceeded {
                                source: AttemptError::RateLimit(error),
                                attempts: failed,
                                elapsed: started.elapsed(),
                            });
                            return;
                        }
                        Err(error) => {
                            yield Err(ResilienceError::RateLimit(error));
                            return;
                        }
                    }
                }
            }
            if let Some(open) = open.take() {
                let retry = match (&retry, deadline) {
                    (Some(retry), Some(deadline)) => {
                        Some(retry.with_max_elapsed(deadline.saturating_duration_since(Instant::now())))
                    }
                    _ => retry.clone(),
                };
                calls = Some(open(retry));
            }
            let Some(calls) = calls.as_mut() else { break };
            let Some(item) = calls.next().await else { break };
            match &item {
                Ok(Resilient::Item(LlmChunk::Quota(quota))) => buckets.correct(quota).await,
                Ok(Resilient::Item(LlmChunk::Usage(reported))) => usage = Some(*reported),
                Ok(Resilient::Retry(_)) => {
                    // The failed attempt keeps its reservation; the next one needs its own.
                    reservation = None;
                    usage = None;
                    attempt_starts = true;
                    failed += 1;
                }
                Err(_) => {
                    yield item;
                    return;
                }
                Ok(_) => {}
            }
            yield item;
        }
        if let (Some(reservation), Some(usage)) = (reservation, usage) {
            // A refund that fails (Redis unreachable) leaves the tokens spent: stricter than
            // needed, never looser, and no reason to fail an answer that arrived whole.
            let _settled = reservation.settle(usage.prompt_tokens + usage.completion_tokens).await;
            #[cfg(feature = "tracing")]
            if let Err(error) = _settled {
                tracing::warn!(error = %crate::report::DisplayChain(&error), "rate limit: token refund failed");
            }
        }
    })
}
