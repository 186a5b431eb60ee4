//! Giving large buffers back to the operating system when they are freed.
//!
//! A server process allocates parts of tens of MB (results on their way to clients, images
//! being decoded) and frees them soon after. glibc's malloc serves allocations from 128 KiB up
//! with `mmap` at first, but after the first such buffer is freed it raises that threshold to
//! the buffer's size (up to 32 MiB) and serves the next ones from its heaps, which it trims
//! only past twice that size: measured with the protocol test server, 50 clients sent a 20 MB
//! part each left the process 70 MiB above its level after the first job, every connection
//! already closed or idle. A fixed threshold keeps every buffer from [`LARGE`] up on its own
//! mapping, returned whole on free (same run: within 10%).

/// Allocations from this size up get their own mapping.
pub const LARGE: usize = 4 << 20;

/// Makes allocations of [`LARGE`] bytes and more come from their own mappings, unmapped when
/// freed, for the rest of the process. Call once at startup. Does nothing on platforms other
/// than glibc Linux.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; M_MMAP_THRESHOLD takes a size within
        // glibc's accepted range (at most HEAP_MAX/2 = 32 MiB on 64-bit), checked below by
        // its return value. glibc takes its own locks: callable while other threads allocate.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE as libc::c_int) };
        if ok != 1 {
            tracing::warn!(
                threshold = LARGE,
                "mallopt(M_MMAP_THRESHOLD) refused: large buffers may stay in the heap"
            );
        }
        // A fixed mmap threshold also fixes the heaps' trim threshold at its 128 KiB default
        // (glibc raises it to twice the mmap threshold only while that adapts), so the heaps
        // would be given back and grown again on every job: twice the threshold, as glibc does.
        // SAFETY: as above; M_TRIM_THRESHOLD takes any non-negative size.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, (2 * LARGE) as libc::c_int) };
        if ok != 1 {
            tracing::warn!("mallopt(M_TRIM_THRESHOLD) refused");
        }
    }
}
