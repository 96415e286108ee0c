//! The queue of requests that booked a future instant and are sleeping until it.
//!
//! The bucket's `tat` already orders them (see `gcra.rs`); the queue exists so that a
//! waiter that gives up can hand its booking back: everyone booked behind it moves forward
//! by its share.
//!
//! Moving up means re-arming a timer, but only the waiter directly behind the gap is woken
//! to do so. The others are marked `moved` and woken one at a time, each when the waiter
//! ahead of it leaves the queue. A moved waiter's new instant is never earlier than that of
//! the waiter ahead, so it still re-arms in time; and a queue of `n` that is abandoned from
//! the front costs `n` wake-ups, not `n²/2`. A moved waiter whose timer fires first is late,
//! never early: its old instant is after its new one.

use std::collections::VecDeque;
use std::task::Waker;

struct Entry {
    id: u64,
    tokens: u32,
    admit_at: u64,
    waker: Waker,
    /// `admit_at` moved up since the waiter last read it.
    moved: bool,
}

/// Waiters in booking order, which is also the order of their `admit_at`.
#[derive(Default)]
pub(crate) struct Waiters {
    next_id: u64,
    queue: VecDeque<Entry>,
    /// Nanoseconds refunds have moved the bucket's `tat` back, in all (see `adjust.rs`).
    pub(crate) refunded: u64,
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
            moved: false,
        });
        id
    }

    /// The waiter's current instant, after storing the waker to use if it moves.
    pub(crate) fn admit_at(&mut self, id: u64, waker: &Waker) -> Option<u64> {
        let entry = self.find(id)?;
        entry.waker.clone_from(waker);
        entry.moved = false;
        Some(entry.admit_at)
    }

    /// Removes a waiter that was granted; returns its instant.
    pub(crate) fn remove(&mut self, id: u64) -> Option<u64> {
        let index = self.index(id).ok()?;
        let granted = self.queue.remove(index)?;
        self.wake_if_moved(index);
        Some(granted.admit_at)
    }

    /// Removes a waiter that gave up at `now`. If its instant is still ahead, it offers its
    /// tokens back: `give_back(last, shift)`, told the instant of the last waiter queued,
    /// is asked to move the bucket's `tat` back by `shift` and says whether it did. Only
    /// then do the waiters behind move `shift` earlier. (Once the instant has passed, the
    /// tokens counted as granted.)
    pub(crate) fn cancel(
        &mut self,
        id: u64,
        now: u64,
        interval: u64,
        give_back: impl FnOnce(u64, u64) -> bool,
    ) {
        let Ok(index) = self.index(id) else { return };
        let Some(last) = self.queue.back().map(|last| last.admit_at) else {
            return;
        };
        let Some(gone) = self.queue.remove(index) else {
            return;
        };
        let shift = u64::from(gone.tokens) * interval;
        let given_back = gone.admit_at > now && give_back(last, shift);
        self.move_up(index, if given_back { shift } else { 0 });
    }

    /// Moves every waiter `shift` nanoseconds earlier: tokens came back to the bucket.
    pub(crate) fn advance(&mut self, shift: u64) {
        self.move_up(0, shift);
    }

    /// Moves the waiters from `index` on `shift` earlier and wakes the first of them.
    fn move_up(&mut self, index: usize, shift: u64) {
        if shift > 0 {
            for behind in self.queue.range_mut(index..) {
                behind.admit_at = behind.admit_at.saturating_sub(shift);
                behind.moved = true;
            }
        }
        self.wake_if_moved(index);
    }

    /// Wakes the waiter now at `index`, the one directly behind a waiter that left, if its
    /// instant moved since it last looked; the one that left can no longer pass it on.
    fn wake_if_moved(&self, index: usize) {
        if let Some(next) = self.queue.get(index).filter(|next| next.moved) {
            next.waker.wake_by_ref();
        }
    }

    fn find(&mut self, id: u64) -> Option<&mut Entry> {
        let index = self.index(id).ok()?;
        self.queue.get_mut(index)
    }

    fn index(&self, id: u64) -> Result<usize, usize> {
        self.queue.binary_search_by_key(&id, |entry| entry.id)
    }
}
