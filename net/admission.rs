//! Admission: the server's budgets and what a new render is expected to cost.
//!
//! Memory: its size from flags or the machine. A render job reserves its estimate once its
//! graph is built, a held render (batch form, normalized, worker port) reserves its 4 bytes per
//! sample when it is requested.
//!
//! CPU: the cores the renders may commit to real-time playback (`--cpu-budget`). A render is
//! accepted with an estimate of its cost ([`CostModel`]: what renders of the same genome cost
//! per frame, else what renders cost on average), and its job replaces the estimate with its
//! measured cost as it renders. The reservations themselves are the engine's
//! (`krs_engine::render::budget`).

use std::collections::HashMap;
use std::time::Duration;

use krs_engine::render::budget::MICROCORES;

use crate::protocol::GenomeRef;

/// Share of the worker threads' cores that renders may commit by default: the rest absorbs
/// the event loop's encoding and writing, preparations, and the error of the estimates.
pub const DEFAULT_CPU_SHARE: f64 = 0.9;

/// Seconds of CPU per frame assumed before any render has been measured: 0.02 cores for a
/// real-time stream at 48 kHz, about the fixture genomes' average with every core busy
/// (benches/README.md, throughput).
const PRIOR_SECONDS_PER_FRAME: f64 = 0.02 / 48_000.0;

/// Genomes whose measured cost is remembered; past this the memory starts over (a genome's
/// cost is quickly measured again).
const REMEMBERED_GENOMES: usize = 4096;

/// Weight of a new measurement in the running averages: a genome's renders cost about the
/// same each time, the average over genomes moves with the mix.
const GENOME_WEIGHT: f64 = 0.5;
const MIX_WEIGHT: f64 = 0.05;

/// Renders shorter than this teach nothing: their few blocks' time is mostly warm-up.
const MEASURED_FRAMES: usize = 8_192;

/// What renders cost, learned from finished ones: seconds of CPU per frame rendered.
#[derive(Debug)]
pub struct CostModel {
    by_genome: HashMap<String, f64>,
    mix: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            by_genome: HashMap::new(),
            mix: PRIOR_SECONDS_PER_FRAME,
        }
    }
}

/// The key of a genome the model can recognise again: inline genomes have none.
fn key(genome: &GenomeRef) -> Option<String> {
    match genome {
        GenomeRef::Id(id) => Some(id.clone()),
        GenomeRef::InRun { run, id } => Some(format!("{run}/{id}")),
        GenomeRef::Inline(_) => None,
    }
}

impl CostModel {
    /// The share of a core (in [`MICROCORES`]) a render of `genome` at `sample_rate` is
    /// expected to need to play in real time.
    pub fn estimate(&self, genome: &GenomeRef, sample_rate: u32) -> u64 {
        let per_frame = key(genome)
            .and_then(|k| self.by_genome.get(&k).copied())
            .unwrap_or(self.mix);
        (per_frame * f64::from(sample_rate) * MICROCORES as f64).ceil() as u64
    }

    /// [`CostModel::estimate`] for a genome it does not know, at 48 kHz.
    pub fn typical(&self) -> u64 {
        (self.mix * 48_000.0 * MICROCORES as f64).ceil() as u64
    }

    /// Learns from a finished render: `rendering` for `frames` frames.
    pub fn learn(&mut self, genome: &GenomeRef, rendering: Duration, frames: usize) {
        if frames < MEASURED_FRAMES {
            return;
        }
        let per_frame = rendering.as_secs_f64() / frames as f64;
        self.mix += MIX_WEIGHT * (per_frame - self.mix);
        if let Some(k) = key(genome) {
            if self.by_genome.len() >= REMEMBERED_GENOMES && !self.by_genome.contains_key(&k) {
                self.by_genome.clear();
            }
            let known = self.by_genome.entry(k).or_insert(per_frame);
            *known += GENOME_WEIGHT * (per_frame - *known);
        }
    }
}

/// Share of the machine's physical memory the server budgets for renders by default: the
/// other half is for the process's baseline, the allocator's retained pages and the rest of
/// the machine.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.5;

/// Share of the budget one connection may hold by default, so one client cannot take it all.
pub const DEFAULT_CONNECTION_SHARE: u64 = 4;

/// Used where /proc/meminfo cannot be read.
const FALLBACK_PHYSICAL_MEMORY: u64 = 4 << 30;

/// Bytes of physical memory (`MemTotal` in /proc/meminfo).
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(FALLBACK_PHYSICAL_MEMORY)
}

/// The default `--max-memory`.
pub fn default_max_memory() -> u64 {
    (physical_memory() as f64 * DEFAULT_MEMORY_SHARE) as u64
}

/// Bytes from `600M`, `2G`, `1.5G`, `512K`, `1T` or a plain number (binary units: K = 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in {text:?} (use K, M, G or T)")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {text:?}"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("a size must be positive: {text:?}"));
    }
    Ok((value * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn costs_are_learned_per_genome_and_on_average() {
        let mut model = CostModel::default();
        let (a, b) = (GenomeRef::Id("a".into()), GenomeRef::Id("b".into()));
        let inline = GenomeRef::Inline(b"{}".to_vec());
        let prior = model.estimate(&a, 48_000);
        assert_eq!(prior, 20_000);
        assert_eq!(model.estimate(&inline, 16_000), prior.div_ceil(3));
        // One second of audio rendered in 50 ms: 0.05 cores.
        model.learn(&a, Duration::from_millis(50), 48_000);
        let learned = model.estimate(&a, 48_000);
        assert!((49_000..=51_000).contains(&learned), "{learned}");
        // Others move towards it by the mix weight only.
        let other = model.estimate(&b, 48_000);
        assert!(prior < other && other < learned, "{other}");
        // Too short to teach anything.
        model.learn(&b, Duration::from_secs(1), 100);
        assert_eq!(model.estimate(&b, 48_000), other);
    }

    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("600M"), Ok(600 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(physical_memory() > 0);
    }
}
