//! What the HTTP providers share: the redacted [`ApiKey`], the client, transport-error
//! mapping, the timeouts around sending and reading, the `retry-after` headers, and the
//! streamed exchange itself.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;

use super::sse::{SseEvent, SseParser};
use super::{LlmChunk, LlmError, LlmStream, Quota};

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

/// The variable `name` when it is set and not empty: an empty one means "not configured",
/// as an unset one does.
pub(super) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// A client that limits only connecting: the other limits are per request, in [`send`]
/// and [`next_bytes`].
pub(super) fn client(connect_timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|error| LlmError::Config(error.without_url().to_string()))
}

/// The URL of `path` (such as `/chat/completions`) under the API root `base_url`, refused
/// when it does not parse or is not `http` or `https`, so that a misconfigured provider
/// fails when it is built rather than on every request.
pub(super) fn endpoint(base_url: &str, path: &str) -> Result<reqwest::Url, LlmError> {
    let invalid = |problem, source| LlmError::InvalidBaseUrl {
        url: redact_credentials(base_url),
        problem,
        source,
    };
    let parse = |url: &str| {
        reqwest::Url::parse(url).map_err(|error| invalid("it does not parse", Some(error.into())))
    };
    let scheme = parse(base_url)?.scheme().to_owned();
    if scheme != "http" && scheme != "https" {
        return Err(invalid("the scheme must be http or https", None));
    }
    parse(&format!("{}{path}", base_url.trim_end_matches('/')))
}

/// Debug-prints a URL with its credentials redacted, for the configs' and providers' `Debug`.
pub(super) struct RedactedUrl<'a>(pub(super) &'a str);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_credentials(self.0), f)
    }
}

/// `url` with everything from its scheme's `://` (or its start) to its last `@` replaced
/// by `<redacted>`: a user name and password, however malformed the rest. An `@` later in
/// the path hides more than needed, which only costs readability in an error message.
fn redact_credentials(url: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
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

/// Where in the exchange a transport failure happened.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Connecting, sending the request, or waiting for the response headers.
    Request,
    /// Reading the body.
    Body,
}

/// A reqwest failure as a transient connection error. Its `io` kind says what happened,
/// as [`LlmError::Connection`] shows it and
/// [`RetryOn::transient`](crate::resilience::RetryOn::transient) matches it; the reqwest
/// error, without its URL (a base URL may carry credentials), is kept as the source.
fn transport_error(error: reqwest::Error, phase: Phase) -> LlmError {
    if error.is_builder() {
        return LlmError::Config(error.without_url().to_string());
    }
    let found = io_kinds(&error);
    let kind = if error.is_timeout() || found.contains(&io::ErrorKind::TimedOut) {
        io::ErrorKind::TimedOut
    } else if found.contains(&io::ErrorKind::ConnectionRefused) {
        io::ErrorKind::ConnectionRefused
    } else if found.contains(&io::ErrorKind::ConnectionReset) {
        io::ErrorKind::ConnectionReset
    } else if error.is_connect() {
        // No route, a name that does not resolve, a TLS handshake that fails.
        io::ErrorKind::NotConnected
    } else if phase == Phase::Body {
        io::ErrorKind::UnexpectedEof
    } else {
        // hyper's "connection closed before message completed", mostly: the server
        // dropped the connection without answering.
        io::ErrorKind::ConnectionAborted
    };
    LlmError::Connection(io::Error::new(kind, error.without_url()))
}

/// The kinds of the `io` errors in `error`'s source chain, outermost first.
fn io_kinds(error: &(dyn std::error::Error + 'static)) -> Vec<io::ErrorKind> {
    crate::resilience::retry_on::chain(error)
        .filter_map(|link| link.downcast_ref::<io::Error>().map(io::Error::kind))
        .collect()
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// The delay the server asked for: `retry-after-ms`, then `retry-after` (seconds or an
/// HTTP date), read as [`classify_http`](crate::resilience::classify_http) reads them; a
/// number too large for any clock is [`Duration::MAX`], which the retry layer refuses
/// above `max_server_delay`.
pub(super) fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    crate::resilience::http::server_delay(headers, now).flatten()
}

/// Sends a request, waiting at most `response_timeout` for the response headers.
async fn send(
    builder: reqwest::RequestBuilder,
    response_timeout: Duration,
) -> Result<reqwest::Response, LlmError> {
    match tokio::time::timeout(response_timeout, builder.send()).await {
        Err(_) => Err(LlmError::Connection(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no response headers within {response_timeout:?}"),
        ))),
        Ok(Err(error)) => Err(transport_error(error, Phase::Request)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The body of an error answer, up to [`MAX_ERROR_BODY`] bytes and what arrives within
/// `idle_timeout`: the status alone still classifies the error.
async fn error_text(mut response: reqwest::Response, idle_timeout: Duration) -> String {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = MAX_ERROR_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_ERROR_BODY {
                break;
            }
        }
    };
    // What arrived in time is the message; a server that keeps sending does not hold us.
    let _ = tokio::time::timeout(idle_timeout, read).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The most of an error answer's body that is read: far more than any server's message,
/// and a bound on what a hostile one can make us hold.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The most one server-sent event may hold before the stream is refused as broken: far
/// more than any model sends in one event, and a bound on what a server that never ends a
/// line can make us hold.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// The next piece of a body, `Ok(None)` at its end, or [`LlmError::Idle`] after
/// `idle_timeout` of silence.
async fn next_bytes<B, T>(body: &mut B, idle_timeout: Duration) -> Result<Option<T>, LlmError>
where
    B: Stream<Item = reqwest::Result<T>> + Unpin,
{
    match tokio::time::timeout(idle_timeout, body.next()).await {
        Err(_) => Err(LlmError::idle(idle_timeout)),
        Ok(None) => Ok(None),
        Ok(Some(Err(error))) => Err(transport_error(error, Phase::Body)),
        Ok(Some(Ok(bytes))) => Ok(Some(bytes)),
    }
}

/// What a provider makes of one server-sent event.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Chunks to pass on (possibly none).
    Chunks(Vec<LlmChunk>),
    /// The provider's end-of-answer marker: the answer is complete.
    Stop,
}

/// One streamed request, up to its response's events; the provider decodes those.
pub(super) struct Exchange {
    /// The request, or why it could not be built: that error is the stream's only item.
    pub(super) request: Result<reqwest::RequestBuilder, LlmError>,
    pub(super) response_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) redactor: Redactor,
    /// The error an unsuccessful status and its body stand for.
    pub(super) http_error: fn(u16, &HeaderMap, &str, &Redactor) -> LlmError,
    /// The server's rate-limit headers, yielded first when there are any.
    pub(super) quota: fn(&HeaderMap) -> Quota,
    /// Whether a body that ends cleanly, at an event boundary, after a
    /// [`LlmChunk::Finish`] is complete without the terminator.
    pub(super) finish_is_complete: bool,
}

impl Exchange {
    /// Sends the request and passes on what `decode` makes of each event, until it says
    /// [`Step::Stop`]. The first error ends the stream.
    pub(super) fn stream<D>(self, mut decode: D) -> LlmStream
    where
        D: FnMut(&SseEvent, &Redactor) -> Result<Step, LlmError> + Send + 'static,
    {
        let Exchange {
            request,
            response_timeout,
            idle_timeout,
            redactor,
            http_error,
            quota,
            finish_is_complete,
        } = self;
        Box::pin(async_stream::stream! {
            let builder = match request {
                Ok(builder) => builder,
                Err(error) => {
                    yield Err(error);
                    return;
                }
            };
            let response = match send(builder, response_timeout).await {
                Ok(response) => response,
                Err(error) => {
                    yield Err(error);
                    return;
                }
            };
            let status = response.status();
            if !status.is_success() {
                let headers = response.headers().clone();
                let text = error_text(response, idle_timeout).await;
                yield Err(http_error(status.as_u16(), &headers, &text, &redactor));
                return;
            }
            let quota = quota(response.headers());
            if !quota.is_empty() {
                yield Ok(LlmChunk::Quota(quota));
            }
            let mut body = response.bytes_stream();
            let mut parser = SseParser::new();
            let mut finished = false;
            loop {
                let bytes = match next_bytes(&mut body, idle_timeout).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => break,
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                };
                for event in parser.push(&bytes) {
                    match decode(&event, &redactor) {
                        Ok(Step::Chunks(chunks)) => {
                            for chunk in chunks {
                                finished |= matches!(chunk, LlmChunk::Finish(_));
                                yield Ok(chunk);
                            }
                        }
                        Ok(Step::Stop) => return,
                        Err(error) => {
                            yield Err(error);
                            return;
                        }
                    }
                }
                if parser.pending_len() > MAX_EVENT {
                    yield Err(LlmError::Protocol(format!(
                        "a server-sent event grew past {MAX_EVENT} bytes without ending"
                    )));
                    return;
                }
            }
            if finish_is_complete && finished && !parser.has_partial() {
                return;
            }
            // Most clients take a clean close without the end marker as success, and
            // silently lose the end of the answer.
            yield Err(LlmError::truncated());
        })
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
    fn credentials_are_redacted_however_the_url_is_malformed() {
        for (url, shown) in [
            ("https://user:pw@host/v1", "https://<redacted>@host/v1"),
            ("ftp://user:p/w@host", "ftp://<redacted>@host"),
            ("user:pw@host", "<redacted>@host"),
            ("http:/user:pw@host", "<redacted>@host"),
            ("https://host/v1", "https://host/v1"),
        ] {
            assert_eq!(redact_credentials(url), shown, "{url}");
        }
    }

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
        let huge = header_map(&[("retry-after", "99999999999999999999999")]);
        assert_eq!(server_delay(&huge, now), Some(Duration::MAX));
    }
}
