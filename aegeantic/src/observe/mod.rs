//! What the resilience layer did, for dashboards and traces: metrics through the `metrics`
//! facade (feature `metrics`) and spans through `tracing` (feature `tracing`). The core
//! calls in here where it makes its events; nothing here imports the core, so the calls
//! cannot form a circle.

#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(feature = "tracing")]
mod spans;

#[cfg(feature = "tracing")]
pub(crate) use spans::Spans;

/// Without `tracing`, an operation has no spans and these cost nothing.
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Default)]
pub(crate) struct Spans;

#[cfg(not(feature = "tracing"))]
impl Spans {
    #[inline(always)]
    pub(crate) fn attempt(&mut self, _name: &str, _kind: &str, _attempt: u32) {}
    #[inline(always)]
    pub(crate) fn wait(&mut self, _tokens: u32) {}
    #[inline(always)]
    pub(crate) fn waited(&mut self) {}
    #[inline(always)]
    pub(crate) fn attempt_ended(&mut self) {}
    #[inline(always)]
    pub(crate) fn close(&mut self) {}
    #[inline(always)]
    pub(crate) fn enter(&self) -> Entered {
        Entered
    }
}

/// Nothing entered.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Entered;
