//! The runtime audio graph: processors, buses and the processing order for one render.
//!
//! Built from a [`WebGraph`] once per render (allocation happens here), then driven one block at
//! a time by [`AudioGraph::render_block`], which allocates nothing: every bus, param buffer and
//! delay line exists before the first block.
//!
//! Per block, nodes run in web-audio-api's order ([`super::order`]). There each node adds its
//! output into its targets' inputs right after it runs; here a node sums its sources' outputs
//! into one shared input bus right before it runs, in the same order (sources in processing
//! order, each one's edges in insertion order), which is the same float additions in the same
//! sequence: the order is topological, so every source has run, this block, by then. One input
//! bus per render instead of one per node (3 KiB each; a genome has dozens of nodes).

use crate::dsp::biquad::{Biquad, BiquadType};
use crate::dsp::buffer_source::BufferSource;
use crate::dsp::compressor::Compressor;
use crate::dsp::convolver::Convolver;
use crate::dsp::delay::Delay;
use crate::dsp::gain::Gain;
use crate::dsp::oscillator::{Oscillator, OscillatorType};
use crate::dsp::param::{self, Param};
use crate::dsp::waveshaper::WaveShaper;
use crate::dsp::{
    Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation, ParamDescriptor, Processor, Scope,
    RENDER_QUANTUM, SAMPLE_RATE,
};
use crate::patch::graph::{Kind, Samples, WebGraph};
use crate::RenderError;

use super::order::{order, Topology};
use super::samples::Resolver;

/// Most params any node has (the compressor's five).
const MAX_PARAMS: usize = 5;

/// The destination of a 2-channel OfflineAudioContext, as the reference renders used.
const DESTINATION_CONFIG: ChannelConfig = ChannelConfig {
    count: 2,
    mode: ChannelCountMode::Explicit,
    interpretation: ChannelInterpretation::Speakers,
};

/// Each ChannelMerger input: one channel, explicit, speakers (Web Audio).
const MERGER_INPUT_CONFIG: ChannelConfig = ChannelConfig {
    count: 1,
    mode: ChannelCountMode::Explicit,
    interpretation: ChannelInterpretation::Speakers,
};

/// kromosynth's mergers keep the Web Audio default of 6 inputs, so 6 output channels.
const MERGER_CHANNELS: usize = 6;

enum Proc {
    Destination,
    Merger,
    Param(Param),
    Node(Box<dyn Processor>),
    /// Index into `AudioGraph::delays`.
    DelayWriter(usize),
    DelayReader(usize),
    /// A node that only ever outputs silence (a buffer source without a buffer).
    Silent,
}

struct Node {
    proc: Proc,
    config: ChannelConfig,
    /// Sources of the audio edges into this node, one entry per edge, in the order
    /// web-audio-api adds them (param-owner edges are implicit in `params`).
    sources: Vec<usize>,
    /// Param node ids in the processor's PARAMS order.
    params: Vec<usize>,
}

/// A render's audio graph, ready to render blocks.
pub struct AudioGraph {
    nodes: Vec<Node>,
    order: Vec<usize>,
    /// The input of the node being processed.
    input: Bus,
    outputs: Vec<Bus>,
    /// Param node values of the current block and how many are valid (1 or 128).
    param_values: Vec<[f32; RENDER_QUANTUM]>,
    param_len: Vec<usize>,
    delays: Vec<Delay>,
}

fn oscillator_type(name: &str) -> OscillatorType {
    // An unknown type string leaves the Web Audio default, as a JS enum assignment would.
    match name {
        "square" => OscillatorType::Square,
        "sawtooth" => OscillatorType::Sawtooth,
        "triangle" => OscillatorType::Triangle,
        _ => OscillatorType::Sine,
    }
}

fn biquad_type(name: &str) -> BiquadType {
    match name {
        "highpass" => BiquadType::Highpass,
        "bandpass" => BiquadType::Bandpass,
        "lowshelf" => BiquadType::Lowshelf,
        "highshelf" => BiquadType::Highshelf,
        "peaking" => BiquadType::Peaking,
        "notch" => BiquadType::Notch,
        "allpass" => BiquadType::Allpass,
        _ => BiquadType::Lowpass,
    }
}

/// The descriptor of param `name` in a processor's PARAMS.
fn descriptor(params: &[ParamDescriptor], name: &str) -> ParamDescriptor {
    *params
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no param {name}"))
}

/// How far ahead of the block clock a buffer source may read, as a factor on the frame: its
/// rate (at least 1) with a little margin for rounding; `None` when the rate can change during
/// the render.
fn buffer_read_rate(graph: &WebGraph, id: usize) -> Option<f64> {
    buffer_rate(graph, id).map(|r| r.max(1.0) * 1.001)
}

/// Whether every lazily filled array of `graph` is read exactly at the block clock (value
/// curves, and buffers played at rate 1), so that a window of recent samples is enough.
pub fn reads_at_block_clock(graph: &WebGraph) -> bool {
    graph
        .nodes
        .iter()
        .enumerate()
        .all(|(id, node)| match &node.kind {
            Kind::BufferSource { buffer: Some(_) } => {
                buffer_rate(graph, id).is_none_or(|r| r == 1.0)
            }
            _ => true,
        })
}

/// A buffer source's playback rate when it is fixed before rendering (constant playbackRate
/// and detune with nothing connected into them); `None` when it can change during the render.
fn buffer_rate(graph: &WebGraph, id: usize) -> Option<f64> {
    let (mut rate, mut detune) = (1.0f64, 0.0f64);
    for &p in &graph.nodes[id].params {
        let Kind::Param {
            name, value, curve, ..
        } = &graph.nodes[p].kind
        else {
            continue;
        };
        let driven = graph.nodes.iter().any(|n| {
            n.outgoing
                .iter()
                .any(|e| e.target == p && !e.to_param_owner)
        });
        if curve.is_some() || driven {
            return None;
        }
        match (*name, value) {
            ("playbackRate", Some(v)) => rate = *v as f64,
            ("detune", Some(v)) => detune = *v as f64,
            _ => {}
        }
    }
    // computedPlaybackRate = playbackRate * 2^(detune / 1200)
    let r = (rate * (detune / 1200.0).exp2()).abs();
    r.is_finite().then_some(r)
}

/// The samples some node of `graph` needs complete before the first block: convolver impulse
/// responses and wave-shaper curves (taken at construction), and buffers that a source may read
/// at a rate only known while rendering.
pub fn whole_samples(graph: &WebGraph) -> Vec<Samples> {
    let mut whole = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        match &node.kind {
            Kind::Convolver { buffer: Some(s) } | Kind::WaveShaper { curve: Some(s) } => {
                whole.push(s.clone())
            }
            Kind::BufferSource { buffer: Some(s) } if buffer_read_rate(graph, id).is_none() => {
                whole.push(s.clone())
            }
            _ => {}
        }
    }
    whole
}

impl AudioGraph {
    /// Instantiates `graph` for a render of `duration` seconds with the resolved samples.
    pub fn new(
        graph: &WebGraph,
        resolver: &mut Resolver,
        duration: f64,
    ) -> Result<AudioGraph, RenderError> {
        let n = graph.nodes.len();
        let mut delays: Vec<Delay> = Vec::new();
        let mut delay_of_writer: Vec<Option<usize>> = vec![None; n];
        let mut procs: Vec<Option<Proc>> = (0..n).map(|_| None).collect();
        let mut configs = vec![ChannelConfig::DEFAULT; n];
        // PARAMS of each node's processor, to order and describe its param nodes.
        let mut node_params: Vec<&'static [ParamDescriptor]> = vec![&[]; n];
        let whole = |s: &Option<Samples>, resolver: &mut Resolver| -> Option<Vec<f32>> {
            s.as_ref().and_then(|s| resolver.resolve_whole(s))
        };

        for (id, node) in graph.nodes.iter().enumerate() {
            let (proc, config, params): (Proc, ChannelConfig, &'static [ParamDescriptor]) =
                match &node.kind {
                    Kind::Destination => (Proc::Destination, DESTINATION_CONFIG, &[]),
                    Kind::Gain => (
                        Proc::Node(Box::new(Gain::new())),
                        Gain::channel_config(),
                        Gain::PARAMS,
                    ),
                    Kind::Oscillator { waveform } => (
                        Proc::Node(Box::new(Oscillator::new(oscillator_type(waveform)))),
                        Oscillator::channel_config(),
                        Oscillator::PARAMS,
                    ),
                    Kind::BiquadFilter { filter } => (
                        Proc::Node(Box::new(Biquad::new(biquad_type(filter)))),
                        Biquad::channel_config(),
                        Biquad::PARAMS,
                    ),
                    Kind::DelayWriter { max_delay_time, .. } => {
                        delays.push(Delay::new(*max_delay_time, SAMPLE_RATE));
                        delay_of_writer[id] = Some(delays.len() - 1);
                        (
                            Proc::DelayWriter(delays.len() - 1),
                            Delay::channel_config(),
                            &[],
                        )
                    }
                    Kind::DelayReader { writer, .. } => {
                        let d = delay_of_writer[*writer].expect("writer precedes reader");
                        (Proc::DelayReader(d), ChannelConfig::DEFAULT, Delay::PARAMS)
                    }
                    Kind::DynamicsCompressor => (
                        Proc::Node(Box::new(Compressor::new(SAMPLE_RATE))),
                        Compressor::channel_config(),
                        Compressor::PARAMS,
                    ),
                    Kind::Convolver { buffer } => {
                        let ir = whole(buffer, resolver);
                        (
                            Proc::Node(Box::new(Convolver::new(ir, true, SAMPLE_RATE))),
                            Convolver::channel_config(),
                            Convolver::PARAMS,
                        )
                    }
                    Kind::WaveShaper { curve } => {
                        let curve = whole(curve, resolver);
                        (
                            Proc::Node(Box::new(WaveShaper::new(curve))),
                            WaveShaper::channel_config(),
                            WaveShaper::PARAMS,
                        )
                    }
                    Kind::BufferSource { buffer } => {
                        let rate = buffer_read_rate(graph, id).unwrap_or(1.0);
                        let samples = buffer.as_ref().and_then(|s| resolver.resolve(s, rate));
                        let proc = match samples {
                            Some(b) => Proc::Node(Box::new(BufferSource::new(b, SAMPLE_RATE))),
                            None => Proc::Silent,
                        };
                        (proc, BufferSource::channel_config(), BufferSource::PARAMS)
                    }
                    Kind::ChannelMerger => (Proc::Merger, MERGER_INPUT_CONFIG, &[]),
                    Kind::Param { .. } => continue,
                };
            procs[id] = Some(proc);
            configs[id] = config;
            node_params[id] = params;
        }

        // Params: described by their owner's processor, set up as web-audio-api does: the
        // constructor's set_value(default), then the graph's value or curve.
        for (id, node) in graph.nodes.iter().enumerate() {
            let Kind::Param {
                owner,
                name,
                value,
                curve,
            } = &node.kind
            else {
                continue;
            };
            let desc = match &graph.nodes[*owner].kind {
                Kind::DelayReader { max_delay_time, .. } => Delay::params(*max_delay_time)[0],
                _ => descriptor(node_params[*owner], name),
            };
            let mut p = Param::new(desc);
            let err = |e: param::AutomationError| {
                RenderError(format!("cannot automate param {name}: {e}"))
            };
            p.set_value(desc.default_value).map_err(err)?;
            if let Some(v) = value {
                p.set_value(*v).map_err(err)?;
            }
            if let Some(c) = curve {
                if let Some(values) = resolver.resolve(c, 1.0) {
                    p.set_value_curve_at_time(values, 0.0, duration)
                        .map_err(err)?;
                }
            }
            procs[id] = Some(Proc::Param(p));
            configs[id] = param::INPUT_CHANNEL_CONFIG;
        }

        let mut topology = Topology {
            outgoing: graph
                .nodes
                .iter()
                .map(|n| n.outgoing.iter().map(|e| e.target).collect())
                .collect(),
            cycle_breaker: graph
                .nodes
                .iter()
                .map(|n| matches!(n.kind, Kind::DelayWriter { .. }))
                .collect(),
        };
        let ordering = order(&mut topology);

        // Edges the ordering dropped (cycle-breaking writers) carry no audio; the param-owner
        // edges are consumed through `params`.
        let targets = |id: usize| {
            topology.outgoing[id]
                .iter()
                .copied()
                .filter(move |_| !matches!(graph.nodes[id].kind, Kind::Param { .. }))
        };
        let mut position = vec![usize::MAX; n];
        for (k, &id) in ordering.ordered.iter().enumerate() {
            position[id] = k;
        }
        let mut sources: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &id in &ordering.ordered {
            for t in targets(id) {
                if position[t] == usize::MAX {
                    continue; // muted: never runs
                }
                if position[t] < position[id] {
                    return Err(RenderError(format!(
                        "internal: node {t} runs before its source {id}"
                    )));
                }
                sources[t].push(id);
            }
        }
        let nodes = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(id, node)| {
                // Param nodes are listed in the order their owner's processor expects.
                let params = node_params[id]
                    .iter()
                    .map(|d| {
                        node.params
                            .iter()
                            .copied()
                            .find(|&p| {
                                matches!(&graph.nodes[p].kind, Kind::Param { name, .. } if *name == d.name)
                            })
                            .expect("param node for every descriptor")
                    })
                    .collect();
                Node {
                    proc: procs[id].take().expect("every node instantiated"),
                    config: configs[id],
                    sources: std::mem::take(&mut sources[id]),
                    params,
                }
            })
            .collect();

        Ok(AudioGraph {
            nodes,
            order: ordering.ordered,
            input: Bus::silent(),
            outputs: (0..n).map(|_| Bus::silent()).collect(),
            param_values: vec![[0.0; RENDER_QUANTUM]; n],
            param_len: vec![1; n],
            delays,
        })
    }

    /// Renders one block starting at `frame` and writes channel 0 of the destination to `out`.
    pub fn render_block(&mut self, frame: u64, out: &mut [f32; RENDER_QUANTUM]) {
        let scope = Scope {
            frame,
            sample_rate: SAMPLE_RATE,
        };
        for k in 0..self.order.len() {
            let id = self.order[k];
            let node = &mut self.nodes[id];
            let input = &mut self.input;
            input.make_silent();
            for &source in &node.sources {
                input.add(&self.outputs[source], &node.config);
            }
            match &mut node.proc {
                Proc::Destination => {
                    self.outputs[id].copy_from(input);
                }
                Proc::Merger => {
                    let out = &mut self.outputs[id];
                    out.make_silent();
                    out.set_number_of_channels(MERGER_CHANNELS);
                    if !input.is_silent() {
                        out.channel_mut(0).copy_from_slice(input.channel(0));
                    }
                }
                Proc::Param(p) => {
                    self.param_len[id] = p.compute(&scope, input, &mut self.param_values[id]);
                }
                Proc::Node(proc) => {
                    let mut slices: [&[f32]; MAX_PARAMS] = [&[]; MAX_PARAMS];
                    for (slot, &p) in slices.iter_mut().zip(&node.params) {
                        *slot = &self.param_values[p][..self.param_len[p]];
                    }
                    proc.process(
                        input,
                        &slices[..node.params.len()],
                        &mut self.outputs[id],
                        &scope,
                    );
                }
                Proc::DelayWriter(d) => {
                    self.delays[*d].write(input, &scope);
                }
                Proc::DelayReader(d) => {
                    let p = node.params[0];
                    let slices: [&[f32]; 1] = [&self.param_values[p][..self.param_len[p]]];
                    self.delays[*d].read(&slices, &mut self.outputs[id], &scope);
                }
                Proc::Silent => {}
            }
        }
        let dest = &self.outputs[crate::patch::graph::DESTINATION];
        out.copy_from_slice(dest.channel(0));
    }
}
