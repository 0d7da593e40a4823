//! Builds our Web Audio graph description of a fixture inside web-audio-api 1.1.0 itself (the
//! original's DSP) and compares: with the reference render, which checks the graph we build
//! (nodes, params, curves, wiring, creation order), and with our renderer, which checks our DSP
//! and processing order on the same graph. A failure says which side is off.

use std::collections::HashMap;

use krs_engine::patch::graph::{build, Kind, WebGraph, DESTINATION};
use krs_engine::render::outputs::Timeline;
use krs_engine::render::resolver::Resolver;
use krs_engine::{fixtures, render_batch, CompiledGenome, RenderRequest};
use web_audio_api::context::{BaseAudioContext, OfflineAudioContext};
use web_audio_api::node::{
    AudioBufferSourceNode, AudioNode, AudioScheduledSourceNode, BiquadFilterNode, BiquadFilterType,
    ChannelMergerNode, ConvolverNode, DelayNode, DynamicsCompressorNode, GainNode, OscillatorNode,
    OscillatorType, WaveShaperNode,
};
use web_audio_api::AudioParam;

enum Wa {
    Gain(GainNode),
    Osc(OscillatorNode),
    Biquad(BiquadFilterNode),
    Delay(DelayNode),
    Comp(DynamicsCompressorNode),
    Conv(ConvolverNode),
    Shaper(WaveShaperNode),
    Src(AudioBufferSourceNode),
    Merger(ChannelMergerNode),
}

impl Wa {
    fn node(&self) -> &dyn AudioNode {
        match self {
            Wa::Gain(n) => n,
            Wa::Osc(n) => n,
            Wa::Biquad(n) => n,
            Wa::Delay(n) => n,
            Wa::Comp(n) => n,
            Wa::Conv(n) => n,
            Wa::Shaper(n) => n,
            Wa::Src(n) => n,
            Wa::Merger(n) => n,
        }
    }

    /// The AudioParam `name` (a handle sharing the node's param).
    fn param(&self, name: &str) -> AudioParam {
        match self {
            Wa::Gain(g) => g.gain().clone(),
            Wa::Osc(o) => match name {
                "frequency" => o.frequency().clone(),
                _ => o.detune().clone(),
            },
            Wa::Biquad(b) => match name {
                "Q" => b.q().clone(),
                "detune" => b.detune().clone(),
                "frequency" => b.frequency().clone(),
                _ => b.gain().clone(),
            },
            Wa::Delay(d) => d.delay_time().clone(),
            Wa::Comp(c) => match name {
                "attack" => c.attack().clone(),
                "knee" => c.knee().clone(),
                "ratio" => c.ratio().clone(),
                "release" => c.release().clone(),
                _ => c.threshold().clone(),
            },
            Wa::Src(s) => match name {
                "detune" => s.detune().clone(),
                _ => s.playback_rate().clone(),
            },
            _ => panic!("no param {name}"),
        }
    }
}

enum Handle {
    Node(Wa),
    Param(AudioParam),
    Skip,
}

/// Renders `graph` in a 2-channel OfflineAudioContext at `rate` and returns channel 0,
/// unnormalized.
fn oracle(
    graph: &WebGraph,
    resolver: &mut Resolver,
    frames: usize,
    duration: f64,
    rate: f32,
) -> Vec<f32> {
    let mut ctx = OfflineAudioContext::new(2, frames, rate);
    let mut handles: Vec<Handle> = Vec::new();
    let mut delay_of_reader: HashMap<usize, usize> = HashMap::new();
    let buffer = |ctx: &OfflineAudioContext, data: &[f32]| {
        let mut b = ctx.create_buffer(1, data.len(), rate);
        b.copy_to_channel(data, 0);
        b
    };
    for (id, node) in graph.nodes.iter().enumerate() {
        let h = match &node.kind {
            Kind::Destination => Handle::Skip,
            Kind::Gain => Handle::Node(Wa::Gain(ctx.create_gain())),
            Kind::Oscillator { waveform } => {
                let mut o = ctx.create_oscillator();
                o.set_type(match waveform.as_str() {
                    "square" => OscillatorType::Square,
                    "sawtooth" => OscillatorType::Sawtooth,
                    "triangle" => OscillatorType::Triangle,
                    _ => OscillatorType::Sine,
                });
                o.start();
                Handle::Node(Wa::Osc(o))
            }
            Kind::BiquadFilter { filter } => {
                let mut b = ctx.create_biquad_filter();
                b.set_type(match filter.as_str() {
                    "highpass" => BiquadFilterType::Highpass,
                    "bandpass" => BiquadFilterType::Bandpass,
                    "lowshelf" => BiquadFilterType::Lowshelf,
                    "highshelf" => BiquadFilterType::Highshelf,
                    "peaking" => BiquadFilterType::Peaking,
                    "notch" => BiquadFilterType::Notch,
                    "allpass" => BiquadFilterType::Allpass,
                    _ => BiquadFilterType::Lowpass,
                });
                Handle::Node(Wa::Biquad(b))
            }
            Kind::DelayWriter {
                max_delay_time,
                reader,
            } => {
                delay_of_reader.insert(*reader, id);
                Handle::Node(Wa::Delay(ctx.create_delay(*max_delay_time)))
            }
            Kind::DelayReader { .. } => Handle::Skip,
            Kind::DynamicsCompressor => Handle::Node(Wa::Comp(ctx.create_dynamics_compressor())),
            Kind::Convolver { buffer: b } => {
                let mut c = ctx.create_convolver();
                if let Some(data) = b.as_ref().and_then(|s| resolver.resolve_whole(s)) {
                    c.set_buffer(buffer(&ctx, &data));
                }
                Handle::Node(Wa::Conv(c))
            }
            Kind::WaveShaper { curve } => {
                let mut w = ctx.create_wave_shaper();
                if let Some(data) = curve.as_ref().and_then(|s| resolver.resolve_whole(s)) {
                    w.set_curve(data.to_vec());
                }
                Handle::Node(Wa::Shaper(w))
            }
            Kind::BufferSource { buffer: b } => {
                let mut s = ctx.create_buffer_source();
                if let Some(data) = b.as_ref().and_then(|s| resolver.resolve_whole(s)) {
                    s.set_buffer(buffer(&ctx, &data));
                }
                s.start();
                Handle::Node(Wa::Src(s))
            }
            Kind::ChannelMerger => Handle::Node(Wa::Merger(ctx.create_channel_merger(6))),
            Kind::Param { .. } => Handle::Skip,
        };
        handles.push(h);
    }
    // Resolve params through their owners (web-audio-api made them with the owner).
    for (id, node) in graph.nodes.iter().enumerate() {
        let Kind::Param {
            owner,
            name,
            value,
            curve,
        } = &node.kind
        else {
            continue;
        };
        let owner = delay_of_reader.get(owner).copied().unwrap_or(*owner);
        let Handle::Node(n) = &handles[owner] else {
            panic!("param owner {owner}")
        };
        let param = n.param(name);
        if let Some(v) = value {
            param.set_value(*v);
        }
        if let Some(c) = curve {
            if let Some(values) = resolver.resolve_whole(c) {
                param.set_value_curve_at_time(&values, 0.0, duration);
            }
        }
        handles[id] = Handle::Param(param);
    }
    for (id, node) in graph.nodes.iter().enumerate() {
        let from_id = match &node.kind {
            Kind::DelayReader { writer, .. } => *writer,
            Kind::DelayWriter { .. } | Kind::Param { .. } => continue,
            _ => id,
        };
        let Handle::Node(from) = &handles[from_id] else {
            continue;
        };
        for e in &node.outgoing {
            if e.target == DESTINATION {
                from.node().connect(&ctx.destination());
                continue;
            }
            let target = delay_of_reader.get(&e.target).copied().unwrap_or(e.target);
            match &handles[target] {
                Handle::Node(t) => {
                    from.node().connect(t.node());
                }
                Handle::Param(p) => {
                    from.node().connect(p);
                }
                Handle::Skip => panic!("edge into {target}"),
            }
        }
    }
    let out = ctx.start_rendering_sync();
    out.get_channel_data(0).to_vec()
}

fn check(id: &str, note_delta: f64, velocity: f64, duration: f64) {
    let genome = CompiledGenome::from_json(&fixtures::genome_json(id)).unwrap();
    let frames = (48000.0 * duration) as usize;
    let graph = build(
        genome.patch(),
        note_delta,
        false,
        genome.cppns().output_count(),
    )
    .unwrap();
    let timeline = Timeline::new(frames);
    let mut resolver = Resolver::eager(genome.cppns(), &graph.outputs, timeline, velocity, 1);
    let mut theirs = oracle(&graph, &mut resolver, frames, duration, 48000.0);
    krs_engine::render::normalize_like_original(&mut theirs);
    let reference = fixtures::all()
        .into_iter()
        .find(|f| f.id == id)
        .unwrap()
        .renders
        .into_iter()
        .find(|r| (r.note_delta, r.velocity, r.duration) == (note_delta, velocity, duration))
        .unwrap()
        .samples();
    let request = RenderRequest {
        duration,
        note_delta,
        velocity,
        seed: 1,
        ..RenderRequest::default()
    };
    let ours = render_batch(&genome, &request, true).unwrap();
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .position(|(x, y)| x.to_bits() != y.to_bits())
    };
    println!(
        "{id}: oracle-vs-reference first diff {:?}, ours-vs-oracle first diff {:?}",
        diff(&theirs, &reference),
        diff(&ours, &theirs)
    );
    assert_eq!(
        diff(&ours, &theirs),
        None,
        "{id}: our DSP differs from web-audio-api"
    );
    assert_eq!(
        diff(&theirs, &reference),
        None,
        "{id}: our graph differs from the original's"
    );
}

#[test]
fn convolver_and_feedback_delay_fixture() {
    check("01M88X7XN81HEA58YYNTFXHV28", 0.0, 1.0, 1.0);
}

#[test]
fn biquad_compressor_convolver_fixture() {
    check("01M88X8EMSXWZE35NP3PBFS4V7", 0.0, 1.0, 1.0);
}

/// Every fixture genome's graph at rates from 8 to 192 kHz, ours against web-audio-api's
/// nodes in a context at that rate (the same CPPN outputs fed to both): each node's
/// rate-dependent constants (phase increments, filter coefficients, delay and compressor rings,
/// convolver normalization, param ranges and automation times) must follow the crate's.
#[test]
fn every_fixture_graph_matches_web_audio_api_at_other_rates() {
    for f in fixtures::all() {
        let genome = CompiledGenome::from_json(&f.genome_json()).unwrap();
        for (rate, note_delta) in [(8_000, 0.0), (22_050, -7.0), (96_000, 5.0), (192_000, 0.0)] {
            let duration = 0.5;
            let request = RenderRequest {
                duration,
                note_delta,
                velocity: 0.8,
                seed: 1,
                sample_rate: rate,
                ..RenderRequest::default()
            };
            let frames = krs_engine::render::frames_for(duration, rate);
            let graph = build(
                genome.patch(),
                note_delta,
                false,
                genome.cppns().output_count(),
            )
            .unwrap();
            let timeline = Timeline {
                frames,
                sample_rate: rate,
                anti_aliasing: false,
            };
            let mut resolver = Resolver::eager(genome.cppns(), &graph.outputs, timeline, 0.8, 1);
            let theirs = oracle(&graph, &mut resolver, frames, duration, rate as f32);
            let ours = render_batch(&genome, &request, false).unwrap();
            assert_eq!(ours.len(), theirs.len());
            let first = ours
                .iter()
                .zip(&theirs)
                .position(|(x, y)| x.to_bits() != y.to_bits());
            assert_eq!(
                first, None,
                "{} at {rate} Hz: our DSP differs from web-audio-api",
                f.id
            );
        }
    }
}
