//! Turning network outputs into the sample arrays the graph consumes: CPPN activations (once
//! per unique frequency, kromosynth `Activator.activateMember`), seeded noise, range remapping
//! (`remapNumberToRange`) and wavetable gain curves (`gainValuesPerAudioWave`). Every array is
//! f32, as the original's Float32Arrays, with the arithmetic done in f64 like JavaScript.

use std::sync::Arc;

use crate::cppn::{self, Program};
use crate::gpu::CppnBackend;
use crate::patch::graph::Samples;
use crate::patch::synthis::{NetworkOutput, NoiseKind, Source};

/// The CPPN(s) of a genome.
#[derive(Debug)]
pub enum Cppns {
    Single(Program),
    /// `oneCPPNPerFrequency`: (rounded frequency key, program), in JS key order.
    PerFrequency(Vec<(f64, Program)>),
}

impl Cppns {
    pub fn output_count(&self) -> usize {
        match self {
            Cppns::Single(p) => p.output_count,
            Cppns::PerFrequency(v) => v.iter().map(|(_, p)| p.output_count).min().unwrap_or(0),
        }
    }

    /// The program for outputs at `original_frequency` (kromosynth looks up
    /// `getRoundedFrequencyValue(originalFrequency)`, else the nearest key).
    fn program_for(&self, original_frequency: f64) -> &Program {
        match self {
            Cppns::Single(p) => p,
            Cppns::PerFrequency(v) => {
                let key = rounded_frequency(original_frequency);
                if let Some((_, p)) = v.iter().find(|(k, _)| *k == key) {
                    return p;
                }
                let mut best = &v[0];
                for c in &v[1..] {
                    if (c.0 - key).abs() < (best.0 - key).abs() {
                        best = c;
                    }
                }
                &best.1
            }
        }
    }
}

/// kromosynth `getRoundedFrequencyValue` (JS Math.round is floor(x + 0.5)).
fn rounded_frequency(f: f64) -> f64 {
    if f < 20.0 {
        (f + 0.5).floor()
    } else {
        ((f / 10.0) + 0.5).floor() * 10.0
    }
}

/// Raw samples of every network output (CPPN activation or noise); `None` where the original
/// produces none. CPPNs are evaluated on the CPU; see [`evaluate_outputs_with`].
pub fn evaluate_outputs(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    frames: usize,
    velocity: f64,
    seed: u64,
) -> Vec<Option<Arc<[f32]>>> {
    evaluate_outputs_with(cppns, outputs, frames, velocity, seed, &CppnBackend::Cpu)
}

/// [`evaluate_outputs`] with the CPPNs evaluated by `backend`. Every frequency's job is
/// started before the first is awaited, so on the GPU they share a submission.
pub fn evaluate_outputs_with(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    frames: usize,
    velocity: f64,
    seed: u64,
    backend: &CppnBackend,
) -> Vec<Option<Arc<[f32]>>> {
    let mut result: Vec<Option<Arc<[f32]>>> = vec![None; outputs.len()];
    // Unique frequencies in first-seen order, each with its (network output, CPPN index)s.
    let mut groups: Vec<(f64, Vec<(usize, usize)>)> = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        match o.source {
            Source::Cppn(index) => match groups.iter_mut().find(|(f, _)| *f == o.frequency) {
                Some((_, members)) => members.push((i, index)),
                None => groups.push((o.frequency, vec![(i, index)])),
            },
            Source::Noise(kind) => {
                result[i] = Some(noise(kind, frames, seed, i as u64).into());
            }
            Source::Nothing => {}
        }
    }
    let indices: Vec<Vec<usize>> = groups
        .iter()
        .map(|(_, members)| {
            let mut indices: Vec<usize> = members.iter().map(|&(_, idx)| idx).collect();
            indices.dedup();
            indices
        })
        .collect();
    let evaluations: Vec<_> = groups
        .iter()
        .zip(&indices)
        .map(|((frequency, members), indices)| {
            // The per-frequency CPPN is chosen by the first member's original frequency.
            let original = outputs[members[0].0].original_frequency;
            let program = cppns.program_for(original);
            let periods = cppn::input_periods(*frequency, frames, crate::dsp::SAMPLE_RATE as f64);
            backend.start(program, periods, velocity, frames, indices)
        })
        .collect();
    for (((_, members), indices), evaluation) in groups.iter().zip(&indices).zip(evaluations) {
        let buffers: Vec<Arc<[f32]>> = evaluation.wait().into_iter().map(Arc::from).collect();
        for &(out, idx) in members {
            let k = indices.iter().position(|&x| x == idx).unwrap();
            result[out] = Some(buffers[k].clone());
        }
    }
    result
}

/// splitmix64: a small, fast, well-mixed PRNG; noise only needs to be deterministic per seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits in [0, 1), like Math.random.
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// kromosynth `getNoiseSamples` with a seeded PRNG instead of Math.random; `stream` separates
/// the network outputs.
pub fn noise(kind: NoiseKind, frames: usize, seed: u64, stream: u64) -> Vec<f32> {
    let mut rng = SplitMix64(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut out = vec![0.0f32; frames];
    match kind {
        NoiseKind::White => {
            for s in out.iter_mut() {
                *s = (rng.next_f64() * 2.0 - 1.0) as f32;
            }
        }
        NoiseKind::Pink => {
            let (mut b0, mut b1, mut b2, mut b3, mut b4, mut b5, mut b6) =
                (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            for s in out.iter_mut() {
                let white = rng.next_f64() * 2.0 - 1.0;
                b0 = 0.99886 * b0 + white * 0.0555179;
                b1 = 0.99332 * b1 + white * 0.0750759;
                b2 = 0.96900 * b2 + white * 0.1538520;
                b3 = 0.86650 * b3 + white * 0.3104856;
                b4 = 0.55000 * b4 + white * 0.5329522;
                b5 = -0.7616 * b5 - white * 0.0168980;
                let v = (b0 + b1 + b2 + b3 + b4 + b5 + b6 + white * 0.5362) as f32;
                *s = (v as f64 * 0.11) as f32;
                b6 = white * 0.115926;
            }
        }
        NoiseKind::Brown => {
            let mut last = 0.0f64;
            for s in out.iter_mut() {
                let white = rng.next_f64() * 2.0 - 1.0;
                let v = ((last + 0.02 * white) / 1.02) as f32;
                last = v as f64;
                *s = (v as f64 * 3.5) as f32;
            }
        }
    }
    out
}

/// `remapNumberToRange(s, -1, 1, lo, hi)` per sample, stored as f32.
pub fn remap(samples: &[f32], lo: f64, hi: f64) -> Vec<f32> {
    samples
        .iter()
        .map(|&s| ((s as f64 - -1.0) / (1.0 - -1.0) * (hi - lo) + lo) as f32)
        .collect()
}

/// Wavetable gain curve `index` of `count` from the mix samples
/// (`gainValuesPerAudioWave`, then `remapControlArrayToValueCurveRange`).
pub fn wavetable_gain(mix: &[f32], index: usize, count: usize) -> Vec<f32> {
    let fraction = 2.0 / count as f64;
    let half = fraction / 2.0;
    let start = index as f64 * fraction - 1.0;
    let start_fading = start - if index > 0 { half } else { 0.0 };
    let middle = start + half;
    let end = start + fraction;
    let end_fading = end + if index + 1 < count { half } else { 0.0 };
    mix.iter()
        .map(|&m| {
            let m = m as f64;
            let gain = if start_fading < m && m < end_fading {
                (1.0 - (middle - m).abs() / fraction) as f32
            } else {
                0.0f32
            };
            ((gain as f64 - -1.0) / (1.0 - -1.0) * (1.0 - 0.0) + 0.0) as f32
        })
        .collect()
}

/// Resolves `Samples` descriptions to arrays, computing each distinct one once.
pub struct Resolver<'a> {
    raw: &'a [Option<Arc<[f32]>>],
    done: Vec<(Samples, Option<Arc<[f32]>>)>,
}

impl<'a> Resolver<'a> {
    pub fn new(raw: &'a [Option<Arc<[f32]>>]) -> Self {
        Resolver {
            raw,
            done: Vec::new(),
        }
    }

    /// `None` when the underlying network output has no samples.
    pub fn resolve(&mut self, s: &Samples) -> Option<Arc<[f32]>> {
        if let Some((_, v)) = self.done.iter().find(|(k, _)| k == s) {
            return v.clone();
        }
        let v: Option<Arc<[f32]>> = match s {
            Samples::Output { output, range } => {
                let raw = self.raw[*output].clone();
                match (raw, range) {
                    (Some(raw), Some([lo, hi])) => Some(remap(&raw, *lo, *hi).into()),
                    (raw, _) => raw,
                }
            }
            Samples::WavetableGain { mix, index, count } => self
                .resolve(mix)
                .map(|m| wavetable_gain(&m, *index, *count).into()),
        };
        self.done.push((s.clone(), v.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_matches_the_js_formula() {
        assert_eq!(remap(&[-1.0, 0.0, 1.0], 0.0, 1.0), vec![0.0, 0.5, 1.0]);
        assert_eq!(remap(&[0.5], -1200.0, 1200.0), vec![600.0]);
    }

    #[test]
    fn wavetable_gains_crossfade_and_are_remapped_to_half_and_up() {
        // two waves: spans (-1, 0.5) and (-0.5, 1), middles -0.5 and 0.5
        let mix = [-0.5f32, 0.0, 0.5, 0.9];
        let g0 = wavetable_gain(&mix, 0, 2);
        let g1 = wavetable_gain(&mix, 1, 2);
        assert_eq!(g0, vec![1.0, 0.75, 0.5, 0.5]);
        assert_eq!(g1, vec![0.5, 0.75, 1.0, 0.8]);
    }

    #[test]
    fn noise_is_deterministic_per_seed_and_stream_and_bounded() {
        for kind in [NoiseKind::White, NoiseKind::Pink, NoiseKind::Brown] {
            let a = noise(kind, 4800, 7, 1);
            assert_eq!(a, noise(kind, 4800, 7, 1));
            assert_ne!(a, noise(kind, 4800, 8, 1));
            assert_ne!(a, noise(kind, 4800, 7, 2));
            assert!(a.iter().all(|s| s.abs() <= 1.5), "{kind:?}");
        }
        let w = noise(NoiseKind::White, 48000, 1, 0);
        let rms = (w.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        // uniform on [-1, 1] has RMS 1/sqrt(3)
        assert!((rms - 1.0 / 3f64.sqrt()).abs() < 0.01, "{rms}");
    }

    #[test]
    fn rounded_frequency_keys() {
        assert_eq!(rounded_frequency(7.5), 8.0);
        assert_eq!(rounded_frequency(184.99), 180.0);
        assert_eq!(rounded_frequency(445.0), 450.0);
    }
}
