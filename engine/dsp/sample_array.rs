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

#[derive(Clone)]
pub struct SampleArray(Arc<[AtomicU32]>);

impl std::fmt::Debug for SampleArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SampleArray(len {})", self.len())
    }
}

impl SampleArray {
    /// `len` zeros, to be filled with [`SampleArray::set`].
    pub fn zeroed(len: usize) -> Self {
        let zeroed = Arc::<[AtomicU32]>::new_zeroed_slice(len);
        // SAFETY: all-zero bits are a valid AtomicU32 (it has the layout of u32).
        SampleArray(unsafe { zeroed.assume_init() })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        f32::from_bits(self.0[i].load(Ordering::Relaxed))
    }

    #[inline]
    pub fn set(&self, i: usize, v: f32) {
        self.0[i].store(v.to_bits(), Ordering::Relaxed);
    }

    /// Writes `values` starting at `start`.
    pub fn write(&self, start: usize, values: &[f32]) {
        for (slot, v) in self.0[start..start + values.len()].iter().zip(values) {
            slot.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

impl From<&[f32]> for SampleArray {
    fn from(v: &[f32]) -> Self {
        SampleArray(v.iter().map(|x| AtomicU32::new(x.to_bits())).collect())
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
}
