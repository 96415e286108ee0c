//! The process's resident memory, from `/proc/self/statm`, and what glibc keeps of it.

/// Resident bytes, or 0 where `/proc` is not there. `statm` counts pages; Linux on x86_64
/// and aarch64 as built by default uses 4 KiB pages.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse::<u64>().ok())
        .unwrap_or(0);
    pages.saturating_mul(4096)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The bytes glibc keeps free in its arenas, summed over them (`mallinfo2`'s `fordblks`):
/// memory the program gave back and the allocator keeps, resident unless it was trimmed
/// (glibc returns only the top of a heap by itself). `None` without glibc.
pub fn glibc_free_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[repr(C)]
        struct Mallinfo2 {
            _arena: usize,
            _ordblks: usize,
            _smblks: usize,
            _hblks: usize,
            _hblkhd: usize,
            _usmblks: usize,
            _fsmblks: usize,
            _uordblks: usize,
            fordblks: usize,
            _keepcost: usize,
        }
        extern "C" {
            fn mallinfo2() -> Mallinfo2;
        }
        // SAFETY: `mallinfo2` has no preconditions; it reads the allocator's statistics.
        let info = unsafe { mallinfo2() };
        Some(u64::try_from(info.fordblks).unwrap_or(u64::MAX))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
