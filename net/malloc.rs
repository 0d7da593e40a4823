//! The server's allocator policy: keep freed memory for the next render.
//!
//! A render allocates its buffers (lazy-output windows, delay rings, impulse responses, spectra)
//! when it starts and frees them when it ends. glibc's defaults hand such memory back to the
//! kernel right away (blocks over 128 KiB are separate mappings; a heap top over 128 KiB is
//! trimmed), so the next render takes a page fault, a zeroed page and, on unmap, a TLB
//! shootdown for every 4 KiB again: about a fifth of a render's set-up time here, on the path
//! to its first chunk. With the thresholds below, blocks up to 16 MiB come from the heap and up
//! to 16 MiB of free memory stays at the top of each heap (glibc keeps one heap per thread that
//! allocates, so at most 16 MiB times the worker threads plus the event loop's).

/// Largest block served from the heap instead of its own mapping, and most free memory a heap
/// keeps at its top.
const KEEP_BYTES: i32 = 16 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // glibc <malloc.h>
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only changes allocator parameters; it is called before the server starts
    // its threads, and any value is valid for these two.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, KEEP_BYTES);
        mallopt(M_TRIM_THRESHOLD, KEEP_BYTES);
    }
}

/// Other allocators manage their own caches.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {
    let _ = KEEP_BYTES;
}
