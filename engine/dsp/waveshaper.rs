//! WaveShaperNode, following web-audio-api 1.1.0 `src/node/waveshaper.rs`, oversample "none".
//!
//! kromosynth assigns only `curve` (a Float32Array from a CPPN output); `oversample` keeps its
//! default "none", so the 2x/4x resampling paths of web-audio-api are not reproduced.
//!
//! Facts for the graph:
//! - Input channel config: Web Audio default (2, max, speakers); the output has the input's
//!   channel count, every channel shaped.
//! - Silent input gives a silent output (one channel, no tail) when there is no curve or the
//!   curve maps 0 to (nearly) 0: its middle value (odd length) or the mean of its two middle
//!   values (even length) is below 1e-9 in magnitude. Otherwise silent input is shaped like
//!   zeros, giving a constant output.
//! - No curve (`curve` null): the input passes through unchanged.
//! - An empty curve shapes everything to 0. (web-audio-api 1.1.0 itself panics on its render
//!   thread when given an empty curve, computing the middle index; such renders never
//!   finished in the original.)
//! - The node never reports a tail.

use super::{Bus, ChannelConfig, ParamDescriptor, Scope};

/// web-audio-api's `apply_curve`: the input maps [-1, 1] linearly onto the curve's indices,
/// with linear interpolation between points and clamping outside.
#[inline(always)]
fn apply_curve(curve: &[f32], input: f32) -> f32 {
    if curve.is_empty() {
        return 0.;
    }
    let n = curve.len() as f32;
    let v = (n - 1.) / 2.0 * (input + 1.);
    if v <= 0. {
        curve[0]
    } else if v >= n - 1. {
        curve[(n - 1.) as usize]
    } else {
        let k = v.floor();
        let f = v - k;
        (1. - f) * curve[k as usize] + f * curve[(k + 1.) as usize]
    }
}

/// A WaveShaperNode.
pub struct WaveShaper {
    curve: Option<Vec<f32>>,
    /// Silent input may stay silent: the curve maps 0 to (nearly) 0.
    can_propagate_silence: bool,
}

impl WaveShaper {
    pub const PARAMS: &'static [ParamDescriptor] = &[];

    /// The wave shaper's input channel configuration (the Web Audio default).
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }

    pub fn new(curve: Option<Vec<f32>>) -> Self {
        let can_propagate_silence = match &curve {
            None => true,
            Some(c) if c.is_empty() => true,
            Some(c) if c.len() % 2 == 1 => c[c.len() / 2].abs() < 1e-9,
            Some(c) => {
                let (a, b) = (c[c.len() / 2 - 1], c[c.len() / 2]);
                ((a + b) / 2.).abs() < 1e-9
            }
        };
        WaveShaper {
            curve,
            can_propagate_silence,
        }
    }
}

super::processor_via_fma!(WaveShaper);

impl WaveShaper {
    /// [`Processor::process`] (see [`super::processor_via_fma`]).
    #[inline(always)]
    fn process_block(&mut self, input: &Bus, _: &[&[f32]], output: &mut Bus, _: &Scope) -> bool {
        if input.is_silent() && self.can_propagate_silence {
            output.make_silent();
            return false;
        }
        output.copy_from(input);
        if let Some(curve) = &self.curve {
            for c in 0..output.number_of_channels() {
                for o in output.channel_mut(c).iter_mut() {
                    *o = apply_curve(curve, *o);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testing::*;
    use crate::dsp::Processor;
    use crate::dsp::{DEFAULT_SAMPLE_RATE, RENDER_QUANTUM};
    use web_audio_api::context::OfflineAudioContext;
    use web_audio_api::node::{AudioNode, WaveShaperNode, WaveShaperOptions};

    /// A wiggly curve of `len` points (a CPPN output is arbitrary too).
    fn curve(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = i as f32 / len as f32;
                (x * 17.3).sin() * 0.8 + 0.3 * (x * 3.1).cos() - 0.1
            })
            .collect()
    }

    fn oracle(input: &[Vec<f32>], curve: Option<&[f32]>, channels: usize, ch: usize) -> Vec<f32> {
        let ctx = OfflineAudioContext::new(channels, FRAMES, DEFAULT_SAMPLE_RATE as f32);
        let src = oracle_source(&ctx, input);
        let options = WaveShaperOptions {
            curve: curve.map(<[f32]>::to_vec),
            ..WaveShaperOptions::default()
        };
        let shaper = WaveShaperNode::new(&ctx, options);
        src.connect(&shaper);
        to_destination(&ctx, &shaper);
        oracle_render(ctx, ch)
    }

    fn ours(input: &[Vec<f32>], curve: Option<&[f32]>, channels: usize, ch: usize) -> Vec<f32> {
        let mut shaper = WaveShaper::new(curve.map(<[f32]>::to_vec));
        let mut out = Bus::silent();
        render_ours(FRAMES, channels, ch, |s| {
            let b = s.frame as usize / RENDER_QUANTUM;
            let mut bus = Bus::silent();
            bus.add(&source_bus(input, b), &WaveShaper::channel_config());
            shaper.process(&bus, &[], &mut out, s);
            out.clone()
        })
    }

    /// Noise reaching past [-1, 1] (clamping) with exact -1, 0 and 1 samples, stopping before
    /// the render ends (silent input).
    fn input(seed: u32) -> Vec<f32> {
        let mut v: Vec<f32> = noise(40_001, seed).iter().map(|s| s * 1.3).collect();
        v[100] = -1.;
        v[101] = 0.;
        v[102] = 1.;
        v
    }

    #[test]
    fn oracle_curve_lengths() {
        let input = vec![input(8)];
        for len in [1, 2, 3, 1000, 48_000] {
            let c = curve(len);
            assert_bit_exact(
                &ours(&input, Some(&c), 1, 0),
                &oracle(&input, Some(&c), 1, 0),
                &format!("curve of {len}"),
            );
        }
    }

    #[test]
    fn oracle_zero_centred_curve_and_no_curve() {
        let input = vec![input(9)];
        let odd = [-0.5, 0.0, 0.7];
        let even = [-0.5, -1e-10, 1e-10, 0.7];
        for (c, what) in [
            (Some(&odd[..]), "odd"),
            (Some(&even[..]), "even"),
            (None, "none"),
        ] {
            assert_bit_exact(&ours(&input, c, 1, 0), &oracle(&input, c, 1, 0), what);
        }
    }

    #[test]
    fn oracle_stereo() {
        let input = vec![input(10), input(11)];
        let c = curve(777);
        for ch in 0..2 {
            assert_bit_exact(
                &ours(&input, Some(&c), 2, ch),
                &oracle(&input, Some(&c), 2, ch),
                &format!("stereo channel {ch}"),
            );
        }
    }

    #[test]
    fn silence_propagates_only_through_a_zero_centred_curve() {
        let scope = Scope {
            frame: 0,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
        };
        let mut out = Bus::silent();
        WaveShaper::new(Some(vec![-1., 0., 1.])).process(&Bus::silent(), &[], &mut out, &scope);
        assert!(out.is_silent());
        WaveShaper::new(Some(vec![0.5, 0.5])).process(&Bus::silent(), &[], &mut out, &scope);
        assert!(!out.is_silent());
        assert_eq!(out.channel(0)[17], 0.5);
        WaveShaper::new(Some(vec![])).process(&Bus::silent(), &[], &mut out, &scope);
        assert!(out.is_silent());
    }

    #[test]
    fn curve_lookup() {
        let c = [0., 10., 20.];
        assert_eq!(apply_curve(&c, -2.), 0.);
        assert_eq!(apply_curve(&c, 0.5), 15.);
        assert_eq!(apply_curve(&c, 7.), 20.);
        assert_eq!(apply_curve(&[4.], 0.3), 4.);
        assert!(apply_curve(&c, f32::NAN).is_nan());
    }
}
