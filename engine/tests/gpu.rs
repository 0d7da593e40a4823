//! GPU-vs-CPU comparisons over the fixtures: the CPPNs, the network outputs a render evaluates,
//! and whole renders. Without a Vulkan device they print `skipping: no Vulkan device (reason)`
//! and pass; with Mesa's lavapipe installed they run
//! (`VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`). The GPU module's own tests
//! (device selection, shader, fallbacks) are in engine/gpu/tests.rs.

use std::sync::OnceLock;

use krs_engine::cppn::{self, input_periods, Program};
use krs_engine::difference::Difference;
use krs_engine::patch::graph::build;
use krs_engine::render::outputs::{evaluate_outputs_with, Cppns, Timeline};
use krs_engine::render::{frames_for, render_batch_with};
use krs_engine::{fixtures, render_batch, CompiledGenome, CppnBackend, Error, Gpu, RenderRequest};

/// Tolerance of CPPN output buffers, GPU vs CPU, over every fixture genome (measured on
/// lavapipe: see engine/gpu/README.md).
const MIN_CPPN_SNR_DB: f64 = 130.0;
const MAX_CPPN_ABS_ERR: f64 = 1e-5;
/// Tolerance of whole renders (normalized, as `render` writes them).
const MIN_RENDER_SNR_DB: f64 = 120.0;
const MAX_RENDER_ABS_ERR: f64 = 1e-5;

fn gpu() -> Option<Gpu> {
    static GPU: OnceLock<Result<Gpu, Error>> = OnceLock::new();
    match GPU.get_or_init(Gpu::open) {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            println!("skipping: no Vulkan device ({e})");
            None
        }
    }
}

/// (SNR in dB, max abs error) of `ours` against `reference`.
fn compare(ours: &[f32], reference: &[f32]) -> (f64, f64) {
    let d = Difference::of(ours, reference);
    (d.snr_db, d.max_abs_error)
}

/// (id, genome) of every fixture.
fn fixture_genomes() -> Vec<(String, CompiledGenome)> {
    fixtures::all()
        .into_iter()
        .map(|f| {
            let genome = CompiledGenome::from_json(&f.genome_json()).unwrap();
            (f.id, genome)
        })
        .collect()
}

fn programs(g: &CompiledGenome) -> Vec<&Program> {
    match g.cppns() {
        Cppns::Single(p) => vec![p],
        Cppns::PerFrequency(v) => v.iter().map(|(_, p)| p).collect(),
    }
}

#[test]
fn the_cpu_backend_renders_what_render_batch_does() {
    let (_, g) = &fixture_genomes()[0];
    let request = RenderRequest::default();
    assert_eq!(
        render_batch_with(g, &request, true, &CppnBackend::Cpu).unwrap(),
        render_batch(g, &request, true).unwrap()
    );
}

/// Every fixture genome's CPPN(s), all 18 outputs, at several frequencies and durations.
#[test]
fn cppn_outputs_match_the_cpu_on_every_fixture_genome() {
    let Some(gpu) = gpu() else { return };
    println!("device: {:?}", gpu.device());
    println!(
        "{:<28} {:>4} {:>7} {:>3} {:>10} {:>12}",
        "genome", "cppn", "freq", "s", "SNR dB", "max abs err"
    );
    let mut worst = (f64::INFINITY, 0.0f64);
    let mut failures = Vec::new();
    for (id, g) in fixture_genomes() {
        for (pi, p) in programs(&g).into_iter().enumerate() {
            let outputs: Vec<usize> = (0..p.output_count).collect();
            for (freq, seconds) in [(440.0, 1.0), (55.0, 4.0), (2000.0, 10.0)] {
                let n = frames_for(seconds, 48_000);
                let periods = input_periods(freq, n, 48_000.0);
                let cpu = cppn::evaluate_parallel(p, periods, 1.0, n, &outputs);
                let ours = gpu.evaluate(p, periods, 1.0, n, &outputs).unwrap();
                let cpu: Vec<f32> = cpu.concat();
                let (snr, err) = compare(&ours.concat(), &cpu);
                println!("{id:<28} {pi:>4} {freq:>7} {seconds:>3} {snr:>10.1} {err:>12.3e}");
                worst = (worst.0.min(snr), worst.1.max(err));
                if snr < MIN_CPPN_SNR_DB || err > MAX_CPPN_ABS_ERR {
                    failures.push(format!(
                        "{id} cppn {pi} {freq} Hz {seconds} s: {snr} dB, {err}"
                    ));
                }
            }
        }
    }
    println!(
        "worst: SNR {:.1} dB, max abs error {:.3e}",
        worst.0, worst.1
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The outputs a render actually evaluates (per-frequency groups, noise), through
/// `evaluate_outputs_with`, for every fixture request.
#[test]
fn render_network_outputs_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let backend = CppnBackend::Gpu(gpu);
    for (id, g) in fixture_genomes() {
        // The rate moves the periodic input's frequency per sample; the GPU takes it through
        // `inputPeriods`, so a low rate must match too.
        for (note_delta, velocity, duration, rate) in [
            (0.0, 1.0, 1.0, 48_000),
            (12.0, 0.5, 4.0, 48_000),
            (5.0, 0.7, 2.0, 16_000),
        ] {
            let timeline = Timeline {
                frames: frames_for(duration, rate),
                sample_rate: rate,
                anti_aliasing: false,
            };
            let web = build(g.patch(), note_delta, false, g.cppns().output_count()).unwrap();
            let cpu = evaluate_outputs_with(
                g.cppns(),
                &web.outputs,
                timeline,
                velocity,
                1,
                &CppnBackend::Cpu,
            );
            let ours =
                evaluate_outputs_with(g.cppns(), &web.outputs, timeline, velocity, 1, &backend);
            for (i, (a, b)) in ours.iter().zip(&cpu).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let (snr, err) = compare(a, b);
                        println!("{id} {rate}_{note_delta}_{velocity}_{duration} output {i}: {snr:.1} dB, {err:.3e}");
                        assert!(
                            snr >= MIN_CPPN_SNR_DB && err <= MAX_CPPN_ABS_ERR,
                            "{id} output {i}: {snr} dB, {err}"
                        );
                    }
                    (None, None) => {}
                    _ => panic!("{id} output {i}: GPU and CPU disagree on presence"),
                }
            }
        }
    }
}

/// Whole renders of every fixture request, normalized as `render` writes them.
#[test]
fn whole_renders_match_the_cpu_on_every_fixture_genome() {
    let Some(gpu) = gpu() else { return };
    let backend = CppnBackend::Gpu(gpu);
    let mut failures = Vec::new();
    let mut worst = (f64::INFINITY, 0.0f64);
    for (id, g) in fixture_genomes() {
        for (note_delta, velocity, duration) in [
            (0.0, 1.0, 1.0),
            (0.0, 1.0, 4.0),
            (12.0, 0.5, 1.0),
            (12.0, 0.5, 4.0),
        ] {
            let request = RenderRequest {
                duration,
                note_delta,
                velocity,
                seed: 1,
                ..RenderRequest::default()
            };
            let cpu = render_batch(&g, &request, true).unwrap();
            let ours = render_batch_with(&g, &request, true, &backend).unwrap();
            let (snr, err) = compare(&ours, &cpu);
            println!("render {id} {note_delta}_{velocity}_{duration}: SNR {snr:.1} dB, max abs err {err:.3e}");
            worst = (worst.0.min(snr), worst.1.max(err));
            if snr < MIN_RENDER_SNR_DB || err > MAX_RENDER_ABS_ERR {
                failures.push(format!(
                    "{id} {note_delta}_{velocity}_{duration}: {snr} dB, {err}"
                ));
            }
        }
    }
    println!(
        "worst render: SNR {:.1} dB, max abs error {:.3e}",
        worst.0, worst.1
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
