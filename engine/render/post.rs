//! What happens to a render's samples after the graph: the limiter the newest original server
//! can put before its destination, and the normalizations a client may ask for.
//!
//! The graph's output is bit-exact with kromosynth's batch renderer; everything here is applied
//! on top of it, in the order the newest original server applies it: limiter (block by block,
//! inside the render), then one normalization of the whole render.

use crate::dsp::compressor::Compressor;
use crate::dsp::{Bus, Processor, Scope, RENDER_QUANTUM};

/// How a render's samples are scaled once the render is complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Normalization {
    /// The graph's output as it is (the seed protocol's stream).
    #[default]
    None,
    /// kromosynth's `normalizeAudioBuffer`, this project's `render` output: an affine map of
    /// [min, max] to [-1, 1], only when a sample leaves [-1, 1].
    Original,
    /// The newest original server's batch output: see [`peak_normalize`].
    Peak,
}

impl Normalization {
    /// The protocol's name of each normalization.
    pub const NAMES: [(&'static str, Normalization); 3] = [
        ("none", Normalization::None),
        ("original", Normalization::Original),
        ("peak", Normalization::Peak),
    ];

    pub fn from_name(name: &str) -> Option<Normalization> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, normalization)| normalization)
    }

    /// Applies this normalization to a whole render.
    pub fn apply(self, samples: &mut [f32]) {
        match self {
            Normalization::None => {}
            Normalization::Original => super::normalize_like_original(samples),
            Normalization::Peak => peak_normalize(samples),
        }
    }
}

/// Samples faded in and out by [`peak_normalize`] at each end that is not already zero.
pub const FADE_SAMPLES: usize = 128;

/// The newest original server's post-processing of a render (its worklet-offline renderer,
/// then kromosynth's `ensureBufferStartsAndEndsAtZero`), operation for operation:
/// - the channels summed into a zeroed buffer (our render is one channel: `0 + x`, which turns
///   -0 into +0);
/// - peak = the largest |x| over the samples that are not NaN; when it is above 0 every sample
///   is divided by it (in f64, as JavaScript divides a Float32Array element by a number);
///   NaN becomes 0;
/// - if the first sample is not 0, sample i < 128 is multiplied by i/128; then, if the last
///   sample is not 0, sample `len - i` (i = 128 down to 1) by (i-1)/128. Indices outside the
///   render are skipped, as a typed array ignores them.
pub fn peak_normalize(samples: &mut [f32]) {
    let mut peak = 0.0f32;
    for s in samples.iter_mut() {
        *s += 0.0;
        // NaN fails the comparison, as `!isNaN(x) && abs > peak` does.
        if s.abs() > peak {
            peak = s.abs();
        }
    }
    let peak = peak as f64;
    for s in samples.iter_mut() {
        *s = if s.is_nan() {
            0.0
        } else if peak > 0.0 {
            (*s as f64 / peak) as f32
        } else {
            *s
        };
    }
    let len = samples.len();
    let fade = FADE_SAMPLES as f64;
    if len > 0 && samples[0] != 0.0 {
        for (i, s) in samples.iter_mut().take(FADE_SAMPLES).enumerate() {
            *s = (*s as f64 * (i as f64 / fade)) as f32;
        }
    }
    if len > 0 && samples[len - 1] != 0.0 {
        for i in (1..=FADE_SAMPLES.min(len)).rev() {
            let s = &mut samples[len - i];
            *s = (*s as f64 * ((i - 1) as f64 / fade)) as f32;
        }
    }
}

/// The newest original server's optional limiter (`USE_COMPRESSOR`): a DynamicsCompressor with
/// threshold 0 dB, knee 0, ratio 20, attack 1 ms and release 10 ms between the graph and the
/// destination. It sees the render's output as one channel and, like the node, delays it by
/// three blocks (the compressor's look-ahead line); the render keeps its length, so the last
/// 384 frames of the graph's output are not heard, as in an offline context of that length.
pub struct Limiter {
    sample_rate: f32,
    compressor: Compressor,
    input: Bus,
    output: Bus,
    frame: u64,
}

impl Limiter {
    const THRESHOLD: [f32; 1] = [0.0];
    const KNEE: [f32; 1] = [0.0];
    const RATIO: [f32; 1] = [20.0];
    const ATTACK: [f32; 1] = [0.001];
    const RELEASE: [f32; 1] = [0.01];

    pub fn new(sample_rate: u32) -> Limiter {
        Limiter {
            sample_rate: sample_rate as f32,
            compressor: Compressor::new(sample_rate as f32),
            input: Bus::silent(),
            output: Bus::silent(),
            frame: 0,
        }
    }

    /// Limits one block in place.
    pub fn process(&mut self, block: &mut [f32; RENDER_QUANTUM]) {
        self.input.set_number_of_channels(1);
        self.input.channel_mut(0).copy_from_slice(block);
        let params: [&[f32]; 5] = [
            &Self::THRESHOLD,
            &Self::KNEE,
            &Self::RATIO,
            &Self::ATTACK,
            &Self::RELEASE,
        ];
        let scope = Scope {
            frame: self.frame,
            sample_rate: self.sample_rate,
        };
        self.compressor
            .process(&self.input, &params, &mut self.output, &scope);
        block.copy_from_slice(self.output.channel(0));
        self.frame += RENDER_QUANTUM as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::DEFAULT_SAMPLE_RATE as SAMPLE_RATE;

    /// The original's steps, written as plainly as its JavaScript.
    fn peak_normalize_plainly(input: &[f32]) -> Vec<f32> {
        let mut summed = vec![0.0f32; input.len()];
        for (s, x) in summed.iter_mut().zip(input) {
            *s += *x;
        }
        let mut peak = 0.0f64;
        for s in &summed {
            if !s.is_nan() && (s.abs() as f64) > peak {
                peak = s.abs() as f64;
            }
        }
        for s in summed.iter_mut() {
            if peak > 0.0 {
                *s = if s.is_nan() {
                    0.0
                } else {
                    (*s as f64 / peak) as f32
                };
            } else if s.is_nan() {
                *s = 0.0;
            }
        }
        let n = summed.len() as i64;
        if summed[0] != 0.0 {
            for i in 0..128i64 {
                if i < n {
                    let s = &mut summed[i as usize];
                    *s = (*s as f64 * (i as f64 / 128.0)) as f32;
                }
            }
        }
        if summed[n as usize - 1] != 0.0 {
            for i in (1..=128i64).rev() {
                if n - i >= 0 {
                    let s = &mut summed[(n - i) as usize];
                    *s = (*s as f64 * ((i - 1) as f64 / 128.0)) as f32;
                }
            }
        }
        summed
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 - 0.5) * 7.0
            })
            .collect()
    }

    #[test]
    fn peak_normalization_is_the_originals_bit_for_bit() {
        let mut cases = vec![
            noise(1000, 1),
            noise(2, 2),
            noise(100, 3),
            noise(255, 4),
            vec![0.0; 300],
            vec![-0.0, 0.5, -0.0],
        ];
        let mut special = noise(500, 5);
        special[0] = f32::NAN;
        special[7] = -0.0;
        special[250] = f32::NAN;
        special[499] = 3.0e-39;
        cases.push(special);
        let mut starts_at_zero = noise(400, 6);
        starts_at_zero[0] = 0.0;
        cases.push(starts_at_zero);
        for case in cases {
            let mut ours = case.clone();
            peak_normalize(&mut ours);
            let theirs = peak_normalize_plainly(&case);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&theirs), "{} samples", case.len());
            assert!(ours.iter().all(|x| x.abs() <= 1.0));
        }
    }

    #[test]
    fn peak_normalization_reaches_one_and_fades_both_ends() {
        let mut s = noise(1000, 9);
        let peak_at = 500;
        s[peak_at] = -20.0;
        peak_normalize(&mut s);
        assert_eq!(s[peak_at].abs(), 1.0);
        assert_eq!(s[0], 0.0);
        assert_eq!(s[999], 0.0);
        assert!(s[1].abs() < 1.0 / 128.0 + 1e-7);
    }

    #[test]
    fn the_limiter_keeps_quiet_signals_and_tames_loud_ones() {
        let mut limiter = Limiter::new(SAMPLE_RATE);
        let mut peak_out = 0.0f32;
        let mut blocks = Vec::new();
        for b in 0..200 {
            let mut block = [0.0f32; RENDER_QUANTUM];
            for (i, s) in block.iter_mut().enumerate() {
                let t = (b * RENDER_QUANTUM + i) as f32 / 48_000.0;
                *s = 8.0 * (t * 440.0 * std::f32::consts::TAU).sin();
            }
            limiter.process(&mut block);
            blocks.push(block);
        }
        for block in &blocks[50..] {
            for s in block {
                peak_out = peak_out.max(s.abs());
            }
        }
        // Ratio 20 above 0 dB: 8 (18 dB over) comes out near 1 dB over, plus makeup gain.
        assert!(peak_out < 4.0, "peak {peak_out}");
        // The look-ahead line: the first three blocks are silent.
        assert!(blocks[..3].iter().flatten().all(|&s| s == 0.0));
        assert!(blocks[3].iter().any(|&s| s != 0.0));
    }
}
