//! Block-based Web-Audio-style DSP.
//!
//! Every algorithm here follows the Rust crate `web-audio-api` 1.1.0 (the DSP inside the
//! original's node-web-audio-api 0.21.5), down to the order of float operations, so that our
//! renders can be bit-identical to the reference renders. The runtime code is ours because a
//! render must be resumable block by block and must not allocate per block.

pub mod biquad;
pub mod buffer_source;
pub mod bus;
pub mod compressor;
pub mod convolver;
mod convolver_tail;
pub mod delay;
pub mod denormals;
pub mod gain;
pub mod oscillator;
pub mod param;
pub mod sample_array;
pub mod waveshaper;

#[cfg(test)]
mod testing;

pub use bus::{Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation};

/// Frames per block: the Web Audio render quantum.
pub const RENDER_QUANTUM: usize = 128;

/// Most channels any stream in a kromosynth graph carries: the channel merger inside the
/// wavetable and additive nodes has the Web Audio default of 6 inputs, so 6 channels (5.1).
pub const MAX_CHANNELS: usize = 6;

/// Sample rate of a render that asks for none (the original server's `SAMPLE_RATE`), in Hz.
/// Every processor takes the context rate as an argument (an f32, as in web-audio-api) and
/// derives its rate-dependent constants from it once, at construction or per block.
pub const DEFAULT_SAMPLE_RATE: u32 = 48_000;

/// Lowest and highest sample rates a render accepts: the range every browser's
/// OfflineAudioContext supports, from telephone quality to the highest studio rate.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// One channel of one block.
pub type Channel = [f32; RENDER_QUANTUM];

/// Where in the render a block sits. `frame` is the index of the block's first frame.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub frame: u64,
    pub sample_rate: f32,
}

impl Scope {
    /// The context time of the block's first frame, as web-audio-api computes it
    /// (`frame as f64 / sample_rate as f64`).
    pub fn current_time(&self) -> f64 {
        self.frame as f64 / self.sample_rate as f64
    }
}

/// Whether the CPU has AVX2 and FMA (see [`fma_dispatch`]).
#[inline(always)]
pub fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Calls `$this.$method(args)` compiled for AVX2 and FMA where the CPU has them (checked at
/// run time), else as is; `$method` must be `#[inline(always)]`, so that its body is compiled
/// inside the feature-enabled function. web-audio-api's interpolations are `mul_add`s, which
/// without the FMA instruction are calls to the C library's `fma`, and `floor` is a call too
/// without SSE4.1; per sample that is a good part of a block's time. The results are the same
/// bits either way: `mul_add` is a correctly rounded fused operation in both, `floor` is exact,
/// and the compiler never fuses or reorders other float operations on its own.
macro_rules! fma_dispatch {
    ($this:expr, $ty:ty, $method:ident($($arg:ident: $arg_ty:ty),*) -> $ret:ty) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn compiled_for_fma(this: &mut $ty, $($arg: $arg_ty),*) -> $ret {
                this.$method($($arg),*)
            }
            if $crate::dsp::fma_available() {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                unsafe { compiled_for_fma($this, $($arg),*) }
            } else {
                $this.$method($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $this.$method($($arg),*)
        }
    }};
}
pub(crate) use fma_dispatch;

/// `impl Processor for $ty` by its `#[inline(always)] fn process_block` (the same signature as
/// [`Processor::process`]), called through [`fma_dispatch`].
macro_rules! processor_via_fma {
    ($ty:ty) => {
        impl $crate::dsp::Processor for $ty {
            fn process(
                &mut self,
                input: &$crate::dsp::Bus,
                params: &[&[f32]],
                output: &mut $crate::dsp::Bus,
                scope: &$crate::dsp::Scope,
            ) -> bool {
                $crate::dsp::fma_dispatch!(
                    self,
                    $ty,
                    process_block(
                        input: &$crate::dsp::Bus,
                        params: &[&[f32]],
                        output: &mut $crate::dsp::Bus,
                        scope: &$crate::dsp::Scope
                    ) -> bool
                )
            }
        }
    };
}
pub(crate) use processor_via_fma;

/// A node's per-block audio processing: one input bus (already mixed to the node's channel
/// configuration), the node's AudioParam values for this block, one output bus.
///
/// Each param slice has length 1 (the value holds for the whole block) or `RENDER_QUANTUM`
/// (a-rate values, one per frame), as web-audio-api's `AudioParamValues`.
///
/// Returns whether the node still has a tail (web-audio-api's `tail_time`); the graph uses it
/// only for bookkeeping.
pub trait Processor: Send {
    fn process(&mut self, input: &Bus, params: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool;
}

/// Whether an AudioParam is computed per frame (a-rate) or once per block (k-rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutomationRate {
    A,
    K,
}

/// An AudioParam's fixed description, as web-audio-api's `AudioParamDescriptor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamDescriptor {
    pub name: &'static str,
    pub automation_rate: AutomationRate,
    pub default_value: f32,
    pub min_value: f32,
    pub max_value: f32,
}
