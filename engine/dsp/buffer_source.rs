//! AudioBufferSourceNode, following web-audio-api 1.1.0 `src/node/audio_buffer_source.rs`, for
//! the way kromosynth uses it: a mono buffer at the context rate, `start()` at time 0, no loop,
//! no stop, no offset or duration.
//!
//! Playback has two paths, and which one runs changes the numbers:
//! - fast track: while the computed playback rate is exactly 1 (and has been since the first
//!   block), blocks are copied from the buffer at `round(buffer_time * rate)`;
//! - slow track: once any block has a computed rate other than 1, every later block computes an
//!   f64 playhead per frame and interpolates linearly in f64 (extrapolating past the last
//!   sample), even if the rate returns to 1.
//!
//! `buffer_time` (seconds into the buffer) is an f64 carried across blocks and advanced by
//! `(1 / rate) * 128` per fast block or `(1 / rate) * playback_rate` per slow frame, so rounding
//! accumulates exactly as in web-audio-api.
//!
//! Facts for the graph:
//! - playbackRate and detune are k-rate (automation-rate constrained): only each block's first
//!   value counts; computed rate = `playbackRate * 2^(detune / 1200)` in f32, then widened.
//! - While playing, the output is one channel carrying signal (zeros past the buffer's end in
//!   its last block). From the block after the end was reached it is one silent channel and
//!   the node reports no tail: it has finished ([`BufferSource::has_ended`]). It ends in the
//!   block where `buffer_time` reaches the buffer duration (rate > 0) or drops below 0 (rate
//!   < 0); with rate 0 it never ends.
//! - The node has no input; its channel config is the default and unused.

use super::sample_array::SampleArray;
use super::RENDER_QUANTUM;
use super::{AutomationRate, Bus, ChannelConfig, ParamDescriptor, Scope};

/// `almost::equal` (crate almost 0.2.0) for f64: relative tolerance sqrt(epsilon), scaled by
/// the larger magnitude but never below the smallest normal.
fn almost_equal(lhs: f64, rhs: f64) -> bool {
    const TOLERANCE: f64 = 0.000000014901161193847656;
    if !(lhs.is_finite() && rhs.is_finite()) {
        // Only finite times and interpolation weights reach here; for completeness, NaN is
        // never equal and infinities are equal when identical.
        return lhs == rhs;
    }
    let scale = lhs.abs().max(rhs.abs()).max(f64::MIN_POSITIVE);
    (lhs - rhs).abs() < TOLERANCE * scale
}

/// An AudioBufferSourceNode playing a mono buffer once from time 0.
pub struct BufferSource {
    buffer: SampleArray,
    sample_rate: f32,
    start_time: f64,
    offset: f64,
    buffer_time: f64,
    buffer_time_elapsed: f64,
    started: bool,
    is_aligned: bool,
    ended: bool,
}

impl BufferSource {
    /// Param order of [`Processor::process`]'s `params`.
    pub const PARAMS: &'static [ParamDescriptor] = &[
        ParamDescriptor {
            name: "playbackRate",
            automation_rate: AutomationRate::K,
            default_value: 1.,
            min_value: f32::MIN,
            max_value: f32::MAX,
        },
        ParamDescriptor {
            name: "detune",
            automation_rate: AutomationRate::K,
            default_value: 0.,
            min_value: f32::MIN,
            max_value: f32::MAX,
        },
    ];

    /// Source nodes have no input; web-audio-api gives them the default config.
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }

    /// A source playing `buffer` (an AudioBuffer at `sample_rate`, the context rate), started
    /// at time 0.
    pub fn new(buffer: impl Into<SampleArray>, sample_rate: f32) -> Self {
        BufferSource {
            buffer: buffer.into(),
            sample_rate,
            start_time: 0.,
            offset: 0.,
            buffer_time: 0.,
            buffer_time_elapsed: 0.,
            started: false,
            is_aligned: false,
            ended: false,
        }
    }

    /// Playback has finished: this and every later block is silent.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    fn fast_track(&mut self, out: &mut [f32; RENDER_QUANTUM], sample_rate: f64) {
        // Also covers web-audio-api's "buffer ends within this block" branch: samples past
        // the end are 0 there too.
        let start = (self.buffer_time * sample_rate).round() as usize;
        let len = self.buffer.len();
        for (i, o) in out.iter_mut().enumerate() {
            *o = if start + i < len {
                self.buffer.get(start + i)
            } else {
                0.
            };
        }
        let block_duration = 1. / sample_rate * RENDER_QUANTUM as f64;
        self.buffer_time += block_duration;
        self.buffer_time_elapsed += block_duration;
    }

    fn slow_track(
        &mut self,
        out: &mut [f32; RENDER_QUANTUM],
        block_time: f64,
        sample_rate: f64,
        playback_rate: f64,
    ) {
        let dt = 1. / sample_rate;
        let buffer_duration = self.buffer.len() as f64 / self.sample_rate as f64;
        let sampling_ratio = self.sample_rate as f64 / sample_rate;
        let mut taps: [Option<(usize, f64)>; RENDER_QUANTUM] = [None; RENDER_QUANTUM];
        for (i, tap) in taps.iter_mut().enumerate() {
            let current_time = block_time + i as f64 * dt;
            // "sticky" start: absorbs rounding in the start time
            if !self.started && almost_equal(current_time, self.start_time) {
                self.start_time = current_time;
            }
            // No stop time and no duration were given (both f64::MAX in web-audio-api); an
            // infinite rate can still drive the elapsed time to infinity.
            if current_time < self.start_time || self.buffer_time_elapsed >= f64::MAX {
                continue;
            }
            if !self.started {
                let delta = current_time - self.start_time;
                self.offset += delta * playback_rate;
                self.buffer_time = self.offset;
                self.buffer_time_elapsed = delta * playback_rate;
                self.started = true;
            }
            if self.buffer_time >= 0. && self.buffer_time < buffer_duration {
                let position = self.buffer_time * sampling_ratio;
                let playhead = position * sample_rate;
                let playhead_floored = playhead.floor();
                let prev = playhead_floored as usize;
                let k = playhead - playhead_floored;
                if prev < self.buffer.len() {
                    *tap = Some((prev, k));
                }
            }
            let time_incr = dt * playback_rate;
            self.buffer_time += time_incr;
            self.buffer_time_elapsed += time_incr;
        }

        for (o, tap) in out.iter_mut().zip(taps.iter()) {
            *o = match *tap {
                None => 0.,
                Some((prev, k)) => {
                    let prev_sample = self.buffer.get(prev) as f64;
                    let next_sample = if prev + 1 < self.buffer.len() {
                        self.buffer.get(prev + 1) as f64
                    } else if almost_equal(k, 1.) || prev == 0 {
                        // Past the last sample: 0 when (nearly) on it or for a one-sample
                        // buffer, else extrapolated from the last two samples.
                        0.
                    } else {
                        2. * prev_sample - self.buffer.get(prev - 1) as f64
                    };
                    (1. - k).mul_add(prev_sample, k * next_sample) as f32
                }
            };
        }
    }
}

super::processor_via_fma!(BufferSource);

impl BufferSource {
    /// [`Processor::process`] (see [`super::processor_via_fma`]).
    #[inline(always)]
    fn process_block(
        &mut self,
        _: &Bus,
        params: &[&[f32]],
        output: &mut Bus,
        scope: &Scope,
    ) -> bool {
        if self.ended {
            output.make_silent();
            return false;
        }
        let sample_rate = scope.sample_rate as f64;
        let block_time = scope.current_time();

        let playback_rate = params[0][0];
        let detune = params[1][0];
        let computed_playback_rate = (playback_rate * (detune / 1200.).exp2()) as f64;
        let buffer_duration = self.buffer.len() as f64 / self.sample_rate as f64;
        let sampling_ratio = self.sample_rate as f64 / sample_rate;

        if !self.started && self.start_time < block_time {
            self.start_time = block_time;
        }
        if self.start_time == block_time && self.offset == 0. {
            self.is_aligned = true;
        }
        if sampling_ratio != 1. || computed_playback_rate != 1. {
            self.is_aligned = false;
        }

        output.make_silent();
        let out = output.channel_mut(0);
        if self.is_aligned {
            if self.start_time == block_time {
                self.started = true;
            }
            self.fast_track(out, sample_rate);
        } else {
            self.slow_track(out, block_time, sample_rate, computed_playback_rate);
        }

        if self.buffer_time_elapsed >= f64::MAX
            || computed_playback_rate > 0. && self.buffer_time >= buffer_duration
            || computed_playback_rate < 0. && self.buffer_time < 0.
        {
            self.ended = true;
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
    use web_audio_api::node::{AudioNode, AudioScheduledSourceNode};
    use web_audio_api::{AudioBuffer, AudioParam, AutomationRate};

    type Automation = fn(&AudioParam);

    fn constant(v: f32) -> impl Fn(&AudioParam) {
        move |p: &AudioParam| {
            p.set_value(v);
        }
    }

    /// The oracle: the buffer played with the given automation of playbackRate and detune.
    fn oracle(
        buffer: &[f32],
        frames: usize,
        rate: &dyn Fn(&AudioParam),
        detune: &dyn Fn(&AudioParam),
    ) -> Vec<f32> {
        let ctx = OfflineAudioContext::new(1, frames, DEFAULT_SAMPLE_RATE as f32);
        let mut src = ctx.create_buffer_source();
        src.set_buffer(AudioBuffer::from(
            vec![buffer.to_vec()],
            DEFAULT_SAMPLE_RATE as f32,
        ));
        rate(src.playback_rate());
        detune(src.detune());
        src.connect(&ctx.destination());
        src.start();
        oracle_render(ctx, 0)
    }

    /// Ours, fed each block's k-rate values as a k-rate probe records them. (For a curve that
    /// starts at 0, block 0 still gets the value from before the curve: web-audio-api's k-rate
    /// value is the intrinsic value at block start, computed at the end of the previous block.)
    fn ours(
        buffer: &[f32],
        frames: usize,
        rate: &dyn Fn(&AudioParam),
        detune: &dyn Fn(&AudioParam),
    ) -> Vec<f32> {
        let probe_frames = frames + RENDER_QUANTUM;
        let rates = oracle_param_values(probe_frames, AutomationRate::K, |p| {
            p.set_value(1.);
            rate(p)
        });
        let detunes = oracle_param_values(probe_frames, AutomationRate::K, |p| {
            p.set_value(0.);
            detune(p)
        });
        let mut src = BufferSource::new(buffer.to_vec(), DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        let none = Bus::silent();
        render_ours(frames, 1, 0, |s| {
            let f = s.frame as usize;
            src.process(&none, &[&[rates[f]], &[detunes[f]]], &mut out, s);
            out.clone()
        })
    }

    fn check(
        buffer: &[f32],
        frames: usize,
        rate: &dyn Fn(&AudioParam),
        detune: &dyn Fn(&AudioParam),
        what: &str,
    ) {
        assert_bit_exact(
            &ours(buffer, frames, rate, detune),
            &oracle(buffer, frames, rate, detune),
            what,
        );
    }

    #[test]
    fn oracle_constant_rates() {
        let buffer = noise(FRAMES, 12);
        for (rate, detune) in [
            (1., 0.),
            (0.5, 0.),
            (1.7, 0.),
            (1., 700.),
            (0.8, -350.),
            (0., 0.),
            (-1., 0.),
            (12., 1200.),
        ] {
            check(
                &buffer,
                FRAMES,
                &constant(rate),
                &constant(detune),
                &format!("rate {rate} detune {detune}"),
            );
        }
    }

    #[test]
    fn oracle_buffer_on_the_block_grid() {
        // 375 blocks exactly: whether the source ends after block 374 depends on the f64
        // accumulation of the playhead
        let buffer = noise(48_000, 13);
        for rate in [1., 0.999, 2.] {
            check(
                &buffer,
                49_000,
                &constant(rate),
                &constant(0.),
                &format!("rate {rate}"),
            );
        }
    }

    #[test]
    fn oracle_rate_and_detune_curves() {
        let buffer = noise(FRAMES, 14);
        let rate_curve: Automation = |p| {
            let v: Vec<f32> = (0..300)
                .map(|i| 0.2 + 3.0 * (i as f32 / 40.).sin().abs())
                .collect();
            p.set_value_curve_at_time(&v, 0., 1.1);
        };
        let detune_curve: Automation = |p| {
            let v: Vec<f32> = (0..300).map(|i| 1200. * (i as f32 / 25.).cos()).collect();
            p.set_value_curve_at_time(&v, 0., 1.1);
        };
        check(
            &buffer,
            FRAMES,
            &rate_curve,
            &constant(0.),
            "playbackRate curve",
        );
        check(
            &buffer,
            FRAMES,
            &constant(1.),
            &detune_curve,
            "detune curve",
        );
        check(&buffer, FRAMES, &rate_curve, &detune_curve, "both curves");
    }

    #[test]
    fn oracle_fast_track_then_slow_track() {
        // rate 1 (block copies) until 0.5 s, then 1.3, then back to 1 (stays on the slow track)
        let buffer = noise(FRAMES, 15);
        let steps: Automation = |p| {
            p.set_value_at_time(1.3, 0.5);
            p.set_value_at_time(1., 0.6);
        };
        check(&buffer, FRAMES, &steps, &constant(0.), "rate steps");
    }

    #[test]
    fn ends_after_the_buffer_and_stays_silent() {
        let mut src = BufferSource::new(vec![0.5; 300], DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        let mut tails = vec![];
        for b in 0..4 {
            let scope = Scope {
                frame: (b * RENDER_QUANTUM) as u64,
                sample_rate: DEFAULT_SAMPLE_RATE as f32,
            };
            tails.push(src.process(&Bus::silent(), &[&[1.], &[0.]], &mut out, &scope));
            assert_eq!(out.is_silent(), b == 3, "block {b}");
        }
        assert_eq!(tails, [true, true, true, false]);
        assert!(src.has_ended());
    }

    #[test]
    fn almost_equal_is_relative() {
        assert!(almost_equal(0., 0.));
        assert!(almost_equal(1., 1. + 1e-9));
        assert!(!almost_equal(1., 1. + 1e-7));
        assert!(!almost_equal(f64::NAN, f64::NAN));
    }
}
