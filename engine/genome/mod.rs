//! kromosynth genome JSON -> typed genome.
//!
//! Accepts every shape the original's loaders accept (kromosynth-format.md §1.1-1.3): the genome
//! wrapped (`{_id, genome}`, unwrapped up to three levels through `genome` / `data`) or bare,
//! `genome` as an object or a JSON string, and `asNEATPatch` as a string or object at all three
//! levels (the network, each node, each connection). Errors name the field or node at fault.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Why genome JSON could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct GenomeError(pub String);

impl std::fmt::Display for GenomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenomeError {}

fn err<T>(msg: impl Into<String>) -> Result<T, GenomeError> {
    Err(GenomeError(msg.into()))
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
    fn from_value(v: &Value, what: &str) -> Result<NodeId, GenomeError> {
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

/// Most nested string encodings we unwrap before giving up (the original loops without bound;
/// real genomes have at most two).
const MAX_STRING_NESTING: usize = 4;

/// Parses JSON that may itself be a JSON string holding JSON, a few levels deep. Borrows when
/// `v` is not a string, so the genome's tree is never copied.
fn decode_nested<'a>(v: &'a Value, what: &str) -> Result<Cow<'a, Value>, GenomeError> {
    let mut v = Cow::Borrowed(v);
    for _ in 0..MAX_STRING_NESTING {
        match &*v {
            Value::String(s) => {
                v =
                    Cow::Owned(serde_json::from_str(s).map_err(|e| {
                        GenomeError(format!("{what} is a string but not JSON: {e}"))
                    })?);
            }
            _ => return Ok(v),
        }
    }
    err(format!("{what} is nested in JSON strings too deeply"))
}

impl Genome {
    /// Parses genome JSON bytes in any of the kromosynth shapes.
    pub fn from_json(bytes: &[u8]) -> Result<Genome, GenomeError> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| GenomeError(format!("genome is not valid JSON: {e}")))?;
        Genome::from_value(&root)
    }

    pub fn from_value(root: &Value) -> Result<Genome, GenomeError> {
        let genome = unwrap_genome(root)?;
        let patch_value = genome
            .get("asNEATPatch")
            .ok_or_else(|| GenomeError("genome has no asNEATPatch".into()))?;
        let patch = parse_patch(&*decode_nested(patch_value, "asNEATPatch")?)?;
        let wave_value = genome
            .get("waveNetwork")
            .ok_or_else(|| GenomeError("genome has no waveNetwork".into()))?;
        let wave_network = parse_wave_network(&*decode_nested(wave_value, "waveNetwork")?)?;
        Ok(Genome {
            patch,
            wave_network,
        })
    }
}

/// How many `genome` / `data` wrappers the loader looks through (as the original server).
const MAX_WRAPPERS: usize = 3;

fn unwrap_genome(root: &Value) -> Result<Cow<'_, Value>, GenomeError> {
    let mut v = decode_nested(root, "genome")?;
    for _ in 0..=MAX_WRAPPERS {
        let Value::Object(obj) = &*v else {
            return err("genome must be a JSON object");
        };
        if obj.contains_key("asNEATPatch") {
            return Ok(v);
        }
        let next = match &v {
            Cow::Borrowed(b) => match b.get("genome").or_else(|| b.get("data")) {
                Some(inner) => decode_nested(inner, "genome")?,
                None => return err("genome has no asNEATPatch"),
            },
            // A wrapper that was itself a JSON string: the inner part is copied out once.
            Cow::Owned(o) => match o.get("genome").or_else(|| o.get("data")) {
                Some(inner) => Cow::Owned(decode_nested(inner, "genome")?.into_owned()),
                None => return err("genome has no asNEATPatch"),
            },
        };
        v = next;
    }
    err("genome has no asNEATPatch")
}

fn parse_patch(v: &Value) -> Result<AsNeatPatch, GenomeError> {
    let Value::Object(obj) = v else {
        return err("asNEATPatch must be an object");
    };
    let nodes = obj
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| GenomeError("asNEATPatch.nodes must be an array".into()))?;
    let connections = obj
        .get("connections")
        .and_then(Value::as_array)
        .ok_or_else(|| GenomeError("asNEATPatch.connections must be an array".into()))?;
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| parse_asneat_node(&*decode_nested(n, &format!("asNEATPatch.nodes[{i}]"))?, i))
        .collect::<Result<Vec<_>, _>>()?;
    let connections = connections
        .iter()
        .enumerate()
        .map(|(i, c)| {
            parse_asneat_connection(
                &*decode_nested(c, &format!("asNEATPatch.connections[{i}]"))?,
                i,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AsNeatPatch { nodes, connections })
}

fn parse_asneat_node(v: &Value, i: usize) -> Result<AsNeatNode, GenomeError> {
    let Value::Object(obj) = v else {
        return err(format!("asNEATPatch.nodes[{i}] must be an object"));
    };
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| GenomeError(format!("asNEATPatch.nodes[{i}] has no name")))?
        .to_string();
    let id = NodeId::from_value(
        obj.get("id")
            .ok_or_else(|| GenomeError(format!("asNEATPatch.nodes[{i}] ({name}) has no id")))?,
        &format!("asNEATPatch.nodes[{i}].id"),
    )?;
    Ok(AsNeatNode {
        name,
        id,
        fields: obj.clone(),
    })
}

fn parse_asneat_connection(v: &Value, i: usize) -> Result<AsNeatConnection, GenomeError> {
    let Value::Object(obj) = v else {
        return err(format!("asNEATPatch.connections[{i}] must be an object"));
    };
    let field = |k: &str| {
        obj.get(k)
            .ok_or_else(|| GenomeError(format!("asNEATPatch.connections[{i}] has no {k}")))
    };
    let source = NodeId::from_value(field("sourceNode")?, "connection sourceNode")?;
    let target = NodeId::from_value(field("targetNode")?, "connection targetNode")?;
    let target_parameter = match obj.get("targetParameter") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return err(format!(
                "asNEATPatch.connections[{i}].targetParameter must be a string, got {other}"
            ))
        }
    };
    let range = match obj.get("targetParameterRange") {
        Some(Value::Array(a)) if a.len() == 2 => match (a[0].as_f64(), a[1].as_f64()) {
            (Some(lo), Some(hi)) => Some([lo, hi]),
            _ => None,
        },
        _ => None,
    };
    // asNEAT's Connection default weight is 1.0.
    let weight = obj.get("weight").and_then(Value::as_f64).unwrap_or(1.0);
    Ok(AsNeatConnection {
        source,
        target,
        target_parameter,
        range,
        weight,
    })
}

fn parse_wave_network(v: &Value) -> Result<WaveNetwork, GenomeError> {
    let Value::Object(obj) = v else {
        return err("waveNetwork must be an object");
    };
    if obj.get("oneCPPNPerFrequency").and_then(Value::as_bool) == Some(true) {
        let cppns = obj.get("CPPNs").and_then(Value::as_object).ok_or_else(|| {
            GenomeError("waveNetwork.oneCPPNPerFrequency needs a CPPNs object".into())
        })?;
        let mut out = Vec::with_capacity(cppns.len());
        for (key, member) in cppns {
            let freq: f64 = key.parse().map_err(|_| {
                GenomeError(format!("waveNetwork.CPPNs key {key:?} is not a frequency"))
            })?;
            let offspring = member.get("offspring").unwrap_or(member);
            out.push((
                freq,
                parse_neat_genome(offspring, &format!("waveNetwork.CPPNs[{key}]"))?,
            ));
        }
        if out.is_empty() {
            return err("waveNetwork.CPPNs is empty");
        }
        return Ok(WaveNetwork::PerFrequency(out));
    }
    let offspring = obj.get("offspring").unwrap_or(v);
    Ok(WaveNetwork::Single(parse_neat_genome(
        offspring,
        "waveNetwork.offspring",
    )?))
}

fn gid_string(v: &Value, what: &str) -> Result<String, GenomeError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => err(format!("{what} must be a string or number, got {other}")),
    }
}

fn count(obj: &Map<String, Value>, key: &str, what: &str) -> Result<usize, GenomeError> {
    obj.get(key)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| GenomeError(format!("{what}.{key} must be a non-negative integer")))
}

fn parse_neat_genome(v: &Value, what: &str) -> Result<NeatGenome, GenomeError> {
    let v = decode_nested(v, what)?;
    let Value::Object(obj) = &*v else {
        return err(format!("{what} must be an object"));
    };
    let nodes = obj
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| GenomeError(format!("{what}.nodes must be an array")))?;
    let connections = obj
        .get("connections")
        .and_then(Value::as_array)
        .ok_or_else(|| GenomeError(format!("{what}.connections must be an array")))?;
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let w = format!("{what}.nodes[{i}]");
            let gid = gid_string(
                n.get("gid")
                    .ok_or_else(|| GenomeError(format!("{w} has no gid")))?,
                &format!("{w}.gid"),
            )?;
            let activation = n
                .get("activationFunction")
                .and_then(Value::as_str)
                .ok_or_else(|| GenomeError(format!("{w} (gid {gid}) has no activationFunction")))?
                .to_string();
            let is_bias = n.get("nodeType").and_then(Value::as_str) == Some("Bias");
            Ok(NeatNode {
                gid,
                activation,
                is_bias,
            })
        })
        .collect::<Result<Vec<_>, GenomeError>>()?;
    let connections = connections
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let w = format!("{what}.connections[{i}]");
            let get = |k: &str| {
                c.get(k)
                    .ok_or_else(|| GenomeError(format!("{w} has no {k}")))
            };
            Ok(NeatConnection {
                source: gid_string(get("sourceID")?, &format!("{w}.sourceID"))?,
                target: gid_string(get("targetID")?, &format!("{w}.targetID"))?,
                weight: get("weight")?
                    .as_f64()
                    .ok_or_else(|| GenomeError(format!("{w}.weight must be a number")))?,
            })
        })
        .collect::<Result<Vec<_>, GenomeError>>()?;
    Ok(NeatGenome {
        nodes,
        connections,
        input_count: count(obj, "inputNodeCount", what)?,
        output_count: count(obj, "outputNodeCount", what)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(id: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../tests/fixtures/reference/{id}.genome.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn parses_wrapped_fixture_with_string_encoded_patch() {
        let g = Genome::from_json(&fixture("01M88X99QVYYHHB5Y83SETHWK1")).unwrap();
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
        let root: Value = serde_json::from_slice(&fixture("01M88X7T6Y68CC64GC56PAT2JM")).unwrap();
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
}
