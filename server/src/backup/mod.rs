//! The backup service: keeps replicas of other masters' log segments (in memory, optionally in
//! files) and hands them to the coordinator and recovery masters when a master crashed
//! (RAMCloud's durability scheme; protocol in `docs/protocol.md`, "Backup", messages in
//! `faascache_protocol::msg::backup`).
//!
//! Reading order: [`file`] (the replica file format; `lock` the directory's lock file) → [`recovery`] (validation, digest,
//! filtering by tablet, the recovery master's parser) → [`store`] (the replicas, their locks,
//! fencing, capacity, the flusher) → [`service`] (the RPC handlers).
//!
//! Durability ([`Durability`]): `Memory` replies once the bytes are in this process's memory
//! (survives the crash of the *master*, not of this backup; with a directory a background
//! flusher writes replicas to files soon after, so a restarted backup finds most of them and
//! every closed one); `Disk` replies once the bytes and the header naming them are written and
//! `fdatasync`ed (survives power loss of this machine).
//!
//! Invariants: a replica is never larger than [`MAX_REPLICA_BYTES`] and no allocation is sized
//! by a length that was not checked against it; a replica is handed out for recovery only if it
//! validates under its certificate; a master fenced by `BackupGetReplicas` can never again
//! write to this backup until its recovery is complete (server ids are never reused). Fences
//! survive a restart when the backup has a directory ([`fences`]), and a backup's server learns
//! the masters awaiting recovery from the coordinator when it enlists. Threading: every method
//! may be called from any dispatch thread.

pub mod faults;
pub mod fences;
pub mod file;
mod frames;
mod lock;
pub mod recovery;
pub mod service;
pub mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use faascache_protocol::msg::backup::MAX_REPLICA_BYTES;
pub use recovery::{for_each_recovery_entry, RecoveryEntry};
pub use service::BackupService;
pub use store::Refusal;

/// How often the memory-mode flusher looks for replicas to write even if nobody woke it (it is
/// woken by every write; this only bounds the delay if a wake-up is missed).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Default capacity: replicas of 64 default-sized segments (512 MiB).
pub const DEFAULT_CAPACITY_BYTES: usize = 64 * MAX_REPLICA_BYTES;

/// What an acknowledged `BackupWrite` survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// In this process's memory (files written soon after, if there is a directory).
    #[default]
    Memory,
    /// Written to the replica's file and `fdatasync`ed (needs a directory).
    Disk,
}

impl Durability {
    /// `"memory"` or `"disk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Memory => "memory",
            Durability::Disk => "disk",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--durability` value that is neither `memory` nor `disk`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown durability `{0}`: use `memory` (reply once buffered in RAM) or `disk` (reply once fdatasync'ed; needs a backup directory)")]
pub struct UnknownDurability(pub String);

impl std::str::FromStr for Durability {
    type Err = UnknownDurability;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" => Ok(Durability::Memory),
            "disk" => Ok(Durability::Disk),
            _ => Err(UnknownDurability(s.to_string())),
        }
    }
}

/// Configuration of a backup service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// Directory of the replica files (`--backup-dir`); `None` keeps replicas in memory only.
    pub dir: Option<PathBuf>,
    /// When a write is acknowledged.
    pub durability: Durability,
    /// Bytes of replicas this backup accepts. An open replica reserves the capacity declared in
    /// its segment header (at most [`MAX_REPLICA_BYTES`]; all of it until that header arrived),
    /// a closed one its length. An `OPEN` that does not fit is answered `RETRY`.
    pub capacity_bytes: usize,
    /// Bytes of full-size replica frames kept faulted in ahead of use (see `frames.rs`); the
    /// server passes `min(--warm-ahead, 64 MiB)`. 0: replicas allocate on their first write.
    pub warm_bytes: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            durability: Durability::Memory,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            warm_bytes: 0,
        }
    }
}

/// Why a backup service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The configuration cannot work.
    #[error("invalid backup configuration: {0}")]
    Config(String),
    /// A file-system operation on the backup directory failed.
    #[error("backup directory: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The saved fence set cannot be read.
    #[error("backup directory: {0}")]
    Fences(#[from] fences::FenceFileError),
    /// Another running process uses the directory.
    #[error(
        "backup directory {path} is in use by running process {pid}: give each backup its own \
         directory (or stop that process)"
    )]
    Locked {
        /// The directory.
        path: String,
        /// The process holding it.
        pid: u32,
    },
}

/// What a backup holds (for `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStats {
    /// Replicas held.
    pub replicas: usize,
    /// Bytes of replica data held.
    pub bytes: u64,
    /// Distinct masters with replicas here.
    pub masters: usize,
    /// When writes are acknowledged.
    pub durability: Durability,
    /// The replica directory, if any.
    pub dir: Option<PathBuf>,
    /// Configured capacity.
    pub capacity_bytes: usize,
    /// Capacity reserved by the replicas held (see [`BackupConfig::capacity_bytes`]).
    pub reserved_bytes: u64,
    /// The last failed replica-file write (disk full, read-only, I/O error), until a write
    /// works again.
    pub disk_error: Option<String>,
}
