//! kromosynth genome JSON -> typed genome.
//!
//! Accepts every shape the original's loaders accept (kromosynth-format.md §1.1-1.3): the genome
//! wrapped (`{_id, genome}`, unwrapped up to three levels through `genome` / `data`) or bare,
//! `genome` as an object or a JSON string, and `asNEATPatch` as a string or object at all three
//! levels (the network, each node, each connection). Errors name the field or node at fault.

use serde::Deserialize;
use serde_json::error::Category;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::js_object::JsObject;

fn err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}

/// A renderable genome: the asNEAT audio patch and the CPPN(s) that drive it.
#[derive(Debug, Clone)]
pub struct Genome {
    pub patch: AsNeatPatch,
    pub wave_network: WaveNetwork,
}

/// The serialized asNEAT network (`asNEATPatch`), nodes and connections in stored order.
#[derive(Debug, Clone)]
pub struct AsNeatPatch {
    pub nodes: Vec<AsNeatNode>,
    pub connections: Vec<AsNeatConnection>,
}

/// One asNEAT node: its class `name`, its `id`, and every other stored field.
#[derive(Debug, Clone)]
pub struct AsNeatNode {
    pub name: String,
    pub id: NodeId,
    pub fields: Map<String, Value>,
}

impl AsNeatNode {
    /// A numeric field, if present and a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.fields.get(key).and_then(Value::as_f64)
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// asNEAT node ids are 6-character strings, except the OutNode whose id is the number 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeId {
    /// The OutNode (the destination).
    Out,
    Key(String),
}

impl NodeId {
    fn from_value(v: &Value, what: &str) -> Result<NodeId, Error> {
        match v {
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(NodeId::Out),
            Value::Number(n) => Ok(NodeId::Key(n.to_string())),
            Value::String(s) => Ok(NodeId::Key(s.clone())),
            other => err(format!("{what} must be a string or number, got {other}")),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            NodeId::Out => "0",
            NodeId::Key(k) => k,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// One asNEAT connection.
#[derive(Debug, Clone)]
pub struct AsNeatConnection {
    pub source: NodeId,
    pub target: NodeId,
    /// `None` connects to the node's audio input; otherwise the parameter name.
    pub target_parameter: Option<String>,
    /// `targetParameterRange`, if it is a two-number array.
    pub range: Option<[f64; 2]>,
    pub weight: f64,
}

/// The CPPN part of a genome.
#[derive(Debug, Clone)]
pub enum WaveNetwork {
    /// One CPPN for every output frequency (`waveNetwork.offspring`).
    Single(NeatGenome),
    /// `oneCPPNPerFrequency`: one CPPN per rounded frequency key, in stored order.
    PerFrequency(Vec<(f64, NeatGenome)>),
}

/// A neatjs genome as stored: nodes in stored order (bias, inputs, outputs, hidden).
#[derive(Debug, Clone)]
pub struct NeatGenome {
    pub nodes: Vec<NeatNode>,
    pub connections: Vec<NeatConnection>,
    pub input_count: usize,
    pub output_count: usize,
}

#[derive(Debug, Clone)]
pub struct NeatNode {
    pub gid: String,
    pub activation: String,
    pub is_bias: bool,
}

#[derive(Debug, Clone)]
pub struct NeatConnection {
    pub source: String,
    pub target: String,
    pub weight: f64,
}

/// How many `genome` / `data` wrappers the loader looks through (as the original server).
const MAX_WRAPPERS: usize = 3;

// The document is read in one pass into the structs below, which hold only what a render needs;
// everything else is skipped without being built. A stored genome is mostly CPPN connections
// with fields we never use (innovation ids, learning parameters), parent genomes and lookups,
// and building a `Value` tree of all that used to cost more than compiling the genome.
// Missing fields are `None` here and reported by the checks that follow, with the field's path.

/// A value stored either as itself or as a JSON string holding it (kromosynth stores the
/// asNEAT patch, its nodes and connections, and sometimes whole genomes that way).
struct StringOr<T>(T);

/// Most JSON strings a value may sit in, counted along the path from the document's root (a
/// real genome has at most three: the genome, its patch, a node). Each string is parsed by its
/// own serde_json call, whose nesting limit starts afresh, so this bounds the parser's stack.
const MAX_STRING_NESTING: usize = 8;

thread_local! {
    /// Strings the value being parsed on this thread sits in.
    static STRING_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for StringOr<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::de::DeserializeOwned> serde::de::Visitor<'de> for V<T> {
            type Value = StringOr<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object, or a JSON string holding one")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StringOr<T>, E> {
                let depth = STRING_DEPTH.get();
                if depth >= MAX_STRING_NESTING {
                    return Err(E::custom("nested in JSON strings too deeply"));
                }
                STRING_DEPTH.set(depth + 1);
                let parsed = serde_json::from_str::<StringOr<T>>(s);
                STRING_DEPTH.set(depth);
                parsed
                    .map_err(|e| E::custom(format!("a string that is not the expected JSON: {e}")))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<StringOr<T>, M::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(StringOr)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An object's entries in document order (for the `CPPNs` object, whose key order the
/// original's JS object walk follows).
struct Entries<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Entries<T>, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// One level of the stored document: the genome itself, or a wrapper around it.
#[derive(Deserialize)]
struct LayerIn {
    #[serde(rename = "asNEATPatch")]
    patch: Option<StringOr<PatchIn>>,
    #[serde(rename = "waveNetwork")]
    wave_network: Option<StringOr<NetIn>>,
    genome: Option<Box<StringOr<LayerIn>>>,
    data: Option<Box<StringOr<LayerIn>>>,
}

#[derive(Deserialize)]
struct PatchIn {
    nodes: Option<Vec<StringOr<Map<String, Value>>>>,
    connections: Option<Vec<StringOr<AsNeatConnectionIn>>>,
}

#[derive(Deserialize)]
struct AsNeatConnectionIn {
    #[serde(rename = "sourceNode")]
    source: Option<Value>,
    #[serde(rename = "targetNode")]
    target: Option<Value>,
    #[serde(rename = "targetParameter")]
    target_parameter: Option<Value>,
    #[serde(rename = "targetParameterRange")]
    range: Option<Value>,
    weight: Option<Value>,
}

/// `waveNetwork`, a `CPPNs` member, or a neatjs genome: each may be the genome itself or hold
/// it in `offspring`, so one struct reads all three.
#[derive(Deserialize)]
struct NetIn {
    #[serde(rename = "oneCPPNPerFrequency")]
    per_frequency: Option<Value>,
    #[serde(rename = "CPPNs")]
    cppns: Option<Entries<StringOr<NetIn>>>,
    offspring: Option<Box<StringOr<NetIn>>>,
    nodes: Option<Vec<NeatNodeIn>>,
    connections: Option<Vec<NeatConnectionIn>>,
    #[serde(rename = "inputNodeCount")]
    input_count: Option<Value>,
    #[serde(rename = "outputNodeCount")]
    output_count: Option<Value>,
}

#[derive(Deserialize)]
struct NeatNodeIn {
    gid: Option<Value>,
    #[serde(rename = "activationFunction")]
    activation: Option<Value>,
    #[serde(rename = "nodeType")]
    node_type: Option<Value>,
}

#[derive(Deserialize)]
struct NeatConnectionIn {
    #[serde(rename = "sourceID")]
    source: Option<Value>,
    #[serde(rename = "targetID")]
    target: Option<Value>,
    weight: Option<Value>,
}

impl Genome {
    /// Parses genome JSON bytes in any of the kromosynth shapes.
    pub fn from_json(bytes: &[u8]) -> Result<Genome, Error> {
        let root: StringOr<LayerIn> = serde_json::from_slice(bytes).map_err(|e| {
            Error(match e.classify() {
                Category::Data => format!("genome does not have the kromosynth shape: {e}"),
                _ => format!("genome is not valid JSON: {e}"),
            })
        })?;
        let mut layer = root.0;
        for _ in 0..=MAX_WRAPPERS {
            if let Some(patch) = layer.patch {
                let patch = parse_patch(patch.0)?;
                let wave = layer
                    .wave_network
                    .ok_or_else(|| Error("genome has no waveNetwork".into()))?;
                return Ok(Genome {
                    patch,
                    wave_network: parse_wave_network(wave.0)?,
                });
            }
            match layer.genome.or(layer.data) {
                Some(inner) => layer = inner.0,
                None => break,
            }
        }
        err("genome has no asNEATPatch")
    }

    /// [`Genome::from_json`] of a `Value` (its text is parsed again).
    pub fn from_value(root: &Value) -> Result<Genome, Error> {
        Genome::from_json(root.to_string().as_bytes())
    }
}

fn parse_patch(patch: PatchIn) -> Result<AsNeatPatch, Error> {
    let nodes = patch
        .nodes
        .ok_or_else(|| Error("asNEATPatch.nodes must be an array".into()))?;
    let connections = patch
        .connections
        .ok_or_else(|| Error("asNEATPatch.connections must be an array".into()))?;
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| parse_asneat_node(n.0, i))
        .collect::<Result<Vec<_>, _>>()?;
    let connections = connections
        .into_iter()
        .enumerate()
        .map(|(i, c)| parse_asneat_connection(c.0, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AsNeatPatch { nodes, connections })
}

fn parse_asneat_node(fields: Map<String, Value>, i: usize) -> Result<AsNeatNode, Error> {
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error(format!("asNEATPatch.nodes[{i}] has no name")))?
        .to_string();
    let id = NodeId::from_value(
        fields
            .get("id")
            .ok_or_else(|| Error(format!("asNEATPatch.nodes[{i}] ({name}) has no id")))?,
        &format!("asNEATPatch.nodes[{i}].id"),
    )?;
    // Every field is kept: which ones the patch reads depends on the node's class.
    Ok(AsNeatNode { name, id, fields })
}

fn parse_asneat_connection(c: AsNeatConnectionIn, i: usize) -> Result<AsNeatConnection, Error> {
    let field = |v: Option<Value>, k: &str| {
        v.ok_or_else(|| Error(format!("asNEATPatch.connections[{i}] has no {k}")))
    };
    let source = NodeId::from_value(&field(c.source, "sourceNode")?, "connection sourceNode")?;
    let target = NodeId::from_value(&field(c.target, "targetNode")?, "connection targetNode")?;
    let target_parameter = match c.target_parameter {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return err(format!(
                "asNEATPatch.connections[{i}].targetParameter must be a string, got {other}"
            ))
        }
    };
    let range = match c.range {
        Some(Value::Array(a)) if a.len() == 2 => match (a[0].as_f64(), a[1].as_f64()) {
            (Some(lo), Some(hi)) => Some([lo, hi]),
            _ => None,
        },
        _ => None,
    };
    // asNEAT's Connection default weight is 1.0.
    let weight = c.weight.as_ref().and_then(Value::as_f64).unwrap_or(1.0);
    Ok(AsNeatConnection {
        source,
        target,
        target_parameter,
        range,
        weight,
    })
}

/// The genome a `waveNetwork` or `CPPNs` member holds: its `offspring`, else itself.
fn offspring(net: NetIn) -> NetIn {
    match net.offspring {
        Some(inner) => inner.0,
        None => net,
    }
}

fn parse_wave_network(wave: NetIn) -> Result<WaveNetwork, Error> {
    if wave.per_frequency == Some(Value::Bool(true)) {
        let cppns = wave
            .cppns
            .ok_or_else(|| Error("waveNetwork.oneCPPNPerFrequency needs a CPPNs object".into()))?;
        // The original walks the JS object: integer keys first, ascending, then the rest.
        let mut ordered = JsObject::new();
        for (key, member) in cppns.0 {
            ordered.insert(key, Some(member.0));
        }
        let mut out = Vec::with_capacity(ordered.len());
        for (key, member) in ordered.iter_mut() {
            let freq: f64 = key
                .parse()
                .map_err(|_| Error(format!("waveNetwork.CPPNs key {key:?} is not a frequency")))?;
            let member = member.take().expect("each member is taken once");
            out.push((
                freq,
                parse_neat_genome(offspring(member), &format!("waveNetwork.CPPNs[{key}]"))?,
            ));
        }
        if out.is_empty() {
            return err("waveNetwork.CPPNs is empty");
        }
        return Ok(WaveNetwork::PerFrequency(out));
    }
    Ok(WaveNetwork::Single(parse_neat_genome(
        offspring(wave),
        "waveNetwork.offspring",
    )?))
}

fn gid_string(v: Option<Value>, what: &str) -> Result<String, Error> {
    match v {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => err(format!("{what} must be a string or number, got {other}")),
        None => err(format!("{what} is missing")),
    }
}

fn count(v: &Option<Value>, key: &str, what: &str) -> Result<usize, Error> {
    v.as_ref()
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| Error(format!("{what}.{key} must be a non-negative integer")))
}

fn parse_neat_genome(g: NetIn, what: &str) -> Result<NeatGenome, Error> {
    let nodes = g
        .nodes
        .ok_or_else(|| Error(format!("{what}.nodes must be an array")))?;
    let connections = g
        .connections
        .ok_or_else(|| Error(format!("{what}.connections must be an array")))?;
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let w = format!("{what}.nodes[{i}]");
            if n.gid.is_none() {
                return err(format!("{w} has no gid"));
            }
            let gid = gid_string(n.gid, &format!("{w}.gid"))?;
            let activation = match n.activation {
                Some(Value::String(s)) => s,
                _ => return err(format!("{w} (gid {gid}) has no activationFunction")),
            };
            let is_bias = n.node_type.as_ref().and_then(Value::as_str) == Some("Bias");
            Ok(NeatNode {
                gid,
                activation,
                is_bias,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let connections = connections
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let w = format!("{what}.connections[{i}]");
            for (v, k) in [
                (&c.source, "sourceID"),
                (&c.target, "targetID"),
                (&c.weight, "weight"),
            ] {
                if v.is_none() {
                    return err(format!("{w} has no {k}"));
                }
            }
            Ok(NeatConnection {
                source: gid_string(c.source, &format!("{w}.sourceID"))?,
                target: gid_string(c.target, &format!("{w}.targetID"))?,
                weight: c
                    .weight
                    .as_ref()
                    .and_then(Value::as_f64)
                    .ok_or_else(|| Error(format!("{w}.weight must be a number")))?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(NeatGenome {
        nodes,
        connections,
        input_count: count(&g.input_count, "inputNodeCount", what)?,
        output_count: count(&g.output_count, "outputNodeCount", what)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn parses_wrapped_fixture_with_string_encoded_patch() {
        let g = Genome::from_json(&fixtures::genome_json("01M88X99QVYYHHB5Y83SETHWK1")).unwrap();
        assert_eq!(g.patch.nodes.len(), 18);
        assert!(g.patch.nodes.iter().any(|n| n.id == NodeId::Out));
        let WaveNetwork::Single(cppn) = &g.wave_network else {
            panic!("expected a single CPPN");
        };
        assert_eq!(cppn.nodes.len(), 40);
        assert_eq!(cppn.connections.len(), 104);
        assert_eq!((cppn.input_count, cppn.output_count), (2, 18));
    }

    #[test]
    fn bare_genome_with_object_patch_and_string_genome_parse_the_same() {
        let root: Value =
            serde_json::from_slice(&fixtures::genome_json("01M88X7T6Y68CC64GC56PAT2JM")).unwrap();
        let mut genome = root["genome"].clone();
        // asNEATPatch as an object whose nodes/connections are objects too
        let mut patch: Value =
            serde_json::from_str(genome["asNEATPatch"].as_str().unwrap()).unwrap();
        for key in ["nodes", "connections"] {
            let decoded: Vec<Value> = patch[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| serde_json::from_str(s.as_str().unwrap()).unwrap())
                .collect();
            patch[key] = Value::Array(decoded);
        }
        genome["asNEATPatch"] = patch;
        let bare = Genome::from_value(&genome).unwrap();
        let as_string = Genome::from_value(
            &serde_json::json!({"genome": serde_json::to_string(&genome).unwrap()}),
        )
        .unwrap();
        let wrapped = Genome::from_value(&root).unwrap();
        for g in [&bare, &as_string] {
            assert_eq!(g.patch.nodes.len(), wrapped.patch.nodes.len());
            assert_eq!(g.patch.connections.len(), wrapped.patch.connections.len());
        }
    }

    #[test]
    fn errors_name_what_is_missing() {
        let e = Genome::from_json(b"{\"genome\": {\"waveNetwork\": {}}}").unwrap_err();
        assert_eq!(e.0, "genome has no asNEATPatch");
        let e = Genome::from_json(b"not json").unwrap_err();
        assert!(e.0.starts_with("genome is not valid JSON"), "{e}");
        let e = Genome::from_json(
            br#"{"asNEATPatch": {"nodes": [{"id": "x"}], "connections": []}, "waveNetwork": {}}"#,
        )
        .unwrap_err();
        assert_eq!(e.0, "asNEATPatch.nodes[0] has no name");
        let e = Genome::from_json(
            br#"{"asNEATPatch": {"nodes": [], "connections": []}, "waveNetwork": {"offspring": {"nodes": [{"gid": "0"}], "connections": [], "inputNodeCount": 2, "outputNodeCount": 18}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "waveNetwork.offspring.nodes[0] (gid 0) has no activationFunction"
        );
    }

    fn tiny_cppn(weight: f64) -> Value {
        serde_json::json!({
            "gid": "ignored",
            "nodes": [
                {"gid": "0", "activationFunction": "NullFn", "nodeType": "Bias", "layer": 0},
                {"gid": 1, "activationFunction": "Linear", "nodeType": "Output"}
            ],
            "connections": [{"gid": "c", "sourceID": "0", "targetID": 1, "weight": weight, "a": 0}],
            "inputNodeCount": 0,
            "outputNodeCount": 1,
            "connectionLookup": {"c": {"deep": [1, 2, 3]}}
        })
    }

    fn empty_patch() -> Value {
        serde_json::json!({"nodes": [], "connections": []})
    }

    #[test]
    fn one_cppn_per_frequency_in_js_key_order_in_any_member_shape() {
        let genome = serde_json::json!({
            "asNEATPatch": empty_patch().to_string(),
            "waveNetwork": {
                "oneCPPNPerFrequency": true,
                "CPPNs": {
                    "1000": {"offspring": tiny_cppn(1.0)},
                    "440": tiny_cppn(0.25).to_string(),
                    "55": {"offspring": tiny_cppn(0.5).to_string()},
                }
            }
        });
        let g = Genome::from_value(&genome).unwrap();
        let WaveNetwork::PerFrequency(cppns) = &g.wave_network else {
            panic!("expected one CPPN per frequency");
        };
        let keys: Vec<(f64, f64)> = cppns
            .iter()
            .map(|(f, c)| (*f, c.connections[0].weight))
            .collect();
        assert_eq!(keys, [(55.0, 0.5), (440.0, 0.25), (1000.0, 1.0)]);
        let c = &cppns[0].1;
        assert_eq!(c.nodes[1].gid, "1", "numeric gids become strings");
        assert!(c.nodes[0].is_bias && !c.nodes[1].is_bias);
        assert_eq!(
            (
                c.connections[0].source.as_str(),
                c.connections[0].target.as_str()
            ),
            ("0", "1")
        );
        assert_eq!((c.input_count, c.output_count), (0, 1));
    }

    #[test]
    fn wrappers_and_string_layers_are_looked_through() {
        let genome = serde_json::json!({"asNEATPatch": empty_patch(), "waveNetwork": {"offspring": tiny_cppn(0.5)}});
        let wrapped = serde_json::json!({"_id": "x", "genome": {"data": genome.to_string()}});
        let g = Genome::from_value(&wrapped).unwrap();
        let WaveNetwork::Single(c) = &g.wave_network else {
            panic!("expected a single CPPN");
        };
        assert_eq!(c.connections[0].weight, 0.5);
        // Four wrappers are one too many.
        let mut deep = genome.clone();
        for _ in 0..4 {
            deep = serde_json::json!({ "genome": deep });
        }
        assert_eq!(
            Genome::from_value(&deep).unwrap_err().0,
            "genome has no asNEATPatch"
        );
    }

    #[test]
    fn strings_nested_too_deeply_are_an_error_not_a_crash() {
        let mut v = serde_json::json!({"asNEATPatch": empty_patch(), "waveNetwork": {"offspring": tiny_cppn(0.5)}});
        for _ in 0..3 {
            v = Value::String(v.to_string());
        }
        assert!(
            Genome::from_value(&v).is_ok(),
            "three levels are real genomes' shape"
        );
        for _ in 0..10 {
            v = serde_json::json!({ "genome": v.to_string() });
        }
        let e = Genome::from_value(&v).unwrap_err().0;
        assert!(e.contains("nested in JSON strings too deeply"), "{e}");
        // The depth count is per parse: the next genome parses as before.
        let ok = serde_json::json!({"asNEATPatch": empty_patch(), "waveNetwork": {"offspring": tiny_cppn(0.5)}});
        assert!(Genome::from_value(&ok).is_ok());
    }

    #[test]
    fn wrong_shapes_are_named() {
        let no_wave = serde_json::json!({"asNEATPatch": empty_patch()});
        assert_eq!(
            Genome::from_value(&no_wave).unwrap_err().0,
            "genome has no waveNetwork"
        );
        let bad_type =
            serde_json::json!({"asNEATPatch": {"nodes": 5, "connections": []}, "waveNetwork": {}});
        let e = Genome::from_value(&bad_type).unwrap_err().0;
        assert!(
            e.starts_with("genome does not have the kromosynth shape: invalid type"),
            "{e}"
        );
        let not_json = serde_json::json!({"asNEATPatch": "{nodes", "waveNetwork": {}});
        let e = Genome::from_value(&not_json).unwrap_err().0;
        assert!(e.contains("a string that is not the expected JSON"), "{e}");
        let weight = serde_json::json!({"asNEATPatch": empty_patch(), "waveNetwork": {"offspring": {
            "nodes": [], "connections": [{"sourceID": "0", "targetID": "1", "weight": "heavy"}],
            "inputNodeCount": 0, "outputNodeCount": 1}}});
        assert_eq!(
            Genome::from_value(&weight).unwrap_err().0,
            "waveNetwork.offspring.connections[0].weight must be a number"
        );
        let count = serde_json::json!({"asNEATPatch": empty_patch(), "waveNetwork": {"offspring": {
            "nodes": [], "connections": [], "inputNodeCount": -1, "outputNodeCount": 1}}});
        assert_eq!(
            Genome::from_value(&count).unwrap_err().0,
            "waveNetwork.offspring.inputNodeCount must be a non-negative integer"
        );
    }
}
