//! Parity at other sample rates and with the original's two optional request flags: every
//! render in tests/fixtures/rates (kromosynth 1.0.36 at 16, 22.05, 44.1 and 48 kHz, plus
//! `antiAliasing` and `frequencyUpdatesApplyToAllPathcNetworkOutputs` at 48 kHz) against ours.
//!
//! Every file must be matched bit for bit on the machine type the references were made on; the
//! bar is the same 100 dB as tests/parity.rs, whose margin allows for an FFT or libm that picks
//! other instructions on another CPU. `cargo test --test rates -- --nocapture` prints the table.

use std::path::PathBuf;

use krs_engine::difference::Difference;
use krs_engine::render::frames_for;
use krs_engine::{render_batch, CompiledGenome, Render, RenderRequest};
use krs_engine::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

const MIN_SNR_DB: f64 = 100.0;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn read_f32(path: &PathBuf) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The genomes are those of tests/fixtures/reference (byte for byte), so they are kept once.
fn genome(id: &str) -> CompiledGenome {
    let path = fixtures().join(format!("reference/{id}.genome.json"));
    CompiledGenome::from_json(&std::fs::read(path).unwrap()).unwrap()
}

struct Case {
    id: String,
    file: String,
    request: RenderRequest,
}

fn cases() -> Vec<Case> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("rates/index.json")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    for g in index["genomes"].as_array().unwrap() {
        for r in g["renders"].as_array().unwrap() {
            out.push(Case {
                id: g["id"].as_str().unwrap().to_string(),
                file: r["file"].as_str().unwrap().to_string(),
                request: RenderRequest {
                    duration: r["duration"].as_f64().unwrap(),
                    note_delta: r["noteDelta"].as_f64().unwrap(),
                    velocity: r["velocity"].as_f64().unwrap(),
                    seed: 1,
                    sample_rate: r["sampleRate"].as_u64().unwrap() as u32,
                    anti_aliasing: r["antiAliasing"].as_bool().unwrap(),
                    frequency_updates_apply_to_all_outputs: r
                        ["frequencyUpdatesApplyToAllPathcNetworkOutputs"]
                        .as_bool()
                        .unwrap(),
                    ..RenderRequest::default()
                },
            });
        }
    }
    assert_eq!(out.len(), 49, "7 genomes x 7 requests");
    out
}

fn check(keep: impl Fn(&RenderRequest) -> bool) {
    let mut failures = Vec::new();
    println!(
        "{:<46} {:>10} {:>12} {:>9}",
        "file", "SNR dB", "max abs err", "differing"
    );
    for c in cases().into_iter().filter(|c| keep(&c.request)) {
        let reference = read_f32(&fixtures().join("rates").join(&c.file));
        let ours = render_batch(&genome(&c.id), &c.request, true).unwrap();
        assert_eq!(ours.len(), reference.len(), "{}", c.file);
        let d = Difference::of(&ours, &reference);
        println!(
            "{:<46} {:>10.1} {:>12.3e} {:>9}",
            c.file, d.snr_db, d.max_abs_error, d.differing
        );
        if d.snr_db < MIN_SNR_DB {
            failures.push(format!(
                "{}: SNR {:.1} dB, max abs error {}",
                c.file, d.snr_db, d.max_abs_error
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_rate_matches_the_original() {
    check(|r| !r.anti_aliasing && !r.frequency_updates_apply_to_all_outputs);
}

#[test]
fn frequency_updates_apply_to_all_outputs_matches_the_original() {
    check(|r| r.frequency_updates_apply_to_all_outputs);
}

#[test]
fn anti_aliasing_matches_the_original() {
    check(|r| r.anti_aliasing);
}

#[test]
fn frames_are_rounded_per_rate() {
    assert_eq!(frames_for(1.0, 16_000), 16_000);
    assert_eq!(frames_for(1.0, 22_050), 22_050);
    // Math.round(22050 * 0.00002) = round(0.441) = 0; (44100 * 0.5e-4) = 2.205 -> 2.
    assert_eq!(frames_for(0.00002, 22_050), 0);
    assert_eq!(frames_for(0.5e-4, 44_100), 2);
}

#[test]
fn sample_rates_outside_8k_to_192k_are_rejected() {
    let g = genome("01M88X7T6Y68CC64GC56PAT2JM");
    for rate in [0, 1, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1, u32::MAX] {
        let request = RenderRequest {
            duration: 0.01,
            sample_rate: rate,
            ..RenderRequest::default()
        };
        let err = Render::new(&g, &request).err().expect("rejected");
        assert!(
            err.message().contains("sampleRate") && err.message().contains(&rate.to_string()),
            "{err}"
        );
    }
    for rate in [MIN_SAMPLE_RATE, 11_025, 96_000, MAX_SAMPLE_RATE] {
        let request = RenderRequest {
            duration: 0.01,
            sample_rate: rate,
            ..RenderRequest::default()
        };
        let out = render_batch(&g, &request, false).unwrap();
        assert_eq!(out.len(), frames_for(0.01, rate));
    }
}

/// Blocks pulled in bursts of every length give the batch render's samples at a rate other
/// than 48 kHz, with and without the options (anti-aliasing evaluates its outputs whole).
#[test]
fn streamed_blocks_equal_the_batch_render_at_16_khz() {
    let g = genome("01M88X99QVYYHHB5Y83SETHWK1");
    for anti_aliasing in [false, true] {
        let request = RenderRequest {
            duration: 1.3,
            note_delta: 5.0,
            velocity: 0.7,
            seed: 3,
            sample_rate: 16_000,
            anti_aliasing,
            frequency_updates_apply_to_all_outputs: true,
            ..RenderRequest::default()
        };
        let all = render_batch(&g, &request, false).unwrap();
        let mut render = Render::new(&g, &request).unwrap();
        assert_eq!(render.total_frames(), 20_800);
        let mut got = Vec::new();
        let mut block = [0.0f32; krs_engine::dsp::RENDER_QUANTUM];
        let mut burst = 1;
        'pull: loop {
            for _ in 0..burst {
                let n = render.next_block(&mut block);
                if n == 0 {
                    break 'pull;
                }
                got.extend_from_slice(&block[..n]);
            }
            burst = burst % 37 + 1;
        }
        assert_eq!(got.len(), all.len());
        assert!(
            got.iter()
                .zip(&all)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "anti_aliasing {anti_aliasing}"
        );
    }
}
