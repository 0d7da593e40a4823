//! GainNode, following web-audio-api 1.1.0 `src/node/gain.rs` (`GainRenderer`).

use super::{AutomationRate, Bus, ChannelConfig, ParamDescriptor, Scope, RENDER_QUANTUM};

/// Multiplies its input by the `gain` param.
#[derive(Clone, Debug, Default)]
pub struct Gain;

impl Gain {
    /// `gain`: a-rate, default 1, unbounded (`f32::MIN..=f32::MAX`).
    pub const PARAMS: &'static [ParamDescriptor] = &[ParamDescriptor {
        name: "gain",
        automation_rate: AutomationRate::A,
        default_value: 1.,
        min_value: f32::MIN,
        max_value: f32::MAX,
    }];

    pub fn new() -> Self {
        Gain
    }

    /// The Web Audio default (2, max, speakers).
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }
}

super::processor_via_fma!(Gain);

impl Gain {
    /// [`Processor::process`] (see [`super::processor_via_fma`]).
    #[inline(always)]
    fn process_block(
        &mut self,
        input: &Bus,
        params: &[&[f32]],
        output: &mut Bus,
        _: &Scope,
    ) -> bool {
        if input.is_silent() {
            output.make_silent();
            return false;
        }
        let gain = params[0];

        // web-audio-api's shortcuts for a constant gain within 1e-6 of 0 or 1: they change the
        // samples (no multiplication) and the silence flags downstream, so they are kept.
        if gain.len() == 1 {
            let threshold = 1e-6_f32;
            if gain[0].abs() <= threshold {
                output.make_silent();
                return false;
            }
            if (1. - gain[0]).abs() <= threshold {
                output.copy_from(input);
                return false;
            }
        }

        // Every channel is written, silent ones included: web-audio-api copies the silence
        // buffer before multiplying, so they become non-silent zeros (-0.0 for a negative gain).
        if gain.len() == 1 {
            let g = gain[0];
            output.map_from(input, |i, o| {
                o.iter_mut().zip(i).for_each(|(o, i)| *o = i * g);
            });
        } else {
            debug_assert_eq!(gain.len(), RENDER_QUANTUM);
            output.map_from(input, |i, o| {
                o.iter_mut()
                    .zip(i)
                    .zip(gain)
                    .for_each(|((o, i), g)| *o = i * g);
            });
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::oscillator::{Oscillator, OscillatorType};
    use crate::dsp::testing::{assert_same_bits, oracle, Graph};
    use web_audio_api::context::BaseAudioContext;
    use web_audio_api::node::{
        AudioNode, AudioScheduledSourceNode, GainNode, GainOptions, OscillatorNode,
        OscillatorOptions, OscillatorType as WaType,
    };

    const FRAMES: usize = 48_000;

    fn wa_osc(
        ctx: &web_audio_api::context::OfflineAudioContext,
        type_: WaType,
        frequency: f32,
    ) -> OscillatorNode {
        let mut osc = OscillatorNode::new(
            ctx,
            OscillatorOptions {
                type_,
                frequency,
                ..Default::default()
            },
        );
        osc.start();
        osc
    }

    /// sawtooth 440 Hz -> gain(value) [with `curve` on gain from 0 for `duration`] -> out
    fn compare(what: &str, value: f32, curve: Option<(&[f32], f64)>) {
        let theirs = oracle(1, FRAMES, |ctx| {
            let osc = wa_osc(ctx, WaType::Sawtooth, 440.);
            let gain = GainNode::new(
                ctx,
                GainOptions {
                    gain: value,
                    ..Default::default()
                },
            );
            if let Some((c, d)) = curve {
                gain.gain().set_value_curve_at_time(c, 0., d);
            }
            osc.connect(&gain);
            gain.connect(&ctx.destination());
            (osc, gain)
        });
        let mut g = Graph::default();
        let osc = g.node(
            Oscillator::new(OscillatorType::Sawtooth),
            Oscillator::channel_config(),
            Oscillator::PARAMS,
            &[440., 0.],
        );
        let gain = g.node(Gain::new(), Gain::channel_config(), Gain::PARAMS, &[value]);
        if let Some((c, d)) = curve {
            g.param(gain, 0).set_value_curve_at_time(c, 0., d).unwrap();
        }
        g.connect(osc, gain);
        let ours = g.render(gain, 1, FRAMES);
        assert_same_bits(&ours[0], &theirs[0], what);
    }

    #[test]
    fn constant_gain_matches_web_audio_api() {
        for value in [0.5, -1.25, 3.0, 1.0, 0.0, 0.999_999_5, 1e-7] {
            compare(&format!("gain {value}"), value, None);
        }
    }

    #[test]
    fn gain_curve_matches_web_audio_api() {
        let curve = [0.0, 1.0, -0.5, 0.25, 2.0, 0.7, 0.1];
        // Ends mid-render (then holds the last point) and mid-block.
        compare("curve 0.7 s", 0.5, Some((&curve, 0.7)));
        compare("curve 1 s", 1.0, Some((&curve, 1.0)));
        compare("curve 3.3 s", 1.0, Some((&curve, 3.3)));
        compare("two points", 1.0, Some((&[1.0, 0.0], 0.013)));
    }

    #[test]
    fn audio_into_gain_param_matches_web_audio_api() {
        // A 5 Hz sine (mono) and a 3 Hz square, summed into gain.gain on top of 0.5.
        let theirs = oracle(1, FRAMES, |ctx| {
            let src = wa_osc(ctx, WaType::Triangle, 220.);
            let m1 = wa_osc(ctx, WaType::Sine, 5.);
            let m2 = wa_osc(ctx, WaType::Square, 3.);
            let gain = GainNode::new(
                ctx,
                GainOptions {
                    gain: 0.5,
                    ..Default::default()
                },
            );
            src.connect(&gain);
            m1.connect(gain.gain());
            m2.connect(gain.gain());
            gain.connect(&ctx.destination());
            (src, m1, m2, gain)
        });
        let mut g = Graph::default();
        let osc = |t| Oscillator::new(t);
        let cfg = Oscillator::channel_config();
        let p = Oscillator::PARAMS;
        let src = g.node(osc(OscillatorType::Triangle), cfg, p, &[220., 0.]);
        let m1 = g.node(osc(OscillatorType::Sine), cfg, p, &[5., 0.]);
        let m2 = g.node(osc(OscillatorType::Square), cfg, p, &[3., 0.]);
        let gain = g.node(Gain::new(), Gain::channel_config(), Gain::PARAMS, &[0.5]);
        g.connect(src, gain);
        g.connect_param(m1, gain, 0);
        g.connect_param(m2, gain, 0);
        let ours = g.render(gain, 1, FRAMES);
        assert_same_bits(&ours[0], &theirs[0], "osc -> gain.gain");
    }
}
