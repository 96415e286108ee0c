//! The core's policies inside the stacks Rust users already have, one module per
//! ecosystem, each behind its own feature. They are thin: every wait, retry decision and
//! token comes from [`resilience`](crate::resilience).

#[cfg(feature = "reqwest-middleware")]
pub mod reqwest_middleware;
