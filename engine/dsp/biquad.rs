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

use std::f64::consts::{PI, SQRT_2};

use super::{
    AutomationRate, Bus, ChannelConfig, ParamDescriptor, Processor, Scope, MAX_CHANNELS,
    RENDER_QUANTUM, SAMPLE_RATE,
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
                b1 = -1. * (1. + cos_w0);
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
                    b2 = -1. * alpha;
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
const GAIN_MAX: f32 = 1541.273_6;

pub struct Biquad {
    kind: BiquadType,
    /// x1, x2, y1, y2 per channel; the first `channels` are live.
    state: [[f64; 4]; MAX_CHANNELS],
    channels: usize,
    coefs: [Coefficients; RENDER_QUANTUM],
}

impl Biquad {
    /// In the order of `process`'s param slices: `frequency` (default 350, 0..=Nyquist),
    /// `detune` (default 0, ±153600 cents), `Q` (default 1, unbounded), `gain` (default 0 dB,
    /// f32::MIN..=40·log10(f32::MAX)). All a-rate in web-audio-api 1.1.0.
    pub const PARAMS: &'static [ParamDescriptor] = &[
        ParamDescriptor {
            name: "frequency",
            automation_rate: AutomationRate::A,
            default_value: 350.,
            min_value: 0.,
            max_value: SAMPLE_RATE / 2.,
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

impl Processor for Biquad {
    fn process(&mut self, input: &Bus, params: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool {
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
