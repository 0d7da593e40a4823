//! The late part of a long convolver impulse response, convolved in O(log n) work per sample.
//!
//! [`super::convolver`] keeps fft-convolver's exact algorithm for the first partitions of the
//! IR; every IR partition there meets every input partition, so its cost per sample grows with
//! the IR length, and kromosynth's IRs last as long as the render. The rest of the IR starts
//! `start` samples in (4 s at 48 kHz), and that delay is what makes it cheap: a part of the IR
//! that starts s samples in may be convolved in blocks of up to s / 4 samples and its result
//! still arrive in time. So the tail is cut into levels of growing block size B (x4 per level,
//! each level starting at least 4B in), and each level is a uniformly partitioned convolution
//! with FFTs of 2B points: per sample, a level costs two FFTs of 2B points spread over 2B
//! samples plus one complex multiply-add per partition (about 12 per level), and a 600 s IR
//! at 48 kHz needs four levels.
//!
//! A level takes its input in pairs of blocks, one as the real and one as the imaginary part
//! of one complex FFT (the IR is real, so the two results come back apart as the real and
//! imaginary parts of one inverse FFT). The work for one pair (two FFTs, the multiply-adds, the
//! overlap-add into the output ring) is done during the next pair's 2B samples, a slice per
//! 128-frame block, with each FFT computed in the four-step way (FFTs of about sqrt(2B) points
//! over columns, twiddles, then over rows) so that no block runs a whole large FFT. What a block
//! does depends only on how many blocks came before, so the samples do not depend on how the
//! blocks are pulled.
//!
//! Rounding: all of this is f32 like the exact algorithm, but its sums are grouped differently,
//! so the tail differs from fft-convolver's by rounding (the tests and the module docs of
//! [`super::convolver`] give the measured size).

use realfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Columns (or rows) per four-step FFT piece: 8 complex f32 are one 64-byte cache line, so the
/// strided gathers read whole lines.
const GROUP: usize = 8;
/// Bins per piece of the split and the multiply-add, and samples per copy piece.
const SPAN: usize = 4096;
/// Block sizes grow by this factor from one level to the next.
const RATIO: usize = 4;
/// The largest block: its FFT buffers are 2 x 32 MiB. Beyond, the last level takes more
/// partitions of this size instead (at 48 kHz only IRs longer than about 10 minutes).
const MAX_BLOCK: usize = 1 << 21;
/// A level's partitions start at least this many blocks into the IR: one pair of blocks to
/// arrive, one pair's time to compute.
const LEAD: usize = 4;

type C32 = Complex<f32>;

/// A forward complex FFT of n = n1 * n2 points computed in `units()` pieces (four-step:
/// n2 FFTs of n1 points down the columns, twiddles, n1 FFTs of n2 points along the rows).
struct SplitFft {
    n1: usize,
    n2: usize,
    fft1: Arc<dyn Fft<f32>>,
    fft2: Arc<dyn Fft<f32>>,
    /// exp(-2 pi i e / n) = hi[e >> lo_bits] * lo[e & lo_mask], in f64 so that the product
    /// rounds once, to f32.
    tw_lo: Vec<Complex<f64>>,
    tw_hi: Vec<Complex<f64>>,
    lo_bits: u32,
    rows: Vec<C32>,
    scratch: Vec<C32>,
}

impl SplitFft {
    fn new(planner: &mut FftPlanner<f32>, n: usize) -> Self {
        assert!(n.is_power_of_two() && n >= GROUP * GROUP);
        let bits = n.trailing_zeros();
        let n1 = 1 << (bits / 2);
        let n2 = n / n1;
        let fft1 = planner.plan_fft_forward(n1);
        let fft2 = planner.plan_fft_forward(n2);
        let lo_bits = bits.div_ceil(2);
        let w = |e: usize| {
            let a = -2. * std::f64::consts::PI * e as f64 / n as f64;
            Complex::new(a.cos(), a.sin())
        };
        let scratch_len = fft1
            .get_inplace_scratch_len()
            .max(fft2.get_inplace_scratch_len());
        SplitFft {
            n1,
            n2,
            tw_lo: (0..1 << lo_bits).map(w).collect(),
            tw_hi: (0..n >> lo_bits).map(|h| w(h << lo_bits)).collect(),
            lo_bits,
            rows: vec![C32::default(); GROUP * n2],
            scratch: vec![C32::default(); scratch_len],
            fft1,
            fft2,
        }
    }

    fn units(&self) -> usize {
        (self.n1 + self.n2) / GROUP
    }

    /// Piece `u` of the transform of `data` (natural order in and out) in place; `work` holds
    /// the matrix between the two passes.
    fn unit(&mut self, u: usize, data: &mut [C32], work: &mut [C32]) {
        let (n1, n2) = (self.n1, self.n2);
        let first = n2 / GROUP;
        if u < first {
            // Columns c0..c0 + GROUP (input index n2 * i1 + c) become rows of `work`.
            let c0 = u * GROUP;
            let rows = &mut work[c0 * n1..(c0 + GROUP) * n1];
            for i1 in 0..n1 {
                let src = &data[n2 * i1 + c0..][..GROUP];
                for (c, &v) in src.iter().enumerate() {
                    rows[c * n1 + i1] = v;
                }
            }
            self.fft1.process_with_scratch(rows, &mut self.scratch);
            let mask = (1 << self.lo_bits) - 1;
            for (c, row) in rows.chunks_exact_mut(n1).enumerate() {
                let column = c0 + c;
                for (k1, v) in row.iter_mut().enumerate().skip(1) {
                    let e = column * k1;
                    let t = self.tw_hi[e >> self.lo_bits] * self.tw_lo[e & mask];
                    *v *= Complex::new(t.re as f32, t.im as f32);
                }
            }
        } else {
            // Rows k0..k0 + GROUP of the transposed matrix; output index k1 + n1 * k2.
            let k0 = (u - first) * GROUP;
            let rows = &mut self.rows;
            for i2 in 0..n2 {
                let src = &work[i2 * n1 + k0..][..GROUP];
                for (c, &v) in src.iter().enumerate() {
                    rows[c * n2 + i2] = v;
                }
            }
            self.fft2.process_with_scratch(rows, &mut self.scratch);
            for k2 in 0..n2 {
                let dst = &mut data[k0 + n1 * k2..][..GROUP];
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = rows[c * n2 + k2];
                }
            }
        }
    }
}

/// One level: IR partitions of `block` samples from IR offset `offset`, convolved uniformly.
struct Level {
    block: usize,
    offset: usize,
    parts: usize,
    fft: SplitFft,
    /// The FFT buffer (2 * block points) and the four-step matrix.
    data: Vec<C32>,
    work: Vec<C32>,
    /// Half spectra (block + 1 bins) of the IR partitions transformed so far; capacity for all.
    ir_spectra: Vec<C32>,
    /// Half spectra of the last `slots` input blocks, block b in slot b % slots: the even
    /// block of a pair meets blocks back to `parts - 1` before it, and the odd one is written
    /// with it, so `parts + 1` slots.
    input_spectra: Vec<C32>,
    slots: usize,
    /// Multiply-add sums of one piece, for the even and the odd block of the pair.
    sums: Vec<C32>,
    /// The pair whose cycle is under way (its work runs while the next pair arrives).
    pair: usize,
    /// Whether that cycle transforms IR partitions too, and its pieces done.
    with_ir: bool,
    done: usize,
    running: bool,
}

/// The phases of one cycle, in order, each a number of pieces.
#[derive(Clone, Copy)]
enum Phase {
    IrCopy,
    IrFft,
    IrSplit,
    InCopy,
    InFft,
    InSplit,
    Multiply,
    OutFft,
    Scatter,
}

impl Level {
    fn bins(&self) -> usize {
        self.block + 1
    }

    fn phases(&self) -> [(Phase, usize); 9] {
        let copies = self.block.div_ceil(SPAN);
        let spans = self.bins().div_ceil(SPAN);
        let ffts = self.fft.units();
        let ir = |n: usize| if self.with_ir { n } else { 0 };
        [
            (Phase::IrCopy, ir(copies)),
            (Phase::IrFft, ir(ffts)),
            (Phase::IrSplit, ir(spans)),
            (Phase::InCopy, copies),
            (Phase::InFft, ffts),
            (Phase::InSplit, spans),
            (Phase::Multiply, spans),
            (Phase::OutFft, ffts),
            (Phase::Scatter, (2 * self.block).div_ceil(SPAN)),
        ]
    }

    fn units(&self) -> usize {
        self.phases().iter().map(|p| p.1).sum()
    }

    /// Runs the cycle's pieces up to `until`.
    fn run(&mut self, until: usize, ir: &[f32], input: &[f32], output: &mut [f32]) {
        while self.done < until {
            let (mut phase, mut piece) = (Phase::Scatter, self.done);
            for (p, n) in self.phases() {
                if piece < n {
                    phase = p;
                    break;
                }
                piece -= n;
            }
            self.piece(phase, piece, ir, input, output);
            self.done += 1;
        }
    }

    fn piece(&mut self, phase: Phase, piece: usize, ir: &[f32], input: &[f32], output: &mut [f32]) {
        let b = self.block;
        let n = 2 * b;
        let range = |len: usize| piece * SPAN..((piece + 1) * SPAN).min(len);
        match phase {
            Phase::IrCopy => {
                // IR partitions 2 * pair and 2 * pair + 1 as real and imaginary parts.
                let start = self.offset + 2 * self.pair * b;
                let at = |i: usize| ir.get(i).copied().unwrap_or(0.);
                for i in range(b) {
                    let second = if 2 * self.pair + 1 < self.parts {
                        at(start + b + i)
                    } else {
                        0.
                    };
                    self.data[i] = Complex::new(at(start + i), second);
                    self.data[b + i] = C32::default();
                }
            }
            Phase::InCopy => {
                let mask = input.len() - 1;
                let start = 2 * self.pair * b;
                for i in range(b) {
                    let re = input[(start + i) & mask];
                    let im = input[(start + b + i) & mask];
                    self.data[i] = Complex::new(re, im);
                    self.data[b + i] = C32::default();
                }
            }
            Phase::IrFft | Phase::InFft | Phase::OutFft => {
                self.fft.unit(piece, &mut self.data, &mut self.work)
            }
            Phase::IrSplit | Phase::InSplit => {
                // The spectra of the real and the imaginary part, from F[k] and F[n - k].
                let bins = self.bins();
                let (first, second, spectra) = if let Phase::IrSplit = phase {
                    let j = 2 * self.pair;
                    (j, j + 1, &mut self.ir_spectra)
                } else {
                    let j = 2 * self.pair;
                    (
                        j % self.slots,
                        (j + 1) % self.slots,
                        &mut self.input_spectra,
                    )
                };
                let needed = (first.max(second) + 1) * bins;
                if spectra.len() < needed {
                    // Within the capacity reserved at construction: no allocation.
                    spectra.resize(needed, C32::default());
                }
                for k in range(bins) {
                    let f = self.data[k];
                    let g = self.data[(n - k) & (n - 1)].conj();
                    spectra[first * bins + k] = (f + g) * 0.5;
                    if second < self.slots {
                        let d = f - g;
                        spectra[second * bins + k] = Complex::new(d.im, -d.re) * 0.5;
                    }
                }
            }
            Phase::Multiply => {
                let bins = self.bins();
                let ks = range(bins);
                let len = ks.len();
                let (even, odd) = self.sums.split_at_mut(SPAN);
                let (even, odd) = (&mut even[..len], &mut odd[..len]);
                for (block, sum) in [(2 * self.pair, &mut *even), (2 * self.pair + 1, &mut *odd)] {
                    sum.fill(C32::default());
                    for j in 0..=block.min(self.parts - 1) {
                        let x = &self.input_spectra[(block - j) % self.slots * bins + ks.start..]
                            [..len];
                        let h = &self.ir_spectra[j * bins + ks.start..][..len];
                        for ((s, x), h) in sum.iter_mut().zip(x).zip(h) {
                            *s += x * h;
                        }
                    }
                }
                // W = even + i odd over the whole spectrum, conjugated so that the forward
                // FFT computes the inverse (conjugated back in `Scatter`).
                for (i, k) in ks.enumerate() {
                    let (e, o) = (even[i], odd[i]);
                    self.data[k] = Complex::new(e.re - o.im, -(e.im + o.re));
                    if k != 0 && k != b {
                        self.data[n - k] = Complex::new(e.re + o.im, e.im - o.re);
                    }
                }
            }
            Phase::Scatter => {
                let len = output.len();
                let scale = 1. / n as f32;
                let even = 2 * self.pair * b + self.offset;
                for i in range(n) {
                    let v = self.data[i];
                    output[(even + i) % len] += v.re * scale;
                    output[(even + b + i) % len] += -v.im * scale;
                }
            }
        }
    }
}

/// The tail of one IR: its levels, the input they read and the output they add to.
pub(super) struct Tail {
    levels: Vec<Level>,
    /// The IR from its start (the head's part zeroed out of use), until every level has
    /// transformed its partitions.
    ir: Vec<f32>,
    /// The last 4 * (largest block) input samples.
    input: Vec<f32>,
    /// Output not yet played, by frame modulo its length; read samples are zeroed for reuse.
    output: Vec<f32>,
    /// Frames taken so far.
    frames: usize,
}

impl Tail {
    /// The convolution of the input with `ir[start..]` (the samples before `start` are left to
    /// the exact head), or `None` when nothing is left. `start` must be at least 4 * 64.
    pub(super) fn new(ir: Vec<f32>, start: usize) -> Option<Self> {
        if ir.len() <= start {
            return None;
        }
        let mut planner = FftPlanner::new();
        let mut levels = Vec::new();
        let mut block = (start / LEAD).min(MAX_BLOCK);
        block = 1 << block.ilog2();
        assert!(2 * block >= GROUP * GROUP, "tail start {start} too early");
        let mut offset = start;
        while offset < ir.len() {
            let left = (ir.len() - offset).div_ceil(block);
            let next = block * RATIO;
            let parts = if next > MAX_BLOCK {
                left
            } else {
                // Enough partitions that the next level starts LEAD of its blocks in.
                (LEAD * next)
                    .saturating_sub(offset)
                    .div_ceil(block)
                    .clamp(1, left)
            };
            let bins = block + 1;
            levels.push(Level {
                block,
                offset,
                parts,
                fft: SplitFft::new(&mut planner, 2 * block),
                data: vec![C32::default(); 2 * block],
                work: vec![C32::default(); 2 * block],
                ir_spectra: Vec::with_capacity((parts + 1) * bins),
                input_spectra: Vec::with_capacity((parts + 1) * bins),
                slots: parts + 1,
                sums: vec![C32::default(); 2 * SPAN],
                pair: 0,
                with_ir: false,
                done: 0,
                running: false,
            });
            offset += parts * block;
            if next <= MAX_BLOCK {
                block = next;
            }
        }
        let largest = levels.iter().map(|l| l.block).max().unwrap_or(0);
        let reach = levels
            .iter()
            .map(|l| l.offset + 2 * l.block)
            .max()
            .unwrap_or(0);
        Some(Tail {
            levels,
            ir,
            input: vec![0.; LEAD * largest],
            output: vec![0.; reach + super::RENDER_QUANTUM],
            frames: 0,
        })
    }

    /// Adds the tail's part of the 128 frames after `input` (a block the head took) to `out`.
    pub(super) fn process(&mut self, input: &[f32], out: &mut [f32]) {
        let q = input.len();
        let mask = self.input.len() - 1;
        for (i, &v) in input.iter().enumerate() {
            self.input[(self.frames + i) & mask] = v;
        }
        self.frames += q;
        let frames = self.frames;
        let mut transforming = false;
        for level in &mut self.levels {
            let pair_len = 2 * level.block;
            if frames.is_multiple_of(pair_len) {
                // A pair has arrived: the previous cycle ends, this pair's begins.
                if level.running {
                    let all = level.units();
                    level.run(all, &self.ir, &self.input, &mut self.output);
                }
                level.pair = frames / pair_len - 1;
                level.with_ir = 2 * level.pair < level.parts;
                level.done = 0;
                level.running = true;
            } else if level.running {
                // The cycle's share up to this block, rounded up.
                let elapsed = frames % pair_len;
                let until = (level.units() * elapsed).div_ceil(pair_len);
                level.run(until, &self.ir, &self.input, &mut self.output);
            }
            transforming |= !level.running || level.with_ir;
        }
        if !transforming && !self.ir.is_empty() {
            self.ir = Vec::new();
        }
        let len = self.output.len();
        let at = frames - q;
        for (i, o) in out.iter_mut().enumerate() {
            let slot = &mut self.output[(at + i) % len];
            *o += *slot;
            *slot = 0.;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fft_matches_a_direct_fft() {
        let mut planner = FftPlanner::new();
        for n in [64, 128, 1 << 11, 1 << 15] {
            let input: Vec<C32> = (0..n)
                .map(|i| Complex::new((i as f32 * 0.37).sin(), (i as f32 * 1.91).cos() * 0.5))
                .collect();
            let mut expected = input.clone();
            planner.plan_fft_forward(n).process(&mut expected);
            let mut split = SplitFft::new(&mut planner, n);
            let (mut data, mut work) = (input.clone(), vec![C32::default(); n]);
            for u in 0..split.units() {
                split.unit(u, &mut data, &mut work);
            }
            let err: f32 = data
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).norm())
                .fold(0., f32::max);
            let peak = expected.iter().map(|z| z.norm()).fold(0., f32::max);
            assert!(err < peak * 1e-5, "n {n}: error {err} of peak {peak}");
        }
    }
}
