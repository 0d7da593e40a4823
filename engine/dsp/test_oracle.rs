//! Shared pieces of the oracle tests that compare our effect processors with web-audio-api
//! 1.1.0: deterministic signals, the input bus a playing AudioBufferSourceNode delivers, and a
//! block driver that runs under the same floating-point mode as web-audio-api's render thread.

use super::{Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation, Scope};
use super::{RENDER_QUANTUM, SAMPLE_RATE};
use web_audio_api::context::{BaseAudioContext, OfflineAudioContext};
use web_audio_api::node::{AudioBufferSourceNode, AudioNode, AudioScheduledSourceNode};
use web_audio_api::AudioBuffer;

/// Render length of most oracle tests: a little over one second, deliberately not a multiple
/// of the render quantum.
pub const FRAMES: usize = 48_000 + 1_000 + 37;

/// Deterministic white noise in [-1, 1) (xorshift32).
pub fn noise(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// The output bus of a started AudioBufferSourceNode at playback rate 1 playing `channels`:
/// every channel carries signal until the buffer's last block, then one silent channel.
///
/// The buffer length must not be a multiple of the render quantum: then web-audio-api's f64
/// playhead clearly passes the end in the block holding the last sample, and the block after it
/// is the first silent one. (On an exact multiple, accumulated rounding decides whether one more
/// all-zero but non-silent block comes first.)
pub fn source_bus(channels: &[Vec<f32>], block: usize) -> Bus {
    let len = channels[0].len();
    // `is_multiple_of` is newer than the workspace's rust-version (1.80)
    #[allow(clippy::manual_is_multiple_of)]
    let on_grid = len % RENDER_QUANTUM == 0;
    assert!(!on_grid, "pick a length off the block grid");
    let mut bus = Bus::silent();
    let start = block * RENDER_QUANTUM;
    if start >= len {
        return bus;
    }
    bus.set_number_of_channels(channels.len());
    for (i, samples) in channels.iter().enumerate() {
        let out = bus.channel_mut(i);
        for (j, o) in out.iter_mut().enumerate() {
            *o = samples.get(start + j).copied().unwrap_or(0.0);
        }
    }
    bus
}

/// An oracle AudioBufferSourceNode playing `channels` from time 0.
pub fn oracle_source(ctx: &OfflineAudioContext, channels: &[Vec<f32>]) -> AudioBufferSourceNode {
    let mut src = ctx.create_buffer_source();
    src.set_buffer(AudioBuffer::from(channels.to_vec(), SAMPLE_RATE as f32));
    src.start();
    src
}

/// Renders the oracle context and returns its channel `channel`.
pub fn oracle_render(mut ctx: OfflineAudioContext, channel: usize) -> Vec<f32> {
    ctx.start_rendering_sync()
        .get_channel_data(channel)
        .to_vec()
}

/// Connects `node` to the context destination (a helper so tests read in signal order).
pub fn to_destination(ctx: &OfflineAudioContext, node: &dyn AudioNode) {
    node.connect(&ctx.destination());
}

/// Runs `block` for every render quantum of a `frames`-long render and collects what a
/// destination with `channels` channels would record in channel `channel`.
///
/// web-audio-api renders every quantum with denormals flushed to zero (FTZ/DAZ on x86), which
/// changes results wherever a value would be subnormal, so our side runs the same way.
pub fn render_ours(
    frames: usize,
    channels: usize,
    channel: usize,
    mut block: impl FnMut(&Scope) -> Bus,
) -> Vec<f32> {
    let destination = ChannelConfig {
        count: channels,
        mode: ChannelCountMode::Explicit,
        interpretation: ChannelInterpretation::Speakers,
    };
    let mut out = Vec::with_capacity(frames);
    let mut frame = 0u64;
    while out.len() < frames {
        let scope = Scope {
            frame,
            sample_rate: SAMPLE_RATE as f32,
        };
        let rendered = no_denormals::no_denormals(|| block(&scope));
        let mut dest = Bus::silent();
        dest.add(&rendered, &destination);
        let n = (frames - out.len()).min(RENDER_QUANTUM);
        out.extend_from_slice(&dest.channel(channel)[..n]);
        frame += RENDER_QUANTUM as u64;
    }
    out
}

/// Largest absolute difference; NaN counts as a difference unless both sides are NaN.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x.is_nan() && y.is_nan() {
                0.0
            } else if x.is_nan() || y.is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// Asserts bit-identical output (same bits, so -0.0 and 0.0 differ too), naming the first
/// mismatching frame.
pub fn assert_bit_exact(ours: &[f32], oracle: &[f32], what: &str) {
    assert_eq!(ours.len(), oracle.len(), "{what}: length");
    assert!(
        oracle.iter().any(|&v| v != 0.0),
        "{what}: the oracle output is all zeros"
    );
    if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != oracle[i].to_bits()) {
        panic!(
            "{what}: first mismatch at frame {i}: ours {} oracle {} (max abs diff {})",
            ours[i],
            oracle[i],
            max_abs_diff(ours, oracle)
        );
    }
}

/// The oracle's per-frame values of an AudioParam automation, read through a probe: a
/// ConstantSourceNode (offset 1) into a GainNode whose gain param gets `rate` and `automate`.
/// The gain multiplies by exactly 1.0, so the probe records the param values themselves, with
/// one caveat: a k-rate gain within 1e-6 of 0 or 1 is recorded as exactly 0 or 1 (GainNode's
/// mute and pass-through shortcuts).
pub fn oracle_param_values(
    frames: usize,
    rate: web_audio_api::AutomationRate,
    automate: impl FnOnce(&web_audio_api::AudioParam),
) -> Vec<f32> {
    let ctx = OfflineAudioContext::new(1, frames, SAMPLE_RATE as f32);
    let mut one = ctx.create_constant_source();
    let gain = ctx.create_gain();
    gain.gain().set_automation_rate(rate);
    automate(gain.gain());
    one.connect(&gain);
    gain.connect(&ctx.destination());
    one.start();
    oracle_render(ctx, 0)
}
