//! The wire protocol: client messages parsed into validated requests, server messages written
//! out. The seed protocol's messages and field names are kept exactly (see README "Protocol");
//! the extensions (`requestId`, `genome`, `chunkSamples`, `seed`, `format`, `cancel`, `stats`,
//! `normalize`, `compressor`) are opt-in, so a client that never sends them sees exactly the
//! original's messages. The newest original server's batch form (`batch`) and the one-shot
//! protocols of the worker port (kromosynth-cli's render worker, the PCM server) are parsed
//! here too.

use std::fmt::Write as _;

use krs_engine::dsp::RENDER_QUANTUM;
use krs_engine::render::post::Normalization;
use krs_engine::RenderRequest;
use serde_json::{Map, Value};

pub use krs_engine::DEFAULT_SAMPLE_RATE as SAMPLE_RATE;

/// Samples per chunk message unless the client asks otherwise: the original's capture worklet
/// posts 4096-sample chunks.
pub const DEFAULT_CHUNK_SAMPLES: usize = 4096;

/// Largest `chunkSamples`: 65536 samples are 1.4 s of audio, a 256 KiB binary frame or about
/// 1.4 MB of JSON, which bounds one message in the connection's write buffer.
pub const MAX_CHUNK_SAMPLES: usize = 65_536;

pub use krs_engine::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// Largest `batchChannels` accepted (the newest original server's legacy renderer makes a
/// context of that many channels; 32 is Web Audio's limit).
pub const MAX_BATCH_CHANNELS: u64 = 32;

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

/// What a render's client gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Chunks while it renders (the seed protocol; `format` says JSON or binary).
    Stream,
    /// The newest original server's batch form: `batch-result`, one binary frame with the whole
    /// render, `complete` (see [`batch_result`]).
    Batch,
    /// kromosynth-cli's render worker: one binary message of the samples as f32, no greeting
    /// before it; the server closes after it. Failures: text `{"error": ...}`.
    Worker,
    /// The PCM server (`get_audio_data`): one binary message of 16-bit PCM; an empty binary
    /// message on failure.
    Pcm,
}

/// Where the genome comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum GenomeRef {
    Id(String),
    /// A genome of one kromosynth-cli evolution run (`genomeId` with `evoRunId`).
    InRun {
        run: String,
        id: String,
    },
    /// Genome JSON sent in the request (`genome` as an object or as a JSON string).
    Inline(Vec<u8>),
}

impl GenomeRef {
    /// For logs.
    pub fn label(&self) -> String {
        match self {
            GenomeRef::Id(id) => id.clone(),
            GenomeRef::InRun { run, id } => format!("{run}/{id}"),
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
    /// What the client gets back.
    pub form: Form,
    /// Applied to the whole render before it is sent; anything but `None` holds the stream's
    /// first chunk until the render is complete.
    pub normalize: Normalization,
    /// The newest original server's limiter before the destination; `None`: the server's
    /// default (`--compressor`, `USE_COMPRESSOR`).
    pub compressor: Option<bool>,
}

impl RenderSpec {
    /// Whether the render is sent only once it is complete (batch form, or normalized).
    pub fn is_held(&self) -> bool {
        self.form != Form::Stream || self.normalize != Normalization::None
    }
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
    /// The original browser example's playback clock, sent while it plays; no reply (the
    /// newest original server ignores it too: the socket's backpressure paces streams here).
    PlaybackPosition,
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
        "playback-position" => Ok(ClientMessage::PlaybackPosition),
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

/// Why a one-shot request (render worker or PCM) failed, and in which form to say so.
#[derive(Clone, Debug, PartialEq)]
pub struct OneShotError {
    pub form: Form,
    pub message: String,
}

/// Parses one text message of the one-shot protocols: kromosynth-cli's render worker (no
/// `type`) or the PCM server's `get_audio_data`. Their options are the original's: each one
/// this renderer does not implement is refused by name when it is asked for, never ignored.
pub fn parse_one_shot(text: &str, limits: &Limits) -> Result<RenderSpec, OneShotError> {
    let worker = |message: String| OneShotError {
        form: Form::Worker,
        message,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| worker(format!("Invalid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(worker("Invalid message: expected a JSON object".into()));
    };
    let form = match object.get("type") {
        None | Some(Value::Null) => Form::Worker,
        Some(Value::String(kind)) if kind == "get_audio_data" => Form::Pcm,
        Some(other) => {
            return Err(worker(format!(
                "Unknown message type: {}",
                truncate(&other.to_string(), MAX_ID_BYTES)
            )))
        }
    };
    parse_one_shot_render(&object, form, limits).map_err(|message| OneShotError { form, message })
}

fn parse_one_shot_render(
    object: &Map<String, Value>,
    form: Form,
    limits: &Limits,
) -> Result<RenderSpec, String> {
    let genome =
        match (
            object.get("genomeString").filter(|v| !v.is_null()),
            object.get("genomeId").filter(|v| !v.is_null()),
        ) {
            (Some(Value::String(json)), _) => GenomeRef::Inline(json.as_bytes().to_vec()),
            // The PCM server also takes the genome as an object.
            (Some(v @ Value::Object(_)), _) if form == Form::Pcm => {
                GenomeRef::Inline(serde_json::to_vec(v).map_err(|e| format!("genomeString: {e}"))?)
            }
            (Some(_), _) => return Err("genomeString must be the genome as a JSON string".into()),
            (None, Some(Value::String(id))) if !id.is_empty() && id.len() <= MAX_ID_BYTES => {
                match object.get("evoRunId").filter(|v| !v.is_null()) {
                    None => GenomeRef::Id(id.clone()),
                    Some(Value::String(run)) if is_run_name(run) => GenomeRef::InRun {
                        run: run.clone(),
                        id: id.clone(),
                    },
                    Some(_) => return Err(
                        "evoRunId must be the name of an evolution run folder (letters, digits, \
                         '_', '-', '.')"
                            .into(),
                    ),
                }
            }
            (None, Some(_)) => {
                return Err(format!(
                    "genomeId must be a non-empty string of at most {MAX_ID_BYTES} bytes"
                ))
            }
            (None, None) if object.get("genomeStringUrl").is_some_and(|v| !v.is_null()) => {
                return Err(
                    "genomeStringUrl is not supported (this server fetches nothing from \
                        the network): send genomeString, or genomeId with evoRunId"
                        .into(),
                )
            }
            (None, None) => {
                return Err("Must provide either genomeId or genomeString".into());
            }
        };
    let request = sound(object, limits)?;
    for (field, what) in [
        ("reverse", "reversed CPPN input"),
        (
            "useOvertoneInharmonicityFactors",
            "overtone inharmonicity factors",
        ),
    ] {
        if flag(object, field)? == Some(true) {
            return Err(format!(
                "{field} is not supported by this renderer ({what})"
            ));
        }
    }
    // The PCM server passes it on, and both of its branches render with the request's values.
    flag(object, "overrideGenomeDurationNoteDeltaAndVelocity")?;
    for field in ["sampleCountToActivate", "sampleOffset"] {
        if object.get(field).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{field} is not supported by this renderer (partial CPPN activation); \
                 leave it out to render the whole duration"
            ));
        }
    }
    let use_gpu = flag(object, "useGPU")?.unwrap_or(false);
    Ok(RenderSpec {
        request_id: None,
        genome,
        request,
        use_gpu,
        chunk_samples: DEFAULT_CHUNK_SAMPLES,
        format: Format::Binary,
        form,
        // The original render worker and PCM server answer what kromosynth's renderer returns:
        // normalized like this project's `render` command.
        normalize: Normalization::Original,
        compressor: None,
    })
}

/// A run folder's name: no separators, no `..`, nothing hidden.
fn is_run_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ID_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn request_id(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) if s.len() <= MAX_ID_BYTES => Ok(v.clone()),
        Value::String(_) => Err(format!("requestId longer than {MAX_ID_BYTES} bytes")),
        Value::Number(_) => Ok(v.clone()),
        _ => Err("requestId must be a string or a number".into()),
    }
}

/// What every form of render request says about the sound: duration, noteDelta, velocity,
/// sampleRate and kromosynth's two CPPN options, validated. The seed is the render's default;
/// the caller sets the rest.
fn sound(object: &Map<String, Value>, limits: &Limits) -> Result<RenderRequest, String> {
    let sample_rate = match object.get("sampleRate") {
        None | Some(Value::Null) => SAMPLE_RATE,
        Some(v) => match v.as_u64() {
            Some(rate) if (MIN_SAMPLE_RATE as u64..=MAX_SAMPLE_RATE as u64).contains(&rate) => {
                rate as u32
            }
            _ => {
                return Err(format!(
                    "sampleRate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}"
                ))
            }
        },
    };
    let duration = match object.get("duration") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => return Err("duration must be a number of seconds".into()),
        None => return Err("render needs a duration in seconds".into()),
    };
    // At least two samples, as kromosynth needs; the bound is inclusive, as the README says.
    let min_duration = 2.0 / sample_rate as f64;
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
    let request = RenderRequest {
        duration,
        note_delta,
        velocity,
        sample_rate,
        anti_aliasing: flag(object, "antiAliasing")?.unwrap_or(false),
        frequency_updates_apply_to_all_outputs: flag(
            object,
            "frequencyUpdatesApplyToAllPathcNetworkOutputs",
        )?
        .unwrap_or(false),
        ..RenderRequest::default()
    };
    Ok(request)
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
    let request = sound(object, limits)?;
    let use_gpu = flag(object, "useGPU")?.unwrap_or(true);
    let batch = flag(object, "batch")?.unwrap_or(false);
    // The newest original server's flags: `controlledResume` changes nothing there either, and
    // `legacyBatch` picks its older renderer, which gives the same sound; both are checked and
    // otherwise ignored, as is `batchChannels` (the older renderer's channel count, whose
    // channels are summed: a mono render sums to itself).
    flag(object, "controlledResume")?;
    flag(object, "legacyBatch")?;
    if let Some(v) = object.get("batchChannels").filter(|v| !v.is_null()) {
        if !v
            .as_u64()
            .is_some_and(|n| (1..=MAX_BATCH_CHANNELS).contains(&n))
        {
            return Err(format!(
                "batchChannels must be an integer from 1 to {MAX_BATCH_CHANNELS}"
            ));
        }
    }
    let normalize = match object.get("normalize") {
        None | Some(Value::Null) if batch => Normalization::Peak,
        None | Some(Value::Null) => Normalization::None,
        Some(Value::String(name)) => Normalization::from_name(name)
            .ok_or_else(|| format!("normalize must be one of {}", normalization_names()))?,
        Some(_) => {
            return Err(format!(
                "normalize must be one of {}",
                normalization_names()
            ))
        }
    };
    let compressor = flag(object, "compressor")?;
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
        request: RenderRequest { seed, ..request },
        use_gpu,
        chunk_samples,
        format,
        form: if batch { Form::Batch } else { Form::Stream },
        normalize,
        compressor,
    })
}

/// An optional boolean field.
fn flag(object: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{key} must be true or false")),
    }
}

fn normalization_names() -> String {
    Normalization::NAMES
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ")
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

/// A render refused for want of resources: the error, with `retryAfter` (seconds) when
/// retrying can succeed.
pub fn refused(request_id: Option<&Value>, message: &str, retry_after: Option<u32>) -> String {
    let mut out = String::new();
    open_message(&mut out, "error", request_id);
    let _ = write!(out, ",\"message\":{}", json_string(message));
    if let Some(seconds) = retry_after {
        let _ = write!(out, ",\"retryAfter\":{seconds}");
    }
    out.push('}');
    out
}

/// kromosynth-cli's render worker's failure answer: `{"error": message}`, no type.
pub fn worker_error(message: &str) -> String {
    format!("{{\"error\":{}}}", json_string(message))
}

/// The batch form's first message: what the one binary frame after it holds (`totalSamples`
/// little-endian f32 samples, no header). The newest original server's fields and order.
pub fn batch_result(
    request_id: Option<&Value>,
    total_samples: usize,
    duration: f64,
    sample_rate: u32,
) -> String {
    let mut out = String::new();
    open_message(&mut out, "batch-result", request_id);
    let _ = write!(
        out,
        ",\"totalSamples\":{total_samples},\"duration\":{},\"sampleRate\":{sample_rate}}}",
        Value::from(duration)
    );
    out
}

/// The batch form's last message, after the binary frame: the newest original server's
/// `complete`, one chunk.
pub fn batch_complete(
    request_id: Option<&Value>,
    total_samples: usize,
    duration: f64,
    sample_rate: u32,
) -> String {
    let mut out = String::new();
    open_message(&mut out, "complete", request_id);
    let _ = write!(
        out,
        ",\"totalChunks\":1,\"totalSamples\":{total_samples},\"duration\":{},\
         \"sampleRate\":{sample_rate}}}",
        Value::from(duration)
    );
    out
}

/// Sent before the first binary frame of a render, so the client can map the frames' stream id
/// to its request.
pub fn start(
    request_id: Option<&Value>,
    stream_id: u32,
    total_samples: usize,
    chunk_samples: usize,
    sample_rate: u32,
) -> String {
    let mut out = String::new();
    open_message(&mut out, "start", request_id);
    let _ = write!(
        out,
        ",\"streamId\":{stream_id},\"format\":\"binary\",\"totalSamples\":{total_samples},\
         \"chunkSamples\":{chunk_samples},\"sampleRate\":{sample_rate}}}"
    );
    out
}

/// What `complete` reports besides the seed protocol's fields.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub total_chunks: u64,
    pub total_samples: usize,
    pub duration: f64,
    pub sample_rate: u32,
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
        ",\"totalChunks\":{},\"totalSamples\":{},\"duration\":{},\"sampleRate\":{},\
         \"min\":{},\"max\":{},\"peak\":{},\"renderMs\":{}}}",
        c.total_chunks,
        c.total_samples,
        num(c.duration),
        c.sample_rate,
        num(c.min as f64),
        num(c.max as f64),
        num(c.peak as f64),
        num((c.render_ms * 1000.0).round() / 1000.0),
    );
    out
}

/// The server's state, for monitoring and leak checks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerStats {
    pub connections: usize,
    /// Renders in progress (started, not yet complete, failed or cancelled).
    pub renders: usize,
    /// Of those, parked: their ring is full, waiting for the client to read.
    pub parked: usize,
    /// Renders without `requestId` waiting for the one before them on their connection.
    pub queued: usize,
    /// Whole-result renders waiting for room in the CPU budget or for the first chunks ahead
    /// of them.
    pub waiting_for_cpu: usize,
    /// Renders whose first chunk is not rendered yet (waiting for a worker, preparing, or
    /// rendering it).
    pub starting: usize,
    /// Render jobs waiting for a worker: those yet to send their first chunk, and the others.
    pub waiting_new: usize,
    pub waiting_resumed: usize,
    pub cached_genomes: usize,
    pub refused_connections: u64,
    pub stalled_renders: u64,
    pub idle_closed: u64,
    /// Bytes reserved by renders in progress and held renders, and the server's budget.
    pub memory_reserved: u64,
    pub memory_budget: u64,
    /// Millionths of a core that the renders in progress need to play in real time (each its
    /// measured cost, or its estimate until measured), and the server's budget of them.
    pub cpu_reserved: u64,
    pub cpu_budget: u64,
    /// The process's CPU per CPU of rendering turns, by which measured costs are scaled.
    pub cpu_overhead: f64,
}

pub fn stats(request_id: Option<&Value>, s: &ServerStats) -> String {
    let mut out = String::new();
    open_message(&mut out, "stats", request_id);
    let _ = write!(
        out,
        ",\"connections\":{},\"renders\":{},\"parkedRenders\":{},\"queuedRenders\":{},\
         \"cpuWaitingRenders\":{},\"startingRenders\":{},\"waitingNewJobs\":{},\
         \"waitingResumedJobs\":{},\"cachedGenomes\":{},\
         \"refusedConnections\":{},\"stalledRenders\":{},\"idleClosed\":{},\
         \"memoryReserved\":{},\"memoryBudget\":{},\"load\":{},\"cpuReserved\":{},\
         \"cpuBudget\":{},\"cpuOverhead\":{}}}",
        s.connections,
        s.renders,
        s.parked,
        s.queued,
        s.waiting_for_cpu,
        s.starting,
        s.waiting_new,
        s.waiting_resumed,
        s.cached_genomes,
        s.refused_connections,
        s.stalled_renders,
        s.idle_closed,
        s.memory_reserved,
        s.memory_budget,
        Value::from((s.cpu_reserved as f64 / s.cpu_budget.max(1) as f64 * 1e3).round() / 1e3),
        s.cpu_reserved,
        s.cpu_budget,
        Value::from((s.cpu_overhead * 1e3).round() / 1e3)
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
    fn batch_defaults_to_the_newest_servers_peak_normalization() {
        let spec = render(r#"{"type":"render","genomeId":"x","duration":1,"batch":true}"#);
        assert!(spec.form == Form::Batch && spec.is_held());
        assert_eq!(spec.normalize, Normalization::Peak);
        assert_eq!(spec.compressor, None);
        let spec = render(
            r#"{"type":"render","genomeId":"x","duration":1,"batch":true,"normalize":"none",
                "compressor":true}"#,
        );
        assert_eq!(spec.normalize, Normalization::None);
        assert_eq!(spec.compressor, Some(true));
        let spec = render(r#"{"type":"render","genomeId":"x","duration":1}"#);
        assert!(spec.form == Form::Stream && !spec.is_held());
        let spec =
            render(r#"{"type":"render","genomeId":"x","duration":1,"normalize":"original"}"#);
        assert!(spec.form == Form::Stream && spec.is_held());
        assert_eq!(
            parse(r#"{"type":"playback-position","position":1.5}"#).unwrap(),
            ClientMessage::PlaybackPosition
        );
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
                waiting_for_cpu: 2,
                ..ServerStats::default()
            },
        ))
        .unwrap();
        assert_eq!(
            (
                v["type"].as_str(),
                v["renders"].as_u64(),
                v["cpuWaitingRenders"].as_u64()
            ),
            (Some("stats"), Some(3), Some(2))
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
