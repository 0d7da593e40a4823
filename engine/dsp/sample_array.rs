//! An f32 array shared between the code that fills it and the nodes that read it.
//!
//! A render evaluates its CPPN outputs ahead of the block clock, chunk by chunk, while value
//! curves and buffer sources already read the part that is done: that is what lets the first
//! block go out long before the whole sound is computed. The samples are stored as `AtomicU32`
//! bit patterns so the filling and the reading can hold the same `Arc` safely; a relaxed load is
//! a plain load on the targets we run on, and the filling happens-before the reading because a
//! render runs on one thread at a time (or waits for the parallel fill to join).
//!
//! A new array is zeroed memory from the allocator (`alloc_zeroed`), which for large arrays is
//! fresh pages the kernel commits only when first written: a long render's arrays cost memory
//! as far as it has been filled, not for their whole length up front.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// `len` samples, stored whole, or as a window: a ring of the last `2^k` samples, for arrays
/// that are filled and read in step with the block clock (see [`SampleArray::window`]).
#[derive(Clone)]
pub struct SampleArray {
    data: Arc<[AtomicU32]>,
    len: usize,
    /// `!0` for a whole array (the index is the slot), `window - 1` for a window.
    mask: usize,
}

impl std::fmt::Debug for SampleArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SampleArray(len {}, slots {})",
            self.len,
            self.data.len()
        )
    }
}

fn zeroed_slots(n: usize) -> Arc<[AtomicU32]> {
    let zeroed = Arc::<[AtomicU32]>::new_zeroed_slice(n);
    // SAFETY: all-zero bits are a valid AtomicU32 (it has the layout of u32).
    unsafe { zeroed.assume_init() }
}

impl SampleArray {
    /// `len` zeros, to be filled with [`SampleArray::set`].
    pub fn zeroed(len: usize) -> Self {
        SampleArray {
            data: zeroed_slots(len),
            len,
            mask: !0,
        }
    }

    /// `len` zeros of which only the last `window` (a power of two) written are kept: sample
    /// `i` lives in slot `i % window`, so writing sample `i` forgets sample `i - window`. For
    /// arrays whose readers never look further back than that behind the writer. A `len` that
    /// fits in the window is stored whole.
    pub fn window(len: usize, window: usize) -> Self {
        assert!(window.is_power_of_two());
        if len <= window {
            return SampleArray::zeroed(len);
        }
        SampleArray {
            data: zeroed_slots(window),
            len,
            mask: window - 1,
        }
    }

    /// The logical length (samples 0..len can be read, a window's recent ones only).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of sample storage (the window's, for a window).
    pub fn storage_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<AtomicU32>()
    }

    /// Whether every sample is stored (not a window).
    pub fn is_whole(&self) -> bool {
        self.mask == !0
    }

    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        debug_assert!(i < self.len);
        f32::from_bits(self.data[i & self.mask].load(Ordering::Relaxed))
    }

    #[inline]
    pub fn set(&self, i: usize, v: f32) {
        debug_assert!(i < self.len);
        self.data[i & self.mask].store(v.to_bits(), Ordering::Relaxed);
    }

    /// The slots as raw `f32` bits and the mask that maps a sample index to its slot (`!0` for
    /// a whole array), for readers that gather several samples at once. The caller reads only
    /// slots of samples already filled and not being written (see the module doc).
    pub fn slots(&self) -> (*const u32, usize, usize) {
        (self.data.as_ptr() as *const u32, self.data.len(), self.mask)
    }

    /// Writes `values` starting at `start`.
    pub fn write(&self, start: usize, values: &[f32]) {
        assert!(start + values.len() <= self.len);
        // In at most two runs of consecutive slots (a window wraps once per `window` samples
        // and `values` is shorter than that where windows are used), without a mask or bounds
        // check per sample.
        let mut values = values;
        let mut i = start;
        while !values.is_empty() {
            let slot = i & self.mask;
            let run = values.len().min(self.data.len() - slot);
            for (cell, v) in self.data[slot..slot + run].iter().zip(&values[..run]) {
                cell.store(v.to_bits(), Ordering::Relaxed);
            }
            values = &values[run..];
            i += run;
        }
    }

    /// Whether both are the same array (not just equal samples).
    pub fn same(&self, other: &SampleArray) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// Every sample; only for whole arrays.
    pub fn to_vec(&self) -> Vec<f32> {
        assert!(
            self.is_whole(),
            "a windowed SampleArray keeps only recent samples"
        );
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

impl From<&[f32]> for SampleArray {
    fn from(v: &[f32]) -> Self {
        SampleArray {
            data: v.iter().map(|x| AtomicU32::new(x.to_bits())).collect(),
            len: v.len(),
            mask: !0,
        }
    }
}

impl From<Vec<f32>> for SampleArray {
    fn from(v: Vec<f32>) -> Self {
        SampleArray::from(&v[..])
    }
}

impl<const N: usize> From<&[f32; N]> for SampleArray {
    fn from(v: &[f32; N]) -> Self {
        SampleArray::from(&v[..])
    }
}

impl<const N: usize> From<[f32; N]> for SampleArray {
    fn from(v: [f32; N]) -> Self {
        SampleArray::from(&v[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bits_including_nan_and_negative_zero() {
        let a = SampleArray::zeroed(4);
        a.write(1, &[-0.0, f32::NAN, 1.5]);
        assert_eq!(a.get(0).to_bits(), 0);
        assert_eq!(a.get(1).to_bits(), (-0.0f32).to_bits());
        assert!(a.get(2).is_nan());
        assert_eq!(a.to_vec()[3], 1.5);
        let b = a.clone();
        a.set(0, 2.0);
        assert_eq!(b.get(0), 2.0, "clones share storage");
    }

    #[test]
    fn a_window_keeps_the_last_samples_written() {
        let w = SampleArray::window(100, 8);
        assert!(!w.is_whole());
        assert_eq!(w.len(), 100);
        for i in 0..100 {
            w.set(i, i as f32);
            // The 8 most recent samples are all readable.
            for back in 0..8.min(i + 1) {
                assert_eq!(w.get(i - back), (i - back) as f32);
            }
        }
        assert!(SampleArray::window(8, 8).is_whole(), "fits: stored whole");
    }
}
