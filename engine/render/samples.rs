//! Turning network outputs into the sample arrays the graph consumes: CPPN activations (once
//! per unique frequency, kromosynth `Activator.activateMember`), seeded noise, range remapping
//! (`remapNumberToRange`) and wavetable gain curves (`gainValuesPerAudioWave`). Every array is
//! f32, as the original's Float32Arrays, with the arithmetic done in f64 like JavaScript.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cppn::{self, Program};
use crate::dsp::sample_array::SampleArray;
use crate::gpu::CppnBackend;
use crate::patch::graph::{Samples, WebGraph};
use crate::patch::synthis::{NetworkOutput, NoiseKind, Source};

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
fn groups<'a>(cppns: &'a Cppns, outputs: &[NetworkOutput]) -> Vec<Group<'a>> {
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

struct Group<'a> {
    frequency: f64,
    program: &'a Program,
    members: Vec<(usize, usize)>,
}

/// Raw samples of every network output (CPPN activation or noise), evaluated whole on the
/// CPU; `None` where the original produces none. See [`evaluate_outputs_with`].
pub fn evaluate_outputs(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    frames: usize,
    velocity: f64,
    seed: u64,
) -> Vec<Option<Arc<Vec<f32>>>> {
    evaluate_outputs_with(cppns, outputs, frames, velocity, seed, &CppnBackend::Cpu)
}

/// [`evaluate_outputs`] with the CPPNs evaluated by `backend`.
pub fn evaluate_outputs_with(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    frames: usize,
    velocity: f64,
    seed: u64,
    backend: &CppnBackend,
) -> Vec<Option<Arc<Vec<f32>>>> {
    let all: Vec<usize> = (0..outputs.len()).collect();
    evaluate_some(cppns, outputs, &all, frames, velocity, seed, backend)
}

/// Like [`evaluate_outputs_with`], for the network outputs in `wanted` only. Every
/// frequency's job is started before the first is awaited, so on the GPU they share a
/// submission.
fn evaluate_some(
    cppns: &Cppns,
    outputs: &[NetworkOutput],
    wanted: &[usize],
    frames: usize,
    velocity: f64,
    seed: u64,
    backend: &CppnBackend,
) -> Vec<Option<Arc<Vec<f32>>>> {
    let mut result: Vec<Option<Arc<Vec<f32>>>> = vec![None; outputs.len()];
    for &i in wanted {
        if let Source::Noise(kind) = outputs[i].source {
            result[i] = Some(noise(kind, frames, seed, i as u64).into());
        }
    }
    let groups = groups(cppns, outputs);
    // Per group: the CPPN output indices wanted, and (network output, position in them).
    type Plan = (Vec<usize>, Vec<(usize, usize)>);
    let plans: Vec<Plan> = groups
        .iter()
        .map(|group| {
            let mut indices: Vec<usize> = Vec::new();
            let mut members = Vec::new();
            for &(out, idx) in &group.members {
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
        })
        .collect();
    let evaluations: Vec<_> = groups
        .iter()
        .zip(&plans)
        .filter(|(_, (indices, _))| !indices.is_empty())
        .map(|(group, (indices, members))| {
            let periods =
                cppn::input_periods(group.frequency, frames, crate::dsp::SAMPLE_RATE as f64);
            let evaluation = backend.start(group.program, periods, velocity, frames, indices);
            (evaluation, members)
        })
        .collect();
    for (evaluation, members) in evaluations {
        let buffers: Vec<Arc<Vec<f32>>> = evaluation.wait().into_iter().map(Arc::new).collect();
        for &(out, k) in members {
            result[out] = Some(buffers[k].clone());
        }
    }
    result
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
fn remap_one(s: f32, lo: f64, hi: f64) -> f32 {
    ((s as f64 - -1.0) / (1.0 - -1.0) * (hi - lo) + lo) as f32
}

/// [`remap_one`] per sample.
pub fn remap(samples: &[f32], lo: f64, hi: f64) -> Vec<f32> {
    samples.iter().map(|&s| remap_one(s, lo, hi)).collect()
}

/// One wave's span in the wavetable mix (`gainValuesPerAudioWave`).
#[derive(Clone, Copy, Debug)]
struct WaveSpan {
    fraction: f64,
    start_fading: f64,
    middle: f64,
    end_fading: f64,
}

impl WaveSpan {
    fn new(index: usize, count: usize) -> WaveSpan {
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
    fn gain(&self, m: f32) -> f32 {
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

/// Samples a render's CPPN evaluates before its first block whatever the read-ahead: at least
/// one default chunk (4096 frames), so the first chunk needs a single fill.
pub const FILL_CHUNK: usize = 4096;

/// Frames filled beyond what the readers need by the end of the coming block: a value curve
/// reads the sample after the block's last (interpolation) and the next block's first value.
const FILL_MARGIN: usize = 2 * crate::dsp::RENDER_QUANTUM + 4;

/// Samples kept per lazily filled array when every reader reads at the block clock: more than
/// the fill runs ahead of the clock (at most `FILL_CHUNK + FILL_MARGIN + 128` = 4484), so a
/// window never drops a sample that is still to be read. 32 KiB per array, whatever the
/// render's length; a render has up to a few dozen such arrays.
pub const WINDOW: usize = 8192;

const _: () = assert!(WINDOW > FILL_CHUNK + FILL_MARGIN + crate::dsp::RENDER_QUANTUM);

/// How a lazily filled array is computed from another, sample by sample.
#[derive(Clone, Copy, Debug)]
enum Derivation {
    Remap { lo: f64, hi: f64 },
    WavetableGain(WaveSpan),
}

impl Derivation {
    /// The derived samples of `values`.
    fn apply(self, values: &[f32]) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn wide(how: Derivation, values: &[f32]) -> Vec<f32> {
                how.apply_loop(values)
            }
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { wide(self, values) };
        }
        self.apply_loop(values)
    }

    /// One loop per kind, so each is a straight (vectorizable) loop; the same operations
    /// whatever the vector width.
    #[inline(always)]
    fn apply_loop(self, values: &[f32]) -> Vec<f32> {
        match self {
            Derivation::Remap { lo, hi } => values.iter().map(|&x| remap_one(x, lo, hi)).collect(),
            Derivation::WavetableGain(span) => values.iter().map(|&m| span.gain(m)).collect(),
        }
    }
}

/// A lazily filled array computed from another (created after it).
struct Derived {
    from: SampleArray,
    to: SampleArray,
    how: Derivation,
}

/// A lazily computed signal: where nodes read it (`None` when only other signals are computed
/// from it, as a raw CPPN output that every reader takes remapped: then it is never stored),
/// and the signals computed from it.
struct Signal {
    to: Option<SampleArray>,
    derived: Vec<(Derivation, Signal)>,
}

impl Signal {
    /// The tree of `array` over `derived`, keeping only arrays in `exposed`; `None` when
    /// nothing in it is read.
    fn tree(array: &SampleArray, derived: &[Derived], exposed: &[SampleArray]) -> Option<Signal> {
        let signal = Signal {
            to: exposed.iter().any(|e| e.same(array)).then(|| array.clone()),
            derived: derived
                .iter()
                .filter(|d| d.from.same(array))
                .filter_map(|d| Some((d.how, Signal::tree(&d.to, derived, exposed)?)))
                .collect(),
        };
        (signal.to.is_some() || !signal.derived.is_empty()).then_some(signal)
    }

    /// Stores `values` (this signal from sample `start` on) where nodes read it, then
    /// computes the signals derived from it.
    fn emit(&self, start: usize, values: &[f32]) {
        if let Some(to) = &self.to {
            to.write(start, values);
        }
        for (how, signal) in &self.derived {
            signal.emit(start, &how.apply(values));
        }
    }

    fn storage_bytes(&self) -> usize {
        self.to.as_ref().map_or(0, SampleArray::storage_bytes)
            + self
                .derived
                .iter()
                .map(|(_, s)| s.storage_bytes())
                .sum::<usize>()
    }
}

/// One frequency group's lazily evaluated CPPN outputs.
struct LazyGroup {
    program: Program,
    periods: f64,
    /// CPPN output indices and their signals (in `program`'s pruned numbering).
    indices: Vec<usize>,
    signals: Vec<Signal>,
}

/// Resolves `Samples` descriptions to arrays, each distinct one once.
///
/// Arrays that a node needs whole (convolver impulse responses, wave-shaper curves, buffers
/// read at an unknown rate) are computed in [`Resolver::new`]. Every other array is handed out
/// zeroed and filled by the [`Filler`] ahead of the block clock, so a render's first block does
/// not wait for its whole CPPN evaluation. The values are the same either way: every sample is
/// a function of its index alone.
pub struct Resolver<'a> {
    cppns: &'a Cppns,
    outputs: &'a [NetworkOutput],
    frames: usize,
    velocity: f64,
    /// Whole raw outputs (noise, and what `whole` needed).
    whole: Vec<Option<Arc<Vec<f32>>>>,
    /// Lazily filled raw CPPN outputs, created on first use.
    lazy: Vec<Option<SampleArray>>,
    /// In creation order, so each one's source comes before it.
    derived: Vec<Derived>,
    /// Lazily generated noise outputs.
    noise: Vec<(NoiseGen, SampleArray)>,
    seed: u64,
    done: Vec<(Samples, Option<SampleArray>)>,
    /// The arrays handed to nodes; lazy arrays that are not here are only sources of others.
    exposed: Vec<SampleArray>,
    read_ahead: f64,
    eager: bool,
    /// Lazy arrays are windows of [`WINDOW`] samples.
    windowed: bool,
}

fn raw_outputs(s: &Samples, into: &mut Vec<usize>) {
    match s {
        Samples::Output { output, .. } => into.push(*output),
        Samples::WavetableGain { mix, .. } => raw_outputs(mix, into),
    }
}

impl<'a> Resolver<'a> {
    /// The resolver for `graph`'s network outputs. What some node needs complete before the
    /// first block is evaluated now, by `backend`; the rest lazily, in windows when every
    /// reader reads at the block clock.
    pub fn new(
        cppns: &'a Cppns,
        graph: &'a WebGraph,
        frames: usize,
        velocity: f64,
        seed: u64,
        backend: &CppnBackend,
    ) -> Self {
        let outputs = &graph.outputs[..];
        // The GPU evaluates everything whole, in one submission: there the whole CPPN costs
        // less than the round trips of chunked evaluation would.
        if let CppnBackend::Gpu(_) = backend {
            let mut r = Resolver::lazy(cppns, outputs, frames, velocity, seed, &[], false);
            r.whole = evaluate_outputs_with(cppns, outputs, frames, velocity, seed, backend);
            r.eager = true;
            return r;
        }
        Resolver::lazy(
            cppns,
            outputs,
            frames,
            velocity,
            seed,
            &super::graph::whole_samples(graph),
            super::graph::reads_at_block_clock(graph),
        )
    }

    /// `whole` evaluated now on the CPU, everything else lazily.
    fn lazy(
        cppns: &'a Cppns,
        outputs: &'a [NetworkOutput],
        frames: usize,
        velocity: f64,
        seed: u64,
        whole: &[Samples],
        windowed: bool,
    ) -> Self {
        let mut wanted: Vec<usize> = Vec::new();
        for s in whole {
            raw_outputs(s, &mut wanted);
        }
        wanted.sort_unstable();
        wanted.dedup();
        Resolver {
            whole: evaluate_some(
                cppns,
                outputs,
                &wanted,
                frames,
                velocity,
                seed,
                &CppnBackend::Cpu,
            ),
            lazy: vec![None; outputs.len()],
            cppns,
            outputs,
            frames,
            velocity,
            derived: Vec::new(),
            noise: Vec::new(),
            seed,
            done: Vec::new(),
            exposed: Vec::new(),
            read_ahead: 1.0,
            eager: false,
            windowed,
        }
    }

    /// A resolver that computes everything whole (for oracles and tests).
    pub fn eager(
        cppns: &'a Cppns,
        outputs: &'a [NetworkOutput],
        frames: usize,
        velocity: f64,
        seed: u64,
    ) -> Self {
        let mut r = Resolver::lazy(cppns, outputs, frames, velocity, seed, &[], false);
        r.whole = evaluate_outputs(cppns, outputs, frames, velocity, seed);
        r.eager = true;
        r
    }

    /// The array for `s` (`None` when its network output has no samples). `read_ahead`: how
    /// far ahead of the block clock the reader reads, as a factor on the frame (1 for value
    /// curves and buffers played at rate 1).
    pub fn resolve(&mut self, s: &Samples, read_ahead: f64) -> Option<SampleArray> {
        let v = self.resolve_source(s, read_ahead);
        if let Some(array) = &v {
            self.exposed.push(array.clone());
        }
        v
    }

    /// [`Resolver::resolve`] for computing other arrays from: not itself read by a node.
    fn resolve_source(&mut self, s: &Samples, read_ahead: f64) -> Option<SampleArray> {
        self.read_ahead = self.read_ahead.max(read_ahead);
        if let Some((_, v)) = self.done.iter().find(|(k, _)| k == s) {
            return v.clone();
        }
        let v = match s {
            Samples::Output { output, range } => {
                let raw = self.raw(*output);
                match (raw, range) {
                    (Some(Ok(whole)), Some([lo, hi])) => {
                        Some(SampleArray::from(remap(&whole, *lo, *hi)))
                    }
                    (Some(Ok(whole)), None) => Some(SampleArray::from(&whole[..])),
                    (Some(Err(lazy)), Some([lo, hi])) => {
                        let to = self.new_lazy();
                        self.derived.push(Derived {
                            from: lazy,
                            to: to.clone(),
                            how: Derivation::Remap { lo: *lo, hi: *hi },
                        });
                        Some(to)
                    }
                    (Some(Err(lazy)), None) => Some(lazy),
                    (None, _) => None,
                }
            }
            Samples::WavetableGain { mix, index, count } => {
                let span = WaveSpan::new(*index, *count);
                let complete = self.is_whole(mix);
                self.resolve_source(mix, read_ahead).map(|mix| {
                    if complete {
                        let mix = mix.to_vec();
                        SampleArray::from(mix.iter().map(|&m| span.gain(m)).collect::<Vec<_>>())
                    } else {
                        let to = self.new_lazy();
                        self.derived.push(Derived {
                            from: mix,
                            to: to.clone(),
                            how: Derivation::WavetableGain(span),
                        });
                        to
                    }
                })
            }
        };
        self.done.push((s.clone(), v.clone()));
        v
    }

    /// The samples of `s` complete now (for nodes that take their data at construction).
    pub fn resolve_whole(&mut self, s: &Samples) -> Option<Vec<f32>> {
        debug_assert!(self.is_whole(s), "{s:?} was not declared whole");
        // Straight from the evaluated buffer where possible: every copy of a whole-duration
        // buffer is fresh memory, and on the first chunk's path page faults cost as much as
        // the copying.
        if let Samples::Output { output, range } = s {
            if let Some(Ok(whole)) = self.raw(*output) {
                return Some(match range {
                    Some([lo, hi]) => remap(&whole, *lo, *hi),
                    None => whole.to_vec(),
                });
            }
        }
        self.resolve(s, 1.0).map(|a| a.to_vec())
    }

    fn is_whole(&self, s: &Samples) -> bool {
        let mut raws = Vec::new();
        raw_outputs(s, &mut raws);
        raws.iter()
            .all(|&o| self.whole[o].is_some() || matches!(self.outputs[o].source, Source::Nothing))
    }

    fn new_lazy(&self) -> SampleArray {
        if self.windowed {
            SampleArray::window(self.frames, WINDOW)
        } else {
            SampleArray::zeroed(self.frames)
        }
    }

    /// The raw output: whole (`Ok`) or lazily filled (`Err`), created on first use.
    fn raw(&mut self, output: usize) -> Option<Result<Arc<Vec<f32>>, SampleArray>> {
        if let Some(whole) = &self.whole[output] {
            return Some(Ok(whole.clone()));
        }
        if self.eager {
            return None;
        }
        if let Some(lazy) = &self.lazy[output] {
            return Some(Err(lazy.clone()));
        }
        let array = match self.outputs[output].source {
            Source::Nothing => return None,
            Source::Cppn(_) => self.new_lazy(),
            Source::Noise(kind) => {
                let array = self.new_lazy();
                let generator = NoiseGen::new(kind, self.seed, output as u64);
                self.noise.push((generator, array.clone()));
                array
            }
        };
        self.lazy[output] = Some(array.clone());
        Some(Err(array))
    }

    /// What fills the lazy arrays as the render advances. Arrays that no node reads (a raw
    /// output that every reader takes remapped, a wavetable mix that only its gains read) are
    /// dropped here: their values are computed on the way to the arrays derived from them.
    pub fn into_filler(self) -> Filler {
        let tree = |array: &SampleArray| Signal::tree(array, &self.derived, &self.exposed);
        let mut lazy_groups = Vec::new();
        for group in groups(self.cppns, self.outputs) {
            let mut indices = Vec::new();
            let mut signals = Vec::new();
            for &(out, idx) in &group.members {
                // Noise outputs are lazy too, but filled by their generator.
                let is_cppn = matches!(self.outputs[out].source, Source::Cppn(_));
                if let Some(signal) = self.lazy[out].as_ref().filter(|_| is_cppn).and_then(tree) {
                    indices.push(idx);
                    signals.push(signal);
                }
            }
            if indices.is_empty() {
                continue;
            }
            lazy_groups.push(LazyGroup {
                program: group.program.pruned(&indices),
                periods: cppn::input_periods(
                    group.frequency,
                    self.frames,
                    crate::dsp::SAMPLE_RATE as f64,
                ),
                indices,
                signals,
            });
        }
        let noise: Vec<(NoiseGen, Signal)> = self
            .noise
            .iter()
            .filter_map(|(generator, array)| Some((generator.clone(), tree(array)?)))
            .collect();
        let nothing_lazy = lazy_groups.is_empty() && noise.is_empty();
        Filler {
            frames: self.frames,
            filled: if nothing_lazy { self.frames } else { 0 },
            read_ahead: self.read_ahead,
            windowed: self.windowed,
            work: Arc::new(FillWork {
                frames: self.frames,
                velocity: self.velocity,
                groups: lazy_groups,
                noise: parking_lot::Mutex::new(noise),
            }),
            prefetch: None,
        }
    }
}

/// Frames of one prefetch: the fill that runs on another core while the render goes on with the
/// frames already filled. Small enough that a window has room for one beyond what the readers
/// still need (see [`Filler::start_prefetch`]), large enough that its spawn costs little.
const PREFETCH_CHUNK: usize = 2048;

/// How far behind the block clock a reader of a lazily filled array may still read: a value
/// curve with one point per frame reads point `frame * (N - 1) / N` (at most one behind) and
/// the next; a buffer played at rate 1 reads at the clock. A block is generous.
const READ_BEHIND: usize = crate::dsp::RENDER_QUANTUM;

const _: () = assert!(WINDOW >= FILL_CHUNK + FILL_MARGIN + PREFETCH_CHUNK + 2 * READ_BEHIND);

/// Fills a render's lazy arrays ahead of the block clock. The first chunk is filled before the
/// first block, on every core; after that, the next [`PREFETCH_CHUNK`] frames are filled by a
/// rayon task while the render renders the frames it has (on a machine with an idle core, the
/// CPPN then costs the render nothing), and a render that catches up with its prefetch fills
/// the pieces of it that no worker has taken yet, then waits for those being filled.
pub struct Filler {
    frames: usize,
    /// Frames filled and visible to the render.
    filled: usize,
    read_ahead: f64,
    /// Whether the arrays are windows, so a fill may not run more than a window ahead.
    windowed: bool,
    work: Arc<FillWork>,
    prefetch: Option<Arc<Prefetch>>,
}

/// What a fill computes: shared with the prefetch task.
struct FillWork {
    frames: usize,
    velocity: f64,
    groups: Vec<LazyGroup>,
    /// The noise generators. One fill runs at a time (the render starts one only after the
    /// previous is done), so this lock is never contended; it is taken once per fill.
    noise: parking_lot::Mutex<Vec<(NoiseGen, Signal)>>,
}

/// A fill of `range` handed to the rayon pool, in pieces that the spawned task and the render
/// (when it catches up) take one at a time. A render has at most one in flight (it starts the
/// next only once this one is done), so the pool holds at most one task per render.
struct Prefetch {
    range: std::ops::Range<usize>,
    pieces: Vec<Piece>,
    /// The next piece to take.
    next: AtomicUsize,
    /// Pieces done: counted (release) after each piece's last write, read (acquire) before
    /// the render reads what they wrote.
    finished: AtomicUsize,
    /// Set when the render is gone: the pieces not yet taken are not needed.
    cancelled: AtomicBool,
}

/// Frames of one prefetch piece: a quarter of a prefetch, so that a render that catches up
/// with its prefetch shares what is left of it with the worker.
const PREFETCH_PIECE: usize = PREFETCH_CHUNK / 4;

impl Prefetch {
    /// Takes and fills pieces until none is left.
    fn work_on(&self, work: &FillWork) {
        while !self.cancelled.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(piece) = self.pieces.get(i) else {
                return;
            };
            work.fill_piece(piece, &self.range);
            self.finished.fetch_add(1, Ordering::Release);
        }
    }

    fn is_done(&self) -> bool {
        self.finished.load(Ordering::Acquire) == self.pieces.len()
    }
}

/// Part of a fill: a frame range of one frequency group's CPPN outputs, or all the noise.
enum Piece {
    Cppn(usize, std::ops::Range<usize>),
    Noise,
}

impl Filler {
    /// Bytes of storage of the lazily filled arrays.
    pub fn storage_bytes(&self) -> usize {
        let groups: usize = self
            .work
            .groups
            .iter()
            .flat_map(|g| &g.signals)
            .map(Signal::storage_bytes)
            .sum();
        let noise: usize = self
            .work
            .noise
            .lock()
            .iter()
            .map(|(_, s)| s.storage_bytes())
            .sum();
        groups + noise
    }

    /// Frames filled so far (a finished prefetch included).
    pub fn filled(&self) -> usize {
        match &self.prefetch {
            Some(p) if p.is_done() => p.range.end,
            _ => self.filled,
        }
    }

    /// Makes sure every lazy array holds what readers need to render the block ending at
    /// `frame_end`. Called before every block: an atomic load, a comparison, and every
    /// [`PREFETCH_CHUNK`] frames or so a spawned task.
    #[inline]
    pub fn ensure(&mut self, frame_end: usize) {
        if self.filled >= self.frames {
            return;
        }
        if let Some(p) = &self.prefetch {
            if p.is_done() {
                self.filled = p.range.end;
                self.prefetch = None;
            }
        }
        let need = ((frame_end as f64 * self.read_ahead).ceil() as usize)
            .saturating_add(FILL_MARGIN)
            .min(self.frames);
        if need > self.filled {
            self.catch_up(need);
        }
        // Not during the first chunk: a render's first turn should have the cores to itself
        // and the event loop (see stream.rs).
        if self.prefetch.is_none() && frame_end > FILL_CHUNK && self.filled < self.frames {
            self.start_prefetch(frame_end);
        }
    }

    /// The render needs frames beyond `filled`: the prefetch's first, then a fill of its own.
    #[cold]
    fn catch_up(&mut self, need: usize) {
        if let Some(p) = self.prefetch.take() {
            p.work_on(&self.work);
            let mut spins = 0u32;
            while !p.is_done() {
                // The pieces still running on other workers finish within their own
                // length of work, with nothing for them to wait on.
                spins += 1;
                if spins < 1000 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            self.filled = p.range.end;
        }
        if need > self.filled {
            let to = need.max(self.filled + FILL_CHUNK).min(self.frames);
            self.work.fill(self.filled..to);
            self.filled = to;
        }
    }

    /// Spawns the fill of the next frames, as far as the arrays have room: a window's slot is
    /// reused one window later, so a fill may write up to a window beyond the oldest frame a
    /// reader may still read, [`READ_BEHIND`] before the block starting now.
    #[cold]
    fn start_prefetch(&mut self, frame_end: usize) {
        let block_start = frame_end.saturating_sub(crate::dsp::RENDER_QUANTUM);
        let room = if self.windowed {
            block_start.saturating_sub(READ_BEHIND) + WINDOW
        } else {
            self.frames
        };
        let to = (self.filled + PREFETCH_CHUNK).min(self.frames);
        if to > room {
            return;
        }
        let range = self.filled..to;
        let p = Arc::new(Prefetch {
            pieces: self.work.pieces(&range, PREFETCH_PIECE),
            range,
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
        });
        let (task, work) = (p.clone(), self.work.clone());
        rayon::spawn(move || task.work_on(&work));
        self.prefetch = Some(p);
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        // What nobody has started of a prefetch is not needed any more.
        if let Some(p) = &self.prefetch {
            p.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl FillWork {
    /// Evaluates `range` of every lazy array, on every core.
    fn fill(&self, range: std::ops::Range<usize>) {
        use rayon::prelude::*;
        let step = cppn::PARALLEL_CHUNK.min(range.len().div_ceil(2)).max(256);
        self.pieces(&range, step)
            .par_iter()
            .for_each(|piece| self.fill_piece(piece, &range));
    }

    /// The pieces of a fill of `range`: each group's frames in sub-ranges of `step`, so that
    /// one group's frames spread over the cores too, and the noise.
    fn pieces(&self, range: &std::ops::Range<usize>, step: usize) -> Vec<Piece> {
        let mut pieces: Vec<Piece> = (0..self.groups.len())
            .flat_map(|g| {
                let range = range.clone();
                (range.start..range.end)
                    .step_by(step)
                    .map(move |s| Piece::Cppn(g, s..(s + step).min(range.end)))
            })
            .collect();
        if !self.noise.lock().is_empty() {
            pieces.push(Piece::Noise);
        }
        pieces
    }

    /// Fills one piece of the fill of `range`.
    fn fill_piece(&self, piece: &Piece, range: &std::ops::Range<usize>) {
        match piece {
            Piece::Cppn(g, sub) => {
                let group = &self.groups[*g];
                let mut bufs: Vec<Vec<f32>> =
                    group.indices.iter().map(|_| vec![0.0; sub.len()]).collect();
                let mut views: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                cppn::evaluate_range(
                    &group.program,
                    group.periods,
                    self.velocity,
                    self.frames,
                    sub.clone(),
                    &group.indices,
                    &mut views,
                );
                for (signal, buf) in group.signals.iter().zip(&bufs) {
                    signal.emit(sub.start, buf);
                }
            }
            // The generators run in order: this fill's frames come right after the last's.
            Piece::Noise => {
                for (generator, signal) in self.noise.lock().iter_mut() {
                    let samples: Vec<f32> =
                        range.clone().map(|_| generator.next_sample()).collect();
                    signal.emit(range.start, &samples);
                }
            }
        }
    }
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
    fn only_arrays_that_nodes_read_are_stored_and_derived_ones_match_the_whole_functions() {
        // raw -> remapped (a wavetable mix) -> one wave's gain, as a wavetable genome has it.
        let len = 300;
        let (raw, mix, gain) = (
            SampleArray::window(len, 256),
            SampleArray::window(len, 256),
            SampleArray::window(len, 256),
        );
        let derived = [
            Derived {
                from: raw.clone(),
                to: mix.clone(),
                how: Derivation::Remap { lo: -1.0, hi: 0.5 },
            },
            Derived {
                from: mix.clone(),
                to: gain.clone(),
                how: Derivation::WavetableGain(WaveSpan::new(1, 3)),
            },
        ];
        assert!(
            Signal::tree(&raw, &derived, &[]).is_none(),
            "nothing is read"
        );
        let only_gain = Signal::tree(&raw, &derived, std::slice::from_ref(&gain)).unwrap();
        assert_eq!(only_gain.storage_bytes(), gain.storage_bytes());
        let mix_too = Signal::tree(&raw, &derived, &[gain.clone(), mix.clone()]).unwrap();
        assert_eq!(mix_too.storage_bytes(), 2 * gain.storage_bytes());

        let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 1.2).collect();
        // In pieces that wrap the 256-sample windows, as the filler writes them.
        for range in [0..200, 200..300] {
            mix_too.emit(range.start, &values[range]);
        }
        let want_mix = remap(&values, -1.0, 0.5);
        let want_gain = wavetable_gain(&want_mix, 1, 3);
        for i in 100..len {
            assert_eq!(mix.get(i).to_bits(), want_mix[i].to_bits(), "mix {i}");
            assert_eq!(gain.get(i).to_bits(), want_gain[i].to_bits(), "gain {i}");
            assert_eq!(raw.get(i), 0.0, "the raw output is not stored");
        }
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

    #[test]
    fn rounded_frequency_keys() {
        assert_eq!(rounded_frequency(7.5), 8.0);
        assert_eq!(rounded_frequency(184.99), 180.0);
        assert_eq!(rounded_frequency(445.0), 450.0);
    }
}
