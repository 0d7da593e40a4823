//! krs-engine: a kromosynth genome becomes sound.
//!
//! Pure computation: genome JSON bytes in, blocks of mono f32 out at the request's sample rate (48 kHz by default). No sockets, no SQLite.

pub mod cppn;
pub mod difference;
pub mod dsp;
pub mod error;
pub mod fixtures;
pub mod genome;
pub mod gpu;
pub mod js_object;
pub mod patch;
pub mod render;

pub use dsp::{DEFAULT_SAMPLE_RATE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
pub use error::Error;
pub use gpu::{CppnBackend, Gpu};
pub use render::render_batch_with;
pub use render::{render_batch, CompiledGenome, Render, RenderRequest, Stats};
pub use render::{DEFAULT_MAX_DURATION_SECONDS, MAX_DURATION_SECONDS};
