//! The simulated fleet: tasks that call the upstream in a loop, every attempt through one
//! shared `RateLimiter` and every call under `resilient`, each event written down as the
//! call's observer saw it. Tasks join one by one over the ramp, so the demand climbs from
//! well under the limiter's rate to over it.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aegeantic::resilience::{
    resilient, ConfigError, Event, HttpError, RateLimitConfig, RateLimiter, ResilienceError,
    RetryConfig, RetryOn,
};
use tokio::task::JoinError;
use tokio::time::Instant;

/// The operation name the metrics and events carry.
pub const OPERATION: &str = "upstream";
/// Its type label.
pub const OPERATION_TYPE: &str = "http";
/// The name of the limiter the fleet shares, the `limiter` label of its metrics.
pub const LIMITER: &str = "upstream-quota";

/// What to run.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Tasks calling at once.
    pub tasks: usize,
    /// The shared limiter's rate, requests per second.
    pub rate: f64,
    /// The limiter's burst.
    pub burst: u32,
    /// How long tasks start new calls; calls under way then are finished.
    pub run_for: Duration,
    /// Tasks start evenly spread over this.
    pub ramp: Duration,
    /// Each task's pause between its calls.
    pub think: Duration,
}

/// A grant of a token, as its event said.
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    /// Since the fleet started.
    pub at: Duration,
    pub waited: Duration,
}

/// A retry, as its event said.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Since the fleet started.
    pub at: Duration,
    pub server_directed: bool,
}

/// Everything the fleet saw, from its own count of attempts and from the inline events.
#[derive(Debug, Default)]
pub struct Tally {
    /// Attempts started: the calls' factories were called this often.
    pub attempts: u64,
    pub grants: Vec<Grant>,
    pub retries: Vec<Retry>,
    /// Calls that ended in success, and in failure.
    pub succeeded: u64,
    pub failed: u64,
}

impl Tally {
    /// The sum of the grants' waits.
    pub fn waited(&self) -> Duration {
        self.grants.iter().map(|grant| grant.waited).sum()
    }
}

/// Why the fleet could not run.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("invalid rate limit")]
    Limiter(#[source] ConfigError),
    #[error("invalid retry configuration")]
    Retry(#[source] ConfigError),
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("a call could not reach the upstream")]
    Unreachable(#[source] ResilienceError<CallError>),
    #[error("the shared limiter refused a call")]
    Refused(#[source] ResilienceError<CallError>),
    #[error("a fleet task panicked or was cancelled")]
    Task(#[source] JoinError),
}

/// How one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("upstream answered with an error")]
    Status(#[source] HttpError),
    #[error("request to the upstream failed")]
    Transport(#[source] reqwest::Error),
}

/// Runs `fleet` against `url` and returns what it saw. Failed calls (the upstream's faults
/// outlasting the retries) are counted; an unreachable upstream or a refusal by the limiter
/// ends the run with an error.
pub async fn run(fleet: &Fleet, url: &str) -> Result<Tally, FleetError> {
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(fleet.rate),
        burst_size: fleet.burst,
        name: Some(LIMITER.into()),
        ..RateLimitConfig::default()
    })
    .map_err(FleetError::Limiter)?;
    let retry = RetryConfig::builder()
        .max_attempts(4)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(400))
        .retry_on(RetryOn::classified::<HttpError>())
        .build()
        .map_err(FleetError::Retry)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(FleetError::Client)?;
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let attempts = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..fleet.tasks)
        .map(|i| {
            let task = Task {
                // A fraction under 1 of a duration: no overflow.
                joins: fleet.ramp.mul_f64(i as f64 / fleet.tasks as f64),
                think: fleet.think,
                limiter: limiter.clone(),
                retry: retry.clone(),
                client: client.clone(),
                url: url.to_owned(),
                tally: tally.clone(),
                attempts: attempts.clone(),
                started,
                // A time past what the clock can hold: the fleet runs until stopped.
                until: started.checked_add(fleet.run_for),
            };
            tokio::spawn(task.run())
        })
        .collect();
    for task in tasks {
        task.await.map_err(FleetError::Task)??;
    }
    let mut tally = std::mem::take(&mut *lock(&tally));
    tally.attempts = attempts.load(Ordering::Relaxed);
    Ok(tally)
}

struct Task {
    joins: Duration,
    think: Duration,
    limiter: RateLimiter,
    retry: RetryConfig,
    client: reqwest::Client,
    url: String,
    tally: Arc<Mutex<Tally>>,
    attempts: Arc<AtomicU64>,
    started: Instant,
    until: Option<Instant>,
}

impl Task {
    async fn run(self) -> Result<(), FleetError> {
        tokio::time::sleep(self.joins).await;
        while self.until.is_none_or(|until| Instant::now() < until) {
            let attempt = || {
                self.attempts.fetch_add(1, Ordering::Relaxed);
                call(self.client.clone(), self.url.clone())
            };
            let outcome = resilient(
                attempt,
                Some(self.retry.clone()),
                Some(self.limiter.clone()),
                OPERATION,
                OPERATION_TYPE,
            )
            .on_event(|event| self.note(event))
            .await;
            match outcome {
                Ok(()) => lock(&self.tally).succeeded += 1,
                Err(error) if is_transport(&error) => return Err(FleetError::Unreachable(error)),
                Err(error @ ResilienceError::RateLimit(_)) => {
                    return Err(FleetError::Refused(error))
                }
                Err(_) => lock(&self.tally).failed += 1,
            }
            tokio::time::sleep(self.think).await;
        }
        Ok(())
    }

    fn note(&self, event: &Event) {
        let at = self.started.elapsed();
        let mut tally = lock(&self.tally);
        match event {
            Event::RateLimit(grant) => tally.grants.push(Grant {
                at,
                waited: grant.waited,
            }),
            Event::Retry(retry) => tally.retries.push(Retry {
                at,
                server_directed: retry.server_directed,
            }),
            _ => {}
        }
    }
}

/// One attempt: a GET whose non-success status becomes an [`HttpError`].
async fn call(client: reqwest::Client, url: String) -> Result<(), CallError> {
    let response = client.get(url).send().await.map_err(CallError::Transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(CallError::Status(HttpError {
            status,
            headers: response.headers().clone(),
        }));
    }
    response.bytes().await.map_err(CallError::Transport)?;
    Ok(())
}

fn is_transport(error: &ResilienceError<CallError>) -> bool {
    let mut link: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(error) = link {
        if matches!(error.downcast_ref(), Some(CallError::Transport(_))) {
            return true;
        }
        link = error.source();
    }
    false
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}
