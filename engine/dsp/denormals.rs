//! Denormal flushing around block processing, as web-audio-api 1.1.0 `src/render/thread.rs`
//! does (`no_denormals::no_denormals(|| graph.render(&scope))`, crate no_denormals 0.1.3).
//!
//! web-audio-api renders every block with flush-to-zero and denormals-are-zero set (x86/x86_64:
//! MXCSR bits 0x8040; aarch64: FPCR.FZ only). That changes results wherever values get tiny:
//! a biquad's f64 state flushes to zero (which ends its tail sooner), and subnormal f32 inputs
//! read as zero. So every block of ours must run under [`FlushDenormals`] to be bit-exact,
//! parameter computation included.

/// While alive, the current thread flushes denormals; dropping it restores the previous mode.
/// Not `Send`: the flags are per thread.
pub struct FlushDenormals {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    saved: u32,
    #[cfg(target_arch = "aarch64")]
    saved: u64,
    _not_send: std::marker::PhantomData<*const ()>,
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
const MXCSR_FTZ_DAZ: u32 = 0x8040;

#[cfg(target_arch = "aarch64")]
const FPCR_FZ: u64 = 1 << 24;

impl FlushDenormals {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            let mut saved: u32 = 0;
            // SAFETY: stmxcsr/ldmxcsr only read and write the MXCSR register and the given u32.
            unsafe {
                std::arch::asm!("stmxcsr [{}]", in(reg) &mut saved, options(nostack, preserves_flags));
                let new = saved | MXCSR_FTZ_DAZ;
                std::arch::asm!("ldmxcsr [{}]", in(reg) &new, options(nostack, preserves_flags, readonly));
            }
            FlushDenormals {
                saved,
                _not_send: std::marker::PhantomData,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let saved: u64;
            // SAFETY: reads and writes the FPCR register only.
            unsafe {
                std::arch::asm!("mrs {}, fpcr", out(reg) saved, options(nomem, nostack));
                std::arch::asm!("msr fpcr, {}", in(reg) saved | FPCR_FZ, options(nomem, nostack));
            }
            FlushDenormals {
                saved,
                _not_send: std::marker::PhantomData,
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
        {
            // web-audio-api leaves the mode alone on other architectures too.
            FlushDenormals {
                _not_send: std::marker::PhantomData,
            }
        }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: restores the MXCSR value read in `new`.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &self.saved, options(nostack, preserves_flags, readonly));
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: restores the FPCR value read in `new`.
        unsafe {
            std::arch::asm!("msr fpcr, {}", in(reg) self.saved, options(nomem, nostack));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_while_alive_and_restores() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        {
            let _guard = FlushDenormals::new();
            assert_eq!(std::hint::black_box(tiny) * std::hint::black_box(0.5), 0.0);
        }
        assert!((std::hint::black_box(tiny) * std::hint::black_box(0.5)).is_subnormal());
    }
}
