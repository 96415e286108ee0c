//! What a server says about its rate limits, read from its response headers.
//!
//! Providers put a [`Quota`] at the head of a successful stream as [`LlmChunk::Quota`]
//! (`super::LlmChunk`). [`ResilientProvider`](super::ResilientProvider) lowers its local
//! buckets to it, so that a quota shared with other clients is respected before the first
//! 429 rather than after it.

use std::time::Duration;

/// The server's view of one limit at the moment it answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QuotaWindow {
    /// The limit itself (OpenAI's `x-ratelimit-limit-*`, Anthropic's
    /// `anthropic-ratelimit-*-limit`), when sent.
    pub limit: Option<u64>,
    /// What is left of it (`…-remaining…`).
    pub remaining: u64,
    /// How long until the limit is whole again (`…-reset…`, a duration or an instant made
    /// relative to when the response arrived), when sent.
    pub reset: Option<Duration>,
}

/// The server's rate-limit headers of one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Quota {
    /// Requests.
    pub requests: Option<QuotaWindow>,
    /// Tokens (for providers that count input and output apart, the binding of the two).
    pub tokens: Option<QuotaWindow>,
}

impl Quota {
    /// A quota with these windows.
    pub fn new(requests: Option<QuotaWindow>, tokens: Option<QuotaWindow>) -> Self {
        Quota { requests, tokens }
    }

    /// True when the response carried none of the headers.
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }
}

/// The `x-ratelimit-*` headers of a response, as OpenAI names them (and many APIs that
/// copy it): `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`. Shared by the OpenAI
/// provider and the tower layer, which caps its bucket to the remaining count.
#[cfg(any(feature = "openai", feature = "tower"))]
pub(crate) fn x_ratelimit(headers: &http::HeaderMap) -> Quota {
    use crate::resilience::http::header;
    let window = |kind: &str| {
        let number = |name: &str| {
            header(headers, &format!("x-ratelimit-{name}-{kind}"))?
                .parse()
                .ok()
        };
        Some(QuotaWindow {
            limit: number("limit"),
            remaining: number("remaining")?,
            reset: header(headers, &format!("x-ratelimit-reset-{kind}")).and_then(parse_reset),
        })
    };
    Quota::new(window("requests"), window("tokens"))
}

/// Parses a duration the way OpenAI writes its reset headers: Go's notation, a sequence of
/// decimal numbers with units `h`, `m`, `s`, `ms`, `us` or `ns` (`6m0s`, `1.5s`, `250ms`). A
/// bare number counts as seconds.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::llm::parse_reset;
///
/// assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_reset("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_reset("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
/// assert_eq!(parse_reset("soon"), None);
/// ```
pub fn parse_reset(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let mut rest = text;
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let value: f64 = rest[..number_end].parse().ok()?;
        let unit_text = &rest[number_end..];
        let unit_end = unit_text
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(unit_text.len());
        let seconds_per_unit = match &unit_text[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds_per_unit;
        rest = &unit_text[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}
