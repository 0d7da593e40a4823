//! The CPPN: a neatjs network compiled into a flat program, and its CPU evaluator.
//!
//! The original evaluates a decoded neatjs genome per sample with cppnjs's recursive pull
//! (`networks/cppn.js` `recursiveActivation`): signals are cleared, the inputs set, and each
//! output neuron is pulled depth-first in index order; a neuron is computed once, as
//! `activation(sum over incoming connections of source * weight)`, summing in connection order.
//! A source still on the recursion stack (a recurrent edge) contributes its last activation,
//! which is always 0 because signals were cleared. That traversal depends only on the topology,
//! so we run it once at compile time and record the resulting straight-line program.

pub mod activation;
pub mod simd;

use simd::{Kernels, Level};
use std::ops::Range;

pub use activation::Activation;
use rayon::prelude::*;

use crate::error::Error;
use crate::genome::NeatGenome;

/// Bounds on the networks we accept, so a hostile genome cannot make compile time or memory
/// explode. Real kromosynth CPPNs have tens of nodes and about a hundred connections.
pub const MAX_NODES: usize = 10_000;
pub const MAX_CONNECTIONS: usize = 100_000;

/// Samples per rayon task when evaluating a whole buffer. Large enough that the per-task
/// overhead is negligible, small enough to spread a 1 s render over many cores.
pub const PARALLEL_CHUNK: usize = 4096;

/// One neuron's computation: `regs[target] = activation(sum of regs[src] * weight)`.
#[derive(Clone, Debug)]
pub struct Op {
    pub target: u32,
    pub activation: Activation,
    /// Index range into `Program::terms`.
    pub terms: Range<u32>,
}

/// A straight-line CPPN program over a register file of `registers` f64 values.
///
/// Register layout: the network's neurons in stored order (bias neurons, inputs, outputs,
/// hidden), then one register that always holds 0.0 (what a recurrent edge reads).
#[derive(Clone, Debug)]
pub struct Program {
    pub registers: usize,
    pub bias_count: usize,
    pub input_count: usize,
    pub output_count: usize,
    pub ops: Vec<Op>,
    /// (source register, weight) of every summed connection, grouped per op.
    pub terms: Vec<(u32, f64)>,
}

impl Program {
    /// Compiles a stored neatjs genome (the decoder of neatjs `DecodeToFloatFastConcurrentNetwork`
    /// and the traversal of cppnjs `recursiveActivation`).
    pub fn compile(genome: &NeatGenome) -> Result<Program, Error> {
        let n = genome.nodes.len();
        if n > MAX_NODES {
            return Err(Error(format!("CPPN has {n} nodes; at most {MAX_NODES}")));
        }
        if genome.connections.len() > MAX_CONNECTIONS {
            return Err(Error(format!(
                "CPPN has {} connections; at most {MAX_CONNECTIONS}",
                genome.connections.len()
            )));
        }
        let bias_count = genome.nodes.iter().take_while(|n| n.is_bias).count();
        let input_count = genome.input_count;
        let output_count = genome.output_count;
        let first_output = bias_count + input_count;
        if first_output + output_count > n {
            return Err(Error(format!(
                "CPPN has {n} nodes, fewer than its {bias_count} bias + {input_count} input + \
                 {output_count} output nodes"
            )));
        }

        let mut activations = Vec::with_capacity(n);
        for node in &genome.nodes {
            activations.push(Activation::from_name(&node.activation).ok_or_else(|| {
                Error(format!(
                    "CPPN node {} has unknown activation function {:?}",
                    node.gid, node.activation
                ))
            })?);
        }

        let index_of = |gid: &str, what: &str| {
            genome
                .nodes
                .iter()
                .position(|n| n.gid == gid)
                .ok_or_else(|| Error(format!("CPPN connection {what} {gid:?} is no node")))
        };
        // cppnjs keeps incoming sources per connection (duplicates repeat) but weights in an
        // adjacency matrix, so a duplicated pair sums twice with the last weight.
        let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut weight = std::collections::HashMap::new();
        for c in &genome.connections {
            let s = index_of(&c.source, "source")?;
            let t = index_of(&c.target, "target")?;
            incoming[t].push(s);
            weight.insert((s, t), c.weight);
        }

        let zero = n as u32;
        let mut compiler = Compiler {
            incoming: &incoming,
            weight: &weight,
            activations: &activations,
            activated: (0..n).map(|i| i < first_output).collect(),
            in_activation: vec![false; n],
            ops: Vec::new(),
            terms: Vec::new(),
            zero,
        };
        for i in 0..output_count {
            compiler.activate(first_output + i);
        }
        Ok(Program {
            registers: n + 1,
            bias_count,
            input_count,
            output_count,
            ops: compiler.ops,
            terms: compiler.terms,
        })
    }

    /// The program cut down to what `outputs` depend on. The original computes every output
    /// neuron per sample; a render usually needs one or two of the 18 per frequency, and the
    /// values of those do not change: which edges count as recurrent was fixed at compile time.
    pub fn pruned(&self, outputs: &[usize]) -> Program {
        let mut needed = vec![false; self.registers];
        for &o in outputs {
            needed[self.output_register(o)] = true;
        }
        let mut keep = vec![false; self.ops.len()];
        for (i, op) in self.ops.iter().enumerate().rev() {
            if needed[op.target as usize] {
                keep[i] = true;
                for &(src, _) in &self.terms[op.terms.start as usize..op.terms.end as usize] {
                    needed[src as usize] = true;
                }
            }
        }
        let mut ops = Vec::new();
        let mut terms = Vec::new();
        for (op, _) in self.ops.iter().zip(&keep).filter(|(_, &k)| k) {
            let start = terms.len() as u32;
            terms.extend_from_slice(&self.terms[op.terms.start as usize..op.terms.end as usize]);
            ops.push(Op {
                target: op.target,
                activation: op.activation,
                terms: start..terms.len() as u32,
            });
        }
        Program {
            ops,
            terms,
            ..self.clone()
        }
    }

    /// Register holding output `index`.
    pub fn output_register(&self, index: usize) -> usize {
        self.bias_count + self.input_count + index
    }

    /// Number of summed connections per sample (for cost estimates).
    pub fn term_count(&self) -> usize {
        self.terms.len()
    }

    /// A register file for [`Program::run`]: zeros, with the bias registers at 1.
    pub fn registers(&self) -> Vec<f64> {
        let mut regs = vec![0.0f64; self.registers];
        for r in regs.iter_mut().take(self.bias_count) {
            *r = 1.0;
        }
        regs
    }

    /// Evaluates the program for one sample in `regs` (from [`Program::registers`], reusable
    /// from sample to sample). Only the input registers are set here: every op reads registers
    /// that an earlier op of the same sample wrote, a bias or input register, or the register
    /// that stays 0 (recurrent edges), so nothing needs clearing between samples.
    #[inline]
    pub fn run(&self, regs: &mut [f64], inputs: [f64; 2]) {
        for (i, v) in inputs.iter().enumerate().take(self.input_count) {
            regs[self.bias_count + i] = *v;
        }
        for op in &self.ops {
            let mut sum = 0.0f64;
            for &(src, w) in &self.terms[op.terms.start as usize..op.terms.end as usize] {
                sum += regs[src as usize] * w;
            }
            regs[op.target as usize] = op.activation.apply(sum);
        }
    }
}

struct Compiler<'a> {
    incoming: &'a [Vec<usize>],
    weight: &'a std::collections::HashMap<(usize, usize), f64>,
    activations: &'a [Activation],
    activated: Vec<bool>,
    in_activation: Vec<bool>,
    ops: Vec<Op>,
    terms: Vec<(u32, f64)>,
    zero: u32,
}

impl Compiler<'_> {
    /// cppnjs `recursiveActivateNode`, recording instead of computing. Terms are collected in
    /// a local list first because nested activations append their own ops and terms.
    fn activate(&mut self, node: usize) {
        if self.activated[node] {
            self.in_activation[node] = false;
            return;
        }
        self.in_activation[node] = true;
        let mut terms = Vec::with_capacity(self.incoming[node].len());
        for &src in &self.incoming[node] {
            let w = self.weight[&(src, node)];
            if self.in_activation[src] {
                terms.push((self.zero, w));
            } else {
                if !self.activated[src] {
                    self.activate(src);
                }
                terms.push((src as u32, w));
            }
        }
        self.activated[node] = true;
        self.in_activation[node] = false;
        let start = self.terms.len() as u32;
        self.terms.extend(terms);
        self.ops.push(Op {
            target: node as u32,
            activation: self.activations[node],
            terms: start..self.terms.len() as u32,
        });
    }
}

/// The CPPN's two inputs for sample `c` of an `n`-sample render (kromosynth
/// `Activator.getInputSignals`, `variationOnPeriods` true): the ramp from -1 to 1 and
/// `sin(inputPeriods * ramp) * velocity`, with `inputPeriods = frequency * n / 48000`.
#[inline]
pub fn inputs(c: usize, n: usize, input_periods: f64, velocity: f64) -> [f64; 2] {
    let fraction = c as f64 / (n - 1) as f64;
    // range.js lerp(from, to, t) = from + t * (to - from)
    let ramp = -1.0 + fraction * 2.0;
    let extra = libm::sin(input_periods * ramp);
    [extra * velocity, ramp]
}

/// `frequency * (totalSampleCount / sampleRate)`.
pub fn input_periods(frequency: f64, n: usize, sample_rate: f64) -> f64 {
    frequency * (n as f64 / sample_rate)
}

/// Samples evaluated together, op by op: each op's sum and activation run over a row of this
/// many samples (vectorized), instead of the whole network per sample. 64 rows of f64 for a
/// 40-register network are 20 KiB, which stays in L1.
pub const BLOCK: usize = 64;

/// The offsets of a row's samples from its first.
const ROW_OFFSETS: [f64; BLOCK] = crate::counting();

/// A program evaluated [`BLOCK`] samples at a time for one render and frequency: one register
/// row of `BLOCK` f64 per register, and the input signal's parameters (see [`inputs`]).
pub struct BlockEvaluator<'a> {
    program: &'a Program,
    /// Register r's row is `regs[r * BLOCK..][..BLOCK]`; the bias rows hold 1.
    regs: Vec<f64>,
    /// One op's sums.
    scratch: [f64; BLOCK],
    samples: usize,
    input_periods: f64,
    velocity: f64,
}

impl<'a> BlockEvaluator<'a> {
    /// For an `samples`-sample render with these input parameters.
    pub fn new(program: &'a Program, samples: usize, input_periods: f64, velocity: f64) -> Self {
        let mut regs = vec![0.0f64; program.registers * BLOCK];
        regs[..program.bias_count * BLOCK].fill(1.0);
        BlockEvaluator {
            program,
            regs,
            scratch: [0.0; BLOCK],
            samples,
            input_periods,
            velocity,
        }
    }

    /// Register `r` after the last [`BlockEvaluator::run`]: its first `len` values are samples
    /// `first..first + len`.
    pub fn register(&self, r: usize) -> &[f64] {
        &self.regs[r * BLOCK..][..BLOCK]
    }

    /// [`Program::run`] for samples `first..first + len` (`len <= BLOCK`): every sample gets
    /// exactly the bits `run` gives it, because per sample the same operations happen in the
    /// same order; only the loop nest is swapped.
    #[inline]
    pub fn run(&mut self, first: usize, len: usize) {
        self.run_at(Level::detected(), first, len);
    }

    /// [`BlockEvaluator::run`] with `level`'s kernels, to compare levels; a level this CPU does
    /// not run panics.
    pub fn run_at(&mut self, level: Level, first: usize, len: usize) {
        assert!(level.available(), "{level:?} kernels on a CPU without them");
        // SAFETY: the CPU runs the level (asserted above).
        unsafe {
            match level {
                Level::Scalar => self.run_with::<simd::Scalar>(first, len),
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => self.run_avx2(first, len),
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => self.run_avx512(first, len),
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("only x86_64 has vector levels"),
            }
        }
    }

    /// The same code compiled for AVX2, so the sums and the simple activations vectorize
    /// four wide and the transcendental ones use the four-lane [`simd`] kernels.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&mut self, first: usize, len: usize) {
        self.run_with::<simd::Avx2>(first, len);
    }

    /// The same code compiled for AVX-512: eight wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn run_avx512(&mut self, first: usize, len: usize) {
        self.run_with::<simd::Avx512>(first, len);
    }

    /// # Safety
    /// The CPU must run `K`'s instruction set.
    #[inline(always)]
    unsafe fn run_with<K: Kernels>(&mut self, first: usize, len: usize) {
        assert!(len <= BLOCK);
        let p = self.program;
        let row = |r: usize| r * BLOCK..r * BLOCK + len;
        // The inputs of [`inputs`], a row at a time: the ramp, then sin(periods * ramp) * velocity.
        // The sample index as `first as f64 + i as f64`, which is `(first + i) as f64` exactly
        // (integers below 2^53), so that the loop vectorizes ([`crate::counting`]): a
        // conversion per sample kept it scalar, about two fifths of this function's own time.
        let (base, last) = (first as f64, (self.samples - 1) as f64);
        let ramp = &mut self.scratch[..len];
        for (r, offset) in ramp.iter_mut().zip(ROW_OFFSETS) {
            let fraction = (base + offset) / last;
            *r = -1.0 + fraction * 2.0;
        }
        if p.input_count >= 2 {
            self.regs[row(p.bias_count + 1)].copy_from_slice(ramp);
        }
        if p.input_count >= 1 {
            ramp.iter_mut().for_each(|r| *r *= self.input_periods);
            K::sin_in_place(ramp);
            ramp.iter_mut().for_each(|e| *e *= self.velocity);
            self.regs[row(p.bias_count)].copy_from_slice(ramp);
        }
        for op in &p.ops {
            let sum = &mut self.scratch[..len];
            sum.fill(0.0);
            for &(src, w) in &p.terms[op.terms.start as usize..op.terms.end as usize] {
                for (s, x) in sum.iter_mut().zip(&self.regs[row(src as usize)]) {
                    *s += *x * w;
                }
            }
            op.activation.apply_with::<K>(sum);
            self.regs[row(op.target as usize)].copy_from_slice(sum);
        }
    }
}

/// Evaluates `outputs` (output indices) for samples `range` of an `n`-sample render at one
/// frequency; `out[k]` receives output `outputs[k]` as f32 (the original stores the doubles in
/// a Float32Array). Single-threaded, [`BLOCK`] samples at a time; see [`evaluate_parallel`].
pub fn evaluate_range(
    program: &Program,
    input_periods: f64,
    velocity: f64,
    n: usize,
    range: Range<usize>,
    outputs: &[usize],
    out: &mut [&mut [f32]],
) {
    let mut evaluator = BlockEvaluator::new(program, n, input_periods, velocity);
    let registers_out: Vec<usize> = outputs
        .iter()
        .map(|&o| program.output_register(o))
        .collect();
    let mut first = range.start;
    while first < range.end {
        let len = (range.end - first).min(BLOCK);
        evaluator.run(first, len);
        let at = first - range.start;
        for (k, &r) in registers_out.iter().enumerate() {
            for (o, v) in out[k][at..at + len].iter_mut().zip(evaluator.register(r)) {
                *o = *v as f32;
            }
        }
        first += len;
    }
}

/// Evaluates whole output buffers (`n` samples each) with rayon. The result does not depend
/// on the chunking: every sample is computed independently from its index.
pub fn evaluate_parallel(
    program: &Program,
    input_periods: f64,
    velocity: f64,
    n: usize,
    outputs: &[usize],
) -> Vec<Vec<f32>> {
    let program = &program.pruned(outputs);
    let mut bufs: Vec<Vec<f32>> = outputs.iter().map(|_| vec![0.0f32; n]).collect();
    // Split every output buffer into the same chunks, then hand chunk i of all buffers to
    // one task.
    let mut per_chunk: Vec<Vec<&mut [f32]>> = Vec::new();
    for buf in bufs.iter_mut() {
        for (i, chunk) in buf.chunks_mut(PARALLEL_CHUNK).enumerate() {
            if per_chunk.len() <= i {
                per_chunk.push(Vec::with_capacity(outputs.len()));
            }
            per_chunk[i].push(chunk);
        }
    }
    per_chunk
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut chunk)| {
            let start = i * PARALLEL_CHUNK;
            let end = (start + PARALLEL_CHUNK).min(n);
            evaluate_range(
                program,
                input_periods,
                velocity,
                n,
                start..end,
                outputs,
                &mut chunk,
            );
        });
    bufs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genome::{NeatConnection, NeatGenome, NeatNode};

    fn node(gid: &str, act: &str, bias: bool) -> NeatNode {
        NeatNode {
            gid: gid.into(),
            activation: act.into(),
            is_bias: bias,
        }
    }

    fn conn(s: &str, t: &str, w: f64) -> NeatConnection {
        NeatConnection {
            source: s.into(),
            target: t.into(),
            weight: w,
        }
    }

    /// bias 0, inputs 1 2, outputs 3 4, hidden 5.
    fn genome(acts: [&str; 3], connections: Vec<NeatConnection>) -> NeatGenome {
        NeatGenome {
            nodes: vec![
                node("0", "NullFn", true),
                node("1", "NullFn", false),
                node("2", "NullFn", false),
                node("3", acts[0], false),
                node("4", acts[1], false),
                node("5", acts[2], false),
            ],
            connections,
            input_count: 2,
            output_count: 2,
        }
    }

    fn eval(p: &Program, inputs: [f64; 2]) -> (f64, f64) {
        let mut regs = p.registers();
        p.run(&mut regs, inputs);
        (regs[p.output_register(0)], regs[p.output_register(1)])
    }

    #[test]
    fn feed_forward_with_bias_and_hidden() {
        let g = genome(
            ["Linear", "Linear", "Linear"],
            vec![
                conn("0", "5", 0.5),
                conn("1", "5", 2.0),
                conn("5", "3", -1.0),
                conn("2", "4", 3.0),
            ],
        );
        let p = Program::compile(&g).unwrap();
        // hidden = |0.5 + 2 * in0|, out0 = |-hidden|, out1 = |3 * in1|
        assert_eq!(eval(&p, [1.0, -2.0]), (2.5, 6.0));
    }

    #[test]
    fn duplicate_connections_sum_twice_with_the_last_weight() {
        let g = genome(
            ["Linear", "NullFn", "NullFn"],
            vec![conn("1", "3", 1.0), conn("1", "3", 4.0)],
        );
        let p = Program::compile(&g).unwrap();
        assert_eq!(eval(&p, [1.0, 0.0]).0, 8.0);
    }

    #[test]
    fn recurrent_edges_contribute_zero() {
        // 3 <- 5 <- 3 (cycle) and 5 <- 1. Pulling 3 starts 3, then 5; 5 sees 3 on the stack.
        let g = genome(
            ["Linear", "NullFn", "Linear"],
            vec![
                conn("5", "3", 1.0),
                conn("3", "5", 100.0),
                conn("1", "5", 2.0),
            ],
        );
        let p = Program::compile(&g).unwrap();
        assert_eq!(eval(&p, [1.5, 0.0]).0, 3.0);
    }

    #[test]
    fn a_reused_register_file_keeps_no_state_between_samples() {
        // Recurrent edges and a self loop: nothing of sample k may leak into sample k + 1.
        let g = genome(
            ["Linear", "Sine", "Linear"],
            vec![
                conn("5", "3", 1.0),
                conn("3", "5", 100.0),
                conn("1", "5", 2.0),
                conn("4", "4", 5.0),
                conn("2", "4", 1.0),
            ],
        );
        let p = Program::compile(&g).unwrap();
        let mut reused = p.registers();
        for k in 0..50 {
            let inputs = [k as f64 * 0.37 - 3.0, 1.0 - k as f64 * 0.11];
            p.run(&mut reused, inputs);
            let fresh = eval(&p, inputs);
            assert_eq!(
                (reused[p.output_register(0)], reused[p.output_register(1)]),
                fresh,
                "sample {k}"
            );
        }
    }

    #[test]
    fn self_loop_contributes_zero() {
        let g = genome(
            ["Linear", "NullFn", "NullFn"],
            vec![conn("3", "3", 5.0), conn("2", "3", 1.0)],
        );
        let p = Program::compile(&g).unwrap();
        assert_eq!(eval(&p, [0.0, -0.25]).0, 0.25);
    }

    #[test]
    fn bad_networks_are_errors() {
        let g = genome(["Nope", "Linear", "Linear"], vec![]);
        assert_eq!(
            Program::compile(&g).unwrap_err().0,
            "CPPN node 3 has unknown activation function \"Nope\""
        );
        let g = genome(["Linear", "Linear", "Linear"], vec![conn("9", "3", 1.0)]);
        assert_eq!(
            Program::compile(&g).unwrap_err().0,
            "CPPN connection source \"9\" is no node"
        );
    }

    #[test]
    fn pruning_keeps_the_needed_outputs_exact() {
        let g = genome(
            ["Sine", "BipolarSigmoid", "sawtooth"],
            vec![
                conn("0", "5", 0.3),
                conn("1", "5", 2.0),
                conn("5", "3", 1.3),
                conn("3", "5", 0.5), // recurrent when pulled from output 3
                conn("2", "4", 0.7),
            ],
        );
        let p = Program::compile(&g).unwrap();
        let only_out1 = p.pruned(&[1]);
        assert_eq!(
            only_out1.ops.len(),
            1,
            "output 1 needs neither hidden nor output 0"
        );
        for x in [-0.9, 0.1, 0.77] {
            let full = eval(&p, [x, -x]);
            let mut regs = p.registers();
            only_out1.run(&mut regs, [x, -x]);
            assert_eq!(regs[p.output_register(1)], full.1);
            p.pruned(&[0]).run(&mut regs, [x, -x]);
            assert_eq!(regs[p.output_register(0)], full.0);
        }
    }

    #[test]
    fn block_evaluation_matches_per_sample_run_bit_for_bit() {
        // A chain through one hidden node per activation function, with fan-in from the
        // inputs and the bias, so every function sees varied arguments.
        let mut nodes = vec![
            node("b", "NullFn", true),
            node("i0", "NullFn", false),
            node("i1", "NullFn", false),
            node("o0", "BipolarSigmoid", false),
            node("o1", "Sine", false),
        ];
        let mut connections = Vec::new();
        let mut previous = "i1".to_string();
        for (k, a) in Activation::ALL.iter().enumerate() {
            let id = format!("h{k}");
            nodes.push(node(&id, a.name(), false));
            let w = (k as f64 * 0.77).sin() * 3.0;
            connections.push(conn(&previous, &id, w + 0.5));
            connections.push(conn("i0", &id, -w));
            connections.push(conn("b", &id, 0.1 * k as f64));
            connections.push(conn(&id, "o0", 0.3 - w));
            previous = id;
        }
        connections.push(conn(&previous, "o1", 2.5));
        connections.push(conn("o0", "o1", 1.5));
        let g = NeatGenome {
            nodes,
            connections,
            input_count: 2,
            output_count: 2,
        };
        let p = Program::compile(&g).unwrap();
        assert_eq!(p.ops.len(), Activation::ALL.len() + 2);
        let n = 5000;
        let (periods, velocity) = (input_periods(261.6, n, 48000.0), 0.7);
        for level in Level::all_available() {
            let mut block = BlockEvaluator::new(&p, n, periods, velocity);
            let mut single = p.registers();
            // Blocks that start anywhere and have any length, including 1 and BLOCK.
            let mut first = 0;
            for len in [BLOCK, 1, 63, 17, BLOCK, 5, 40].iter().cycle().take(60) {
                block.run_at(level, first, *len);
                for j in 0..*len {
                    p.run(&mut single, inputs(first + j, n, periods, velocity));
                    for (r, value) in single.iter().enumerate() {
                        assert_eq!(
                            block.register(r)[j].to_bits(),
                            value.to_bits(),
                            "register {r} of sample {} with {level:?}",
                            first + j
                        );
                    }
                }
                first += len;
            }
        }
    }

    #[test]
    fn inputs_follow_the_original_formula() {
        let n = 48000;
        let periods = input_periods(440.0, n, 48000.0);
        assert_eq!(periods, 440.0);
        let [extra, ramp] = inputs(0, n, periods, 0.5);
        assert_eq!(ramp, -1.0);
        assert_eq!(extra, libm::sin(-440.0) * 0.5);
        assert_eq!(inputs(n - 1, n, periods, 1.0)[1], 1.0);
    }

    #[test]
    fn parallel_evaluation_does_not_depend_on_chunking() {
        let g = genome(
            ["Sine", "BipolarSigmoid", "sawtooth"],
            vec![
                conn("0", "5", 0.3),
                conn("1", "5", 2.0),
                conn("2", "5", -7.0),
                conn("5", "3", 1.3),
                conn("1", "4", 0.7),
                conn("5", "4", 0.2),
            ],
        );
        let p = Program::compile(&g).unwrap();
        let n = 3 * PARALLEL_CHUNK + 17;
        let periods = input_periods(123.4, n, 48000.0);
        let par = evaluate_parallel(&p, periods, 0.8, n, &[1, 0]);
        let mut a = vec![0.0f32; n];
        let mut b = vec![0.0f32; n];
        // odd-sized sequential pieces
        let mut start = 0;
        for size in [1usize, 1000, 77, 5000].iter().cycle() {
            if start >= n {
                break;
            }
            let end = (start + size).min(n);
            evaluate_range(
                &p,
                periods,
                0.8,
                n,
                start..end,
                &[1, 0],
                &mut [&mut a[start..end], &mut b[start..end]],
            );
            start = end;
        }
        assert_eq!(par[0], a);
        assert_eq!(par[1], b);
    }
}
