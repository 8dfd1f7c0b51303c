//! Tables backed by an object store (issue 16, `docs/faas.md`): the master side of the FaaS
//! cache. A backed table's objects are stored in the engine as [`envelope`]s (the store's
//! metadata with the bytes); a miss reads through from the store, a write is uploaded later
//! (write-back), at once (write-through) or never (ephemeral).
//!
//! Reading order: [`registry`] (which tables are backed, their stores) → [`envelope`] (the
//! stored value) → [`read`] (hits from the engine) → [`flight`] (single flight) → [`fill`]
//! (fetches from the store, chunks, admission) → [`write`] and [`upload`] (write-back) →
//! [`chunked`] (large objects written by clients) → [`invalidate`] → [`ttl`] (ephemeral
//! objects' TTL) → [`requeue`] (after recovery and migration) → [`rpc`] (the handlers) →
//! [`counters`] (what `status` shows).

pub mod cache;
pub mod checks;
pub mod chunked;
pub mod counters;
pub mod envelope;
pub mod fill;
pub mod flight;
pub mod flush;
pub mod invalidate;
pub mod pending;
pub mod read;
pub mod registry;
pub mod requeue;
pub mod rpc;
pub mod ttl;
pub mod upload;
pub mod write;
pub mod writeback;

pub use counters::Counters;
pub use registry::{BackedTable, BackedTables, StoreFailure};
