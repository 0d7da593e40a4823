//! GPU-vs-CPU tests. Those that need a device print `skipping: no Vulkan device (reason)` and
//! pass where Vulkan or a driver is missing; with Mesa's lavapipe installed they run
//! (`VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`).

use std::path::PathBuf;
use std::sync::OnceLock;

use super::vulkan::select;
use super::*;
use crate::cppn::{input_periods, Activation};
use crate::genome::{NeatConnection, NeatGenome, NeatNode};
use crate::patch::graph::build;
use crate::render::outputs::{evaluate_outputs_with, Timeline};
use crate::render::{frames_for, render_batch_with};
use crate::{render_batch, CompiledGenome, RenderRequest};

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

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference")
}

/// (id, genome) of every tests/fixtures/reference/*.genome.json.
fn fixture_genomes() -> Vec<(String, CompiledGenome)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".genome.json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixture genomes in {:?}", fixtures());
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            let id = name.trim_end_matches(".genome.json").to_string();
            (
                id,
                CompiledGenome::from_json(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect()
}

/// (SNR in dB, max abs error) of `ours` against `reference`.
fn compare(ours: &[f32], reference: &[f32]) -> (f64, f64) {
    let d = crate::difference::Difference::of(ours, reference);
    (d.snr_db, d.max_abs_error)
}

fn programs(g: &CompiledGenome) -> Vec<&Program> {
    match g.cppns() {
        crate::render::outputs::Cppns::Single(p) => vec![p],
        crate::render::outputs::Cppns::PerFrequency(v) => v.iter().map(|(_, p)| p).collect(),
    }
}

#[test]
fn device_selection_prefers_real_gpus_and_honours_the_selector() {
    let d = |name: &str, kind| {
        Some(DeviceInfo {
            index: 0,
            name: name.into(),
            kind,
        })
    };
    let devices = [
        d("llvmpipe (LLVM 15)", DeviceKind::Cpu),
        None,
        d("Intel UHD 770", DeviceKind::Integrated),
        d("NVIDIA H200", DeviceKind::Discrete),
    ];
    assert_eq!(select(&devices, None), Ok(3));
    assert_eq!(select(&devices, Some("")), Ok(3));
    assert_eq!(select(&devices[..3], None), Ok(2));
    assert_eq!(select(&devices[..1], None), Ok(0));
    assert_eq!(select(&devices, Some("0")), Ok(0));
    assert_eq!(select(&devices, Some("LLVMPIPE")), Ok(0));
    assert_eq!(select(&devices, Some(" intel ")), Ok(2));
    let e = select(&devices, Some("1")).unwrap_err().0;
    assert!(e.contains("KRS_VULKAN_DEVICE=\"1\""), "{e}");
    let e = select(&devices, Some("nonexistent")).unwrap_err().0;
    assert!(e.contains("3: NVIDIA H200 (Discrete)"), "{e}");
    assert!(select(&[], None)
        .unwrap_err()
        .0
        .contains("no Vulkan device"));
    assert!(select(&[None], None)
        .unwrap_err()
        .0
        .contains("compute queue"));
}

#[test]
fn a_selector_that_matches_nothing_is_a_clear_error_and_the_cpu_still_works() {
    let e = Gpu::open_with(Some("nonexistent")).unwrap_err().0;
    println!("KRS_VULKAN_DEVICE=nonexistent: {e}");
    // Without Vulkan the loader's absence is the reason; with it, the selector is.
    assert!(
        e.contains("KRS_VULKAN_DEVICE=\"nonexistent\"")
            || e.contains("cannot load the Vulkan library")
            || e.contains("no Vulkan driver")
            || e.contains("no Vulkan device"),
        "{e}"
    );
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

fn node(gid: &str, act: &str, bias: bool) -> NeatNode {
    NeatNode {
        gid: gid.into(),
        activation: act.into(),
        is_bias: bias,
    }
}

fn conn(s: &str, t: &str, w: f64) -> NeatConnection {
    NeatConnection {
        source: s.into(),
        target: t.into(),
        weight: w,
    }
}

/// bias 0, inputs 1 (periodic) 2 (ramp), outputs 3 4, hidden 5 6.
fn network(acts: [&str; 4], connections: Vec<NeatConnection>) -> Program {
    let mut nodes = vec![
        node("0", "NullFn", true),
        node("1", "NullFn", false),
        node("2", "NullFn", false),
    ];
    for (i, a) in acts.iter().enumerate() {
        nodes.push(node(&(3 + i).to_string(), a, false));
    }
    Program::compile(&NeatGenome {
        nodes,
        connections,
        input_count: 2,
        output_count: 2,
    })
    .unwrap()
}

/// (max abs error, samples off by more than `tol`) of GPU vs CPU for both outputs.
fn gpu_vs_cpu(gpu: &Gpu, p: &Program, freq: f64, n: usize, tol: f64) -> (f64, usize) {
    let periods = input_periods(freq, n, 48_000.0);
    let cpu = cppn::evaluate_parallel(p, periods, 0.7, n, &[0, 1]).concat();
    let ours = gpu.evaluate(p, periods, 0.7, n, &[0, 1]).unwrap().concat();
    let mut max = 0.0f64;
    let mut off = 0;
    for (a, b) in ours.iter().zip(&cpu) {
        let e = (*a as f64 - *b as f64).abs();
        max = max.max(e);
        if e > tol {
            off += 1;
        }
    }
    (max, off)
}

#[test]
fn recurrent_networks_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    // 3 <- 5 <- 6 <- 3 is a cycle; 5 has a self loop; 4 reads 3 and 6, one of them mid-cycle
    // when pulled in index order.
    let p = network(
        ["Sine", "BipolarSigmoid", "Gaussian", "sawtooth"],
        vec![
            conn("5", "3", 1.3),
            conn("6", "5", -0.8),
            conn("3", "6", 2.5),
            conn("5", "5", 4.0),
            conn("1", "5", 1.7),
            conn("2", "6", 0.9),
            conn("0", "6", 0.2),
            conn("3", "4", 0.6),
            conn("6", "4", -1.1),
            conn("4", "4", 3.0),
        ],
    );
    let zero_terms = p
        .terms
        .iter()
        .filter(|&&(s, _)| s as usize == p.registers - 1);
    assert!(
        zero_terms.count() >= 2,
        "the network must have recurrent edges"
    );
    let (max, _) = gpu_vs_cpu(&gpu, &p, 440.0, 48_000, 0.0);
    println!("recurrent: max abs error {max:.3e}");
    assert!(max < 1e-5, "{max}");
}

#[test]
fn every_activation_function_matches_the_cpu_through_the_shader() {
    let Some(gpu) = gpu() else { return };
    for a in Activation::ALL {
        // x sweeps [-12, 12] with the ramp, plus the periodic input and the bias, so the
        // functions' periodic and saturating ranges are all visited.
        let p = network(
            [a.name(), a.name(), "NullFn", "NullFn"],
            vec![
                conn("2", "3", 12.0),
                conn("1", "3", 0.5),
                conn("0", "3", 0.25),
                conn("2", "4", -2.0),
                conn("1", "4", 0.3),
            ],
        );
        let n = 96_000;
        let (max, off) = gpu_vs_cpu(&gpu, &p, 100.0, n, 1e-5);
        println!(
            "{:<15} max abs error {max:.3e}, {off} samples off by > 1e-5",
            a.name()
        );
        // Functions with jumps may land on the other side of one where x is within f32
        // rounding of it; every other sample must agree.
        let jumps = matches!(
            a,
            Activation::StepFunction | Activation::Sawtooth | Activation::Spike
        );
        if jumps {
            assert!(off <= 4, "{}: {off} samples off", a.name());
        } else {
            assert_eq!(off, 0, "{}: max abs error {max}", a.name());
        }
    }
}

#[test]
fn jobs_split_across_submissions_and_shared_ones_give_the_same_buffers() {
    let Some(shared) = gpu() else { return };
    let p = network(
        ["Sine", "BipolarSigmoid", "triangle", "NullFn"],
        vec![
            conn("1", "5", 1.5),
            conn("2", "5", 3.0),
            conn("5", "3", 2.0),
            conn("0", "4", 0.1),
            conn("5", "4", -1.0),
        ],
    );
    let n = 30_001;
    let periods = input_periods(330.0, n, 48_000.0);
    let alone = shared.evaluate(&p, periods, 1.0, n, &[0, 1]).unwrap();
    // Many jobs at once from several threads: they queue up and share submissions.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let pending: Vec<_> = (0..8)
                    .map(|_| shared.submit(&p, periods, 1.0, n, &[0, 1]).unwrap())
                    .collect();
                for r in pending {
                    assert_eq!(r.wait().unwrap(), alone);
                }
            });
        }
    });
    // A small output buffer bound forces each job into several pieces and submissions.
    let small = Gpu::open().unwrap();
    small.tx.send(Msg::LimitOutput(7_000)).unwrap();
    assert_eq!(small.evaluate(&p, periods, 1.0, n, &[0, 1]).unwrap(), alone);
    let pending: Vec<_> = (0..3)
        .map(|_| small.submit(&p, periods, 1.0, n, &[1]).unwrap())
        .collect();
    for r in pending {
        assert_eq!(r.wait().unwrap()[0], alone[1]);
    }
}

#[test]
fn a_lost_device_falls_back_to_the_cpu() {
    let Some(_) = gpu() else { return };
    let own = Gpu::open().unwrap();
    let p = network(
        ["Sine", "Linear", "NullFn", "NullFn"],
        vec![conn("1", "3", 1.5), conn("2", "4", 3.0)],
    );
    let periods = input_periods(440.0, 4800, 48_000.0);
    own.poison();
    let e = own.evaluate(&p, periods, 1.0, 4800, &[0, 1]).unwrap_err();
    assert!(e.0.contains("device lost"), "{e}");
    let backend = CppnBackend::Gpu(own);
    assert_eq!(
        backend.evaluate(&p, periods, 1.0, 4800, &[0, 1]),
        cppn::evaluate_parallel(&p, periods, 1.0, 4800, &[0, 1])
    );
}

/// A chain of `hidden` Sine neurons from the inputs to output 0 (needs `hidden + 5` registers).
fn chain(hidden: usize) -> Program {
    let mut nodes = vec![
        node("0", "NullFn", true),
        node("1", "NullFn", false),
        node("2", "NullFn", false),
        node("3", "Sine", false),
    ];
    let mut connections = vec![conn("2", "h0", 1.0), conn("1", "h0", 0.5)];
    for i in 0..hidden {
        nodes.push(node(&format!("h{i}"), "Sine", false));
        if i > 0 {
            connections.push(conn(&format!("h{}", i - 1), &format!("h{i}"), 1.1));
            connections.push(conn("0", &format!("h{i}"), 0.01));
        }
    }
    connections.push(conn(&format!("h{}", hidden - 1), "3", 0.9));
    Program::compile(&NeatGenome {
        nodes,
        connections,
        input_count: 2,
        output_count: 1,
    })
    .unwrap()
}

#[test]
fn programs_beyond_the_small_register_file_use_the_large_one() {
    let Some(gpu) = gpu() else { return };
    let n = 20_000;
    let periods = input_periods(440.0, n, 48_000.0);
    for hidden in [20, 27, 28, 100, 251] {
        let p = chain(hidden);
        assert_eq!(GpuProgram::new(&p, &[0]).unwrap().registers, hidden + 5);
        let cpu = cppn::evaluate_parallel(&p, periods, 1.0, n, &[0]);
        let ours = gpu.evaluate(&p, periods, 1.0, n, &[0]).unwrap();
        let (snr, err) = compare(&ours[0], &cpu[0]);
        println!("chain of {hidden}: {snr:.1} dB, max abs error {err:.3e}");
        assert!(err < 1e-4, "chain of {hidden}: {err}");
    }
}

#[test]
fn programs_the_shader_cannot_hold_run_on_the_cpu() {
    let p = chain(252);
    let e = GpuProgram::new(&p, &[0]).unwrap_err();
    assert!(e.0.contains("registers"), "{e}");
    let Some(gpu) = gpu() else { return };
    let periods = input_periods(440.0, 1000, 48_000.0);
    assert_eq!(
        CppnBackend::Gpu(gpu).evaluate(&p, periods, 1.0, 1000, &[0]),
        cppn::evaluate_parallel(&p, periods, 1.0, 1000, &[0])
    );
}

#[test]
fn auto_uses_a_software_device_only_when_asked() {
    if std::env::var_os("KRS_VULKAN_DEVICE").is_some() {
        println!("skipping: KRS_VULKAN_DEVICE is set, so auto() uses whatever it names");
        return;
    }
    let backend = CppnBackend::auto();
    match Gpu::shared() {
        Ok(g) if g.device().kind != DeviceKind::Cpu => {
            assert!(matches!(backend, CppnBackend::Gpu(_)), "{backend:?}")
        }
        _ => assert!(matches!(backend, CppnBackend::Cpu), "{backend:?}"),
    }
}

#[test]
fn periodic_input_stays_exact_over_long_renders() {
    let Some(gpu) = gpu() else { return };
    // out0 = |periodic input|, out1 = |ramp|: the inputs themselves, where an f32
    // sin(periods * ramp) would be off by ~1e-2 at these arguments (up to 3e5 rad).
    let p = network(
        ["Linear", "Linear", "NullFn", "NullFn"],
        vec![conn("1", "3", 1.0), conn("2", "4", 1.0)],
    );
    let n = frames_for(60.0, 48_000);
    let (max, off) = gpu_vs_cpu(&gpu, &p, 5000.0, n, 1e-6);
    println!("60 s at 5 kHz: inputs' max abs error {max:.3e}");
    assert_eq!(off, 0, "max abs error {max}");
}
