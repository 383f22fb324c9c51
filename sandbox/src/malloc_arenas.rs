//! How many malloc arenas the process may use.
//!
//! glibc gives each thread that allocates while another holds an arena a
//! new arena (up to 8 per core), and memory freed into one arena serves
//! only the threads using it. A build allocates per file on several
//! threads one after the other (the context's checksums on one, the COPY's
//! file list and layer plan on another), so each arena keeps its own peak:
//! a COPY of a 100,000-file context peaked at 121 MB RSS for 65 MB of live
//! heap, 83 MB with two arenas, in the same time (`bench/scale.sh files`).

/// Caps the process at one malloc arena per core, at least two and at
/// most eight (glibc's default is eight per core); call it before any
/// thread starts. Fewer arenas than threads means threads sometimes wait
/// for an arena's lock: one per core keeps that rare on a large machine,
/// and the cap keeps the arenas' peaks few. A no-op where the C library
/// is not glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        // SAFETY: mallopt only sets a malloc parameter; it takes no
        // pointers and is called before the process starts threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}

/// Hands the free memory of every malloc arena back to the kernel. Call
/// it where a phase that held much memory on other threads has ended:
/// what the next phase allocates on this thread then comes on top of
/// what is live, not of the other arenas' peaks (after a 100,000-file
/// COPY, explaining its miss added 36 MB to a 74 MB peak). A no-op where
/// the C library is not glibc.
pub fn trim_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free pages of malloc's own
        // heaps to the kernel; it takes no pointers and is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
