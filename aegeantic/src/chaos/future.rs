//! The future wrapper that injects faults: [`ChaosFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::config::{Fault, Plan};

pin_project! {
    /// A future with faults injected; see [`chaos_future`](super::chaos_future).
    #[must_use = "futures do nothing unless awaited"]
    pub struct ChaosFuture<F, T, E> {
        #[pin]
        inner: F,
        plan: Plan<T, E>,
        state: State,
    }
}

enum State {
    Draw,
    Delaying {
        sleep: Pin<Box<Sleep>>,
        replace: bool,
    },
    Forwarding {
        replace: bool,
    },
    Stalled,
}

impl<F, T, E> ChaosFuture<F, T, E> {
    pub(crate) fn new(inner: F, plan: Plan<T, E>) -> Self {
        ChaosFuture {
            inner,
            plan,
            state: State::Draw,
        }
    }
}

impl<F, T, E> Future for ChaosFuture<F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Draw => {
                    *this.state = match this.plan.next() {
                        Fault::Stall => State::Stalled,
                        // A future has no end of its own to come early: its output is
                        // left as it is.
                        Fault::EarlyEnd => State::Forwarding { replace: false },
                        Fault::Error => return Poll::Ready(Err(this.plan.error())),
                        Fault::Item {
                            delay: Some(delay),
                            replace,
                        } => State::Delaying {
                            sleep: Box::pin(tokio::time::sleep(delay)),
                            replace,
                        },
                        Fault::Item {
                            delay: None,
                            replace,
                        } => State::Forwarding { replace },
                    };
                }
                State::Delaying { sleep, replace } => {
                    ready!(sleep.as_mut().poll(cx));
                    *this.state = State::Forwarding { replace: *replace };
                }
                State::Forwarding { replace } => {
                    let output = ready!(this.inner.as_mut().poll(cx));
                    return Poll::Ready(match output {
                        Ok(value) if *replace => Ok(this.plan.replace(value)),
                        other => other,
                    });
                }
                // Only the caller's timer or its dropping the future ends a stall.
                State::Stalled => return Poll::Pending,
            }
        }
    }
}

impl<F, T, E> fmt::Debug for ChaosFuture<F, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Draw => "draw",
            State::Delaying { .. } => "delaying",
            State::Forwarding { .. } => "forwarding",
            State::Stalled => "stalled",
        };
        f.debug_struct("ChaosFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
