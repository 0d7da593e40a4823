//! Resolving the graph's `Samples` descriptions to the arrays its nodes read: what a node needs
//! whole is evaluated now, everything else becomes a lazily filled array for the [`Filler`].

use std::sync::Arc;

use crate::dsp::sample_array::SampleArray;
use crate::gpu::CppnBackend;
use crate::patch::graph::{Samples, WebGraph};
use crate::patch::synthis::{NetworkOutput, Source};

use super::filler::{Derivation, Derived, Filler, LazyGroup, Signal, WINDOW};
use super::outputs::{evaluate_outputs, evaluate_outputs_with, groups, remap};
use super::outputs::{Cppns, NoiseGen, Timeline, WaveSpan, WholeOutputs};

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
    timeline: Timeline,
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
        timeline: Timeline,
        velocity: f64,
        seed: u64,
        backend: &CppnBackend,
    ) -> Self {
        // The GPU evaluates everything whole, in one submission: there the whole CPPN costs
        // less than the round trips of chunked evaluation would.
        if matches!(backend, CppnBackend::Gpu(_)) {
            let outputs = &graph.outputs[..];
            let whole = evaluate_outputs_with(cppns, outputs, timeline, velocity, seed, backend);
            return Resolver::lazy(cppns, outputs, timeline, velocity, seed, whole, false)
                .into_eager();
        }
        let whole = Resolver::whole_outputs(cppns, graph, timeline, velocity, seed).run();
        Resolver::with_whole(cppns, graph, timeline, velocity, seed, whole)
    }

    /// The outputs that [`Resolver::with_whole`] needs evaluated on the CPU, for a caller
    /// that evaluates them in pieces. Anti-aliased outputs are all whole: the filter runs
    /// through each output in order, so it cannot be filled in the pieces that the lazy
    /// fills evaluate in parallel.
    pub fn whole_outputs(
        cppns: &Cppns,
        graph: &WebGraph,
        timeline: Timeline,
        velocity: f64,
        seed: u64,
    ) -> WholeOutputs {
        let mut wanted: Vec<usize> = Vec::new();
        if timeline.anti_aliasing {
            wanted.extend(0..graph.outputs.len());
        } else {
            for s in graph.whole_samples() {
                raw_outputs(&s, &mut wanted);
            }
            wanted.sort_unstable();
            wanted.dedup();
        }
        WholeOutputs::new(cppns, &graph.outputs, &wanted, timeline, velocity, seed)
    }

    /// The resolver, given [`Resolver::whole_outputs`] evaluated.
    pub fn with_whole(
        cppns: &'a Cppns,
        graph: &'a WebGraph,
        timeline: Timeline,
        velocity: f64,
        seed: u64,
        whole: Vec<Option<Arc<Vec<f32>>>>,
    ) -> Self {
        let outputs = &graph.outputs[..];
        if timeline.anti_aliasing {
            return Resolver::lazy(cppns, outputs, timeline, velocity, seed, whole, false)
                .into_eager();
        }
        let windowed = graph.reads_at_block_clock();
        Resolver::lazy(cppns, outputs, timeline, velocity, seed, whole, windowed)
    }

    /// `whole` evaluated, everything else lazily.
    fn lazy(
        cppns: &'a Cppns,
        outputs: &'a [NetworkOutput],
        timeline: Timeline,
        velocity: f64,
        seed: u64,
        whole: Vec<Option<Arc<Vec<f32>>>>,
        windowed: bool,
    ) -> Self {
        Resolver {
            whole,
            lazy: vec![None; outputs.len()],
            cppns,
            outputs,
            timeline,
            frames: timeline.frames,
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

    /// Every output was evaluated whole: none is lazy.
    fn into_eager(mut self) -> Self {
        self.eager = true;
        self
    }

    /// A resolver that computes everything whole (for oracles and tests).
    pub fn eager(
        cppns: &'a Cppns,
        outputs: &'a [NetworkOutput],
        timeline: Timeline,
        velocity: f64,
        seed: u64,
    ) -> Self {
        let whole = evaluate_outputs(cppns, outputs, timeline, velocity, seed);
        Resolver::lazy(cppns, outputs, timeline, velocity, seed, whole, false).into_eager()
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
                periods: self.timeline.input_periods(group.frequency),
                indices,
                signals,
            });
        }
        let noise: Vec<(NoiseGen, Signal)> = self
            .noise
            .iter()
            .filter_map(|(generator, array)| Some((generator.clone(), tree(array)?)))
            .collect();
        Filler::new(
            self.frames,
            self.velocity,
            self.read_ahead,
            self.windowed,
            lazy_groups,
            noise,
        )
    }
}
