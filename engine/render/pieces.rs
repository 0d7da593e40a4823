//! Work split into numbered pieces that the worker owning it and helper tasks on other workers
//! take one at a time, in place of a rayon join.
//!
//! Why not a join: a worker that waits in a join runs whatever task it finds meanwhile, and on
//! a busy render pool that is another render's whole turn. A render's preparation, under the
//! earliest deadline, then stalls behind a render due later (a priority inversion; measured
//! under the soak's 256 players: up to 32 ms of a 50 ms first chunk). Here the owner takes
//! pieces until none is left (or its turn is over), then waits only for the pieces helpers
//! are running, each a fraction of a millisecond of work, and runs nothing else meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a piece does; the work is shared with helper tasks, so it owns what it reads.
pub(super) trait Piecewise: Send + Sync + 'static {
    fn run_piece(&self, piece: usize);
}

/// Helpers that can share work with the current thread: the other workers of the rayon pool it
/// runs on (of the global pool outside one).
pub(super) fn other_workers() -> usize {
    rayon::current_num_threads().saturating_sub(1)
}

/// `next` is set to this when the work is closed: every later claim lands at or past it, so
/// no piece is taken after [`Pieces::close`].
const CLOSED: usize = usize::MAX / 2;

pub(super) struct Pieces<W> {
    work: W,
    count: usize,
    /// The next piece to take.
    next: AtomicUsize,
    /// Pieces done: counted (release) after each piece's last write, read (acquire) before
    /// anyone reads what they wrote.
    finished: AtomicUsize,
}

impl<W: Piecewise> Pieces<W> {
    pub fn new(work: W, count: usize) -> Arc<Pieces<W>> {
        Arc::new(Pieces {
            work,
            count,
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        })
    }

    pub fn work(&self) -> &W {
        &self.work
    }

    /// Spawns `helpers` tasks on the current rayon pool (the global one outside a pool) that
    /// take pieces while any is left and the work is open. A helper that starts late finds
    /// nothing to do and returns at once.
    pub fn spawn_helpers(self: &Arc<Self>, helpers: usize) {
        for _ in 0..helpers.min(self.count) {
            let pieces = self.clone();
            rayon::spawn(move || pieces.work_on(None));
        }
    }

    /// Takes and runs pieces until none is left or the work is closed, or, with `until`,
    /// until that moment has passed (checked after each piece).
    pub fn work_on(&self, until: Option<Instant>) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                return;
            }
            self.work.run_piece(i);
            self.finished.fetch_add(1, Ordering::Release);
            if until.is_some_and(|t| Instant::now() >= t) {
                return;
            }
        }
    }

    /// Stops handing out pieces, waits for those taken to finish, and returns how many were
    /// taken: pieces `0..taken` are done and visible to the caller, the rest never started.
    pub fn close(&self) -> usize {
        let taken = self.next.swap(CLOSED, Ordering::Relaxed).min(self.count);
        self.wait_for(taken);
        taken
    }

    /// Runs what is left with the helpers, then waits for the pieces they are running.
    pub fn finish(&self) {
        self.work_on(None);
        self.wait_for(self.count);
    }

    /// Stops handing out pieces; those running finish on their own.
    pub fn cancel(&self) {
        self.next.store(CLOSED, Ordering::Relaxed);
    }

    pub fn is_done(&self) -> bool {
        self.finished.load(Ordering::Acquire) == self.count
    }

    fn wait_for(&self, taken: usize) {
        let mut spins = 0u32;
        while self.finished.load(Ordering::Acquire) < taken {
            // The pieces still running on other workers finish within their own length of
            // work, with nothing for them to wait on.
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// Records which pieces ran and how often.
    struct Count(Vec<Mutex<u32>>);

    impl Piecewise for Count {
        fn run_piece(&self, piece: usize) {
            *self.0[piece].lock() += 1;
        }
    }

    fn counted(n: usize) -> Arc<Pieces<Count>> {
        Pieces::new(Count((0..n).map(|_| Mutex::new(0)).collect()), n)
    }

    fn runs(p: &Pieces<Count>) -> Vec<u32> {
        p.work().0.iter().map(|c| *c.lock()).collect()
    }

    #[test]
    fn every_piece_runs_once_with_helpers() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for n in [0, 1, 2, 7, 100] {
            let p = counted(n);
            pool.install(|| {
                p.spawn_helpers(3);
                p.finish();
            });
            assert!(p.is_done());
            assert_eq!(runs(&p), vec![1; n], "{n} pieces");
        }
    }

    #[test]
    fn a_closed_turn_reports_the_pieces_taken_and_no_more_run() {
        let p = counted(10);
        // A turn already over after its first piece.
        p.work_on(Some(Instant::now()));
        let taken = p.close();
        assert_eq!(taken, 1);
        // Helpers that start after the close take nothing.
        p.work_on(None);
        p.spawn_helpers(2);
        let mut want = vec![0; 10];
        want[0] = 1;
        assert_eq!(runs(&p), want);
        assert!(!p.is_done());
    }

    #[test]
    fn a_cancelled_work_hands_out_nothing() {
        let p = counted(5);
        p.cancel();
        p.work_on(None);
        assert_eq!(runs(&p), vec![0; 5]);
    }
}
