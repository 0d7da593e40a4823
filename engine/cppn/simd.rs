//! fdlibm's `exp`, `sin` and `asin`, as the `libm` crate implements them, four lanes at a time
//! with AVX2 or eight with AVX-512, giving the same bits as `libm::exp` / `libm::sin` /
//! `libm::asin` for every input.
//!
//! Bit-exactness with the original rules out the usual fast approximations, so these run the
//! very same sequence of IEEE operations as the scalar code (same constants, same association,
//! no FMA contraction: Rust never fuses a multiply and an add on its own). The scalar code
//! branches on the argument's range; here every lane takes the common path and the lanes that
//! the scalar code would treat specially (huge, NaN, infinite, a second reduction round near a
//! multiple of pi/2) are recomputed with the scalar function. The tests compare every
//! instruction set's kernels with the scalar functions on millions of arguments, bit for bit,
//! including those edge regions.
//!
//! The algorithms are written once (`lane_kernels!`) over a handful of lane operations that
//! each instruction set's module defines; eight lanes halve the instructions per value, which
//! matters because these kernels are most of a CPPN's cost (exp 1.7x faster per value on the
//! EPYC, see benches/README "engine").

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The instruction sets the kernels come in, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The `libm` functions one value at a time.
    Scalar,
    /// Four lanes (AVX2).
    Avx2,
    /// Eight lanes (AVX-512 F and DQ).
    Avx512,
}

impl Level {
    /// Whether this CPU runs the level (`is_x86_feature_detected` caches the answer).
    #[inline]
    pub fn available(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest level this CPU runs: what the CPPN evaluator uses.
    #[inline]
    pub fn detected() -> Level {
        [Level::Avx512, Level::Avx2]
            .into_iter()
            .find(|l| l.available())
            .unwrap_or(Level::Scalar)
    }

    /// Every level this CPU runs, for comparing them.
    pub fn all_available() -> impl Iterator<Item = Level> {
        [Level::Scalar, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|l| l.available())
    }
}

/// One instruction set's kernels: `v[i] = libm::f(v[i])`, bit for bit.
pub trait Kernels {
    /// # Safety
    /// The CPU must support the kernels' instruction set ([`Level::available`]).
    unsafe fn sin_in_place(v: &mut [f64]);
    /// # Safety
    /// As [`Kernels::sin_in_place`].
    unsafe fn asin_in_place(v: &mut [f64]);
    /// # Safety
    /// As [`Kernels::sin_in_place`].
    unsafe fn exp_in_place(v: &mut [f64]);
}

/// [`Level::Scalar`]'s kernels.
pub struct Scalar;

impl Kernels for Scalar {
    #[inline]
    unsafe fn sin_in_place(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = libm::sin(*x));
    }
    #[inline]
    unsafe fn asin_in_place(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = libm::asin(*x));
    }
    #[inline]
    unsafe fn exp_in_place(v: &mut [f64]) {
        v.iter_mut().for_each(|x| *x = libm::exp(*x));
    }
}

/// [`Level::Avx2`]'s kernels.
#[cfg(target_arch = "x86_64")]
pub struct Avx2;

/// [`Level::Avx512`]'s kernels.
#[cfg(target_arch = "x86_64")]
pub struct Avx512;

#[cfg(target_arch = "x86_64")]
macro_rules! impl_kernels {
    ($kernels:ty, $module:ident) => {
        impl Kernels for $kernels {
            #[inline]
            unsafe fn sin_in_place(v: &mut [f64]) {
                $module::sin_in_place(v)
            }
            #[inline]
            unsafe fn asin_in_place(v: &mut [f64]) {
                $module::asin_in_place(v)
            }
            #[inline]
            unsafe fn exp_in_place(v: &mut [f64]) {
                $module::exp_in_place(v)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
impl_kernels!(Avx2, avx2);
#[cfg(target_arch = "x86_64")]
impl_kernels!(Avx512, avx512);

const LN2HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const INVLN2: f64 = f64::from_bits(0x3ff7_1547_652b_82fe);
const P1: f64 = f64::from_bits(0x3fc5_5555_5555_553e);
const P2: f64 = f64::from_bits(0xbf66_c16c_16be_bd93);
const P3: f64 = f64::from_bits(0x3f11_566a_af25_de2c);
const P4: f64 = f64::from_bits(0xbebb_bd41_c5d2_6bf1);
const P5: f64 = f64::from_bits(0x3e66_3769_72be_a4d0);

const TO_INT: f64 = 1.5 / f64::EPSILON;
const INV_PIO2: f64 = f64::from_bits(0x3fe4_5f30_6dc9_c883);
const PIO2_1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
const PIO2_1T: f64 = f64::from_bits(0x3dd0_b461_1a62_6331);

const S1: f64 = f64::from_bits(0xbfc5_5555_5555_5549);
const S2: f64 = f64::from_bits(0x3f81_1111_1110_f8a6);
const S3: f64 = f64::from_bits(0xbf2a_01a0_19c1_61d5);
const S4: f64 = f64::from_bits(0x3ec7_1de3_57b1_fe7d);
const S5: f64 = f64::from_bits(0xbe5a_e5e6_8a2b_9ceb);
const S6: f64 = f64::from_bits(0x3de5_d93a_5acf_d57c);

const C1: f64 = f64::from_bits(0x3fa5_5555_5555_554c);
const C2: f64 = f64::from_bits(0xbf56_c16c_16c1_5177);
const C3: f64 = f64::from_bits(0x3efa_01a0_19cb_1590);
const C4: f64 = f64::from_bits(0xbe92_7e4f_809c_52ad);
const C5: f64 = f64::from_bits(0x3e21_ee9e_bdb4_b1c4);
const C6: f64 = f64::from_bits(0xbda8_fae9_be88_38d4);

const PIO2_HI: f64 = f64::from_bits(0x3ff9_21fb_5444_2d18);
const PIO2_LO: f64 = f64::from_bits(0x3c91_a626_3314_5c07);
const P_S0: f64 = f64::from_bits(0x3fc5_5555_5555_5555);
const P_S1: f64 = f64::from_bits(0xbfd4_d612_03eb_6f7d);
const P_S2: f64 = f64::from_bits(0x3fc9_c155_0e88_4455);
const P_S3: f64 = f64::from_bits(0xbfa4_8228_b568_8f3b);
const P_S4: f64 = f64::from_bits(0x3f49_efe0_7501_b288);
const P_S5: f64 = f64::from_bits(0x3f02_3de1_0dfd_f709);
const Q_S1: f64 = f64::from_bits(0xc003_3a27_1c8a_2d4b);
const Q_S2: f64 = f64::from_bits(0x4000_2ae5_9c59_8ac8);
const Q_S3: f64 = f64::from_bits(0xbfe6_066c_1b8d_0159);
const Q_S4: f64 = f64::from_bits(0x3fb3_b8c5_b12e_9282);

/// The smallest non-negative double whose high 32 bits are `high_word`: for a non-negative
/// `a`, `high word of a >= w` is `a >= at_least(w)`, the form the scalar code's range checks
/// take here.
const fn at_least(high_word: u32) -> f64 {
    f64::from_bits((high_word as u64) << 32)
}

/// The kernels over one instruction set's lane operations (`V` lanes of f64, `I` lanes of i64,
/// `M` a lane mask; `LANES`, `ALL` = every lane's bit), each function compiled for `$features`.
#[cfg(target_arch = "x86_64")]
macro_rules! lane_kernels {
    ($features:literal) => {
        /// `libm::exp` of every lane; the lanes set in the returned mask must be recomputed
        /// with `libm::exp` (|x| > 700, NaN).
        #[inline]
        #[target_feature(enable = $features)]
        fn exp_lanes(x: V) -> (V, u32) {
            let a = abs(x);
            // The scalar special cases start at |x| >= 708.39; below 700, 2^k stays a normal
            // number, so the scaling is one exact multiply.
            let fallback = !lanes(le(a, 700.0)) & ALL;
            let sign = and(x, splat(-0.0));
            let k_far = trunc(add(mul(splat(INVLN2), x), or(sign, splat(0.5))));
            // +-1 with x's sign.
            let k_near = or(sign, splat(1.0));
            let k = select(
                ge(a, at_least(0x3fd6_2e43)),
                select(ge(a, at_least(0x3ff0_a2b2)), k_far, k_near),
                zero(),
            );
            // With k = 0 these are hi = x, lo = 0, r = x exactly, the scalar middle range.
            let hi = sub(x, mul(k, splat(LN2HI)));
            let lo = mul(k, splat(LN2LO));
            let r = sub(hi, lo);
            let rr = mul(r, r);
            let mut p = add(splat(P4), mul(rr, splat(P5)));
            p = add(splat(P3), mul(rr, p));
            p = add(splat(P2), mul(rr, p));
            p = add(splat(P1), mul(rr, p));
            let c = sub(r, mul(rr, p));
            let q = div(mul(r, c), sub(splat(2.0), c));
            let y = add(splat(1.0), add(sub(q, lo), hi));
            let exponent = shl(add_i(to_i64(k), splat_i(0x3ff)), 52);
            let scaled = mul(y, from_bits(exponent));
            // |x| <= 2^-28: the scalar code returns 1 + x.
            let tiny = lt(a, at_least(0x3e30_0001));
            (select(tiny, add(splat(1.0), x), scaled), fallback)
        }

        /// fdlibm `__kernel_sin(x, y, 1)`.
        #[inline]
        #[target_feature(enable = $features)]
        fn kernel_sin(x: V, y: V) -> V {
            let (z, v, r) = kernel_sin_terms(x);
            // x - ((z * (0.5 * y - v * r) - y) - v * S1)
            let inner = sub(mul(splat(0.5), y), mul(v, r));
            sub(x, sub(sub(mul(z, inner), y), mul(v, splat(S1))))
        }

        /// fdlibm `__kernel_sin(x, 0, 0)`: x + v * (S1 + z * r).
        #[inline]
        #[target_feature(enable = $features)]
        fn kernel_sin_exact(x: V) -> V {
            let (z, v, r) = kernel_sin_terms(x);
            add(x, mul(v, add(splat(S1), mul(z, r))))
        }

        /// z = x^2, v = z x, r = S2 + z (S3 + z S4) + z w (S5 + z S6) with w = z^2.
        #[inline]
        #[target_feature(enable = $features)]
        fn kernel_sin_terms(x: V) -> (V, V, V) {
            let z = mul(x, x);
            let w = mul(z, z);
            let a = add(splat(S2), mul(z, add(splat(S3), mul(z, splat(S4)))));
            let b = mul(mul(z, w), add(splat(S5), mul(z, splat(S6))));
            (z, mul(z, x), add(a, b))
        }

        /// fdlibm `__kernel_cos(x, y)`.
        #[inline]
        #[target_feature(enable = $features)]
        fn kernel_cos(x: V, y: V) -> V {
            let z = mul(x, x);
            let w = mul(z, z);
            // z (C1 + z (C2 + z C3)) + w w (C4 + z (C5 + z C6))
            let a = mul(z, add(splat(C1), mul(z, add(splat(C2), mul(z, splat(C3))))));
            let b = mul(
                mul(w, w),
                add(splat(C4), mul(z, add(splat(C5), mul(z, splat(C6))))),
            );
            let r = add(a, b);
            let hz = mul(splat(0.5), z);
            let w = sub(splat(1.0), hz);
            // w + (((1 - w) - hz) + (z r - x y))
            add(
                w,
                add(sub(sub(splat(1.0), w), hz), sub(mul(z, r), mul(x, y))),
            )
        }

        /// `libm::sin` of every lane; the lanes set in the returned mask must be recomputed
        /// with `libm::sin`.
        #[inline]
        #[target_feature(enable = $features)]
        fn sin_lanes(x: V) -> (V, u32) {
            let a = abs(x);
            let high = shr(bits(a), 32);
            let tiny = lt(a, at_least(0x3e50_0000));
            let primary = lt(a, at_least(0x3fe9_21fc));
            let small = lt(a, at_least(0x401c_463c));
            // False for NaN: NaN and infinities fall back like huge arguments.
            let medium = lt(a, at_least(0x4139_21fb));

            // Up to 9 pi / 4 the scalar reduction picks n by range, except near pi/2, pi,
            // 3 pi/2 and 2 pi, where it takes the general path (those lanes fall back here).
            let low20 = and_i(high, splat_i(0xfffff));
            let near_pio2_multiple = m_or(
                m_and(lt(a, at_least(0x400f_6a7b)), eq_i(low20, splat_i(0x921fb))),
                m_or(
                    eq_i(high, splat_i(0x4012_d97c)),
                    eq_i(high, splat_i(0x4019_21fb)),
                ),
            );
            let special_small = m_andnot(primary, m_and(small, near_pio2_multiple));

            let one = splat(1.0);
            let mut n_small = one;
            for bound in [0x4002_d97d, 0x400f_6a7b, 0x4015_fdbd] {
                n_small = select(ge(a, at_least(bound)), add(n_small, one), n_small);
            }
            n_small = or(n_small, and(x, splat(-0.0)));
            let n_medium = sub(add(mul(x, splat(INV_PIO2)), splat(TO_INT)), splat(TO_INT));
            let n = select(small, n_small, n_medium);

            // First reduction round; n * PIO2_1 is exact (PIO2_1 has 33 significant bits), so
            // for n = 1..4 this is the scalar code's `x - n * pio2_1` with a constant.
            let r = sub(x, mul(n, splat(PIO2_1)));
            let w = mul(n, splat(PIO2_1T));
            let y0 = sub(r, w);
            let y1 = sub(sub(r, y0), w);
            // The general path takes a second round when y0 lost more than 16 bits of
            // exponent.
            let ex = shr(high, 20);
            let ey = and_i(shr(bits(y0), 52), splat_i(0x7ff));
            let second_round = m_andnot(small, gt_i(sub_i(ex, ey), splat_i(16)));

            let quadrant = and_i(to_i64(n), splat_i(3));
            let odd = eq_i(and_i(quadrant, splat_i(1)), splat_i(1));
            // Only the polynomials some lane selects: neighbouring samples of a CPPN signal
            // mostly share a quadrant, so this usually evaluates one of the three, not all.
            let (reduced_lanes, odd_lanes) = (!lanes(primary) & ALL, lanes(odd));
            let s = if reduced_lanes & !odd_lanes != 0 {
                kernel_sin(y0, y1)
            } else {
                zero()
            };
            let c = if reduced_lanes & odd_lanes != 0 {
                kernel_cos(y0, y1)
            } else {
                zero()
            };
            let near = if lanes(primary) & !lanes(tiny) != 0 {
                kernel_sin_exact(x)
            } else {
                zero()
            };
            let negate = from_bits(shl(shr(quadrant, 1), 63));
            let reduced = xor(select(odd, c, s), negate);
            let result = select(tiny, x, select(primary, near, reduced));

            let fallback = !lanes(medium) | lanes(special_small) | lanes(second_round);
            (result, fallback & ALL)
        }

        /// asin's rational approximation R(z), evaluated as the scalar `comp_r`.
        #[inline]
        #[target_feature(enable = $features)]
        fn asin_r(z: V) -> V {
            let s = splat;
            let p = add(s(P_S4), mul(z, s(P_S5)));
            let p = add(s(P_S3), mul(z, p));
            let p = add(s(P_S2), mul(z, p));
            let p = add(s(P_S1), mul(z, p));
            let p = mul(z, add(s(P_S0), mul(z, p)));
            let q = add(s(Q_S3), mul(z, s(Q_S4)));
            let q = add(s(Q_S2), mul(z, q));
            let q = add(s(Q_S1), mul(z, q));
            let q = add(s(1.0), mul(z, q));
            div(p, q)
        }

        /// `libm::asin` of every lane; the lanes set in the returned mask must be recomputed
        /// with `libm::asin` (|x| >= 1, NaN, and |x| < 2^-26, which the scalar code returns
        /// as is).
        #[inline]
        #[target_feature(enable = $features)]
        fn asin_lanes(x: V) -> (V, u32) {
            let a = abs(x);
            let fallback = (!lanes(lt(a, 1.0)) & ALL) | lanes(lt(a, at_least(0x3e50_0000)));
            // |x| < 0.5: x + x R(x^2).
            let near_zero = add(x, mul(x, asin_r(mul(x, x))));
            // 0.5 <= |x| < 1: from z = (1 - |x|) / 2 and s = sqrt(z).
            let z = mul(sub(splat(1.0), a), splat(0.5));
            let s = sqrt(z);
            let r = asin_r(z);
            let two = splat(2.0);
            // |x| > 0.975
            let near_one = sub(
                splat(PIO2_HI),
                sub(mul(two, add(s, mul(s, r))), splat(PIO2_LO)),
            );
            // f + c = sqrt(z), f being s with its low word cleared.
            let f = from_bits(and_i(bits(s), splat_i(!0xffff_ffff)));
            let c = div(sub(z, mul(f, f)), add(s, f));
            let pio4_hi = splat(0.5 * PIO2_HI);
            let middle = sub(
                pio4_hi,
                sub(
                    sub(mul(mul(two, s), r), sub(splat(PIO2_LO), mul(two, c))),
                    sub(pio4_hi, mul(two, f)),
                ),
            );
            let far = select(ge(a, at_least(0x3fef_3333)), near_one, middle);
            let far = xor(far, and(x, splat(-0.0)));
            (select(lt(a, 0.5), near_zero, far), fallback)
        }

        /// Applies `lanes_of` to `v` in place, `LANES` at a time, recomputing the lanes it
        /// hands back (and the tail) with `scalar`.
        #[inline]
        #[target_feature(enable = $features)]
        fn map(v: &mut [f64], lanes_of: impl Fn(V) -> (V, u32), scalar: impl Fn(f64) -> f64) {
            let mut chunks = v.chunks_exact_mut(LANES);
            for chunk in &mut chunks {
                let chunk: &mut [f64; LANES] = chunk.try_into().unwrap();
                let original = *chunk;
                let (y, fallback) = lanes_of(load(&original));
                store(chunk, y);
                if fallback != 0 {
                    for (lane, out) in chunk.iter_mut().enumerate() {
                        if fallback & (1 << lane) != 0 {
                            *out = scalar(original[lane]);
                        }
                    }
                }
            }
            for out in chunks.into_remainder() {
                *out = scalar(*out);
            }
        }

        /// `v[i] = libm::sin(v[i])`.
        #[target_feature(enable = $features)]
        pub fn sin_in_place(v: &mut [f64]) {
            map(v, |x| sin_lanes(x), libm::sin);
        }

        /// `v[i] = libm::asin(v[i])`.
        #[target_feature(enable = $features)]
        pub fn asin_in_place(v: &mut [f64]) {
            map(v, |x| asin_lanes(x), libm::asin);
        }

        /// `v[i] = libm::exp(v[i])`.
        #[target_feature(enable = $features)]
        pub fn exp_in_place(v: &mut [f64]) {
            map(v, |x| exp_lanes(x), libm::exp);
        }
    };
}

/// AVX2: four lanes; masks are all-ones or all-zero lanes of a vector.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    type V = __m256d;
    type I = __m256i;
    type M = __m256d;
    const LANES: usize = 4;
    const ALL: u32 = 0xf;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load(a: &[f64; LANES]) -> V {
        // SAFETY: `a` is LANES readable f64; the load is unaligned.
        unsafe { _mm256_loadu_pd(a.as_ptr()) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store(a: &mut [f64; LANES], v: V) {
        // SAFETY: `a` is LANES writable f64; the store is unaligned.
        unsafe { _mm256_storeu_pd(a.as_mut_ptr(), v) }
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(v: f64) -> V {
        _mm256_set1_pd(v)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn zero() -> V {
        _mm256_setzero_pd()
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add(a: V, b: V) -> V {
        _mm256_add_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub(a: V, b: V) -> V {
        _mm256_sub_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul(a: V, b: V) -> V {
        _mm256_mul_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn div(a: V, b: V) -> V {
        _mm256_div_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sqrt(a: V) -> V {
        _mm256_sqrt_pd(a)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn and(a: V, b: V) -> V {
        _mm256_and_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn or(a: V, b: V) -> V {
        _mm256_or_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn xor(a: V, b: V) -> V {
        _mm256_xor_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn abs(x: V) -> V {
        _mm256_andnot_pd(splat(-0.0), x)
    }
    /// Rounded toward zero.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn trunc(x: V) -> V {
        _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn ge(a: V, b: f64) -> M {
        _mm256_cmp_pd::<_CMP_GE_OQ>(a, splat(b))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lt(a: V, b: f64) -> M {
        _mm256_cmp_pd::<_CMP_LT_OQ>(a, splat(b))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn le(a: V, b: f64) -> M {
        _mm256_cmp_pd::<_CMP_LE_OQ>(a, splat(b))
    }
    /// `if mask { t } else { f }` per lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn select(mask: M, t: V, f: V) -> V {
        _mm256_blendv_pd(f, t, mask)
    }
    /// The lane bits of a mask (bit i = lane i).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(mask: M) -> u32 {
        _mm256_movemask_pd(mask) as u32
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn m_and(a: M, b: M) -> M {
        _mm256_and_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn m_or(a: M, b: M) -> M {
        _mm256_or_pd(a, b)
    }
    /// `!a & b`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn m_andnot(a: M, b: M) -> M {
        _mm256_andnot_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn bits(v: V) -> I {
        _mm256_castpd_si256(v)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn from_bits(v: I) -> V {
        _mm256_castsi256_pd(v)
    }
    /// Integral doubles (|v| < 2^31) as 64-bit integers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_i64(v: V) -> I {
        _mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(v))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat_i(v: i64) -> I {
        _mm256_set1_epi64x(v)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn and_i(a: I, b: I) -> I {
        _mm256_and_si256(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add_i(a: I, b: I) -> I {
        _mm256_add_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub_i(a: I, b: I) -> I {
        _mm256_sub_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn shr(a: I, n: i64) -> I {
        _mm256_srlv_epi64(a, splat_i(n))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn shl(a: I, n: i64) -> I {
        _mm256_sllv_epi64(a, splat_i(n))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn eq_i(a: I, b: I) -> M {
        _mm256_castsi256_pd(_mm256_cmpeq_epi64(a, b))
    }
    /// Signed.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gt_i(a: I, b: I) -> M {
        _mm256_castsi256_pd(_mm256_cmpgt_epi64(a, b))
    }

    lane_kernels!("avx2");
}

/// AVX-512: eight lanes; masks are mask registers.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;

    type V = __m512d;
    type I = __m512i;
    type M = __mmask8;
    const LANES: usize = 8;
    const ALL: u32 = 0xff;

    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn load(a: &[f64; LANES]) -> V {
        // SAFETY: `a` is LANES readable f64; the load is unaligned.
        unsafe { _mm512_loadu_pd(a.as_ptr()) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn store(a: &mut [f64; LANES], v: V) {
        // SAFETY: `a` is LANES writable f64; the store is unaligned.
        unsafe { _mm512_storeu_pd(a.as_mut_ptr(), v) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn splat(v: f64) -> V {
        _mm512_set1_pd(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn zero() -> V {
        _mm512_setzero_pd()
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn add(a: V, b: V) -> V {
        _mm512_add_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn sub(a: V, b: V) -> V {
        _mm512_sub_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn mul(a: V, b: V) -> V {
        _mm512_mul_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn div(a: V, b: V) -> V {
        _mm512_div_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn sqrt(a: V) -> V {
        _mm512_sqrt_pd(a)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn and(a: V, b: V) -> V {
        _mm512_and_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn or(a: V, b: V) -> V {
        _mm512_or_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn xor(a: V, b: V) -> V {
        _mm512_xor_pd(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn abs(x: V) -> V {
        _mm512_abs_pd(x)
    }
    /// Rounded toward zero.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn trunc(x: V) -> V {
        _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn ge(a: V, b: f64) -> M {
        _mm512_cmp_pd_mask::<_CMP_GE_OQ>(a, splat(b))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn lt(a: V, b: f64) -> M {
        _mm512_cmp_pd_mask::<_CMP_LT_OQ>(a, splat(b))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn le(a: V, b: f64) -> M {
        _mm512_cmp_pd_mask::<_CMP_LE_OQ>(a, splat(b))
    }
    /// `if mask { t } else { f }` per lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn select(mask: M, t: V, f: V) -> V {
        _mm512_mask_blend_pd(mask, f, t)
    }
    /// The lane bits of a mask (bit i = lane i).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn lanes(mask: M) -> u32 {
        mask as u32
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn m_and(a: M, b: M) -> M {
        a & b
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn m_or(a: M, b: M) -> M {
        a | b
    }
    /// `!a & b`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn m_andnot(a: M, b: M) -> M {
        !a & b
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn bits(v: V) -> I {
        _mm512_castpd_si512(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn from_bits(v: I) -> V {
        _mm512_castsi512_pd(v)
    }
    /// Integral doubles (|v| < 2^31) as 64-bit integers.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn to_i64(v: V) -> I {
        _mm512_cvttpd_epi64(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn splat_i(v: i64) -> I {
        _mm512_set1_epi64(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn and_i(a: I, b: I) -> I {
        _mm512_and_si512(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn add_i(a: I, b: I) -> I {
        _mm512_add_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn sub_i(a: I, b: I) -> I {
        _mm512_sub_epi64(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn shr(a: I, n: i64) -> I {
        _mm512_srlv_epi64(a, splat_i(n))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn shl(a: I, n: i64) -> I {
        _mm512_sllv_epi64(a, splat_i(n))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn eq_i(a: I, b: I) -> M {
        _mm512_cmpeq_epi64_mask(a, b)
    }
    /// Signed.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn gt_i(a: I, b: I) -> M {
        _mm512_cmpgt_epi64_mask(a, b)
    }

    lane_kernels!("avx512f,avx512dq");
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// xorshift64*: arguments for the comparisons, without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
        }

        /// Any finite or infinite double or NaN, uniformly over bit patterns.
        fn any_bits(&mut self) -> f64 {
            f64::from_bits(self.next())
        }
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Runs the in-place kernel over `args` (in odd-sized slices, so the scalar tail runs
    /// too) and counts the arguments whose result differs from `reference` in any bit.
    fn mismatches(args: &[f64], kernel: fn(&mut [f64]), reference: fn(f64) -> f64) -> Vec<f64> {
        let mut out = args.to_vec();
        for chunk in out.chunks_mut(1021) {
            kernel(chunk);
        }
        args.iter()
            .zip(&out)
            .filter(|(x, y)| !same(reference(**x), **y))
            .map(|(x, _)| *x)
            .collect()
    }

    #[derive(Clone, Copy)]
    enum Function {
        Sin,
        Asin,
        Exp,
    }

    /// `level`'s kernel for `f`; `level` must be available.
    fn kernel(level: Level, f: Function) -> fn(&mut [f64]) {
        assert!(level.available());
        // SAFETY (every closure): the level is available on this CPU (asserted above).
        match (level, f) {
            (Level::Scalar, Function::Sin) => |v| unsafe { Scalar::sin_in_place(v) },
            (Level::Scalar, Function::Asin) => |v| unsafe { Scalar::asin_in_place(v) },
            (Level::Scalar, Function::Exp) => |v| unsafe { Scalar::exp_in_place(v) },
            (Level::Avx2, Function::Sin) => |v| unsafe { Avx2::sin_in_place(v) },
            (Level::Avx2, Function::Asin) => |v| unsafe { Avx2::asin_in_place(v) },
            (Level::Avx2, Function::Exp) => |v| unsafe { Avx2::exp_in_place(v) },
            (Level::Avx512, Function::Sin) => |v| unsafe { Avx512::sin_in_place(v) },
            (Level::Avx512, Function::Asin) => |v| unsafe { Avx512::asin_in_place(v) },
            (Level::Avx512, Function::Exp) => |v| unsafe { Avx512::exp_in_place(v) },
        }
    }

    fn edge_cases() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            700.0,
            -700.0,
            708.39,
            709.78,
            710.0,
            -708.4,
            -745.1,
            -746.0,
        ];
        // Every high-word threshold the scalar code tests, and its neighbours.
        for high in [
            0x3e30_0000u64,
            0x3e50_0000,
            0x3fd6_2e42,
            0x3fe9_21fb,
            0x3ff0_a2b2,
            0x3ff9_21fb,
            0x4002_d97c,
            0x4009_21fb,
            0x400f_6a7a,
            0x4012_d97c,
            0x4015_fdbc,
            0x4019_21fb,
            0x401c_463b,
            0x4086_232b,
            0x4139_21fb,
        ] {
            for low in [0u64, 1, 0x5440_0000, 0x8000_0000, 0xffff_ffff] {
                for h in [high - 1, high, high + 1] {
                    let x = f64::from_bits((h << 32) | low);
                    v.extend([x, -x]);
                }
            }
        }
        v
    }

    /// The edge cases, a million each of uniform arguments in (-r, r) for each of `ranges` and
    /// of arbitrary bit patterns, and 2000 uniform arguments per magnitude 2^e, e in `exponents`.
    fn arguments(seed: u64, ranges: [f64; 3], exponents: std::ops::Range<i32>) -> Vec<f64> {
        let mut rng = Rng(seed);
        let mut args = edge_cases();
        for _ in 0..1_000_000 {
            for r in ranges {
                args.push(rng.uniform(-r, r));
            }
            args.push(rng.any_bits());
        }
        for e in exponents {
            let m = 2f64.powi(e);
            for _ in 0..2000 {
                args.push(rng.uniform(-m, m));
            }
        }
        args
    }

    /// Asserts that every level's kernel for `f` that this CPU runs gives `reference`'s bits on
    /// every argument; says which vector levels it could not check.
    fn assert_bit_exact(args: &[f64], f: Function, reference: fn(f64) -> f64) {
        for level in [Level::Scalar, Level::Avx2, Level::Avx512] {
            if !level.available() {
                eprintln!("skipped: this CPU has no {level:?}, so those kernels are not used");
                continue;
            }
            let bad = mismatches(args, kernel(level, f), reference);
            assert!(
                bad.is_empty(),
                "{level:?}: {} of {} differ, e.g. {:?}",
                bad.len(),
                args.len(),
                &bad[..bad.len().min(5)]
            );
        }
    }

    #[test]
    fn exp_matches_libm_bit_for_bit() {
        let args = arguments(0x1234_5678_9abc_def1, [2.0, 50.0, 750.0], -60..10);
        assert_bit_exact(&args, Function::Exp, libm::exp);
    }

    #[test]
    fn asin_matches_libm_bit_for_bit() {
        let mut args = arguments(0x7a5e_1f00_d15e_a5e5, [1.0, 0.6, 1.5], -60..2);
        let mut rng = Rng(0xa51);
        // The thresholds at 0.5 and 0.975 and the approach to 1, bit patterns on either side.
        for edge in [0.5f64, f64::from_bits(0x3fef_3333 << 32), 1.0] {
            for ulps in -3000i64..=3000 {
                let x = f64::from_bits((edge.to_bits() as i64 + ulps) as u64);
                args.extend([x, -x]);
            }
        }
        for _ in 0..1_000_000 {
            args.push(rng.uniform(0.97, 1.0));
        }
        assert_bit_exact(&args, Function::Asin, libm::asin);
    }

    #[test]
    fn sin_matches_libm_bit_for_bit() {
        let mut args = arguments(0x0fed_cba9_8765_4321, [1.0, 8.0, 3000.0], -40..25);
        let mut rng = Rng(0x5eed);
        // Near multiples of pi/2, where the reduction cancels and takes extra rounds.
        let pio2 = std::f64::consts::FRAC_PI_2;
        for k in -200i32..=200 {
            let centre = k as f64 * pio2;
            for ulps in -300i64..=300 {
                args.push(f64::from_bits((centre.to_bits() as i64 + ulps) as u64));
            }
            for _ in 0..200 {
                args.push(centre + rng.uniform(-1e-6, 1e-6));
            }
        }
        assert_bit_exact(&args, Function::Sin, libm::sin);
    }
}
