// The flat CPPN program (engine/cppn/mod.rs `Program`), interpreted per sample in f32.
//
// One dispatch runs a whole batch: workgroup row `y` is job `y`, and the invocations of a row
// stride over its samples, so one job may be longer than the dispatch is wide.
//
// Register layout (the host remaps the program's registers to it, see engine/gpu/program.rs):
// 0 = always 0 (what a recurrent edge reads), 1 = bias, 2 = periodic input, 3 = ramp input,
// 4.. = the targets of the ops.

const REGS: u32 = 256u;
const WORKGROUP: u32 = 64u;

// 2*pi as the f32 nearest to it plus the f32 nearest to the rest, for Cody-Waite reduction.
const TWO_PI_HI: f32 = 6.2831854820251465;
const TWO_PI_LO: f32 = -1.7484555314695172e-7;
const INV_TWO_PI: f32 = 0.15915493667125702;
const TWO_OVER_PI: f32 = 0.6366197723675814;
const PI: f32 = 3.141592653589793;
const HALF_PI: f32 = 1.5707963267948966;
// 2*pi / 2^32: one unit of the phase's upper word in radians.
const RADIANS_PER_UNIT: f32 = 1.462918119976564e-9;

struct Job {
    // First sample index of this piece and how many samples it has.
    start: u32,
    count: u32,
    // Frames of the render minus one: the ramp's denominator.
    n_minus_1: u32,
    velocity: f32,
    // Phase of the periodic input at sample `start` and its advance per sample, in turns as
    // unsigned 0.64 fixed point (lo word, hi word). The host reduces in f64 and exact integer
    // arithmetic; here the wrap-around of u32 arithmetic is the reduction modulo one turn.
    phase_lo: u32,
    phase_hi: u32,
    step_lo: u32,
    step_hi: u32,
    op_start: u32,
    op_end: u32,
    out_reg_start: u32,
    out_count: u32,
    // Output k of sample i goes to out[out_offset + k * count + i].
    out_offset: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct Op {
    dest: u32,
    activation: u32,
    term_start: u32,
    term_end: u32,
}

struct Term {
    src: u32,
    weight: f32,
}

@group(0) @binding(0) var<storage, read> jobs: array<Job>;
@group(0) @binding(1) var<storage, read> ops: array<Op>;
@group(0) @binding(2) var<storage, read> terms: array<Term>;
@group(0) @binding(3) var<storage, read> out_regs: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// x minus the nearest multiple of 2*pi, so sin/cos get an argument in [-pi, pi]: drivers only
// promise accuracy there, and some (NVIDIA's hardware sine) lose digits fast outside it.
fn reduce(x: f32) -> f32 {
    let k = round(x * INV_TWO_PI);
    return fma(-k, TWO_PI_LO, fma(-k, TWO_PI_HI, x));
}

// (lo, hi) of the 64-bit product of two u32s, in 16-bit halves: WGSL has no 64-bit integers.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

fn activate(id: u32, x: f32) -> f32 {
    switch id {
        case 0u: {
            return sin(reduce(x));
        }
        case 1u: {
            return sin(reduce(2.0 * x));
        }
        case 2u: {
            return cos(reduce(x));
        }
        case 3u: {
            return atan(x);
        }
        case 4u: {
            // (2/pi) asin(sin(x)) is a triangle wave; asin near +-1 would turn the f32 error
            // of sin into an error of its square root, so fold the reduced argument instead.
            let r = reduce(x);
            var t = r;
            if r > HALF_PI {
                t = PI - r;
            } else if r < -HALF_PI {
                t = -PI - r;
            }
            return TWO_OVER_PI * t;
        }
        case 5u: {
            let y = x / TWO_PI_HI;
            return 2.0 * (y - floor(0.5 + y));
        }
        case 6u: {
            let f = floor(x);
            // JavaScript's f % 2 == 0 is "f is even", also for negative f.
            if floor(f * 0.5) * 2.0 == f {
                return 1.0 - 2.0 * (x - f);
            }
            return -1.0 + 2.0 * (x - f);
        }
        case 7u: {
            return select(1.0, -1.0, x <= 0.0);
        }
        case 8u: {
            return 2.0 / (1.0 + exp(-4.9 * x)) - 1.0;
        }
        case 9u: {
            return 1.0 / (1.0 + exp(-x));
        }
        case 10u: {
            let y = x * 2.5;
            return 2.0 * exp(-(y * y)) - 1.0;
        }
        case 11u: {
            return abs(x);
        }
        default: {
            return 0.0;
        }
    }
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let job = jobs[gid.y];
    let stride = groups.x * WORKGROUP;
    var regs: array<f32, REGS>;
    for (var i = gid.x; i < job.count; i += stride) {
        // phase = job phase + i * step, modulo one turn.
        let m = mul_wide(i, job.step_lo);
        let prod_hi = m.y + i * job.step_hi;
        let lo = job.phase_lo + m.x;
        let hi = job.phase_hi + prod_hi + select(0u, 1u, lo < m.x);
        // As signed, the upper word is the phase in [-1/2, 1/2) turns.
        let angle = f32(bitcast<i32>(hi)) * RADIANS_PER_UNIT;
        let c = job.start + i;
        let ramp = f32(i32(2u * c) - i32(job.n_minus_1)) / f32(job.n_minus_1);
        regs[0] = 0.0;
        regs[1] = 1.0;
        regs[2] = sin(angle) * job.velocity;
        regs[3] = ramp;
        for (var o = job.op_start; o < job.op_end; o += 1u) {
            let op = ops[o];
            var sum = 0.0;
            for (var t = op.term_start; t < op.term_end; t += 1u) {
                let term = terms[t];
                sum = fma(regs[term.src], term.weight, sum);
            }
            regs[op.dest] = activate(op.activation, sum);
        }
        for (var k = 0u; k < job.out_count; k += 1u) {
            out[job.out_offset + k * job.count + i] = regs[out_regs[job.out_reg_start + k]];
        }
    }
}
