//! OscillatorNode, following web-audio-api 1.1.0 `src/node/oscillator.rs` (`OscillatorRenderer`)
//! and the sine table of `src/node/mod.rs`.
//!
//! Only what kromosynth uses: the four standard types, started at time 0 and never stopped.
//! web-audio-api renders them without wavetables (`periodic_wave.rs` only serves the custom
//! type): sine interpolates linearly in an 8192-point f32 sine table, square and sawtooth are
//! naive waves corrected with polyBLEP, triangle is naive. The phase is an f64 in [0, 1) advanced
//! by `computed_frequency / sample_rate` per frame.
//!
//! Output: one channel, never silent, from frame 0 on. (For the record, web-audio-api outputs one
//! silent channel in blocks entirely before `start` or after `stop`, and zeros in a non-silent
//! channel for the frames of a block that are before start or from stop on.)

use std::sync::OnceLock;

use super::{AutomationRate, Bus, ChannelConfig, ParamDescriptor, Scope, SAMPLE_RATE};

const TABLE_LENGTH: usize = 8192;

/// The shape of the wave (web-audio-api `OscillatorType` without `Custom`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OscillatorType {
    Sine,
    Square,
    Sawtooth,
    Triangle,
}

/// The sine table as web-audio-api computes it: in f32, `x * 2 * PI * (1 / 8192)` with
/// `std::f32::consts::PI`, then `f32::sin`.
fn sine_table() -> &'static [f32; TABLE_LENGTH] {
    static TABLE: OnceLock<Box<[f32; TABLE_LENGTH]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0.0; TABLE_LENGTH]);
        for (x, v) in t.iter_mut().enumerate() {
            *v = ((x as f32) * 2.0 * std::f32::consts::PI * (1. / (TABLE_LENGTH as f32))).sin();
        }
        t
    })
}

/// Phase increment per frame, computed in f64 from the f32 params, clamped to ±Nyquist.
#[inline(always)]
fn phase_increment(frequency: f32, detune: f32, sample_rate: f64) -> f64 {
    increment_from(frequency as f64 * detune_factor(detune), sample_rate)
}

#[inline(always)]
fn detune_factor(detune: f32) -> f64 {
    (detune as f64 / 1200.).exp2()
}

#[inline(always)]
fn increment_from(computed_frequency: f64, sample_rate: f64) -> f64 {
    computed_frequency.clamp(-sample_rate / 2., sample_rate / 2.) / sample_rate
}

/// Wraps only from above, as web-audio-api does: a negative frequency drives the phase below 0
/// and it stays there.
#[inline(always)]
fn unroll(phase: f64) -> f64 {
    if phase >= 1. {
        phase - 1.
    } else {
        phase
    }
}

/// polyBLEP correction around a discontinuity at phase 0 (t in [0, 1), dt the increment).
#[inline(always)]
fn poly_blep(mut t: f64, dt: f64) -> f64 {
    if t < dt {
        t /= dt;
        t + t - t * t - 1.0
    } else if t > 1.0 - dt {
        t = (t - 1.0) / dt;
        t.mul_add(t, t) + t + 1.0
    } else {
        0.0
    }
}

pub struct Oscillator {
    kind: OscillatorType,
    phase: f64,
    sine: &'static [f32; TABLE_LENGTH],
}

impl Oscillator {
    /// `frequency` (a-rate, default 440, ±Nyquist), `detune` (a-rate, default 0, ±153600 cents).
    pub const PARAMS: &'static [ParamDescriptor] = &[
        ParamDescriptor {
            name: "frequency",
            automation_rate: AutomationRate::A,
            default_value: 440.,
            min_value: -SAMPLE_RATE / 2.,
            max_value: SAMPLE_RATE / 2.,
        },
        ParamDescriptor {
            name: "detune",
            automation_rate: AutomationRate::A,
            default_value: 0.,
            min_value: -153_600.,
            max_value: 153_600.,
        },
    ];

    pub fn new(kind: OscillatorType) -> Self {
        Oscillator {
            kind,
            phase: 0.,
            sine: sine_table(),
        }
    }

    /// A source has no input; this is the configuration web-audio-api gives it anyway (the
    /// Web Audio default), which no mixing ever uses.
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }

    #[inline(always)]
    fn sample(&self, incr: f64) -> f32 {
        match self.kind {
            OscillatorType::Sine => {
                let position = self.phase * TABLE_LENGTH as f64;
                let floored = position.floor();
                let prev = floored as usize;
                let next = if prev + 1 == TABLE_LENGTH {
                    0
                } else {
                    prev + 1
                };
                let k = (position - floored) as f32;
                self.sine[prev].mul_add(1. - k, self.sine[next] * k)
            }
            OscillatorType::Sawtooth => {
                // Shifted by half a period so that the wave starts at 0, not -1.
                let phase = unroll(self.phase + 0.5);
                let sample = 2.0 * phase - 1.0;
                (sample - poly_blep(phase, incr)) as f32
            }
            OscillatorType::Square => {
                let mut sample = if self.phase < 0.5 { 1.0 } else { -1.0 };
                sample += poly_blep(self.phase, incr);
                sample -= poly_blep(unroll(self.phase + 0.5), incr);
                sample as f32
            }
            OscillatorType::Triangle => {
                let mut sample = -4. * self.phase + 2.;
                if sample > 1. {
                    sample = 2. - sample;
                } else if sample < -1. {
                    sample = -2. - sample;
                }
                sample as f32
            }
        }
    }
}

super::processor_via_fma!(Oscillator);

impl Oscillator {
    /// [`Processor::process`] (see [`super::processor_via_fma`]).
    #[inline(always)]
    fn process_block(
        &mut self,
        _: &Bus,
        params: &[&[f32]],
        output: &mut Bus,
        scope: &Scope,
    ) -> bool {
        let (frequency, detune) = (params[0], params[1]);
        let sample_rate = scope.sample_rate as f64;
        output.set_number_of_channels(1);
        let out = output.channel_mut(0);
        if frequency.len() == 1 && detune.len() == 1 {
            let incr = phase_increment(frequency[0], detune[0], sample_rate);
            for o in out.iter_mut() {
                *o = self.sample(incr);
                self.phase = unroll(self.phase + incr);
            }
        } else if detune.len() == 1 {
            // A constant detune's factor is the same f64 every frame, so computing it once
            // gives the same increments without an exp2 per frame.
            let factor = detune_factor(detune[0]);
            for (o, &f) in out.iter_mut().zip(frequency.iter().cycle()) {
                let incr = increment_from(f as f64 * factor, sample_rate);
                *o = self.sample(incr);
                self.phase = unroll(self.phase + incr);
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                let f = frequency[if frequency.len() == 1 { 0 } else { i }];
                let incr = phase_increment(f, detune[i], sample_rate);
                *o = self.sample(incr);
                self.phase = unroll(self.phase + incr);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testing::{assert_bit_exact, oracle, Graph};
    use crate::dsp::Processor;
    use web_audio_api::context::BaseAudioContext;
    use web_audio_api::node::{
        AudioNode, AudioScheduledSourceNode, OscillatorNode, OscillatorOptions,
        OscillatorType as WaType,
    };

    const FRAMES: usize = 96_000;
    const TYPES: [(OscillatorType, WaType); 4] = [
        (OscillatorType::Sine, WaType::Sine),
        (OscillatorType::Square, WaType::Square),
        (OscillatorType::Sawtooth, WaType::Sawtooth),
        (OscillatorType::Triangle, WaType::Triangle),
    ];

    struct Case<'a> {
        frequency: f32,
        detune: f32,
        frequency_curve: Option<(&'a [f32], f64)>,
        detune_curve: Option<(&'a [f32], f64)>,
    }

    fn compare(kind: OscillatorType, wa: WaType, case: &Case) {
        let what = format!(
            "{kind:?} {} Hz detune {} curves {:?} {:?}",
            case.frequency, case.detune, case.frequency_curve, case.detune_curve
        );
        let theirs = oracle(1, FRAMES, |ctx| {
            let mut osc = OscillatorNode::new(
                ctx,
                OscillatorOptions {
                    type_: wa,
                    frequency: case.frequency,
                    detune: case.detune,
                    ..Default::default()
                },
            );
            if let Some((c, d)) = case.frequency_curve {
                osc.frequency().set_value_curve_at_time(c, 0., d);
            }
            if let Some((c, d)) = case.detune_curve {
                osc.detune().set_value_curve_at_time(c, 0., d);
            }
            osc.connect(&ctx.destination());
            osc.start();
            osc
        });
        let mut g = Graph::default();
        let osc = g.node(
            Oscillator::new(kind),
            Oscillator::channel_config(),
            Oscillator::PARAMS,
            &[case.frequency, case.detune],
        );
        if let Some((c, d)) = case.frequency_curve {
            g.param(osc, 0).set_value_curve_at_time(c, 0., d).unwrap();
        }
        if let Some((c, d)) = case.detune_curve {
            g.param(osc, 1).set_value_curve_at_time(c, 0., d).unwrap();
        }
        let ours = g.render(osc, 1, FRAMES);
        let energy: f32 = theirs[0].iter().map(|v| v * v).sum();
        assert!(energy > 1.0, "{what}: the oracle rendered silence");
        assert_bit_exact(&what, &ours[0], &theirs[0]);
    }

    #[test]
    fn constant_frequencies_match_web_audio_api() {
        for (kind, wa) in TYPES {
            for frequency in [440., 184.997, 27.5, 3000., 23_999.] {
                for detune in [0., -37.5] {
                    let case = Case {
                        frequency,
                        detune,
                        frequency_curve: None,
                        detune_curve: None,
                    };
                    compare(kind, wa, &case);
                }
            }
        }
    }

    #[test]
    fn frequency_and_detune_curves_match_web_audio_api() {
        let sweep = [30., 2000., 440., 8000., 5., 184.997];
        let beyond_nyquist = [100., 30_000., -500.];
        let detune = [0., 1200., -2400., 35.];
        for (kind, wa) in TYPES {
            let cases = [
                Case {
                    frequency: 440.,
                    detune: 0.,
                    frequency_curve: Some((&sweep, 1.5)),
                    detune_curve: None,
                },
                Case {
                    frequency: 440.,
                    detune: 10.,
                    frequency_curve: Some((&beyond_nyquist, 2.0)),
                    detune_curve: None,
                },
                Case {
                    frequency: 184.997,
                    detune: 0.,
                    frequency_curve: None,
                    detune_curve: Some((&detune, 0.9)),
                },
                Case {
                    frequency: 27.5,
                    detune: 0.,
                    frequency_curve: Some((&sweep, 0.3)),
                    detune_curve: Some((&detune, 1.7)),
                },
            ];
            for case in &cases {
                compare(kind, wa, case);
            }
        }
    }

    #[test]
    fn phase_wraps_into_unit_interval() {
        let mut osc = Oscillator::new(OscillatorType::Sine);
        let mut out = Bus::silent();
        let scope = Scope {
            frame: 0,
            sample_rate: SAMPLE_RATE,
        };
        for _ in 0..100 {
            osc.process(&Bus::silent(), &[&[18_000.], &[0.]], &mut out, &scope);
            assert!((0.0..1.0).contains(&osc.phase));
        }
        assert_eq!(out.number_of_channels(), 1);
        assert!(!out.is_channel_silent(0));
    }

    #[test]
    fn sine_table_is_one_period() {
        let t = sine_table();
        assert_eq!(t[0], 0.);
        assert_eq!(t[TABLE_LENGTH / 4], 1.);
    }
}
