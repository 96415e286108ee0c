//! Which model errors are worth another attempt.
//!
//! The rules follow the official OpenAI and Anthropic SDKs: timeouts, connection errors,
//! 408, 409, 429 and 5xx are transient; other 4xx are not; `x-should-retry` overrides the
//! status; two kinds of 429 can never succeed by waiting. Errors whose type says the
//! request itself is at fault (`invalid_request_error`, `authentication_error`,
//! `permission_error`, `not_found_error`, `insufficient_quota`) are never transient,
//! whatever their status, code or `x-should-retry` header. A `Retry-After`
//! becomes [`RetryDecision::RetryAfter`], which the retry layer honours.

use super::LlmError;
use crate::resilience::{Classify, RetryDecision, RetryOn};

/// Classifies a model error: retry, retry after the server's delay, or never.
///
/// ```
/// use aegeantic::llm::{classify, LlmError};
/// use aegeantic::resilience::RetryDecision;
///
/// assert_eq!(classify(&LlmError::truncated()), RetryDecision::Retry);
/// assert_eq!(classify(&LlmError::Protocol("bad JSON".into())), RetryDecision::DoNotRetry);
/// ```
pub fn classify(error: &LlmError) -> RetryDecision {
    let retry = RetryDecision::Retry;
    match error {
        LlmError::Api {
            status,
            code,
            kind,
            message,
            should_retry,
            server_delay,
            ..
        } => {
            let labels = [code.as_deref(), kind.as_deref()];
            if !classify_status(*status, &labels, message, *should_retry) {
                RetryDecision::DoNotRetry
            } else if let Some(delay) = server_delay {
                RetryDecision::RetryAfter(*delay)
            } else {
                RetryDecision::Retry
            }
        }
        LlmError::Connection(_) | LlmError::Idle(..) | LlmError::Truncated(_) => retry,
        LlmError::Other {
            transient: true, ..
        } => retry,
        LlmError::Protocol(_)
        | LlmError::Config(_)
        | LlmError::InvalidBaseUrl { .. }
        | LlmError::RateLimit(_)
        | LlmError::Other { .. } => RetryDecision::DoNotRetry,
    }
}

impl Classify for LlmError {
    fn classify(&self) -> Option<RetryDecision> {
        Some(classify(self))
    }
}

/// Error types and codes that say the request itself is at fault: sending it again cannot
/// succeed, whatever status came with them.
const PERMANENT: [&str; 5] = [
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "insufficient_quota",
];

/// Whether an error answer is transient, from its status (or `None` for an in-stream error
/// of unknown status), the provider's labels for it (its code and its type), its message
/// and its `x-should-retry` header.
///
/// ```
/// use aegeantic::llm::classify_status;
///
/// assert!(classify_status(Some(503), &[Some("server_error")], "", None));
/// // An invalid request stays invalid, even when a proxy sends it with a 5xx code.
/// assert!(!classify_status(Some(500), &[Some("500"), Some("invalid_request_error")], "", None));
/// ```
pub fn classify_status(
    status: Option<u16>,
    labels: &[Option<&str>],
    message: &str,
    should_retry: Option<bool>,
) -> bool {
    let labelled = |label: &str| labels.contains(&Some(label));
    // A request at fault stays at fault, waiting never buys quota, and a request over the
    // whole per-minute token budget is refused however long we wait: all of these win over
    // the status and the header.
    if PERMANENT.iter().any(|label| labelled(label))
        || (message.contains("Request too large") && message.contains("tokens per min"))
    {
        return false;
    }
    if let Some(should_retry) = should_retry {
        return should_retry;
    }
    match status {
        Some(408 | 409 | 429) => true,
        Some(status) => status >= 500,
        // An error event of unknown kind inside a stream that started fine is a failure on
        // the server's side.
        None => true,
    }
}

/// A [`RetryOn`] that decides [`LlmError`]s with [`classify`] (honouring the server's
/// `Retry-After`), wherever they are in the error's source chain, plus whatever
/// [`RetryOn::transient`] matches.
///
/// ```
/// use aegeantic::llm::{llm_retry_on, LlmError};
///
/// let retry_on = llm_retry_on();
/// let overloaded = LlmError::Api {
///     status: Some(503), code: None, kind: None, message: "overloaded".into(),
///     should_retry: None, server_delay: None, in_stream: false,
/// };
/// assert!(retry_on.matches(&overloaded));
/// assert!(!retry_on.matches(&LlmError::Config("no model".into())));
/// ```
pub fn llm_retry_on() -> RetryOn {
    RetryOn::classified::<LlmError>().or(RetryOn::transient())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn api(status: u16, code: Option<&str>, message: &str, should: Option<bool>) -> LlmError {
        LlmError::Api {
            status: Some(status),
            code: code.map(str::to_owned),
            kind: None,
            message: message.to_owned(),
            should_retry: should,
            server_delay: Some(Duration::from_millis(5)),
            in_stream: false,
        }
    }

    #[test]
    fn statuses() {
        for status in [408, 409, 429, 500, 502, 503, 529] {
            assert!(api(status, None, "", None).is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!api(status, None, "", None).is_transient(), "{status}");
        }
    }

    #[test]
    fn permanent_429s_and_the_header() {
        assert!(!api(429, Some("insufficient_quota"), "quota", None).is_transient());
        let too_large = "Request too large for gpt-4 on tokens per min (TPM): Limit 10000";
        assert!(!api(429, Some("rate_limit_exceeded"), too_large, None).is_transient());
        assert!(!api(429, Some("insufficient_quota"), "", Some(true)).is_transient());
        assert!(!api(503, None, "", Some(false)).is_transient());
        assert!(api(400, None, "", Some(true)).is_transient());
    }

    #[test]
    fn request_errors_are_permanent_whatever_the_status_and_the_header() {
        for label in PERMANENT {
            for status in [None, Some(429), Some(500), Some(503)] {
                for header in [None, Some(true)] {
                    assert!(!classify_status(status, &[None, Some(label)], "", header));
                    assert!(!classify_status(status, &[Some(label), None], "", header));
                }
            }
        }
        assert!(classify_status(
            Some(500),
            &[Some("server_error")],
            "",
            None
        ));
        assert!(classify_status(Some(400), &[None], "", Some(true)));
    }

    #[test]
    fn server_delay_is_passed_on() {
        let busy = api(429, None, "", None);
        let expected = RetryDecision::RetryAfter(Duration::from_millis(5));
        assert_eq!(classify(&busy), expected);
        assert_eq!(llm_retry_on().decide(&busy), expected);
    }

    #[test]
    fn transport_errors_are_transient_for_plain_retry_on_too() {
        for error in [
            LlmError::idle(Duration::from_secs(1)),
            LlmError::truncated(),
        ] {
            assert!(error.is_transient());
            assert!(RetryOn::transient().matches(&error));
        }
        assert!(!RetryOn::transient().matches(&api(503, None, "", None)));
        assert!(llm_retry_on().matches(&api(503, None, "", None)));
    }
}
