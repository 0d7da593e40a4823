//! Throughput bench: renders per second and real-time factor (seconds of audio per second of
//! wall time), per core, for the engine in-process and through the server.
//!
//! `cargo bench --bench throughput` prints:
//! 1. engine in-process (`krs_engine::render_batch`, raw), every fixture genome, 4 s renders of
//!    the four fixture requests: one render at a time on a 1-thread rayon pool (one core), one
//!    render at a time on the all-core pool (the CPPN is evaluated in parallel), and all cores
//!    busy (as many renders in flight as cores, each on its own 1-thread pool);
//! 2. through the server: 1 client, then 2 x cores clients, greedy binary readers, renders/s and
//!    real-time factor per core-second of server CPU.
//!
//! `cargo bench --bench throughput -- --compare FILE` instead reads the JSON that
//! `benches/peer/render.mjs` printed for the original renderer, times ours on the same genomes
//! and requests, and prints the ratios (benches/peer/run.sh does both in one run).
//!
//! 3. where a Vulkan device exists (any kind, lavapipe included), the same in-process renders
//!    with the CPPN on the GPU (`render_batch_with`, `CppnBackend::Gpu`), one at a time and all
//!    genomes in flight at once (their CPPN jobs then share submissions); skipped, saying why,
//!    without one;
//! 4. long renders, every fixture genome: a 60 s render's time on the all-core pool, and a
//!    `--long` s (default 600) render rendered block by block on a 1-thread pool, its
//!    preparation and the cost (process CPU time) per second of audio of its first and of its
//!    last minute.
//!
//! Options: `--reps N` (renders per genome and request, default 5), `--duration 4`,
//! `--server-renders N` (default 64), `--long 600`, `--skip-long`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use krs_engine::dsp::RENDER_QUANTUM;
use krs_engine::render::cpu_cost::process_cpu;
use krs_engine::{
    render_batch, render_batch_with, CompiledGenome, CppnBackend, Gpu, Render, RenderRequest,
};
use rayon::prelude::*;
use serde_json::Value;

const REQUESTS: [(f64, f64); 2] = [(0.0, 1.0), (12.0, 0.5)];

fn main() {
    let args = Args::from_env();
    let reps: usize = args.num("--reps", 5);
    let duration: f64 = args.num("--duration", 4.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# Throughput");
    println!();
    println!("Machine: {}.", machine());
    if let Some(file) = args.value("--compare") {
        compare(file, reps);
        return;
    }
    let fx = fixtures();
    let compiled: Vec<Arc<CompiledGenome>> = fx
        .iter()
        .map(|f| Arc::new(CompiledGenome::from_json(&f.json).unwrap()))
        .collect();
    engine(&fx, &compiled, reps, duration, cores);
    server(&fx, args.num("--server-renders", 64), duration, cores);
    gpu(&fx, &compiled, reps, duration);
    if !args.flag("--skip-long") {
        long(&fx, &compiled, args.num("--long", 600.0), cores);
    }
}

/// Whether cost per second of audio stays flat as a render goes on (the convolver tail's
/// purpose), and what 60 s renders cost.
///
/// Cost is the process's CPU time while the blocks of a minute render, on a 1-thread pool. Not
/// the wall time of `next_block` on a many-thread pool: there the CPPN prefetches run ahead on
/// the other workers, so the rendering thread's time depends on how far ahead they got (the
/// first minute looked up to 1.7x cheaper than the last while the CPU per minute was flat).
fn long(fx: &[Fixture], compiled: &[Arc<CompiledGenome>], seconds: f64, cores: usize) {
    let (all, one) = (pool(cores), pool(1));
    println!();
    println!("## Long renders (one at a time)");
    println!();
    println!(
        "| genome | 60 s render ({cores}-thread pool): s | {seconds:.0} s render (1 thread): preparation s | first minute: CPU ms per s of audio | last minute: CPU ms per s of audio | last / first |"
    );
    println!("|---|---|---|---|---|---|");
    let minute = (60.0 * SAMPLE_RATE as f64) as usize;
    for (f, g) in fx.iter().zip(compiled) {
        let sixty = {
            let start = Instant::now();
            all.install(|| render_batch(g, &request(0.0, 1.0, 60.0), false).unwrap());
            start.elapsed().as_secs_f64()
        };
        let (prepare, first, last) = one.install(|| {
            let start = process_cpu();
            let mut render = Render::new(g, &request(0.0, 1.0, seconds)).unwrap();
            let prepare = (process_cpu() - start).as_secs_f64();
            let total = render.total_frames();
            let mut block = [0.0f32; RENDER_QUANTUM];
            let (mut first, mut last, mut done) = (0.0, 0.0, 0);
            while !render.is_finished() {
                let start = process_cpu();
                done += render.next_block(&mut block);
                let t = (process_cpu() - start).as_secs_f64();
                if done <= minute {
                    first += t;
                } else if done > total.saturating_sub(minute) {
                    last += t;
                }
            }
            (prepare, first, last)
        });
        let per_second = |t: f64| t * 1000.0 / 60.0;
        println!(
            "| {} | {sixty:.2} | {prepare:.2} | {:.2} | {:.2} | {:.2} |",
            f.id,
            per_second(first),
            per_second(last),
            last / first
        );
    }
}

/// In-process renders with the CPPN on Vulkan, against the same renders on the CPU.
fn gpu(fx: &[Fixture], compiled: &[Arc<CompiledGenome>], reps: usize, duration: f64) {
    println!();
    println!("## GPU path (in-process, {duration} s renders, medians)");
    println!();
    let gpu = match Gpu::shared() {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("skipped: no Vulkan device ({e})");
            return;
        }
    };
    println!("Device: {} ({:?}).", gpu.device().name, gpu.device().kind);
    println!();
    let backend = CppnBackend::Gpu(gpu);
    println!("| genome | CPU ms | Vulkan ms | Vulkan x real time |");
    println!("|---|---:|---:|---:|");
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        t[t.len() / 2]
    };
    let req = request(0.0, 1.0, duration);
    for (f, g) in fx.iter().zip(compiled) {
        let cpu_ms = time(&|| {
            render_batch(g, &req, false).unwrap();
        });
        let gpu_ms = time(&|| {
            render_batch_with(g, &req, false, &backend).unwrap();
        });
        println!(
            "| {} | {cpu_ms:.1} | {gpu_ms:.1} | {:.0} |",
            f.id,
            duration * 1e3 / gpu_ms
        );
    }
    let all = |backend: &CppnBackend| {
        let start = Instant::now();
        compiled.par_iter().for_each(|g| {
            render_batch_with(g, &req, false, backend).unwrap();
        });
        start.elapsed().as_secs_f64()
    };
    let (cpu_s, gpu_s) = (all(&CppnBackend::Cpu), all(&backend));
    println!();
    println!(
        "All {} genomes in flight at once: CPU {:.0} ms ({:.0}x real time), Vulkan {:.0} ms ({:.0}x real time).",
        compiled.len(),
        cpu_s * 1e3,
        compiled.len() as f64 * duration / cpu_s,
        gpu_s * 1e3,
        compiled.len() as f64 * duration / gpu_s
    );
}

fn request(note_delta: f64, velocity: f64, duration: f64) -> RenderRequest {
    RenderRequest {
        duration,
        note_delta,
        velocity,
        ..RenderRequest::default()
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn engine(
    fx: &[Fixture],
    compiled: &[Arc<CompiledGenome>],
    reps: usize,
    duration: f64,
    cores: usize,
) {
    let one = pool(1);
    let all = pool(cores);
    println!();
    println!(
        "## Engine in-process, {duration} s renders ({reps} x 2 requests per genome; ms are \
         medians per render)"
    );
    println!();
    println!(
        "| genome | 1 core: ms | 1 core: x real time | all-core pool: ms | all-core pool: x real time |"
    );
    println!("|---|---|---|---|---|");
    let (mut one_total, mut all_total, mut audio_total) = (0.0, 0.0, 0.0);
    for (f, g) in fx.iter().zip(compiled) {
        let mut t1 = Vec::new();
        let mut tn = Vec::new();
        for &(nd, v) in &REQUESTS {
            let r = request(nd, v, duration);
            for _ in 0..reps {
                let start = Instant::now();
                one.install(|| render_batch(g, &r, false).unwrap());
                t1.push(start.elapsed().as_secs_f64());
                let start = Instant::now();
                all.install(|| render_batch(g, &r, false).unwrap());
                tn.push(start.elapsed().as_secs_f64());
            }
        }
        one_total += t1.iter().sum::<f64>();
        all_total += tn.iter().sum::<f64>();
        audio_total += duration * t1.len() as f64;
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {:.0} |",
            f.id,
            pct(&t1, 50.0) * 1000.0,
            duration / pct(&t1, 50.0),
            pct(&tn, 50.0) * 1000.0,
            duration / pct(&tn, 50.0)
        );
    }
    // All cores busy: `cores` renders in flight at once, each on its own 1-thread pool, over
    // every genome and request `reps` times.
    let requests: Vec<RenderRequest> = REQUESTS
        .iter()
        .map(|&(nd, v)| request(nd, v, duration))
        .collect();
    let busy_real_time = all_cores_busy_real_time(compiled, &requests, reps);
    let n = (reps * compiled.len() * requests.len()) as f64;
    let busy = n * duration / busy_real_time;
    println!();
    println!("| mode | renders/s | x real time (total) | x real time per core |");
    println!("|---|---|---|---|");
    println!(
        "| one at a time, 1 core | {:.1} | {:.0} | {:.0} |",
        n / one_total,
        audio_total / one_total,
        audio_total / one_total
    );
    println!(
        "| one at a time, {cores}-thread pool | {:.1} | {:.0} | {:.0} |",
        n / all_total,
        audio_total / all_total,
        audio_total / all_total / cores as f64
    );
    println!(
        "| all {cores} cores busy ({cores} renders in flight) | {:.1} | {:.0} | {:.0} |",
        n / busy,
        n * duration / busy,
        n * duration / busy / cores as f64
    );
}

fn server(fx: &[Fixture], renders: usize, duration: f64, cores: usize) {
    println!();
    println!(
        "## Through the server ({duration} s renders by id, binary chunks, greedy readers, \
         about {renders} renders per row; load generator in this process)"
    );
    println!();
    println!(
        "| clients | renders | renders/s | x real time | server CPU s | x real time per server core-second | errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    let server = ServerProcess::start(&["--quiet"]);
    for clients in [1, 2 * cores] {
        let per = renders.div_ceil(clients);
        let mut next = |c: usize, k: usize| {
            (k < per).then(|| render_message(&fx[(c + k) % fx.len()], false, duration, true))
        };
        let report = run_load(Load {
            addr: server.addr,
            clients,
            ramp: Duration::ZERO,
            next_request: &mut next,
            player: None,
            time_limit: Duration::from_secs(600),
            server_pid: Some(server.pid()),
        });
        let n = report.renders.len() as f64;
        let wall = report.wall.as_secs_f64();
        println!(
            "| {clients} | {} | {:.1} | {:.0} | {:.2} | {:.0} | {} |",
            report.renders.len(),
            n / wall,
            n * duration / wall,
            report.server_cpu_s,
            n * duration / report.server_cpu_s.max(1e-9),
            report.errors.len()
        );
    }
}

/// Ours against the original's numbers from `render.mjs` (same machine, same run).
fn compare(file: &str, reps: usize) {
    let peer: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let fx = fixtures();
    let server = ServerProcess::start(&["--quiet"]);
    println!();
    println!(
        "## Ours vs the original ({}, node-web-audio-api {}, {}; same machine, same run)",
        peer["original"]["package"].as_str().unwrap_or("?"),
        peer["original"]["nodeWebAudioApi"].as_str().unwrap_or("?"),
        peer["original"]["node"].as_str().unwrap_or("?"),
    );
    println!();
    println!(
        "Render: the original's `getAudioBufferFromGenomeAndMeta` (genome string parsed per \
         render, as its service does) vs our `render_batch` with its normalization, from the \
         genome JSON (parse + compile + render), medians. First audio: the original's batch \
         renderer delivers nothing before the whole render is done, so its time to first audio \
         is its render time (its service adds more on top); ours is the time from sending \
         `render` with the genome inline (never cached) to the first binary chunk through the \
         server. Ratio = original / ours."
    );
    println!();
    println!(
        "| genome | request | original ms | ours ms | render ratio | ours first in-process ms | ours first chunk via server ms | first-audio ratio | original bit-exact with fixture |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut render_ratios = Vec::new();
    let mut first_ratios = Vec::new();
    for r in peer["renders"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        let Some(f) = fx.iter().find(|f| f.id == id) else {
            continue;
        };
        let Some(original) = r["median_ms"].as_f64() else {
            println!("| {id} | | original failed: {} | | | | | | |", r["error"]);
            continue;
        };
        let req = request(
            r["noteDelta"].as_f64().unwrap(),
            r["velocity"].as_f64().unwrap(),
            r["duration"].as_f64().unwrap(),
        );
        let mut ours = Vec::new();
        let mut first = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            let g = CompiledGenome::from_json(&f.json).unwrap();
            render_batch(&g, &req, true).unwrap();
            ours.push(ms(start.elapsed()));
            let start = Instant::now();
            let g = CompiledGenome::from_json(&f.json).unwrap();
            let mut render = Render::new(&g, &req).unwrap();
            let mut block = [0.0f32; RENDER_QUANTUM];
            render.next_block(&mut block);
            first.push(ms(start.elapsed()));
        }
        let mut message: Value =
            serde_json::from_str(&render_message(f, true, req.duration, true)).unwrap();
        message["noteDelta"] = Value::from(req.note_delta);
        message["velocity"] = Value::from(req.velocity);
        let message = message.to_string();
        let mut next = |_: usize, k: usize| (k < reps).then(|| message.clone());
        let report = run_load(Load {
            addr: server.addr,
            clients: 1,
            ramp: Duration::ZERO,
            next_request: &mut next,
            player: None,
            time_limit: Duration::from_secs(120),
            server_pid: None,
        });
        let via: Vec<f64> = report.renders.iter().map(|s| ms(s.first_chunk)).collect();
        let (ours_ms, first_ms, via_ms) = (pct(&ours, 50.0), pct(&first, 50.0), pct(&via, 50.0));
        render_ratios.push(original / ours_ms);
        first_ratios.push(original / via_ms);
        println!(
            "| {id} | nd {} v {} {} s | {original:.1} | {ours_ms:.2} | {:.0}x | {first_ms:.2} | {via_ms:.2} | {:.0}x | {} |",
            req.note_delta,
            req.velocity,
            req.duration,
            original / ours_ms,
            original / via_ms,
            match r["matchesFixture"].as_bool() {
                Some(true) => "yes",
                Some(false) if r["hasNoise"].as_bool() == Some(true) => "no (noise)",
                Some(false) => "no",
                None => "?",
            }
        );
    }
    println!();
    println!(
        "Render time ratio (original / ours): min {:.0}x, median {:.0}x over {} renders. \
         First audio ratio: min {:.0}x, median {:.0}x.",
        pct(&render_ratios, 0.0),
        pct(&render_ratios, 50.0),
        render_ratios.len(),
        pct(&first_ratios, 0.0),
        pct(&first_ratios, 50.0)
    );
    println!(
        "Original import time (once per process): {:.0} ms.",
        peer["original"]["import_ms"].as_f64().unwrap_or(f64::NAN)
    );
}
