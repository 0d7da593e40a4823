//! Render: a compiled genome and a request become blocks of samples.
//!
//! PROVISIONAL: this module's public API is fixed (the server codes against it) but the body
//! is being written; until then `Render` yields silence of the right length.

pub mod order;
pub mod samples;

use crate::dsp::RENDER_QUANTUM;

/// Longest render the engine accepts, in seconds; the server may set a lower limit.
pub const MAX_DURATION_SECONDS: f64 = 3600.0;

/// What to render: the original's request fields plus the noise seed.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderRequest {
    /// Seconds; the render has `round(48000 * duration)` frames.
    pub duration: f64,
    /// Pitch shift in semitones.
    pub note_delta: f64,
    /// Scales the CPPN's periodic input, 0..=1.
    pub velocity: f64,
    /// Seed of the noise outputs' PRNG.
    pub seed: u64,
}

impl Default for RenderRequest {
    fn default() -> Self {
        RenderRequest {
            duration: 1.0,
            note_delta: 0.0,
            velocity: 0.5,
            seed: 0,
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

/// Why a genome or request cannot be rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderError(pub String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

/// A genome parsed and compiled once, shareable between renders (`Arc<CompiledGenome>`).
#[derive(Debug)]
pub struct CompiledGenome {
    _private: (),
}

impl CompiledGenome {
    /// Parses genome JSON in any of the kromosynth shapes (wrapped or bare, string-encoded
    /// layers) and compiles its CPPN and patch.
    pub fn from_json(bytes: &[u8]) -> Result<CompiledGenome, RenderError> {
        let _: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| RenderError(format!("invalid JSON: {e}")))?;
        Ok(CompiledGenome { _private: () })
    }
}

/// One render in progress. Yields one block of `RENDER_QUANTUM` frames per call and can be
/// paused between any two calls; the samples do not depend on how the blocks are pulled.
pub struct Render {
    total_frames: usize,
    position: usize,
    stats: Stats,
}

impl Render {
    pub fn new(_genome: &CompiledGenome, request: &RenderRequest) -> Result<Render, RenderError> {
        if !(request.duration.is_finite()
            && request.duration > 0.0
            && request.duration <= MAX_DURATION_SECONDS)
        {
            return Err(RenderError(format!(
                "duration must be a number in (0, {MAX_DURATION_SECONDS}] seconds, got {}",
                request.duration
            )));
        }
        Ok(Render {
            total_frames: (48_000.0 * request.duration).round() as usize,
            position: 0,
            stats: Stats::default(),
        })
    }

    pub fn total_frames(&self) -> usize {
        self.total_frames
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
        out.fill(0.0);
        self.position += n;
        n
    }

    /// min, max and peak of the frames rendered so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// Renders the whole request. With `normalize`, applies the original's batch normalization
/// (affine rescale of [min, max] to [-1, 1] only when a sample leaves [-1, 1]).
pub fn render_batch(
    genome: &CompiledGenome,
    request: &RenderRequest,
    normalize: bool,
) -> Result<Vec<f32>, RenderError> {
    let mut render = Render::new(genome, request)?;
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
        normalize_like_original(&mut out);
    }
    Ok(out)
}

/// kromosynth `normalizeAudioBuffer`: only if a sample leaves [-1, 1], every sample is mapped
/// affinely from [min, max] to [-1, 1].
pub fn normalize_like_original(samples: &mut [f32]) {
    let _ = samples;
}
