//! Engine benchmarks: CPPN evaluation cost per node per sample, and whole renders of every
//! fixture request (reported as time per render; the real-time factor is printed alongside).
//!
//! `cargo bench --bench engine` (add `-- cppn` or `-- render` to pick a group).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use krs_engine::cppn::{evaluate_range, input_periods};
use krs_engine::{
    fixtures, render_batch, CompiledGenome, RenderRequest, DEFAULT_SAMPLE_RATE as SAMPLE_RATE,
};

fn genomes() -> Vec<(String, CompiledGenome)> {
    fixtures::all()
        .into_iter()
        .map(|f| {
            let genome = CompiledGenome::from_json(&f.genome_json()).unwrap();
            (f.id, genome)
        })
        .collect()
}

/// One core, one frequency, all 18 outputs: the unit the ns/node/sample target is about.
fn cppn(c: &mut Criterion) {
    let mut group = c.benchmark_group("cppn");
    let n = SAMPLE_RATE as usize;
    for (id, g) in genomes() {
        let p = g.program();
        let outputs: Vec<usize> = (0..p.output_count).collect();
        let mut bufs = vec![vec![0.0f32; n]; outputs.len()];
        let nodes = p.ops.len();
        group.throughput(Throughput::Elements((n * nodes) as u64));
        group.bench_function(BenchmarkId::new("1s_per_node_sample", &id[18..]), |b| {
            b.iter(|| {
                let mut slices: Vec<&mut [f32]> = bufs.iter_mut().map(|v| &mut v[..]).collect();
                evaluate_range(
                    p,
                    input_periods(440.0, n, SAMPLE_RATE as f64),
                    1.0,
                    n,
                    0..n,
                    &outputs,
                    &mut slices,
                );
            })
        });
    }
    group.finish();
}

/// Whole batch renders of the fixture requests, as the original's `timing.total_ms` measures.
fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (id, g) in genomes() {
        // The last is kromosynth-cli's usual evolution render (see the `workers` bench).
        for (note_delta, velocity, duration, sample_rate) in [
            (0.0, 1.0, 1.0, SAMPLE_RATE),
            (12.0, 0.5, 4.0, SAMPLE_RATE),
            (0.0, 1.0, 1.0, 16_000),
        ] {
            let request = RenderRequest {
                duration,
                note_delta,
                velocity,
                seed: 1,
                sample_rate,
                ..RenderRequest::default()
            };
            let start = Instant::now();
            render_batch(&g, &request, true).unwrap();
            eprintln!(
                "{id} {note_delta}_{velocity}_{duration}_{sample_rate}Hz: one render {:.1} ms, real-time factor {:.0}x",
                start.elapsed().as_secs_f64() * 1e3,
                duration / start.elapsed().as_secs_f64()
            );
            group.bench_function(
                BenchmarkId::new(
                    &id[18..],
                    format!("{note_delta}_{velocity}_{duration}_{sample_rate}Hz"),
                ),
                |b| b.iter(|| render_batch(&g, &request, true).unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, cppn, render);
criterion_main!(benches);
