//! Test support for the processors, which must match web-audio-api 1.1.0 bit for bit:
//! deterministic signals, web-audio-api renders to compare with (whole graphs, one node fed by a
//! buffer source, AudioParam values through a probe), a minimal graph runner for our processors
//! shaped like web-audio-api's render loop (inputs summed with each node's channel config, params
//! computed from their own inputs, the destination mixing to its explicit channel count), a
//! block driver for one processor, and the exact comparison. Our side always runs with
//! denormals flushed, as web-audio-api's render thread does.

use super::denormals::FlushDenormals;
use super::param::{Param, INPUT_CHANNEL_CONFIG};
use super::{
    Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation, ParamDescriptor, Processor, Scope,
    DEFAULT_SAMPLE_RATE, RENDER_QUANTUM,
};
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

struct Node {
    processor: Box<dyn Processor>,
    config: ChannelConfig,
    inputs: Vec<usize>,
    params: Vec<Param>,
    param_inputs: Vec<Vec<usize>>,
}

/// Nodes run in the order they were added, so add sources first.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<Node>,
}

impl Graph {
    /// Adds a node whose params are built from `descriptors` and set to `values` with
    /// `set_value`, as web-audio-api node constructors do with their options.
    pub fn node(
        &mut self,
        processor: impl Processor + 'static,
        config: ChannelConfig,
        descriptors: &[ParamDescriptor],
        values: &[f32],
    ) -> usize {
        assert_eq!(descriptors.len(), values.len());
        let params = descriptors
            .iter()
            .zip(values)
            .map(|(d, &v)| {
                let mut p = Param::new(*d);
                p.set_value(v).unwrap();
                p
            })
            .collect();
        self.nodes.push(Node {
            processor: Box::new(processor),
            config,
            inputs: vec![],
            params,
            param_inputs: vec![vec![]; descriptors.len()],
        });
        self.nodes.len() - 1
    }

    pub fn param(&mut self, node: usize, index: usize) -> &mut Param {
        &mut self.nodes[node].params[index]
    }

    pub fn connect(&mut self, from: usize, to: usize) {
        assert!(from < to, "add nodes in processing order");
        self.nodes[to].inputs.push(from);
    }

    pub fn connect_param(&mut self, from: usize, to: usize, index: usize) {
        assert!(from < to, "add nodes in processing order");
        self.nodes[to].param_inputs[index].push(from);
    }

    /// Renders `frames` frames of `out` through a destination of `channels` channels.
    pub fn render(&mut self, out: usize, channels: usize, frames: usize) -> Vec<Vec<f32>> {
        let _ftz = FlushDenormals::new();
        let destination = ChannelConfig {
            count: channels,
            mode: ChannelCountMode::Explicit,
            interpretation: ChannelInterpretation::Speakers,
        };
        let mut outputs = vec![Bus::silent(); self.nodes.len()];
        let mut values = vec![[0.0; RENDER_QUANTUM]; 4];
        let mut rendered = vec![Vec::with_capacity(frames); channels];
        for block in 0..frames.div_ceil(RENDER_QUANTUM) {
            let scope = Scope {
                frame: (block * RENDER_QUANTUM) as u64,
                sample_rate: DEFAULT_SAMPLE_RATE as f32,
            };
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let mut input = Bus::silent();
                for &from in &node.inputs {
                    input.add(&outputs[from], &node.config);
                }
                let mut lens = [0; 4];
                for (k, param) in node.params.iter_mut().enumerate() {
                    let mut param_input = Bus::silent();
                    for &from in &node.param_inputs[k] {
                        param_input.add(&outputs[from], &INPUT_CHANNEL_CONFIG);
                    }
                    lens[k] = param.compute(&scope, &param_input, &mut values[k]);
                }
                let slices: Vec<&[f32]> = values
                    .iter()
                    .zip(lens)
                    .take(node.params.len())
                    .map(|(v, n)| &v[..n])
                    .collect();
                node.processor
                    .process(&input, &slices, &mut outputs[i], &scope);
            }
            let mut dest = Bus::silent();
            dest.add(&outputs[out], &destination);
            let take = (frames - block * RENDER_QUANTUM).min(RENDER_QUANTUM);
            for (c, r) in rendered.iter_mut().enumerate() {
                r.extend_from_slice(&dest.channel(c)[..take]);
            }
        }
        rendered
    }
}

/// Plays a fixed signal from frame 0, one channel per vector, then one silent channel.
pub struct Signal {
    channels: Vec<Vec<f32>>,
}

impl Signal {
    pub fn new(channels: Vec<Vec<f32>>) -> Self {
        Signal { channels }
    }
}

impl Processor for Signal {
    fn process(&mut self, _: &Bus, _: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool {
        let start = scope.frame as usize;
        let len = self.channels[0].len();
        if start >= len {
            output.make_silent();
            return false;
        }
        output.set_number_of_channels(self.channels.len());
        for (c, data) in self.channels.iter().enumerate() {
            let out = output.channel_mut(c);
            out.fill(0.);
            let end = (start + RENDER_QUANTUM).min(len);
            out[..end - start].copy_from_slice(&data[start..end]);
        }
        true
    }
}

/// Renders with web-audio-api 1.1.0: `build` creates and connects the nodes (its result, the
/// node handles, lives until rendering is done) and the context's `channels` channels come back.
pub fn oracle<T>(
    channels: usize,
    frames: usize,
    build: impl FnOnce(&OfflineAudioContext) -> T,
) -> Vec<Vec<f32>> {
    let mut ctx = OfflineAudioContext::new(channels, frames, DEFAULT_SAMPLE_RATE as f32);
    let handles = build(&ctx);
    let buffer = ctx.start_rendering_sync();
    drop(handles);
    (0..channels)
        .map(|c| buffer.get_channel_data(c).to_vec())
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
    src.set_buffer(AudioBuffer::from(
        channels.to_vec(),
        DEFAULT_SAMPLE_RATE as f32,
    ));
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
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
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
    let ctx = OfflineAudioContext::new(1, frames, DEFAULT_SAMPLE_RATE as f32);
    let mut one = ctx.create_constant_source();
    let gain = ctx.create_gain();
    gain.gain().set_automation_rate(rate);
    automate(gain.gain());
    one.connect(&gain);
    gain.connect(&ctx.destination());
    one.start();
    oracle_render(ctx, 0)
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
/// mismatching frame and its block. Silence compares like any other output: see
/// [`assert_bit_exact`] where the oracle must carry signal.
pub fn assert_same_bits(ours: &[f32], oracle: &[f32], what: &str) {
    assert_eq!(ours.len(), oracle.len(), "{what}: length");
    if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != oracle[i].to_bits()) {
        panic!(
            "{what}: first mismatch at frame {i} (block {}): ours {} oracle {} (max abs diff {})",
            i / RENDER_QUANTUM,
            ours[i],
            oracle[i],
            max_abs_diff(ours, oracle)
        );
    }
}

/// [`assert_same_bits`] of an oracle that is not all zeros: where a test means to exercise a
/// signal, a comparison of two silences would pass whatever the processor does.
pub fn assert_bit_exact(ours: &[f32], oracle: &[f32], what: &str) {
    assert!(
        oracle.iter().any(|&v| v != 0.0),
        "{what}: the oracle output is all zeros"
    );
    assert_same_bits(ours, oracle, what);
}
