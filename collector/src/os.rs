//! What the collector asks of the operating system beyond plain I/O: memory and scheduling
//! settings that measured faster on the machines it runs on. Elsewhere than Linux these do
//! nothing.

/// Turns off transparent huge pages for this process. Identity resolution grows its graph a
/// little at a time; with huge pages the kernel zeroes 2 MB on each first touch, which measured
/// here cost about a third of the resolution rate (`cargo xtask bench identity`: 190k/s with
/// them, 303k/s without). The `seam` binary and the benchmarks call this first thing.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no Rust memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Lowers the calling thread's CPU priority (nice 10). For the store's threads off the
/// acknowledgement path (indexer, checkpointer): when the two cores are busy, requests and the
/// log writer go first, and the lag behind them is bounded elsewhere. Identity's thread keeps
/// the usual priority: lowered, it fell behind in bursts at 4 connections and each time
/// replayed from the store, which cost more than it saved.
pub(crate) fn lower_thread_priority() {
    if !set_thread_nice(10) {
        tracing::debug!("Could not lower a background thread's priority.");
    }
}

/// Raises the calling thread's CPU priority (nice -5), for the log writer: every
/// acknowledgement waits for it, so when its `fdatasync` returns it should not wait for a core
/// behind request handling. `cargo xtask bench ingest`, five alternating runs each: p99 at 4
/// connections 4.27 ms (4.01–4.38) against 4.70 ms (4.58–4.82) at the usual priority, with
/// half as many group commits over 5 ms; at 64 connections p99 32.3 ms against 31.1 ms, the
/// writer then taking cores from request handling while it builds large groups. Raising a
/// priority needs `CAP_SYS_NICE` (or a `RLIMIT_NICE` of 25); without it the writer keeps the
/// usual priority and start-up says so.
pub(crate) fn raise_thread_priority() {
    if !set_thread_nice(-5) {
        tracing::info!(
            "The log writer runs at the usual CPU priority: raising it needs CAP_SYS_NICE (or RLIMIT_NICE 25); with it, acknowledgements wait less for a core under load."
        );
    }
}

/// Starts writing back `file`'s dirty pages without waiting for them (Linux's
/// `sync_file_range` with `SYNC_FILE_RANGE_WRITE`). Called every few milliseconds for the
/// SQLite files, so their data reaches the disk a little at a time instead of all at once
/// when SQLite syncs: a log `fdatasync` issued during such a burst waits for all of it.
pub(crate) fn start_writeback(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain integer arguments; the descriptor is open for the borrow's length.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Sets the calling thread's nice value; whether that was allowed.
fn set_thread_nice(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read their integer arguments; on Linux a thread
        // ID given to PRIO_PROCESS names that one thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Tells the kernel that bytes `from..to` of `file`, synced, will not be read soon, so their
/// page-cache pages are freed now. The log's writer frees what it has synced (see
/// `LogWriter::append`), a replay what it has read; a failure only leaves the pages cached.
pub(crate) fn drop_cached(file: &std::fs::File, from: u64, to: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from)))
        else {
            return;
        };
        // SAFETY: posix_fadvise reads its integer arguments; the descriptor is open for the
        // borrow of `file`.
        let result = unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED)
        };
        if result != 0 {
            tracing::debug!(
                errno = result,
                "Could not drop synced log pages from the page cache."
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, to);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn own_nice() -> i32 {
        // SAFETY: as in `set_thread_nice`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn a_priority_is_set_for_the_calling_thread_alone() {
        let before = own_nice();
        let (set, inside) =
            std::thread::spawn(move || (super::set_thread_nice(before + 3), own_nice()))
                .join()
                .expect("thread");
        assert!(set, "raising a nice value needs no privilege");
        assert_eq!(inside, before + 3);
        assert_eq!(
            own_nice(),
            before,
            "the rest of the process keeps its priority"
        );
    }
}
