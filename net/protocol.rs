//! The wire protocol: client messages parsed into validated requests, server messages written
//! out. The seed protocol's messages and field names are kept exactly (see README "Protocol");
//! the extensions (`requestId`, `genome`, `chunkSamples`, `seed`, `format`, `cancel`) are opt-in,
//! so a client that never sends them sees exactly the original's messages.

use std::fmt::Write as _;

use krs_engine::dsp::RENDER_QUANTUM;
use krs_engine::RenderRequest;
use serde_json::{Map, Value};

pub use krs_engine::DEFAULT_SAMPLE_RATE as SAMPLE_RATE;

/// Samples per chunk message unless the client asks otherwise: the original's capture worklet
/// posts 4096-sample chunks.
pub const DEFAULT_CHUNK_SAMPLES: usize = 4096;

/// Largest `chunkSamples`: 65536 samples are 1.4 s of audio, a 256 KiB binary frame or about
/// 1.4 MB of JSON, which bounds one message in the connection's write buffer.
pub const MAX_CHUNK_SAMPLES: usize = 65_536;

/// Longest `genomeId` or string `requestId`, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Largest |noteDelta| in semitones: ten octaves either way is far past any musical use and
/// keeps every derived frequency finite.
pub const MAX_NOTE_DELTA: f64 = 120.0;

/// Welcome text of the original server.
pub const WELCOME_MESSAGE: &str = "Connected to Kromosynth Render Socket";

/// How a render's chunks travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `chunk` text messages with `data` as a JSON number array (the seed protocol).
    Json,
    /// One binary frame per chunk (see [`crate::wire::ChunkFrame`]), announced by a `start` message.
    Binary,
}

/// Where the genome comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum GenomeRef {
    Id(String),
    /// Genome JSON sent in the request (`genome` as an object or as a JSON string).
    Inline(Vec<u8>),
}

impl GenomeRef {
    /// For logs.
    pub fn label(&self) -> String {
        match self {
            GenomeRef::Id(id) => id.clone(),
            GenomeRef::Inline(json) => format!("inline({} bytes)", json.len()),
        }
    }
}

/// A validated `render` message.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderSpec {
    /// Echoed on every message of the render; renders with one may run concurrently.
    pub request_id: Option<Value>,
    pub genome: GenomeRef,
    pub request: RenderRequest,
    pub use_gpu: bool,
    pub chunk_samples: usize,
    pub format: Format,
}

/// A validated client message.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    Render(Box<RenderSpec>),
    Cancel {
        request_id: Value,
    },
    /// What the server holds right now (see [`stats`]).
    Stats {
        request_id: Option<Value>,
    },
}

/// A message the client gets back as `{type:'error', message}`, with the request's
/// `requestId` when the message had a usable one.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolError {
    pub message: String,
    pub request_id: Option<Value>,
}

/// Limits applied while parsing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest render in seconds.
    pub max_duration: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_duration: krs_engine::DEFAULT_MAX_DURATION_SECONDS,
        }
    }
}

/// Parses one text frame.
pub fn parse_client_message(text: &str, limits: &Limits) -> Result<ClientMessage, ProtocolError> {
    let plain = |message: String| ProtocolError {
        message,
        request_id: None,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| plain(format!("Invalid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(plain("Invalid message: expected a JSON object".into()));
    };
    let request_id = match object.get("requestId") {
        None | Some(Value::Null) => None,
        Some(v) => Some(request_id(v).map_err(plain)?),
    };
    let with_id = |message: String| ProtocolError {
        message,
        request_id: request_id.clone(),
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(with_id("type must be a string".into())),
        None => return Err(with_id("Message has no type".into())),
    };
    match kind {
        "render" => parse_render(&object, request_id.clone(), limits)
            .map(|spec| ClientMessage::Render(Box::new(spec)))
            .map_err(with_id),
        "stats" => Ok(ClientMessage::Stats { request_id }),
        "cancel" => match request_id {
            Some(request_id) => Ok(ClientMessage::Cancel { request_id }),
            None => Err(with_id("cancel needs the requestId of the render".into())),
        },
        other => Err(with_id(format!(
            "Unknown message type: {}",
            truncate(other, MAX_ID_BYTES)
        ))),
    }
}

fn request_id(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) if s.len() <= MAX_ID_BYTES => Ok(v.clone()),
        Value::String(_) => Err(format!("requestId longer than {MAX_ID_BYTES} bytes")),
        Value::Number(_) => Ok(v.clone()),
        _ => Err("requestId must be a string or a number".into()),
    }
}

fn parse_render(
    object: &Map<String, Value>,
    request_id: Option<Value>,
    limits: &Limits,
) -> Result<RenderSpec, String> {
    let genome = match (object.get("genomeId"), object.get("genome")) {
        (_, Some(Value::Object(_))) => GenomeRef::Inline(
            serde_json::to_vec(&object["genome"]).map_err(|e| format!("genome: {e}"))?,
        ),
        (_, Some(Value::String(json))) => GenomeRef::Inline(json.as_bytes().to_vec()),
        (_, Some(_)) => return Err("genome must be an object or a JSON string".into()),
        (Some(Value::String(id)), None) if id.is_empty() => {
            return Err("genomeId must not be empty".into())
        }
        (Some(Value::String(id)), None) if id.len() > MAX_ID_BYTES => {
            return Err(format!("genomeId longer than {MAX_ID_BYTES} bytes"))
        }
        (Some(Value::String(id)), None) => GenomeRef::Id(id.clone()),
        (Some(_), None) => return Err("genomeId must be a string".into()),
        (None, None) => return Err("render needs a genomeId (or an inline genome)".into()),
    };
    let duration = match object.get("duration") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => return Err("duration must be a number of seconds".into()),
        None => return Err("render needs a duration in seconds".into()),
    };
    let min_duration = 2.0 / SAMPLE_RATE as f64;
    if !(duration.is_finite() && duration >= min_duration && duration <= limits.max_duration) {
        return Err(format!(
            "duration must be between {min_duration} and {} seconds, got {duration}",
            limits.max_duration
        ));
    }
    let note_delta = number(object, "noteDelta", 0.0)?;
    if note_delta.abs() > MAX_NOTE_DELTA {
        return Err(format!(
            "noteDelta must be within ±{MAX_NOTE_DELTA} semitones, got {note_delta}"
        ));
    }
    let velocity = number(object, "velocity", 0.5)?;
    if !(0.0..=1.0).contains(&velocity) {
        return Err(format!("velocity must be between 0 and 1, got {velocity}"));
    }
    let use_gpu = match object.get("useGPU") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("useGPU must be true or false".into()),
    };
    let seed = match object.get("seed") {
        None | Some(Value::Null) => RenderRequest::default().seed,
        Some(v) => v
            .as_u64()
            .ok_or("seed must be a non-negative integer below 2^64")?,
    };
    let chunk_samples = match object.get("chunkSamples") {
        None | Some(Value::Null) => DEFAULT_CHUNK_SAMPLES,
        Some(v) => match v.as_u64() {
            Some(n)
                if (n as usize).is_multiple_of(RENDER_QUANTUM)
                    && (RENDER_QUANTUM..=MAX_CHUNK_SAMPLES).contains(&(n as usize)) =>
            {
                n as usize
            }
            _ => {
                return Err(format!(
                    "chunkSamples must be a multiple of {RENDER_QUANTUM} between \
                     {RENDER_QUANTUM} and {MAX_CHUNK_SAMPLES}"
                ))
            }
        },
    };
    let format = match object.get("format") {
        None | Some(Value::Null) => Format::Json,
        Some(Value::String(s)) if s == "json" => Format::Json,
        Some(Value::String(s)) if s == "binary" => Format::Binary,
        Some(_) => return Err("format must be \"json\" or \"binary\"".into()),
    };
    Ok(RenderSpec {
        request_id,
        genome,
        request: RenderRequest {
            duration,
            note_delta,
            velocity,
            seed,
            ..RenderRequest::default()
        },
        use_gpu,
        chunk_samples,
        format,
    })
}

fn number(object: &Map<String, Value>, key: &str, default: f64) -> Result<f64, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("{key} must be a finite number")),
        Some(_) => Err(format!("{key} must be a number")),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `{"type":"X"` plus `,"requestId":...` when there is one; the caller closes the object.
pub(crate) fn open_message(out: &mut String, kind: &str, request_id: Option<&Value>) {
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push('"');
    if let Some(id) = request_id {
        out.push_str(",\"requestId\":");
        out.push_str(&id.to_string());
    }
}

pub fn welcome() -> String {
    format!(
        "{{\"type\":\"welcome\",\"message\":{},\"sampleRate\":{SAMPLE_RATE}}}",
        json_string(WELCOME_MESSAGE)
    )
}

pub fn error(request_id: Option<&Value>, message: &str) -> String {
    let mut out = String::new();
    open_message(&mut out, "error", request_id);
    let _ = write!(out, ",\"message\":{}}}", json_string(message));
    out
}

/// Sent before the first binary frame of a render, so the client can map the frames' stream id
/// to its request.
pub fn start(
    request_id: Option<&Value>,
    stream_id: u32,
    total_samples: usize,
    chunk_samples: usize,
) -> String {
    let mut out = String::new();
    open_message(&mut out, "start", request_id);
    let _ = write!(
        out,
        ",\"streamId\":{stream_id},\"format\":\"binary\",\"totalSamples\":{total_samples},\
         \"chunkSamples\":{chunk_samples},\"sampleRate\":{SAMPLE_RATE}}}"
    );
    out
}

/// What `complete` reports besides the seed protocol's fields.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub total_chunks: u64,
    pub total_samples: usize,
    pub duration: f64,
    pub min: f32,
    pub max: f32,
    pub peak: f32,
    pub render_ms: f64,
}

pub fn complete(request_id: Option<&Value>, c: &Completion) -> String {
    let mut out = String::new();
    open_message(&mut out, "complete", request_id);
    let num = |x: f64| Value::from(x).to_string();
    let _ = write!(
        out,
        ",\"totalChunks\":{},\"totalSamples\":{},\"duration\":{},\"sampleRate\":{SAMPLE_RATE},\
         \"min\":{},\"max\":{},\"peak\":{},\"renderMs\":{}}}",
        c.total_chunks,
        c.total_samples,
        num(c.duration),
        num(c.min as f64),
        num(c.max as f64),
        num(c.peak as f64),
        num((c.render_ms * 1000.0).round() / 1000.0),
    );
    out
}

/// The server's state, for monitoring and leak checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub connections: usize,
    /// Renders in progress (started, not yet complete, failed or cancelled).
    pub renders: usize,
    /// Of those, parked: their ring is full, waiting for the client to read.
    pub parked: usize,
    /// Renders without `requestId` waiting for the one before them on their connection.
    pub queued: usize,
    /// Render jobs waiting for a worker: new ones and resumed ones.
    pub waiting_new: usize,
    pub waiting_resumed: usize,
    pub cached_genomes: usize,
}

pub fn stats(request_id: Option<&Value>, s: &ServerStats) -> String {
    let mut out = String::new();
    open_message(&mut out, "stats", request_id);
    let _ = write!(
        out,
        ",\"connections\":{},\"renders\":{},\"parkedRenders\":{},\"queuedRenders\":{},\
         \"waitingNewJobs\":{},\"waitingResumedJobs\":{},\"cachedGenomes\":{}}}",
        s.connections,
        s.renders,
        s.parked,
        s.queued,
        s.waiting_new,
        s.waiting_resumed,
        s.cached_genomes
    );
    out
}

/// Answer to `cancel`: the render's stream ended early.
pub fn cancelled(request_id: &Value, chunks_sent: u64) -> String {
    let mut out = String::new();
    open_message(&mut out, "cancelled", Some(request_id));
    let _ = write!(out, ",\"chunksSent\":{chunks_sent}}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
        parse_client_message(text, &Limits::default())
    }

    fn render(text: &str) -> RenderSpec {
        match parse(text).unwrap() {
            ClientMessage::Render(spec) => *spec,
            other => panic!("{other:?}"),
        }
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().message
    }

    #[test]
    fn seed_request_gets_the_original_defaults() {
        let spec = render(r#"{"type":"render","genomeId":"01ABC","duration":5}"#);
        assert_eq!(spec.genome, GenomeRef::Id("01ABC".into()));
        assert_eq!(spec.request.duration, 5.0);
        assert_eq!(spec.request.note_delta, 0.0);
        assert_eq!(spec.request.velocity, 0.5);
        assert!(spec.use_gpu);
        assert_eq!(spec.chunk_samples, DEFAULT_CHUNK_SAMPLES);
        assert_eq!(spec.format, Format::Json);
        assert_eq!(spec.request_id, None);
    }

    #[test]
    fn extensions_are_parsed() {
        let spec = render(
            r#"{"type":"render","requestId":"r1","genome":{"a":1},"duration":0.5,
                "noteDelta":-12,"velocity":1,"useGPU":false,"seed":7,"chunkSamples":256,
                "format":"binary"}"#,
        );
        assert_eq!(spec.request_id, Some(Value::from("r1")));
        assert_eq!(spec.genome, GenomeRef::Inline(br#"{"a":1}"#.to_vec()));
        assert_eq!(spec.request.note_delta, -12.0);
        assert_eq!(spec.request.seed, 7);
        assert!(!spec.use_gpu);
        assert_eq!(spec.chunk_samples, 256);
        assert_eq!(spec.format, Format::Binary);
    }

    #[test]
    fn bad_input_is_named() {
        assert!(error_of("{nope").starts_with("Invalid JSON"));
        assert!(error_of("[1]").contains("JSON object"));
        assert_eq!(
            error_of(r#"{"type":"dance"}"#),
            "Unknown message type: dance"
        );
        assert_eq!(error_of(r#"{"duration":1}"#), "Message has no type");
        assert!(error_of(r#"{"type":"render","duration":1}"#).contains("genomeId"));
        assert!(error_of(r#"{"type":"render","genomeId":5,"duration":1}"#).contains("string"));
        assert!(error_of(r#"{"type":"render","genomeId":"x"}"#).contains("duration"));
        for d in ["-1", "0", "1e9", "\"5\"", "601"] {
            let e = error_of(&format!(
                r#"{{"type":"render","genomeId":"x","duration":{d}}}"#
            ));
            assert!(e.contains("duration"), "{d}: {e}");
        }
        let e = error_of(r#"{"type":"render","genomeId":"x","duration":1,"velocity":2}"#);
        assert!(e.contains("velocity"), "{e}");
        let e = error_of(r#"{"type":"render","genomeId":"x","duration":1,"chunkSamples":100}"#);
        assert!(e.contains("chunkSamples"), "{e}");
        let e = error_of(r#"{"type":"render","genomeId":"x","duration":1,"format":"mp3"}"#);
        assert!(e.contains("format"), "{e}");
        let e = error_of(r#"{"type":"render","genomeId":"x","duration":1,"noteDelta":1e6}"#);
        assert!(e.contains("noteDelta"), "{e}");
        assert!(error_of(r#"{"type":"cancel"}"#).contains("requestId"));
    }

    #[test]
    fn errors_echo_a_valid_request_id() {
        let e = parse(r#"{"type":"render","requestId":9,"genomeId":"x"}"#).unwrap_err();
        assert_eq!(e.request_id, Some(Value::from(9)));
        assert_eq!(
            error(e.request_id.as_ref(), &e.message),
            r#"{"type":"error","requestId":9,"message":"render needs a duration in seconds"}"#
        );
    }

    #[test]
    fn configured_max_duration_applies() {
        let limits = Limits { max_duration: 2.0 };
        let m = r#"{"type":"render","genomeId":"x","duration":3}"#;
        assert!(parse_client_message(m, &limits).is_err());
        assert!(parse(m).is_ok());
    }
    #[test]
    fn stats_is_a_message_with_counts() {
        assert_eq!(
            parse(r#"{"type":"stats","requestId":"s"}"#).unwrap(),
            ClientMessage::Stats {
                request_id: Some(Value::from("s"))
            }
        );
        let v: Value = serde_json::from_str(&stats(
            None,
            &ServerStats {
                renders: 3,
                ..ServerStats::default()
            },
        ))
        .unwrap();
        assert_eq!(
            (v["type"].as_str(), v["renders"].as_u64()),
            (Some("stats"), Some(3))
        );
    }

    #[test]
    fn welcome_is_the_originals() {
        let v: Value = serde_json::from_str(&welcome()).unwrap();
        assert_eq!(v["type"], "welcome");
        assert_eq!(v["message"], WELCOME_MESSAGE);
        assert_eq!(v["sampleRate"], 48000);
    }
}
