//! The metrics, recorded through the `metrics` facade into whatever recorder the
//! application installed (none: nothing is kept). Names follow OpenTelemetry's style; an
//! exporter may rewrite them (Prometheus: `aegeantic_attempts_total` with recommended naming). The table of names
//! and labels is in the README ("Metrics and spans").
//!
//! Label values are only what the user chose (operation names and types) and fixed
//! words (outcomes, causes, states): never an error's text, a URL or a key, so the
//! number of series stays bounded and nothing secret becomes a label.

use std::time::Duration;

use metrics::{counter, gauge, Key, Label, Level, Metadata, SharedString};

/// Attempts by how they ended.
pub(crate) const ATTEMPTS: &str = "aegeantic.attempts";
/// Retries by cause, and whether the server chose the delay.
pub(crate) const RETRIES: &str = "aegeantic.retries";
/// Seconds waited for tokens, per grant.
pub(crate) const RATE_LIMIT_WAIT: &str = "aegeantic.rate_limit.wait";
/// Requests the limiter refused.
pub(crate) const RATE_LIMIT_REFUSALS: &str = "aegeantic.rate_limit.refusals";
/// Tokens left in the bucket after the latest grant.
pub(crate) const TOKENS_AVAILABLE: &str = "aegeantic.rate_limit.tokens_available";
/// Grants the failure policy decided while the shared bucket could not be reached.
pub(crate) const FALLBACKS: &str = "aegeantic.rate_limit.fallbacks";
/// Seconds a Redis script call took, by script and whether it succeeded.
#[cfg(feature = "redis")]
pub(crate) const REDIS_CALL: &str = "aegeantic.redis.call.duration";
/// Breaker state changes.
pub(crate) const CIRCUIT_TRANSITIONS: &str = "aegeantic.circuit.transitions";
/// A breaker's state: 0 closed, 1 half-open, 2 open.
pub(crate) const CIRCUIT_STATE: &str = "aegeantic.circuit.state";

/// The labels every operation's metrics carry.
pub(crate) struct Operation {
    pub(crate) name: SharedString,
    pub(crate) kind: SharedString,
}

/// How an attempt ended; `timeout` names the limit that ended it, if one did.
pub(crate) fn attempt(operation: Operation, outcome: &'static str, timeout: Option<&'static str>) {
    let Operation { name, kind } = operation;
    match timeout {
        Some(timeout) => counter!(
            ATTEMPTS,
            "operation" => name,
            "operation_type" => kind,
            "outcome" => outcome,
            "timeout" => timeout,
        ),
        None => counter!(
            ATTEMPTS,
            "operation" => name,
            "operation_type" => kind,
            "outcome" => outcome,
        ),
    }
    .increment(1);
}

/// A retry about to wait.
pub(crate) fn retry(operation: Operation, cause: &'static str, server_directed: bool) {
    counter!(
        RETRIES,
        "operation" => operation.name,
        "operation_type" => operation.kind,
        "cause" => cause,
        "server_directed" => if server_directed { "true" } else { "false" },
    )
    .increment(1);
}

/// What the limiter's own metrics are registered with: the macros' defaults.
static LIMITER_METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The metrics of one rate limiter, labelled `limiter` with its name.
///
/// Every grant records two of them, so their keys are built once, with the limiter: a
/// grant hands the current recorder a ready key (name, label and hash), where the macros
/// would build, hash and free a new one for each metric of each grant. The recorder is
/// looked up at each grant, as the macros do, so one installed after the limiter was made
/// still gets everything.
pub(crate) struct Limiter {
    name: SharedString,
    wait: Key,
    tokens: Key,
}

impl Limiter {
    pub(crate) fn new(name: &str) -> Self {
        let name = SharedString::from(name.to_owned());
        let key = |metric: &'static str| {
            Key::from_parts(metric, vec![Label::new("limiter", name.clone())])
        };
        Limiter {
            wait: key(RATE_LIMIT_WAIT),
            tokens: key(TOKENS_AVAILABLE),
            name,
        }
    }

    /// A grant by `acquire`: its wait, what it left, and whether the failure policy
    /// decided it.
    pub(crate) fn grant(
        &self,
        waited: Duration,
        tokens_remaining: f64,
        fallback: Option<&'static str>,
    ) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(&self.wait, &LIMITER_METADATA)
                .record(waited.as_secs_f64());
            recorder
                .register_gauge(&self.tokens, &LIMITER_METADATA)
                .set(tokens_remaining);
        });
        if let Some(policy) = fallback {
            counter!(FALLBACKS, "limiter" => self.name.clone(), "policy" => policy).increment(1);
        }
    }

    /// Tokens left after a grant that did not wait for them (`try_acquire`).
    pub(crate) fn tokens(&self, tokens_remaining: f64) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_gauge(&self.tokens, &LIMITER_METADATA)
                .set(tokens_remaining);
        });
    }

    /// A refusal, `reason` one of the limiter error's kinds.
    pub(crate) fn refusal(&self, reason: &'static str) {
        counter!(RATE_LIMIT_REFUSALS, "limiter" => self.name.clone(), "reason" => reason)
            .increment(1);
    }
}

/// A Redis script call of the shared limiter, concurrency limiter, breaker or budget.
#[cfg(feature = "redis")]
pub(crate) fn redis_call(script: &'static str, took: Duration, ok: bool) {
    metrics::histogram!(
        REDIS_CALL,
        "script" => script,
        "outcome" => if ok { "ok" } else { "error" },
    )
    .record(took.as_secs_f64());
}

/// A breaker's change of state; each state as a word and its gauge value.
pub(crate) fn circuit(operation: SharedString, from: &'static str, to: (&'static str, f64)) {
    counter!(
        CIRCUIT_TRANSITIONS,
        "operation" => operation.clone(),
        "from" => from,
        "to" => to.0,
    )
    .increment(1);
    gauge!(CIRCUIT_STATE, "operation" => operation).set(to.1);
}

/// OpenTelemetry's GenAI client metrics, recorded by `ResilientProvider`.
#[cfg(feature = "llm")]
pub(crate) mod gen_ai {
    use std::time::Duration;

    use metrics::{histogram, SharedString};

    /// Tokens a call used, by `gen_ai.token.type` (`input`, `output`).
    pub(crate) const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Seconds from the call's start to its end, retries and waits included.
    pub(crate) const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// Seconds from the call's start to its first text or tool-call chunk.
    pub(crate) const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";

    /// The labels of one model call.
    #[derive(Clone)]
    pub(crate) struct Call {
        pub(crate) provider: SharedString,
        pub(crate) model: SharedString,
    }

    pub(crate) fn token_usage(call: &Call, input: u64, output: u64) {
        for (kind, tokens) in [("input", input), ("output", output)] {
            histogram!(
                TOKEN_USAGE,
                "gen_ai.operation.name" => "chat",
                "gen_ai.provider.name" => call.provider.clone(),
                "gen_ai.request.model" => call.model.clone(),
                "gen_ai.token.type" => kind,
            )
            .record(tokens as f64);
        }
    }

    pub(crate) fn first_chunk(call: &Call, after: Duration) {
        histogram!(
            TIME_TO_FIRST_CHUNK,
            "gen_ai.operation.name" => "chat",
            "gen_ai.provider.name" => call.provider.clone(),
            "gen_ai.request.model" => call.model.clone(),
        )
        .record(after.as_secs_f64());
    }

    /// The call's end; `error` is the outcome label of its error, if it failed.
    pub(crate) fn ended(call: &Call, took: Duration, error: Option<&'static str>) {
        match error {
            Some(error) => histogram!(
                OPERATION_DURATION,
                "gen_ai.operation.name" => "chat",
                "gen_ai.provider.name" => call.provider.clone(),
                "gen_ai.request.model" => call.model.clone(),
                "error.type" => error,
            ),
            None => histogram!(
                OPERATION_DURATION,
                "gen_ai.operation.name" => "chat",
                "gen_ai.provider.name" => call.provider.clone(),
                "gen_ai.request.model" => call.model.clone(),
            ),
        }
        .record(took.as_secs_f64());
    }
}
