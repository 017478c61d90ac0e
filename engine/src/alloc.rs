//! Allocator tuning for the processes that move data (`zoopipectl`, the worker).
//!
//! mimalloc (the global allocator of both) gives freed memory back to the OS 10 ms after it
//! was last used. A conversion frees and allocates Arrow buffers all the time, so memory went
//! back and forth: every new buffer faulted in fresh (transparent huge) pages that the kernel
//! zeroes, about a fifth of a run's CPU in the profiles. Holding freed memory for a second
//! keeps it for reuse; peak RSS does not grow (the same buffers come back).

// The symbol lives in mimalloc's C library, linked through this dependency.
use mimalloc as _;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (milliseconds before freed memory is
/// returned to the OS).
const PURGE_DELAY: std::ffi::c_int = 15;

/// Keep freed memory for reuse for a second instead of 10 ms. Call first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: mimalloc documents mi_option_set as callable at any time from any thread; the
    // option id and value are plain integers within its range.
    unsafe { mi_option_set(PURGE_DELAY, 1000) };
}
