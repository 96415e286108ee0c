//! The core's policies inside the stacks Rust users already have, one module per
//! ecosystem, each behind its own feature. They are thin: every wait, retry decision and
//! token comes from [`resilience`](crate::resilience).
//!
//! | module                 | feature              | gives                                              |
//! |------------------------|----------------------|----------------------------------------------------|
//! | `tower`                | `tower`              | a shared rate limit, a `tower::retry::Policy`, a body-long concurrency limit |
//! | `reqwest_middleware`   | `reqwest-middleware` | one `Middleware`: rate limit, retry, quota headers |

#[cfg(feature = "reqwest-middleware")]
pub mod reqwest_middleware;
#[cfg(feature = "tower")]
pub mod tower;
