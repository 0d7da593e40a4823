//! Parity with the original renderer: every reference genome, all four requests, against the
//! renders that kromosynth 1.0.36 made of them (tests/fixtures/reference).
//!
//! Deterministic genomes must reach an SNR of at least 100 dB. On the machine type the
//! references were made on they are bit-identical (the table printed by
//! `cargo test -- --nocapture` shows SNR inf and 0 differing samples); the margin allows for an
//! FFT or libm that picks other instructions on another CPU. Genomes with noise outputs use
//! `Math.random` in the original and are compared by RMS (within 5%).

use std::path::PathBuf;

use krs_engine::difference::{rms, Difference};
use krs_engine::{render_batch, CompiledGenome, Render, RenderRequest};

const MIN_SNR_DB: f64 = 100.0;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference")
}

struct Case {
    id: String,
    file: String,
    note_delta: f64,
    velocity: f64,
    duration: f64,
    has_noise: bool,
}

fn cases() -> Vec<Case> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("index.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for g in index["genomes"].as_array().unwrap() {
        for r in g["renders"].as_array().unwrap() {
            out.push(Case {
                id: g["id"].as_str().unwrap().to_string(),
                file: r["file"].as_str().unwrap().to_string(),
                note_delta: r["noteDelta"].as_f64().unwrap(),
                velocity: r["velocity"].as_f64().unwrap(),
                duration: r["duration"].as_f64().unwrap(),
                has_noise: g["hasNoise"].as_bool().unwrap(),
            });
        }
    }
    out
}

fn read_f32(path: &PathBuf) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn genome(id: &str) -> CompiledGenome {
    let bytes = std::fs::read(fixtures().join(format!("{id}.genome.json"))).unwrap();
    CompiledGenome::from_json(&bytes).unwrap()
}

#[test]
fn every_fixture_render_matches_the_original() {
    let mut failures = Vec::new();
    println!(
        "{:<28} {:>3} {:>4} {:>3} {:>10} {:>12} {:>9}",
        "genome", "nd", "vel", "s", "SNR dB", "max abs err", "differing"
    );
    for c in cases() {
        let reference = read_f32(&fixtures().join(&c.file));
        let request = RenderRequest {
            duration: c.duration,
            note_delta: c.note_delta,
            velocity: c.velocity,
            seed: 1,
            ..RenderRequest::default()
        };
        let ours = render_batch(&genome(&c.id), &request, true).unwrap();
        assert_eq!(ours.len(), reference.len(), "{}", c.file);
        if c.has_noise {
            let (a, b) = (rms(&ours), rms(&reference));
            println!(
                "{:<28} {:>3} {:>4} {:>3} {:>10} rms {:.4} vs {:.4}",
                c.id, c.note_delta, c.velocity, c.duration, "(noise)", a, b
            );
            if (a - b).abs() > 0.05 * b {
                failures.push(format!("{}: RMS {a} vs {b}", c.file));
            }
        } else {
            let Difference {
                snr_db: snr,
                max_abs_error: max_err,
                differing,
            } = Difference::of(&ours, &reference);
            println!(
                "{:<28} {:>3} {:>4} {:>3} {:>10.1} {:>12.3e} {:>9}",
                c.id, c.note_delta, c.velocity, c.duration, snr, max_err, differing
            );
            if snr < MIN_SNR_DB {
                failures.push(format!(
                    "{}: SNR {snr:.1} dB, max abs error {max_err}",
                    c.file
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn block_pulling_pattern_does_not_change_the_samples() {
    let g = genome("01M88X99QVYYHHB5Y83SETHWK1");
    let request = RenderRequest {
        duration: 1.0,
        note_delta: 12.0,
        velocity: 0.5,
        seed: 3,
        ..RenderRequest::default()
    };
    let all = render_batch(&g, &request, false).unwrap();

    // Two renders pulled alternately, in bursts of varying length: no shared state.
    let mut a = Render::new(&g, &request).unwrap();
    let mut b = Render::new(&g, &request).unwrap();
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    let mut block = [0.0f32; 128];
    let mut burst = 1;
    while !a.is_finished() || !b.is_finished() {
        for _ in 0..burst {
            let n = a.next_block(&mut block);
            out_a.extend_from_slice(&block[..n]);
        }
        let n = b.next_block(&mut block);
        out_b.extend_from_slice(&block[..n]);
        burst = burst % 7 + 1;
    }
    assert_eq!(out_a.len(), all.len());
    assert!(out_a
        .iter()
        .zip(&all)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(out_b
        .iter()
        .zip(&all)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a.next_block(&mut block), 0);
}

#[test]
fn stats_track_the_raw_stream_and_normalization_uses_them() {
    let g = genome("01M88X7XN81HEA58YYNTFXHV28");
    let request = RenderRequest {
        duration: 1.0,
        note_delta: 0.0,
        velocity: 1.0,
        seed: 0,
        ..RenderRequest::default()
    };
    let mut r = Render::new(&g, &request).unwrap();
    let mut raw = Vec::new();
    let mut block = [0.0f32; 128];
    loop {
        let n = r.next_block(&mut block);
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&block[..n]);
    }
    let s = r.stats();
    let min = raw.iter().copied().fold(0.0f32, f32::min);
    let max = raw.iter().copied().fold(0.0f32, f32::max);
    assert_eq!((s.min, s.max, s.peak), (min, max, max.max(-min)));
    let mut normalized = raw.clone();
    krs_engine::render::normalize_like_original(&mut normalized);
    assert_eq!(normalized, render_batch(&g, &request, true).unwrap());
}

#[test]
fn cppn_outputs_are_evaluated_ahead_of_the_block_clock_not_all_up_front() {
    // A wavetable genome: its buffers and mix curve are all read at the block clock.
    let g = genome("01M88X7HMX6C9TPT2A9HCKMZQJ");
    let request = RenderRequest {
        duration: 10.0,
        ..RenderRequest::default()
    };
    let mut r = Render::new(&g, &request).unwrap();
    let total = r.total_frames();
    assert!(
        r.cppn_frames_ready() < total / 10,
        "{} of {total}",
        r.cppn_frames_ready()
    );
    let mut block = [0.0f32; 128];
    let mut out = Vec::new();
    while !r.is_finished() {
        let n = r.next_block(&mut block);
        out.extend_from_slice(&block[..n]);
        // Never behind the clock, and less than a window ahead of it.
        let (ready, rendered) = (r.cppn_frames_ready(), r.frames_rendered());
        assert!(ready >= rendered, "{ready} < {rendered}");
        assert!(
            ready <= (rendered + 2 * 4096).min(total),
            "{ready} vs {rendered}"
        );
    }
    assert_eq!(r.cppn_frames_ready(), total);
    let batch = render_batch(&g, &request, false).unwrap();
    assert!(out
        .iter()
        .zip(&batch)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn prefetched_cppn_fills_give_the_original_samples_whoever_runs_them() {
    // Many lazily filled outputs, stored as windows (4 s is longer than one).
    let c = cases()
        .into_iter()
        .find(|c| c.id == "01M88X99QVYYHHB5Y83SETHWK1" && c.duration == 4.0)
        .unwrap();
    let reference = read_f32(&fixtures().join(&c.file));
    let g = genome(&c.id);
    let request = RenderRequest {
        duration: c.duration,
        note_delta: c.note_delta,
        velocity: c.velocity,
        seed: 1,
        ..RenderRequest::default()
    };
    // The most a fill of the render's own (not a prefetch) leaves filled beyond the frames
    // rendered: a chunk past the margin that the next block needs.
    let own_fill_reach = 4096 + 2 * 128 + 4;
    // One worker: it is busy rendering, so the render runs each prefetch itself. Two and
    // four: idle workers run them while the render goes on.
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (mut ours, ran_ahead) = pool.install(|| {
            let mut r = Render::new(&g, &request).unwrap();
            let (mut out, mut block, mut ran_ahead) = (Vec::new(), [0.0f32; 128], false);
            while !r.is_finished() {
                let n = r.next_block(&mut block);
                out.extend_from_slice(&block[..n]);
                if threads > 1 && out.len() == 40 * 128 {
                    // Give an idle worker the time to take the prefetch spawned by now.
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while r.cppn_frames_ready() <= r.frames_rendered() + own_fill_reach
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                ran_ahead |= r.cppn_frames_ready() > r.frames_rendered() + own_fill_reach;
            }
            (out, ran_ahead)
        });
        krs_engine::render::normalize_like_original(&mut ours);
        assert_eq!(ours.len(), reference.len());
        let differing = ours
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differing, 0, "{threads} workers: samples differ");
        assert_eq!(
            ran_ahead,
            threads > 1,
            "{threads} workers: prefetch ran ahead"
        );
    }
}

#[test]
fn long_renders_keep_only_a_window_of_each_lazy_output() {
    // Wavetable, buffer source, additive: everything they read lazily is read at the clock.
    for id in [
        "01M88X7HMX6C9TPT2A9HCKMZQJ",
        "01M88X7PY07G2VCJFN58PEHATX",
        "01M88X7TR5FK5AC40SH6TJCWC6",
    ] {
        let g = genome(id);
        let bytes = |duration: f64| {
            let request = RenderRequest {
                duration,
                ..RenderRequest::default()
            };
            Render::new(&g, &request).unwrap().lazy_output_bytes()
        };
        let (ten, six_hundred) = (bytes(10.0), bytes(600.0));
        assert!(ten > 0, "{id}: has lazy outputs");
        assert_eq!(ten, six_hundred, "{id}: storage grows with duration");
        // A window is 32 KiB; a 10 s whole array would be 1.9 MB.
        assert!(
            ten % (krs_engine::render::filler::WINDOW * 4) == 0,
            "{id}: {ten} bytes are not whole windows"
        );
    }
}
