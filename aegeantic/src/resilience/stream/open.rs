//! How an attempt's stream is opened: again from the start, or from a cursor.

/// Where a resumed stream should continue: what the consumer has already received.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Cursor<T> {
    /// Items delivered so far, across all attempts.
    pub delivered: u64,
    /// The last item delivered, if any.
    pub last: Option<T>,
}

/// Opens the stream for each attempt. Implemented by [`Reopen`] and [`Resume`]; not meant
/// for other types.
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
