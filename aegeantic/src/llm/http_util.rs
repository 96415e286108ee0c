//! What the HTTP providers share: the redacted [`ApiKey`], transport-error mapping, the
//! timeouts around sending and reading, and the `retry-after` headers.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;

use super::LlmError;

/// An API key. It has no `Display`, its `Debug` prints `ApiKey(<redacted>)`, and
/// provider errors are scrubbed of it, so it cannot leak into logs or events by accident.
///
/// ```
/// use aegeantic::llm::ApiKey;
/// assert_eq!(format!("{:?}", ApiKey::new("sk-secret")), "ApiKey(<redacted>)");
/// ```
#[derive(Clone)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        ApiKey(key.into())
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Removes the API key from text that came from the server, which may echo it.
pub(super) struct Redactor(pub(super) Option<ApiKey>);

impl Redactor {
    pub(super) fn scrub(&self, text: &str) -> String {
        match &self.0 {
            Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "<redacted>"),
            _ => text.to_owned(),
        }
    }
}

/// A reqwest failure as a transient connection error whose source has an `io` kind that
/// [`RetryOn::transient`](crate::resilience::RetryOn::transient) knows.
fn transport_error(error: reqwest::Error) -> LlmError {
    if error.is_builder() {
        return LlmError::Config(error.without_url().to_string());
    }
    let kind = if error.is_timeout() {
        io::ErrorKind::TimedOut
    } else if error.is_connect() {
        io::ErrorKind::ConnectionRefused
    } else if error.is_body() || error.is_decode() {
        io::ErrorKind::UnexpectedEof
    } else {
        io::ErrorKind::ConnectionReset
    };
    // The URL is dropped: a base URL may carry credentials.
    LlmError::Connection(io::Error::new(kind, error.without_url()))
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// `retry-after-ms` (milliseconds) first, then `retry-after` (seconds or an HTTP date).
pub(super) fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let from_secs = |secs: f64| {
        (0.0..1e9)
            .contains(&secs)
            .then(|| Duration::from_secs_f64(secs))
    };
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if let Some(delay) = from_secs(ms / 1000.0) {
            return Some(delay);
        }
    }
    let value = header(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return from_secs(secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Sends a request, waiting at most `response_timeout` for the response headers.
pub(super) async fn send(
    builder: reqwest::RequestBuilder,
    response_timeout: Duration,
) -> Result<reqwest::Response, LlmError> {
    match tokio::time::timeout(response_timeout, builder.send()).await {
        Err(_) => Err(LlmError::Connection(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no response headers within {response_timeout:?}"),
        ))),
        Ok(Err(error)) => Err(transport_error(error)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The body of an error answer, or nothing when it does not arrive in time: the status
/// alone still classifies the error.
pub(super) async fn error_text(response: reqwest::Response, idle_timeout: Duration) -> String {
    tokio::time::timeout(idle_timeout, response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// The next piece of a body, `Ok(None)` at its end, or [`LlmError::Idle`] after
/// `idle_timeout` of silence.
pub(super) async fn next_bytes<B, T>(
    body: &mut B,
    idle_timeout: Duration,
) -> Result<Option<T>, LlmError>
where
    B: Stream<Item = reqwest::Result<T>> + Unpin,
{
    match tokio::time::timeout(idle_timeout, body.next()).await {
        Err(_) => Err(LlmError::idle(idle_timeout)),
        Ok(None) => Ok(None),
        Ok(Some(Err(error))) => Err(transport_error(error)),
        Ok(Some(Ok(bytes))) => Ok(Some(bytes)),
    }
}

/// Response headers for the providers' unit tests.
#[cfg(test)]
pub(super) fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            *name,
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_ms_wins_then_seconds_then_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let both = header_map(&[("retry-after-ms", "250"), ("retry-after", "3")]);
        assert_eq!(server_delay(&both, now), Some(Duration::from_millis(250)));
        let secs = header_map(&[("retry-after", "2")]);
        assert_eq!(server_delay(&secs, now), Some(Duration::from_secs(2)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let dated = header_map(&[("retry-after", &date)]);
        assert_eq!(server_delay(&dated, now), Some(Duration::from_secs(30)));
        let past = header_map(&[("retry-after", &httpdate::fmt_http_date(now))]);
        assert_eq!(
            server_delay(&past, now + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            server_delay(&header_map(&[("retry-after", "soon")]), now),
            None
        );
        assert_eq!(
            server_delay(&header_map(&[("retry-after", "-1")]), now),
            None
        );
    }
}
