//! AVX2 versions of the fdlibm `exp`, `sin` and `asin` that the `libm` crate implements, four
//! lanes at a time, giving the same bits as `libm::exp` / `libm::sin` / `libm::asin` for every
//! input.
//!
//! Bit-exactness with the original rules out the usual fast approximations, so these run the
//! very same sequence of IEEE operations as the scalar code (same constants, same association,
//! no FMA contraction: Rust never fuses a multiply and an add on its own). The scalar code
//! branches on the argument's range; here every lane takes the common path and the lanes that
//! the scalar code would treat specially (huge, NaN, infinite, a second reduction round near a
//! multiple of pi/2) are recomputed with the scalar function. The tests compare both on
//! millions of arguments, bit for bit, including those edge regions.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the AVX2 kernels can run on this CPU (`is_x86_feature_detected` caches the answer).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
pub use avx2::*;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

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
    /// `a`, `high word of a >= w` is `a >= at_least(w)`, the form the scalar code's range
    /// checks take here.
    const fn at_least(high_word: u32) -> f64 {
        f64::from_bits((high_word as u64) << 32)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(v: f64) -> __m256d {
        _mm256_set1_pd(v)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn abs(x: __m256d) -> __m256d {
        _mm256_andnot_pd(splat(-0.0), x)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn ge(a: __m256d, b: f64) -> __m256d {
        _mm256_cmp_pd::<_CMP_GE_OQ>(a, splat(b))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn lt(a: __m256d, b: f64) -> __m256d {
        _mm256_cmp_pd::<_CMP_LT_OQ>(a, splat(b))
    }

    /// `if mask { t } else { f }` per lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn select(mask: __m256d, t: __m256d, f: __m256d) -> __m256d {
        _mm256_blendv_pd(f, t, mask)
    }

    /// The lane bits of a mask (bit i = lane i).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(mask: __m256d) -> u32 {
        _mm256_movemask_pd(mask) as u32
    }

    /// Integral doubles (|v| < 2^31) as 64-bit integers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_i64(v: __m256d) -> __m256i {
        _mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(v))
    }

    /// `libm::exp` of four lanes; the lanes set in the returned mask must be recomputed with
    /// `libm::exp` (|x| > 700, NaN).
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn exp4(x: __m256d) -> (__m256d, u32) {
        let a = abs(x);
        // The scalar special cases start at |x| >= 708.39; below 700, 2^k stays a normal
        // number, so the scaling is one exact multiply.
        let fallback = !lanes(_mm256_cmp_pd::<_CMP_LE_OQ>(a, splat(700.0))) & 0xf;
        let half = _mm256_or_pd(_mm256_and_pd(x, splat(-0.0)), splat(0.5));
        let k_far = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_pd(
            _mm256_mul_pd(splat(INVLN2), x),
            half,
        ));
        // 1 - 2 * sign: +-1 with x's sign.
        let k_near = _mm256_or_pd(_mm256_and_pd(x, splat(-0.0)), splat(1.0));
        let k = select(
            ge(a, at_least(0x3fd6_2e43)),
            select(ge(a, at_least(0x3ff0_a2b2)), k_far, k_near),
            _mm256_setzero_pd(),
        );
        // With k = 0 these are hi = x, lo = 0, r = x exactly, the scalar middle range.
        let hi = _mm256_sub_pd(x, _mm256_mul_pd(k, splat(LN2HI)));
        let lo = _mm256_mul_pd(k, splat(LN2LO));
        let r = _mm256_sub_pd(hi, lo);
        let rr = _mm256_mul_pd(r, r);
        let mut p = _mm256_add_pd(splat(P4), _mm256_mul_pd(rr, splat(P5)));
        p = _mm256_add_pd(splat(P3), _mm256_mul_pd(rr, p));
        p = _mm256_add_pd(splat(P2), _mm256_mul_pd(rr, p));
        p = _mm256_add_pd(splat(P1), _mm256_mul_pd(rr, p));
        let c = _mm256_sub_pd(r, _mm256_mul_pd(rr, p));
        let q = _mm256_div_pd(_mm256_mul_pd(r, c), _mm256_sub_pd(splat(2.0), c));
        let y = _mm256_add_pd(splat(1.0), _mm256_add_pd(_mm256_sub_pd(q, lo), hi));
        let exponent =
            _mm256_slli_epi64::<52>(_mm256_add_epi64(to_i64(k), _mm256_set1_epi64x(0x3ff)));
        let scaled = _mm256_mul_pd(y, _mm256_castsi256_pd(exponent));
        // |x| <= 2^-28: the scalar code returns 1 + x.
        let tiny = lt(a, at_least(0x3e30_0001));
        (select(tiny, _mm256_add_pd(splat(1.0), x), scaled), fallback)
    }

    /// fdlibm `__kernel_sin(x, y, 1)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn kernel_sin(x: __m256d, y: __m256d) -> __m256d {
        let (z, v, r) = kernel_sin_terms(x);
        // x - ((z * (0.5 * y - v * r) - y) - v * S1)
        let inner = _mm256_sub_pd(_mm256_mul_pd(splat(0.5), y), _mm256_mul_pd(v, r));
        let t = _mm256_sub_pd(
            _mm256_sub_pd(_mm256_mul_pd(z, inner), y),
            _mm256_mul_pd(v, splat(S1)),
        );
        _mm256_sub_pd(x, t)
    }

    /// fdlibm `__kernel_sin(x, 0, 0)`: x + v * (S1 + z * r).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn kernel_sin_exact(x: __m256d) -> __m256d {
        let (z, v, r) = kernel_sin_terms(x);
        _mm256_add_pd(
            x,
            _mm256_mul_pd(v, _mm256_add_pd(splat(S1), _mm256_mul_pd(z, r))),
        )
    }

    /// z = x^2, v = z x, r = S2 + z (S3 + z S4) + z w (S5 + z S6) with w = z^2.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn kernel_sin_terms(x: __m256d) -> (__m256d, __m256d, __m256d) {
        let z = _mm256_mul_pd(x, x);
        let w = _mm256_mul_pd(z, z);
        let a = _mm256_add_pd(
            splat(S2),
            _mm256_mul_pd(z, _mm256_add_pd(splat(S3), _mm256_mul_pd(z, splat(S4)))),
        );
        let b = _mm256_mul_pd(
            _mm256_mul_pd(z, w),
            _mm256_add_pd(splat(S5), _mm256_mul_pd(z, splat(S6))),
        );
        (z, _mm256_mul_pd(z, x), _mm256_add_pd(a, b))
    }

    /// fdlibm `__kernel_cos(x, y)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn kernel_cos(x: __m256d, y: __m256d) -> __m256d {
        let z = _mm256_mul_pd(x, x);
        let w = _mm256_mul_pd(z, z);
        // z (C1 + z (C2 + z C3)) + w w (C4 + z (C5 + z C6))
        let a = _mm256_mul_pd(
            z,
            _mm256_add_pd(
                splat(C1),
                _mm256_mul_pd(z, _mm256_add_pd(splat(C2), _mm256_mul_pd(z, splat(C3)))),
            ),
        );
        let b = _mm256_mul_pd(
            _mm256_mul_pd(w, w),
            _mm256_add_pd(
                splat(C4),
                _mm256_mul_pd(z, _mm256_add_pd(splat(C5), _mm256_mul_pd(z, splat(C6)))),
            ),
        );
        let r = _mm256_add_pd(a, b);
        let hz = _mm256_mul_pd(splat(0.5), z);
        let w = _mm256_sub_pd(splat(1.0), hz);
        // w + (((1 - w) - hz) + (z r - x y))
        let t = _mm256_add_pd(
            _mm256_sub_pd(_mm256_sub_pd(splat(1.0), w), hz),
            _mm256_sub_pd(_mm256_mul_pd(z, r), _mm256_mul_pd(x, y)),
        );
        _mm256_add_pd(w, t)
    }

    /// `libm::sin` of four lanes; the lanes set in the returned mask must be recomputed with
    /// `libm::sin`.
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn sin4(x: __m256d) -> (__m256d, u32) {
        let a = abs(x);
        let bits = _mm256_castpd_si256(a);
        let high = _mm256_srli_epi64::<32>(bits);
        let tiny = lt(a, at_least(0x3e50_0000));
        let primary = lt(a, at_least(0x3fe9_21fc));
        let small = lt(a, at_least(0x401c_463c));
        // False for NaN: NaN and infinities fall back like huge arguments.
        let medium = lt(a, at_least(0x4139_21fb));

        // Up to 9 pi / 4 the scalar reduction picks n by range, except near pi/2, pi, 3 pi/2
        // and 2 pi, where it takes the general path (those lanes fall back here).
        let low20 = _mm256_and_si256(high, _mm256_set1_epi64x(0xfffff));
        let near_pio2_multiple = _mm256_or_si256(
            _mm256_and_si256(
                _mm256_castpd_si256(lt(a, at_least(0x400f_6a7b))),
                _mm256_cmpeq_epi64(low20, _mm256_set1_epi64x(0x921fb)),
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi64(high, _mm256_set1_epi64x(0x4012_d97c)),
                _mm256_cmpeq_epi64(high, _mm256_set1_epi64x(0x4019_21fb)),
            ),
        );
        let special_small = _mm256_andnot_pd(
            primary,
            _mm256_and_pd(small, _mm256_castsi256_pd(near_pio2_multiple)),
        );

        let one = splat(1.0);
        let mut n_small = one;
        for bound in [0x4002_d97d, 0x400f_6a7b, 0x4015_fdbd] {
            n_small = _mm256_add_pd(n_small, _mm256_and_pd(ge(a, at_least(bound)), one));
        }
        n_small = _mm256_or_pd(n_small, _mm256_and_pd(x, splat(-0.0)));
        let n_medium = _mm256_sub_pd(
            _mm256_add_pd(_mm256_mul_pd(x, splat(INV_PIO2)), splat(TO_INT)),
            splat(TO_INT),
        );
        let n = select(small, n_small, n_medium);

        // First reduction round; n * PIO2_1 is exact (PIO2_1 has 33 significant bits), so
        // for n = 1..4 this is the scalar code's `x - n * pio2_1` with a constant.
        let r = _mm256_sub_pd(x, _mm256_mul_pd(n, splat(PIO2_1)));
        let w = _mm256_mul_pd(n, splat(PIO2_1T));
        let y0 = _mm256_sub_pd(r, w);
        let y1 = _mm256_sub_pd(_mm256_sub_pd(r, y0), w);
        // The general path takes a second round when y0 lost more than 16 bits of exponent.
        let ex = _mm256_srli_epi64::<20>(high);
        let ey = _mm256_and_si256(
            _mm256_srli_epi64::<52>(_mm256_castpd_si256(y0)),
            _mm256_set1_epi64x(0x7ff),
        );
        let second_round = _mm256_andnot_pd(
            small,
            _mm256_castsi256_pd(_mm256_cmpgt_epi64(
                _mm256_sub_epi64(ex, ey),
                _mm256_set1_epi64x(16),
            )),
        );

        let quadrant = _mm256_and_si256(to_i64(n), _mm256_set1_epi64x(3));
        let odd = _mm256_castsi256_pd(_mm256_cmpeq_epi64(
            _mm256_and_si256(quadrant, _mm256_set1_epi64x(1)),
            _mm256_set1_epi64x(1),
        ));
        // Only the polynomials some lane selects: neighbouring samples of a CPPN signal mostly
        // share a quadrant, so this usually evaluates one of the three instead of all.
        let (reduced_lanes, odd_lanes) = (!lanes(primary) & 0xf, lanes(odd));
        let unused = _mm256_setzero_pd();
        let s = if reduced_lanes & !odd_lanes != 0 {
            kernel_sin(y0, y1)
        } else {
            unused
        };
        let c = if reduced_lanes & odd_lanes != 0 {
            kernel_cos(y0, y1)
        } else {
            unused
        };
        let near = if lanes(primary) & !lanes(tiny) != 0 {
            kernel_sin_exact(x)
        } else {
            unused
        };
        let negate = _mm256_castsi256_pd(_mm256_slli_epi64::<63>(_mm256_srli_epi64::<1>(quadrant)));
        let reduced = _mm256_xor_pd(select(odd, c, s), negate);
        let result = select(tiny, x, select(primary, near, reduced));

        let fallback = !lanes(medium) | lanes(special_small) | lanes(second_round);
        (result, fallback & 0xf)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul(a: __m256d, b: __m256d) -> __m256d {
        _mm256_mul_pd(a, b)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn add(a: __m256d, b: __m256d) -> __m256d {
        _mm256_add_pd(a, b)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub(a: __m256d, b: __m256d) -> __m256d {
        _mm256_sub_pd(a, b)
    }

    /// asin's rational approximation R(z), evaluated as the scalar `comp_r`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn asin_r(z: __m256d) -> __m256d {
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
        _mm256_div_pd(p, q)
    }

    /// `libm::asin` of four lanes; the lanes set in the returned mask must be recomputed with
    /// `libm::asin` (|x| >= 1, NaN, and |x| < 2^-26, which the scalar code returns as is).
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn asin4(x: __m256d) -> (__m256d, u32) {
        let a = abs(x);
        let fallback = !lanes(lt(a, 1.0)) & 0xf | lanes(lt(a, at_least(0x3e50_0000)));
        // |x| < 0.5: x + x R(x^2).
        let near_zero = add(x, mul(x, asin_r(mul(x, x))));
        // 0.5 <= |x| < 1: from z = (1 - |x|) / 2 and s = sqrt(z).
        let z = mul(sub(splat(1.0), a), splat(0.5));
        let s = _mm256_sqrt_pd(z);
        let r = asin_r(z);
        let two = splat(2.0);
        // |x| > 0.975
        let near_one = sub(
            splat(PIO2_HI),
            sub(mul(two, add(s, mul(s, r))), splat(PIO2_LO)),
        );
        // f + c = sqrt(z), f being s with its low word cleared.
        let f = _mm256_and_pd(s, _mm256_castsi256_pd(_mm256_set1_epi64x(!0xffff_ffff)));
        let c = _mm256_div_pd(sub(z, mul(f, f)), add(s, f));
        let pio4_hi = splat(0.5 * PIO2_HI);
        let middle = sub(
            pio4_hi,
            sub(
                sub(mul(mul(two, s), r), sub(splat(PIO2_LO), mul(two, c))),
                sub(pio4_hi, mul(two, f)),
            ),
        );
        let far = select(ge(a, at_least(0x3fef_3333)), near_one, middle);
        let sign = _mm256_and_pd(x, splat(-0.0));
        let far = _mm256_xor_pd(far, sign);
        (select(lt(a, 0.5), near_zero, far), fallback)
    }

    /// Applies `f4` to `v` in place four lanes at a time, recomputing the lanes it hands back
    /// (and the tail) with `scalar`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn map(v: &mut [f64], f4: impl Fn(__m256d) -> (__m256d, u32), scalar: impl Fn(f64) -> f64) {
        let mut chunks = v.chunks_exact_mut(4);
        for chunk in &mut chunks {
            let chunk: &mut [f64; 4] = chunk.try_into().unwrap();
            // SAFETY: `chunk` is four f64; the unaligned load and store read and write them.
            let x = unsafe { _mm256_loadu_pd(chunk.as_ptr()) };
            let (y, fallback) = f4(x);
            let original = *chunk;
            unsafe { _mm256_storeu_pd(chunk.as_mut_ptr(), y) };
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
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2")]
    pub fn sin_in_place(v: &mut [f64]) {
        map(v, |x| sin4(x), libm::sin);
    }

    /// `v[i] = libm::asin(v[i])`.
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2")]
    pub fn asin_in_place(v: &mut [f64]) {
        map(v, |x| asin4(x), libm::asin);
    }

    /// `v[i] = libm::exp(v[i])`.
    ///
    /// # Safety
    /// The CPU must support AVX2 ([`available`]).
    #[target_feature(enable = "avx2")]
    pub fn exp_in_place(v: &mut [f64]) {
        map(v, |x| exp4(x), libm::exp);
    }
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

    /// Asserts that `kernel` gives `reference`'s bits on every argument; skips, saying so, on
    /// a CPU without AVX2 (there the kernels cannot run and the CPPN uses the scalar path).
    fn assert_bit_exact(args: &[f64], kernel: fn(&mut [f64]), reference: fn(f64) -> f64) {
        if !available() {
            eprintln!("skipped: this CPU has no AVX2, so the four-lane kernels are not used");
            return;
        }
        let bad = mismatches(args, kernel, reference);
        assert!(
            bad.is_empty(),
            "{} of {} differ, e.g. {:?}",
            bad.len(),
            args.len(),
            &bad[..bad.len().min(5)]
        );
    }

    #[test]
    fn exp_matches_libm_bit_for_bit() {
        let args = arguments(0x1234_5678_9abc_def1, [2.0, 50.0, 750.0], -60..10);
        // SAFETY: assert_bit_exact calls the kernel only where AVX2 is available.
        assert_bit_exact(&args, |v| unsafe { exp_in_place(v) }, libm::exp);
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
        // SAFETY: assert_bit_exact calls the kernel only where AVX2 is available.
        assert_bit_exact(&args, |v| unsafe { asin_in_place(v) }, libm::asin);
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
        // SAFETY: assert_bit_exact calls the kernel only where AVX2 is available.
        assert_bit_exact(&args, |v| unsafe { sin_in_place(v) }, libm::sin);
    }
}
