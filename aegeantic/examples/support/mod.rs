//! A simulated LLM for the examples: streams words with small gaps and fails on cue.
#![allow(dead_code)] // each example uses a part

use std::io;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};

/// What one attempt does.
#[derive(Clone, Copy, Debug)]
pub enum Attempt {
    /// Streams every word.
    Ok,
    /// Fails before the first word (the connection is refused).
    Refused,
    /// Fails before the first word (the request times out).
    TimesOut,
    /// Streams `n` words, then the connection drops.
    DropsAfter(usize),
    /// Fails with an error that is not worth retrying.
    Denied,
}

/// One attempt: the words of `text`, 15 ms apart, behaving as `attempt` says.
pub fn llm_stream(text: &'static str, attempt: Attempt) -> BoxStream<'static, io::Result<String>> {
    async_stream::stream! {
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        let cut = match attempt {
            Attempt::Ok => words.len(),
            Attempt::Refused | Attempt::TimesOut => 0,
            Attempt::DropsAfter(n) => n.min(words.len()),
            Attempt::Denied => {
                yield Err(io::Error::new(io::ErrorKind::PermissionDenied, "401: invalid API key"));
                return;
            }
        };
        for word in &words[..cut] {
            tokio::time::sleep(Duration::from_millis(15)).await;
            yield Ok(word.to_string());
        }
        match attempt {
            Attempt::Refused => yield Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
            Attempt::TimesOut => yield Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out")),
            Attempt::DropsAfter(_) => yield Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset mid-stream",
            )),
            Attempt::Ok | Attempt::Denied => {}
        }
    }
    .boxed()
}

/// A factory for `retry_stream` / `resilient_stream`: attempt `k` behaves as `plan[k]`
/// (the last entry repeats).
pub fn flaky_llm(
    text: &'static str,
    plan: &[Attempt],
) -> impl FnMut() -> BoxStream<'static, io::Result<String>> + Send + 'static {
    let plan = plan.to_vec();
    let mut calls = 0;
    move || {
        let attempt = plan[calls.min(plan.len() - 1)];
        calls += 1;
        llm_stream(text, attempt)
    }
}
