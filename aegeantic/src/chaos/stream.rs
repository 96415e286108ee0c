//! The stream adapter that injects faults: [`ChaosStream`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::config::{Fault, Plan};

pin_project! {
    /// A stream with faults injected; see [`chaos`](super::chaos). Dropping it drops the
    /// wrapped stream, whatever it is doing (a stall included).
    #[must_use = "streams do nothing unless polled"]
    pub struct ChaosStream<S, T, E> {
        #[pin]
        inner: S,
        plan: Plan<T, E>,
        state: State,
    }
}

enum State {
    // About to draw the next position's fault.
    Draw,
    Delaying {
        sleep: Pin<Box<Sleep>>,
        replace: bool,
    },
    Forwarding {
        replace: bool,
    },
    Stalled,
    Done,
}

impl<S, T, E> ChaosStream<S, T, E> {
    pub(crate) fn new(inner: S, plan: Plan<T, E>) -> Self {
        ChaosStream {
            inner,
            plan,
            state: State::Draw,
        }
    }
}

impl<S, T, E> Stream for ChaosStream<S, T, E>
where
    S: Stream<Item = Result<T, E>>,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Draw => {
                    *this.state = match this.plan.next() {
                        Fault::Stall => State::Stalled,
                        Fault::EarlyEnd => {
                            *this.state = State::Done;
                            return Poll::Ready(None);
                        }
                        Fault::Error => {
                            *this.state = State::Done;
                            return Poll::Ready(Some(Err(this.plan.error())));
                        }
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
                    let replace = *replace;
                    let item = ready!(this.inner.as_mut().poll_next(cx));
                    *this.state = State::Draw;
                    return Poll::Ready(match item {
                        Some(Ok(item)) if replace => Some(Ok(this.plan.replace(item))),
                        None => {
                            *this.state = State::Done;
                            None
                        }
                        other => other,
                    });
                }
                // Nothing is registered to wake the task: only the consumer's own timer
                // or its dropping the stream ends a stall.
                State::Stalled => return Poll::Pending,
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl<S, T, E> FusedStream for ChaosStream<S, T, E>
where
    S: Stream<Item = Result<T, E>>,
{
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

impl<S, T, E> fmt::Debug for ChaosStream<S, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Draw => "draw",
            State::Delaying { .. } => "delaying",
            State::Forwarding { .. } => "forwarding",
            State::Stalled => "stalled",
            State::Done => "done",
        };
        f.debug_struct("ChaosStream")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
