//! The recorder: a sink's ring plus the bookkeeping that lets a failed dump give its lines
//! back in the right place.
//!
//! Each dump takes every line out as a numbered batch. A dump that fails puts its batch back in
//! front of the lines logged since, and behind any older batch that failed too, whatever order
//! the failures come in (a dump written in the background may fail after a later one failed at
//! once). The limit then applies to the whole: the next dump holds exactly the newest lines the
//! limit allows, each once, oldest first.
//!
//! A batch can hold lines of several origins: a failed batch given back and taken again by the
//! next dump, together with the lines logged since, while a batch older than it is still being
//! written. So a batch says where each run of its lines came from (its `parts`), and giving it
//! back puts each run in its own place: lines of an older batch that fails later still go in
//! front of them.
//!
//! A sink made anew by a logging reload adopts its predecessor's lines (see [`Recorder::adopt`]):
//! they go in front of everything, and its own limit then applies the same way.

use super::ring::{Limit, Ring};

/// A batch of lines taken out by a dump.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Its lines, front to back, as runs of (origin, count): the number of the batch that first
    /// took them (plus one; 0 for lines adopted from a predecessor), and how many.
    parts: Vec<(u64, usize)>,
    pub(crate) lines: Ring,
    /// Lines dropped (by the limit, or as too old) since the previous batch was taken and not
    /// yet reported by a dump that succeeded: a dump says so after its header.
    pub(crate) dropped: u64,
    /// The dump's id, if its records carry one (see `records`): a failed dump's lines keep it
    /// until they are taken again...
    pub(crate) id: Option<String>,
    /// ...and that batch then says, oldest first, how many of its first lines each failed dump
    /// had sent before (by id).
    pub(crate) resent: Vec<(String, usize)>,
    /// A persisted sink's journal mark when the batch was taken (see `runtime::persist`).
    pub(crate) journal_mark: Option<u64>,
}

impl Batch {
    /// Its runs as they are now: lines dropped from its front since it was taken (`max_age`)
    /// are taken off its oldest runs.
    fn runs(&self) -> Vec<(u64, usize)> {
        let listed: usize = self.parts.iter().map(|(_, n)| n).sum();
        let mut gone = listed.saturating_sub(self.lines.lines());
        let mut runs = Vec::with_capacity(self.parts.len());
        for &(origin, count) in &self.parts {
            let here = gone.min(count);
            gone -= here;
            if count > here {
                runs.push((origin, count - here));
            }
        }
        runs
    }
}

/// A run of a failed batch given back: the origin of its lines (see [`Batch`]), how many of
/// them are still at the front of the ring, and the failed dump's id.
#[derive(Debug)]
struct Returned {
    origin: u64,
    lines: usize,
    id: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) ring: Ring,
    next_batch: u64,
    /// Lines adopted from a predecessor, oldest first, at the very front of the ring: how many
    /// of each adopted part are still there, and the failed dump each part was in, if any...
    adopted: Vec<(Option<String>, usize)>,
    /// The batches given back since the last take, in batch order, with how many of their
    /// lines are still at the front of the ring...
    returned: Vec<Returned>,
    /// ...as of this many lines dropped by the ring (the limit drops the oldest first).
    dropped_when_returned: u64,
    /// `ring.dropped()` when the last batch was taken.
    dropped_when_taken: u64,
    /// Drops counted into batches whose dumps failed: the next batch reports them.
    unreported: u64,
}

impl Recorder {
    pub(crate) fn new(limit: Limit) -> Self {
        Recorder {
            ring: Ring::new(limit),
            next_batch: 0,
            adopted: Vec::new(),
            returned: Vec::new(),
            dropped_when_returned: 0,
            dropped_when_taken: 0,
            unreported: 0,
        }
    }

    /// Takes every line out for a dump.
    pub(crate) fn take(&mut self) -> Batch {
        self.forget_dropped();
        let number = self.next_batch;
        self.next_batch += 1;
        let adopted: usize = self.adopted.iter().map(|(_, lines)| lines).sum();
        let mut parts: Vec<(u64, usize)> = Vec::new();
        if adopted > 0 {
            parts.push((0, adopted));
        }
        parts.extend(self.returned.iter().map(|r| (r.origin, r.lines)));
        let adopted = self.adopted.drain(..).filter_map(|(id, lines)| Some((id?, lines)));
        let resent = adopted.chain(self.returned.drain(..).filter_map(|r| Some((r.id?, r.lines)))).collect();
        let lines = self.ring.take();
        let earlier: usize = parts.iter().map(|(_, n)| n).sum();
        if lines.lines() > earlier {
            parts.push((number + 1, lines.lines() - earlier));
        }
        let dropped_now = self.ring.dropped();
        let dropped = std::mem::take(&mut self.unreported) + (dropped_now - self.dropped_when_taken);
        self.dropped_when_taken = dropped_now;
        Batch { parts, lines, dropped, id: None, resent, journal_mark: None }
    }

    /// Lines dropped since the last batch was taken, with those of failed dumps.
    pub(crate) fn dropped_since_take(&self) -> u64 {
        self.unreported + (self.ring.dropped() - self.dropped_when_taken)
    }

    /// Puts the lines of a failed dump back where they belong.
    pub(crate) fn give_back(&mut self, batch: Batch) {
        self.unreported += batch.dropped;
        self.forget_dropped();
        let mut lines = batch.lines.iter();
        for (origin, count) in batch.runs() {
            let adopted: usize = self.adopted.iter().map(|(_, lines)| lines).sum();
            let mut run = Ring::new(Limit::Lines(count.max(1)));
            for line in lines.by_ref().take(count) {
                run.push(&line.to_vec(), line.meta);
            }
            let earlier = self.returned.partition_point(|r| r.origin < origin);
            let position = adopted + self.returned[..earlier].iter().map(|r| r.lines).sum::<usize>();
            self.returned.insert(earlier, Returned { origin, lines: count, id: batch.id.clone() });
            self.ring.insert(position, &run);
            self.forget_dropped();
        }
    }

    /// Puts a predecessor's lines (all older than any line here: see `runtime::sink`) in front of
    /// everything, then applies this recorder's limit: the newest lines win, and what the limit
    /// cuts is counted as dropped like any other drop. `batch` is what the predecessor's
    /// [`Recorder::take`] returned (its lines, its unreported drops and the failed dumps its
    /// first lines were in), or a failed dump of the predecessor's that came back later.
    pub(crate) fn adopt(&mut self, batch: Batch) {
        self.unreported += batch.dropped;
        self.forget_dropped();
        let total = batch.lines.lines();
        let mut parts: Vec<(Option<String>, usize)> = match batch.id {
            // A failed dump: all its lines were in it (as `give_back` counts them).
            Some(id) => vec![(Some(id), total)],
            None => batch.resent.into_iter().map(|(id, lines)| (Some(id), lines)).collect(),
        };
        let rest = total.saturating_sub(parts.iter().map(|(_, lines)| lines).sum());
        if rest > 0 {
            parts.push((None, rest));
        }
        parts.append(&mut self.adopted);
        self.adopted = parts;
        self.ring.insert(0, &batch.lines);
        self.forget_dropped();
    }

    /// Takes the lines the ring dropped since the last look off the oldest adopted and returned
    /// lines.
    fn forget_dropped(&mut self) {
        let dropped = self.ring.dropped();
        let mut gone = (dropped - self.dropped_when_returned) as usize;
        self.dropped_when_returned = dropped;
        let fronts = self.adopted.iter_mut().map(|(_, lines)| lines);
        for lines in fronts.chain(self.returned.iter_mut().map(|r| &mut r.lines)) {
            let here = gone.min(*lines);
            *lines -= here;
            gone -= here;
        }
        self.adopted.retain(|(_, lines)| *lines > 0);
        self.returned.retain(|r| r.lines > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_all(recorder: &mut Recorder, lines: &[&str]) {
        for line in lines {
            recorder.ring.push(line.as_bytes(), 0);
        }
    }

    fn contents(recorder: &Recorder) -> Vec<String> {
        recorder.ring.iter().map(|l| String::from_utf8(l.to_vec()).expect("utf8")).collect()
    }

    #[test]
    fn failed_batches_come_back_in_order_whatever_order_they_fail_in() {
        let mut recorder = Recorder::new(Limit::Lines(100));
        let mut batches = Vec::new();
        for n in 1..=4 {
            push_all(&mut recorder, &[&format!("{n}a"), &format!("{n}b")]);
            batches.push(recorder.take());
        }
        push_all(&mut recorder, &["5a"]);
        // Batches 3 and 4 fail first (at once), then 1 and 2 (in the background).
        let mut batches = batches.into_iter();
        let (one, two, three, four) = (batches.next(), batches.next(), batches.next(), batches.next());
        for batch in [three, four, one, two].into_iter().flatten() {
            recorder.give_back(batch);
        }
        assert_eq!(contents(&recorder), ["1a", "1b", "2a", "2b", "3a", "3b", "4a", "4b", "5a"]);
    }

    #[test]
    fn lines_given_back_and_taken_again_while_an_older_batch_is_out_keep_their_order() {
        // The writer fails each dump after the next one has taken its lines: a batch then holds
        // lines of an older failed batch and new ones, with an even older batch still out.
        for limit in [100, 4] {
            let mut recorder = Recorder::new(Limit::Lines(limit));
            push_all(&mut recorder, &["1"]);
            let mut out = vec![recorder.take()];
            for n in 2..=5 {
                push_all(&mut recorder, &[&n.to_string()]);
                out.push(recorder.take());
                recorder.give_back(out.remove(0));
            }
            push_all(&mut recorder, &["6"]);
            recorder.give_back(out.remove(0));
            let expected = ["1", "2", "3", "4", "5", "6"];
            assert_eq!(contents(&recorder), expected[6 - limit.min(6)..], "limit {limit}");
        }
    }

    #[test]
    fn the_limit_keeps_the_newest_lines_across_failures() {
        let mut recorder = Recorder::new(Limit::Lines(4));
        push_all(&mut recorder, &["1", "2", "3"]);
        let first = recorder.take();
        push_all(&mut recorder, &["4", "5"]);
        let second = recorder.take();
        push_all(&mut recorder, &["6"]);
        recorder.give_back(second);
        recorder.give_back(first);
        assert_eq!(contents(&recorder), ["3", "4", "5", "6"]);
        // Lines logged later push the returned ones out, oldest first; a late failure of an
        // older batch then goes in front of what is left of them, and is cut by the limit.
        let third = recorder.take();
        push_all(&mut recorder, &["7", "8", "9"]);
        recorder.give_back(third);
        assert_eq!(contents(&recorder), ["6", "7", "8", "9"]);
    }

    #[test]
    fn each_dump_learns_what_was_dropped_since_the_last_one_that_worked() {
        let mut recorder = Recorder::new(Limit::Lines(2));
        push_all(&mut recorder, &["1", "2", "3", "4", "5"]);
        let first = recorder.take();
        assert_eq!(first.dropped, 3);
        push_all(&mut recorder, &["6"]);
        assert_eq!(recorder.take().dropped, 0);
        push_all(&mut recorder, &["7", "8", "9"]);
        let failed = recorder.take();
        assert_eq!(failed.dropped, 1);
        recorder.give_back(failed);
        push_all(&mut recorder, &["10"]);
        // The failed dump's drop, and the line its give-back pushed out since.
        let next = recorder.take();
        assert_eq!(next.dropped, 2);
        assert_eq!(next.lines.lines(), 2);
    }

    #[test]
    fn eviction_between_failures_is_accounted_for() {
        let mut recorder = Recorder::new(Limit::Lines(3));
        push_all(&mut recorder, &["1", "2"]);
        let first = recorder.take();
        push_all(&mut recorder, &["3"]);
        let second = recorder.take();
        recorder.give_back(second);
        push_all(&mut recorder, &["4", "5", "6"]);
        recorder.give_back(first);
        assert_eq!(contents(&recorder), ["4", "5", "6"]);
    }

    #[test]
    fn the_next_batch_says_which_failed_dumps_it_sends_again() {
        let mut recorder = Recorder::new(Limit::Lines(4));
        push_all(&mut recorder, &["1", "2", "3"]);
        let mut failed = recorder.take();
        failed.id = Some("9-1".into());
        push_all(&mut recorder, &["4"]);
        recorder.give_back(failed);
        push_all(&mut recorder, &["5"]); // the limit drops "1"
        let next = recorder.take();
        assert_eq!(next.resent, [("9-1".to_string(), 2)]);
        assert_eq!(next.lines.lines(), 4);
        assert!(recorder.take().resent.is_empty(), "said once");
    }

    #[test]
    fn adopted_lines_go_first_and_the_new_limit_keeps_the_newest() {
        let mut old = Recorder::new(Limit::Lines(10));
        push_all(&mut old, &["1", "2", "3", "4", "5", "6"]);
        let mut new = Recorder::new(Limit::Lines(4));
        push_all(&mut new, &["7"]);
        new.adopt(old.take());
        assert_eq!(contents(&new), ["4", "5", "6", "7"]);
        assert_eq!(new.dropped_since_take(), 3, "what the smaller limit cut is counted");
        let batch = new.take();
        assert_eq!((batch.dropped, batch.lines.lines()), (3, 4));
    }

    #[test]
    fn adopted_lines_keep_their_drops_and_stay_in_front_of_failed_dumps() {
        let mut old = Recorder::new(Limit::Lines(3));
        push_all(&mut old, &["1", "2", "3", "4", "5"]);
        let mut new = Recorder::new(Limit::Lines(100));
        push_all(&mut new, &["6"]);
        let failed = new.take();
        push_all(&mut new, &["7"]);
        new.adopt(old.take());
        new.give_back(failed);
        assert_eq!(contents(&new), ["3", "4", "5", "6", "7"]);
        assert_eq!(new.take().dropped, 2, "the predecessor's drops are reported by the next dump");
    }

    #[test]
    fn a_predecessors_failed_forward_is_said_to_be_sent_again() {
        let mut old = Recorder::new(Limit::Lines(10));
        push_all(&mut old, &["1", "2"]);
        let mut failed = old.take();
        failed.id = Some("9-1".into());
        push_all(&mut old, &["3"]);
        let mut new = Recorder::new(Limit::Lines(2));
        new.adopt(old.take());
        new.adopt(failed); // came back after the reload: older than what was adopted
        assert_eq!(contents(&new), ["2", "3"]);
        assert_eq!(new.take().resent, [("9-1".to_string(), 1)]);
    }
}
