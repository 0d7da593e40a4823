//! asNEAT network -> synth.is patch (kromosynth `patchFromAsNEATnetwork`), and the noteDelta
//! split of its network outputs (`getPatchWithBufferFrequenciesUpdatedAccordingToNoteDelta`).
//! Facts: kromosynth-format.md §2.1-2.3; kromosynth 1.0.36 `util/audio-graph-asNEAT-bridge.js`
//! and `wavekilde.js`.

use serde_json::Value;

use crate::error::Error;
use crate::genome::{AsNeatPatch, NodeId};
use crate::js_object::JsObject;

/// A synth.is audio graph node type (the virtual-audio-graph node name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Gain,
    BiquadFilter,
    Oscillator,
    Delay,
    FeedbackDelay,
    DynamicsCompressor,
    Convolver,
    WaveShaper,
    Wavetable,
    Additive,
    BufferSource,
}

impl NodeType {
    /// `getSynthIsNodeNameFromASNeatNodeName`.
    fn from_asneat(name: &str) -> Option<NodeType> {
        Some(match name {
            "FilterNode" => NodeType::BiquadFilter,
            "ConvolverNode" => NodeType::Convolver,
            "DelayNode" => NodeType::Delay,
            "CompressorNode" => NodeType::DynamicsCompressor,
            "GainNode" => NodeType::Gain,
            "WaveShaperNode" => NodeType::WaveShaper,
            "WavetableNode" => NodeType::Wavetable,
            "AdditiveNode" => NodeType::Additive,
            "FeedbackDelayNode" => NodeType::FeedbackDelay,
            "OscillatorNode" | "NoteOscillatorNode" => NodeType::Oscillator,
            "AudioBufferSourceNode" => NodeType::BufferSource,
            _ => return None,
        })
    }

    /// The schema's `audioParams` then `choiceParams` (kromosynth `util/audio-graph.js`): the
    /// only node fields the bridge copies, and only when truthy.
    fn schema_params(self) -> &'static [&'static str] {
        match self {
            NodeType::BufferSource => &["buffer", "detune", "playbackRate"],
            NodeType::BiquadFilter => &["frequency", "detune", "Q", "gain", "type"],
            NodeType::Convolver => &["buffer", "normalize"],
            NodeType::Delay => &["delayTime"],
            NodeType::DynamicsCompressor => &[
                "threshold",
                "knee",
                "ratio",
                "attack",
                "release",
                "reduction",
            ],
            NodeType::Gain => &["gain"],
            NodeType::WaveShaper => &["curve"],
            NodeType::Wavetable => &["mix", "buffer"],
            NodeType::Additive => &["partialBuffer", "partialGainEnvelope", "masterGain"],
            NodeType::FeedbackDelay => &["delayTime", "feedbackRatio"],
            NodeType::Oscillator => &["frequency", "detune", "noteOffset", "type"],
        }
    }
}

/// A node property copied from the asNEAT node.
#[derive(Clone, Debug, PartialEq)]
pub enum Prop {
    Number(f64),
    Text(String),
}

/// Where an audio graph node's output goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The destination (`'output'`).
    Destination,
    /// Another node's audio input.
    Node(String),
    /// Another node's AudioParam (`{key, destination}`).
    Param { key: String, param: String },
}

/// `audioGraph[key] = [type, outputs, props]`. `node_type` is `None` for asNEAT nodes the
/// bridge cannot map (e.g. PannerNode); the original skips creating those.
#[derive(Clone, Debug)]
pub struct GraphNode {
    pub node_type: Option<NodeType>,
    pub asneat_name: String,
    pub outputs: Vec<Output>,
    pub props: JsObject<Prop>,
}

/// What a network output produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// CPPN output index.
    Cppn(usize),
    Noise(NoiseKind),
    /// Neither a number nor noise: the original produces no samples for it.
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseKind {
    White,
    Pink,
    Brown,
}

/// One connection of a network output to an audio graph node.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamConnection {
    pub param: Option<String>,
    pub range: Option<[f64; 2]>,
    pub weight: f64,
    pub partial_number: Option<f64>,
    pub inharmonicity_factor: Option<f64>,
}

/// A network output: samples from the CPPN (or noise) at one frequency, feeding params.
#[derive(Clone, Debug)]
pub struct NetworkOutput {
    pub source: Source,
    pub frequency: f64,
    /// Frequency before the noteDelta shift (keys the per-frequency CPPNs).
    pub original_frequency: f64,
    pub targets: JsObject<Vec<ParamConnection>>,
}

/// The synth.is patch.
#[derive(Clone, Debug)]
pub struct SynthIsPatch {
    pub audio_graph: JsObject<GraphNode>,
    pub network_outputs: Vec<NetworkOutput>,
}

fn is_output_node(name: &str) -> bool {
    matches!(
        name,
        "NetworkOutputNode"
            | "NoteNetworkOutputNode"
            | "PartialNetworkOutputNode"
            | "PartialEnvelopeNetworkOutputNode"
    )
}

/// asNEAT `frequencyOfStepsFromRootNote`: 440 * (2^(1/12))^steps.
pub fn frequency_of_steps_from_root_note(steps: f64) -> f64 {
    440.0 * libm::pow(libm::pow(2.0, 1.0 / 12.0), steps)
}

/// kromosynth `getFrequencyToNoteDelta`: f * 2^((100 * noteDelta) / 1200).
pub fn frequency_to_note_delta(frequency: f64, note_delta: f64) -> f64 {
    let cents = 100.0 * note_delta;
    frequency * libm::pow(2.0, cents / 1200.0)
}

/// JavaScript truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0 && !x.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn source_of(type_field: Option<&Value>, id: &str) -> Result<Source, Error> {
    let text = match type_field {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Ok(Source::Nothing),
    };
    if let Some(noise) = text.strip_prefix("noise") {
        return Ok(Source::Noise(match noise {
            "Pink" => NoiseKind::Pink,
            "Brown" => NoiseKind::Brown,
            _ => NoiseKind::White,
        }));
    }
    match text.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 => Ok(Source::Cppn(v as usize)),
        Ok(_) => Err(Error(format!(
            "network output {id} has type {text:?}, which is no CPPN output index"
        ))),
        Err(_) => Ok(Source::Nothing),
    }
}

/// `patchFromAsNEATnetwork`.
pub fn patch_from_asneat(net: &AsNeatPatch) -> Result<SynthIsPatch, Error> {
    let mut audio_graph: JsObject<GraphNode> = JsObject::new();
    let mut network_outputs: Vec<(String, NetworkOutput)> = Vec::new();
    // Partial output nodes' fields, by id (partialNumber, inharmonicityFactor).
    let mut partials: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();

    for node in &net.nodes {
        if node.name == "OutNode" {
            continue;
        }
        let id = node.id.key().to_string();
        if node.name.starts_with("Partial") && is_output_node(&node.name) {
            partials.push((
                id.clone(),
                node.number("partialNumber"),
                node.number("inharmonicityFactor"),
            ));
        }
        if is_output_node(&node.name) {
            if network_outputs.iter().any(|(k, _)| *k == id) {
                continue;
            }
            let note_offset = node.fields.get("noteOffset");
            let frequency = if node.name == "NoteNetworkOutputNode"
                && note_offset.is_some_and(|v| v.as_f64() != Some(0.0))
            {
                let steps = note_offset.and_then(Value::as_f64).ok_or_else(|| {
                    Error(format!("network output {id} has a non-numeric noteOffset"))
                })?;
                frequency_of_steps_from_root_note(steps)
            } else {
                node.number("frequency")
                    .ok_or_else(|| Error(format!("network output {id} has no numeric frequency")))?
            };
            network_outputs.push((
                id.clone(),
                NetworkOutput {
                    source: source_of(node.fields.get("type"), &id)?,
                    frequency,
                    original_frequency: frequency,
                    targets: JsObject::new(),
                },
            ));
        } else {
            let node_type = NodeType::from_asneat(&node.name);
            let mut props = JsObject::new();
            if let Some(t) = node_type {
                for &p in t.schema_params() {
                    match node.fields.get(p) {
                        Some(v) if truthy(v) => match v {
                            Value::Number(n) => props.insert(p, Prop::Number(n.as_f64().unwrap())),
                            Value::String(s) => props.insert(p, Prop::Text(s.clone())),
                            // Objects or booleans in these fields are not settable values.
                            _ => {}
                        },
                        _ => {}
                    }
                }
                if node.name == "NoteOscillatorNode" {
                    if let Some(steps) = node.number("noteOffset").filter(|s| *s != 0.0) {
                        props.insert(
                            "frequency",
                            Prop::Number(frequency_of_steps_from_root_note(steps)),
                        );
                    }
                }
            }
            audio_graph.insert(
                id,
                GraphNode {
                    node_type,
                    asneat_name: node.name.clone(),
                    outputs: Vec::new(),
                    props,
                },
            );
        }
    }

    for (i, c) in net.connections.iter().enumerate() {
        let source = c.source.key();
        if c.source != NodeId::Out && audio_graph.contains_key(source) {
            match &c.target {
                NodeId::Key(target) if !target.ends_with("-weight") => {
                    let weight_key = match &c.target_parameter {
                        Some(p) => format!("{source}_{target}-{p}-weight"),
                        None => format!("{source}_{target}-weight"),
                    };
                    audio_graph
                        .get_mut(source)
                        .unwrap()
                        .outputs
                        .push(Output::Node(weight_key.clone()));
                    let output = match &c.target_parameter {
                        Some(p) => Output::Param {
                            key: target.clone(),
                            param: p.clone(),
                        },
                        None => Output::Node(target.clone()),
                    };
                    let mut props = JsObject::new();
                    props.insert("gain", Prop::Number(c.weight));
                    audio_graph.insert(
                        weight_key,
                        GraphNode {
                            node_type: Some(NodeType::Gain),
                            asneat_name: "weight".into(),
                            outputs: vec![output],
                            props,
                        },
                    );
                }
                NodeId::Out => audio_graph
                    .get_mut(source)
                    .unwrap()
                    .outputs
                    .push(Output::Destination),
                NodeId::Key(_) => {}
            }
        } else {
            let Some((_, output)) = network_outputs.iter_mut().find(|(k, _)| k == source) else {
                return Err(Error(format!(
                    "asNEATPatch.connections[{i}] starts at {source}, which is neither an audio \
                     node nor a network output"
                )));
            };
            let target = c.target.key().to_string();
            let (partial_number, inharmonicity_factor) = partials
                .iter()
                .find(|(k, _, _)| k == source)
                .map(|(_, p, h)| (*p, *h))
                .unwrap_or((None, None));
            let conn = ParamConnection {
                param: c.target_parameter.clone(),
                range: c.range,
                weight: c.weight,
                partial_number,
                inharmonicity_factor,
            };
            match output.targets.get_mut(&target) {
                Some(list) => list.push(conn),
                None => output.targets.insert(target, vec![conn]),
            }
        }
    }

    Ok(SynthIsPatch {
        audio_graph,
        network_outputs: network_outputs.into_iter().map(|(_, o)| o).collect(),
    })
}

/// Splits each network output into its `buffer`, `partialBuffer` and other-param connections
/// and shifts the frequencies of the first two by `note_delta` semitones, and of the third too
/// with `transpose_all` (kromosynth `frequencyUpdatesApplyToAllPathcNetworkOutputs`, which
/// makes the CPPN run at the shifted frequency for value-curve outputs as well). Outputs with
/// no connections disappear, as in the original.
pub fn apply_note_delta(
    outputs: &[NetworkOutput],
    note_delta: f64,
    transpose_all: bool,
) -> Vec<NetworkOutput> {
    let mut result = Vec::new();
    for output in outputs {
        let mut groups: [JsObject<Vec<ParamConnection>>; 3] = Default::default();
        for (key, conns) in output.targets.iter() {
            for conn in conns {
                let g = match conn.param.as_deref() {
                    Some("buffer") => 0,
                    Some("partialBuffer") => 1,
                    _ => 2,
                };
                match groups[g].get_mut(key) {
                    Some(list) => list.push(conn.clone()),
                    None => groups[g].insert(key, vec![conn.clone()]),
                }
            }
        }
        let [buffer, partial, other] = groups;
        let with = |targets: JsObject<Vec<ParamConnection>>, frequency: f64| NetworkOutput {
            source: output.source.clone(),
            frequency,
            original_frequency: output.frequency,
            targets,
        };
        if !buffer.is_empty() {
            result.push(with(
                buffer,
                frequency_to_note_delta(output.frequency, note_delta),
            ));
        }
        if !partial.is_empty() {
            let shifted = frequency_to_note_delta(output.frequency, note_delta);
            // The original takes the partial number of the first connection of the first target.
            let first = &partial.values().next().unwrap()[0];
            let frequency = match first.partial_number {
                // getOvertoneFrequency without inharmonicity factors: f * n + 0.
                Some(n) if n > 1.0 => shifted * n + 0.0,
                _ => shifted,
            };
            result.push(with(partial, frequency));
        }
        if !other.is_empty() {
            let frequency = match transpose_all {
                true => frequency_to_note_delta(output.frequency, note_delta),
                false => output.frequency,
            };
            result.push(with(other, frequency));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::genome::Genome;

    fn fixture_patch(id: &str) -> SynthIsPatch {
        patch_from_asneat(&Genome::from_json(&fixtures::genome_json(id)).unwrap().patch).unwrap()
    }

    /// The stored genomes carry the original's own synth.is patch (`virtualAudioGraph`); ours
    /// must have the same nodes, in the same order, with the same outputs and props.
    #[test]
    fn matches_the_virtual_audio_graph_stored_in_every_fixture() {
        let mut checked = 0;
        for id in fixtures::ids() {
            let root: Value = serde_json::from_slice(&fixtures::genome_json(&id)).unwrap();
            let stored = &root["genome"]["virtualAudioGraph"];
            let ours = fixture_patch(&id);
            let stored_graph = stored["audioGraph"].as_object().unwrap();
            let our_keys: Vec<&str> = ours.audio_graph.keys().collect();
            let stored_keys: Vec<&str> = stored_graph.keys().map(String::as_str).collect();
            let mut a = our_keys.clone();
            let mut b = stored_keys.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{id}: node keys");
            for (key, node) in ours.audio_graph.iter() {
                let s = &stored_graph[key];
                let outputs: Vec<Value> = node
                    .outputs
                    .iter()
                    .map(|o| match o {
                        Output::Destination => Value::from("output"),
                        Output::Node(k) => Value::from(k.as_str()),
                        Output::Param { key, param } => {
                            serde_json::json!({"key": key, "destination": param})
                        }
                    })
                    .collect();
                assert_eq!(Value::Array(outputs), s[1], "{id}: outputs of {key}");
                for (p, v) in node.props.iter() {
                    let expected = &s[2][p];
                    match v {
                        // The stored graph was computed when the genome was made; a note
                        // frequency there can differ from Node's Math.pow (which libm matches)
                        // in the last bit.
                        Prop::Number(x) => {
                            let e = expected.as_f64().unwrap();
                            assert!(
                                (x - e).abs() <= 4.0 * f64::EPSILON * e.abs(),
                                "{id}: {key}.{p}"
                            )
                        }
                        Prop::Text(t) => {
                            assert_eq!(Some(t.as_str()), expected.as_str(), "{id}: {key}.{p}")
                        }
                    }
                }
            }
            let stored_outputs = stored["networkOutputs"].as_array().unwrap();
            assert_eq!(stored_outputs.len(), ours.network_outputs.len(), "{id}");
            for (o, s) in ours.network_outputs.iter().zip(stored_outputs) {
                let e = s["frequency"].as_f64().unwrap();
                assert!((o.frequency - e).abs() <= 4.0 * f64::EPSILON * e, "{id}");
                let targets: Vec<&str> = o.targets.keys().collect();
                let stored_targets: Vec<&str> = s["audioGraphNodes"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(targets, stored_targets, "{id}");
            }
            checked += 1;
        }
        assert_eq!(checked, 8);
    }

    #[test]
    fn note_delta_splits_and_shifts_only_buffers() {
        let patch = fixture_patch("01M88X99QVYYHHB5Y83SETHWK1");
        let split = apply_note_delta(&patch.network_outputs, 12.0, false);
        for o in &split {
            let params: Vec<_> = o
                .targets
                .values()
                .flatten()
                .map(|c| c.param.clone().unwrap_or_default())
                .collect();
            if params.iter().all(|p| p == "buffer" || p == "partialBuffer") {
                assert_eq!(o.frequency, o.original_frequency * 2.0);
            } else {
                assert!(params.iter().all(|p| p != "buffer" && p != "partialBuffer"));
                assert_eq!(o.frequency, o.original_frequency);
            }
        }
        assert_eq!(frequency_to_note_delta(440.0, 0.0), 440.0);
    }

    #[test]
    fn unknown_connection_source_is_an_error() {
        let g = Genome::from_value(&serde_json::json!({
            "asNEATPatch": {"nodes": [{"name": "OutNode", "id": 0}],
                            "connections": [{"sourceNode": "ghost", "targetNode": 0}]},
            "waveNetwork": {"offspring": {"nodes": [], "connections": [],
                            "inputNodeCount": 2, "outputNodeCount": 18}}
        }))
        .unwrap();
        let e = patch_from_asneat(&g.patch).unwrap_err();
        assert!(e.0.contains("ghost"), "{e}");
    }
}
