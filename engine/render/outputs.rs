//! Network outputs as kromosynth computes them: CPPN activations (once per unique frequency,
//! kromosynth `Activator.activateMember`), seeded noise, range remapping (`remapNumberToRange`)
//! and wavetable gain curves (`gainValuesPerAudioWave`). Every array is f32, as the original's
//! Float32Arrays, with the arithmetic done in f64 like JavaScript.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::cppn::{self, Program};
use crate::gpu::CppnBackend;
use crate::patch::synthis::{NetworkOutput, NoiseKind, Source};

use super::pieces::{other_workers, Pieces, Piecewise};

/// The CPPN(s) of a genome.
#[derive(Debug)]
pub enum Cppns {
    Single(Program),
    /// `oneCPPNPerFrequency`: (rounded frequency key, program), in JS key order.
    PerFrequency(Vec<(f64, Program)>),
}

impl Cppns {
    pub fn output_count(&self) -> usize {
        match self {
            Cppns::Single(p) => p.output_count,
            Cppns::PerFrequency(v) => v.iter().map(|(_, p)| p.output_count).min().unwrap_or(0),
        }
    }

    /// The program for outputs at `original_frequency` (kromosynth looks up
    /// `getRoundedFrequencyValue(originalFrequency)`, else the nearest key).
    fn program_for(&self, original_frequency: f64) -> &Program {
        match self {
            Cppns::Single(p) => p,
            Cppns::PerFrequency(v) => {
                let key = rounded_frequency(original_frequency);
                if let Some((_, p)) = v.iter().find(|(k, _)| *k == key) {
                    return p;
                }
                let mut best = &v[0];
                for c in &v[1..] {
                    if (c.0 - key).abs() < (best.0 - key).abs() {
                        best = c;
                    }
                }
                &best.1
            }
        }
    }
}

/// kromosynth `getRoundedFrequencyValue` (JS Math.round is floor(x + 0.5)).
fn rounded_frequency(f: f64) -> f64 {
    if f < 20.0 {
        (f + 0.5).floor()
    } else {
        ((f / 10.0) + 0.5).floor() * 10.0
    }
}

/// Frequency groups of the network outputs, in first-seen order: the frequency, the program
/// that kromosynth would run for it (chosen by the group's first member, as
/// `Activator.activateMember` does), and the members as (network output, CPPN output index).
pub(super) fn groups<'a>(cppns: &'a Cppns, outputs: &[NetworkOutput]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        if let Source::Cppn(index) = o.source {
            match groups.iter_mut().find(|g| g.frequency == o.frequency) {
                Some(g) => g.members.push((i, index)),
                None => groups.push(Group {
                    frequency: o.frequency,
                    program: cppns.program_for(o.original_frequency),
                    members: vec![(i, index)],
                }),
            }
        }
    }
    groups
}

pub(super) struct Group<'a> {
    pub frequency: f64,
    pub program: &'a Program,
    pub members: Vec<(usize, usize)>,
}

impl Group<'_> {
    /// The distinct CPPN output indices of the members in `wanted`, and those members as
    /// (network output, position in the indices).
    fn wanted(&self, wanted: &[usize]) -> (Vec<usize>, Vec<(usize, usize)>) {
        let mut indices: Vec<usize> = Vec::new();
        let mut members = Vec::new();
        for &(out, idx) in &self.members {
            if !wanted.contains(&out) {
                continue;
            }
            let k = indices.iter().position(|&x| x == idx).unwrap_or_else(|| {
                indices.push(idx);
                indices.len() - 1
            });
            members.push((out, k));
        }
        (indices, members)
    }
}

/// Where a render's network outputs sit in time: its frames, its sample rate and whether the
/// CPPN is oversampled (kromosynth `antiAliasing`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    pub frames: usize,
    pub sample_rate: u32,
    pub anti_aliasing: bool,
}

impl Timeline {
    /// `frames` at the default rate, without anti-aliasing.
    pub fn new(frames: usize) -> Timeline {
        Timeline {
            frames,
            sample_rate: crate::dsp::DEFAULT_SAMPLE_RATE,
            anti_aliasing: false,
        }
    }

    /// Samples of the CPPN's input ramp: with anti-aliasing the original activates twice the
    /// frames and keeps the first half.
    pub fn cppn_frames(&self) -> usize {
        if self.anti_aliasing {
            2 * self.frames
        } else {
            self.frames
        }
    }

    /// The periodic input's `inputPeriods` for outputs at `frequency`. Over the doubled ramp
    /// it doubles too, so the input advances by the same phase per sample.
    pub fn input_periods(&self, frequency: f64) -> f64 {
        cppn::input_periods(frequency, self.cppn_frames(), self.sample_rate as f64)
    }
}

/// Raw samples of every network output (CPPN activation or noise), evaluated whole on the
/// CPU; `None` where the original produces none. See [`evaluate_outputs_with`].
pub fn evaluate_outputs(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    timeline: Timeline,
    velocity: f64,
    seed: u64,
) -> Vec<Option<Arc<Vec<f32>>>> {
    evaluate_outputs_with(cppns, outputs, timeline, velocity, seed, &CppnBackend::Cpu)
}

/// [`evaluate_outputs`] with the CPPNs evaluated by `backend`.
pub fn evaluate_outputs_with(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    timeline: Timeline,
    velocity: f64,
    seed: u64,
    backend: &CppnBackend,
) -> Vec<Option<Arc<Vec<f32>>>> {
    let all: Vec<usize> = (0..outputs.len()).collect();
    evaluate_some(cppns, outputs, &all, timeline, velocity, seed, backend)
}

/// Like [`evaluate_outputs_with`], for the network outputs in `wanted` only. Every
/// frequency's job is started before the first is awaited, so on the GPU they share a
/// submission.
pub(super) fn evaluate_some(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    wanted: &[usize],
    timeline: Timeline,
    velocity: f64,
    seed: u64,
    backend: &CppnBackend,
) -> Vec<Option<Arc<Vec<f32>>>> {
    if matches!(backend, CppnBackend::Cpu) {
        return WholeOutputs::new(cppns, outputs, wanted, timeline, velocity, seed).run();
    }
    let frames = timeline.frames;
    let mut result: Vec<Option<Arc<Vec<f32>>>> = vec![None; outputs.len()];
    for &i in wanted {
        // Noise comes from the original's graph stage, at the render's frames, never
        // oversampled.
        if let Source::Noise(kind) = outputs[i].source {
            result[i] = Some(noise(kind, frames, seed, i as u64).into());
        }
    }
    let groups = groups(cppns, outputs);
    // Per group: the CPPN output indices wanted, and (network output, position in them).
    type Plan = (Vec<usize>, Vec<(usize, usize)>);
    let plans: Vec<Plan> = groups.iter().map(|group| group.wanted(wanted)).collect();
    let evaluations: Vec<_> = groups
        .iter()
        .zip(&plans)
        .filter(|(_, (indices, _))| !indices.is_empty())
        .map(|(group, (indices, members))| {
            let periods = timeline.input_periods(group.frequency);
            let n = timeline.cppn_frames();
            let evaluation = backend.start(group.program, periods, velocity, n, indices);
            (evaluation, members)
        })
        .collect();
    for (evaluation, members) in evaluations {
        let buffers: Vec<Arc<Vec<f32>>> = evaluation
            .wait()
            .into_iter()
            .map(|b| match timeline.anti_aliasing {
                true => anti_alias(&b, frames, timeline.sample_rate),
                false => b,
            })
            .map(Arc::new)
            .collect();
        for &(out, k) in members {
            result[out] = Some(buffers[k].clone());
        }
    }
    result
}

/// Whole network outputs evaluated on the CPU in pieces: a render's preparation evaluates some
/// pieces per scheduler turn and gives its worker back in between (render/stream.rs), so one
/// long render's whole-duration outputs (a 600 s impulse response is 28.8 million CPPN
/// samples) cannot hold every core until they are done. Every sample is a function of its
/// index alone (noise: of the samples before it, generated in order), so the result equals
/// one evaluation in one go, bit for bit.
pub struct WholeOutputs {
    result: Vec<Option<Arc<Vec<f32>>>>,
    /// Noise outputs still being generated: (network output, generator, samples so far).
    noise: Vec<(usize, NoiseGen, Vec<f32>)>,
    /// CPPN groups still being evaluated, the current one first.
    groups: VecDeque<WholeGroup>,
    timeline: Timeline,
    velocity: f64,
}

/// One frequency group's wanted CPPN outputs, filled [`cppn::PARALLEL_CHUNK`] samples a piece.
struct WholeGroup {
    /// Pruned to `indices`; shared with the turn's helper tasks.
    program: Arc<Program>,
    periods: f64,
    indices: Arc<[usize]>,
    /// (network output, position in `indices`).
    members: Vec<(usize, usize)>,
    buffers: Vec<Vec<f32>>,
    /// Pieces done, from the start.
    done: usize,
}

impl WholeGroup {
    fn pieces(&self) -> usize {
        self.buffers[0].len().div_ceil(cppn::PARALLEL_CHUNK)
    }
}

/// Pieces of a group handed out per [`Pieces`]: eight per worker, so a batch's closing wait
/// (for the pieces still running) comes rarely, while the pieces evaluated but not yet copied
/// into place stay a small, bounded extra (8 x 4096 f32 samples, 128 KiB, per output and
/// worker).
const BATCH_PIECES_PER_WORKER: usize = 8;

/// A batch of a group's pieces, from piece `first` on, evaluated into buffers of their own
/// (a helper cannot borrow the group's), which the owner copies into place.
struct GroupBatch {
    program: Arc<Program>,
    periods: f64,
    velocity: f64,
    /// Samples of each output.
    n: usize,
    indices: Arc<[usize]>,
    first: usize,
    /// Per piece of the batch: its samples of each output. Each lock is taken once, by the
    /// piece's writer, then once by the owner.
    done: Vec<parking_lot::Mutex<Vec<Vec<f32>>>>,
}

impl GroupBatch {
    fn samples(&self, k: usize) -> std::ops::Range<usize> {
        let start = (self.first + k) * cppn::PARALLEL_CHUNK;
        start..(start + cppn::PARALLEL_CHUNK).min(self.n)
    }
}

impl Piecewise for GroupBatch {
    fn run_piece(&self, k: usize) {
        let range = self.samples(k);
        let mut buffers: Vec<Vec<f32>> = self
            .indices
            .iter()
            .map(|_| vec![0.0; range.len()])
            .collect();
        let mut views: Vec<&mut [f32]> = buffers.iter_mut().map(|b| &mut b[..]).collect();
        cppn::evaluate_range(
            &self.program,
            self.periods,
            self.velocity,
            self.n,
            range,
            &self.indices,
            &mut views,
        );
        *self.done[k].lock() = buffers;
    }
}

impl WholeOutputs {
    /// Allocates the outputs in `wanted` and evaluates nothing yet.
    pub(super) fn new(
        cppns: &Cppns,
        outputs: &[NetworkOutput],
        wanted: &[usize],
        timeline: Timeline,
        velocity: f64,
        seed: u64,
    ) -> WholeOutputs {
        let mut noise = Vec::new();
        for &i in wanted {
            // Noise comes from the original's graph stage, at the render's frames, never
            // oversampled.
            if let Source::Noise(kind) = outputs[i].source {
                let generator = NoiseGen::new(kind, seed, i as u64);
                noise.push((i, generator, Vec::with_capacity(timeline.frames)));
            }
        }
        let n = timeline.cppn_frames();
        let mut pending = VecDeque::new();
        for group in groups(cppns, outputs) {
            let (indices, members) = group.wanted(wanted);
            if indices.is_empty() {
                continue;
            }
            pending.push_back(WholeGroup {
                program: Arc::new(group.program.pruned(&indices)),
                periods: timeline.input_periods(group.frequency),
                buffers: indices.iter().map(|_| vec![0.0f32; n]).collect(),
                indices: indices.into(),
                members,
                done: 0,
            });
        }
        WholeOutputs {
            result: vec![None; outputs.len()],
            noise,
            groups: pending,
            timeline,
            velocity,
        }
    }

    pub fn is_done(&self) -> bool {
        self.noise.is_empty() && self.groups.is_empty()
    }

    /// Evaluates outputs until everything is done or `until` has passed (checked after each
    /// piece of [`cppn::PARALLEL_CHUNK`] samples), a group's pieces shared with `helpers`
    /// tasks on the rayon pool this runs on (see [`Pieces`] for why not a join).
    pub fn step(&mut self, until: Option<Instant>, helpers: usize) {
        let over = || until.is_some_and(|t| Instant::now() >= t);
        while !self.is_done() {
            if !self.noise.is_empty() {
                self.step_noise();
            } else {
                self.step_group(until, helpers);
            }
            if over() {
                return;
            }
        }
    }

    /// Generates one piece of the last noise output.
    fn step_noise(&mut self) {
        let frames = self.timeline.frames;
        let Some((_, generator, samples)) = self.noise.last_mut() else {
            return;
        };
        let more = cppn::PARALLEL_CHUNK.min(frames - samples.len());
        samples.extend((0..more).map(|_| generator.next_sample()));
        if samples.len() == frames {
            let (out, _, samples) = self.noise.pop().expect("the last noise output");
            self.result[out] = Some(Arc::new(samples));
        }
    }

    /// Evaluates one batch of the current group's pieces, or what of it `until` leaves time
    /// for.
    fn step_group(&mut self, until: Option<Instant>, helpers: usize) {
        let Some(group) = self.groups.front_mut() else {
            return;
        };
        let first = group.done;
        let count = (group.pieces() - first).min(BATCH_PIECES_PER_WORKER * (helpers + 1));
        let batch = Pieces::new(
            GroupBatch {
                program: group.program.clone(),
                periods: group.periods,
                velocity: self.velocity,
                n: group.buffers[0].len(),
                indices: group.indices.clone(),
                first,
                done: (0..count).map(|_| Default::default()).collect(),
            },
            count,
        );
        batch.spawn_helpers(helpers);
        batch.work_on(until);
        let taken = batch.close();
        let work = batch.work();
        for k in 0..taken {
            let range = work.samples(k);
            for (buffer, piece) in group.buffers.iter_mut().zip(work.done[k].lock().iter()) {
                buffer[range.clone()].copy_from_slice(piece);
            }
        }
        group.done += taken;
        if group.done < group.pieces() {
            return;
        }
        let group = self.groups.pop_front().expect("the current group");
        let (frames, rate) = (self.timeline.frames, self.timeline.sample_rate);
        let buffers: Vec<Arc<Vec<f32>>> = group
            .buffers
            .into_iter()
            .map(|b| match self.timeline.anti_aliasing {
                true => anti_alias(&b, frames, rate),
                false => b,
            })
            .map(Arc::new)
            .collect();
        for &(out, k) in &group.members {
            self.result[out] = Some(buffers[k].clone());
        }
    }

    /// Evaluates what is left, in one go.
    pub fn run(mut self) -> Vec<Option<Arc<Vec<f32>>>> {
        self.step(None, other_workers());
        self.result
    }

    /// The outputs; `None` where not wanted. Call once [`WholeOutputs::is_done`].
    pub fn finish(self) -> Vec<Option<Arc<Vec<f32>>>> {
        debug_assert!(self.is_done());
        self.result
    }
}

/// kromosynth `Activator.downsampleAndFilterOversampledSignal` on an output activated over
/// `2 * frames` samples: in an offline context at twice `sample_rate`, a buffer source plays
/// it into a lowpass BiquadFilter at `sample_rate / 2` (default Q, gain, detune); the first
/// `frames` filtered samples are the output (the original copies them into a buffer at
/// `sample_rate` and plays that through unchanged). Run with our web-audio-api nodes, so the
/// result is the original's bit for bit.
pub fn anti_alias(oversampled: &[f32], frames: usize, sample_rate: u32) -> Vec<f32> {
    use crate::dsp::biquad::{Biquad, BiquadType};
    use crate::dsp::buffer_source::BufferSource;
    use crate::dsp::{Bus, Processor, Scope, RENDER_QUANTUM};

    let _ftz = crate::dsp::denormals::FlushDenormals::new();
    // The original computes the context's rate as `sampleRate * (2N / N)`, exactly 2 * rate.
    let rate = (2 * sample_rate) as f32;
    let mut source = BufferSource::new(oversampled.to_vec(), rate);
    let mut filter = Biquad::new(BiquadType::Lowpass);
    let cutoff = [(sample_rate as f64 / 2.0) as f32];
    let filter_params: [&[f32]; 4] = [&cutoff, &[0.0], &[1.0], &[0.0]];
    let (mut played, mut filtered) = (Bus::silent(), Bus::silent());
    let mut out = Vec::with_capacity(frames.next_multiple_of(RENDER_QUANTUM));
    let mut frame = 0;
    while out.len() < frames {
        let scope = Scope {
            frame,
            sample_rate: rate,
        };
        source.process(&Bus::silent(), &[&[1.0], &[0.0]], &mut played, &scope);
        filter.process(&played, &filter_params, &mut filtered, &scope);
        if filtered.is_silent() {
            out.extend_from_slice(&[0.0; RENDER_QUANTUM]);
        } else {
            out.extend_from_slice(filtered.channel(0));
        }
        frame += RENDER_QUANTUM as u64;
    }
    out.truncate(frames);
    out
}

/// splitmix64: a small, fast, well-mixed PRNG; noise only needs to be deterministic per seed.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits in [0, 1), like Math.random.
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// kromosynth `getNoiseSamples` with a seeded PRNG instead of Math.random, resumable: filling
/// consecutive ranges gives the same samples as one call for the whole.
#[derive(Clone, Debug)]
pub struct NoiseGen {
    kind: NoiseKind,
    rng: SplitMix64,
    /// Pink: the filter state b0..b6; brown: `last` in [0].
    state: [f64; 7],
}

impl NoiseGen {
    /// `stream` separates the network outputs.
    pub fn new(kind: NoiseKind, seed: u64, stream: u64) -> NoiseGen {
        NoiseGen {
            kind,
            rng: SplitMix64(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)),
            state: [0.0; 7],
        }
    }

    /// The next sample.
    #[inline]
    pub fn next_sample(&mut self) -> f32 {
        let white = self.rng.next_f64() * 2.0 - 1.0;
        let b = &mut self.state;
        match self.kind {
            NoiseKind::White => white as f32,
            NoiseKind::Pink => {
                b[0] = 0.99886 * b[0] + white * 0.0555179;
                b[1] = 0.99332 * b[1] + white * 0.0750759;
                b[2] = 0.96900 * b[2] + white * 0.1538520;
                b[3] = 0.86650 * b[3] + white * 0.3104856;
                b[4] = 0.55000 * b[4] + white * 0.5329522;
                b[5] = -0.7616 * b[5] - white * 0.0168980;
                let v = (b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + white * 0.5362) as f32;
                b[6] = white * 0.115926;
                (v as f64 * 0.11) as f32
            }
            NoiseKind::Brown => {
                let v = ((b[0] + 0.02 * white) / 1.02) as f32;
                b[0] = v as f64;
                (v as f64 * 3.5) as f32
            }
        }
    }
}

/// `frames` samples of [`NoiseGen`] from its start.
pub fn noise(kind: NoiseKind, frames: usize, seed: u64, stream: u64) -> Vec<f32> {
    let mut generator = NoiseGen::new(kind, seed, stream);
    (0..frames).map(|_| generator.next_sample()).collect()
}

/// `remapNumberToRange(s, -1, 1, lo, hi)`, stored as f32.
#[inline(always)]
pub(super) fn remap_one(s: f32, lo: f64, hi: f64) -> f32 {
    ((s as f64 - -1.0) / (1.0 - -1.0) * (hi - lo) + lo) as f32
}

/// [`remap_one`] per sample.
pub fn remap(samples: &[f32], lo: f64, hi: f64) -> Vec<f32> {
    samples.iter().map(|&s| remap_one(s, lo, hi)).collect()
}

/// One wave's span in the wavetable mix (`gainValuesPerAudioWave`).
#[derive(Clone, Copy, Debug)]
pub(super) struct WaveSpan {
    fraction: f64,
    start_fading: f64,
    middle: f64,
    end_fading: f64,
}

impl WaveSpan {
    pub fn new(index: usize, count: usize) -> WaveSpan {
        let fraction = 2.0 / count as f64;
        let half = fraction / 2.0;
        let start = index as f64 * fraction - 1.0;
        let end = start + fraction;
        WaveSpan {
            fraction,
            start_fading: start - if index > 0 { half } else { 0.0 },
            middle: start + half,
            end_fading: end + if index + 1 < count { half } else { 0.0 },
        }
    }

    /// The gain for mix value `m`, then `remapControlArrayToValueCurveRange` to [0, 1].
    #[inline(always)]
    pub fn gain(&self, m: f32) -> f32 {
        let m = m as f64;
        // Computed whatever the branch, then selected: a straight loop the compiler vectorizes.
        let inside = (1.0 - (self.middle - m).abs() / self.fraction) as f32;
        let gain = if self.start_fading < m && m < self.end_fading {
            inside
        } else {
            0.0f32
        };
        ((gain as f64 - -1.0) / (1.0 - -1.0) * (1.0 - 0.0) + 0.0) as f32
    }
}

/// Wavetable gain curve `index` of `count` from the mix samples
/// (`gainValuesPerAudioWave`, then `remapControlArrayToValueCurveRange`).
pub fn wavetable_gain(mix: &[f32], index: usize, count: usize) -> Vec<f32> {
    let span = WaveSpan::new(index, count);
    mix.iter().map(|&m| span.gain(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_matches_the_js_formula() {
        assert_eq!(remap(&[-1.0, 0.0, 1.0], 0.0, 1.0), vec![0.0, 0.5, 1.0]);
        assert_eq!(remap(&[0.5], -1200.0, 1200.0), vec![600.0]);
    }

    #[test]
    fn wavetable_gains_crossfade_and_are_remapped_to_half_and_up() {
        // two waves: spans (-1, 0.5) and (-0.5, 1), middles -0.5 and 0.5
        let mix = [-0.5f32, 0.0, 0.5, 0.9];
        let g0 = wavetable_gain(&mix, 0, 2);
        let g1 = wavetable_gain(&mix, 1, 2);
        assert_eq!(g0, vec![1.0, 0.75, 0.5, 0.5]);
        assert_eq!(g1, vec![0.5, 0.75, 1.0, 0.8]);
    }

    #[test]
    fn noise_is_deterministic_per_seed_and_stream_and_bounded() {
        for kind in [NoiseKind::White, NoiseKind::Pink, NoiseKind::Brown] {
            let a = noise(kind, 4800, 7, 1);
            assert_eq!(a, noise(kind, 4800, 7, 1));
            assert_ne!(a, noise(kind, 4800, 8, 1));
            assert_ne!(a, noise(kind, 4800, 7, 2));
            assert!(a.iter().all(|s| s.abs() <= 1.5), "{kind:?}");
        }
        let w = noise(NoiseKind::White, 48000, 1, 0);
        let rms = (w.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        // uniform on [-1, 1] has RMS 1/sqrt(3)
        assert!((rms - 1.0 / 3f64.sqrt()).abs() < 0.01, "{rms}");
    }

    #[test]
    fn noise_resumed_in_pieces_equals_noise_in_one_go() {
        for kind in [NoiseKind::White, NoiseKind::Pink, NoiseKind::Brown] {
            let whole = noise(kind, 10_000, 9, 4);
            let mut generator = NoiseGen::new(kind, 9, 4);
            let pieces: Vec<f32> = (0..10_000).map(|_| generator.next_sample()).collect();
            assert_eq!(whole, pieces);
        }
    }

    /// A preparation's turns end after a piece, share their pieces with a helper, and start
    /// again where the last stopped: the outputs equal one uninterrupted evaluation on one
    /// thread, bit for bit, for every output of every fixture genome (noise included), with
    /// and without anti-aliasing.
    #[test]
    fn outputs_evaluated_in_short_shared_turns_equal_one_evaluation() {
        let pools = [1, 3].map(|threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        });
        for fixture in crate::fixtures::all() {
            let genome = crate::CompiledGenome::from_json(&fixture.genome_json()).unwrap();
            let output_count = genome.cppns().output_count();
            let web = crate::patch::graph::build(genome.patch(), 0.0, false, output_count).unwrap();
            let all: Vec<usize> = (0..web.outputs.len()).collect();
            for anti_aliasing in [false, true] {
                let timeline = Timeline {
                    // 7.3 pieces of cppn::PARALLEL_CHUNK, oversampled 14.6.
                    frames: cppn::PARALLEL_CHUNK * 7 + 1234,
                    anti_aliasing,
                    ..Timeline::new(0)
                };
                let new =
                    || WholeOutputs::new(genome.cppns(), &web.outputs, &all, timeline, 0.8, 3);
                let whole = pools[0].install(|| new().run());
                let stepped = pools[1].install(|| {
                    let mut outputs = new();
                    let mut turns = 0;
                    while !outputs.is_done() {
                        outputs.step(Some(Instant::now()), 2);
                        turns += 1;
                    }
                    assert!(turns > 1 || whole.iter().all(Option::is_none));
                    outputs.finish()
                });
                assert_eq!(whole.len(), stepped.len());
                for (i, (a, b)) in whole.iter().zip(&stepped).enumerate() {
                    let bits = |v: &Option<Arc<Vec<f32>>>| {
                        v.as_ref()
                            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                    };
                    assert!(
                        bits(a) == bits(b),
                        "{} output {i}, anti-aliasing {anti_aliasing}",
                        fixture.id
                    );
                }
            }
        }
    }

    #[test]
    fn rounded_frequency_keys() {
        assert_eq!(rounded_frequency(7.5), 8.0);
        assert_eq!(rounded_frequency(184.99), 180.0);
        assert_eq!(rounded_frequency(445.0), 450.0);
    }
}
