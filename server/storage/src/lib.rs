//! The storage engine of a master: log-structured memory, hash table and two-level cleaner.
//!
//! Reading order: [`config`] (tunables) → [`format`] (bytes in the log) → [`arena`] (memory)
//! → [`segment`] → [`log`] → [`hashtable`] → [`engine`] (objects, the public API) →
//! [`cleaner`]. `docs/log-format.md` specifies the format; `docs/ARCHITECTURE.md` places the
//! engine in the system.
//!
//! The crate depends on one FaaSCache crate only, the sans-I/O protocol (`faascache_protocol`),
//! for the types the engine shares with the wire: the key hash, reject rules and the key and
//! value limits. That it knows nothing of masters, transports or clients is a compiler fact.

#![deny(unsafe_code)]

// The module of the engine allowed `unsafe`: mapping memory, copying in and out, prefetching. Its byte
// accessors are `unsafe fn`, called only from the few items of `segment` marked
// `#[allow(unsafe_code)]` (the one audited place, see `segment`'s docs).
#[allow(unsafe_code)]
pub mod arena;
pub mod cleaner;
pub mod config;
pub mod engine;
pub mod error;
pub mod format;
pub mod hashtable;
pub mod log;
pub mod segment;
mod sys;

pub use cleaner::{CleanReport, CleanerCounters, Want};
pub use config::{EngineConfig, DEFAULT_WARM_AHEAD_BYTES};
pub use engine::{
    check_rules, key_hash, Clock, CompletionLiveness, Engine, EngineStats, EnumeratedObject,
    Enumeration, LogSegment, ObjectStat, RejectRules, RemoveClean, Rpc, SystemClock, TableId,
    TableOptions, WriteOp, MAX_VERSION,
};
pub use error::{ConfigError, FormatError, ResizeError, StorageError};
pub use format::CompletionRecord;
