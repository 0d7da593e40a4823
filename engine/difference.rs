//! How far one render is from another: the measures the parity tests, the GPU tolerance tests
//! and the benches state (SNR in dB, max abs error, samples that differ in their bits, RMS).

/// `ours` against `reference`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    /// Signal-to-noise ratio in dB: reference energy over error energy. Infinite when the two
    /// are bit-identical, minus infinity when the reference is silent and ours is not.
    pub snr_db: f64,
    pub max_abs_error: f64,
    /// Samples whose bits differ.
    pub differing: usize,
}

impl Difference {
    /// Compares sample by sample; the signals must be equally long.
    pub fn of(ours: &[f32], reference: &[f32]) -> Difference {
        assert_eq!(ours.len(), reference.len(), "signals of different lengths");
        let (mut signal, mut noise, mut max_abs_error) = (0.0f64, 0.0f64, 0.0f64);
        let mut differing = 0;
        for (&a, &b) in ours.iter().zip(reference) {
            let e = a as f64 - b as f64;
            signal += (b as f64).powi(2);
            noise += e * e;
            max_abs_error = max_abs_error.max(e.abs());
            differing += usize::from(a.to_bits() != b.to_bits());
        }
        let snr_db = if noise == 0.0 {
            f64::INFINITY
        } else if signal == 0.0 {
            f64::NEG_INFINITY
        } else {
            10.0 * (signal / noise).log10()
        };
        Difference {
            snr_db,
            max_abs_error,
            differing,
        }
    }
}

/// Root mean square.
pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_signals_have_infinite_snr() {
        let d = Difference::of(&[0.5, -0.25], &[0.5, -0.25]);
        assert_eq!(
            (d.snr_db, d.max_abs_error, d.differing),
            (f64::INFINITY, 0.0, 0)
        );
    }

    #[test]
    fn an_error_of_a_tenth_of_the_amplitude_is_20_db() {
        let d = Difference::of(&[1.1, -1.1], &[1.0, -1.0]);
        assert!((d.snr_db - 20.0).abs() < 1e-5, "{}", d.snr_db);
        assert!((d.max_abs_error - 0.1).abs() < 1e-6);
        assert_eq!(d.differing, 2);
        assert_eq!(Difference::of(&[1.0], &[0.0]).snr_db, f64::NEG_INFINITY);
        assert!((rms(&[1.0, -1.0]) - 1.0).abs() < 1e-12);
    }
}
