//! synth.is patch + request -> the flat Web Audio graph the original would build.
//!
//! This mirrors kromosynth's `Renderer.getNodeGraphFromPatch` (value curves, wavetable /
//! additive / feedbackDelay custom nodes, oscillator noteDelta, dangling-connection cleanup)
//! followed by virtual-audio-graph 1.6's `update` (nodes created in JS key order, custom
//! nodes' children created and wired first, then every connection in key order), and
//! web-audio-api 1.1.0's node construction (each node's AudioParams are nodes of their own,
//! created right after it; a DelayNode is a writer and a reader). The result lists nodes in
//! web-audio-api id order with edges in insertion order: exactly what its graph needs to
//! reproduce its processing order, and therefore its float summation order.

use super::synthis::{NetworkOutput, NodeType, Output, Prop, Source, SynthIsPatch};
use crate::error::Error;
use crate::js_object::JsObject;

/// Samples a node or param gets from the CPPN side, evaluated by the render.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    /// Network output `output` (index into [`WebGraph::outputs`]), remapped from [-1, 1] to
    /// `range` when given (kromosynth remaps every connection that carries a range).
    Output {
        output: usize,
        range: Option<[f64; 2]>,
    },
    /// Wavetable gain curve `index` of `count`, computed from the mix samples.
    WavetableGain {
        mix: Box<Samples>,
        index: usize,
        count: usize,
    },
}

/// Web Audio node kinds, as web-audio-api registers them.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Destination,
    Gain,
    Oscillator {
        waveform: String,
    },
    BiquadFilter {
        filter: String,
    },
    /// The input half of a DelayNode; `reader` is its partner.
    DelayWriter {
        reader: usize,
        max_delay_time: f64,
    },
    DelayReader {
        writer: usize,
        max_delay_time: f64,
    },
    DynamicsCompressor,
    Convolver {
        buffer: Option<Samples>,
    },
    WaveShaper {
        curve: Option<Samples>,
    },
    BufferSource {
        buffer: Option<Samples>,
    },
    /// A ChannelMerger with the Web Audio default of 6 inputs; kromosynth connects every
    /// input to input 0 (see kromosynth-format.md §2.5).
    ChannelMerger,
    /// An AudioParam of node `owner`.
    Param {
        owner: usize,
        name: &'static str,
        /// `param.value = x` (a JS number stored as f32).
        value: Option<f32>,
        /// `setValueCurveAtTime(curve, 0, duration)`.
        curve: Option<Samples>,
    },
}

/// A graph edge; `to_param_owner` marks the hidden edge from a param to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub target: usize,
    pub to_param_owner: bool,
}

#[derive(Clone, Debug)]
pub struct WebNode {
    pub kind: Kind,
    pub outgoing: Vec<Edge>,
    /// Param node ids, in creation order.
    pub params: Vec<usize>,
}

/// The flat graph: `nodes[i]` has web-audio-api id order `i` (0 is the destination).
#[derive(Clone, Debug)]
pub struct WebGraph {
    pub nodes: Vec<WebNode>,
    /// The network outputs after the noteDelta split; `Samples::Output` indexes these.
    pub outputs: Vec<NetworkOutput>,
}

pub const DESTINATION: usize = 0;

impl WebGraph {
    /// How far ahead of the block clock a buffer source may read, as a factor on the frame: its
    /// rate (at least 1) with a little margin for rounding; `None` when the rate can change during
    /// the render.
    pub fn buffer_read_rate(&self, id: usize) -> Option<f64> {
        self.buffer_rate(id).map(|r| r.max(1.0) * 1.001)
    }

    /// Whether every lazily filled array of the graph is read exactly at the block clock (value
    /// curves, and buffers played at rate 1), so that a window of recent samples is enough.
    pub fn reads_at_block_clock(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(id, node)| match &node.kind {
                Kind::BufferSource { buffer: Some(_) } => {
                    self.buffer_rate(id).is_none_or(|r| r == 1.0)
                }
                _ => true,
            })
    }

    /// A buffer source's playback rate when it is fixed before rendering (constant playbackRate
    /// and detune with nothing connected into them); `None` when it can change during the render.
    fn buffer_rate(&self, id: usize) -> Option<f64> {
        let (mut rate, mut detune) = (1.0f64, 0.0f64);
        for &p in &self.nodes[id].params {
            let Kind::Param {
                name, value, curve, ..
            } = &self.nodes[p].kind
            else {
                continue;
            };
            let driven = self.nodes.iter().any(|n| {
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

    /// The samples some node of the graph needs complete before the first block: convolver impulse
    /// responses and wave-shaper curves (taken at construction), and buffers that a source may read
    /// at a rate only known while rendering.
    pub fn whole_samples(&self) -> Vec<Samples> {
        let mut whole = Vec::new();
        for (id, node) in self.nodes.iter().enumerate() {
            match &node.kind {
                Kind::Convolver { buffer: Some(s) } | Kind::WaveShaper { curve: Some(s) } => {
                    whole.push(s.clone())
                }
                Kind::BufferSource { buffer: Some(s) } if self.buffer_read_rate(id).is_none() => {
                    whole.push(s.clone())
                }
                _ => {}
            }
        }
        whole
    }
}

/// Param names in web-audio-api 1.1.0 creation order, per node kind.
fn param_names(kind: &Kind) -> &'static [&'static str] {
    match kind {
        Kind::Gain => &["gain"],
        Kind::Oscillator { .. } => &["frequency", "detune"],
        Kind::BiquadFilter { .. } => &["Q", "detune", "frequency", "gain"],
        Kind::DelayReader { .. } => &["delayTime"],
        Kind::DynamicsCompressor => &["attack", "knee", "ratio", "release", "threshold"],
        Kind::BufferSource { .. } => &["detune", "playbackRate"],
        _ => &[],
    }
}

/// A value assigned to a node property by the graph definition.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
    /// `['setValueCurveAtTime', curve, 0, duration]` for params; the samples themselves for
    /// `buffer` and `curve`.
    Samples(Samples),
}

/// A virtual-audio-graph definition: a standard node or one of kromosynth's custom nodes.
#[derive(Clone, Debug)]
enum Def {
    Standard {
        node_type: Option<NodeType>,
        asneat_name: String,
        outputs: Vec<Output>,
        props: JsObject<Value>,
    },
    Custom {
        outputs: Vec<Output>,
        children: Vec<Child>,
    },
}

impl Def {
    fn outputs_mut(&mut self) -> &mut Vec<Output> {
        match self {
            Def::Standard { outputs, .. } | Def::Custom { outputs, .. } => outputs,
        }
    }
}

/// A child of a custom node: a standard node whose outputs name siblings or the custom
/// node's own output.
///
/// No child receives the custom node's input. kromosynth marks feedbackDelay's passthroughGain
/// as its 'input', but its graph compiler (1.0.36 `util/audio-graph-compiler.js`) passes only
/// (output, params) to virtual-audio-graph's node factories, so the mark is lost and whatever
/// connects to a custom node never reaches it. The reference renders confirm this.
#[derive(Clone, Debug)]
struct Child {
    key: String,
    node_type: NodeType,
    outputs: Vec<Output>,
    props: JsObject<Value>,
    max_delay_time: Option<f64>,
}

/// Builds the Web Audio graph for one request. `cppn_outputs` is the number of CPPN outputs
/// (output indices at or above it are an error); `transpose_all`: kromosynth
/// `frequencyUpdatesApplyToAllPathcNetworkOutputs` (see [`apply_note_delta`]).
///
/// [`apply_note_delta`]: super::synthis::apply_note_delta
pub fn build(
    patch: &SynthIsPatch,
    note_delta: f64,
    transpose_all: bool,
    cppn_outputs: usize,
) -> Result<WebGraph, Error> {
    let outputs =
        super::synthis::apply_note_delta(&patch.network_outputs, note_delta, transpose_all);
    for o in &outputs {
        if let Source::Cppn(i) = o.source {
            if i >= cppn_outputs {
                return Err(Error(format!(
                    "network output index {i} is out of range: the CPPN has {cppn_outputs} outputs"
                )));
            }
        }
    }
    let value_curves = value_curves(&outputs);
    let mut defs = node_graph(patch, &outputs, &value_curves, note_delta)?;
    cleanup_dangling_connections(&mut defs);
    let nodes = instantiate(&defs)?;
    Ok(WebGraph { nodes, outputs })
}

/// One entry of kromosynth's per-node value-curve map: key (`${output}_${conn}_${param}` or
/// `partialNumber_${n}_${param}`) and the samples.
type CurveMap = Vec<(String, Samples)>;

/// `getValueCurvesFromPatch`: per graph node, its CPPN-driven values in Map order.
fn value_curves(outputs: &[NetworkOutput]) -> JsObject<CurveMap> {
    let mut by_node: JsObject<CurveMap> = JsObject::new();
    for (i, o) in outputs.iter().enumerate() {
        if o.source == Source::Nothing {
            continue;
        }
        for (node_key, conns) in o.targets.iter() {
            let mut map: CurveMap = Vec::new();
            for (j, c) in conns.iter().enumerate() {
                let param = c.param.as_deref().unwrap_or("null");
                let samples = Samples::Output {
                    output: i,
                    range: c.range,
                };
                let key = match param {
                    "partialBuffer" | "partialGainEnvelope" => format!(
                        "partialNumber_{}_{param}",
                        js_number(c.partial_number.unwrap_or(f64::NAN))
                    ),
                    _ => format!("{i}_{j}_{param}"),
                };
                map_set(&mut map, key, samples);
            }
            match by_node.get_mut(node_key) {
                Some(existing) => {
                    for (k, v) in map {
                        map_set(existing, k, v);
                    }
                }
                None => by_node.insert(node_key, map),
            }
        }
    }
    by_node
}

/// JS `Map.set`: an existing key keeps its position.
fn map_set(map: &mut CurveMap, key: String, value: Samples) {
    match map.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => map.push((key, value)),
    }
}

/// How JS prints a number inside a template string (enough for partial numbers).
fn js_number(x: f64) -> String {
    if x.is_nan() {
        "undefined".into()
    } else if x.fract() == 0.0 && x.abs() < 1e21 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The third `_`-separated part of a value-curve key (kromosynth's `split('_')[2]`).
fn curve_param(key: &str) -> &str {
    key.split('_').nth(2).unwrap_or("")
}

/// `getNodeGraphFromPatch` without the inert click-removal gain (nothing is routed through it
/// for asNEAT patches, and a node without inputs adds only silence).
fn node_graph(
    patch: &SynthIsPatch,
    outputs: &[NetworkOutput],
    curves: &JsObject<CurveMap>,
    note_delta: f64,
) -> Result<JsObject<Def>, Error> {
    let mut defs: JsObject<Def> = JsObject::new();
    for (key, node) in patch.audio_graph.iter() {
        let mut props: JsObject<Value> = JsObject::new();
        for (k, v) in node.props.iter() {
            props.insert(
                k,
                match v {
                    Prop::Number(x) => Value::Number(*x),
                    Prop::Text(t) => Value::Text(t.clone()),
                },
            );
        }
        let node_curves = curves.get(key);
        let def = match node.node_type {
            Some(NodeType::Wavetable) => match node_curves.and_then(wavetable) {
                Some(children) => Def::Custom {
                    outputs: node.outputs.clone(),
                    children,
                },
                None => continue,
            },
            Some(NodeType::Additive) => match node_curves {
                Some(c) => match additive(key, c, outputs)? {
                    Some(children) => Def::Custom {
                        outputs: node.outputs.clone(),
                        children,
                    },
                    None => continue,
                },
                None => continue,
            },
            node_type => {
                if let Some(c) = node_curves {
                    for (ck, samples) in c {
                        props.insert(curve_param(ck), Value::Samples(samples.clone()));
                    }
                }
                if node_type == Some(NodeType::FeedbackDelay) {
                    Def::Custom {
                        outputs: node.outputs.clone(),
                        children: feedback_delay(&props),
                    }
                } else {
                    if node_type == Some(NodeType::Oscillator) && is_audio_source(&node.outputs) {
                        match props.get("frequency") {
                            Some(Value::Samples(_)) => {}
                            Some(Value::Number(f)) if *f != 0.0 => {
                                let f = super::synthis::frequency_to_note_delta(*f, note_delta);
                                props.insert("frequency", Value::Number(f));
                            }
                            _ => {
                                let f = super::synthis::frequency_to_note_delta(440.0, note_delta);
                                props.insert("frequency", Value::Number(f));
                            }
                        }
                    }
                    Def::Standard {
                        node_type,
                        asneat_name: node.asneat_name.clone(),
                        outputs: node.outputs.clone(),
                        props,
                    }
                }
            }
        };
        defs.insert(key, def);
    }
    Ok(defs)
}

/// kromosynth's oscillator test: an output key of two dash-separated parts (a weight node into
/// an audio input) or `'output'` makes the oscillator an audio source.
fn is_audio_source(outputs: &[Output]) -> bool {
    outputs.iter().any(|o| match o {
        Output::Destination => true,
        Output::Node(k) => k.split('-').count() == 2,
        Output::Param { .. } => false,
    })
}

fn child(key: String, node_type: NodeType, outputs: Vec<Output>) -> Child {
    Child {
        key,
        node_type,
        outputs,
        props: JsObject::new(),
        max_delay_time: None,
    }
}

/// `getWavetableGraphNodeEntry`: `zero` merger, then per wave `g_i` (gain on the wave's gain
/// curve) and `a_i` (buffer source). `None` when there is no mix or no wave (node deleted).
fn wavetable(curves: &CurveMap) -> Option<Vec<Child>> {
    let mix = curves
        .iter()
        .find(|(k, _)| curve_param(k) == "mix")?
        .1
        .clone();
    let waves: Vec<&Samples> = curves
        .iter()
        .filter(|(k, _)| curve_param(k) == "buffer")
        .map(|(_, s)| s)
        .collect();
    if waves.is_empty() {
        return None;
    }
    let count = waves.len();
    let mut children = vec![child(
        "zero".into(),
        NodeType::Wavetable,
        vec![Output::Destination],
    )];
    for (i, wave) in waves.into_iter().enumerate() {
        let mut g = child(
            format!("g{}", i + 1),
            NodeType::Gain,
            vec![Output::Node("zero".into())],
        );
        g.props.insert(
            "gain",
            Value::Samples(Samples::WavetableGain {
                mix: Box::new(mix.clone()),
                index: i,
                count,
            }),
        );
        let mut a = child(
            format!("a{}", i + 1),
            NodeType::BufferSource,
            vec![Output::Node(format!("g{}", i + 1))],
        );
        a.props.insert("buffer", Value::Samples(wave.clone()));
        children.push(g);
        children.push(a);
    }
    Some(children)
}

/// `getAdditiveSynthesisGraphNodeEntry`: `zero` merger, then per partial a weight gain, an
/// envelope gain and the partial's buffer source.
fn additive(
    key: &str,
    curves: &CurveMap,
    outputs: &[NetworkOutput],
) -> Result<Option<Vec<Child>>, Error> {
    let of = |name: &str| -> Vec<Samples> {
        curves
            .iter()
            .filter(|(k, _)| curve_param(k) == name)
            .map(|(_, s)| s.clone())
            .collect()
    };
    let buffers = of("partialBuffer");
    let envelopes = of("partialGainEnvelope");
    if buffers.is_empty() || envelopes.is_empty() {
        return Ok(None);
    }
    // getPartialGainWeightsFromPatch: every envelope connection's weight, in output order.
    let weights: Vec<f64> = outputs
        .iter()
        .filter_map(|o| o.targets.get(key))
        .flatten()
        .filter(|c| c.param.as_deref() == Some("partialGainEnvelope"))
        .map(|c| c.weight)
        .collect();
    if envelopes.len() < buffers.len() || weights.len() < buffers.len() {
        // The original passes `undefined` as a curve or gain and fails.
        return Err(Error(format!(
            "additive node {key} has {} partial buffers but only {} gain envelopes",
            buffers.len(),
            envelopes.len().min(weights.len())
        )));
    }
    let mut children = vec![child(
        "zero".into(),
        NodeType::Additive,
        vec![Output::Destination],
    )];
    for (i, buffer) in buffers.into_iter().enumerate() {
        let n = i + 1;
        let mut weight = child(
            format!("gainWeight{n}"),
            NodeType::Gain,
            vec![Output::Node("zero".into())],
        );
        let w = if n == 1 { 1.0 } else { weights[i] };
        weight.props.insert("gain", Value::Number(w));
        let mut envelope = child(
            format!("gainValueCurve{n}"),
            NodeType::Gain,
            vec![Output::Node(format!("gainWeight{n}"))],
        );
        envelope
            .props
            .insert("gain", Value::Samples(envelopes[i].clone()));
        let mut wave = child(
            format!("audioWave{n}"),
            NodeType::BufferSource,
            vec![Output::Node(format!("gainValueCurve{n}"))],
        );
        wave.props.insert("buffer", Value::Samples(buffer));
        children.extend([weight, envelope, wave]);
    }
    Ok(Some(children))
}

/// `getFeedbackGainNodeFunction`: feedbackGainNode -> passthroughGain; delayNode (max 5 s) ->
/// feedbackGainNode; passthroughGain (the input) -> output and delayNode.
fn feedback_delay(props: &JsObject<Value>) -> Vec<Child> {
    let delay_time = props
        .get("delayTime")
        .cloned()
        .unwrap_or(Value::Number(0.0));
    let feedback = props
        .get("feedbackRatio")
        .cloned()
        .unwrap_or(Value::Number(0.2));
    let mut fb = child(
        "feedbackGainNode".into(),
        NodeType::Gain,
        vec![Output::Node("passthroughGain".into())],
    );
    fb.props.insert("gain", feedback);
    let mut delay = child(
        "delayNode".into(),
        NodeType::Delay,
        vec![Output::Node("feedbackGainNode".into())],
    );
    delay.props.insert("delayTime", delay_time);
    delay.max_delay_time = Some(5.0);
    let mut pass = child(
        "passthroughGain".into(),
        NodeType::Gain,
        vec![Output::Destination, Output::Node("delayNode".into())],
    );
    pass.props.insert("gain", Value::Number(1.0));
    vec![fb, delay, pass]
}

/// Most cleanup passes, as the original.
const MAX_CLEANUP_PASSES: usize = 10;

/// `cleanupDanglingConnections`.
fn cleanup_dangling_connections(defs: &mut JsObject<Def>) {
    let non_connectable = ["partialBuffer", "partialGainEnvelope"];
    for _ in 0..MAX_CLEANUP_PASSES {
        let mut changed = false;
        let keys: Vec<String> = defs.keys().map(String::from).collect();
        for key in &keys {
            let outputs = defs.get_mut(key).unwrap().outputs_mut();
            let before = outputs.len();
            outputs.retain(|o| match o {
                Output::Destination => true,
                Output::Node(k) => keys.contains(k),
                Output::Param { key, param } => {
                    keys.contains(key) && !non_connectable.contains(&param.as_str())
                }
            });
            changed |= outputs.len() != before;
        }
        let doomed: Vec<String> = keys
            .iter()
            .filter(|key| key.ends_with("-weight"))
            .filter(|key| {
                let def = defs.get(key).unwrap();
                let empty = matches!(def, Def::Standard { outputs, .. } if outputs.is_empty());
                let source_missing = key
                    .find('_')
                    .filter(|&i| i > 0)
                    .is_some_and(|i| !keys.contains(&key[..i].to_string()));
                empty
                    || source_missing
                    || key.contains("-partialBuffer-")
                    || key.contains("-partialGainEnvelope-")
            })
            .cloned()
            .collect();
        for key in &doomed {
            defs.remove(key);
            changed = true;
        }
        if !changed {
            break;
        }
    }
}

struct Builder {
    nodes: Vec<WebNode>,
}

impl Builder {
    fn add(&mut self, kind: Kind) -> usize {
        self.nodes.push(WebNode {
            kind,
            outgoing: Vec::new(),
            params: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Registers a node and then its params, as web-audio-api's constructors do.
    fn add_with_params(&mut self, kind: Kind) -> usize {
        let names = param_names(&kind);
        let id = self.add(kind);
        for &name in names {
            let p = self.add(Kind::Param {
                owner: id,
                name,
                value: None,
                curve: None,
            });
            self.nodes[p].outgoing.push(Edge {
                target: id,
                to_param_owner: true,
            });
            self.nodes[id].params.push(p);
        }
        id
    }

    fn connect(&mut self, from: usize, to: usize) {
        self.nodes[from].outgoing.push(Edge {
            target: to,
            to_param_owner: false,
        });
    }

    fn param(&self, node: usize, name: &str) -> Option<usize> {
        self.nodes[node]
            .params
            .iter()
            .copied()
            .find(|&p| matches!(&self.nodes[p].kind, Kind::Param { name: n, .. } if *n == name))
    }

    /// Creates one standard node: the node, its params, then its props in key order.
    /// Returns the id that receives audio input and the id whose output is the node's output.
    fn standard(
        &mut self,
        key: &str,
        node_type: NodeType,
        props: &JsObject<Value>,
        max_delay_time: Option<f64>,
    ) -> Result<(usize, usize), Error> {
        let text = |name: &str| match props.get(name) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let samples = |name: &str| match props.get(name) {
            Some(Value::Samples(s)) => Some(s.clone()),
            _ => None,
        };
        let (input, output) = match node_type {
            NodeType::Gain => {
                let id = self.add_with_params(Kind::Gain);
                (id, id)
            }
            NodeType::Oscillator => {
                let id = self.add_with_params(Kind::Oscillator {
                    waveform: text("type").unwrap_or_else(|| "sine".into()),
                });
                (id, id)
            }
            NodeType::BiquadFilter => {
                let id = self.add_with_params(Kind::BiquadFilter {
                    filter: text("type").unwrap_or_else(|| "lowpass".into()),
                });
                (id, id)
            }
            NodeType::Delay => {
                // virtual-audio-graph passes maxDelayTime to createDelay; otherwise the
                // Web Audio default of 1 s applies.
                let max = max_delay_time.unwrap_or(1.0);
                let writer = self.add(Kind::DelayWriter {
                    reader: usize::MAX,
                    max_delay_time: max,
                });
                let reader = self.add_with_params(Kind::DelayReader {
                    writer,
                    max_delay_time: max,
                });
                self.nodes[writer].kind = Kind::DelayWriter {
                    reader,
                    max_delay_time: max,
                };
                self.connect(writer, reader);
                (writer, reader)
            }
            NodeType::DynamicsCompressor => {
                let id = self.add_with_params(Kind::DynamicsCompressor);
                (id, id)
            }
            NodeType::Convolver => {
                let id = self.add(Kind::Convolver {
                    buffer: samples("buffer"),
                });
                (id, id)
            }
            NodeType::WaveShaper => {
                let id = self.add(Kind::WaveShaper {
                    curve: samples("curve"),
                });
                (id, id)
            }
            NodeType::BufferSource => {
                let id = self.add_with_params(Kind::BufferSource {
                    buffer: samples("buffer"),
                });
                (id, id)
            }
            NodeType::Wavetable | NodeType::Additive => {
                let id = self.add(Kind::ChannelMerger);
                (id, id)
            }
            NodeType::FeedbackDelay => {
                return Err(Error(format!("{key}: nested feedbackDelay")));
            }
        };
        // Param values and curves, in the props' key order (virtual-audio-graph `update`).
        for (name, value) in props.iter() {
            let Some(p) = self.param(output, name) else {
                continue;
            };
            let Kind::Param {
                value: v, curve, ..
            } = &mut self.nodes[p].kind
            else {
                unreachable!()
            };
            match value {
                Value::Number(x) => *v = Some(*x as f32),
                Value::Samples(s) => *curve = Some(s.clone()),
                Value::Text(t) => {
                    return Err(Error(format!("{key}.{name} must be a number, got {t:?}")))
                }
            }
        }
        Ok((input, output))
    }
}

/// Where a top-level definition's audio goes in and comes out.
struct Placed {
    /// Ids that receive the node's audio input (none for custom nodes, see [`Child`]).
    inputs: Vec<usize>,
    /// Ids whose outputs are the node's output.
    outputs: Vec<usize>,
    /// The single standard node, for param connections.
    standard: Option<usize>,
}

/// virtual-audio-graph `update`: create every node in key order, then connect in key order.
fn instantiate(defs: &JsObject<Def>) -> Result<Vec<WebNode>, Error> {
    let mut b = Builder { nodes: Vec::new() };
    b.add(Kind::Destination);
    let mut placed: JsObject<Placed> = JsObject::new();
    for (key, def) in defs.iter() {
        match def {
            Def::Standard {
                node_type,
                asneat_name,
                props,
                ..
            } => {
                let Some(node_type) = node_type else {
                    // The original's compiler skips node types it cannot create; only a
                    // connection into one is fatal (checked below).
                    let _ = asneat_name;
                    continue;
                };
                let (input, output) = b.standard(key, *node_type, props, None)?;
                placed.insert(
                    key,
                    Placed {
                        inputs: vec![input],
                        outputs: vec![output],
                        standard: Some(output),
                    },
                );
            }
            Def::Custom { children, .. } => {
                let mut ids: Vec<(usize, usize)> = Vec::with_capacity(children.len());
                for c in children {
                    ids.push(b.standard(key, c.node_type, &c.props, c.max_delay_time)?);
                }
                // Wire the children among themselves (their 'output' is the custom output).
                for (c, &(_, out)) in children.iter().zip(&ids) {
                    for o in &c.outputs {
                        if let Output::Node(k) = o {
                            let j = children.iter().position(|x| x.key == *k).unwrap();
                            b.connect(out, ids[j].0);
                        }
                    }
                }
                placed.insert(
                    key,
                    Placed {
                        inputs: Vec::new(),
                        outputs: children
                            .iter()
                            .zip(&ids)
                            .filter(|(c, _)| c.outputs.contains(&Output::Destination))
                            .map(|(_, &(_, o))| o)
                            .collect(),
                        standard: None,
                    },
                );
            }
        }
    }
    for (key, def) in defs.iter() {
        let Some(from) = placed.get(key) else {
            continue;
        };
        let outputs = match def {
            Def::Standard { outputs, .. } | Def::Custom { outputs, .. } => outputs,
        };
        for o in outputs {
            let targets: Vec<usize> = match o {
                Output::Destination => vec![DESTINATION],
                Output::Node(k) => match placed.get(k) {
                    Some(t) => t.inputs.clone(),
                    None => return Err(unsupported_target(defs, key, k)),
                },
                Output::Param { key: k, param } => {
                    let Some(t) = placed.get(k) else {
                        return Err(unsupported_target(defs, key, k));
                    };
                    let Some(node) = t.standard else {
                        return Err(Error(format!(
                            "{key} connects to param {param} of custom node {k}, which the \
                             original cannot render"
                        )));
                    };
                    match b.param(node, param) {
                        Some(p) => vec![p],
                        None => {
                            return Err(Error(format!(
                                "{key} connects to {k}.{param}, which is no AudioParam"
                            )))
                        }
                    }
                }
            };
            for &src in &from.outputs {
                for &t in &targets {
                    b.connect(src, t);
                }
            }
        }
    }
    Ok(b.nodes)
}

fn unsupported_target(defs: &JsObject<Def>, from: &str, to: &str) -> Error {
    match defs.get(to) {
        Some(Def::Standard { asneat_name, .. }) => Error(format!(
            "{from} connects to {to}, a {asneat_name}, which cannot be rendered"
        )),
        _ => Error(format!("{from} connects to missing node {to}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::genome::Genome;

    fn graph(id: &str, note_delta: f64) -> WebGraph {
        let g = Genome::from_json(&fixtures::genome_json(id)).unwrap();
        let patch = super::super::synthis::patch_from_asneat(&g.patch).unwrap();
        build(&patch, note_delta, false, 18).unwrap()
    }

    fn kinds(g: &WebGraph) -> Vec<String> {
        g.nodes
            .iter()
            .map(|n| match &n.kind {
                Kind::Param { name, .. } => format!("param:{name}"),
                k => format!("{k:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
            })
            .collect()
    }

    #[test]
    fn square_oscillator_fixture_is_osc_weight_gain() {
        // 01M88X7T6Y68CC64GC56PAT2JM: oscillator -> weight gain -> gain -> destination.
        let g = graph("01M88X7T6Y68CC64GC56PAT2JM", 12.0);
        let k = kinds(&g);
        assert_eq!(k.iter().filter(|k| *k == "Oscillator").count(), 1);
        assert_eq!(k.iter().filter(|k| *k == "Gain").count(), 2);
        let osc = g
            .nodes
            .iter()
            .find(|n| matches!(n.kind, Kind::Oscillator { .. }))
            .unwrap();
        let freq = &g.nodes[osc.params[0]].kind;
        // default 440 Hz shifted an octave up by noteDelta 12
        assert!(
            matches!(freq, Kind::Param { name: "frequency", value: Some(v), .. } if *v == 880.0)
        );
        assert!(g
            .nodes
            .iter()
            .any(|n| n.outgoing.iter().any(|e| e.target == DESTINATION)));
    }

    #[test]
    fn wavetable_becomes_merger_gains_and_sources() {
        let g = graph("01M88X7XN81HEA58YYNTFXHV28", 0.0);
        let k = kinds(&g);
        assert_eq!(k.iter().filter(|k| *k == "ChannelMerger").count(), 1);
        // two waves (the third buffer output feeds the convolver): two buffer sources with
        // WavetableGain curves on their gains
        assert_eq!(k.iter().filter(|k| *k == "BufferSource").count(), 2);
        let gains = g
            .nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.kind,
                    Kind::Param {
                        curve: Some(Samples::WavetableGain { .. }),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(gains, 2);
        // the feedback delay's delay line is 5 s long
        assert!(g.nodes.iter().any(|n| matches!(
            n.kind,
            Kind::DelayWriter {
                max_delay_time: 5.0,
                ..
            }
        )));
    }

    #[test]
    fn every_fixture_builds() {
        for id in fixtures::ids() {
            for nd in [0.0, 12.0] {
                let g = graph(&id, nd);
                assert!(g.nodes.len() > 3, "{id}");
            }
        }
    }
}
