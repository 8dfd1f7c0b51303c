//! The server binary's one call into the C library (`mallopt`), which rustix does not wrap.

#![allow(unsafe_code)]

/// Keep freed heap memory in the process (glibc): a server that handles megabyte requests and
/// replies reuses the same few buffers instead of returning them to the kernel after each one
/// and faulting fresh zeroed pages in for the next (glibc trims or unmaps freed blocks above
/// 128 KiB; on a VM with free-page reporting every such page costs a hypervisor fault).
/// Blocks up to [`MMAP_THRESHOLD`] come from the heap; up to [`TRIM_THRESHOLD`] of free heap
/// stays mapped per arena — the process keeps what it used at its peak, as jemalloc would.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    use std::ffi::c_int;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    // SAFETY: glibc's mallopt takes two ints and only changes allocator parameters; it is
    // called before the server starts its threads. A 0 return (refused) leaves the defaults.
    let ok = unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    };
    if !ok {
        tracing::debug!("glibc refused the allocator parameters; freed memory is trimmed as usual");
    }
}

/// Largest block `keep_freed_memory` lets glibc serve from (and keep in) its heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const MMAP_THRESHOLD: std::ffi::c_int = 32 << 20;
/// Free heap glibc keeps mapped per arena after `keep_freed_memory`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const TRIM_THRESHOLD: std::ffi::c_int = 256 << 20;

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
