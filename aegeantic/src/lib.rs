//! Production-ready streams: retry with back-off and jitter, token-bucket rate limiting,
//! and [`RetryEvent`](events::RetryEvent) / [`RateLimitEvent`](events::RateLimitEvent)
//! delivered inline with the data, so a consumer sees what the resilience layer did where
//! it did it.
//!
//! ```
//! use std::{io, time::Duration};
//! use futures::{stream, StreamExt};
//! use aegeantic::resilience::{
//!     resilient_stream, RateLimitConfig, RateLimiter, Resilient, RetryConfig,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimiter::new(RateLimitConfig {
//!     requests_per_second: Some(10.0),
//!     burst_size: 20,
//!     ..RateLimitConfig::default()
//! })?;
//! let retry = RetryConfig::builder().base_delay(Duration::from_millis(10)).build()?;
//!
//! let mut attempts = 0;
//! let llm_call = move || {
//!     attempts += 1;
//!     let chunks = if attempts == 1 {
//!         vec![Ok("Hel"), Err(io::Error::from(io::ErrorKind::ConnectionReset))]
//!     } else {
//!         vec![Ok("Hel"), Ok("lo")]
//!     };
//!     stream::iter(chunks)
//! };
//!
//! let mut stream = resilient_stream(llm_call, Some(retry), Some(limiter), "gpt-4", "llm");
//! while let Some(item) = stream.next().await {
//!     match item? {
//!         Resilient::Item(chunk) => print!("{chunk}"),
//!         Resilient::Retry(event) => println!("\n[retry {}: {}]", event.attempt, event.error),
//!         Resilient::RateLimit(event) => println!("[{:.1} tokens left]", event.tokens_remaining),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "agent")]
pub mod agent;
pub mod events;
#[cfg(feature = "llm")]
pub mod llm;
pub mod resilience;
#[cfg(feature = "fault-server")]
pub mod testing;
