//! Native threads: every one is named, blocks every signal but the fatal ones (so it never
//! takes one meant for Prosody's handlers), survives a panic in the work it is given, and is started again in a
//! forked child, since threads do not survive `fork` (Prosody 0.12's `-D` forks after modules
//! load).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A value that belongs to the process that made it: a forked child sees none and makes its own.
#[derive(Debug)]
pub(crate) struct PerProcess<T> {
    owner: Option<(u32, T)>,
}

impl<T> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess { owner: None }
    }

    /// This process's value, if it made one; a parent's value is dropped.
    pub(crate) fn get(&mut self) -> Option<&mut T> {
        let pid = std::process::id();
        if self.owner.as_ref().is_some_and(|(owner, _)| *owner != pid) {
            self.owner = None;
        }
        self.owner.as_mut().map(|(_, value)| value)
    }

    /// This process's value, made by `make` if there is none yet (or `make`'s error).
    pub(crate) fn get_or_try<E>(&mut self, make: impl FnOnce() -> Result<T, E>) -> Result<&mut T, E> {
        let pid = std::process::id();
        let value = match self.owner.take() {
            Some((owner, value)) if owner == pid => value,
            // A parent's value is dropped only once the new one exists (see runtime::signals).
            _parent => make()?,
        };
        Ok(&mut self.owner.insert((pid, value)).1)
    }
}

/// Starts a thread named `name` that blocks every signal and calls `work` for each item
/// `items` yields until it ends. A panic in `work` loses only that item.
pub(crate) fn spawn_worker<I, W>(name: &str, items: I, mut work: W) -> io::Result<()>
where
    I: IntoIterator + Send + 'static,
    W: FnMut(I::Item) + Send + 'static,
{
    std::thread::Builder::new().name(name.into()).spawn(move || {
        super::os::block_all_signals();
        for item in items {
            let _ = catch_unwind(AssertUnwindSafe(|| work(item)));
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_panic_loses_one_item_only() {
        let (items, receiver) = mpsc::channel::<u32>();
        let (done, results) = mpsc::channel::<u32>();
        spawn_worker("test-worker", receiver, move |n| {
            assert_ne!(n, 2, "a bug in one item");
            let _ = done.send(n);
        })
        .expect("spawn");
        for n in 1..=3 {
            items.send(n).expect("send");
        }
        drop(items);
        assert_eq!(results.iter().collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn per_process_value_is_made_once() {
        let mut value = PerProcess::new();
        assert!(value.get().is_none());
        assert_eq!(*value.get_or_try(|| Ok::<_, ()>(1)).expect("made"), 1);
        assert_eq!(*value.get_or_try(|| Ok::<_, ()>(2)).expect("kept"), 1);
    }
}
