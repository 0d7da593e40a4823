//! DelayNode, following web-audio-api 1.1.0 `src/node/delay.rs` (with the cycle handling of
//! `src/render/graph.rs`).
//!
//! web-audio-api splits a DelayNode into two graph nodes that share a ring buffer of render
//! quanta: a *writer* (the node's input; it stores the input block and outputs silence) and a
//! *reader* (the node's output; it reads the ring at the delayed position). The writer is
//! connected to the reader so that, in an acyclic graph, the writer runs first and delays
//! shorter than one quantum (even 0) work. The writer is marked as a cycle breaker: when the
//! graph sort finds a cycle through a DelayNode, it deletes the writer -> reader edge, so the
//! reader runs before the writer in that cycle, and the reader then clamps the delay to at least
//! one render quantum.
//!
//! [`Delay`] keeps both halves in one value: [`Delay::write`] is the writer, [`Delay::read`] the
//! reader, and [`Processor::process`] runs both, writer first, for a delay that is not a cycle
//! breaker. Like web-audio-api the reader notices which case it is in by itself: if the writer
//! has not stored the current block when the reader runs, the delay is in a cycle (sticky).
//!
//! # Placing the halves in the processing order (for the graph integrator)
//!
//! - Not in a cycle: process the delay as one ordinary node ([`Processor::process`]) at its
//!   place in the topological order. Doing the write immediately before the read is equivalent
//!   to web-audio-api's separate writer and reader nodes, because the ring is private to them.
//! - Cycle breaker: call [`Delay::read`] where the reader sits (it has no graph inputs, so it
//!   can go first in the block) and [`Delay::write`] where the writer sits (it has no graph
//!   outputs, so after everything that feeds it). The reader always precedes the writer there:
//!   the cycle runs from the reader's output back to the writer's input.
//! - Which DelayNode breaks a cycle follows web-audio-api's depth-first sort: nodes are visited
//!   in ascending node id (the writer's id is allocated first, then the reader's, then the
//!   delayTime param's); when the walk meets a node already on its stack, the first cycle
//!   breaker (writer) on the stack from that node onwards loses its outgoing edge (writer ->
//!   reader) and the sort restarts. A cycle holding two delays gets only one of them broken,
//!   the other stays an ordinary delay. Cycles without a DelayNode are removed from the
//!   ordering (their nodes never run, so their outputs stay silent).
//!
//! # Facts
//!
//! - Input channel config: Web Audio default (2, max, speakers). The ring keeps one channel
//!   count for all its blocks; when an input arrives with another count, every stored block is
//!   up/down-mixed (speakers) to it first. The output has the ring's channel count.
//! - The output is one silent channel when no sample of the block is a normal float (all zero
//!   or subnormal): web-audio-api then outputs its silence buffer.
//! - The reader reports a tail forever (web-audio-api's reader returns true until the writer is
//!   dropped, which our graphs never do).

use super::{
    AutomationRate, Bus, ChannelConfig, ChannelInterpretation, ParamDescriptor, Processor, Scope,
    RENDER_QUANTUM,
};

/// Where frame i of the output reads in the ring: the slot and frame of the sample at or before
/// the delayed position, and the weight of the sample after it.
#[derive(Clone, Copy, Default)]
struct Tap {
    block: usize,
    frame: usize,
    k: f32,
}

/// A DelayNode: ring buffer, writer and reader.
pub struct Delay {
    /// One ring per channel the delay holds (their number is its channel count), `ring_len`
    /// slots of `RENDER_QUANTUM` floats each, or empty while every sample stored in that
    /// channel has been +0.0 (then reading it gives +0.0, as the zeroed ring would). A 1 s delay line is 188 KiB per channel, and the
    /// channel merger that often feeds one has six channels of which kromosynth fills one.
    rings: Vec<Vec<f32>>,
    ring_len: usize,
    /// Slots written so far (at most `ring_len`): slots 0..written, the writer starts at 0.
    /// The others still hold their initial zeros.
    written: usize,
    write_index: usize,
    read_index: usize,
    /// Frame of the last block the writer stored (web-audio-api starts at u64::MAX).
    latest_frame_written: u64,
    in_cycle: bool,
    /// Scratch for re-mixing stored blocks when the input channel count changes.
    remix: Bus,
}

impl Delay {
    /// delayTime for the default maxDelayTime (1 s); see [`Delay::params`] for other maxima.
    pub const PARAMS: &'static [ParamDescriptor] = &[ParamDescriptor {
        name: "delayTime",
        automation_rate: AutomationRate::A,
        default_value: 0.0,
        min_value: 0.0,
        max_value: 1.0,
    }];

    /// The delayTime descriptor for `max_delay_time`: web-audio-api clamps the param to
    /// `[0, max_delay_time as f32]`.
    pub fn params(max_delay_time: f64) -> [ParamDescriptor; 1] {
        [ParamDescriptor {
            max_value: max_delay_time as f32,
            ..Self::PARAMS[0]
        }]
    }

    /// The DelayNode's input channel configuration (the Web Audio default).
    pub fn channel_config() -> ChannelConfig {
        ChannelConfig::DEFAULT
    }

    /// A delay line for delays up to `max_delay_time` seconds (web-audio-api requires
    /// 0 < max < 180; kromosynth uses the default 1 and 5 for its feedback delay).
    ///
    /// The ring holds `ceil(max * rate / 128) + 1` blocks: one more than the longest delay
    /// needs, so the reader never reads the slot the writer is about to fill.
    pub fn new(max_delay_time: f64, sample_rate: f32) -> Self {
        assert!(
            max_delay_time > 0. && max_delay_time < 180.,
            "maxDelayTime must be in (0, 180) s"
        );
        let quanta = (max_delay_time * sample_rate as f64 / RENDER_QUANTUM as f64).ceil() as usize;
        let ring_len = quanta + 1;
        Delay {
            rings: vec![Vec::new()],
            ring_len,
            written: 0,
            write_index: 0,
            read_index: 0,
            latest_frame_written: u64::MAX,
            in_cycle: false,
            remix: Bus::silent(),
        }
    }

    /// Whether the reader has found itself running before the writer (a cycle breaker).
    pub fn in_cycle(&self) -> bool {
        self.in_cycle
    }

    /// The writer half: stores this block's input (already mixed with
    /// [`Delay::channel_config`]).
    pub fn write(&mut self, input: &Bus, scope: &Scope) {
        let channels = input.number_of_channels();
        if channels != self.rings.len() {
            self.remix_ring(channels);
        }
        for (c, ring) in self.rings.iter_mut().enumerate() {
            store(ring, self.ring_len, self.write_index, input.channel(c));
        }
        self.write_index = (self.write_index + 1) % self.ring_len;
        self.written = (self.written + 1).min(self.ring_len);
        self.latest_frame_written = scope.frame;
    }

    /// The reader half: the delayed signal for this block. `params[0]` is delayTime (length 1
    /// or `RENDER_QUANTUM`), already clamped to `[0, maxDelayTime]` by the param.
    pub fn read(&mut self, params: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool {
        super::fma_dispatch!(self, Delay, read_block(params: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool)
    }

    #[inline(always)]
    fn read_block(&mut self, params: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool {
        if !self.in_cycle {
            self.in_cycle = self.latest_frame_written != scope.frame;
        }

        let delay = params[0];
        let sample_rate = scope.sample_rate as f64;
        let dt = 1. / sample_rate;
        let quantum_duration = RENDER_QUANTUM as f64 * dt;
        let at = |d: f32, i: usize| {
            tap(
                f64::from(d),
                self.in_cycle,
                i as f64,
                quantum_duration,
                sample_rate,
                self.ring_len as i32,
                self.read_index as i32,
            )
        };

        let mut taps = [Tap::default(); RENDER_QUANTUM];
        if delay.len() == 1 {
            // web-audio-api computes the first tap only and walks frame by frame from there,
            // so `k` stays that of frame 0 (per-frame computation could round differently).
            taps[0] = at(delay[0], 0);
            for i in 1..RENDER_QUANTUM {
                let Tap { block, frame, k } = taps[i - 1];
                taps[i] = if frame + 1 >= RENDER_QUANTUM {
                    Tap {
                        block: next_slot(block, self.ring_len),
                        frame: 0,
                        k,
                    }
                } else {
                    Tap {
                        block,
                        frame: frame + 1,
                        k,
                    }
                };
            }
        } else {
            for (i, (t, &d)) in taps.iter_mut().zip(delay).enumerate() {
                *t = at(d, i);
            }
        }

        output.make_silent();
        output.set_number_of_channels(self.rings.len());
        let mut active = false;
        for (c, ring) in self.rings.iter().enumerate() {
            let out = output.channel_mut(c);
            if ring.is_empty() {
                out.fill(0.0);
                continue;
            }
            for (o, t) in out.iter_mut().zip(taps.iter()) {
                let (next_block, next_frame) = if t.frame + 1 >= RENDER_QUANTUM {
                    (next_slot(t.block, self.ring_len), 0)
                } else {
                    (t.block, t.frame + 1)
                };
                let prev = ring[t.block * RENDER_QUANTUM + t.frame];
                let next = ring[next_block * RENDER_QUANTUM + next_frame];
                let value = (1. - t.k).mul_add(prev, t.k * next);
                active |= value.is_normal();
                *o = value;
            }
        }
        if !active {
            output.make_silent();
        }

        self.read_index = (self.read_index + 1) % self.ring_len;
        true
    }

    /// Mixes every stored block to `channels`, as web-audio-api's writer does before storing an
    /// input whose channel count differs from the ring's. Slots never written are zeros, which
    /// mix to zeros, so only the written ones are mixed; the rest of the new ring stays
    /// untouched (this happens on the first block, where touching a whole long ring would be
    /// most of the time to first audio).
    fn remix_ring(&mut self, channels: usize) {
        let mut rings = vec![Vec::new(); channels];
        for slot in 0..self.written {
            self.remix.make_silent();
            self.remix.set_number_of_channels(self.rings.len());
            for (c, ring) in self.rings.iter().enumerate() {
                let dst = self.remix.channel_mut(c);
                if ring.is_empty() {
                    dst.fill(0.0);
                } else {
                    dst.copy_from_slice(&ring[slot * RENDER_QUANTUM..][..RENDER_QUANTUM]);
                }
            }
            self.remix.mix(channels, ChannelInterpretation::Speakers);
            for (c, ring) in rings.iter_mut().enumerate() {
                store(ring, self.ring_len, slot, self.remix.channel(c));
            }
        }
        self.rings = rings;
    }

    /// Bytes of ring storage (channels that have only held +0.0 take none).
    pub fn ring_bytes(&self) -> usize {
        self.rings
            .iter()
            .map(|r| r.len() * std::mem::size_of::<f32>())
            .sum()
    }
}

impl Processor for Delay {
    /// Writer then reader: a DelayNode that is not a cycle breaker.
    fn process(&mut self, input: &Bus, params: &[&[f32]], output: &mut Bus, scope: &Scope) -> bool {
        self.write(input, scope);
        self.read(params, output, scope)
    }
}

/// Stores one block of a channel in slot `slot` of its ring, creating the ring (zeroed) on the
/// first block that is not all +0.0.
#[inline]
fn store(ring: &mut Vec<f32>, ring_len: usize, slot: usize, block: &[f32]) {
    if ring.is_empty() {
        // Bits, not values: a -0.0 must be stored, it can reach the output as -0.0.
        if block.iter().all(|s| s.to_bits() == 0) {
            return;
        }
        *ring = vec![0.0; ring_len * RENDER_QUANTUM];
    }
    ring[slot * RENDER_QUANTUM..][..RENDER_QUANTUM].copy_from_slice(block);
}

/// `(slot + 1) % ring_len` for a slot of the ring, without a division per sample.
#[inline(always)]
fn next_slot(slot: usize, ring_len: usize) -> usize {
    debug_assert!(slot < ring_len);
    if slot + 1 == ring_len {
        0
    } else {
        slot + 1
    }
}

/// web-audio-api's `DelayReader::get_playback_infos`, op for op: the position is computed in
/// f64 relative to the start of the current block, and negative block offsets wrap once.
#[inline(always)]
fn tap(
    delay: f64,
    in_cycle: bool,
    sample_index: f64,
    quantum_duration: f64,
    sample_rate: f64,
    ring_size: i32,
    ring_index: i32,
) -> Tap {
    let clamped = if in_cycle {
        delay.max(quantum_duration)
    } else {
        delay
    };
    let num_samples = clamped * sample_rate;
    let position = sample_index - num_samples;
    let position_floored = position.floor();
    let num_frames = RENDER_QUANTUM as i32;
    let block_offset = (position_floored / num_frames as f64).floor();
    let mut block = ring_index + block_offset as i32;
    if block < 0 {
        block += ring_size;
    }
    let mut frame_offset = position_floored as i32 % num_frames;
    if frame_offset == 0 {
        frame_offset = -num_frames;
    }
    let frame = if frame_offset <= 0 {
        num_frames + frame_offset
    } else {
        frame_offset
    };
    Tap {
        block: block as usize,
        frame: frame as usize,
        k: (position - position_floored) as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testing::*;
    use crate::dsp::{ChannelCountMode, DEFAULT_SAMPLE_RATE};
    use web_audio_api::context::{BaseAudioContext, OfflineAudioContext};
    use web_audio_api::node::AudioNode;

    fn scope(block: usize) -> Scope {
        Scope {
            frame: (block * RENDER_QUANTUM) as u64,
            sample_rate: DEFAULT_SAMPLE_RATE as f32,
        }
    }

    fn impulse_bus() -> Bus {
        let mut b = Bus::silent();
        b.channel_mut(0)[0] = 1.0;
        b
    }

    /// Where a delayed impulse peaks within the first `blocks` blocks (the delay time as f32 is
    /// not a whole number of samples, so the peak is close to, not exactly, 1).
    fn impulse_position(delay: &mut Delay, value: f32, blocks: usize) -> Option<usize> {
        let mut out = Bus::silent();
        let mut found = None;
        for b in 0..blocks {
            let input = if b == 0 { impulse_bus() } else { Bus::silent() };
            delay.process(&input, &[&[value]], &mut out, &scope(b));
            if let Some(i) = out.channel(0).iter().position(|&v| v > 0.99) {
                found = Some(b * RENDER_QUANTUM + i);
            }
        }
        found
    }

    #[test]
    fn ring_holds_one_block_more_than_the_longest_delay() {
        assert_eq!(Delay::new(1.0, DEFAULT_SAMPLE_RATE as f32).ring_len, 376);
        assert_eq!(Delay::new(5.0, DEFAULT_SAMPLE_RATE as f32).ring_len, 1876);
        assert_eq!(Delay::new(0.001, DEFAULT_SAMPLE_RATE as f32).ring_len, 2);
    }

    #[test]
    fn whole_sample_delays_are_exact_outside_a_cycle() {
        for samples in [0usize, 1, 127, 128, 131, 197, 47_999] {
            let mut d = Delay::new(1.0, DEFAULT_SAMPLE_RATE as f32);
            let t = samples as f32 / DEFAULT_SAMPLE_RATE as f32;
            assert_eq!(impulse_position(&mut d, t, 380), Some(samples), "{samples}");
            assert!(!d.in_cycle());
        }
    }

    #[test]
    fn reading_before_writing_is_a_cycle_with_a_one_quantum_minimum() {
        let mut d = Delay::new(1.0, DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        for b in 0..3 {
            d.read(&[&[0.0]], &mut out, &scope(b));
            if b == 1 {
                assert_eq!(out.channel(0)[0], 1.0);
            } else {
                assert!(out.is_silent());
            }
            let input = if b == 0 { impulse_bus() } else { Bus::silent() };
            d.write(&input, &scope(b));
        }
        assert!(d.in_cycle());
    }

    #[test]
    fn stereo_input_remixes_the_ring_and_output_follows_it() {
        let mut d = Delay::new(0.01, DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        d.process(&impulse_bus(), &[&[0.001]], &mut out, &scope(0));
        let mut stereo = Bus::silent();
        stereo.set_number_of_channels(2);
        stereo.channel_mut(1)[0] = 0.5;
        d.process(&stereo, &[&[0.001]], &mut out, &scope(1));
        assert_eq!(out.number_of_channels(), 2);
        // the mono impulse was up-mixed to both channels, 48 samples later
        assert_eq!(out.channel(0)[0], 0.0);
        // slot 1, channel 1: the stereo block; slot 0, channel 1: the up-mixed impulse
        assert_eq!(d.rings[1][RENDER_QUANTUM], 0.5);
        assert_eq!(d.rings[1][0], 1.0);
    }

    #[test]
    fn channels_that_only_held_zeros_take_no_storage() {
        let mut d = Delay::new(1.0, DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        let mut six = Bus::silent();
        six.set_number_of_channels(6);
        d.process(&six, &[&[0.01]], &mut out, &scope(0));
        assert_eq!(d.ring_bytes(), 0, "silence stores nothing");
        six.channel_mut(0)[5] = 0.25;
        d.process(&six, &[&[0.0]], &mut out, &scope(1));
        assert_eq!(
            d.ring_bytes(),
            376 * RENDER_QUANTUM * 4,
            "one channel carries data"
        );
        assert_eq!(out.number_of_channels(), 6);
        assert_eq!(out.channel(0)[5], 0.25);
        assert!((1..6).all(|c| out.channel(c).iter().all(|s| s.to_bits() == 0)));
        // A block of negative zeros is data: in an output block that is not silent (channel 0
        // still carries 0.25) it comes back out with its sign ((1 - k) * -0 + k * -0 = -0).
        six.channel_mut(3).fill(-0.0);
        d.process(&six, &[&[0.0]], &mut out, &scope(2));
        assert_eq!(out.channel(3)[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(d.ring_bytes(), 2 * 376 * RENDER_QUANTUM * 4);
    }

    #[test]
    fn subnormal_output_becomes_silence() {
        let mut d = Delay::new(1.0, DEFAULT_SAMPLE_RATE as f32);
        let mut input = Bus::silent();
        input.channel_mut(0).fill(f32::MIN_POSITIVE / 2.0);
        let mut out = Bus::silent();
        d.process(&input, &[&[0.0]], &mut out, &scope(0));
        assert!(out.is_silent());
    }

    /// Oracle: `input` through DelayNode(max) with a constant delayTime, into a destination
    /// of `channels` channels; returns channel `channel`.
    fn oracle_constant(
        input: &[Vec<f32>],
        (max, time): (f64, f32),
        frames: usize,
        (channels, channel): (usize, usize),
    ) -> Vec<f32> {
        let ctx = OfflineAudioContext::new(channels, frames, DEFAULT_SAMPLE_RATE as f32);
        let src = oracle_source(&ctx, input);
        let delay = ctx.create_delay(max);
        delay.delay_time().set_value(time);
        src.connect(&delay);
        to_destination(&ctx, &delay);
        oracle_render(ctx, channel)
    }

    fn ours_constant(
        input: &[Vec<f32>],
        (max, time): (f64, f32),
        frames: usize,
        (channels, channel): (usize, usize),
    ) -> Vec<f32> {
        let mut d = Delay::new(max, DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        render_ours(frames, channels, channel, |s| {
            let b = s.frame as usize / RENDER_QUANTUM;
            d.process(&source_bus(input, b), &[&[time]], &mut out, s);
            out.clone()
        })
    }

    #[test]
    fn oracle_constant_delay_times() {
        let input = vec![noise(40_001, 7)];
        for (max, time) in [
            (1.0, 0.0),
            (1.0, 0.0001),
            (1.0, 0.5),
            (5.0, 2.6),
            (1.0, 1.0),
        ] {
            // a little over one second of output after the delay
            let frames = FRAMES + (time * DEFAULT_SAMPLE_RATE as f32) as usize;
            assert_bit_exact(
                &ours_constant(&input, (max, time), frames, (1, 0)),
                &oracle_constant(&input, (max, time), frames, (1, 0)),
                &format!("delay {time} (max {max})"),
            );
        }
    }

    #[test]
    fn oracle_stereo_input_remixes_the_ring() {
        // The source stops before the render ends, so the ring is mono (silence), then stereo,
        // then down-mixed to mono when the source's silent output arrives.
        let input = vec![noise(30_001, 3), noise(30_001, 4)];
        for channel in 0..2 {
            assert_bit_exact(
                &ours_constant(&input, (1.0, 0.3), FRAMES, (2, channel)),
                &oracle_constant(&input, (1.0, 0.3), FRAMES, (2, channel)),
                &format!("stereo delay, channel {channel}"),
            );
        }
    }

    #[test]
    fn oracle_channel_silent_at_first_then_carrying_data() {
        // Channel 1 is zeros for the first 20000 frames, so its ring starts empty and is
        // created mid-render; channel 0 carries noise throughout.
        let mut late = noise(30_001, 9);
        late[..20_000].fill(0.0);
        let input = vec![noise(30_001, 8), late];
        for channel in 0..2 {
            assert_bit_exact(
                &ours_constant(&input, (1.0, 0.2), FRAMES, (2, channel)),
                &oracle_constant(&input, (1.0, 0.2), FRAMES, (2, channel)),
                &format!("late channel, channel {channel}"),
            );
        }
    }

    #[test]
    fn oracle_delay_time_value_curve() {
        // An a-rate curve sweeping 0 .. 0.9 s and back with sub-quantum wiggles; it lasts
        // longer than the render, so every block gets 128 param values.
        let curve: Vec<f32> = (0..400)
            .map(|i| {
                let x = i as f32 / 399.0;
                0.45 - 0.45 * (x * 6.0).cos() + 0.0004 * (x * 900.0).sin().abs()
            })
            .collect();
        let automate = |p: &web_audio_api::AudioParam| {
            p.set_value_curve_at_time(&curve, 0.0, 2.0);
        };
        let values = oracle_param_values(
            FRAMES + RENDER_QUANTUM,
            web_audio_api::AutomationRate::A,
            automate,
        );
        let input = vec![noise(45_001, 11)];

        let ctx = OfflineAudioContext::new(1, FRAMES, DEFAULT_SAMPLE_RATE as f32);
        let src = oracle_source(&ctx, &input);
        let delay = ctx.create_delay(1.0);
        automate(delay.delay_time());
        src.connect(&delay);
        to_destination(&ctx, &delay);
        let expected = oracle_render(ctx, 0);

        let mut d = Delay::new(1.0, DEFAULT_SAMPLE_RATE as f32);
        let mut out = Bus::silent();
        let ours = render_ours(FRAMES, 1, 0, |s| {
            let b = s.frame as usize / RENDER_QUANTUM;
            let times = &values[b * RENDER_QUANTUM..][..RENDER_QUANTUM];
            d.process(&source_bus(&input, b), &[times], &mut out, s);
            out.clone()
        });
        assert_bit_exact(&ours, &expected, "delayTime value curve");
    }

    /// kromosynth's feedbackDelay: src -> pass(gain 1) -> delay(max 5) -> fb(gain) -> pass,
    /// pass -> destination.
    fn oracle_feedback(input: &[Vec<f32>], time: f32, feedback: f32) -> Vec<f32> {
        let ctx = OfflineAudioContext::new(1, FRAMES, DEFAULT_SAMPLE_RATE as f32);
        let src = oracle_source(&ctx, input);
        let pass = ctx.create_gain();
        let delay = ctx.create_delay(5.0);
        delay.delay_time().set_value(time);
        let fb = ctx.create_gain();
        fb.gain().set_value(feedback);
        src.connect(&pass);
        pass.connect(&delay);
        delay.connect(&fb);
        fb.connect(&pass);
        to_destination(&ctx, &pass);
        oracle_render(ctx, 0)
    }

    /// web-audio-api's GainNode with a constant gain, for the feedback test.
    fn gain(input: &Bus, g: f32, output: &mut Bus) {
        if input.is_silent() || g.abs() <= 1e-6 {
            output.make_silent();
        } else {
            output.copy_from(input);
            if (1. - g).abs() > 1e-6 {
                for c in 0..output.number_of_channels() {
                    output.channel_mut(c).iter_mut().for_each(|o| *o *= g);
                }
            }
        }
    }

    #[test]
    fn oracle_feedback_loop() {
        let input = vec![noise(9_001, 5)];
        let config = ChannelConfig::DEFAULT;
        assert_eq!(config.mode, ChannelCountMode::Max);
        for (time, feedback) in [(0.3, 0.2), (0.0001, 0.7), (0.0, 0.5)] {
            let expected = oracle_feedback(&input, time, feedback);
            let mut d = Delay::new(5.0, DEFAULT_SAMPLE_RATE as f32);
            let (mut delayed, mut fed_back, mut pass) =
                (Bus::silent(), Bus::silent(), Bus::silent());
            let ours = render_ours(FRAMES, 1, 0, |s| {
                let b = s.frame as usize / RENDER_QUANTUM;
                // reader, fb, pass (inputs: source + fb), writer, destination
                d.read(&[&[time]], &mut delayed, s);
                gain(&delayed, feedback, &mut fed_back);
                let mut pass_in = Bus::silent();
                pass_in.add(&source_bus(&input, b), &config);
                pass_in.add(&fed_back, &config);
                gain(&pass_in, 1.0, &mut pass);
                let mut delay_in = Bus::silent();
                delay_in.add(&pass, &Delay::channel_config());
                d.write(&delay_in, s);
                pass.clone()
            });
            assert!(d.in_cycle());
            assert_bit_exact(&ours, &expected, &format!("feedback {time} s x {feedback}"));
        }
    }
}
