//! The process's resident memory, from `/proc/self/statm`.

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

/// glibc's own account, summed over its arenas (`mallinfo2`): bytes in use by the program
/// (with the allocator's headers) and bytes free but kept. `None` without glibc.
pub fn glibc_in_use_and_free() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[repr(C)]
        struct Mallinfo2 {
            _arena: usize,
            _ordblks: usize,
            _smblks: usize,
            _hblks: usize,
            hblkhd: usize,
            _usmblks: usize,
            _fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            _keepcost: usize,
        }
        extern "C" {
            fn mallinfo2() -> Mallinfo2;
        }
        // SAFETY: `mallinfo2` has no preconditions; it reads the allocator's statistics.
        let info = unsafe { mallinfo2() };
        let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Some((bytes(info.uordblks + info.hblkhd), bytes(info.fordblks)))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
