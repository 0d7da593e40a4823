//! CPU vs Vulkan CPPN evaluation: per fixture genome (the outputs one render evaluates), and
//! batched across many renders' jobs at once.
//!
//! `cargo bench -p krs-engine --bench gpu`; without a Vulkan device only the CPU rows run.
//! Point `VK_ICD_FILENAMES` at lavapipe's ICD to measure Mesa's software driver.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use krs_engine::patch::graph::build;
use krs_engine::render::frames_for;
use krs_engine::render::outputs::{evaluate_outputs_with, Timeline};
use krs_engine::{fixtures, CompiledGenome, CppnBackend, Gpu, DEFAULT_SAMPLE_RATE};

fn genomes() -> Vec<(String, CompiledGenome)> {
    fixtures::all()
        .into_iter()
        .map(|f| {
            let genome = CompiledGenome::from_json(&f.genome_json()).unwrap();
            (f.id[18..].to_string(), genome)
        })
        .collect()
}

fn backends() -> Vec<(&'static str, CppnBackend)> {
    let mut v = vec![("cpu", CppnBackend::Cpu)];
    match Gpu::open() {
        Ok(g) => {
            eprintln!("Vulkan device: {} ({:?})", g.device().name, g.device().kind);
            v.push(("vulkan", CppnBackend::Gpu(g)));
        }
        Err(e) => eprintln!("skipping the Vulkan rows: {e}"),
    }
    v
}

/// The CPPN outputs of one 1 s render (noteDelta 0, velocity 1) of each fixture genome.
fn per_genome(c: &mut Criterion) {
    let mut group = c.benchmark_group("cppn_per_genome_1s");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let frames = Timeline::new(frames_for(1.0, DEFAULT_SAMPLE_RATE));
    let backends = backends();
    for (id, g) in genomes() {
        let web = build(g.patch(), 0.0, false, g.cppns().output_count()).unwrap();
        group.throughput(Throughput::Elements(frames.frames as u64));
        for (name, backend) in &backends {
            group.bench_function(BenchmarkId::new(*name, &id), |b| {
                b.iter(|| evaluate_outputs_with(g.cppns(), &web.outputs, frames, 1.0, 1, backend))
            });
        }
    }
    group.finish();
}

/// 32 renders' CPPN outputs (4 per fixture genome, 1 s each at noteDelta 0 and 12) started
/// together, as a busy server would: on the GPU they share submissions.
fn batched(c: &mut Criterion) {
    let mut group = c.benchmark_group("cppn_batched_32_renders");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let frames = Timeline::new(frames_for(1.0, DEFAULT_SAMPLE_RATE));
    let genomes = genomes();
    let mut jobs = Vec::new();
    for (_, g) in &genomes {
        for note_delta in [0.0, 12.0, -12.0, 7.0] {
            let web = build(g.patch(), note_delta, false, g.cppns().output_count()).unwrap();
            jobs.push((g, web.outputs));
        }
    }
    group.throughput(Throughput::Elements((frames.frames * jobs.len()) as u64));
    for (name, backend) in &backends() {
        group.bench_function(*name, |b| {
            b.iter(|| {
                // One thread per render, as the scheduler's workers would start them.
                std::thread::scope(|s| {
                    for (g, outputs) in &jobs {
                        s.spawn(|| {
                            evaluate_outputs_with(g.cppns(), outputs, frames, 1.0, 1, backend)
                        });
                    }
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_genome, batched);
criterion_main!(benches);
