//! Cache hints for the replay's hot loop.

/// Asks for the cache line holding `p`. A hint only: it never faults, whatever the address.
#[inline(always)]
pub(crate) fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, even on an invalid address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the cache lines of `*x` (all of them, for values wider than one line).
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    let p = (x as *const T).cast::<u8>();
    let mut off = 0;
    while off < std::mem::size_of::<T>().max(1) {
        prefetch_ptr(p.wrapping_add(off));
        off += 64;
    }
}
