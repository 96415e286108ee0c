//! The queue of requests that booked a future instant and are sleeping until it.
//!
//! The bucket's `tat` already orders them (see `gcra.rs`); the queue exists so that a
//! waiter that gives up can hand its booking back: everyone booked behind it moves forward
//! by its share and is woken to re-arm its timer.

use std::collections::VecDeque;
use std::task::Waker;

struct Entry {
    id: u64,
    tokens: u32,
    admit_at: u64,
    waker: Waker,
}

/// Waiters in booking order, which is also the order of their `admit_at`.
#[derive(Default)]
pub(crate) struct Waiters {
    next_id: u64,
    queue: VecDeque<Entry>,
}

impl Waiters {
    pub(crate) fn push(&mut self, tokens: u32, admit_at: u64, waker: &Waker) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Entry {
            id,
            tokens,
            admit_at,
            waker: waker.clone(),
        });
        id
    }

    /// The waiter's current instant, after storing the waker to use if it moves.
    pub(crate) fn admit_at(&mut self, id: u64, waker: &Waker) -> Option<u64> {
        let entry = self.find(id)?;
        entry.waker.clone_from(waker);
        Some(entry.admit_at)
    }

    pub(crate) fn remove(&mut self, id: u64) {
        if let Ok(index) = self.index(id) {
            self.queue.remove(index);
        }
    }

    /// Removes a waiter that gave up at `now`. If its instant is still ahead, it hands back
    /// its tokens: the waiters behind it move `tokens · interval` earlier and are woken.
    /// Returns how far the bucket's `tat` must move back (zero once the instant has passed,
    /// since from then on the tokens counted as granted).
    pub(crate) fn cancel(&mut self, id: u64, now: u64, interval: u64) -> u64 {
        let Ok(index) = self.index(id) else { return 0 };
        let Some(gone) = self.queue.remove(index) else {
            return 0;
        };
        if gone.admit_at <= now {
            return 0;
        }
        let shift = u64::from(gone.tokens) * interval;
        for behind in self.queue.range_mut(index..) {
            behind.admit_at = behind.admit_at.saturating_sub(shift);
            behind.waker.wake_by_ref();
        }
        shift
    }

    fn find(&mut self, id: u64) -> Option<&mut Entry> {
        let index = self.index(id).ok()?;
        self.queue.get_mut(index)
    }

    fn index(&self, id: u64) -> Result<usize, usize> {
        self.queue.binary_search_by_key(&id, |entry| entry.id)
    }
}
