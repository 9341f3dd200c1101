//! A bounded number of places that never waits: each admin-shell read and each follower takes
//! one for as long as it runs, and one more gets a clear "busy" answer instead.

use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` places, counted in `taken`.
#[derive(Debug)]
pub(crate) struct Places {
    taken: AtomicUsize,
    max: usize,
    /// What holds them (`"reads"`), and what to do when all are taken, for the busy answer.
    what: &'static str,
    advice: &'static str,
}

impl Places {
    pub(crate) const fn new(max: usize, what: &'static str, advice: &'static str) -> Self {
        Places { taken: AtomicUsize::new(0), max, what, advice }
    }

    /// A place, given back when it is dropped; or the busy answer.
    pub(crate) fn take(&'static self) -> Result<Place, String> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .map(|_| Place(self))
            .map_err(|_| {
                format!(
                    "busy: {} ringbuffer {} are running already (the most at once); {}",
                    self.max, self.what, self.advice
                )
            })
    }

    /// How many are taken now.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }
}

/// One of a [`Places`]' places.
#[derive(Debug)]
pub(crate) struct Place(&'static Places);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_more_than_the_most_is_a_busy_answer_until_one_is_given_back() {
        static SLOTS: Places = Places::new(2, "tests", "wait");
        let first = SLOTS.take().expect("a place");
        let second = SLOTS.take().expect("a place");
        assert_eq!(SLOTS.taken(), 2);
        let busy = SLOTS.take().expect_err("busy");
        assert_eq!(busy, "busy: 2 ringbuffer tests are running already (the most at once); wait");
        drop(first);
        let third = SLOTS.take().expect("the place given back");
        drop((second, third));
        assert_eq!(SLOTS.taken(), 0);
    }
}
