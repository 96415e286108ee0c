//! Adapters that bring the core's policies to other ecosystems, each behind its own
//! feature. They are thin: the limiter, the retry decisions and the events are the core's.
//!
//! | module   | feature | gives                                                        |
//! |----------|---------|--------------------------------------------------------------|
//! | [`tower`] | `tower` | a shared rate limit, a `tower::retry::Policy`, a body-long concurrency limit |

#[cfg(feature = "tower")]
pub mod tower;
