//! What FaaSCache's tests share. Dev-only: no shipped crate depends on it.
//!
//! * [`inproc`] — a coordinator and masters in this process, over TCP on 127.0.0.1;
//! * [`zk`] — a private ZooKeeper server (Debian's package) for the coordinator HA tests;
//! * [`wait`] — [`eventually`] and [`continually`] instead of fixed sleeps;
//! * [`require`] — SKIP a test whose outside dependency is missing, or fail it when
//!   `FAASCACHE_REQUIRE` names that dependency;
//! * [`tempdir`] — temporary directories (`tempfile`).

#![forbid(unsafe_code)]

pub mod inproc;
pub mod require;
pub mod wait;
pub mod zk;

pub use require::{require_or_skip, skip_or_fail};
pub use wait::{check, continually, eventually};

/// A fresh temporary directory (removed when dropped), named `faascache-{tag}-XXXXXX`.
pub fn tempdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("faascache-{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e} (check $TMPDIR)"))
}
