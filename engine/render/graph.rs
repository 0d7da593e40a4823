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
//! sequence: the order is topological, so every source has run, this block, by then. So a
//! render needs one input bus, not one per node, and output buses only for the outputs still
//! to be read at any point of the order ([`assign_output_buses`]): a bus is 3 KiB and a genome
//! has dozens of nodes (89P1: 36 nodes, 4 output buses, the silent one included).

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
    RENDER_QUANTUM,
};
use crate::error::Error;
use crate::patch::graph::{Kind, Samples, WebGraph};

use super::order::{order, Topology};
use super::resolver::Resolver;

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
    /// The param and its slot in `AudioGraph::param_values`.
    Param(Param, usize),
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
    /// Output buses of the sources of the audio edges into this node, one entry per edge, in
    /// the order web-audio-api adds them (param-owner edges are implicit in `params`).
    sources: Vec<usize>,
    /// This node's output bus: [`SILENT_BUS`] for nodes that never write one.
    output: usize,
    /// `param_values` slots of the param nodes, in the processor's PARAMS order.
    params: Vec<usize>,
}

/// The output bus of nodes that write none (params, delay writers, silent and muted nodes):
/// never written, so it reads as the silence those outputs are.
const SILENT_BUS: usize = 0;

/// Output buses for the nodes of `order`: a node's bus is live from when it runs until its
/// last consumer has summed it, and then goes to a later node. web-audio-api keeps one per
/// node; sharing gives the same samples because every processor writes its whole output
/// (channel count, flags and data) from its own state, input and params, never from what its
/// output bus held before, and every consumer reads a source's output of the current block.
/// Returns each node's bus and the number of buses (at most the number of nodes plus one).
fn assign_output_buses(
    order: &[usize],
    sources: &[Vec<usize>],
    writes_output: &[bool],
) -> (Vec<usize>, usize) {
    let n = sources.len();
    let mut last_use: Vec<Option<usize>> = vec![None; n];
    for (k, &id) in order.iter().enumerate() {
        for &s in &sources[id] {
            last_use[s] = Some(k);
        }
    }
    let mut bus = vec![SILENT_BUS; n];
    let mut freed = vec![false; n];
    let mut free: Vec<usize> = Vec::new();
    let mut count = SILENT_BUS + 1;
    for (k, &id) in order.iter().enumerate() {
        if writes_output[id] {
            bus[id] = free.pop().unwrap_or_else(|| {
                count += 1;
                count - 1
            });
        }
        // Sources whose last consumer this is are done once it has run, so their buses go
        // to later nodes, never to this one: a node may read its source's bus in place while
        // it writes its own (see `AudioGraph::render_block`).
        for &s in &sources[id] {
            if last_use[s] == Some(k) && bus[s] != SILENT_BUS && !freed[s] {
                freed[s] = true;
                free.push(bus[s]);
            }
        }
        // Read by nobody: free right away.
        if writes_output[id] && last_use[id].is_none() {
            freed[id] = true;
            free.push(bus[id]);
        }
    }
    (bus, count)
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
    /// The context's rate, as web-audio-api hands it to every node (f32).
    sample_rate: f32,
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

impl AudioGraph {
    /// Instantiates `graph` for a render of `duration` seconds at `sample_rate` with the
    /// resolved samples.
    pub fn new(
        graph: &WebGraph,
        resolver: &mut Resolver,
        duration: f64,
        sample_rate: u32,
    ) -> Result<AudioGraph, Error> {
        let rate = sample_rate as f32;
        let n = graph.nodes.len();
        let mut delays: Vec<Delay> = Vec::new();
        let mut delay_of_writer: Vec<Option<usize>> = vec![None; n];
        let mut procs: Vec<Option<Proc>> = (0..n).map(|_| None).collect();
        // Param nodes' slots in `param_values`, in creation order.
        let mut value_slot = vec![usize::MAX; n];
        let mut values = 0;
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
                        delays.push(Delay::new(*max_delay_time, rate));
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
                        Proc::Node(Box::new(Compressor::new(rate))),
                        Compressor::channel_config(),
                        Compressor::PARAMS,
                    ),
                    Kind::Convolver { buffer } => {
                        let ir = whole(buffer, resolver);
                        (
                            Proc::Node(Box::new(Convolver::new(ir, true, rate))),
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
                        let read_rate = graph.buffer_read_rate(id).unwrap_or(1.0);
                        let samples = buffer.as_ref().and_then(|s| resolver.resolve(s, read_rate));
                        let proc = match samples {
                            Some(b) => Proc::Node(Box::new(BufferSource::new(b, rate))),
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
                // Their frequency ranges end at the context's Nyquist frequency.
                Kind::Oscillator { .. } => descriptor(&Oscillator::params_at(rate), name),
                Kind::BiquadFilter { .. } => descriptor(&Biquad::params_at(rate), name),
                _ => descriptor(node_params[*owner], name),
            };
            let mut p = Param::new(desc);
            let err =
                |e: param::AutomationError| Error(format!("cannot automate param {name}: {e}"));
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
            value_slot[id] = values;
            procs[id] = Some(Proc::Param(p, values));
            values += 1;
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
                    return Err(Error(format!(
                        "internal: node {t} runs before its source {id}"
                    )));
                }
                sources[t].push(id);
            }
        }
        let writes_output: Vec<bool> = procs
            .iter()
            .map(|p| matches!(p, Some(Proc::Merger | Proc::Node(_) | Proc::DelayReader(_))))
            .collect();
        let (output_bus, buses) = assign_output_buses(&ordering.ordered, &sources, &writes_output);
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
                    .map(|p| value_slot[p])
                    .collect();
                Node {
                    proc: procs[id].take().expect("every node instantiated"),
                    params,
                    config: configs[id],
                    sources: sources[id].iter().map(|&s| output_bus[s]).collect(),
                    output: output_bus[id],
                }
            })
            .collect();

        Ok(AudioGraph {
            nodes,
            order: ordering.ordered,
            input: Bus::silent(),
            outputs: (0..buses).map(|_| Bus::silent()).collect(),
            param_values: vec![[0.0; RENDER_QUANTUM]; values],
            param_len: vec![1; values],
            delays,
            sample_rate: rate,
        })
    }

    /// Renders one block starting at `frame` and writes channel 0 of the destination to `out`.
    pub fn render_block(&mut self, frame: u64, out: &mut [f32; RENDER_QUANTUM]) {
        let scope = Scope {
            frame,
            sample_rate: self.sample_rate,
        };
        for k in 0..self.order.len() {
            let id = self.order[k];
            let node = &mut self.nodes[id];
            // A node with one source that its input would copy unchanged reads it in place.
            let (input, output) = match node.sources[..] {
                [source]
                    if source != node.output
                        && self.outputs[source].is_input_unchanged(&node.config) =>
                {
                    let [source, output] = self
                        .outputs
                        .get_disjoint_mut([source, node.output])
                        .expect("a node's bus differs from its source's");
                    (&*source, output)
                }
                _ => {
                    let input = &mut self.input;
                    input.make_silent();
                    for &source in &node.sources {
                        input.add(&self.outputs[source], &node.config);
                    }
                    (&*input, &mut self.outputs[node.output])
                }
            };
            match &mut node.proc {
                Proc::Destination => {
                    // The render is channel 0 of what the destination sums; no bus of its own.
                    out.copy_from_slice(input.channel(0));
                }
                Proc::Merger => {
                    output.make_silent();
                    output.set_number_of_channels(MERGER_CHANNELS);
                    if !input.is_silent() {
                        output.channel_mut(0).copy_from_slice(input.channel(0));
                    }
                }
                Proc::Param(p, slot) => {
                    self.param_len[*slot] = p.compute(&scope, input, &mut self.param_values[*slot]);
                }
                Proc::Node(proc) => {
                    let mut slices: [&[f32]; MAX_PARAMS] = [&[]; MAX_PARAMS];
                    for (slice, &p) in slices.iter_mut().zip(&node.params) {
                        *slice = &self.param_values[p][..self.param_len[p]];
                    }
                    proc.process(input, &slices[..node.params.len()], output, &scope);
                }
                Proc::DelayWriter(d) => {
                    self.delays[*d].write(input, &scope);
                }
                Proc::DelayReader(d) => {
                    let p = node.params[0];
                    let slices: [&[f32]; 1] = [&self.param_values[p][..self.param_len[p]]];
                    self.delays[*d].read(&slices, output, &scope);
                }
                Proc::Silent => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random DAGs (node ids in topological order) checked against
    /// the liveness rule: a bus is written again only once every consumer of its previous
    /// output has read it.
    #[test]
    fn shared_output_buses_are_never_overwritten_while_still_needed() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        for _ in 0..500 {
            let n = 2 + next(30);
            // Run order: n-1, n-2, ..., 0; edges go to lower ids.
            let order: Vec<usize> = (0..n).rev().collect();
            let mut sources = vec![Vec::new(); n];
            for (t, into) in sources.iter_mut().enumerate().take(n - 1) {
                for _ in 0..next(4) {
                    into.push(t + 1 + next(n - 1 - t)); // repeated edges too
                }
            }
            let writes: Vec<bool> = (0..n).map(|_| next(5) > 0).collect();
            let (bus, count) = assign_output_buses(&order, &sources, &writes);
            assert!(count <= n + 1);
            let position = |id: usize| n - 1 - id;
            let last_read = |id: usize| {
                (0..n)
                    .filter(|&t| sources[t].contains(&id))
                    .map(position)
                    .max()
                    .unwrap_or(position(id))
            };
            for i in 0..n {
                if !writes[i] {
                    assert_eq!(bus[i], SILENT_BUS, "node {i} writes nothing");
                    continue;
                }
                assert_ne!(bus[i], SILENT_BUS, "node {i} writes into the silent bus");
                for j in 0..n {
                    let later = position(j) > position(i);
                    if j != i && writes[j] && bus[j] == bus[i] && later {
                        assert!(
                            position(j) > last_read(i),
                            "node {j} overwrites node {i}'s output before it is read, or while"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_chain_needs_two_buses_whatever_its_length() {
        // 9 -> 8 -> ... -> 1 -> 0
        let n = 10;
        let order: Vec<usize> = (0..n).rev().collect();
        let sources: Vec<Vec<usize>> = (0..n)
            .map(|t| if t + 1 < n { vec![t + 1] } else { vec![] })
            .collect();
        let (bus, count) = assign_output_buses(&order, &sources, &vec![true; n]);
        // The silent bus plus two: each node takes over its source's source's bus.
        assert_eq!(count, 3);
        assert!((0..n - 1).all(|t| bus[t] != bus[t + 1]));
    }
}
