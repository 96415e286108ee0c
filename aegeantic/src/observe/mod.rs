//! What the resilience layer did, for dashboards: metrics through the `metrics` facade
//! (feature `metrics`). The core calls in here where it makes its events; nothing here
//! imports the core, so the calls cannot form a circle.

#[cfg(feature = "metrics")]
pub(crate) mod metrics;
