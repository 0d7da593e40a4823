//! AudioParam values per block, following web-audio-api 1.1.0 `src/param.rs`
//! (`AudioParam::set_value` / `set_value_curve_at_time`, `AudioParamProcessor::compute_buffer`
//! and `mix_to_output`).
//!
//! Only the two automations kromosynth uses are supported: setting the intrinsic value and value
//! curves. They go through the same event timeline as in web-audio-api because the order of
//! events decides the sound (see [`Param::set_value`]).
//!
//! # How an audio signal feeds a param
//!
//! In web-audio-api the param is a node of its own whose single input has channel count 1, mode
//! `explicit`, interpretation `discrete` ([`INPUT_CHANNEL_CONFIG`]). Every signal connected to the
//! param is summed into that input with `Bus::add(signal, &INPUT_CHANNEL_CONFIG)`: with
//! `discrete`, a multi-channel signal keeps only its first channel (no speaker down-mix; the
//! right channel of a stereo signal is dropped). The param's computed values are then
//! `clamp(input + intrinsic)` per frame, with NaN replaced by the default value.
//!
//! # Values per block
//!
//! [`Param::compute`] yields 1 value (constant for the block) or 128 values, exactly when
//! web-audio-api's `AudioParamValues::get` yields a slice of that length: nodes branch on that
//! length, so it is part of the result. Notably the block in which a `set_value` event is applied
//! yields 128 equal values for an a-rate param, and every web-audio-api node constructor calls
//! `set_value(option)` on each of its params, so block 0 of a freshly built node always has
//! 128-value a-rate params.

use super::sample_array::SampleArray;

use super::{
    AutomationRate, Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation, ParamDescriptor,
    Scope, RENDER_QUANTUM,
};

/// The channel configuration of a param's audio input in web-audio-api 1.1.0 (`AudioParam`'s
/// `channel_config`): connected signals are summed into one channel, keeping only channel 0 of
/// each.
pub const INPUT_CHANNEL_CONFIG: ChannelConfig = ChannelConfig {
    count: 1,
    mode: ChannelCountMode::Explicit,
    interpretation: ChannelInterpretation::Discrete,
};

/// Why an automation call was refused. web-audio-api panics in these cases (the JS bindings turn
/// the panic into an exception); the messages are its.
#[derive(Clone, Debug, PartialEq)]
pub enum AutomationError {
    /// "TypeError - The provided value is non-finite."
    NonFiniteValue,
    /// "InvalidStateError - sequence length should not be less than 2"
    CurveTooShort,
    /// start time non-finite or negative
    InvalidTime,
    /// duration non-finite or not strictly positive
    InvalidDuration,
    /// "NotSupportedError": a curve would overlap another automation event
    Overlap,
}

impl std::fmt::Display for AutomationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let msg = match self {
            AutomationError::NonFiniteValue => "TypeError - The provided value is non-finite.",
            AutomationError::CurveTooShort => {
                "InvalidStateError - sequence length should not be less than 2"
            }
            AutomationError::InvalidTime => "RangeError - invalid time value",
            AutomationError::InvalidDuration => "RangeError - duration should be strictly positive",
            AutomationError::Overlap => {
                "NotSupportedError - SetValueCurveAtTime overlaps another automation event"
            }
        };
        f.write_str(msg)
    }
}

impl std::error::Error for AutomationError {}

#[derive(Clone, Debug)]
enum Event {
    /// web-audio-api queues `set_value` at time 0 so that it sorts first; when processed, its
    /// time becomes the block's start time.
    SetValue(f32),
    Curve {
        start: f64,
        duration: f64,
        values: SampleArray,
    },
}

impl Event {
    fn time(&self) -> f64 {
        match self {
            Event::SetValue(_) => 0.0,
            Event::Curve { start, .. } => *start,
        }
    }
}

/// One AudioParam's automation state.
#[derive(Clone, Debug)]
pub struct Param {
    descriptor: ParamDescriptor,
    intrinsic_value: f32,
    /// Sorted by time, stable: web-audio-api pushes then stable-sorts. Events before `next`
    /// are done; they stay so that nothing is freed while rendering.
    timeline: Vec<Event>,
    next: usize,
}

/// Frame index within a block where `time` falls, as web-audio-api rounds it.
fn end_index(time: f64, block_time: f64, dt: f64) -> usize {
    (((time - block_time).max(0.) / dt).round() as usize).min(RENDER_QUANTUM)
}

/// web-audio-api `compute_set_value_curve_sample`: k = floor((N-1)/D * (t-T0)) computed in f64,
/// interpolation weight rounded to f32 and applied with a fused multiply-add.
#[inline(always)]
fn curve_sample(start: f64, duration: f64, values: &SampleArray, time: f64) -> f32 {
    if time - start >= duration {
        return values.get(values.len() - 1);
    }
    interpolate(values, curve_position(values, start, duration, time))
}

/// `out[i]` = `first` plus `step` added `i` times, one rounding per addition (web-audio-api's
/// frame times), computed without the chain of dependent additions where it can be exact.
///
/// Between powers of two, f64 values are the multiples of one spacing `u`, so adding `step` to
/// such a value rounds to it plus `step` rounded to a multiple of `u`, the same amount every
/// time, unless `step` lies exactly halfway between two multiples (then the tie goes to the
/// even one, which alternates). So while the sums stay below the next power of two, the i-th
/// is exactly `first + i * d` (every term a multiple of `u` below 2^53 `u`, so exact); in the
/// other cases (a power of two crossed, a tie, zero or a non-finite value) the additions are
/// done one by one.
#[inline(always)]
fn running_sum(first: f64, step: f64, out: &mut [f64]) {
    let n = out.len();
    let exact = first > 0.0 && first.is_finite() && step > 0.0 && step.is_finite() && {
        // The power of two at or below `first`, and its spacing 2^(exponent - 52): exact,
        // `first` being normal (well above f64's subnormals wherever a frame time is).
        let power = f64::from_bits(first.to_bits() & 0x7ff0_0000_0000_0000);
        let u = power * f64::EPSILON;
        let units = step / u;
        let d = units.round_ties_even() * u;
        let next_power = power * 2.0;
        if u > 0.0 && (units - units.floor()) != 0.5 && first + n as f64 * d < next_power {
            for (i, t) in out.iter_mut().enumerate() {
                *t = (i as f64).mul_add(d, first);
            }
            true
        } else {
            false
        }
    };
    if !exact {
        let mut time = first;
        for t in out.iter_mut() {
            *t = time;
            time += step;
        }
    }
}

/// Where `time` falls in the curve's points, in f64.
#[inline(always)]
fn curve_position(values: &SampleArray, start: f64, duration: f64, time: f64) -> f64 {
    (values.len() - 1) as f64 * (time - start) / duration
}

/// The curve's value at `position` (inside the curve).
#[inline(always)]
fn interpolate(values: &SampleArray, position: f64) -> f32 {
    let k = position as usize;
    let phase = (position - position.floor()) as f32;
    let (a, b) = (values.get(k), values.get(k + 1));
    (b - a).mul_add(phase, a)
}

/// [`curve_sample`] at each of `times`, or `before` where a time precedes the curve's start.
/// The same operations per frame, arranged so that the curve positions (a division each) are
/// computed several frames at a time.
#[inline(always)]
fn curve_samples(
    start: f64,
    duration: f64,
    values: &SampleArray,
    times: &[f64],
    before: f32,
    out: &mut [f32],
) {
    let mut positions = [0.; RENDER_QUANTUM];
    for (p, &t) in positions.iter_mut().zip(times) {
        *p = curve_position(values, start, duration, t);
    }
    #[cfg(target_arch = "x86_64")]
    if super::fma_available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { curve_samples_avx2(start, duration, values, times, &positions, before, out) };
        return;
    }
    curve_samples_at(start, duration, values, times, &positions, before, out);
}

/// The frames of [`curve_samples`] at their `positions`, one by one.
#[inline(always)]
fn curve_samples_at(
    start: f64,
    duration: f64,
    values: &SampleArray,
    times: &[f64],
    positions: &[f64],
    before: f32,
    out: &mut [f32],
) {
    let last = values.get(values.len() - 1);
    for ((o, &t), &position) in out.iter_mut().zip(times).zip(positions) {
        *o = if t < start {
            before
        } else if t - start >= duration {
            last
        } else {
            interpolate(values, position)
        };
    }
}

/// [`curve_samples`]' choice and interpolation four frames at a time, with the same operations
/// per frame: truncation of the f64 position for the point index, `position - floor(position)`
/// rounded to f32 for the weight, and one fused multiply-add. The two points are gathered.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn curve_samples_avx2(
    start: f64,
    duration: f64,
    values: &SampleArray,
    times: &[f64],
    positions: &[f64; RENDER_QUANTUM],
    before: f32,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let last = values.get(values.len() - 1);
    let (slots, slot_count, mask) = values.slots();
    // Lanes outside the curve gather from a clamped index and are replaced afterwards; inside
    // it the index and its successor are points of the curve (web-audio-api indexes them
    // unchecked, so a position rounding up to the last point would panic there).
    let max_index = (values.len() - 1).min(i32::MAX as usize) as i32;
    // A window's slot is the index under its mask (a power of two below 2^31); a whole
    // array's mask keeps every bit of the clamped index.
    let slot_mask = _mm_set1_epi32(mask.min(i32::MAX as usize) as i32);
    debug_assert!(slot_count > 0);
    let n = out.len().min(times.len());
    let whole = n / 4 * 4;
    for i in (0..whole).step_by(4) {
        let t = _mm256_loadu_pd(times.as_ptr().add(i));
        let position = _mm256_loadu_pd(positions.as_ptr().add(i));
        let since = _mm256_sub_pd(t, _mm256_set1_pd(start));
        let is_before = _mm256_cmp_pd::<_CMP_LT_OQ>(t, _mm256_set1_pd(start));
        let is_after = _mm256_cmp_pd::<_CMP_GE_OQ>(since, _mm256_set1_pd(duration));
        let k = _mm256_cvttpd_epi32(position);
        let k = _mm_min_epi32(
            _mm_max_epi32(k, _mm_setzero_si128()),
            _mm_set1_epi32(max_index),
        );
        let k1 = _mm_min_epi32(
            _mm_add_epi32(k, _mm_set1_epi32(1)),
            _mm_set1_epi32(max_index),
        );
        let (k, k1) = (_mm_and_si128(k, slot_mask), _mm_and_si128(k1, slot_mask));
        let a = _mm_i32gather_ps::<4>(slots as *const f32, k);
        let b = _mm_i32gather_ps::<4>(slots as *const f32, k1);
        let weight = _mm256_cvtpd_ps(_mm256_sub_pd(position, _mm256_floor_pd(position)));
        let inside = _mm_fmadd_ps(_mm_sub_ps(b, a), weight, a);
        let outside = _mm_blendv_ps(
            _mm_set1_ps(last),
            _mm_set1_ps(before),
            _mm256_cvtpd_ps(is_before),
        );
        let is_out = _mm256_cvtpd_ps(_mm256_or_pd(is_before, is_after));
        _mm_storeu_ps(
            out.as_mut_ptr().add(i),
            _mm_blendv_ps(inside, outside, is_out),
        );
    }
    curve_samples_at(
        start,
        duration,
        values,
        &times[whole..n],
        &positions[whole..n],
        before,
        &mut out[whole..n],
    );
}

impl Param {
    pub fn new(descriptor: ParamDescriptor) -> Self {
        Param {
            descriptor,
            intrinsic_value: descriptor.default_value,
            timeline: Vec::with_capacity(4),
            next: 0,
        }
    }

    pub fn descriptor(&self) -> &ParamDescriptor {
        &self.descriptor
    }

    /// `param.value = v`, which is also what every web-audio-api node constructor does with
    /// each of its param options.
    ///
    /// As in web-audio-api, the intrinsic value changes at once and a SetValue event is queued
    /// with time 0. Pending events are kept sorted by time with ties in call order, so the call
    /// order against a curve starting at 0 matters:
    /// - `set_value` then the curve (a constructor option, then the curve): the curve rules
    ///   from frame 0 on and the param holds its last point afterwards;
    /// - the curve then `set_value`: the curve plays the same, but when it ends the queued value
    ///   replaces its last point.
    ///
    /// Neither order is refused (web-audio-api does not panic either).
    pub fn set_value(&mut self, value: f32) -> Result<(), AutomationError> {
        if !value.is_finite() {
            return Err(AutomationError::NonFiniteValue);
        }
        // A set_value is never refused for overlapping a curve: its time 0 is never inside a
        // curve's (start, end) interval, which is what web-audio-api checks.
        self.intrinsic_value = value;
        self.insert(Event::SetValue(value));
        Ok(())
    }

    /// `param.setValueCurveAtTime(values, start_time, duration)`. After the curve ends the param
    /// holds the curve's last value.
    pub fn set_value_curve_at_time(
        &mut self,
        values: impl Into<SampleArray>,
        start_time: f64,
        duration: f64,
    ) -> Result<(), AutomationError> {
        let values = values.into();
        if values.len() < 2 {
            return Err(AutomationError::CurveTooShort);
        }
        if !start_time.is_finite() || start_time < 0. {
            return Err(AutomationError::InvalidTime);
        }
        if !duration.is_finite() || duration <= 0. {
            return Err(AutomationError::InvalidDuration);
        }
        let end_time = start_time + duration;
        if self.timeline[self.next..]
            .iter()
            .any(|e| e.time() > start_time && e.time() < end_time)
        {
            return Err(AutomationError::Overlap);
        }
        self.insert(Event::Curve {
            start: start_time,
            duration,
            values,
        });
        Ok(())
    }

    fn insert(&mut self, event: Event) {
        let t = event.time();
        let at = self.next + self.timeline[self.next..].partition_point(|e| e.time() <= t);
        self.timeline.insert(at, event);
    }

    /// The param's values for the block at `scope`, with the param's audio `input` (already
    /// summed with [`INPUT_CHANNEL_CONFIG`]) added. Writes `out[..n]` and returns `n`, 1 or 128.
    pub fn compute(
        &mut self,
        scope: &Scope,
        input: &Bus,
        out: &mut [f32; RENDER_QUANTUM],
    ) -> usize {
        super::fma_dispatch!(self, Param, compute_block(scope: &Scope, input: &Bus, out: &mut [f32; RENDER_QUANTUM]) -> usize)
    }

    #[inline(always)]
    fn compute_block(
        &mut self,
        scope: &Scope,
        input: &Bus,
        out: &mut [f32; RENDER_QUANTUM],
    ) -> usize {
        let len = self.compute_intrinsic(scope, out);
        self.mix_input(input, out, len)
    }

    /// web-audio-api `compute_buffer`: the intrinsic values, 1 or 128 of them, into `buf`.
    #[inline(always)]
    fn compute_intrinsic(&mut self, scope: &Scope, buf: &mut [f32; RENDER_QUANTUM]) -> usize {
        let block_time = scope.current_time();
        let dt = 1. / scope.sample_rate as f64;
        let next_block_time = dt.mul_add(RENDER_QUANTUM as f64, block_time);
        let is_a_rate = self.descriptor.automation_rate == AutomationRate::A;

        let is_constant_block = match self.timeline.get(self.next) {
            None => true,
            Some(e) => e.time() >= next_block_time,
        };
        let mut len = 0;
        if !is_a_rate || is_constant_block {
            buf[0] = self.intrinsic_value;
            len = 1;
            if is_constant_block {
                return 1;
            }
        }

        loop {
            let Some(event) = self.timeline.get(self.next) else {
                if is_a_rate {
                    buf[len..].fill(self.intrinsic_value);
                    len = RENDER_QUANTUM;
                }
                return len;
            };
            match event {
                &Event::SetValue(value) => {
                    // Its time becomes the block time: nothing to fill before it, and it always
                    // applies within this block.
                    self.intrinsic_value = value;
                    self.next += 1;
                }
                Event::Curve {
                    start,
                    duration,
                    values,
                } => {
                    let (start, duration) = (*start, *duration);
                    let end_time = start + duration;
                    if is_a_rate {
                        let end = end_index(end_time, block_time, dt);
                        if end > len {
                            // The frame times are web-audio-api's running sum, in order.
                            let mut times = [0.; RENDER_QUANTUM];
                            running_sum(
                                (len as f64).mul_add(dt, block_time),
                                dt,
                                &mut times[len..end],
                            );
                            curve_samples(
                                start,
                                duration,
                                values,
                                &times[len..end],
                                self.intrinsic_value,
                                &mut buf[len..end],
                            );
                            self.intrinsic_value = buf[end - 1];
                            len = end;
                        }
                    }
                    if end_time >= next_block_time {
                        // The value at the next block's start, which a k-rate param uses then.
                        self.intrinsic_value =
                            curve_sample(start, duration, values, next_block_time);
                        return len;
                    }
                    self.intrinsic_value = values.get(values.len() - 1);
                    self.next += 1;
                }
            }
        }
    }

    /// web-audio-api `mix_to_output`: adds the input signal, maps NaN to the default value and
    /// clamps (with `max().min()`, not `clamp`, as it does).
    #[inline(always)]
    fn mix_input(&self, input: &Bus, buf: &mut [f32; RENDER_QUANTUM], len: usize) -> usize {
        let d = &self.descriptor;
        let finish = |v: f32| {
            if v.is_nan() {
                d.default_value
            } else {
                v.max(d.min_value).min(d.max_value)
            }
        };
        let is_a_rate = d.automation_rate == AutomationRate::A;
        if len == 1 || !is_a_rate {
            let value = buf[0];
            if input.is_silent() || !is_a_rate {
                // A k-rate param takes only the input's first frame. Adding the silent input's
                // 0.0 is kept: it turns -0.0 into +0.0.
                buf[0] = finish(value + input.channel(0)[0]);
                1
            } else {
                for (o, &i) in buf.iter_mut().zip(input.channel(0).iter()) {
                    *o = finish(i + value);
                }
                RENDER_QUANTUM
            }
        } else {
            for (o, &i) in buf.iter_mut().zip(input.channel(0).iter()) {
                *o = finish(i + *o);
            }
            RENDER_QUANTUM
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn four_frames_at_a_time_is_frame_by_frame() {
        if !crate::dsp::fma_available() {
            println!("skipping: no AVX2 and FMA on this CPU");
            return;
        }
        let dt = 1.0 / 48_000.0;
        let points: Vec<f32> = noise(20_000, 5);
        // A whole curve, and the same points in a window (filled up to the frames read).
        let whole = SampleArray::from(&points[..]);
        for (start, duration) in [(0.0, 20_000.0 * dt), (0.1, 0.2), (0.3, 0.05)] {
            for block in [0usize, 1, 7, 40, 77, 100, 155] {
                let window = SampleArray::window(points.len(), 1024);
                let upto = ((block + 3) * RENDER_QUANTUM).min(points.len());
                window.write(
                    upto.saturating_sub(1024),
                    &points[upto.saturating_sub(1024)..upto],
                );
                for values in [&whole, &window] {
                    let mut times = [0.0; RENDER_QUANTUM];
                    running_sum(block as f64 * RENDER_QUANTUM as f64 * dt, dt, &mut times);
                    let mut positions = [0.0; RENDER_QUANTUM];
                    for (p, &t) in positions.iter_mut().zip(&times) {
                        *p = curve_position(values, start, duration, t);
                    }
                    for n in [RENDER_QUANTUM, 77, 3] {
                        let (mut wide, mut one) =
                            ([0.0f32; RENDER_QUANTUM], [1.0f32; RENDER_QUANTUM]);
                        // SAFETY: the CPU has AVX2 and FMA (checked above).
                        unsafe {
                            curve_samples_avx2(
                                start,
                                duration,
                                values,
                                &times[..n],
                                &positions,
                                -7.0,
                                &mut wide[..n],
                            )
                        };
                        curve_samples_at(
                            start,
                            duration,
                            values,
                            &times[..n],
                            &positions[..n],
                            -7.0,
                            &mut one[..n],
                        );
                        assert!(
                            wide[..n]
                                .iter()
                                .zip(&one[..n])
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "start {start} duration {duration} block {block} n {n}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn running_sum_is_the_additions_one_by_one() {
        let sequential = |first: f64, step: f64, n: usize| {
            let mut v = Vec::with_capacity(n);
            let mut time = first;
            for _ in 0..n {
                v.push(time);
                time += step;
            }
            v
        };
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let dt = 1.0 / 48_000.0;
        let mut firsts: Vec<f64> = vec![0.0, dt, 0.5, 1.0, 2.0 - 64.0 * dt, 512.0, 599.99];
        // Block times of long renders, around every power of two they pass, and random frames.
        for p in 0..10 {
            let around = (1u64 << p) as f64 * 48_000.0;
            for k in -300i64..300 {
                firsts.push((around + k as f64) / 48_000.0);
            }
        }
        for _ in 0..20_000 {
            firsts.push((next() % (600 * 48_000)) as f64 / 48_000.0);
        }
        let mut out = [0.0; RENDER_QUANTUM];
        for &first in &firsts {
            for step in [dt, 1.0 / 44_100.0, 1.0 / 96_000.0] {
                for n in [1, 5, 128] {
                    running_sum(first, step, &mut out[..n]);
                    let want = sequential(first, step, n);
                    assert!(
                        out[..n]
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "first {first:e} step {step:e} n {n}"
                    );
                }
            }
        }
        // A step exactly halfway between two multiples of the spacing, from an odd multiple:
        // the ties go up and down alternately.
        for first in [1.0, 1.0 + f64::EPSILON] {
            let step = 1.5 * f64::EPSILON;
            running_sum(first, step, &mut out);
            assert_eq!(&out[..], &sequential(first, step, RENDER_QUANTUM)[..]);
        }
    }
    use crate::dsp::gain::Gain;
    use crate::dsp::testing::{assert_same_bits, noise, oracle, Graph, Signal};
    use crate::dsp::DEFAULT_SAMPLE_RATE;
    use web_audio_api::context::BaseAudioContext;
    use web_audio_api::node::{AudioNode, AudioScheduledSourceNode, GainNode, GainOptions};
    use web_audio_api::AudioBuffer;

    const A_RATE: ParamDescriptor = ParamDescriptor {
        name: "a",
        automation_rate: AutomationRate::A,
        default_value: 0.5,
        min_value: -2.,
        max_value: 2.,
    };
    const K_RATE: ParamDescriptor = ParamDescriptor {
        automation_rate: AutomationRate::K,
        ..A_RATE
    };

    fn scope(block: u64) -> Scope {
        Scope {
            frame: block * RENDER_QUANTUM as u64,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
        }
    }

    fn block(p: &mut Param, b: u64) -> Vec<f32> {
        let mut out = [0.; RENDER_QUANTUM];
        let n = p.compute(&scope(b), &Bus::silent(), &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn untouched_param_is_its_default_once_per_block() {
        let mut p = Param::new(A_RATE);
        assert_eq!(block(&mut p, 0), [0.5]);
        assert_eq!(block(&mut p, 1), [0.5]);
    }

    #[test]
    fn set_value_gives_one_full_a_rate_block_then_constant_blocks() {
        let mut p = Param::new(A_RATE);
        p.set_value(1.5).unwrap();
        assert_eq!(block(&mut p, 0), [1.5; RENDER_QUANTUM]);
        assert_eq!(block(&mut p, 1), [1.5]);
        // Later calls behave the same in the block that follows them.
        p.set_value(-1.).unwrap();
        assert_eq!(block(&mut p, 2), [-1.; RENDER_QUANTUM]);
        assert_eq!(block(&mut p, 3), [-1.]);

        let mut k = Param::new(K_RATE);
        k.set_value(1.5).unwrap();
        assert_eq!(block(&mut k, 0), [1.5]);
    }

    #[test]
    fn curve_interpolates_then_holds_its_last_point() {
        let mut p = Param::new(A_RATE);
        // 3 points over 256 frames: 0 at frame 0, 1 at frame 128, -1 from frame 256 on.
        let duration = 256. / DEFAULT_SAMPLE_RATE as f64;
        p.set_value_curve_at_time(vec![0., 1., -1.], 0., duration)
            .unwrap();
        let b0 = block(&mut p, 0);
        assert_eq!(b0.len(), RENDER_QUANTUM);
        assert_eq!(b0[0], 0.);
        assert!((b0[64] - 0.5).abs() < 1e-6);
        let b1 = block(&mut p, 1);
        assert_eq!(b1.len(), RENDER_QUANTUM);
        assert!((b1[0] - 1.).abs() < 1e-6);
        assert!((b1[64] - 0.).abs() < 1e-6);
        // The curve ends exactly at this block's start: it is still consumed here, as 128
        // values, and the param is constant from the next block on.
        assert_eq!(block(&mut p, 2), [-1.; RENDER_QUANTUM]);
        assert_eq!(block(&mut p, 3), [-1.]);
        assert_eq!(block(&mut p, 300), [-1.]);
    }

    #[test]
    fn k_rate_curve_lags_one_block() {
        // A k-rate param takes the value at the block start computed in the previous block:
        // in block 0 the curve has not been sampled yet.
        let mut k = Param::new(K_RATE);
        k.set_value(0.25).unwrap();
        k.set_value_curve_at_time(vec![1., 2.], 0., 1.).unwrap();
        assert_eq!(block(&mut k, 0), [0.25]);
        let expected = 1. + (RENDER_QUANTUM as f32 / DEFAULT_SAMPLE_RATE as f32);
        assert!((block(&mut k, 1)[0] - expected).abs() < 1e-6);
    }

    #[test]
    fn values_are_clamped_and_nan_becomes_the_default() {
        let mut p = Param::new(A_RATE);
        p.set_value_curve_at_time(vec![5., -5., f32::NAN, f32::NAN], 0., 1.)
            .unwrap();
        let b0 = block(&mut p, 0);
        assert_eq!(b0[0], 2.);
        assert!(b0.iter().all(|v| (-2. ..=2.).contains(v)));
        // Late in the curve: interpolating with NaN gives NaN, reported as the default.
        assert_eq!(block(&mut p, 300), [0.5; RENDER_QUANTUM]);
        // After it: the held NaN point, still reported as the default.
        assert_eq!(block(&mut p, 400), [0.5; RENDER_QUANTUM]);
        assert_eq!(block(&mut p, 401), [0.5]);
    }

    #[test]
    fn audio_input_is_added_then_clamped() {
        let mut p = Param::new(A_RATE);
        let mut input = Bus::silent();
        input.channel_mut(0).fill(1.75);
        input.channel_mut(0)[1] = f32::NAN;
        let mut out = [0.; RENDER_QUANTUM];
        assert_eq!(p.compute(&scope(0), &input, &mut out), RENDER_QUANTUM);
        assert_eq!(out[0], 2.);
        assert_eq!(out[1], 0.5);

        // Without input the sum still happens: -0.0 + 0.0 is +0.0.
        p.set_value(-0.).unwrap();
        block(&mut p, 1);
        assert_eq!(block(&mut p, 2)[0].to_bits(), 0.0_f32.to_bits());
    }

    #[test]
    fn k_rate_input_takes_the_first_frame() {
        let mut k = Param::new(K_RATE);
        let mut input = Bus::silent();
        input.channel_mut(0)[0] = 0.25;
        input.channel_mut(0)[1] = 1.;
        let mut out = [0.; RENDER_QUANTUM];
        assert_eq!(k.compute(&scope(0), &input, &mut out), 1);
        assert_eq!(out[0], 0.75);
    }

    #[test]
    fn refused_automations() {
        let mut p = Param::new(A_RATE);
        assert_eq!(p.set_value(f32::NAN), Err(AutomationError::NonFiniteValue));
        assert_eq!(
            p.set_value_curve_at_time(vec![1.], 0., 1.),
            Err(AutomationError::CurveTooShort)
        );
        assert_eq!(
            p.set_value_curve_at_time(vec![1., 2.], -1., 1.),
            Err(AutomationError::InvalidTime)
        );
        assert_eq!(
            p.set_value_curve_at_time(vec![1., 2.], 0., 0.),
            Err(AutomationError::InvalidDuration)
        );
        p.set_value_curve_at_time(vec![1., 2.], 1., 1.).unwrap();
        assert_eq!(
            p.set_value_curve_at_time(vec![1., 2.], 0.5, 1.),
            Err(AutomationError::Overlap)
        );
        // Touching intervals and equal start times are allowed, as is set_value at any time.
        p.set_value_curve_at_time(vec![1., 2.], 0., 1.).unwrap();
        p.set_value_curve_at_time(vec![1., 2.], 1., 0.5).unwrap();
        p.set_value(3.).unwrap();
    }

    /// DC 1.0 -> gain(value, then `schedule`) -> out: the output is the gain param's values.
    fn compare_gain_values(what: &str, value: f32, schedule: &[Automation]) -> f32 {
        const FRAMES: usize = 48_000;
        let ones = vec![1.0; FRAMES];
        let theirs = oracle(1, FRAMES, |ctx| {
            let mut src = ctx.create_buffer_source();
            src.set_buffer(AudioBuffer::from(
                vec![ones.clone()],
                DEFAULT_SAMPLE_RATE as f32,
            ));
            src.start();
            let gain = GainNode::new(
                ctx,
                GainOptions {
                    gain: value,
                    ..Default::default()
                },
            );
            for a in schedule {
                match a {
                    Automation::Value(v) => {
                        gain.gain().set_value(*v);
                    }
                    Automation::Curve(c, t, d) => {
                        gain.gain().set_value_curve_at_time(c, *t, *d);
                    }
                }
            }
            src.connect(&gain);
            gain.connect(&ctx.destination());
            (src, gain)
        });
        let mut g = Graph::default();
        let src = g.node(Signal::new(vec![ones]), Gain::channel_config(), &[], &[]);
        let gain = g.node(Gain::new(), Gain::channel_config(), Gain::PARAMS, &[value]);
        for a in schedule {
            match a {
                Automation::Value(v) => g.param(gain, 0).set_value(*v).unwrap(),
                Automation::Curve(c, t, d) => g
                    .param(gain, 0)
                    .set_value_curve_at_time(c.to_vec(), *t, *d)
                    .unwrap(),
            }
        }
        g.connect(src, gain);
        let ours = g.render(gain, 1, FRAMES);
        assert_same_bits(&ours[0], &theirs[0], what);
        theirs[0][FRAMES - 1]
    }

    enum Automation {
        Value(f32),
        Curve(&'static [f32], f64, f64),
    }

    #[test]
    fn set_value_and_curves_interleave_as_in_web_audio_api() {
        use Automation::{Curve, Value};
        const C: &[f32] = &[0.1, 0.9, -0.3, 0.6];
        // The constructor's set_value, then a curve at 0: the curve from frame 0.
        let last = compare_gain_values("option then curve", 0.5, &[Curve(C, 0., 0.4)]);
        assert_eq!(last, 0.6);
        // A curve at 0, then set_value: the curve, then the set value once the curve ends.
        let last = compare_gain_values("curve then value", 0.5, &[Curve(C, 0., 0.4), Value(0.25)]);
        assert_eq!(last, 0.25);
        // Two curves at 0: the second one runs from where the first ends.
        let last = compare_gain_values(
            "two curves at 0",
            0.5,
            &[Curve(C, 0., 0.3), Curve(&[2., -2.], 0., 0.7)],
        );
        assert_eq!(last, -2.);
        // A curve starting off the block and frame grid; the value holds before it.
        compare_gain_values("late curve", 0.75, &[Curve(C, 0.123_456_7, 0.2)]);
        compare_gain_values(
            "curves back to back",
            0.75,
            &[Curve(C, 0.1, 0.2), Curve(&[3., 1.], 0.3, 0.111)],
        );
        // NaN points read as the default value (1 for gain).
        compare_gain_values("NaN curve", 0.5, &[Curve(&[0.5, f32::NAN, 0.2], 0., 0.5)]);
    }

    #[test]
    fn stereo_into_a_param_keeps_the_left_channel_as_in_web_audio_api() {
        const FRAMES: usize = 12_800;
        let ones = vec![1.0; FRAMES];
        let stereo = vec![noise(FRAMES, 3), noise(FRAMES, 4)];
        let theirs = oracle(1, FRAMES, |ctx| {
            let buffer_source = |data: Vec<Vec<f32>>| {
                let mut src = ctx.create_buffer_source();
                src.set_buffer(AudioBuffer::from(data, DEFAULT_SAMPLE_RATE as f32));
                src.start();
                src
            };
            let dc = buffer_source(vec![ones.clone()]);
            let modulator = buffer_source(stereo.clone());
            let gain = GainNode::new(
                ctx,
                GainOptions {
                    gain: 0.,
                    ..Default::default()
                },
            );
            dc.connect(&gain);
            modulator.connect(gain.gain());
            gain.connect(&ctx.destination());
            (dc, modulator, gain)
        });
        let expected: Vec<f32> = stereo[0].iter().map(|v| v + 0.).collect();
        assert_same_bits(&theirs[0], &expected, "left channel only");

        let mut g = Graph::default();
        let dc = g.node(Signal::new(vec![ones]), Gain::channel_config(), &[], &[]);
        let modulator = g.node(Signal::new(stereo), Gain::channel_config(), &[], &[]);
        let gain = g.node(Gain::new(), Gain::channel_config(), Gain::PARAMS, &[0.]);
        g.connect(dc, gain);
        g.connect_param(modulator, gain, 0);
        let ours = g.render(gain, 1, FRAMES);
        assert_same_bits(&ours[0], &theirs[0], "stereo into gain.gain");
    }
}
