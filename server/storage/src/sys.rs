//! Small system services the engine needs, through `rustix` (no `unsafe` here).

/// Wall-clock seconds since the Unix epoch from `CLOCK_REALTIME_COARSE` (updated once per
/// kernel tick; read from the vDSO without a system call).
pub fn coarse_unix_seconds() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    if ts.tv_sec > 0 {
        ts.tv_sec as u64
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}
