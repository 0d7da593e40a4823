//! A sweep over noise seeds: every fixture genome rendered at 50 seeds (and a few pitches and
//! velocities), every sample checked for NaN and infinity. The seed only moves the noise
//! outputs' PRNG, so this explores what noise can drive a graph into (a filter or a feedback
//! loop blowing up), which the fixed-seed parity tests cannot.

use krs_engine::fixtures;
use krs_engine::{render_batch, CompiledGenome, RenderRequest};

const SEEDS: u64 = 50;

#[test]
fn no_seed_drives_a_fixture_genome_to_non_finite_samples() {
    let mut failures = Vec::new();
    for f in fixtures::all() {
        let genome = CompiledGenome::from_json(&f.genome_json()).unwrap();
        // A genome without noise outputs renders the same at every seed: a few are enough.
        let seeds = if f.has_noise { SEEDS } else { 2 };
        for seed in 0..seeds {
            let request = RenderRequest {
                duration: 0.5,
                note_delta: [0.0, 12.0, -24.0][seed as usize % 3],
                velocity: [1.0, 0.5, 0.05][seed as usize % 3],
                seed: seed * 0x9E37_79B9_7F4A_7C15,
                ..RenderRequest::default()
            };
            let samples = render_batch(&genome, &request, false).unwrap();
            if let Some(i) = samples.iter().position(|s| !s.is_finite()) {
                failures.push(format!(
                    "{} seed {seed}: sample {i} is {}",
                    f.id, samples[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
