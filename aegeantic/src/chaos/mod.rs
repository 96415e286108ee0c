//! Fault injection for your own tests (feature `chaos`): wrap any stream or future so that
//! it fails, lags, stalls, ends early or yields a different item, at configured rates and
//! reproducibly from a seed. A consumer, a retry config or a timeout can then be tested
//! against the faults of production without a server. Without the feature none of this
//! is compiled.
//!
//! ```
//! use std::{io, time::Duration};
//! use futures::{stream, StreamExt};
//! use aegeantic::chaos::{chaos, Chaos};
//! use aegeantic::resilience::{resilient_stream, Resilient, RetryConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let faults = Chaos::seeded(7)
//!     .error_rate(0.1, || io::Error::from(io::ErrorKind::ConnectionReset))
//!     .latency(0.05, Duration::from_millis(20));
//! let answer = stream::iter(["a", "b", "c"].map(Ok::<_, io::Error>));
//! let _faulty = chaos(answer, faults.clone())?;
//!
//! // Around a retried stream: every attempt draws its own faults.
//! let open = move || {
//!     let answer = stream::iter(["a", "b", "c"].map(Ok::<_, io::Error>));
//!     chaos(answer, faults.clone()).expect("the rates are probabilities")
//! };
//! let retry = RetryConfig::builder()
//!     .max_attempts(20)
//!     .base_delay(Duration::from_millis(1))
//!     .build()?;
//! let mut items = Vec::new();
//! let mut stream = resilient_stream(open, Some(retry), None, "chat", "llm");
//! while let Some(item) = stream.next().await {
//!     match item? {
//!         Resilient::Item(text) => items.push(text),
//!         // A retry starts over: drop what the failed attempt gave.
//!         Resilient::Retry(event) => items.truncate(items.len() - event.items_delivered as usize),
//!         _ => {}
//!     }
//! }
//! assert_eq!(items, ["a", "b", "c"]);
//! # Ok(())
//! # }
//! ```

mod config;
mod future;
mod stream;

pub use config::{Chaos, ChaosError};
pub use future::ChaosFuture;
pub use stream::ChaosStream;

use futures_core::Stream;
use std::future::Future;

/// `stream` with the faults of `chaos` injected, drawn from the next seed of its run
/// count (see [`Chaos`]).
///
/// # Errors
/// A rate of `chaos` that is not a probability.
pub fn chaos<S, T, E>(stream: S, chaos: Chaos<T, E>) -> Result<ChaosStream<S, T, E>, ChaosError>
where
    S: Stream<Item = Result<T, E>>,
{
    Ok(ChaosStream::new(stream, chaos.plan()?))
}

/// `future` with the faults of `chaos` injected: an error instead of its output, a delay
/// or a stall before it is polled, its output replaced.
///
/// ```
/// use std::io;
/// use aegeantic::chaos::{chaos_future, Chaos};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aegeantic::chaos::ChaosError> {
/// let always = Chaos::seeded(1).error_rate(1.0, || io::Error::other("injected"));
/// let call = async { Ok::<_, io::Error>(42) };
/// assert!(chaos_future(call, always)?.await.is_err());
///
/// let invalid = Chaos::seeded(1).error_rate(1.5, || io::Error::other("injected"));
/// assert!(chaos_future(async { Ok(42) }, invalid).is_err());
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// A rate of `chaos` that is not a probability.
pub fn chaos_future<F, T, E>(
    future: F,
    chaos: Chaos<T, E>,
) -> Result<ChaosFuture<F, T, E>, ChaosError>
where
    F: Future<Output = Result<T, E>>,
{
    Ok(ChaosFuture::new(future, chaos.plan()?))
}
