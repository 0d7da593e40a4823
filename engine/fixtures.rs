//! The reference fixtures, tests/fixtures/reference: the genomes and the renders kromosynth
//! 1.0.36 made of them, as its index.json lists them. For the tests and benches of every crate
//! in the workspace, so that none keeps its own list of ids or its own file reading. The
//! directory is found from this crate's own (fixed at compile time), not the working directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The fixture directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference")
}

/// A fixture genome and the original's renders of it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixture {
    /// The genome's id, also its id in the embedded default database.
    pub id: String,
    /// Whether it has noise outputs: the original draws them from `Math.random`, so its renders
    /// can only be compared statistically.
    pub has_noise: bool,
    pub renders: Vec<Reference>,
}

/// One of the original's renders.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// File name in [`dir`].
    pub file: String,
    pub note_delta: f64,
    pub velocity: f64,
    pub duration: f64,
    pub timing: Timing,
}

/// How long the original took.
#[derive(Clone, Debug, Deserialize)]
pub struct Timing {
    /// The whole render, CPPN activation and graph wiring included, in milliseconds.
    pub total_ms: f64,
}

#[derive(Deserialize)]
struct Index {
    genomes: Vec<Fixture>,
}

/// Every fixture, in index order.
pub fn all() -> Vec<Fixture> {
    let index: Index =
        serde_json::from_slice(&read(&dir().join("index.json"))).expect("fixture index.json");
    // Every loop over the fixtures would pass without checking anything.
    assert!(!index.genomes.is_empty(), "no fixtures in index.json");
    index.genomes
}

/// The ids of every fixture, in index order.
pub fn ids() -> Vec<String> {
    all().into_iter().map(|f| f.id).collect()
}

/// The genome file of fixture `id`.
pub fn genome_path(id: &str) -> PathBuf {
    dir().join(format!("{id}.genome.json"))
}

/// The genome JSON of fixture `id`, as stored (wrapped, string-encoded patch).
pub fn genome_json(id: &str) -> Vec<u8> {
    read(&genome_path(id))
}

impl Fixture {
    pub fn genome_json(&self) -> Vec<u8> {
        genome_json(&self.id)
    }
}

impl Reference {
    /// The rendered samples.
    pub fn samples(&self) -> Vec<f32> {
        read_f32(&dir().join(&self.file))
    }
}

/// Little-endian f32 samples, as the references and the CLI's `.f32` output are written.
pub fn read_f32(path: &Path) -> Vec<f32> {
    read(path)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
