//! Disk faults for tests, injected into the replica files' I/O ([`super::file`]): a delay before
//! every `fsync` (a slow disk) or an error on every replica write (a full, read-only or failing
//! disk). Off unless the environment variable [`FAULTS_ENV`] names them; it is read once, the
//! first time a backup touches a replica file, so a test sets it on the server process it starts.
//!
//! Format: comma-separated `fsync_delay_ms=N` and `error=enospc|erofs|eio`, e.g.
//! `FAASCACHE_TEST_DISK_FAULTS=fsync_delay_ms=5000`. An unknown item is logged and ignored.

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that turns faults on.
pub const FAULTS_ENV: &str = "FAASCACHE_TEST_DISK_FAULTS";

/// The faults in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// Sleep this long before every `fsync` of a replica file or directory.
    pub fsync_delay: Duration,
    /// Fail every replica write with this OS error number.
    pub error: Option<i32>,
}

/// `ENOSPC`, `EROFS`, `EIO` (Linux numbers).
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;
const EIO: i32 = 5;

impl DiskFaults {
    /// Parse the [`FAULTS_ENV`] format.
    pub fn parse(s: &str) -> DiskFaults {
        let mut f = DiskFaults::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some(("fsync_delay_ms", ms)) if ms.parse::<u64>().is_ok() => {
                    f.fsync_delay = Duration::from_millis(ms.parse().unwrap_or(0));
                }
                Some(("error", "enospc")) => f.error = Some(ENOSPC),
                Some(("error", "erofs")) => f.error = Some(EROFS),
                Some(("error", "eio")) => f.error = Some(EIO),
                _ => tracing::warn!(item, "unknown item in {FAULTS_ENV}; ignored (use fsync_delay_ms=N or error=enospc|erofs|eio)"),
            }
        }
        f
    }
}

/// The faults of this process (read from the environment once).
pub fn get() -> DiskFaults {
    static FAULTS: OnceLock<DiskFaults> = OnceLock::new();
    *FAULTS.get_or_init(|| {
        let f = std::env::var(FAULTS_ENV)
            .map(|s| DiskFaults::parse(&s))
            .unwrap_or_default();
        if f != DiskFaults::default() {
            tracing::warn!(faults = ?f, "disk faults injected into the backup's replica files ({FAULTS_ENV}): for tests only");
        }
        f
    })
}

/// Called before an `fsync`: sleeps the injected delay.
pub fn before_sync() {
    let d = get().fsync_delay;
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}

/// Called before a replica write: the injected error, if any.
pub fn before_write() -> std::io::Result<()> {
    match get().error {
        Some(errno) => Err(std::io::Error::from_raw_os_error(errno)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_items() {
        let f = DiskFaults::parse("fsync_delay_ms=5000, error=erofs, bogus");
        assert_eq!(f.fsync_delay, Duration::from_secs(5));
        assert_eq!(f.error, Some(EROFS));
        assert_eq!(DiskFaults::parse(""), DiskFaults::default());
    }
}
