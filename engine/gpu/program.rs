//! A CPU [`Program`] laid out for the shader, and the periodic input's phase in fixed point.

use std::f64::consts::TAU;

use crate::cppn::Program;
use crate::error::Error;

/// Registers per invocation of the largest shader variant (`REGS` in cppn.wgsl; build.rs also
/// compiles a smaller one). Programs that need more run on the CPU.
pub const MAX_REGISTERS: usize = 256;
/// Summed connections of one program on the GPU; bounds the terms buffer (see `gpu/mod.rs`).
pub const MAX_TERMS: usize = 1 << 16;

/// Shader registers with fixed roles (the rest are op targets).
const ZERO: u32 = 0;
const BIAS: u32 = 1;
const INPUT_PERIODIC: u32 = 2;
const INPUT_RAMP: u32 = 3;
const FIRST_FREE: u32 = 4;

/// The program cut to the requested outputs, with registers renumbered densely so the
/// shader's register file stays small.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuProgram {
    /// (target register, activation id, first term, end term), terms relative to this program.
    pub ops: Vec<[u32; 4]>,
    /// (source register, weight bits as f32).
    pub terms: Vec<[u32; 2]>,
    /// Register of each requested output, in request order.
    pub out_regs: Vec<u32>,
    /// Registers the shader needs for this program.
    pub registers: usize,
}

impl GpuProgram {
    pub fn new(program: &Program, outputs: &[usize]) -> Result<GpuProgram, Error> {
        if let Some(&o) = outputs.iter().find(|&&o| o >= program.output_count) {
            return Err(Error(format!(
                "output {o} requested from a CPPN with {} outputs",
                program.output_count
            )));
        }
        let p = program.pruned(outputs);
        if p.terms.len() > MAX_TERMS {
            return Err(Error(format!(
                "CPPN has {} connections to evaluate; the GPU path takes at most {MAX_TERMS}",
                p.terms.len()
            )));
        }
        // Registers never written read 0 on the CPU too (it clears them per sample): that is
        // the zero register here, as is the CPU's explicit always-zero register.
        let mut map = vec![ZERO; p.registers];
        for r in map.iter_mut().take(p.bias_count) {
            *r = BIAS;
        }
        // `cppn::inputs` yields two values; further input neurons stay 0.
        for (i, reg) in [INPUT_PERIODIC, INPUT_RAMP]
            .into_iter()
            .enumerate()
            .take(p.input_count)
        {
            map[p.bias_count + i] = reg;
        }
        let needed = FIRST_FREE as usize + p.ops.len();
        if needed > MAX_REGISTERS {
            return Err(Error(format!(
                "CPPN needs {needed} registers; the GPU path has {MAX_REGISTERS}"
            )));
        }
        let mut ops = Vec::with_capacity(p.ops.len());
        let mut terms = Vec::with_capacity(p.terms.len());
        for (i, op) in p.ops.iter().enumerate() {
            // Sources are mapped before the target: an op never reads its own target (that
            // would be a recurrent edge, which reads the zero register).
            let start = terms.len() as u32;
            for &(src, w) in &p.terms[op.terms.start as usize..op.terms.end as usize] {
                terms.push([map[src as usize], (w as f32).to_bits()]);
            }
            let target = FIRST_FREE + i as u32;
            map[op.target as usize] = target;
            ops.push([target, op.activation as u32, start, terms.len() as u32]);
        }
        let out_regs = outputs.iter().map(|&o| map[p.output_register(o)]).collect();
        Ok(GpuProgram {
            ops,
            terms,
            out_regs,
            registers: needed,
        })
    }
}

/// `x` modulo 1 as unsigned 0.64 fixed point.
fn turns_fixed(x: f64) -> u64 {
    let f = x - x.floor();
    // f < 1, but f * 2^64 may round up to 2^64; the saturating cast keeps it just below.
    (f * 18_446_744_073_709_551_616.0) as u64
}

/// The periodic input `sin(input_periods * ramp(c))` as a phase in turns: (phase at sample 0,
/// advance per sample), both 0.64 fixed point. With ramp(c) = -1 + 2c/(n-1) the argument is
/// `-P + c * 2P/(n-1)`, so the phase at c is `phase0 + c * step` in exact wrapping integer
/// arithmetic; only the two constants carry f64 rounding (relative 2^-53 of the total phase,
/// as on the CPU), where an f32 product would lose up to |argument| * 2^-24.
pub fn phase_fixed(input_periods: f64, n: usize) -> (u64, u64) {
    let turns = input_periods / TAU;
    (
        turns_fixed(-turns),
        turns_fixed(2.0 * turns / (n - 1) as f64),
    )
}

/// The phase at sample `c` (what the shader computes for a piece starting at `c`).
pub fn phase_at(phase0: u64, step: u64, c: usize) -> u64 {
    phase0.wrapping_add(step.wrapping_mul(c as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cppn::{self, Activation, Op};

    #[test]
    fn fixed_point_phase_matches_the_f64_formula() {
        // 10 s at 2 kHz: the argument reaches 2e4 rad, where an f32 product is off by ~1e-3.
        let n = 480_000;
        for freq in [1.0, 440.0, 2000.0, 17.3] {
            let periods = cppn::input_periods(freq, n, 48_000.0);
            let (p0, step) = phase_fixed(periods, n);
            for c in [0, 1, 12_345, n / 2, n - 2, n - 1] {
                let turns = phase_at(p0, step, c) as i64 as f64 / 18_446_744_073_709_551_616.0;
                let ours = (turns * TAU).sin();
                let cpu = cppn::inputs(c, n, periods, 1.0)[0];
                assert!(
                    (ours - cpu).abs() < 1e-10,
                    "f {freq} c {c}: {ours} vs {cpu}"
                );
            }
        }
    }

    #[test]
    fn registers_are_renumbered_densely_and_recurrent_edges_read_zero() {
        // bias 0, inputs 1 2, output 3, hidden 4; hidden reads the output (recurrent).
        let p = Program {
            registers: 6,
            bias_count: 1,
            input_count: 2,
            output_count: 1,
            ops: vec![
                Op {
                    target: 4,
                    activation: Activation::Sine,
                    terms: 0..3,
                },
                Op {
                    target: 3,
                    activation: Activation::Linear,
                    terms: 3..4,
                },
            ],
            terms: vec![(5, 2.0), (0, 0.5), (2, -1.0), (4, 3.0)],
        };
        let g = GpuProgram::new(&p, &[0]).unwrap();
        assert_eq!(g.ops, vec![[4, 0, 0, 3], [5, 11, 3, 4]]);
        assert_eq!(
            g.terms,
            vec![
                [ZERO, 2.0f32.to_bits()],
                [BIAS, 0.5f32.to_bits()],
                [INPUT_RAMP, (-1.0f32).to_bits()],
                [4, 3.0f32.to_bits()],
            ]
        );
        assert_eq!(g.out_regs, vec![5]);
        assert_eq!(g.registers, 6);
        assert!(GpuProgram::new(&p, &[1]).is_err());
    }
}
