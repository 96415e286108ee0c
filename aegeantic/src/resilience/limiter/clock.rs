//! The limiter's time: nanoseconds since the limiter was made, from the cheapest clock that
//! is right for this build.
//!
//! Reading the system clock (`Instant::now`) costs about as much as the whole rest of a
//! grant, so production builds read the CPU's cycle counter instead, through `quanta`, which
//! calibrates it against the system clock once per process and falls back to the system
//! clock where no invariant counter exists.
//!
//! Tests need the other clock: `tokio::time::pause` freezes and advances tokio's clock, and
//! a limiter under test must follow it. A paused clock exists only when tokio is built with
//! its `test-util` feature, and that is known when this crate is compiled (see
//! [`tokio_clock_can_pause`]), so a build with `test-util` uses tokio's clock throughout and
//! any other build uses the counter. Each limiter keeps one clock for its whole life: mixing
//! two clocks in one bucket would let their disagreement admit extra tokens.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) enum Clock {
    /// The CPU's cycle counter, as `quanta` raw ticks since `epoch`, converted to
    /// nanoseconds as `ticks · scale / 2^32`.
    Counter {
        counter: quanta::Clock,
        epoch: u64,
        scale: u64,
    },
    /// tokio's clock, which follows `tokio::time::pause` and `advance`.
    Tokio { epoch: Instant },
}

/// The fixed point of the counter's tick-to-nanosecond ratio.
const SCALE_SHIFT: u32 = 32;

impl Clock {
    /// The clock for this build: tokio's where it can be paused, the counter elsewhere.
    pub(crate) fn new() -> Self {
        if tokio_clock_can_pause() {
            Clock::tokio()
        } else {
            Clock::counter()
        }
    }

    pub(crate) fn counter() -> Self {
        // Made once: making a `quanta::Clock` asks the CPU for its features, which a
        // virtual machine's hypervisor answers slowly.
        static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();
        let counter = COUNTER.get_or_init(quanta::Clock::new).clone();
        // quanta's own conversion shifts by an amount read at run time, a slow instruction
        // sequence on the grant's critical path; a shift known when compiling is one
        // instruction. Its ratio read off 2^32 ticks keeps nine significant digits. Where
        // quanta fell back to the system clock, raw ticks are nanoseconds and the ratio 1.
        let scale = counter.delta_as_nanos(0, 1 << SCALE_SHIFT);
        let epoch = counter.raw();
        Clock::Counter {
            counter,
            epoch,
            scale,
        }
    }

    pub(crate) fn tokio() -> Self {
        Clock::Tokio {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Clock::Counter {
                counter,
                epoch,
                scale,
            } => {
                // Saturating: cores' counters may disagree by a few ticks just after `epoch`.
                let ticks = counter.raw().saturating_sub(*epoch);
                ((u128::from(ticks) * u128::from(*scale)) >> SCALE_SHIFT) as u64
            }
            Clock::Tokio { epoch } => tokio_nanos_since(*epoch),
        }
    }

    /// The tokio instant for `at` nanoseconds since the epoch, to set a timer to.
    ///
    /// On the counter the instant is placed relative to both clocks' present, so the two
    /// clocks only need to agree over the length of one wait; a timer that still fires a
    /// little early by the counter is re-armed by the waiter (see `acquire.rs`).
    pub(crate) fn deadline(&self, at: u64) -> Instant {
        match self {
            Clock::Counter { .. } => {
                Instant::now() + Duration::from_nanos(at.saturating_sub(self.now()))
            }
            Clock::Tokio { epoch } => *epoch + Duration::from_nanos(at),
        }
    }
}

/// Out of line: inlined, this read doubled the size of the grant, and a grant that is
/// inlined into the caller's poll must stay small for the compiler to inline that poll in
/// turn. Only test builds, which measure nothing, take this path.
#[inline(never)]
fn tokio_nanos_since(epoch: Instant) -> u64 {
    Instant::now().saturating_duration_since(epoch).as_nanos() as u64
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clock::Counter { .. } => "Counter",
            Clock::Tokio { .. } => "Tokio",
        })
    }
}

/// Whether tokio was built with `test-util`, the only build in which its clock can be paused.
///
/// `Builder::start_paused` exists exactly when `test-util` is on. A path like
/// `Builder::start_paused` resolves to an inherent method before a trait method of the same
/// name, so it names tokio's method when there is one and [`NoTestUtil::start_paused`]
/// otherwise; the two return different types, and [`Pausable`] reads the answer off the
/// type. The whole decision is made by the compiler.
fn tokio_clock_can_pause() -> bool {
    use tokio::runtime::Builder;

    struct Absent;

    trait NoTestUtil {
        // Shadowed by tokio's own method, and so never called, when `test-util` is on.
        #[allow(dead_code)]
        fn start_paused(&mut self, _: bool) -> Absent {
            Absent
        }
    }
    impl NoTestUtil for Builder {}

    trait Pausable {
        const PAUSABLE: bool;
    }
    impl Pausable for &mut Builder {
        const PAUSABLE: bool = true;
    }
    impl Pausable for Absent {
        const PAUSABLE: bool = false;
    }

    fn returns<R: Pausable>(_: fn(&'static mut Builder, bool) -> R) -> bool {
        R::PAUSABLE
    }
    returns(Builder::start_paused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_are_built_with_a_pausable_tokio_clock() {
        // The dev-dependencies turn on tokio's `test-util`, so the probe must see it; the
        // bench package, built without it, checks the other answer.
        assert!(tokio_clock_can_pause());
        assert!(matches!(Clock::new(), Clock::Tokio { .. }));
    }

    #[test]
    fn the_counter_keeps_time_with_the_system_clock() {
        let clock = Clock::counter();
        let start = std::time::Instant::now();
        let from = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let counted = clock.now() - from;
        let elapsed = start.elapsed().as_nanos() as u64;
        // Both measure the same sleep; allow for the reads not being simultaneous.
        assert!(
            counted.abs_diff(elapsed) < 2_000_000,
            "{counted} vs {elapsed} ns"
        );
    }
}
