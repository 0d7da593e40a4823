//! asNEAT patch -> audio graph description.
//!
//! Two steps, as in the original: the asNEAT network becomes a synth.is patch (an audio graph
//! keyed by node id plus "network outputs" that feed CPPN samples into params), and that patch,
//! for one request, becomes the flat list of Web Audio nodes and connections the original's
//! virtual-audio-graph would create (`graph`).

pub mod graph;
pub mod synthis;
