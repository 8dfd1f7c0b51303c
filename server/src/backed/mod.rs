//! Tables backed by an object store (issue 16, `docs/faas.md`): the master side of the FaaS
//! cache. A backed table's objects are stored in the engine as [`envelope`]s (the store's
//! metadata with the bytes); a miss reads through from the store, a write is uploaded later
//! (write-back), at once (write-through) or never (ephemeral).
//!
//! Reading order: [`envelope`] (the stored value) → [`counters`] (what `status` shows).

pub mod counters;
pub mod envelope;
pub mod flush;
pub mod upload;
pub mod writeback;

pub use counters::Counters;
