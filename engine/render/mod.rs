//! Render: a compiled genome and a request become blocks of samples.
//!
//! A [`CompiledGenome`] (parsed once, cached by the server) and a [`RenderRequest`] become a
//! [`Render`]: the Web Audio graph for the request, its CPPN outputs evaluated, ready to yield
//! blocks. [`render_batch`] runs one to the end and applies the original's normalization.
//!
//! # Sample rate and options
//!
//! A request renders at any rate from 8 to 192 kHz (`RenderRequest::sample_rate`, 48 kHz by
//! default), as the original does with its offline context at that rate: the render has
//! `round(rate * duration)` frames, the CPPN's periodic input advances by `frequency / rate`
//! periods per frame, and every node derives its rate-dependent constants from the rate when it
//! is built or once per block, as web-audio-api does (nothing rate-related is computed per
//! sample that was not before). `anti_aliasing` runs the CPPN over twice the frames and filters
//! each output as the original does ([`outputs::anti_alias`]); those outputs are evaluated whole
//! before the first block, so such a render starts later and holds its outputs in memory.
//! `frequency_updates_apply_to_all_outputs` transposes value-curve outputs too
//! ([`crate::patch::synthis::apply_note_delta`]). All three match the original bit for bit on
//! the fixture renders in tests/fixtures/rates (engine/tests/rates.rs).

pub mod budget;
pub mod cpu_cost;
pub mod filler;
pub mod graph;
pub mod order;
pub mod outputs;
mod pieces;
pub mod post;
pub mod resolver;
pub mod stream;

use std::sync::Arc;

use crate::cppn::Program;
use crate::dsp::denormals::FlushDenormals;
use crate::dsp::{DEFAULT_SAMPLE_RATE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, RENDER_QUANTUM};
use crate::error::Error;
use crate::genome::{Genome, WaveNetwork};
use crate::gpu::CppnBackend;
use crate::patch::graph::{build as build_graph, WebGraph};
use crate::patch::synthis::{patch_from_asneat, SynthIsPatch};
use filler::Filler;
use graph::AudioGraph;
use outputs::{Cppns, Timeline};
use resolver::Resolver;

/// Longest render the engine accepts, in seconds; the server may set a lower limit.
pub const MAX_DURATION_SECONDS: f64 = 3600.0;

/// The server's limit unless configured otherwise, in seconds: ten minutes is far beyond any
/// sound a client evaluates, and bounds what one request can cost.
pub const DEFAULT_MAX_DURATION_SECONDS: f64 = 600.0;

/// What to render: the original's request fields plus the noise seed.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderRequest {
    /// Seconds; the render has `round(sample_rate * duration)` frames.
    pub duration: f64,
    /// Pitch shift in semitones.
    pub note_delta: f64,
    /// Scales the CPPN's periodic input, 0..=1.
    pub velocity: f64,
    /// Seed of the noise outputs' PRNG.
    pub seed: u64,
    /// Hz, [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`]: the rate of the original's offline
    /// context, which both its CPPN inputs and every DSP node depend on.
    pub sample_rate: u32,
    /// kromosynth `antiAliasing`: the CPPN runs over twice the frames and each output is
    /// low-passed at the render's Nyquist frequency (see [`outputs::anti_alias`]).
    pub anti_aliasing: bool,
    /// kromosynth `frequencyUpdatesApplyToAllPathcNetworkOutputs`: noteDelta transposes the
    /// network outputs that drive value curves too, not only those feeding buffers.
    pub frequency_updates_apply_to_all_outputs: bool,
    /// The newest original server's limiter between the graph and the destination
    /// ([`post::Limiter`]).
    pub limiter: bool,
}

impl Default for RenderRequest {
    fn default() -> Self {
        RenderRequest {
            duration: 1.0,
            note_delta: 0.0,
            velocity: 0.5,
            seed: 0,
            sample_rate: DEFAULT_SAMPLE_RATE,
            anti_aliasing: false,
            frequency_updates_apply_to_all_outputs: false,
            limiter: false,
        }
    }
}

/// Peak statistics of the raw (pre-normalization) samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    pub peak: f32,
}

/// A genome parsed and compiled once, shareable between renders (`Arc<CompiledGenome>`):
/// the synth.is patch and the compiled CPPN program(s). Everything that depends on the request
/// (noteDelta, duration, velocity) happens in [`Render::new`].
#[derive(Debug)]
pub struct CompiledGenome {
    patch: SynthIsPatch,
    cppns: Cppns,
}

impl CompiledGenome {
    /// Parses genome JSON in any of the kromosynth shapes (wrapped or bare, string-encoded
    /// layers) and compiles its CPPN and patch.
    pub fn from_json(bytes: &[u8]) -> Result<CompiledGenome, Error> {
        let genome = Genome::from_json(bytes)?;
        CompiledGenome::from_genome(&genome)
    }

    pub fn from_genome(genome: &Genome) -> Result<CompiledGenome, Error> {
        let patch = patch_from_asneat(&genome.patch)?;
        let cppns = match &genome.wave_network {
            WaveNetwork::Single(g) => Cppns::Single(Program::compile(g)?),
            WaveNetwork::PerFrequency(v) => Cppns::PerFrequency(
                v.iter()
                    .map(|(f, g)| Ok((*f, Program::compile(g)?)))
                    .collect::<Result<_, Error>>()?,
            ),
        };
        Ok(CompiledGenome { patch, cppns })
    }

    pub fn patch(&self) -> &SynthIsPatch {
        &self.patch
    }

    pub fn cppns(&self) -> &Cppns {
        &self.cppns
    }

    /// The CPPN program (the single one, or the first of the per-frequency ones).
    pub fn program(&self) -> &Program {
        match &self.cppns {
            Cppns::Single(p) => p,
            Cppns::PerFrequency(v) => &v[0].1,
        }
    }
}

/// Fewest frames a render may have: the CPPN ramp divides by `frames - 1`.
pub const MIN_FRAMES: usize = 2;

/// Frames of a render of `duration` seconds at `sample_rate` (kromosynth
/// `Math.round(sampleRate * duration)`).
pub fn frames_for(duration: f64, sample_rate: u32) -> usize {
    (sample_rate as f64 * duration).round() as usize
}

/// Checks a request's sample rate against [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
pub fn check_sample_rate(sample_rate: u32) -> Result<(), Error> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        Ok(())
    } else {
        Err(Error(format!(
            "sampleRate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, \
             got {sample_rate}"
        )))
    }
}

/// One render in progress. Yields one block of `RENDER_QUANTUM` frames per call and can be
/// paused between any two calls; the samples do not depend on how the blocks are pulled.
pub struct Render {
    graph: AudioGraph,
    /// Evaluates the CPPN outputs ahead of the block clock.
    filler: Filler,
    total_frames: usize,
    position: usize,
    range: RunningRange,
    limiter: Option<post::Limiter>,
}

impl Render {
    pub fn new(genome: &CompiledGenome, request: &RenderRequest) -> Result<Render, Error> {
        Render::with_cppn(genome, request, &CppnBackend::Cpu)
    }

    /// [`Render::new`] with the CPPN outputs evaluated by `backend` (the GPU's results differ
    /// from the CPU's within the tolerance in engine/gpu/README.md).
    pub fn with_cppn(
        genome: &CompiledGenome,
        request: &RenderRequest,
        backend: &CppnBackend,
    ) -> Result<Render, Error> {
        Render::plan(genome, request)?.build(backend)
    }

    /// Checks `request` and builds the Web Audio graph, the cheap first half of a render's
    /// preparation: the memory it will take is known from here ([`RenderPlan::memory`]), before
    /// [`RenderPlan::build`] evaluates whole-duration outputs and allocates it.
    pub fn plan<'g>(
        genome: &'g CompiledGenome,
        request: &RenderRequest,
    ) -> Result<RenderPlan<'g>, Error> {
        Render::plan_for(GenomeRef::Borrowed(genome), request)
    }

    /// [`Render::plan`] for a shared genome: the plan owns what it needs, so a streamed render
    /// can keep it across scheduler turns while it prepares ([`Preparation`]).
    pub fn plan_shared(
        genome: Arc<CompiledGenome>,
        request: &RenderRequest,
    ) -> Result<RenderPlan<'static>, Error> {
        Render::plan_for(GenomeRef::Shared(genome), request)
    }

    fn plan_for<'g>(
        genome: GenomeRef<'g>,
        request: &RenderRequest,
    ) -> Result<RenderPlan<'g>, Error> {
        if !(request.duration.is_finite()
            && request.duration > 0.0
            && request.duration <= MAX_DURATION_SECONDS)
        {
            return Err(Error(format!(
                "duration must be a number in (0, {MAX_DURATION_SECONDS}] seconds, got {}",
                request.duration
            )));
        }
        check_sample_rate(request.sample_rate)?;
        let total_frames = frames_for(request.duration, request.sample_rate);
        if total_frames < MIN_FRAMES {
            return Err(Error(format!(
                "duration {} s is shorter than {MIN_FRAMES} samples",
                request.duration
            )));
        }
        if !request.note_delta.is_finite() {
            return Err(Error("noteDelta must be a finite number".into()));
        }
        if !request.velocity.is_finite() {
            return Err(Error("velocity must be a finite number".into()));
        }
        let web = build_graph(
            &genome.get().patch,
            request.note_delta,
            request.frequency_updates_apply_to_all_outputs,
            genome.get().cppns.output_count(),
        )?;
        let timeline = Timeline {
            frames: total_frames,
            sample_rate: request.sample_rate,
            anti_aliasing: request.anti_aliasing,
        };
        Ok(RenderPlan {
            genome,
            request: request.clone(),
            web,
            timeline,
        })
    }

    pub fn total_frames(&self) -> usize {
        self.total_frames
    }

    /// Frames of the lazily evaluated CPPN outputs computed so far (the render's total once
    /// everything is evaluated, or when nothing is lazy).
    pub fn cppn_frames_ready(&self) -> usize {
        self.filler.filled()
    }

    /// Bytes held by the lazily evaluated CPPN and noise outputs: a window each when every
    /// reader reads at the block clock, so independent of the render's duration.
    pub fn lazy_output_bytes(&self) -> usize {
        self.filler.storage_bytes()
    }

    pub fn frames_rendered(&self) -> usize {
        self.position
    }

    pub fn is_finished(&self) -> bool {
        self.position >= self.total_frames
    }

    /// Renders the next block into `out` and returns how many of its frames belong to the
    /// render (`RENDER_QUANTUM`, fewer for the last block, 0 once finished).
    pub fn next_block(&mut self, out: &mut [f32; RENDER_QUANTUM]) -> usize {
        let n = RENDER_QUANTUM.min(self.total_frames - self.position);
        if n == 0 {
            return 0;
        }
        // Outside the flush-to-zero scope: the CPPN is evaluated in f64 with denormals, as
        // JavaScript does.
        self.filler.ensure(self.position + RENDER_QUANTUM);
        {
            // web-audio-api renders every block with denormals flushed.
            let _ftz = FlushDenormals::new();
            self.graph.render_block(self.position as u64, out);
            if let Some(limiter) = &mut self.limiter {
                limiter.process(out);
            }
        }
        self.range.add(&out[..n]);
        self.position += n;
        n
    }

    /// min, max and peak of the frames rendered so far (min and max start at 0).
    pub fn stats(&self) -> Stats {
        let (min, max) = self.range.min_max();
        Stats {
            min,
            max,
            peak: max.max(-min),
        }
    }
}

/// A render's genome: borrowed by a render built in one go, shared by one prepared in pieces.
enum GenomeRef<'g> {
    Borrowed(&'g CompiledGenome),
    Shared(Arc<CompiledGenome>),
}

impl GenomeRef<'_> {
    fn get(&self) -> &CompiledGenome {
        match self {
            GenomeRef::Borrowed(g) => g,
            GenomeRef::Shared(g) => g,
        }
    }
}

/// A render checked and its graph built, nothing whole-duration evaluated yet
/// ([`Render::plan`]).
pub struct RenderPlan<'g> {
    genome: GenomeRef<'g>,
    request: RenderRequest,
    web: WebGraph,
    timeline: Timeline,
}

impl<'g> RenderPlan<'g> {
    pub fn total_frames(&self) -> usize {
        self.timeline.frames
    }

    /// The most memory the render will hold at once, for admission ([`budget`]).
    pub fn memory(&self, backend: &CppnBackend) -> MemoryEstimate {
        let eager = matches!(backend, CppnBackend::Gpu(_)) || self.timeline.anti_aliasing;
        MemoryEstimate::of(&self.web, self.timeline, eager)
    }

    /// Evaluates what some node needs whole and builds the runtime graph: the expensive half.
    pub fn build(self, backend: &CppnBackend) -> Result<Render, Error> {
        let mut preparation = self.prepare(backend);
        preparation.step(None, pieces::other_workers());
        preparation.finish(backend)
    }

    /// [`RenderPlan::build`] in pieces: [`Preparation::step`] until it is done, then
    /// [`Preparation::finish`]. On the GPU, everything is evaluated by `finish`, in one
    /// submission.
    pub fn prepare(self, backend: &CppnBackend) -> Preparation<'g> {
        let whole = matches!(backend, CppnBackend::Cpu).then(|| {
            let genome = self.genome.get();
            Resolver::whole_outputs(
                &genome.cppns,
                &self.web,
                self.timeline,
                self.request.velocity,
                self.request.seed,
            )
        });
        Preparation { plan: self, whole }
    }
}

/// A render being prepared: its whole-duration outputs evaluated a few pieces at a time, so
/// the worker preparing it can go back to other renders in between (render/stream.rs).
pub struct Preparation<'g> {
    plan: RenderPlan<'g>,
    /// On the CPU: the outputs some node needs whole, evaluated so far.
    whole: Option<outputs::WholeOutputs>,
}

impl Preparation<'_> {
    /// Evaluates the whole-duration outputs until they are done (returns true) or `until` has
    /// passed, with `helpers` tasks on the current rayon pool taking pieces of 4096 samples.
    pub fn step(&mut self, until: Option<std::time::Instant>, helpers: usize) -> bool {
        match &mut self.whole {
            Some(whole) => {
                whole.step(until, helpers);
                whole.is_done()
            }
            None => true,
        }
    }

    /// Builds the runtime graph from the evaluated outputs (evaluating what is left first)
    /// and the first chunk's lazily evaluated outputs.
    pub fn finish(self, backend: &CppnBackend) -> Result<Render, Error> {
        let Preparation { plan, whole } = self;
        let RenderPlan {
            genome,
            request,
            web,
            timeline,
        } = plan;
        let genome = genome.get();
        let (velocity, seed) = (request.velocity, request.seed);
        let mut resolver = match whole {
            Some(whole) => {
                Resolver::with_whole(&genome.cppns, &web, timeline, velocity, seed, whole.run())
            }
            None => Resolver::new(&genome.cppns, &web, timeline, velocity, seed, backend),
        };
        let graph = AudioGraph::new(&web, &mut resolver, request.duration, request.sample_rate)?;
        let mut filler = resolver.into_filler();
        // Everything the first default chunk reads, in one parallel fill now: its blocks then
        // never fill inside `next_block`, so the first chunk costs one fill, not two.
        filler.ensure(filler::FILL_CHUNK);
        Ok(Render {
            graph,
            filler,
            total_frames: timeline.frames,
            position: 0,
            range: RunningRange::default(),
            limiter: request
                .limiter
                .then(|| post::Limiter::new(request.sample_rate)),
        })
    }
}

/// Bytes per frame of a convolver's state at the end of a render whose impulse response is as
/// long as the render (kromosynth's always are): the IR itself (f32, freed only once its last
/// partition is transformed), the spectra of its partitions and of as many input partitions
/// (1025 complex f32 bins per 1024 frames each, about 8 bytes per frame), and the
/// non-uniformly partitioned tail's own spectra and input history beyond the exact head (see
/// dsp/convolver_tail.rs; measured at up to another 8 bytes per frame).
const CONVOLVER_BYTES_PER_FRAME: f64 = 4.0 + 3.0 * (1025.0 * 8.0 / 1024.0);

/// Bytes a render holds whatever its graph: the stream's ring (32 KiB), the filler, the first
/// chunk's scratch, FFT plans' scratch and the graph's vectors; calibrated on the fixture
/// genomes (engine/tests/memory_estimate.rs).
const BASE_BYTES: u64 = 256 << 10;

/// Bytes per node of the Web Audio graph: its share of the output buses (3 KiB each), param
/// value rows (512 bytes per param), its processor and its edges.
const NODE_BYTES: u64 = 8 << 10;

/// Channels assumed per delay line: kromosynth graphs feed a delay one channel, or two after a
/// stereo node; a line's rings for channels that carry only zeros are never allocated.
const DELAY_CHANNELS: u64 = 2;

/// The memory a render holds at its peak, by what holds it. An upper bound of the live heap
/// bytes the render allocates, from the request to its last block: on every fixture genome it
/// is at least the measured peak and within 1.5 times it plus 1 MiB (engine/tests/
/// memory_estimate.rs counts the allocations).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemoryEstimate {
    /// Raw network outputs evaluated whole, alive while the graph is built.
    pub whole_outputs: u64,
    /// Convolvers' impulse responses, their spectra and their input spectra.
    pub convolvers: u64,
    /// Wave-shaper curves and buffers held whole.
    pub whole_arrays: u64,
    /// Lazily filled arrays: a window each, or the whole duration where a reader reads at
    /// another rate than the block clock.
    pub lazy: u64,
    pub delays: u64,
    /// The graph's nodes and what every render holds.
    pub fixed: u64,
}

impl MemoryEstimate {
    fn of(web: &WebGraph, timeline: Timeline, eager: bool) -> MemoryEstimate {
        use crate::patch::graph::{Kind, Samples};
        use crate::patch::synthis::Source;
        let frames = timeline.frames as u64;
        let array = frames * 4;
        let mut e = MemoryEstimate {
            fixed: BASE_BYTES + NODE_BYTES * web.nodes.len() as u64,
            ..MemoryEstimate::default()
        };
        let whole = web.whole_samples();
        let mut raw_whole: Vec<usize> = Vec::new();
        let raw = |s: &Samples, into: &mut Vec<usize>| {
            let mut s = s;
            while let Samples::WavetableGain { mix, .. } = s {
                s = mix;
            }
            if let Samples::Output { output, .. } = s {
                if !into.contains(output) {
                    into.push(*output);
                }
            }
        };
        // What the lazy arrays are derived from, and the arrays nodes read.
        let mut lazy_samples: Vec<&Samples> = Vec::new();
        let mut lazy_raw: Vec<usize> = Vec::new();
        for node in &web.nodes {
            match &node.kind {
                Kind::Convolver { buffer: Some(s) } => {
                    raw(s, &mut raw_whole);
                    e.convolvers += (frames as f64 * CONVOLVER_BYTES_PER_FRAME) as u64;
                }
                Kind::WaveShaper { curve: Some(s) } => {
                    raw(s, &mut raw_whole);
                    e.whole_arrays += array;
                }
                Kind::BufferSource { buffer: Some(s) } if whole.contains(s) => {
                    raw(s, &mut raw_whole);
                    e.whole_arrays += array;
                }
                Kind::BufferSource { buffer: Some(s) } | Kind::Param { curve: Some(s), .. }
                    if !lazy_samples.contains(&s) =>
                {
                    lazy_samples.push(s);
                    raw(s, &mut lazy_raw);
                }
                Kind::DelayWriter { max_delay_time, .. } => {
                    let quanta = (max_delay_time * timeline.sample_rate as f64
                        / RENDER_QUANTUM as f64)
                        .ceil() as u64;
                    e.delays += (quanta + 1) * RENDER_QUANTUM as u64 * 4 * DELAY_CHANNELS;
                }
                _ => {}
            }
        }
        let produced = |o: &usize| !matches!(web.outputs[*o].source, Source::Nothing);
        let arrays = (lazy_samples.len() + lazy_raw.iter().filter(|o| produced(o)).count()) as u64;
        if eager {
            // Every output whole, at the CPPN's frames (twice the render's when anti-aliased)
            // until filtered, and every array a node reads a whole copy.
            let outputs = web
                .outputs
                .iter()
                .filter(|o| !matches!(o.source, Source::Nothing));
            let cppn = timeline.cppn_frames() as u64 * 4;
            e.whole_outputs = outputs.count() as u64 * (cppn + array);
            e.lazy = arrays * array;
        } else {
            e.whole_outputs = raw_whole.iter().filter(|o| produced(o)).count() as u64 * array;
            let windowed = web.reads_at_block_clock();
            let each = if windowed {
                (filler::WINDOW as u64 * 4).min(array)
            } else {
                array
            };
            e.lazy = arrays * each;
        }
        e
    }

    /// Bytes at the render's peak: the whole outputs are freed before the first block, the
    /// convolvers' spectra grow to their size only by the last; counting both is at most one
    /// array per whole output too many.
    pub fn total(&self) -> u64 {
        self.whole_outputs
            + self.convolvers
            + self.whole_arrays
            + self.lazy
            + self.delays
            + self.fixed
    }
}

/// The running min and max of normalizeAudioBuffer (`if s < min { min = s }`, and `>` for max,
/// from 0, sample by sample), kept in sixteen independent lanes so that adding samples compiles
/// to vector min/max without a chain of dependent compares, and folded only when asked. Lanes
/// and order do not change the result: NaN never wins a strict comparison, equal values with
/// different bits can only be +0.0 and -0.0, and every lane starts at +0.0 and only moves away
/// from it, so no zero ever replaces the other; every other tie is the same bits.
#[derive(Clone, Copy)]
struct RunningRange {
    low: [f32; LANES],
    high: [f32; LANES],
}

/// Four SSE vectors each for min and max: enough independent chains to hide the latency.
const LANES: usize = 16;

impl Default for RunningRange {
    fn default() -> Self {
        RunningRange {
            low: [0.0; LANES],
            high: [0.0; LANES],
        }
    }
}

impl RunningRange {
    fn add(&mut self, samples: &[f32]) {
        let (lo, hi) = (&mut self.low, &mut self.high);
        let mut keep = |j: usize, s: f32| {
            lo[j] = if s < lo[j] { s } else { lo[j] };
            hi[j] = if s > hi[j] { s } else { hi[j] };
        };
        let chunks = samples.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (j, &s) in chunk.iter().enumerate() {
                keep(j, s);
            }
        }
        for (j, &s) in rest.iter().enumerate() {
            keep(j, s);
        }
    }

    fn min_max(&self) -> (f32, f32) {
        let fold = |lanes: &[f32; LANES], wins: fn(f32, f32) -> bool| {
            lanes[1..]
                .iter()
                .fold(lanes[0], |m, &s| if wins(s, m) { s } else { m })
        };
        (
            fold(&self.low, |s, m| s < m),
            fold(&self.high, |s, m| s > m),
        )
    }
}

/// Renders the whole request. With `normalize`, applies the original's batch normalization
/// (affine rescale of [min, max] to [-1, 1] only when a sample leaves [-1, 1]).
pub fn render_batch(
    genome: &CompiledGenome,
    request: &RenderRequest,
    normalize: bool,
) -> Result<Vec<f32>, Error> {
    render_batch_with(genome, request, normalize, &CppnBackend::Cpu)
}

/// [`render_batch`] with the CPPN outputs evaluated by `backend`.
pub fn render_batch_with(
    genome: &CompiledGenome,
    request: &RenderRequest,
    normalize: bool,
    backend: &CppnBackend,
) -> Result<Vec<f32>, Error> {
    let mut render = Render::with_cppn(genome, request, backend)?;
    let mut out = Vec::with_capacity(render.total_frames());
    let mut block = [0.0f32; RENDER_QUANTUM];
    loop {
        let n = render.next_block(&mut block);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&block[..n]);
    }
    if normalize {
        // The render's running min and max are the ones the scan would find.
        let Stats { min, max, .. } = render.stats();
        normalize_in_range(&mut out, min, max);
    }
    Ok(out)
}

/// kromosynth `normalizeAudioBuffer`: only if a sample leaves [-1, 1], every sample is mapped
/// affinely from [min, max] to [-1, 1].
pub fn normalize_like_original(samples: &mut [f32]) {
    // The loop's running min and max, in lanes: a sequential min is a chain of dependent
    // compares, a quarter of a simple genome's whole render time.
    let mut range = RunningRange::default();
    range.add(samples);
    let (min, max) = range.min_max();
    normalize_in_range(samples, min, max);
}

/// [`normalize_like_original`] for samples whose running min and max (from 0) are known.
fn normalize_in_range(samples: &mut [f32], min: f32, max: f32) {
    if min < -1.0 || max > 1.0 {
        let (min, max) = (min as f64, max as f64);
        for s in samples.iter_mut() {
            // remapNumberToRange(s, min, max, -1, 1)
            *s = ((*s as f64 - min) / (max - min) * (1.0 - -1.0) + -1.0) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunningRange;

    /// normalizeAudioBuffer's loop, sample by sample.
    fn sequential(samples: &[f32]) -> (f32, f32) {
        let (mut min, mut max) = (0.0f32, 0.0f32);
        for &s in samples {
            if s < min {
                min = s;
            }
            if s > max {
                max = s;
            }
        }
        (min, max)
    }

    #[test]
    fn running_range_equals_the_sequential_loop_bit_for_bit() {
        let mut x = 0x9e37_79b9_u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let specials = [
            f32::NAN,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
            -1e-40,
        ];
        for len in 0..=400 {
            // Every third one only zeros, NaN and positive values, so that the min is a zero
            // and which zero it is decides the test; the others half specials or a few.
            let (special_share, only_zeros) = [(2, false), (8, false), (2, true)][len % 3];
            let samples: Vec<f32> = (0..len)
                .map(|_| match next() % special_share {
                    0 if only_zeros => specials[(next() % 3) as usize],
                    0 => specials[(next() % 7) as usize],
                    _ if only_zeros => next() as f32 / u32::MAX as f32,
                    _ => (next() as f32 / u32::MAX as f32 - 0.5) * 4.0,
                })
                .collect();
            // Added in uneven pieces, as blocks of any length arrive.
            let mut range = RunningRange::default();
            let mut rest = &samples[..];
            while !rest.is_empty() {
                let take = (1 + next() as usize % 130).min(rest.len());
                range.add(&rest[..take]);
                rest = &rest[take..];
            }
            let (a, b) = (range.min_max(), sequential(&samples));
            assert_eq!(
                (a.0.to_bits(), a.1.to_bits()),
                (b.0.to_bits(), b.1.to_bits()),
                "{samples:?}"
            );
        }
    }
}
