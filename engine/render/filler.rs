//! Filling the lazily computed arrays ahead of the block clock: the signals computed from each
//! CPPN or noise output, and the fills that evaluate them, the first on every core before the
//! first block, the later ones as prefetches on another core while the render goes on.

use std::sync::Arc;

use crate::cppn::{self, Program};
use crate::dsp::sample_array::SampleArray;

use super::outputs::{remap_one, NoiseGen, WaveSpan};
use super::pieces::{other_workers, Pieces, Piecewise};

/// Samples a render's CPPN evaluates before its first block whatever the read-ahead: at least
/// one default chunk (4096 frames), so the first chunk needs a single fill.
pub const FILL_CHUNK: usize = 4096;

/// Frames filled beyond what the readers need by the end of the coming block: a value curve
/// reads the sample after the block's last (interpolation) and the next block's first value.
const FILL_MARGIN: usize = 2 * crate::dsp::RENDER_QUANTUM + 4;

/// Samples kept per lazily filled array when every reader reads at the block clock: more than
/// the fill runs ahead of the clock (at most `FILL_CHUNK + FILL_MARGIN + 128` = 4484), so a
/// window never drops a sample that is still to be read. 32 KiB per array, whatever the
/// render's length; a render has up to a few dozen such arrays.
pub const WINDOW: usize = 8192;

const _: () = assert!(WINDOW > FILL_CHUNK + FILL_MARGIN + crate::dsp::RENDER_QUANTUM);

/// How a lazily filled array is computed from another, sample by sample.
#[derive(Clone, Copy, Debug)]
pub(super) enum Derivation {
    Remap { lo: f64, hi: f64 },
    WavetableGain(WaveSpan),
}

impl Derivation {
    /// The derived samples of `values`.
    fn apply(self, values: &[f32]) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn wide(how: Derivation, values: &[f32]) -> Vec<f32> {
                how.apply_loop(values)
            }
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { wide(self, values) };
        }
        self.apply_loop(values)
    }

    /// One loop per kind, so each is a straight (vectorizable) loop; the same operations
    /// whatever the vector width.
    #[inline(always)]
    fn apply_loop(self, values: &[f32]) -> Vec<f32> {
        match self {
            Derivation::Remap { lo, hi } => values.iter().map(|&x| remap_one(x, lo, hi)).collect(),
            Derivation::WavetableGain(span) => values.iter().map(|&m| span.gain(m)).collect(),
        }
    }
}

/// A lazily filled array computed from another (created after it).
pub(super) struct Derived {
    pub from: SampleArray,
    pub to: SampleArray,
    pub how: Derivation,
}

/// A lazily computed signal: where nodes read it (`None` when only other signals are computed
/// from it, as a raw CPPN output that every reader takes remapped: then it is never stored),
/// and the signals computed from it.
pub(super) struct Signal {
    to: Option<SampleArray>,
    derived: Vec<(Derivation, Signal)>,
}

impl Signal {
    /// The tree of `array` over `derived`, keeping only arrays in `exposed`; `None` when
    /// nothing in it is read.
    pub fn tree(
        array: &SampleArray,
        derived: &[Derived],
        exposed: &[SampleArray],
    ) -> Option<Signal> {
        let signal = Signal {
            to: exposed.iter().any(|e| e.same(array)).then(|| array.clone()),
            derived: derived
                .iter()
                .filter(|d| d.from.same(array))
                .filter_map(|d| Some((d.how, Signal::tree(&d.to, derived, exposed)?)))
                .collect(),
        };
        (signal.to.is_some() || !signal.derived.is_empty()).then_some(signal)
    }

    /// Stores `values` (this signal from sample `start` on) where nodes read it, then
    /// computes the signals derived from it.
    fn emit(&self, start: usize, values: &[f32]) {
        if let Some(to) = &self.to {
            to.write(start, values);
        }
        for (how, signal) in &self.derived {
            signal.emit(start, &how.apply(values));
        }
    }

    fn storage_bytes(&self) -> usize {
        self.to.as_ref().map_or(0, SampleArray::storage_bytes)
            + self
                .derived
                .iter()
                .map(|(_, s)| s.storage_bytes())
                .sum::<usize>()
    }
}

/// One frequency group's lazily evaluated CPPN outputs.
pub(super) struct LazyGroup {
    pub program: Program,
    pub periods: f64,
    /// CPPN output indices and their signals (in `program`'s pruned numbering).
    pub indices: Vec<usize>,
    pub signals: Vec<Signal>,
}

/// Frames of one prefetch: the fill that runs on another core while the render goes on with the
/// frames already filled. Small enough that a window has room for one beyond what the readers
/// still need (see [`Filler::start_prefetch`]), large enough that its spawn costs little.
const PREFETCH_CHUNK: usize = 2048;

/// How far behind the block clock a reader of a lazily filled array may still read: a value
/// curve with one point per frame reads point `frame * (N - 1) / N` (at most one behind) and
/// the next; a buffer played at rate 1 reads at the clock. A block is generous.
const READ_BEHIND: usize = crate::dsp::RENDER_QUANTUM;

const _: () = assert!(WINDOW >= FILL_CHUNK + FILL_MARGIN + PREFETCH_CHUNK + 2 * READ_BEHIND);

/// Fills a render's lazy arrays ahead of the block clock. The first chunk is filled before the
/// first block, on every core; after that, the next [`PREFETCH_CHUNK`] frames are filled by a
/// rayon task while the render renders the frames it has (on a machine with an idle core, the
/// CPPN then costs the render nothing), and a render that catches up with its prefetch fills
/// the pieces of it that no worker has taken yet, then waits for those being filled.
pub struct Filler {
    frames: usize,
    /// Frames filled and visible to the render.
    filled: usize,
    read_ahead: f64,
    /// Whether the arrays are windows, so a fill may not run more than a window ahead.
    windowed: bool,
    work: Arc<FillWork>,
    prefetch: Option<Arc<Pieces<FillBatch>>>,
}

/// What a fill computes: shared with the prefetch task.
struct FillWork {
    frames: usize,
    velocity: f64,
    groups: Vec<LazyGroup>,
    /// The noise generators. One fill runs at a time (the render starts one only after the
    /// previous is done), so this lock is never contended; it is taken once per fill.
    noise: parking_lot::Mutex<Vec<(NoiseGen, Signal)>>,
}

/// A fill of `range` in pieces, taken one at a time by the render and by helper tasks
/// ([`Pieces`]). A render has at most one prefetch in flight (it starts the next only once
/// this one is done), so the pool holds at most one prefetch task per render.
struct FillBatch {
    work: Arc<FillWork>,
    range: std::ops::Range<usize>,
    pieces: Vec<Piece>,
}

impl FillBatch {
    fn new(work: &Arc<FillWork>, range: std::ops::Range<usize>, step: usize) -> Arc<Pieces<Self>> {
        let pieces = work.pieces(&range, step);
        let count = pieces.len();
        let batch = FillBatch {
            work: work.clone(),
            range,
            pieces,
        };
        Pieces::new(batch, count)
    }
}

impl Piecewise for FillBatch {
    fn run_piece(&self, piece: usize) {
        self.work.fill_piece(&self.pieces[piece], &self.range);
    }
}

/// Frames of one prefetch piece: a quarter of a prefetch, so that a render that catches up
/// with its prefetch shares what is left of it with the worker.
const PREFETCH_PIECE: usize = PREFETCH_CHUNK / 4;

/// Part of a fill: a frame range of one frequency group's CPPN outputs, or all the noise.
enum Piece {
    Cppn(usize, std::ops::Range<usize>),
    Noise,
}

impl Filler {
    /// The filler of `groups` and `noise`, the lazy arrays of a render of `frames` frames whose
    /// readers read up to `read_ahead` times the block clock.
    pub(super) fn new(
        frames: usize,
        velocity: f64,
        read_ahead: f64,
        windowed: bool,
        groups: Vec<LazyGroup>,
        noise: Vec<(NoiseGen, Signal)>,
    ) -> Filler {
        let nothing_lazy = groups.is_empty() && noise.is_empty();
        Filler {
            frames,
            filled: if nothing_lazy { frames } else { 0 },
            read_ahead,
            windowed,
            work: Arc::new(FillWork {
                frames,
                velocity,
                groups,
                noise: parking_lot::Mutex::new(noise),
            }),
            prefetch: None,
        }
    }

    /// Bytes of storage of the lazily filled arrays.
    pub fn storage_bytes(&self) -> usize {
        let groups: usize = self
            .work
            .groups
            .iter()
            .flat_map(|g| &g.signals)
            .map(Signal::storage_bytes)
            .sum();
        let noise: usize = self
            .work
            .noise
            .lock()
            .iter()
            .map(|(_, s)| s.storage_bytes())
            .sum();
        groups + noise
    }

    /// Frames filled so far (a finished prefetch included).
    pub fn filled(&self) -> usize {
        match &self.prefetch {
            Some(p) if p.is_done() => p.work().range.end,
            _ => self.filled,
        }
    }

    /// Makes sure every lazy array holds what readers need to render the block ending at
    /// `frame_end`. Called before every block: an atomic load, a comparison, and every
    /// [`PREFETCH_CHUNK`] frames or so a spawned task.
    #[inline]
    pub fn ensure(&mut self, frame_end: usize) {
        if self.filled >= self.frames {
            return;
        }
        if let Some(p) = &self.prefetch {
            if p.is_done() {
                self.filled = p.work().range.end;
                self.prefetch = None;
            }
        }
        let need = ((frame_end as f64 * self.read_ahead).ceil() as usize)
            .saturating_add(FILL_MARGIN)
            .min(self.frames);
        if need > self.filled {
            self.catch_up(need);
        }
        // Not during the first chunk: a render's first turn should have the cores to itself
        // and the event loop (see stream.rs).
        if self.prefetch.is_none() && frame_end > FILL_CHUNK && self.filled < self.frames {
            self.start_prefetch(frame_end);
        }
    }

    /// The render needs frames beyond `filled`: the prefetch's first, then a fill of its own.
    #[cold]
    fn catch_up(&mut self, need: usize) {
        if let Some(p) = self.prefetch.take() {
            p.finish();
            self.filled = p.work().range.end;
        }
        if need > self.filled {
            let to = need.max(self.filled + FILL_CHUNK).min(self.frames);
            FillWork::fill(&self.work, self.filled..to);
            self.filled = to;
        }
    }

    /// Spawns the fill of the next frames, as far as the arrays have room: a window's slot is
    /// reused one window later, so a fill may write up to a window beyond the oldest frame a
    /// reader may still read, [`READ_BEHIND`] before the block starting now.
    #[cold]
    fn start_prefetch(&mut self, frame_end: usize) {
        let block_start = frame_end.saturating_sub(crate::dsp::RENDER_QUANTUM);
        let room = if self.windowed {
            block_start.saturating_sub(READ_BEHIND) + WINDOW
        } else {
            self.frames
        };
        let to = (self.filled + PREFETCH_CHUNK).min(self.frames);
        if to > room {
            return;
        }
        let p = FillBatch::new(&self.work, self.filled..to, PREFETCH_PIECE);
        p.spawn_helpers(1);
        self.prefetch = Some(p);
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        // What nobody has started of a prefetch is not needed any more.
        if let Some(p) = &self.prefetch {
            p.cancel();
        }
    }
}

impl FillWork {
    /// Evaluates `range` of every lazy array, on every core of the current rayon pool.
    fn fill(work: &Arc<FillWork>, range: std::ops::Range<usize>) {
        let step = cppn::PARALLEL_CHUNK.min(range.len().div_ceil(2)).max(256);
        let batch = FillBatch::new(work, range, step);
        batch.spawn_helpers(other_workers());
        batch.finish();
    }

    /// The pieces of a fill of `range`: each group's frames in sub-ranges of `step`, so that
    /// one group's frames spread over the cores too, and the noise.
    fn pieces(&self, range: &std::ops::Range<usize>, step: usize) -> Vec<Piece> {
        let mut pieces: Vec<Piece> = (0..self.groups.len())
            .flat_map(|g| {
                let range = range.clone();
                (range.start..range.end)
                    .step_by(step)
                    .map(move |s| Piece::Cppn(g, s..(s + step).min(range.end)))
            })
            .collect();
        if !self.noise.lock().is_empty() {
            pieces.push(Piece::Noise);
        }
        pieces
    }

    /// Fills one piece of the fill of `range`.
    fn fill_piece(&self, piece: &Piece, range: &std::ops::Range<usize>) {
        match piece {
            Piece::Cppn(g, sub) => {
                let group = &self.groups[*g];
                let mut bufs: Vec<Vec<f32>> =
                    group.indices.iter().map(|_| vec![0.0; sub.len()]).collect();
                let mut views: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                cppn::evaluate_range(
                    &group.program,
                    group.periods,
                    self.velocity,
                    self.frames,
                    sub.clone(),
                    &group.indices,
                    &mut views,
                );
                for (signal, buf) in group.signals.iter().zip(&bufs) {
                    signal.emit(sub.start, buf);
                }
            }
            // The generators run in order: this fill's frames come right after the last's.
            Piece::Noise => {
                for (generator, signal) in self.noise.lock().iter_mut() {
                    let samples: Vec<f32> =
                        range.clone().map(|_| generator.next_sample()).collect();
                    signal.emit(range.start, &samples);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::outputs::{remap, wavetable_gain};

    #[test]
    fn only_arrays_that_nodes_read_are_stored_and_derived_ones_match_the_whole_functions() {
        // raw -> remapped (a wavetable mix) -> one wave's gain, as a wavetable genome has it.
        let len = 300;
        let (raw, mix, gain) = (
            SampleArray::window(len, 256),
            SampleArray::window(len, 256),
            SampleArray::window(len, 256),
        );
        let derived = [
            Derived {
                from: raw.clone(),
                to: mix.clone(),
                how: Derivation::Remap { lo: -1.0, hi: 0.5 },
            },
            Derived {
                from: mix.clone(),
                to: gain.clone(),
                how: Derivation::WavetableGain(WaveSpan::new(1, 3)),
            },
        ];
        assert!(
            Signal::tree(&raw, &derived, &[]).is_none(),
            "nothing is read"
        );
        let only_gain = Signal::tree(&raw, &derived, std::slice::from_ref(&gain)).unwrap();
        assert_eq!(only_gain.storage_bytes(), gain.storage_bytes());
        let mix_too = Signal::tree(&raw, &derived, &[gain.clone(), mix.clone()]).unwrap();
        assert_eq!(mix_too.storage_bytes(), 2 * gain.storage_bytes());

        let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 1.2).collect();
        // In pieces that wrap the 256-sample windows, as the filler writes them.
        for range in [0..200, 200..300] {
            mix_too.emit(range.start, &values[range]);
        }
        let want_mix = remap(&values, -1.0, 0.5);
        let want_gain = wavetable_gain(&want_mix, 1, 3);
        for i in 100..len {
            assert_eq!(mix.get(i).to_bits(), want_mix[i].to_bits(), "mix {i}");
            assert_eq!(gain.get(i).to_bits(), want_gain[i].to_bits(), "gain {i}");
            assert_eq!(raw.get(i), 0.0, "the raw output is not stored");
        }
    }
}
