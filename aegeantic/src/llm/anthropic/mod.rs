//! A provider for Anthropic's Messages API, streaming over SSE.
//!
//! | file      | concern                                                       |
//! |-----------|---------------------------------------------------------------|
//! | `mod`     | configuration, the provider, building the request             |
//! | `wire`    | the request body, the stream's events, error bodies           |
//! | `headers` | the `anthropic-ratelimit-*` headers and their RFC 3339 resets |

pub(super) mod headers;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;

use super::http_util::{client, endpoint, env_var, ApiKey, Exchange, RedactedUrl, Redactor};
use super::{LlmError, LlmProvider, LlmRequest, LlmStream};
use wire::Decoder;

/// Where and how [`Anthropic`] connects.
///
/// ```
/// use aegeantic::llm::AnthropicConfig;
///
/// let config = AnthropicConfig::new("claude-sonnet-4-5").api_key("sk-ant-secret").max_tokens(1024);
/// assert_eq!(config.base_url, "https://api.anthropic.com/v1");
/// assert!(!format!("{config:?}").contains("sk-ant-secret"));
/// ```
///
/// Nor does it show a user name or password in the base URL.
#[derive(Clone)]
pub struct AnthropicConfig {
    /// The API root, such as `https://api.anthropic.com/v1`; `/messages` is appended.
    pub base_url: String,
    /// The model used when a request names none.
    pub model: String,
    /// Sent as `x-api-key` when set.
    pub api_key: Option<ApiKey>,
    /// The `anthropic-version` header.
    pub version: String,
    /// The token cap for requests that set none: the API refuses a request without one.
    pub max_tokens: u32,
    /// Limit on establishing the connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response headers once the request is sent.
    pub response_timeout: Duration,
    /// Limit on the silence between two pieces of the body: a stalled stream fails with
    /// [`LlmError::Idle`] instead of hanging. The server pings an open stream, so a
    /// healthy one is never silent for long.
    pub idle_timeout: Duration,
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &RedactedUrl(&self.base_url))
            .field("model", &self.model)
            .field("api_key", &self.api_key)
            .field("version", &self.version)
            .field("max_tokens", &self.max_tokens)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl AnthropicConfig {
    /// The default API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com/v1";
    /// The API version this provider speaks.
    pub const DEFAULT_VERSION: &'static str = "2023-06-01";
    /// The default token cap.
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// A config for `model` at [`DEFAULT_BASE_URL`](Self::DEFAULT_BASE_URL), without a
    /// key, with a cap of [`DEFAULT_MAX_TOKENS`](Self::DEFAULT_MAX_TOKENS) and timeouts of
    /// 10 s (connect) and 60 s (response headers, and silence within the body).
    ///
    /// The timeouts bound one attempt: a retrying caller waits for each attempt in turn, so
    /// an endpoint that never answers is given up after about `max_attempts` × 60 s.
    pub fn new(model: impl Into<String>) -> Self {
        AnthropicConfig {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            model: model.into(),
            api_key: None,
            version: Self::DEFAULT_VERSION.to_owned(),
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// A config for `model` with the key from `ANTHROPIC_API_KEY`.
    ///
    /// `ANTHROPIC_BASE_URL` is not read: the official SDKs expect it without the `/v1`
    /// that [`base_url`](Self::base_url) includes, so honouring it would break one or
    /// the other.
    pub fn from_env(model: impl Into<String>) -> Self {
        let api_key = env_var("ANTHROPIC_API_KEY").map(ApiKey::new);
        AnthropicConfig {
            api_key,
            ..Self::new(model)
        }
    }

    /// Sets the API root.
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets the key.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// Sets the token cap for requests that set none.
    #[must_use]
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }
}

/// Streams answers from Anthropic's Messages API.
///
/// System messages become the top-level `system`, tool calls and results become
/// `tool_use` and `tool_result` blocks, and the stream's events become
/// [`LlmChunk`](super::LlmChunk)s: a [`LlmChunk::Quota`](super::LlmChunk::Quota) first when
/// the response carries `anthropic-ratelimit-*` headers, then text, tool-call fragments
/// (indexed by content block), the finish reason and the usage. It fails with a classified [`LlmError`] on: an error status (529 `overloaded`,
/// 5xx, 408, 409 and 429 are transient, with `retry-after` read into `server_delay`; other
/// 4xx are not), an `error` event inside the stream (classified like its HTTP twin, so an
/// in-stream `overloaded_error` is transient), a body that ends without `message_stop`
/// ([`LlmError::Truncated`]), and silence longer than the idle timeout
/// ([`LlmError::Idle`]). It never retries on its own; wrap it in a
/// [`ResilientProvider`](super::ResilientProvider).
#[derive(Clone)]
pub struct Anthropic {
    config: Arc<AnthropicConfig>,
    client: reqwest::Client,
    /// `/messages` under the base URL, checked when the provider is built.
    endpoint: reqwest::Url,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The endpoint would show the base URL's credentials; the config hides them.
        f.debug_struct("Anthropic")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Anthropic {
    /// A provider for `config`.
    ///
    /// # Errors
    /// [`LlmError::InvalidBaseUrl`] when the base URL does not parse or is not `http` or
    /// `https`; [`LlmError::Config`] when the HTTP client cannot be built.
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        Ok(Anthropic {
            endpoint: endpoint(&config.base_url, "/messages")?,
            client: client(config.connect_timeout)?,
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }

    fn prepare(&self, request: &LlmRequest) -> Result<reqwest::RequestBuilder, LlmError> {
        let config = &self.config;
        let body = wire::request_body(request, &config.model, config.max_tokens)?;
        let version = HeaderValue::from_str(&config.version)
            .map_err(|_| LlmError::Config("the API version is not a valid header".into()))?;
        let mut builder = self
            .client
            .post(self.endpoint.clone())
            .header("anthropic-version", version)
            .json(&body);
        if let Some(key) = &config.api_key {
            // The error would not show the key, but say nothing about it all the same.
            let mut value = HeaderValue::from_str(key.expose())
                .map_err(|_| LlmError::Config("the API key is not a valid header".into()))?;
            // Keeps the key out of the Debug output of the request and its headers.
            value.set_sensitive(true);
            builder = builder.header("x-api-key", value);
        }
        Ok(builder)
    }
}

impl LlmProvider for Anthropic {
    fn provider_name(&self) -> &str {
        "anthropic"
    }

    fn default_model(&self) -> Option<&str> {
        Some(&self.config.model)
    }

    fn stream(&self, request: &LlmRequest) -> LlmStream {
        let config = &self.config;
        let mut decoder = Decoder::default();
        Exchange {
            request: self.prepare(request),
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
            redactor: Redactor(config.api_key.clone()),
            http_error: wire::http_error,
            quota: |map| headers::quota(map, SystemTime::now()),
            finish_is_complete: false,
        }
        .stream(move |event, redactor| decoder.decode(event, redactor))
    }
}

#[cfg(test)]
mod tests;
