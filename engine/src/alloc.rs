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

/// Tune the allocator for moving data. Call first thing in `main`.
pub fn tune() {
    keep_freed_memory();
    no_huge_pages();
}

/// Keep freed memory for reuse for a second instead of 10 ms.
fn keep_freed_memory() {
    // SAFETY: mimalloc documents mi_option_set as callable at any time from any thread; the
    // option id and value are plain integers within its range.
    unsafe { mi_option_set(PURGE_DELAY, 1000) };
}

/// No transparent huge pages for this process. mimalloc asks for them on its arenas, so each
/// first touch of a 2 MiB region faulted in and zeroed all 2 MiB, and purging split them again:
/// with 4 KiB pages a CSV → Parquet run used about an eighth less CPU (page zeroing was the
/// largest kernel cost in its profile). The flag is the process's, checked at each fault, so
/// it also covers the arenas mimalloc reserved before `main`.
#[cfg(target_os = "linux")]
fn no_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) only sets a flag of the calling process;
    // it fails harmlessly (EINVAL) on kernels without it, and its result changes nothing else.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Transparent huge pages are Linux's.
#[cfg(not(target_os = "linux"))]
fn no_huge_pages() {}
