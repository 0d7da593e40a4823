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

/// 0.0, 1.0, 2.0, ...: a loop's counter as f64 loaded from here vectorizes where the counter
/// converted per iteration does not (x86 before AVX-512 has no vector integer-to-double
/// conversion); exact for any N below 2^53.
pub(crate) const fn counting<const N: usize>() -> [f64; N] {
    let mut values = [0.0; N];
    let mut i = 0;
    while i < N {
        values[i] = i as f64;
        i += 1;
    }
    values
}
