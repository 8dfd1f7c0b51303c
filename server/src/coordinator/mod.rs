//! The coordinator: server list, tables and the tablet map, kept in external storage.
//!
//! Reading order: [`state`] (the sans-I/O state machine and its persisted encoding) →
//! [`external`] (the `ExternalStorage` trait and the `file:DIR` backend) → [`zk_storage`] (the
//! `zk:` backend: standbys, leader election, epoch fencing) → [`service`] (the RPC
//! shell: threads, persistence order, control RPCs to masters, migration driving).
//!
//! What survives a coordinator restart: everything in [`state::CoordinatorState::encode`] —
//! server list, tables, tablets, table-id and client-id counters. Masters keep serving while the
//! coordinator is down (clients with a cached tablet map are unaffected) and their heartbeats
//! resume when it is back; a master the restarted coordinator does not know enlists again.

pub mod external;
pub mod recovery;
pub mod service;
pub mod state;
pub mod zk_storage;

pub use external::{ExternalStorage, ExternalStorageError, FileStorage, MemStorage};
pub use service::{start, CoordinatorConfig, CoordinatorHandle};
pub use state::{CoordError, CoordinatorState};
pub use zk_storage::ZkStorage;
