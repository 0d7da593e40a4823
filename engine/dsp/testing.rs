//! Test support: a minimal graph runner for our processors, shaped like web-audio-api's render
//! loop (inputs summed with each node's channel config, params computed from their own inputs,
//! the destination mixing to its explicit channel count, denormals flushed), and exact
//! comparison against web-audio-api 1.1.0 renders.

use super::denormals::FlushDenormals;
use super::param::{Param, INPUT_CHANNEL_CONFIG};
use super::{
    Bus, ChannelConfig, ChannelCountMode, ChannelInterpretation, ParamDescriptor, Processor, Scope,
    RENDER_QUANTUM, SAMPLE_RATE,
};

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
                sample_rate: SAMPLE_RATE as f32,
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

/// Deterministic white noise in [-1, 1) (xorshift32).
pub fn noise(seed: u32, len: usize) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.
        })
        .collect()
}

/// Asserts bit-identical samples, reporting the first differing block and the largest error.
pub fn assert_bit_exact(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths differ");
    let mut first = None;
    let mut max_err = 0.0_f32;
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if a.to_bits() != b.to_bits() {
            first.get_or_insert(i);
            max_err = max_err.max((a - b).abs());
        }
    }
    if let Some(i) = first {
        panic!(
            "{what}: first difference at frame {i} (block {}): ours {} theirs {}; max abs error {max_err:e}",
            i / RENDER_QUANTUM,
            ours[i],
            theirs[i]
        );
    }
}

/// Renders with web-audio-api 1.1.0: `build` creates and connects the nodes (its result, the
/// node handles, lives until rendering is done) and the context's `channels` channels come back.
pub fn oracle<T>(
    channels: usize,
    frames: usize,
    build: impl FnOnce(&web_audio_api::context::OfflineAudioContext) -> T,
) -> Vec<Vec<f32>> {
    let mut ctx =
        web_audio_api::context::OfflineAudioContext::new(channels, frames, SAMPLE_RATE as f32);
    let handles = build(&ctx);
    let buffer = ctx.start_rendering_sync();
    drop(handles);
    (0..channels)
        .map(|c| buffer.get_channel_data(c).to_vec())
        .collect()
}
