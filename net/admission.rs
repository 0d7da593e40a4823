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

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use krs_engine::render::budget::MICROCORES;

use crate::protocol::GenomeRef;

/// Share of the worker threads' cores that renders may commit by default. The reservations
/// already include the event loop's work (`Overhead`); the rest is for the kernel's side of
/// the sockets, jitter and the error of the estimates. On 2 cores, 0.85 let a chunk or two
/// arrive late at 2-4x the capacity offered, 0.8 none (benches/README.md, soak).
pub const DEFAULT_CPU_SHARE: f64 = 0.8;

/// Seconds of rendering CPU per frame assumed before any render has been measured: 0.013
/// cores for a real-time stream at 48 kHz, 0.02 with the prior overhead of 1.5
/// (`krs_engine::render::cpu_cost`): about three times what the fixture mix costs paced
/// (benches/README.md, soak), so that a cold server admits carefully until it has measured.
const PRIOR_SECONDS_PER_FRAME: f64 = 0.013 / 48_000.0;

/// Genomes whose measured cost is remembered; past this the memory starts over (a genome's
/// cost is quickly measured again).
const REMEMBERED_GENOMES: usize = 4096;

/// Weight of a new measurement in the running averages: a genome's renders cost about the
/// same each time, the average over genomes moves with the mix.
const GENOME_WEIGHT: f64 = 0.5;
const MIX_WEIGHT: f64 = 0.05;

/// Renders shorter than this teach nothing: their few blocks' time is mostly warm-up.
const MEASURED_FRAMES: usize = 8_192;

/// Preparation time assumed before any render has been measured, per frame of the render:
/// 2 ms per second of audio at 48 kHz (the convolver genomes' whole-duration impulse
/// response; other genomes prepare in well under a millisecond whatever their duration).
const PRIOR_PREPARE_PER_FRAME: f64 = 0.002 / 48_000.0;

/// A starting render holds its preparation's CPU as if spread over this long, on top of its
/// real-time share, until its own cost is measured (after its first quarter second of audio):
/// a burst of new renders then cannot take the cores from the streams already playing while
/// they prepare. Preparation runs on every worker at once, so its CPU is about its wall time
/// times the workers; half a second of spread for the wall time is about a second for its CPU.
const PREPARE_SPREAD_SECONDS: f64 = 0.5;

/// The most a starting render holds for its preparation: a long render's preparation takes
/// seconds (600 s of a convolver genome, about 1 s of wall time on 2 cores), and holding all
/// of it at once would refuse the render on a machine with few cores, never to fit.
const MAX_STARTING_CORES: f64 = 0.5;

/// What renders of a genome cost: seconds of rendering CPU, and seconds of preparation, per
/// frame.
#[derive(Clone, Copy, Debug)]
struct Cost {
    rendering: f64,
    prepare: f64,
}

impl Cost {
    fn approach(&mut self, to: Cost, weight: f64) {
        self.rendering += weight * (to.rendering - self.rendering);
        self.prepare += weight * (to.prepare - self.prepare);
    }
}

/// What renders cost, learned from finished ones.
#[derive(Debug)]
pub struct CostModel {
    by_genome: HashMap<String, Cost>,
    mix: Cost,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            by_genome: HashMap::new(),
            mix: Cost {
                rendering: PRIOR_SECONDS_PER_FRAME,
                prepare: PRIOR_PREPARE_PER_FRAME,
            },
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

/// Cores a render costing `rendering` seconds of CPU per frame needs to play in real time at
/// `sample_rate`, scaled by the process's `overhead`.
fn playing(rendering: f64, sample_rate: u32, overhead: f64) -> f64 {
    rendering * overhead * f64::from(sample_rate)
}

impl CostModel {
    fn cost(&self, genome: &GenomeRef) -> Cost {
        key(genome)
            .and_then(|k| self.by_genome.get(&k).copied())
            .unwrap_or(self.mix)
    }

    /// The share of a core (in [`MICROCORES`]) a render of `genome` at `sample_rate`, `frames`
    /// long, is expected to need to start and play in real time: its rendering CPU per second
    /// of audio scaled by the process's `overhead` (`krs_engine::render::cpu_cost::Overhead`),
    /// plus its preparation spread over [`PREPARE_SPREAD_SECONDS`]. The job replaces it with
    /// its measured real-time share once it has rendered a little.
    pub fn estimate(
        &self,
        genome: &GenomeRef,
        sample_rate: u32,
        frames: usize,
        overhead: f64,
    ) -> u64 {
        let cost = self.cost(genome);
        let starting =
            (cost.prepare * frames as f64 / PREPARE_SPREAD_SECONDS).min(MAX_STARTING_CORES);
        ((playing(cost.rendering, sample_rate, overhead) + starting) * MICROCORES as f64).ceil()
            as u64
    }

    /// How long a render of `genome`, `frames` long, is expected to prepare (wall time of its
    /// preparation turns).
    pub fn preparation(&self, genome: &GenomeRef, frames: usize) -> Duration {
        Duration::from_secs_f64(self.cost(genome).prepare * frames as f64)
    }

    /// The real-time share of a render of a genome it does not know, at 48 kHz.
    pub fn typical(&self, overhead: f64) -> u64 {
        (playing(self.mix.rendering, 48_000, overhead) * MICROCORES as f64).ceil() as u64
    }

    /// Learns from a finished render of `frames` frames: `rendering` (CPU of its rendering
    /// turns) and `prepare` (wall time of its preparation).
    pub fn learn(
        &mut self,
        genome: &GenomeRef,
        rendering: Duration,
        prepare: Duration,
        frames: usize,
    ) {
        if frames < MEASURED_FRAMES {
            return;
        }
        let cost = Cost {
            rendering: rendering.as_secs_f64() / frames as f64,
            prepare: prepare.as_secs_f64() / frames as f64,
        };
        self.mix.approach(cost, MIX_WEIGHT);
        if let Some(k) = key(genome) {
            if self.by_genome.len() >= REMEMBERED_GENOMES && !self.by_genome.contains_key(&k) {
                self.by_genome.clear();
            }
            self.by_genome
                .entry(k)
                .or_insert(cost)
                .approach(cost, GENOME_WEIGHT);
        }
    }
}

/// The default `--start-delay-ms`: a new render is refused (a whole-result render waits)
/// while a render accepted longer ago than this has not rendered its first chunk yet: the
/// workers are behind on first chunks, and a render accepted now would wait behind all of
/// them. A render's own preparation counts, so a convolver genome's (its whole-duration impulse
/// response, 10-20 ms for 10 s of audio on 2 cores) holds new renders off for part of its
/// time; half the 50 ms target for a first chunk leaves the other half for the render
/// itself.
pub const START_QUEUE_DELAY: Duration = Duration::from_millis(25);

/// A render expected to prepare for longer than this (a long render of a convolver genome: 600
/// s of audio prepare in about a second) never holds new renders off ([`Starts`]): past this
/// much preparation its deadline backs off (`krs_engine::render::stream`), so the renders
/// accepted after it start first, and counting it would refuse every render for as long as it
/// prepares.
pub const HEAVY_PREPARATION: Duration = krs_engine::render::stream::PREPARE_GRACE;

/// The renders accepted that have not rendered their first chunk yet (waiting for a worker,
/// fetching and compiling their genome, preparing, or rendering the chunk), oldest first: one
/// entry per render in progress at most, so bounded by `--max-streams`.
#[derive(Debug)]
pub struct Starts {
    /// How long the oldest may have waited when a render is accepted; `None`: any.
    delay: Option<Duration>,
    /// Those that count towards congestion.
    by_age: BTreeSet<(Instant, u64)>,
    /// The heavy ones ([`HEAVY_PREPARATION`]).
    heavy: BTreeSet<(Instant, u64)>,
}

impl Starts {
    pub fn new(delay: Option<Duration>) -> Starts {
        Starts {
            delay,
            by_age: BTreeSet::new(),
            heavy: BTreeSet::new(),
        }
    }

    pub fn add(&mut self, id: u64, accepted: Instant, heavy: bool) {
        if heavy {
            self.heavy.insert((accepted, id));
        } else {
            self.by_age.insert((accepted, id));
        }
    }

    /// Removes the render if it is still here (its first chunk is rendered, or it ended).
    pub fn remove(&mut self, id: u64, accepted: Instant) {
        if !self.by_age.remove(&(accepted, id)) {
            self.heavy.remove(&(accepted, id));
        }
    }

    pub fn len(&self) -> usize {
        self.by_age.len() + self.heavy.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why a render asked for at `now` should not start yet, or `None`: the oldest render
    /// still starting, heavy ones aside, was accepted more than the delay ago.
    pub fn congested(&self, now: Instant) -> Option<String> {
        let delay = self.delay?;
        let (oldest, _) = self.by_age.first()?;
        let waited = now.saturating_duration_since(*oldest);
        (waited > delay).then(|| {
            format!(
                "Server busy: {} renders starting, the oldest accepted {} ms ago, retry later",
                self.by_age.len(),
                waited.as_millis()
            )
        })
    }
}

/// What a render without whole-duration buffers holds at most: its ring (32 KiB), its lazily
/// evaluated CPPN windows (32 KiB per output) and its graph's nodes, well under this for every
/// fixture genome but the convolver ones (`engine/tests/memory_estimate.rs`). `/health` says
/// busy when the memory budget has less than this free.
pub const ORDINARY_RENDER_MEMORY: u64 = 4 << 20;

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
        let prior = model.estimate(&a, 48_000, 0, 1.0);
        assert_eq!(prior, 13_000);
        assert_eq!(model.estimate(&inline, 16_000, 0, 1.0), prior.div_ceil(3));
        assert_eq!(model.estimate(&a, 48_000, 0, 2.0), 2 * prior);
        // Starting: 10 s of audio prepare in about 20 ms, spread over half a second.
        let starting = model.estimate(&a, 48_000, 480_000, 1.0) - prior;
        assert!((39_000..=41_000).contains(&starting), "{starting}");
        // One second of audio rendered in 50 ms, prepared in 5 ms: 0.05 cores, 0.01 starting.
        let (fifty, five) = (Duration::from_millis(50), Duration::from_millis(5));
        model.learn(&a, fifty, five, 48_000);
        let learned = model.estimate(&a, 48_000, 0, 1.0);
        assert!((49_000..=51_000).contains(&learned), "{learned}");
        let start = model.estimate(&a, 48_000, 48_000, 1.0) - learned;
        assert!((9_000..=11_000).contains(&start), "{start}");
        // Others move towards it by the mix weight only.
        let other = model.estimate(&b, 48_000, 0, 1.0);
        assert!(prior < other && other < learned, "{other}");
        assert_eq!(model.typical(1.0), other);
        // A long render's preparation is held up to a limit.
        let long = model.estimate(&a, 48_000, 600 * 48_000, 1.0) - learned;
        assert_eq!(long, (MAX_STARTING_CORES * MICROCORES as f64) as u64);
        // Too short to teach anything.
        model.learn(&b, Duration::from_secs(1), five, 100);
        assert_eq!(model.estimate(&b, 48_000, 0, 1.0), other);
    }

    use super::*;

    #[test]
    fn starts_are_congested_while_the_oldest_waits_beyond_the_delay() {
        let mut starts = Starts::new(Some(START_QUEUE_DELAY));
        let t0 = Instant::now();
        assert_eq!(starts.congested(t0 + Duration::from_secs(9)), None);
        starts.add(1, t0, false);
        starts.add(2, t0 + Duration::from_millis(20), false);
        // A heavy preparation is counted as starting, but never holds new renders off.
        starts.add(3, t0 - Duration::from_secs(1), true);
        assert_eq!(starts.congested(t0 + START_QUEUE_DELAY), None);
        let late = t0 + START_QUEUE_DELAY + Duration::from_millis(1);
        let message = starts.congested(late).expect("the oldest waited too long");
        assert!(message.contains("2 renders starting"), "{message}");
        // Once the oldest has rendered its first chunk, the next oldest is the one that counts.
        starts.remove(1, t0);
        assert_eq!(starts.congested(late), None);
        starts.remove(1, t0);
        assert_eq!(starts.len(), 2);
        starts.remove(2, t0 + Duration::from_millis(20));
        starts.remove(3, t0 - Duration::from_secs(1));
        assert!(starts.is_empty());
        assert_eq!(starts.congested(late + Duration::from_secs(9)), None);
        // Turned off.
        let mut any = Starts::new(None);
        any.add(1, t0, false);
        assert_eq!(any.congested(late), None);
    }

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
