//! BiquadFilterNode, following web-audio-api 1.1.0 `src/node/biquad_filter.rs`
//! (`calculate_coefs`, `get_computed_freq`, `BiquadFilterRenderer`).
//!
//! Coefficients are computed in f64 from the f32 params (Audio EQ Cookbook formulas, normalised
//! by a0), once per block when all four params are constant for the block, otherwise once per
//! frame. The filter runs in direct form I with f64 state per channel; each output is rounded to
//! f32.
//!
//! Channels and tail: the state follows the channel count of the last non-silent input (new
//! channels start from zero state, dropped channels lose theirs). While the input is silent the
//! filter keeps ringing on the previous channel count, feeding zeros, until no state value is a
//! normal f64; then it outputs one silent channel and reports no tail. Its state is not cleared
//! then: leftover zeros or subnormals are where it resumes from.
//!
//! With denormals flushed (as web-audio-api renders, see `denormals`), some settings never get
//! there: near the smallest normal f64 flushed products turn the recursion into a limit cycle
//! around 1e-307, and the node outputs non-silent zeros (on the last input's channel count) for
//! ever, as web-audio-api's does.

use std::f64::consts::{PI, SQRT_2};

use super::{
    AutomationRate, Bus, ChannelConfig, ParamDescriptor, Scope, DEFAULT_SAMPLE_RATE, MAX_CHANNELS,
    RENDER_QUANTUM,
};

/// Filter types (web-audio-api `BiquadFilterType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiquadType {
    Lowpass,
    Highpass,
    Bandpass,
    Notch,
    Allpass,
    Peaking,
    Lowshelf,
    Highshelf,
}

/// Normalised by a0.
#[derive(Clone, Copy, Debug, Default)]
struct Coefficients {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
}

/// web-audio-api `get_computed_freq`, in f32. Its clamp applies to the detune factor, not to the
/// product (unlike the spec's computedFrequency); kept as is.
fn computed_frequency(frequency: f32, detune: f32, sample_rate: f32) -> f32 {
    frequency * (detune / 1200.).exp2().clamp(0., sample_rate / 2.)
}

/// web-audio-api `calculate_coefs`. Q is in dB for lowpass and highpass, linear for the
/// others; the shelves ignore it (shelf slope S = 1).
#[allow(non_snake_case)]
fn coefficients(kind: BiquadType, sample_rate: f64, f0: f64, gain: f64, q: f64) -> Coefficients {
    let w0 = 2. * PI * f0 / sample_rate;
    let (b0, b1, b2, a0, a1, a2);
    match kind {
        BiquadType::Lowpass | BiquadType::Highpass => {
            let cos_w0 = w0.cos();
            let alpha = w0.sin() / (2. * 10_f64.powf(q / 20.));
            if kind == BiquadType::Lowpass {
                b0 = (1. - cos_w0) / 2.;
                b1 = 1. - cos_w0;
                b2 = (1. - cos_w0) / 2.;
            } else {
                b0 = (1. + cos_w0) / 2.;
                b1 = -(1. + cos_w0);
                b2 = (1. + cos_w0) / 2.;
            }
            a0 = 1. + alpha;
            a1 = -2. * cos_w0;
            a2 = 1. - alpha;
        }
        BiquadType::Bandpass | BiquadType::Notch | BiquadType::Allpass => {
            let cos_w0 = w0.cos();
            let alpha = w0.sin() / (2. * q);
            match kind {
                BiquadType::Bandpass => {
                    b0 = alpha;
                    b1 = 0.;
                    b2 = -alpha;
                }
                BiquadType::Notch => {
                    b0 = 1.;
                    b1 = -2. * cos_w0;
                    b2 = 1.;
                }
                _ => {
                    b0 = 1. - alpha;
                    b1 = -2. * cos_w0;
                    b2 = 1. + alpha;
                }
            }
            a0 = 1. + alpha;
            a1 = -2. * cos_w0;
            a2 = 1. - alpha;
        }
        BiquadType::Peaking => {
            let A = 10_f64.powf(gain / 40.);
            let cos_w0 = w0.cos();
            let alpha = w0.sin() / (2. * q);
            b0 = 1. + alpha * A;
            b1 = -2. * cos_w0;
            b2 = 1. - alpha * A;
            a0 = 1. + alpha / A;
            a1 = -2. * cos_w0;
            a2 = 1. - alpha / A;
        }
        BiquadType::Lowshelf | BiquadType::Highshelf => {
            let A = 10_f64.powf(gain / 40.);
            let cos_w0 = w0.cos();
            let alpha_s = w0.sin() / 2. * SQRT_2;
            let two_sqrt_a_alpha = 2. * alpha_s * A.sqrt();
            let (ap1, am1) = (A + 1., A - 1.);
            if kind == BiquadType::Lowshelf {
                b0 = A * (ap1 - am1 * cos_w0 + two_sqrt_a_alpha);
                b1 = 2. * A * (am1 - ap1 * cos_w0);
                b2 = A * (ap1 - am1 * cos_w0 - two_sqrt_a_alpha);
                a0 = ap1 + am1 * cos_w0 + two_sqrt_a_alpha;
                a1 = -2. * (am1 + ap1 * cos_w0);
                a2 = ap1 + am1 * cos_w0 - two_sqrt_a_alpha;
            } else {
                b0 = A * (ap1 + am1 * cos_w0 + two_sqrt_a_alpha);
                b1 = -2. * A * (am1 + ap1 * cos_w0);
                b2 = A * (ap1 + am1 * cos_w0 - two_sqrt_a_alpha);
                a0 = ap1 - am1 * cos_w0 + two_sqrt_a_alpha;
                a1 = 2. * (am1 - ap1 * cos_w0);
                a2 = ap1 - am1 * cos_w0 - two_sqrt_a_alpha;
            }
        }
    }
    Coefficients {
        b0: b0 / a0,
        b1: b1 / a0,
        b2: b2 / a0,
        a1: a1 / a0,
        a2: a2 / a0,
    }
}

/// `40 * log10(f32::MAX)` evaluated in f32, web-audio-api's max for `gain` (not a const fn).
const GAIN_MAX: f32 = 1_541.273_7;

pub struct Biquad {
    kind: BiquadType,
    /// x1, x2, y1, y2 per channel; the first `channels` are live.
    state: [[f64; 4]; MAX_CHANNELS],
    channels: usize,
    coefs: [Coefficients; RENDER_QUANTUM],
}

impl Biquad {
    /// In the order of `process`'s param slices: `frequency` (default 350, 0..=Nyquist at
    /// the default rate; see [`Biquad::params_at`]),
    /// `detune` (default 0, ±153600 cents), `Q` (default 1, unbounded), `gain` (default 0 dB,
    /// f32::MIN..=40·log10(f32::MAX)). All a-rate in web-audio-api 1.1.0.
    pub const PARAMS: &'static [ParamDescriptor] = &[
        ParamDescriptor {
            name: "frequency",
            automation_rate: AutomationRate::A,
            default_value: 350.,
            min_value: 0.,
            max_value: DEFAULT_SAMPLE_RATE as f32 / 2.,
        },
        ParamDescriptor {
            name: "detune",
            automation_rate: AutomationRate::A,
            default_value: 0.,
            min_value: -153_600.,
            max_value: 153_600.,
        },
        ParamDescriptor {
            name: "Q",
            automation_rate: AutomationRate::A,
            default_value: 1.,
            min_value: f32::MIN,
            max_value: f32::MAX,
        },
        ParamDescriptor {
            name: "gain",
            automation_rate: AutomationRate::A,
            default_value: 0.,
            min_value: f32::MIN,
            max_value: GAIN_MAX,
        },
    ];

    /// [`Biquad::PARAMS`] (given at the default rate) in a context at `sample_rate`: the
    /// frequency's maximum is that context's Nyquist frequency.
    pub fn params_at(sample_rate: f32) -> [ParamDescriptor; 4] {
        let mut params = [
            Self::PARAMS[0],
            Self::PARAMS[1],
            Self::PARAMS[2],
            Self::PARAMS[3],
        ];
        params[0].max_value = sample_rate / 2.;
        params
    }

    pub fn new(kind: BiquadType) -> Self {
        Biquad {
            kind,
            state: [[0.; 4]; MAX_CHANNELS],
            channels: 0,
            coefs: [Coefficients::default(); RENDER_QUANTUM],
        }
    }

    /// The Web Audio default (2, max, speakers).
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }
}

super::processor_via_fma!(Biquad);

impl Biquad {
    /// [`Processor::process`] (see [`super::processor_via_fma`]).
    #[inline(always)]
    fn process_block(
        &mut self,
        input: &Bus,
        params: &[&[f32]],
        output: &mut Bus,
        scope: &Scope,
    ) -> bool {
        let silent = input.is_silent();
        if silent
            && !self.state[..self.channels]
                .iter()
                .any(|s| s.iter().any(|v| v.is_normal()))
        {
            output.make_silent();
            return false;
        }
        if !silent {
            let n = input.number_of_channels();
            for s in &mut self.state[self.channels.min(n)..n] {
                *s = [0.; 4];
            }
            self.channels = n;
        }
        output.set_number_of_channels(self.channels);

        let [frequency, detune, q, gain] = [params[0], params[1], params[2], params[3]];
        let sample_rate = scope.sample_rate;
        let kind = self.kind;
        let coef_at = |i: usize| {
            let at = |p: &[f32]| p[if p.len() == 1 { 0 } else { i }];
            let f0 = computed_frequency(at(frequency), at(detune), sample_rate);
            coefficients(
                kind,
                f64::from(sample_rate),
                f64::from(f0),
                f64::from(at(gain)),
                f64::from(at(q)),
            )
        };
        let per_frame = [frequency, detune, q, gain].iter().any(|p| p.len() != 1);
        let frames = if per_frame { RENDER_QUANTUM } else { 1 };
        for (i, c) in self.coefs[..frames].iter_mut().enumerate() {
            *c = coef_at(i);
        }

        for ch in 0..self.channels {
            let x_in = input.channel(if silent { 0 } else { ch });
            let [mut x1, mut x2, mut y1, mut y2] = self.state[ch];
            let out = output.channel_mut(ch);
            for (i, (o, &x)) in out.iter_mut().zip(x_in.iter()).enumerate() {
                let c = &self.coefs[if per_frame { i } else { 0 }];
                let x = f64::from(x);
                let y = c.b0 * x + c.b1 * x1 + c.b2 * x2 - c.a1 * y1 - c.a2 * y2;
                x2 = x1;
                x1 = x;
                y2 = y1;
                y1 = y;
                *o = y as f32;
            }
            self.state[ch] = [x1, x2, y1, y2];
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::gain::Gain;
    use crate::dsp::oscillator::{Oscillator, OscillatorType};
    use crate::dsp::testing::{assert_same_bits, noise, oracle, Graph, Signal};
    use crate::dsp::Processor;
    use web_audio_api::context::{BaseAudioContext, OfflineAudioContext};
    use web_audio_api::node::{
        AudioBufferSourceNode, AudioNode, AudioScheduledSourceNode, BiquadFilterNode,
        BiquadFilterOptions, BiquadFilterType, GainNode, GainOptions, OscillatorNode,
        OscillatorOptions, OscillatorType as WaType,
    };
    use web_audio_api::AudioBuffer;

    const FRAMES: usize = 48_000;
    const TYPES: [(BiquadType, BiquadFilterType); 8] = [
        (BiquadType::Lowpass, BiquadFilterType::Lowpass),
        (BiquadType::Highpass, BiquadFilterType::Highpass),
        (BiquadType::Bandpass, BiquadFilterType::Bandpass),
        (BiquadType::Notch, BiquadFilterType::Notch),
        (BiquadType::Allpass, BiquadFilterType::Allpass),
        (BiquadType::Peaking, BiquadFilterType::Peaking),
        (BiquadType::Lowshelf, BiquadFilterType::Lowshelf),
        (BiquadType::Highshelf, BiquadFilterType::Highshelf),
    ];

    /// frequency, detune, Q, gain (the order of `Biquad::PARAMS`)
    type Values = [f32; 4];

    fn wa_biquad(
        ctx: &OfflineAudioContext,
        type_: BiquadFilterType,
        v: Values,
    ) -> BiquadFilterNode {
        BiquadFilterNode::new(
            ctx,
            BiquadFilterOptions {
                type_,
                frequency: v[0],
                detune: v[1],
                q: v[2],
                gain: v[3],
                ..Default::default()
            },
        )
    }

    fn wa_buffer(ctx: &OfflineAudioContext, channels: &[Vec<f32>]) -> AudioBufferSourceNode {
        let mut src = ctx.create_buffer_source();
        src.set_buffer(AudioBuffer::from(
            channels.to_vec(),
            DEFAULT_SAMPLE_RATE as f32,
        ));
        src.start();
        src
    }

    fn noise_channels(channels: usize, len: usize) -> Vec<Vec<f32>> {
        (0..channels).map(|c| noise(len, 7 + c as u32)).collect()
    }

    /// `channels`-channel noise of `len` frames -> biquad [frequency curve] -> out
    fn compare_noise(
        kind: BiquadType,
        wa: BiquadFilterType,
        v: Values,
        curve: Option<(&[f32], f64)>,
        channels: usize,
        len: usize,
    ) {
        let what = format!("{kind:?} {v:?} curve {curve:?} {channels} ch noise {len}");
        let data = noise_channels(channels, len);
        let theirs = oracle(channels, FRAMES, |ctx| {
            let src = wa_buffer(ctx, &data);
            let f = wa_biquad(ctx, wa, v);
            if let Some((c, d)) = curve {
                f.frequency().set_value_curve_at_time(c, 0., d);
            }
            src.connect(&f);
            f.connect(&ctx.destination());
            (src, f)
        });
        let mut g = Graph::default();
        let src = g.node(Signal::new(data), ChannelConfig::DEFAULT, &[], &[]);
        let f = g.node(
            Biquad::new(kind),
            Biquad::channel_config(),
            Biquad::PARAMS,
            &v,
        );
        if let Some((c, d)) = curve {
            g.param(f, 0).set_value_curve_at_time(c, 0., d).unwrap();
        }
        g.connect(src, f);
        let ours = g.render(f, channels, FRAMES);
        for c in 0..channels {
            assert_same_bits(&ours[c], &theirs[c], &format!("{what} channel {c}"));
        }
    }

    const SETTINGS: [Values; 4] = [
        [1000., 0., 1., 0.],
        [350., 0., 1., 0.],
        [5000., -150., 7.5, -12.],
        [120., 33., 0.4, 9.],
    ];

    #[test]
    fn buffer_source_stands_in_for_signal() {
        let data = noise_channels(2, 20_000);
        let theirs = oracle(2, FRAMES, |ctx| {
            let src = wa_buffer(ctx, &data);
            src.connect(&ctx.destination());
            src
        });
        for c in 0..2 {
            assert_eq!(&theirs[c][..20_000], &data[c][..]);
            assert!(theirs[c][20_000..].iter().all(|&v| v == 0.));
        }
    }

    #[test]
    fn constant_params_on_noise_match_web_audio_api() {
        for (kind, wa) in TYPES {
            for v in SETTINGS {
                compare_noise(kind, wa, v, None, 1, FRAMES);
            }
        }
    }

    #[test]
    fn frequency_curve_on_noise_matches_web_audio_api() {
        let sweep = [20., 12_000., 300., 30_000., 0., 2500.];
        for (kind, wa) in TYPES {
            compare_noise(
                kind,
                wa,
                [1000., 0., 2., 6.],
                Some((&sweep, 0.8)),
                1,
                FRAMES,
            );
        }
    }

    #[test]
    fn stereo_noise_with_tail_matches_web_audio_api() {
        // The input ends at a block boundary and mid-block; the filter rings on, then stops.
        for (kind, wa) in TYPES {
            compare_noise(kind, wa, [800., 0., 12., 3.], None, 2, 128 * 40);
            compare_noise(kind, wa, [3000., 0., 0.7, -6.], None, 2, 10_001);
        }
    }

    #[test]
    fn oscillator_input_with_all_params_curved_matches_web_audio_api() {
        let fc = [200., 4000., 50.];
        let dc = [0., -1200., 600.];
        let qc = [0.5, 20., 1.];
        let gc = [-20., 20., 0.];
        for (kind, wa) in TYPES {
            let v = [900., 0., 1., 0.];
            let theirs = oracle(1, FRAMES, |ctx| {
                let mut osc = OscillatorNode::new(
                    ctx,
                    OscillatorOptions {
                        type_: WaType::Sawtooth,
                        frequency: 110.,
                        ..Default::default()
                    },
                );
                osc.start();
                let f = wa_biquad(ctx, wa, v);
                f.frequency().set_value_curve_at_time(&fc, 0., 0.9);
                f.detune().set_value_curve_at_time(&dc, 0., 0.5);
                f.q().set_value_curve_at_time(&qc, 0., 0.75);
                f.gain().set_value_curve_at_time(&gc, 0., 0.6);
                osc.connect(&f);
                f.connect(&ctx.destination());
                (osc, f)
            });
            let mut g = Graph::default();
            let osc = g.node(
                Oscillator::new(OscillatorType::Sawtooth),
                Oscillator::channel_config(),
                Oscillator::PARAMS,
                &[110., 0.],
            );
            let f = g.node(
                Biquad::new(kind),
                Biquad::channel_config(),
                Biquad::PARAMS,
                &v,
            );
            for (i, (c, d)) in [(&fc, 0.9), (&dc, 0.5), (&qc, 0.75), (&gc, 0.6)]
                .into_iter()
                .enumerate()
            {
                g.param(f, i).set_value_curve_at_time(*c, 0., d).unwrap();
            }
            g.connect(osc, f);
            let ours = g.render(f, 1, FRAMES);
            assert_same_bits(&ours[0], &theirs[0], &format!("{kind:?} all curves"));
        }
    }

    #[test]
    fn channel_count_changes_match_web_audio_api() {
        // A mono sine always, plus stereo noise that is silent (gain 0, constant) until a gain
        // curve starts at 0.25 s and silent again (gain back to 0) after it ends at 0.5 s: the
        // filter input goes 1 -> 2 -> 1 channels.
        let data = noise_channels(2, FRAMES);
        let curve = [1., 0.5, 0.];
        for (kind, wa) in TYPES {
            let v = [2000., 0., 3., 4.];
            let theirs = oracle(2, FRAMES, |ctx| {
                let mut osc = ctx.create_oscillator();
                osc.start();
                let src = wa_buffer(ctx, &data);
                let gain = GainNode::new(
                    ctx,
                    GainOptions {
                        gain: 0.,
                        ..Default::default()
                    },
                );
                gain.gain().set_value_curve_at_time(&curve, 0.25, 0.25);
                let f = wa_biquad(ctx, wa, v);
                src.connect(&gain);
                gain.connect(&f);
                osc.connect(&f);
                f.connect(&ctx.destination());
                (osc, src, gain, f)
            });
            let mut g = Graph::default();
            let osc = g.node(
                Oscillator::new(OscillatorType::Sine),
                Oscillator::channel_config(),
                Oscillator::PARAMS,
                &[440., 0.],
            );
            let src = g.node(Signal::new(data.clone()), ChannelConfig::DEFAULT, &[], &[]);
            let gain = g.node(Gain::new(), Gain::channel_config(), Gain::PARAMS, &[0.]);
            g.param(gain, 0)
                .set_value_curve_at_time(&curve[..], 0.25, 0.25)
                .unwrap();
            let f = g.node(
                Biquad::new(kind),
                Biquad::channel_config(),
                Biquad::PARAMS,
                &v,
            );
            g.connect(src, gain);
            g.connect(gain, f);
            g.connect(osc, f);
            let ours = g.render(f, 2, FRAMES);
            for c in 0..2 {
                assert_same_bits(&ours[c], &theirs[c], &format!("{kind:?} channel {c}"));
            }
        }
    }

    #[test]
    fn gain_max_is_40_log10_f32_max() {
        assert_eq!(GAIN_MAX, 40. * f32::MAX.log10());
    }

    /// One block of `input` into a `kind` filter, then silence until the tail ends (`None`
    /// after `limit` blocks). Runs with denormals flushed, as web-audio-api renders.
    fn tail_blocks(kind: BiquadType, v: Values, input: &Bus, limit: usize) -> Option<usize> {
        let _ftz = crate::dsp::denormals::FlushDenormals::new();
        let mut f = Biquad::new(kind);
        let scope = Scope {
            frame: 0,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
        };
        let params: [&[f32]; 4] = [&v[0..1], &v[1..2], &v[2..3], &v[3..4]];
        let mut out = Bus::silent();
        assert!(f.process(input, &params, &mut out, &scope));
        for blocks in 0..limit {
            if !f.process(&Bus::silent(), &params, &mut out, &scope) {
                assert!(out.is_silent());
                assert_eq!(out.number_of_channels(), 1);
                return Some(blocks);
            }
            // Rings on as many channels as the last input had; zeros are not silence.
            assert_eq!(out.number_of_channels(), input.number_of_channels());
            assert!(!out.is_channel_silent(0));
        }
        None
    }

    fn stereo_impulse() -> Bus {
        let mut b = Bus::silent();
        b.set_number_of_channels(2);
        b.channel_mut(0)[0] = 1.;
        b
    }

    #[test]
    fn never_fed_filter_is_silent() {
        let mut f = Biquad::new(BiquadType::Lowpass);
        let scope = Scope {
            frame: 0,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
        };
        let mut out = Bus::silent();
        let params: [&[f32]; 4] = [&[1000.], &[0.], &[1.], &[0.]];
        assert!(!f.process(&Bus::silent(), &params, &mut out, &scope));
        assert!(out.is_silent());
    }

    #[test]
    fn tail_ends_once_state_is_not_normal() {
        let v = [8000., 0., 0.5, 3.];
        assert_eq!(
            tail_blocks(BiquadType::Lowpass, v, &stereo_impulse(), 100),
            Some(12)
        );
    }

    #[test]
    fn some_tails_never_end_with_denormals_flushed() {
        // Near the smallest normal f64, flushing turns some products to zero and the recursion
        // into a limit cycle around 1e-307: the node outputs non-silent zeros for ever. The
        // oracle test `tail_end_matches_web_audio_api` shows web-audio-api does the same.
        let v = [1000., 0., 1., 0.];
        assert_eq!(
            tail_blocks(BiquadType::Lowpass, v, &stereo_impulse(), 20_000),
            None
        );
    }

    /// A stereo burst through a `kind` filter plus a mono sine, summed by a gain (max mode) into
    /// a 5.1 destination: while the filter rings, the sum is stereo and lands in channels 0 and
    /// 1; once the filter is silent, it is mono and lands in the centre channel. So the block
    /// where the tail ends shows in the output.
    fn compare_tail_end(kind: BiquadType, wa: BiquadFilterType, v: Values, frames: usize) {
        let burst = noise_channels(2, 128);
        let theirs = oracle(6, frames, |ctx| {
            let src = wa_buffer(ctx, &burst);
            let f = wa_biquad(ctx, wa, v);
            let mut osc = ctx.create_oscillator();
            osc.start();
            let sum = ctx.create_gain();
            src.connect(&f);
            f.connect(&sum);
            osc.connect(&sum);
            sum.connect(&ctx.destination());
            (src, f, osc, sum)
        });
        let mut g = Graph::default();
        let src = g.node(Signal::new(burst), ChannelConfig::DEFAULT, &[], &[]);
        let f = g.node(
            Biquad::new(kind),
            Biquad::channel_config(),
            Biquad::PARAMS,
            &v,
        );
        let osc = g.node(
            Oscillator::new(OscillatorType::Sine),
            Oscillator::channel_config(),
            Oscillator::PARAMS,
            &[440., 0.],
        );
        let sum = g.node(Gain::new(), Gain::channel_config(), Gain::PARAMS, &[1.]);
        g.connect(src, f);
        g.connect(f, sum);
        g.connect(osc, sum);
        let ours = g.render(sum, 6, frames);
        for c in 0..6 {
            assert_same_bits(&ours[c], &theirs[c], &format!("{kind:?} {v:?} channel {c}"));
        }
        let centre_energy: f32 = theirs[2].iter().map(|x| x * x).sum();
        let left_energy: f32 = theirs[0].iter().map(|x| x * x).sum();
        assert!(left_energy > 0.);
        assert_eq!(
            centre_energy > 0.,
            tail_blocks(kind, v, &stereo_impulse(), frames / 128).is_some()
        );
    }

    #[test]
    fn tail_end_matches_web_audio_api() {
        // Ends after 2283 blocks with denormals flushed, 1778 without.
        compare_tail_end(
            BiquadType::Peaking,
            BiquadFilterType::Peaking,
            [200., 0., 6., -6.],
            128 * 2400,
        );
        // Never ends with denormals flushed; after 2514 blocks without.
        compare_tail_end(
            BiquadType::Bandpass,
            BiquadFilterType::Bandpass,
            [200., 0., 6., -6.],
            128 * 2600,
        );
    }
}
