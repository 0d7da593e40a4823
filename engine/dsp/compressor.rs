//! DynamicsCompressorNode, following web-audio-api 1.1.0 `src/node/dynamics_compressor.rs`.
//!
//! A feed-forward compressor after Giannoulis, Massberg & Reiss (2012), fig. 7c: per frame, the
//! loudest input channel in dB goes through the gain computer (soft knee) and a branching peak
//! detector (attack/release one-pole smoothing of the attenuation), plus a makeup gain derived
//! from the curve at 0 dB. The gains computed from the current block are applied to the input
//! of three blocks earlier: web-audio-api's "~6 ms" delay line is a ring of
//! `ceil(rate * 0.006 / 128) + 1` = 4 blocks at 48 kHz, read one slot after the one just
//! written, i.e. 384 frames of delay.
//!
//! Facts for the graph: input channel config (2, clamped-max, speakers). The output has the
//! channel count of the delayed block; when that block was silent the output is one silent
//! channel and the node reports no tail (so the first three blocks are always silent). All five
//! params are k-rate (automation-rate constrained): only each block's first value is used.

use super::{
    AutomationRate, Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation, ParamDescriptor,
    Scope, RENDER_QUANTUM,
};

/// `20 log10(v)`, with the spec's -1000 dB for 0.
fn lin_to_db(val: f32) -> f32 {
    if val == 0. {
        -1000.
    } else {
        20. * val.log10()
    }
}

fn db_to_lin(val: f32) -> f32 {
    (10.0_f32).powf(val / 20.)
}

/// A DynamicsCompressorNode.
pub struct Compressor {
    /// The delay line of input blocks (mono or stereo, silence flags kept: whether a delayed
    /// block is silent decides the output).
    ring: Vec<Bus>,
    ring_index: usize,
    /// Detector state (dB of attenuation) carried across blocks.
    prev_detector_value: f32,
}

impl Compressor {
    /// Param order of [`Processor::process`]'s `params`.
    pub const PARAMS: &'static [ParamDescriptor] = &[
        ParamDescriptor {
            name: "threshold",
            automation_rate: AutomationRate::K,
            default_value: -24.,
            min_value: -100.,
            max_value: 0.,
        },
        ParamDescriptor {
            name: "knee",
            automation_rate: AutomationRate::K,
            default_value: 30.,
            min_value: 0.,
            max_value: 40.,
        },
        ParamDescriptor {
            name: "ratio",
            automation_rate: AutomationRate::K,
            default_value: 12.,
            min_value: 1.,
            max_value: 20.,
        },
        ParamDescriptor {
            name: "attack",
            automation_rate: AutomationRate::K,
            default_value: 0.003,
            min_value: 0.,
            max_value: 1.,
        },
        ParamDescriptor {
            name: "release",
            automation_rate: AutomationRate::K,
            default_value: 0.25,
            min_value: 0.,
            max_value: 1.,
        },
    ];

    /// The compressor's input channel configuration.
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig {
            count: 2,
            mode: ChannelCountMode::ClampedMax,
            interpretation: ChannelInterpretation::Speakers,
        }
    }

    pub fn new(sample_rate: f32) -> Self {
        // computed in f32 as web-audio-api does
        let ring_len = (sample_rate * 0.006 / RENDER_QUANTUM as f32).ceil() as usize + 1;
        Compressor {
            ring: vec![Bus::silent(); ring_len],
            ring_index: 0,
            prev_detector_value: 0.,
        }
    }
}

super::processor_via_fma!(Compressor);

impl Compressor {
    /// [`Processor::process`] (see [`super::processor_via_fma`]).
    #[inline(always)]
    fn process_block(
        &mut self,
        input: &Bus,
        params: &[&[f32]],
        output: &mut Bus,
        scope: &Scope,
    ) -> bool {
        let sample_rate = scope.sample_rate;
        let threshold = params[0][0];
        let knee = params[1][0];
        let ratio = params[2][0];
        let attack = params[3][0];
        let release = params[4][0];

        // The spec's knee extends from threshold to threshold + knee; the paper's formula
        // centres it on the threshold, so the threshold moves up by half the knee.
        let threshold = if knee > 0. {
            threshold + knee / 2.
        } else {
            threshold
        };
        let half_knee = knee / 2.;
        let knee_partial = (1. / ratio - 1.) / (2. * knee);
        let attack_tau = (-1. / (attack * sample_rate)).exp();
        let release_tau = (-1. / (release * sample_rate)).exp();

        let full_range_gain = threshold + (-threshold / ratio);
        let full_range_makeup = 1. / db_to_lin(full_range_gain);
        let makeup_gain = lin_to_db(full_range_makeup.powf(0.6));

        // Each frame's peak over the channels (in channel order, as web-audio-api) in dB, all
        // before the detector's sequential loop: none of it depends on the detector.
        let mut levels = [f32::MIN; RENDER_QUANTUM];
        for c in 0..input.number_of_channels() {
            for (level, &s) in levels.iter_mut().zip(input.channel(c)) {
                let sample = s.abs();
                if sample > *level {
                    *level = sample;
                }
            }
        }
        for level in levels.iter_mut() {
            *level = lin_to_db(*level);
        }

        let mut prev_detector_value = self.prev_detector_value;
        let mut reduction_gains = [0.; RENDER_QUANTUM];
        for (gain, &sample_db) in reduction_gains.iter_mut().zip(&levels) {
            let sample_attenuated = if sample_db <= threshold - half_knee {
                sample_db
            } else if sample_db <= threshold + half_knee {
                sample_db + (sample_db - threshold + half_knee).powi(2) * knee_partial
            } else {
                threshold + (sample_db - threshold) / ratio
            };
            let sample_attenuation = sample_db - sample_attenuated;

            let detector_value = if sample_attenuation > prev_detector_value {
                attack_tau * prev_detector_value + (1. - attack_tau) * sample_attenuation
            } else {
                release_tau * prev_detector_value + (1. - release_tau) * sample_attenuation
            };
            let reduction_gain = -detector_value + makeup_gain;
            *gain = db_to_lin(reduction_gain);
            prev_detector_value = detector_value;
        }
        self.prev_detector_value = prev_detector_value;

        self.ring[self.ring_index].copy_from(input);
        let read_index = (self.ring_index + 1) % self.ring.len();
        self.ring_index = read_index;
        let delayed = &self.ring[read_index];

        if delayed.is_silent() {
            output.make_silent();
            return false;
        }
        output.copy_from(delayed);
        for c in 0..output.number_of_channels() {
            for (o, g) in output.channel_mut(c).iter_mut().zip(reduction_gains.iter()) {
                *o *= g;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testing::*;
    use crate::dsp::Processor;
    use crate::dsp::DEFAULT_SAMPLE_RATE;
    use web_audio_api::context::{BaseAudioContext, OfflineAudioContext};
    use web_audio_api::node::AudioNode;

    /// threshold, knee, ratio, attack, release
    type Settings = [f32; 5];

    /// A kromosynth genome's settings: JS numbers, rounded to f32 by the AudioParams.
    const KROMOSYNTH_FIXTURE: Settings = [
        -9.443438495509326_f64 as f32,
        23.027188228443265_f64 as f32,
        12.927213160321116_f64 as f32,
        0.03206114277709276_f64 as f32,
        0.014547325670719147_f64 as f32,
    ];
    /// The render socket's optional 0 dB limiter.
    const LIMITER: Settings = [0., 0., 20., 0.001, 0.01];
    const DEFAULTS: Settings = [-24., 30., 12., 0.003, 0.25];
    const HARD_KNEE_SLOW: Settings = [-40., 0., 4., 0.2, 0.9];
    const INSTANT: Settings = [-30., 40., 1.5, 0., 0.];

    /// Noise with a loud middle section, so attack and release both act.
    fn input(channels: usize) -> Vec<Vec<f32>> {
        (0..channels)
            .map(|c| {
                let mut v = noise(40_001, 21 + c as u32);
                for (i, s) in v.iter_mut().enumerate() {
                    let level = if (10_000..25_000).contains(&i) {
                        2.5
                    } else {
                        0.1
                    };
                    *s *= level;
                }
                v
            })
            .collect()
    }

    fn oracle(input: &[Vec<f32>], p: Settings, channels: usize, channel: usize) -> Vec<f32> {
        let ctx = OfflineAudioContext::new(channels, FRAMES, DEFAULT_SAMPLE_RATE as f32);
        let src = oracle_source(&ctx, input);
        let comp = ctx.create_dynamics_compressor();
        comp.threshold().set_value(p[0]);
        comp.knee().set_value(p[1]);
        comp.ratio().set_value(p[2]);
        comp.attack().set_value(p[3]);
        comp.release().set_value(p[4]);
        src.connect(&comp);
        to_destination(&ctx, &comp);
        oracle_render(ctx, channel)
    }

    fn ours(input: &[Vec<f32>], p: Settings, channels: usize, channel: usize) -> Vec<f32> {
        let mut comp = Compressor::new(DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        let params: Vec<&[f32]> = p.iter().map(std::slice::from_ref).collect();
        render_ours(FRAMES, channels, channel, |s| {
            let b = s.frame as usize / RENDER_QUANTUM;
            let mut bus = Bus::silent();
            bus.add(&source_bus(input, b), &Compressor::channel_config());
            comp.process(&bus, &params, &mut out, s);
            out.clone()
        })
    }

    #[test]
    fn oracle_mono() {
        let input = input(1);
        for p in [
            KROMOSYNTH_FIXTURE,
            LIMITER,
            DEFAULTS,
            HARD_KNEE_SLOW,
            INSTANT,
        ] {
            assert_bit_exact(
                &ours(&input, p, 1, 0),
                &oracle(&input, p, 1, 0),
                &format!("{p:?}"),
            );
        }
    }

    #[test]
    fn oracle_stereo() {
        let input = input(2);
        for channel in 0..2 {
            assert_bit_exact(
                &ours(&input, KROMOSYNTH_FIXTURE, 2, channel),
                &oracle(&input, KROMOSYNTH_FIXTURE, 2, channel),
                &format!("stereo channel {channel}"),
            );
        }
    }

    #[test]
    fn ring_is_four_blocks_and_delays_by_three() {
        let mut comp = Compressor::new(DEFAULT_SAMPLE_RATE as f32);
        assert_eq!(comp.ring.len(), 4);
        let params: Vec<&[f32]> = DEFAULTS.iter().map(std::slice::from_ref).collect();
        let scope = Scope {
            frame: 0,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
        };
        let mut out = Bus::silent();
        let mut quiet = Bus::silent();
        quiet.channel_mut(0).fill(1e-4);
        for b in 0..4 {
            let tail = comp.process(&quiet, &params, &mut out, &scope);
            assert_eq!(tail, b == 3, "block {b}");
            assert_eq!(out.is_silent(), b < 3, "block {b}");
        }
    }
}
