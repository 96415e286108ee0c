//! How an attempt's stream is opened: again from the start, from a cursor, or by calling a
//! future's factory.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::resilience::concurrency::{ConcurrencyLimited, ConcurrencyLimiter};

/// Where a resumed stream should continue: what the consumer has already received.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Cursor<T> {
    /// Items delivered so far, across all attempts.
    pub delivered: u64,
    /// The last item delivered, if any.
    pub last: Option<T>,
}

/// Opens the stream for each attempt. Implemented by [`Reopen`], [`Resume`], [`Invoke`]
/// and [`Limited`]; not meant for other types.
pub trait Opener<T>: sealed::Sealed {
    /// The stream of one attempt.
    type Stream;

    /// Opens the next attempt's stream.
    fn open(&mut self) -> Self::Stream;

    /// Notes an item the consumer received.
    fn delivered(&mut self, item: &T);

    /// Whether the next attempt continues after the delivered items.
    fn resumes(&self) -> bool;
}

mod sealed {
    pub trait Sealed {}
}

/// Opens every attempt with a plain factory, from the start.
#[derive(Clone, Debug)]
pub struct Reopen<F>(pub(crate) F);

impl<F> sealed::Sealed for Reopen<F> {}

impl<F, S, T> Opener<T> for Reopen<F>
where
    F: FnMut() -> S,
{
    type Stream = S;

    fn open(&mut self) -> S {
        (self.0)()
    }

    fn delivered(&mut self, _item: &T) {}

    fn resumes(&self) -> bool {
        false
    }
}

/// Opens each attempt from a [`Cursor`], so that a retry continues where the stream broke.
#[derive(Clone, Debug)]
pub struct Resume<F, T> {
    factory: F,
    cursor: Cursor<T>,
}

impl<F, T> Resume<F, T> {
    pub(crate) fn new(factory: F) -> Self {
        Resume {
            factory,
            cursor: Cursor {
                delivered: 0,
                last: None,
            },
        }
    }
}

impl<F, T> sealed::Sealed for Resume<F, T> {}

impl<F, S, T> Opener<T> for Resume<F, T>
where
    F: FnMut(&Cursor<T>) -> S,
    T: Clone,
{
    type Stream = S;

    fn open(&mut self) -> S {
        (self.factory)(&self.cursor)
    }

    fn delivered(&mut self, item: &T) {
        self.cursor.delivered += 1;
        self.cursor.last = Some(item.clone());
    }

    fn resumes(&self) -> bool {
        true
    }
}

/// Opens each attempt with `O`, holding a slot of a [`ConcurrencyLimiter`] while the
/// attempt's stream runs; see
/// [`ResilientStream::with_concurrency`](super::ResilientStream::with_concurrency).
#[derive(Clone, Debug)]
pub struct Limited<O> {
    opener: O,
    limiter: ConcurrencyLimiter,
}

impl<O> Limited<O> {
    pub(crate) fn new(opener: O, limiter: ConcurrencyLimiter) -> Self {
        Limited { opener, limiter }
    }
}

impl<O> sealed::Sealed for Limited<O> {}

impl<O: Opener<T>, T> Opener<T> for Limited<O>
where
    O::Stream: Stream,
{
    type Stream = ConcurrencyLimited<O::Stream>;

    fn open(&mut self) -> Self::Stream {
        self.limiter.limit_stream(self.opener.open())
    }

    fn delivered(&mut self, item: &T) {
        self.opener.delivered(item);
    }

    fn resumes(&self) -> bool {
        self.opener.resumes()
    }
}

/// Opens every attempt by calling a future's factory; the attempt's stream yields the
/// future's output and ends. What [`retry`](crate::resilience::retry) runs on.
#[derive(Clone, Debug)]
pub struct Invoke<F>(pub(crate) F);

impl<F> sealed::Sealed for Invoke<F> {}

impl<F, Fut, T, E> Opener<T> for Invoke<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Stream = Once<Fut>;

    #[inline]
    fn open(&mut self) -> Once<Fut> {
        Once {
            future: Some((self.0)()),
        }
    }

    #[inline]
    fn delivered(&mut self, _item: &T) {}

    #[inline]
    fn resumes(&self) -> bool {
        false
    }
}

pin_project! {
    /// One future as a stream of its one output.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Once<Fut> {
        #[pin]
        future: Option<Fut>,
    }
}

impl<Fut: Future> Stream for Once<Fut> {
    type Item = Fut::Output;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Fut::Output>> {
        let mut future = self.project().future;
        let Some(pending) = future.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let output = ready!(pending.poll(cx));
        future.set(None);
        Poll::Ready(Some(output))
    }
}
