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

use super::{
    AutomationRate, Bus, ChannelConfig, ParamDescriptor, Scope, DEFAULT_SAMPLE_RATE, RENDER_QUANTUM,
};

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
    binades: Binades,
}

impl Oscillator {
    /// `frequency` (a-rate, default 440, ±Nyquist at the default rate; see
    /// [`Oscillator::params_at`]), `detune` (a-rate, default 0, ±153600 cents).
    pub const PARAMS: &'static [ParamDescriptor] = &[
        ParamDescriptor {
            name: "frequency",
            automation_rate: AutomationRate::A,
            default_value: 440.,
            min_value: -(DEFAULT_SAMPLE_RATE as f32) / 2.,
            max_value: DEFAULT_SAMPLE_RATE as f32 / 2.,
        },
        ParamDescriptor {
            name: "detune",
            automation_rate: AutomationRate::A,
            default_value: 0.,
            min_value: -153_600.,
            max_value: 153_600.,
        },
    ];

    /// [`Oscillator::PARAMS`] (given at the default rate) in a context at `sample_rate`: the
    /// frequency's range is ±Nyquist of that context.
    pub fn params_at(sample_rate: f32) -> [ParamDescriptor; 2] {
        let [mut frequency, detune] = [Self::PARAMS[0], Self::PARAMS[1]];
        frequency.min_value = -sample_rate / 2.;
        frequency.max_value = sample_rate / 2.;
        [frequency, detune]
    }

    pub fn new(kind: OscillatorType) -> Self {
        Oscillator {
            kind,
            phase: 0.,
            sine: sine_table(),
            binades: Binades::default(),
        }
    }

    /// A source has no input; this is the configuration web-audio-api gives it anyway (the
    /// Web Audio default), which no mixing ever uses.
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }

    #[inline(always)]
    fn sample(&self, incr: f64) -> f32 {
        wave_sample(self.kind, self.sine, self.phase, incr)
    }
}

/// The wave's value at `phase` for a phase increment `incr` (web-audio-api's per-frame code).
#[inline(always)]
fn wave_sample(kind: OscillatorType, sine: &[f32; TABLE_LENGTH], phase: f64, incr: f64) -> f32 {
    match kind {
        OscillatorType::Sine => {
            let position = phase * TABLE_LENGTH as f64;
            let floored = position.floor();
            let prev = floored as usize;
            let next = if prev + 1 == TABLE_LENGTH {
                0
            } else {
                prev + 1
            };
            let k = (position - floored) as f32;
            sine[prev].mul_add(1. - k, sine[next] * k)
        }
        OscillatorType::Sawtooth => {
            // Shifted by half a period so that the wave starts at 0, not -1.
            let phase = unroll(phase + 0.5);
            let sample = 2.0 * phase - 1.0;
            (sample - poly_blep(phase, incr)) as f32
        }
        OscillatorType::Square => {
            let mut sample = if phase < 0.5 { 1.0 } else { -1.0 };
            sample += poly_blep(phase, incr);
            sample -= poly_blep(unroll(phase + 0.5), incr);
            sample as f32
        }
        OscillatorType::Triangle => {
            let mut sample = -4. * phase + 2.;
            if sample > 1. {
                sample = 2. - sample;
            } else if sample < -1. {
                sample = -2. - sample;
            }
            sample as f32
        }
    }
}

/// Whether `poly_blep(t, dt)` is not simply 0.0 (its two branches).
#[inline(always)]
fn near_discontinuity(t: f64, dt: f64) -> bool {
    (t < dt) | (t > 1.0 - dt)
}

/// What a walk of the phase over a block produces from it.
trait PhaseSink {
    /// Frames `i..i + m`, whose phases are `phase + k * d` for k < m.
    fn run(&mut self, i: usize, phase: f64, d: f64, m: usize);
    /// Frame `i`, at `phase`.
    fn one(&mut self, i: usize, phase: f64);
}

/// Walks `n` frames of the phase, starting from `phase` and advanced by `incr` with one rounding
/// per frame (`unroll(phase + incr)`, web-audio-api's update), handing the frames to `sink`;
/// returns the phase after the last frame.
///
/// The per-frame update is a chain of dependent additions; most of it has a closed form. Between
/// powers of two the f64 values are the multiples of one spacing `u`, and a phase is one of them,
/// so adding `incr` rounds to the phase plus `incr` rounded to a multiple of `u` (`d`), the same
/// amount every frame, unless `incr` is exactly halfway between two multiples (then the ties go
/// to the even one, alternately). So while every exact sum stays below the next power of two, the
/// k-th phase is exactly `phase + k * d` (a multiple of `u` below 2^53 `u`, so representable):
/// such frames are one run. Each crossing of a power of two (a few per period), each wrap, a tie,
/// a `d` of zero and any increment that is not positive are done one addition at a time, and so
/// are the phases below [`Binades::closed_form_from`], whose binades hold only a few frames each.
#[inline(always)]
fn walk_phases(
    mut phase: f64,
    incr: f64,
    n: usize,
    binades: &mut Binades,
    sink: &mut impl PhaseSink,
) -> f64 {
    let mut i = 0;
    binades.set_increment(incr);
    while i < n {
        let segment = if phase >= binades.closed_form_from {
            binades.steps(phase)
        } else {
            None
        };
        if let Some((d, last_k)) = segment {
            // In f64 and behind a branch: the next phase waits on k's estimate and one
            // multiply-add, not on integer conversions or a min.
            let rest = n - i;
            if last_k >= rest as f64 {
                sink.run(i, phase, d, rest);
                phase = (rest as f64).mul_add(d, phase);
                i = n;
            } else {
                let m = last_k as usize + 1;
                sink.run(i, phase, d, m);
                phase = unroll_branching(last_k.mul_add(d, phase) + incr);
                i += m;
            }
        } else {
            sink.one(i, phase);
            phase = unroll_branching(phase + incr);
            i += 1;
        }
    }
    phase
}

/// [`unroll`] with a branch: the walk's chain then waits for the addition only, not for the
/// comparison and a blend (a wrap is rare, and the branch predicted).
#[inline(always)]
fn unroll_branching(phase: f64) -> f64 {
    #[cold]
    #[inline(never)]
    fn wrapped(phase: f64) -> f64 {
        phase - 1.
    }
    if phase >= 1. {
        wrapped(phase)
    } else {
        phase
    }
}

/// The phase of every frame.
struct Phases<'a>(&'a mut [f64]);

impl PhaseSink for Phases<'_> {
    #[inline(always)]
    fn run(&mut self, i: usize, phase: f64, d: f64, m: usize) {
        for (p, &k) in self.0[i..i + m].iter_mut().zip(&FRAME_INDICES) {
            *p = k.mul_add(d, phase);
        }
    }

    #[inline(always)]
    fn one(&mut self, i: usize, phase: f64) {
        self.0[i] = phase;
    }
}

/// `phases[i]` = the phase at frame i (see [`walk_phases`]); returns the phase after the last.
#[inline(always)]
fn advance_phases(phase: f64, incr: f64, phases: &mut [f64], binades: &mut Binades) -> f64 {
    walk_phases(phase, incr, phases.len(), binades, &mut Phases(phases))
}

/// The square wave, written straight from the walk. A run lies in one binade, so on one side of
/// 0.5: the wave is 1 or -1 all along it but where a polyBLEP correction applies, and those
/// frames are at its ends. Along a run the phase grows, and so does the phase plus 0.5 until it
/// wraps (at most once, at the top of a run below 0.5), so each condition of the correction
/// holds on a prefix of the run, a suffix, or nowhere: the phase below `incr` nowhere (a run's
/// phases are at least 4 `incr`, see [`Binades::closed_form_from`]), above `1 - incr` on a
/// suffix, the phase plus 0.5 just past a wrap on a prefix above 0.5 and a suffix below it, and
/// just before one on a suffix. So the ends are computed frame by frame up to the first frame
/// without a correction, and everything between is the constant.
struct SquareWave<'a> {
    out: &'a mut [f32],
    sine: &'a [f32; TABLE_LENGTH],
    incr: f64,
}

impl SquareWave<'_> {
    /// Writes frame `i` at phase `p` if it needs the correction; says whether it did.
    #[inline(always)]
    fn corrected(&mut self, i: usize, p: f64) -> bool {
        let near =
            near_discontinuity(p, self.incr) | near_discontinuity(unroll(p + 0.5), self.incr);
        if near {
            self.out[i] = wave_sample(OscillatorType::Square, self.sine, p, self.incr);
        }
        near
    }
}

impl PhaseSink for SquareWave<'_> {
    #[inline(always)]
    fn run(&mut self, i: usize, phase: f64, d: f64, m: usize) {
        // x + 0.0 - 0.0 is x: the corrections are zero away from the ends.
        self.out[i..i + m].fill(if phase < 0.5 { 1.0 } else { -1.0 });
        let mut head = 0;
        while head < m && self.corrected(i + head, (head as f64).mul_add(d, phase)) {
            head += 1;
        }
        let mut tail = m;
        while tail > head && self.corrected(i + tail - 1, ((tail - 1) as f64).mul_add(d, phase)) {
            tail -= 1;
        }
    }

    #[inline(always)]
    fn one(&mut self, i: usize, phase: f64) {
        if !self.corrected(i, phase) {
            self.out[i] = if phase < 0.5 { 1.0 } else { -1.0 };
        }
    }
}

const FRAME_INDICES: [f64; RENDER_QUANTUM] = crate::counting();

/// The rounded step of one increment per binade, remembered: an oscillator at a constant
/// frequency crosses the same few binades every period, and working out a binade's step is a
/// chain of dependent operations that a block would otherwise repeat about twenty times.
#[derive(Clone, Copy)]
struct Binades {
    incr: f64,
    /// About 1 / `incr`, for estimates only.
    inverse: f64,
    /// The phase from which the closed form is used: a segment costs a chain of dependent
    /// operations several additions long, so the binades right after a wrap, a few frames each,
    /// are cheaper one addition at a time. Infinite for an increment that is not positive.
    closed_form_from: f64,
    /// Per binade [2^(-1-i), 2^-i): [`binade_step`] for `incr`, valid where bit i of `known`
    /// is set.
    cached: [Option<(f64, f64)>; CACHED_BINADES],
    known: u32,
}

/// The binades from [1/2, 1) down that are remembered: those below the increment (under 2^-24
/// only below 3 Hz) hold one phase a period, right after the wrap, and are worked out each time.
const CACHED_BINADES: usize = 24;

/// Below about this many increments the phase goes one addition at a time (measured on a
/// square wave at 880 Hz: 4 best; 8, 16 and 32 5-15% slower, the walk faster but the per-frame
/// work of the frames outside runs then costing more than it saves).
const SEGMENT_MIN_FRAMES: f64 = 4.0;

impl Default for Binades {
    fn default() -> Self {
        Binades {
            incr: f64::NAN,
            inverse: f64::NAN,
            closed_form_from: f64::INFINITY,
            cached: [None; CACHED_BINADES],
            known: 0,
        }
    }
}

impl Binades {
    /// Forgets the steps when the increment is another one.
    #[inline(always)]
    fn set_increment(&mut self, incr: f64) {
        if incr.to_bits() != self.incr.to_bits() {
            self.incr = incr;
            self.inverse = 1.0 / incr;
            self.closed_form_from = if incr > 0.0 && incr.is_finite() {
                SEGMENT_MIN_FRAMES * incr
            } else {
                f64::INFINITY
            };
            self.known = 0;
        }
    }

    /// For a positive phase and a positive increment: the rounded step `d` that every
    /// addition of the increment adds while the sums stay in the phase's binade, and the largest
    /// k (a whole number, at most `RENDER_QUANTUM`: all a block can use) such that the k-th
    /// addition is one of those: `phase + k * d` at most two spacings below the
    /// next power of two (then the exact sum, within half a spacing of it, is below that
    /// power). None where the additions must be done one by one.
    #[inline(always)]
    fn steps(&mut self, phase: f64) -> Option<(f64, f64)> {
        const EXPONENT: u64 = 0x7ff0_0000_0000_0000;
        let biased = (phase.to_bits() & EXPONENT) >> 52;
        // Below 2^-971 the spacing's reciprocal is not a normal f64 (and no phase goes there
        // but the first few after a wrap); at 2^0 and above, and for non-finite or negative
        // phases, the additions are done one by one.
        if !(52..1023).contains(&biased) || phase.is_sign_negative() {
            return None;
        }
        let index = (1022 - biased) as usize;
        let (d, limit) = if index < CACHED_BINADES {
            if self.known & (1 << index) == 0 {
                self.cached[index] = binade_step(biased, self.incr);
                self.known |= 1 << index;
            }
            self.cached[index]?
        } else {
            binade_step(biased, self.incr)?
        };
        if phase > limit {
            return None;
        }
        // An estimate (d is incr within half a spacing), then the exact largest k by checking.
        let cap = RENDER_QUANTUM as f64;
        let mut k = ((limit - phase) * self.inverse).floor();
        if k > cap {
            k = cap;
        }
        while k > 0.0 && k.mul_add(d, phase) > limit {
            k -= 1.0;
        }
        while k < cap && (k + 1.0).mul_add(d, phase) <= limit {
            k += 1.0;
        }
        Some((d, k))
    }
}

/// For the binade [2^(biased - 1023), 2^(biased - 1022)) (`biased` in 52..1023) and a positive
/// increment: the step `d` (the increment rounded to a multiple of the binade's spacing `u`) and
/// the largest phase `limit` from which one more step certainly stays in the binade, two
/// spacings below its top. None where the increment is halfway between two multiples of `u`
/// (then ties go to the even one, alternately) or rounds to zero.
#[inline(always)]
fn binade_step(biased: u64, incr: f64) -> Option<(f64, f64)> {
    let power = f64::from_bits(biased << 52);
    let u = power * f64::EPSILON;
    // Exact: scaling by a power of two (1 / u).
    let units = incr * f64::from_bits((2098 - biased) << 52);
    let whole = units.round_ties_even();
    if whole == 0.0 || units - units.floor() == 0.5 {
        return None;
    }
    // Exact: multiples of u below 2 * power.
    Some((whole * u, power * 2.0 - 2.0 * u))
}

/// One block of a wave at a constant increment from precomputed `phases` (the square wave has
/// its own, [`SquareWave`]). For the sawtooth, the frames away from its discontinuity (no
/// polyBLEP correction: both of its branches false) have a plain formula computed for all frames
/// at once; the few others are then recomputed with the full per-frame code. Bit for bit
/// `wave_sample` at every frame.
#[inline(always)]
fn wave_block(
    kind: OscillatorType,
    sine: &[f32; TABLE_LENGTH],
    phases: &[f64],
    incr: f64,
    out: &mut [f32],
) {
    // Frames whose flags are tested together. The flags are as wide as a phase, so that the
    // comparisons store them as they are, without packing lanes down to bytes.
    const GROUP: usize = 16;
    let mut near = [0u64; RENDER_QUANTUM];
    let near = &mut near[..out.len()];
    match kind {
        OscillatorType::Sawtooth => {
            for ((o, n), &p) in out.iter_mut().zip(near.iter_mut()).zip(phases) {
                let shifted = unroll(p + 0.5);
                *o = (2.0 * shifted - 1.0) as f32;
                *n = near_discontinuity(shifted, incr) as u64;
            }
        }
        OscillatorType::Square | OscillatorType::Sine | OscillatorType::Triangle => {
            for (o, &p) in out.iter_mut().zip(phases) {
                *o = wave_sample(kind, sine, p, incr);
            }
            return;
        }
    }
    for ((o, n), p) in out
        .chunks_mut(GROUP)
        .zip(near.chunks(GROUP))
        .zip(phases.chunks(GROUP))
    {
        let any = n.iter().fold(0, |any, &n| any | n) != 0;
        if any {
            for ((o, &n), &p) in o.iter_mut().zip(n).zip(p) {
                if n != 0 {
                    *o = wave_sample(kind, sine, p, incr);
                }
            }
        }
    }
}

/// One block of a wave at a constant increment from `phase`; returns the phase after it.
#[inline(always)]
fn constant_block(
    kind: OscillatorType,
    sine: &[f32; TABLE_LENGTH],
    phase: f64,
    incr: f64,
    out: &mut [f32],
    binades: &mut Binades,
) -> f64 {
    if kind == OscillatorType::Square {
        let mut wave = SquareWave { out, sine, incr };
        return walk_phases(phase, incr, wave.out.len(), binades, &mut wave);
    }
    let mut phases = [0.0; RENDER_QUANTUM];
    let phases = &mut phases[..out.len()];
    let phase = advance_phases(phase, incr, phases, binades);
    wave_block(kind, sine, phases, incr, out);
    phase
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
            self.phase = constant_block(
                self.kind,
                self.sine,
                self.phase,
                incr,
                out,
                &mut self.binades,
            );
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
    use crate::dsp::testing::{assert_same_bits, oracle, Graph};
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
        assert_same_bits(&ours[0], &theirs[0], &what);
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

    /// The per-frame update, one addition at a time.
    fn sequential_phases(mut phase: f64, incr: f64, n: usize) -> (Vec<f64>, f64) {
        let mut phases = Vec::with_capacity(n);
        for _ in 0..n {
            phases.push(phase);
            phase = unroll(phase + incr);
        }
        (phases, phase)
    }

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn closed_form_phases_are_the_additions_one_by_one() {
        let rate = DEFAULT_SAMPLE_RATE as f64;
        let mut increments: Vec<f64> = [
            440., 184.997, 27.5, 3000., 23_999., 24_000., 1e-3, 1e-9, 0.0, -440., 1.0, 55.0,
        ]
        .iter()
        .map(|&f| increment_from(f, rate))
        .collect();
        // Halfway between two multiples of the spacing of the top binades (ties, alternating
        // with the parity of the phase), and the smallest steps that still move the phase.
        increments.extend([
            1.5 * f64::EPSILON / 2.0,
            2.5 * f64::EPSILON / 4.0,
            f64::EPSILON / 4.0,
            0.75 * f64::EPSILON,
            0.25,
            0.5,
            // Steps so small that the closed form runs in the lowest binades it takes.
            2f64.powi(-960),
            3.3 * 2f64.powi(-970),
            // ...and below them, down to subnormal steps, where it must not run.
            2f64.powi(-980),
            2f64.powi(-1000),
            1e-320,
        ]);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..300 {
            let f = (xorshift(&mut seed) % 2_400_000) as f64 / 100.0;
            increments.push(phase_increment(f as f32, 0.0, rate));
        }
        let mut phases = [0.0; RENDER_QUANTUM];
        // One for all increments, as an oscillator whose frequency changes keeps its own.
        let mut binades = Binades::default();
        for &incr in &increments {
            let mut starts = vec![
                0.0,
                0.5,
                1.0 - f64::EPSILON / 2.0,
                f64::MIN_POSITIVE,
                1e-300,
                2f64.powi(-955),
                5.0 * 2f64.powi(-968),
                2f64.powi(-972),
                2f64.powi(-990),
                1e-315,
            ];
            for _ in 0..20 {
                starts.push((xorshift(&mut seed) >> 11) as f64 / (1u64 << 53) as f64);
            }
            for &start in &starts {
                // Block after block, as the oscillator calls it, over many periods; some
                // blocks shorter, so that segments start anywhere.
                let (want, want_end) = sequential_phases(start, incr, 40 * RENDER_QUANTUM);
                let (mut phase, mut at) = (start, 0);
                for n in [RENDER_QUANTUM, 77, 1, RENDER_QUANTUM, 5].iter().cycle() {
                    let n = (*n).min(want.len() - at);
                    if n == 0 {
                        break;
                    }
                    phase = advance_phases(phase, incr, &mut phases[..n], &mut binades);
                    at += n;
                    let next = want.get(at).copied().unwrap_or(want_end);
                    let same = phases[..n]
                        .iter()
                        .zip(&want[at - n..at])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same && phase.to_bits() == next.to_bits(),
                        "incr {incr:e} start {start:e} frames {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_waves_are_the_per_frame_samples() {
        let sine = sine_table();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut out = [0.0f32; RENDER_QUANTUM];
        let mut binades = Binades::default();
        let mut frequencies = vec![440., 184.997, 27.5, 3000., 23_999., 24_000., 0.0, -440.];
        for _ in 0..40 {
            frequencies.push((xorshift(&mut seed) % 1_200_000) as f64 / 100.0);
        }
        for (kind, _) in TYPES {
            for &f in &frequencies {
                let incr = increment_from(f, DEFAULT_SAMPLE_RATE as f64);
                let mut phase = (xorshift(&mut seed) >> 11) as f64 / (1u64 << 53) as f64;
                for n in [RENDER_QUANTUM, 1, 17, 100] {
                    for _ in 0..200 {
                        let start = phase;
                        let (phases, end) = sequential_phases(start, incr, n);
                        phase =
                            constant_block(kind, sine, phase, incr, &mut out[..n], &mut binades);
                        assert_eq!(
                            phase.to_bits(),
                            end.to_bits(),
                            "{kind:?} {f} Hz from {start}"
                        );
                        for (i, (&o, &p)) in out[..n].iter().zip(&phases).enumerate() {
                            let want = wave_sample(kind, sine, p, incr);
                            assert_eq!(
                                o.to_bits(),
                                want.to_bits(),
                                "{kind:?} {f} Hz from {start} frame {i}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn phase_wraps_into_unit_interval() {
        let mut osc = Oscillator::new(OscillatorType::Sine);
        let mut out = Bus::silent();
        let scope = Scope {
            frame: 0,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
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
