//! The memory estimate against the heap the render really allocates: a counting allocator
//! tracks live bytes and their peak from the plan to the last block, for every fixture
//! genome. The estimate must be an upper bound (admission relies on it) and not a wild one
//! (it would refuse renders that fit): measured <= estimate <= 1.5 x measured + 1 MiB.
//!
//! `KRS_MEMORY_SECONDS=60,600 cargo test --release -p krs-engine --test memory_estimate --
//! --nocapture` prints the table at other durations (a convolver render's time grows with the
//! square of its duration: 600 s takes minutes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use krs_engine::dsp::RENDER_QUANTUM;
use krs_engine::render::{CompiledGenome, Render, RenderRequest};
use krs_engine::CppnBackend;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new) };
        if !q.is_null() {
            if new > layout.size() {
                let live =
                    LIVE.fetch_add(new - layout.size(), Ordering::Relaxed) + new - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// (estimate, measured peak) in bytes for one render of `seconds`.
fn measure(genome: &CompiledGenome, seconds: f64) -> (u64, u64) {
    let request = RenderRequest {
        duration: seconds,
        ..RenderRequest::default()
    };
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let plan = Render::plan(genome, &request).unwrap();
    let estimate = plan.memory(&CppnBackend::Cpu).total();
    let mut render = plan.build(&CppnBackend::Cpu).unwrap();
    let mut block = [0.0f32; RENDER_QUANTUM];
    while render.next_block(&mut block) > 0 {}
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(render);
    (estimate, peak as u64)
}

#[test]
fn the_estimate_bounds_every_fixture_render_from_above_and_closely() {
    let seconds: Vec<f64> = std::env::var("KRS_MEMORY_SECONDS")
        .unwrap_or_else(|_| "10".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    // Warm the rayon pool and the FFT plans, which live for the process.
    let warm = CompiledGenome::from_json(&krs_engine::fixtures::genome_json(
        "01M88X8EMSXWZE35NP3PBFS4V7",
    ))
    .unwrap();
    measure(&warm, 1.0);
    let mut failures = Vec::new();
    for id in krs_engine::fixtures::ids() {
        let genome =
            Arc::new(CompiledGenome::from_json(&krs_engine::fixtures::genome_json(&id)).unwrap());
        for &s in &seconds {
            let (estimate, peak) = measure(&genome, s);
            let kib = |b: u64| b as f64 / 1024.0;
            println!(
                "{id} {s:>5} s: estimate {:>10.0} KiB, measured peak {:>10.0} KiB, ratio {:.2}",
                kib(estimate),
                kib(peak),
                estimate as f64 / peak as f64
            );
            if !(peak <= estimate && estimate as f64 <= 1.5 * peak as f64 + (1 << 20) as f64) {
                failures.push(format!("{id} at {s} s: estimate {estimate}, peak {peak}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
