//! Classifying HTTP failures by status and headers (feature `http`).
//!
//! | status                 | decision                                      |
//! |------------------------|-----------------------------------------------|
//! | 429, 503               | retry, after the server's delay if it gave one |
//! | 408, 409, other 5xx    | retry (after the server's delay if given)      |
//! | other 4xx, 1xx–3xx     | do not retry                                   |
//!
//! `x-should-retry: true|false`, when present, overrides the status. The delay comes from
//! `retry-after-ms`, then `retry-after` (seconds or an HTTP date), then gRPC's
//! `grpc-retry-pushback-ms` (a negative or unreadable pushback means do not retry).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use super::backoff::saturating_secs;
use super::{Classify, RetryDecision};

/// An HTTP response that failed, as an error a stream can yield. It classifies itself, so
/// [`RetryOn::classified::<HttpError>()`](super::RetryOn::classified) honours its
/// status and `Retry-After`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("HTTP {status}")]
pub struct HttpError {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
}

impl Classify for HttpError {
    fn classify(&self) -> Option<RetryDecision> {
        Some(classify_http(self.status, &self.headers))
    }
}

/// The retry decision for a response with `status` and `headers`.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, HeaderValue, StatusCode};
/// use aegeantic::resilience::{classify_http, RetryDecision};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", HeaderValue::from_static("20"));
/// assert_eq!(
///     classify_http(StatusCode::TOO_MANY_REQUESTS, &headers),
///     RetryDecision::RetryAfter(Duration::from_secs(20))
/// );
/// assert_eq!(classify_http(StatusCode::NOT_FOUND, &HeaderMap::new()), RetryDecision::DoNotRetry);
/// ```
pub fn classify_http(status: StatusCode, headers: &HeaderMap) -> RetryDecision {
    let retryable = match header(headers, "x-should-retry") {
        Some("true") => true,
        Some("false") => false,
        _ => {
            status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
        }
    };
    if !retryable {
        return RetryDecision::DoNotRetry;
    }
    match server_delay(headers, SystemTime::now()) {
        Some(Some(delay)) => RetryDecision::RetryAfter(delay),
        Some(None) => RetryDecision::DoNotRetry,
        None => RetryDecision::Retry,
    }
}

/// The delay the server asked for: `None` when it said nothing, `Some(None)` when it said
/// not to retry (a negative or unreadable gRPC pushback).
///
/// A number too large for a [`Duration`], infinity included, is [`Duration::MAX`]: the
/// server asked for a very long wait, which the retry layer refuses above
/// `max_server_delay`. A negative number, NaN or a value that is no number is not a delay.
pub(crate) fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Option<Duration>> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(non_negative) {
        return Some(Some(saturating_secs(ms / 1000.0)));
    }
    if let Some(value) = header(headers, "retry-after") {
        if let Some(seconds) = non_negative(value) {
            return Some(Some(saturating_secs(seconds)));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            return Some(Some(date.duration_since(now).unwrap_or(Duration::ZERO)));
        }
    }
    // gRPC's pushback is an integer of milliseconds; anything else means do not retry.
    let pushback = header(headers, "grpc-retry-pushback-ms")?;
    let integer = !pushback.is_empty() && pushback.bytes().all(|b| b.is_ascii_digit());
    Some(
        integer
            .then(|| non_negative(pushback))
            .flatten()
            .map(|ms| saturating_secs(ms / 1000.0)),
    )
}

/// `value` as a number that is not negative (nor NaN); infinity stays.
fn non_negative(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|number| *number >= 0.0)
}

/// The header `name` as trimmed text, if it is there and readable.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.insert(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn statuses_follow_the_table() {
        let none = HeaderMap::new();
        for code in [408, 409, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify_http(status, &none), RetryDecision::Retry, "{code}");
        }
        for code in [200, 301, 400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                classify_http(status, &none),
                RetryDecision::DoNotRetry,
                "{code}"
            );
        }
    }

    #[test]
    fn server_delays_are_read_in_order_of_precision() {
        let busy = StatusCode::TOO_MANY_REQUESTS;
        let secs = |s| RetryDecision::RetryAfter(Duration::from_secs_f64(s));
        assert_eq!(
            classify_http(busy, &headers(&[("retry-after", "20")])),
            secs(20.0)
        );
        assert_eq!(
            classify_http(
                busy,
                &headers(&[("retry-after", "20"), ("retry-after-ms", "1500")])
            ),
            secs(1.5)
        );
        assert_eq!(
            classify_http(busy, &headers(&[("grpc-retry-pushback-ms", "250")])),
            secs(0.25)
        );
        assert_eq!(
            classify_http(busy, &headers(&[("grpc-retry-pushback-ms", "-1")])),
            RetryDecision::DoNotRetry
        );
        assert_eq!(
            classify_http(busy, &headers(&[("retry-after", "soon")])),
            RetryDecision::Retry
        );
    }

    #[test]
    fn numbers_too_large_for_a_duration_are_the_longest_wait() {
        let busy = StatusCode::TOO_MANY_REQUESTS;
        let longest = RetryDecision::RetryAfter(Duration::MAX);
        let nines = "9".repeat(400);
        for (name, value) in [
            ("retry-after-ms", "2e22"),
            ("retry-after-ms", "1e30"),
            ("retry-after-ms", "1e300"),
            ("retry-after-ms", "inf"),
            ("retry-after-ms", nines.as_str()),
            ("retry-after", "18446744073709551616"),
            ("retry-after", "99999999999999999999999"),
            ("grpc-retry-pushback-ms", "99999999999999999999999999"),
        ] {
            let decision = classify_http(busy, &headers(&[(name, value)]));
            assert_eq!(decision, longest, "{name}: {value}");
        }
        // Parsed as a double, the largest u64 rounds up past what a Duration holds.
        let decision = classify_http(busy, &headers(&[("retry-after", "18446744073709551615")]));
        assert_eq!(decision, longest);
    }

    #[test]
    fn values_that_are_not_delays_are_ignored() {
        let busy = StatusCode::TOO_MANY_REQUESTS;
        for value in ["-5", "-inf", "NaN", "", "soon", "0x10", "1.2.3"] {
            let both = headers(&[("retry-after-ms", value), ("retry-after", value)]);
            assert_eq!(
                classify_http(busy, &both),
                RetryDecision::Retry,
                "{value:?}"
            );
        }
        assert_eq!(
            classify_http(busy, &headers(&[("retry-after", "1.5")])),
            RetryDecision::RetryAfter(Duration::from_millis(1500))
        );
        assert_eq!(
            classify_http(busy, &headers(&[("grpc-retry-pushback-ms", "1.5")])),
            RetryDecision::DoNotRetry
        );
    }

    #[test]
    fn http_dates_become_delays() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        let delay = |date: &str| server_delay(&headers(&[("retry-after", date)]), now);
        assert_eq!(delay(&later), Some(Some(Duration::from_secs(30))));
        assert_eq!(delay(&past), Some(Some(Duration::ZERO)));
    }

    #[test]
    fn x_should_retry_overrides_the_status() {
        let yes = headers(&[("x-should-retry", "true")]);
        let no = headers(&[("x-should-retry", "false")]);
        assert_eq!(
            classify_http(StatusCode::BAD_REQUEST, &yes),
            RetryDecision::Retry
        );
        assert_eq!(
            classify_http(StatusCode::SERVICE_UNAVAILABLE, &no),
            RetryDecision::DoNotRetry
        );
    }
}
