//! The 13 CPPN activation functions, exactly as the original computes them.
//!
//! Formulas: cppnjs `activationFunctions/cppnActivationFunctions.js` with kromosynth's
//! overrides and additions (`cppn-neat/activation-functions.js`), evaluated in f64 like
//! JavaScript. The transcendental functions come from the `libm` crate, a port of the same
//! fdlibm algorithms that V8 uses for `Math.sin`, `Math.exp`, ..., so results match the
//! original's doubles, not merely to within an ulp. [`Activation::apply_with`] computes a
//! row of samples at once with the AVX2 or AVX-512 versions of `exp`, `sin` and `asin` in
//! [`super::simd`], which give the same bits.

use std::f64::consts::PI;

use super::simd::Kernels;

/// An activation function id as stored in `activationFunction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Activation {
    Sine = 0,
    Sine2 = 1,
    Cos = 2,
    Arctan = 3,
    Triangle = 4,
    Sawtooth = 5,
    Spike = 6,
    StepFunction = 7,
    BipolarSigmoid = 8,
    PlainSigmoid = 9,
    Gaussian = 10,
    Linear = 11,
    NullFn = 12,
}

impl Activation {
    pub const ALL: [Activation; 13] = [
        Activation::Sine,
        Activation::Sine2,
        Activation::Cos,
        Activation::Arctan,
        Activation::Triangle,
        Activation::Sawtooth,
        Activation::Spike,
        Activation::StepFunction,
        Activation::BipolarSigmoid,
        Activation::PlainSigmoid,
        Activation::Gaussian,
        Activation::Linear,
        Activation::NullFn,
    ];

    /// The stored id, e.g. `"BipolarSigmoid"`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sine => "Sine",
            Activation::Sine2 => "Sine2",
            Activation::Cos => "cos",
            Activation::Arctan => "arctan",
            Activation::Triangle => "triangle",
            Activation::Sawtooth => "sawtooth",
            Activation::Spike => "spike",
            Activation::StepFunction => "StepFunction",
            Activation::BipolarSigmoid => "BipolarSigmoid",
            Activation::PlainSigmoid => "PlainSigmoid",
            Activation::Gaussian => "Gaussian",
            Activation::Linear => "Linear",
            Activation::NullFn => "NullFn",
        }
    }

    pub fn from_name(name: &str) -> Option<Activation> {
        Activation::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Applies the function to the weighted input sum `x`.
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Sine => libm::sin(x),
            Activation::Sine2 => libm::sin(2.0 * x),
            Activation::Cos => libm::cos(x),
            Activation::Arctan => libm::atan(x),
            // (2 * 1 / PI) * asin(sin(2 * (PI / (2 PI)) * x)); PI / (2 PI) is exactly 0.5.
            Activation::Triangle => (2.0 / PI) * libm::asin(libm::sin(x)),
            Activation::Sawtooth => {
                let period = 2.0 * PI;
                2.0 * ((x / period) - (0.5 + (x / period)).floor())
            }
            Activation::Spike => {
                let f = x.floor();
                // JavaScript `%` keeps the dividend's sign, as Rust's does: floor(x) = -3
                // gives -1, which takes the second branch.
                if f % 2.0 == 0.0 {
                    1.0 - 2.0 * (x - f)
                } else {
                    -1.0 + 2.0 * (x - f)
                }
            }
            // kromosynth's override: -1/+1, not cppnjs's 0/1.
            Activation::StepFunction => {
                if x <= 0.0 {
                    -1.0
                } else {
                    1.0
                }
            }
            Activation::BipolarSigmoid => (2.0 / (1.0 + libm::exp(-4.9 * x))) - 1.0,
            Activation::PlainSigmoid => 1.0 / (1.0 + libm::exp(-x)),
            // Math.pow(y, 2) is y * y in fdlibm.
            Activation::Gaussian => {
                let y = x * 2.5;
                2.0 * libm::exp(-(y * y)) - 1.0
            }
            // cppnjs "Linear" is the absolute value.
            Activation::Linear => x.abs(),
            Activation::NullFn => 0.0,
        }
    }

    /// `v[i] = self.apply(v[i])` one value at a time (the reference the tests compare
    /// [`Activation::apply_with`] with).
    pub fn apply_in_place_scalar(self, v: &mut [f64]) {
        for x in v {
            *x = self.apply(*x);
        }
    }

    /// `v[i] = self.apply(v[i])` for every element, with the same bits, the CPPN evaluator's
    /// way: the exp- and sin-based functions run their transcendental part through `K`'s kernels,
    /// in separate passes so that a lane the kernel hands back to the scalar function gets
    /// exactly the scalar argument; the rest are plain loops that the compiler vectorizes for
    /// the caller's instruction set (this is inlined into callers compiled for `K`'s).
    ///
    /// # Safety
    /// The CPU must run `K`'s instruction set ([`super::simd::Level::available`]).
    #[inline(always)]
    pub unsafe fn apply_with<K: Kernels>(self, v: &mut [f64]) {
        match self {
            Activation::Sine => K::sin_in_place(v),
            Activation::Sine2 => {
                v.iter_mut().for_each(|x| *x *= 2.0);
                K::sin_in_place(v);
            }
            Activation::Triangle => {
                K::sin_in_place(v);
                K::asin_in_place(v);
                v.iter_mut().for_each(|x| *x *= 2.0 / PI);
            }
            Activation::BipolarSigmoid => {
                v.iter_mut().for_each(|x| *x *= -4.9);
                K::exp_in_place(v);
                v.iter_mut().for_each(|x| *x = (2.0 / (1.0 + *x)) - 1.0);
            }
            Activation::PlainSigmoid => {
                v.iter_mut().for_each(|x| *x = -*x);
                K::exp_in_place(v);
                v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + *x));
            }
            Activation::Gaussian => {
                v.iter_mut().for_each(|x| *x = -((*x * 2.5) * (*x * 2.5)));
                K::exp_in_place(v);
                v.iter_mut().for_each(|x| *x = 2.0 * *x - 1.0);
            }
            _ => self.apply_in_place_scalar(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::{self, Level};
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Activation::ALL {
            assert_eq!(Activation::from_name(a.name()), Some(a));
        }
        assert_eq!(Activation::from_name("tanh"), None);
    }

    #[test]
    fn formulas_at_known_points() {
        use Activation::*;
        assert_eq!(Sine.apply(PI / 2.0), 1.0);
        assert_eq!(Sine2.apply(PI / 4.0), 1.0);
        assert_eq!(Cos.apply(0.0), 1.0);
        assert_eq!(Arctan.apply(1.0), PI / 4.0);
        assert!((Triangle.apply(PI / 2.0) - 1.0).abs() < 1e-15);
        assert!((Triangle.apply(-PI / 4.0) + 0.5).abs() < 1e-15);
        assert_eq!(Sawtooth.apply(0.0), 0.0);
        assert!((Sawtooth.apply(PI / 2.0) - 0.5).abs() < 1e-15);
        assert!((Sawtooth.apply(PI * 0.999) - 0.999).abs() < 1e-12);
        assert!((Sawtooth.apply(PI * 1.001) + 0.999).abs() < 1e-12);
        assert_eq!(Spike.apply(0.25), 0.5); // floor 0 even: 1 - 2*0.25
        assert_eq!(Spike.apply(1.25), -0.5); // floor 1 odd: -1 + 2*0.25
        assert_eq!(Spike.apply(-0.75), -0.5); // floor -1, -1 % 2 = -1: odd branch
        assert_eq!(Spike.apply(-1.75), 0.5); // floor -2 even
        assert_eq!(StepFunction.apply(0.0), -1.0);
        assert_eq!(StepFunction.apply(1e-300), 1.0);
        assert_eq!(BipolarSigmoid.apply(0.0), 0.0);
        assert!((BipolarSigmoid.apply(1.0) - (2.0 / (1.0 + (-4.9f64).exp()) - 1.0)).abs() < 1e-15);
        assert_eq!(PlainSigmoid.apply(0.0), 0.5);
        assert_eq!(Gaussian.apply(0.0), 1.0);
        assert!((Gaussian.apply(0.4) - (2.0 * (-1.0f64).exp() - 1.0)).abs() < 1e-15);
        assert_eq!(Linear.apply(-3.5), 3.5);
        assert_eq!(NullFn.apply(123.0), 0.0);
    }

    /// `a` applied in place to `args` (in odd-sized slices, so the kernels' scalar tails run
    /// too) with each level's kernels this CPU has.
    fn in_place_at_every_level(a: Activation, args: &[f64]) -> Vec<(Level, Vec<f64>)> {
        fn with<K: Kernels>(a: Activation, args: &[f64]) -> Vec<f64> {
            let mut v = args.to_vec();
            // SAFETY: called below only for levels this CPU runs.
            v.chunks_mut(37)
                .for_each(|c| unsafe { a.apply_with::<K>(c) });
            v
        }
        let mut results = vec![(Level::Scalar, with::<simd::Scalar>(a, args))];
        #[cfg(target_arch = "x86_64")]
        {
            if Level::Avx2.available() {
                results.push((Level::Avx2, with::<simd::Avx2>(a, args)));
            }
            if Level::Avx512.available() {
                results.push((Level::Avx512, with::<simd::Avx512>(a, args)));
            }
        }
        results
    }

    #[test]
    fn in_place_application_matches_apply_bit_for_bit() {
        // Arguments across the ranges CPPN sums take, the kernels' fallback ranges, and the
        // special values; sliced oddly so the kernels' scalar tails run too.
        let mut args = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-300,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            let scale = [1.0, 4.0, 30.0, 200.0, 1e4, 1e7][i % 6];
            args.push(unit * scale);
        }
        for a in Activation::ALL {
            let expected: Vec<u64> = args.iter().map(|x| a.apply(*x).to_bits()).collect();
            let mut scalar = args.clone();
            a.apply_in_place_scalar(&mut scalar);
            for (level, fast) in in_place_at_every_level(a, &args) {
                for (i, e) in expected.iter().enumerate() {
                    let nan = f64::from_bits(*e).is_nan();
                    assert!(
                        fast[i].to_bits() == *e || (nan && fast[i].is_nan()),
                        "{a:?}({}) = {} in place with {level:?}, {} by apply",
                        args[i],
                        fast[i],
                        f64::from_bits(*e)
                    );
                }
            }
            for (i, e) in expected.iter().enumerate() {
                let nan = f64::from_bits(*e).is_nan();
                assert!(scalar[i].to_bits() == *e || (nan && scalar[i].is_nan()));
            }
        }
    }

    #[test]
    fn libm_matches_std_closely() {
        // fdlibm and the platform libm agree to within an ulp; a guard against a wrong import.
        for i in 0..1000 {
            let x = (i as f64 - 500.0) * 0.0137;
            assert!((libm::sin(x) - x.sin()).abs() <= 2.0 * f64::EPSILON);
            assert!((libm::exp(x) - x.exp()).abs() <= 2.0 * f64::EPSILON * x.exp());
        }
    }
}
