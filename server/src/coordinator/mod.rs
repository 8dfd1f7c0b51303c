//! The coordinator: server list, tables and the tablet map, kept in external storage.
//!
//! Reading order: [`state`] (the sans-I/O state machine and its persisted encoding) →
//! [`external`] (the `ExternalStorage` trait and the `file:DIR` backend) → [`zk_storage`] (the
//! `zk:` backend: standbys, leader election, epoch fencing) → [`cluster_io`] (the operations
//! crash recovery needs, as a trait) → [`recovery`] (crash recovery over that trait) →
//! [`service`] (the RPC shell: threads, persistence order, control RPCs to masters, migration
//! driving; it implements `ClusterIo` and runs the recovery loop).
//!
//! Module dependencies form a DAG: `state` and `external` are leaves; `zk_storage` → `external`;
//! `cluster_io` → `state`, `external`; `recovery` → `cluster_io`, `state`; `service` →
//! `cluster_io`, `external`, `recovery`, `state`. The backend choice ([`open_storage`]) is here,
//! above both backends.
//!
//! What survives a coordinator restart: everything in [`state::CoordinatorState::encode`] —
//! server list, tables, tablets, table-id and client-id counters. Masters keep serving while the
//! coordinator is down (clients with a cached tablet map are unaffected) and their heartbeats
//! resume when it is back; a master the restarted coordinator does not know enlists again.

pub mod clock;
pub mod cluster_io;
pub mod external;
pub mod leases;
pub mod persister;
pub mod recovery;
pub mod service;
pub mod state;
pub mod zk_storage;

pub use cluster_io::{ClusterIo, ControlSendError, TransitionError};
pub use external::{ExternalStorage, ExternalStorageError, FileStorage, MemStorage};
pub use service::{start, CoordinatorConfig, CoordinatorHandle};
pub use state::{CoordError, CoordinatorState, InvariantError, StateDecodeError};
pub use zk_storage::ZkStorage;

/// Open the backend a `--storage` argument names: `file:DIR` ([`FileStorage`]) or
/// `zk:HOST:PORT[,HOST:PORT...][/CHROOT]` ([`ZkStorage`], which blocks in
/// `acquire_leadership` while another coordinator leads). Here, above both backends, so that
/// `external` (the trait) stays a leaf that `zk_storage` builds on.
pub fn open_storage(locator: &str) -> Result<Box<dyn ExternalStorage>, ExternalStorageError> {
    match locator.split_once(':') {
        Some(("file", dir)) if !dir.is_empty() => Ok(Box::new(FileStorage::open(dir)?)),
        Some(("zk", _)) => Ok(Box::new(ZkStorage::open(locator)?)),
        _ => Err(ExternalStorageError::BadLocator(locator.to_string())),
    }
}
