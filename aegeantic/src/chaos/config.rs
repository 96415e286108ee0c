//! What to inject and how often: the [`Chaos`] builder, and the seeded draws each wrapped
//! stream or future makes from it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// A rate given to [`Chaos`] that is not a probability.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("the {fault} rate {rate} is not a probability (0 to 1)")]
pub struct ChaosError {
    /// Which fault's rate: `error`, `latency`, `stall`, `early end` or `replace`.
    pub fault: &'static str,
    /// The rate given.
    pub rate: f64,
}

type MakeError<E> = Arc<dyn Fn() -> E + Send + Sync>;
type Replace<T> = Arc<dyn Fn(T) -> T + Send + Sync>;

/// Which faults to inject, at which rates, from which seed.
///
/// Each rate is a probability, drawn afresh at every position of a stream: before its
/// first item, before each following item and before its end. At a position the faults
/// are tried in this order, and the first that is drawn applies:
///
/// * **stall**: nothing more comes and nothing wakes the consumer, until it gives up and
///   drops the stream (as a hung connection would);
/// * **early end**: the stream ends there, cleanly;
/// * **error**: the stream yields the error made by the given function, then ends;
/// * **latency** (combines with what follows): the stream waits before polling the wrapped
///   stream for the position's item;
/// * **replace** (after the item came): the item is replaced by the function's result.
///
/// A future wrapped with [`chaos_future`](super::chaos_future) has one position, its
/// output; an early end does not apply to it.
///
/// Runs are reproducible: the `n`-th stream or future wrapped with a `Chaos` (or with a
/// clone of it: clones share the count) draws from a generator seeded with the seed and
/// `n`, so the same program wrapping in the same order sees the same faults at the same
/// places. Every position draws once for every fault, configured or not, so that adding
/// a fault leaves the draws of the others where they were.
///
/// Rates are checked: one outside `0..=1`, or NaN, makes [`chaos`](super::chaos) and
/// [`chaos_future`](super::chaos_future) return a [`ChaosError`].
pub struct Chaos<T, E> {
    seed: u64,
    runs: Arc<AtomicU64>,
    faults: Faults<T, E>,
    invalid: Option<ChaosError>,
}

/// The faults and their rates, copied into every wrapped stream.
pub(crate) struct Faults<T, E> {
    error: Option<(f64, MakeError<E>)>,
    latency: Option<(f64, Duration)>,
    stall: f64,
    early_end: f64,
    replace: Option<(f64, Replace<T>)>,
}

impl<T, E> Clone for Faults<T, E> {
    fn clone(&self) -> Self {
        Faults {
            error: self.error.clone(),
            latency: self.latency,
            stall: self.stall,
            early_end: self.early_end,
            replace: self.replace.clone(),
        }
    }
}

impl<T, E> Clone for Chaos<T, E> {
    fn clone(&self) -> Self {
        Chaos {
            seed: self.seed,
            runs: Arc::clone(&self.runs),
            faults: self.faults.clone(),
            invalid: self.invalid,
        }
    }
}

impl<T, E> fmt::Debug for Chaos<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("seed", &self.seed)
            .field(
                "error_rate",
                &self.faults.error.as_ref().map(|(rate, _)| rate),
            )
            .field("latency", &self.faults.latency)
            .field("stall_rate", &self.faults.stall)
            .field("early_end_rate", &self.faults.early_end)
            .field(
                "replace_rate",
                &self.faults.replace.as_ref().map(|(rate, _)| rate),
            )
            .field("invalid", &self.invalid)
            .finish()
    }
}

impl<T, E> Chaos<T, E> {
    /// No faults yet, drawing from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Chaos {
            seed,
            runs: Arc::new(AtomicU64::new(0)),
            faults: Faults {
                error: None,
                latency: None,
                stall: 0.0,
                early_end: 0.0,
                replace: None,
            },
            invalid: None,
        }
    }

    /// At each position, with probability `rate`, the error `make` returns, then the end.
    #[must_use]
    pub fn error_rate(mut self, rate: f64, make: impl Fn() -> E + Send + Sync + 'static) -> Self {
        self.check("error", rate);
        self.faults.error = Some((rate, Arc::new(make)));
        self
    }

    /// At each position, with probability `rate`, a wait of `delay` before the item.
    #[must_use]
    pub fn latency(mut self, rate: f64, delay: Duration) -> Self {
        self.check("latency", rate);
        self.faults.latency = Some((rate, delay));
        self
    }

    /// At each position, with probability `rate`, a stall: no item and no end, ever.
    #[must_use]
    pub fn stall_rate(mut self, rate: f64) -> Self {
        self.check("stall", rate);
        self.faults.stall = rate;
        self
    }

    /// At each position, with probability `rate`, a clean end before the wrapped stream's.
    #[must_use]
    pub fn early_end_rate(mut self, rate: f64) -> Self {
        self.check("early end", rate);
        self.faults.early_end = rate;
        self
    }

    /// With probability `rate`, an item is replaced by what `replace` makes of it.
    #[must_use]
    pub fn replace_rate(
        mut self,
        rate: f64,
        replace: impl Fn(T) -> T + Send + Sync + 'static,
    ) -> Self {
        self.check("replace", rate);
        self.faults.replace = Some((rate, Arc::new(replace)));
        self
    }

    /// Keeps the first invalid rate, for `chaos` to report.
    fn check(&mut self, fault: &'static str, rate: f64) {
        if self.invalid.is_none() && !(0.0..=1.0).contains(&rate) {
            self.invalid = Some(ChaosError { fault, rate });
        }
    }

    /// The draws of the next wrapped stream or future.
    pub(crate) fn plan(&self) -> Result<Plan<T, E>, ChaosError> {
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        // Distinct, well-spread seeds for consecutive runs (the golden-ratio increment).
        let seed = self
            .seed
            .wrapping_add(run.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Ok(Plan {
            faults: self.faults.clone(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        })
    }
}

/// What happens at one position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Stall,
    EarlyEnd,
    Error,
    /// The item, after `delay` if any, replaced if `replace`.
    Item {
        delay: Option<Duration>,
        replace: bool,
    },
}

/// One wrapped stream's faults and generator.
pub(crate) struct Plan<T, E> {
    faults: Faults<T, E>,
    rng: Xoshiro256PlusPlus,
}

impl<T, E> Plan<T, E> {
    /// Draws the next position's fault.
    pub(crate) fn next(&mut self) -> Fault {
        let faults = &self.faults;
        let mut hit = |rate: f64| self.rng.random::<f64>() < rate;
        let stall = hit(faults.stall);
        let early_end = hit(faults.early_end);
        let error = hit(faults.error.as_ref().map_or(0.0, |(rate, _)| *rate));
        let delayed = hit(faults.latency.map_or(0.0, |(rate, _)| rate));
        let replace = hit(faults.replace.as_ref().map_or(0.0, |(rate, _)| *rate));
        if stall {
            Fault::Stall
        } else if early_end {
            Fault::EarlyEnd
        } else if error && faults.error.is_some() {
            Fault::Error
        } else {
            Fault::Item {
                delay: faults.latency.filter(|_| delayed).map(|(_, delay)| delay),
                replace: replace && faults.replace.is_some(),
            }
        }
    }

    /// The configured error; called only after [`Fault::Error`] was drawn.
    pub(crate) fn error(&self) -> E {
        let (_, make) = self.faults.error.as_ref().expect("an error was drawn");
        make()
    }

    /// `item`, replaced as configured; called only when `replace` was drawn.
    pub(crate) fn replace(&self, item: T) -> T {
        let (_, replace) = self.faults.replace.as_ref().expect("a replace was drawn");
        replace(item)
    }
}
