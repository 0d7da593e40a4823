//! What renders cost in CPU time, for admission by CPU.
//!
//! A job times its rendering turns with its thread's CPU clock (time it was preempted does not
//! count). Those turns are not all a render costs: the CPPN prefetch tasks run on other
//! workers, preparations run in their own turns, and the consumer encodes and writes every
//! chunk. [`Overhead`] measures the process's CPU time against the CPU time of all rendering
//! turns, over the last seconds, and every render's measured cost is scaled by that ratio
//! into its share of the process's CPU: what admission compares with the cores. The ratio is
//! server-wide, so a genome whose prefetches are unusually heavy is under-counted and one
//! whose are light over-counted; over the mix of streams in progress the sum is right.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (every thread, user and system).
pub fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Cannot fail for these clock ids on Linux; a zero reading only makes one turn look free.
    unsafe { libc::clock_gettime(id, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The ratio assumed before it is measured: what 256 paced streams of the fixture mix showed
/// on 2 cores (benches/README.md, soak), rounded up.
const PRIOR: f64 = 1.5;

/// Rendering time a calibration needs to measure anything: below it (an idle server) the ratio
/// is mostly the event loop's idle work and says nothing about renders.
const CALIBRATE_AFTER: Duration = Duration::from_millis(50);

/// Weight of a new measurement: the ratio follows a change of load within a few seconds.
const WEIGHT: f64 = 0.3;

/// The process's CPU time per second of CPU time in rendering turns (at least 1).
#[derive(Debug)]
pub struct Overhead {
    /// Nanoseconds of CPU in rendering turns, all jobs.
    turns: AtomicU64,
    /// The current ratio, as `f64` bits.
    factor: AtomicU64,
    /// (process CPU, turn nanoseconds) at the last calibration.
    last: Mutex<(Duration, u64)>,
}

impl Default for Overhead {
    fn default() -> Self {
        Overhead {
            turns: AtomicU64::new(0),
            factor: AtomicU64::new(PRIOR.to_bits()),
            last: Mutex::new((process_cpu(), 0)),
        }
    }
}

impl Overhead {
    /// Counts one rendering turn (once per turn, not per block).
    pub fn add_turn(&self, cpu: Duration) {
        self.turns
            .fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn factor(&self) -> f64 {
        f64::from_bits(self.factor.load(Ordering::Relaxed))
    }

    /// Measures the ratio since the last calibration that measured anything; the consumer
    /// calls it about once a second.
    pub fn calibrate(&self) {
        self.calibrate_with(process_cpu());
    }

    fn calibrate_with(&self, process: Duration) {
        let mut last = self.last.lock();
        let turns = self.turns.load(Ordering::Relaxed);
        let rendered = Duration::from_nanos(turns - last.1);
        if rendered < CALIBRATE_AFTER {
            return;
        }
        let ratio =
            (process.saturating_sub(last.0).as_secs_f64() / rendered.as_secs_f64()).clamp(1.0, 8.0);
        let factor = self.factor();
        let updated = factor + WEIGHT * (ratio - factor);
        self.factor.store(updated.to_bits(), Ordering::Relaxed);
        *last = (process, turns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clocks_count_cpu_not_wall_time() {
        let (thread, process) = (thread_cpu(), process_cpu());
        std::thread::sleep(Duration::from_millis(30));
        assert!(thread_cpu() - thread < Duration::from_millis(10));
        // Working advances it (however long the scheduler makes that take on a busy machine).
        let spin = std::time::Instant::now();
        while thread_cpu() - thread < Duration::from_millis(20) {
            std::hint::black_box(0u64);
            assert!(
                spin.elapsed() < Duration::from_secs(30),
                "the thread clock stood still"
            );
        }
        assert!(process_cpu() - process >= thread_cpu() - thread);
    }

    #[test]
    fn the_ratio_follows_the_process_cpu_per_rendering_cpu() {
        let overhead = Overhead::default();
        let start = overhead.last.lock().0;
        // Too little rendering: no measurement.
        overhead.add_turn(Duration::from_millis(10));
        overhead.calibrate_with(start + Duration::from_secs(1));
        assert_eq!(overhead.factor(), PRIOR);
        // 100 ms rendered for 120 ms of process CPU since the start: 1.2.
        overhead.add_turn(Duration::from_millis(90));
        overhead.calibrate_with(start + Duration::from_millis(120));
        let once = overhead.factor();
        assert!(
            (once - (PRIOR + WEIGHT * (1.2 - PRIOR))).abs() < 1e-9,
            "{once}"
        );
        for i in 2..40 {
            overhead.add_turn(Duration::from_millis(100));
            overhead.calibrate_with(start + Duration::from_millis(120 * i));
        }
        assert!(
            (overhead.factor() - 1.2).abs() < 1e-3,
            "{}",
            overhead.factor()
        );
        // Never below 1: turn time the process clock has not seen yet is not a discount.
        overhead.add_turn(Duration::from_secs(10));
        overhead.calibrate_with(start + Duration::from_secs(5));
        assert!(overhead.factor() >= 1.0);
    }
}
