//! The master service: serves reads and writes of the tablets this server owns, on the storage
//! engine ([`crate::storage::Engine`]).
//!
//! Reading order: [`tablets`] (ownership and migration state) → [`exactly_once`] (saved
//! results of retried mutations) → [`service`] (the RPC handlers) → [`migration`] (copying a
//! tablet to another master).
//!
//! Every request checks ownership (table + key hash inside a served range) while holding the
//! ownership read lock, and runs on the dispatch core that received it (the engine's operations
//! are short); long work — dropping a table's data, migrating a tablet — is deferred to its own
//! thread. `NoSpace` from the engine becomes `RETRY` (the cleaner is freeing room).

pub mod exactly_once;
pub mod migration;
pub mod service;
pub mod tablets;

use std::sync::atomic::{AtomicU64, Ordering};

use faascache_transport::msg::ServerId;
use faascache_transport::Status;
use parking_lot::RwLock;

use crate::storage::{Engine, StorageError, TableId};
use exactly_once::UnackedResults;
use tablets::Ownership;

pub use service::MasterService;

/// What an acknowledged write survives today (shown by `GetServerInfo` / `status`).
pub const DURABILITY: &str =
    "memory only: an acknowledged write is lost if its master crashes (replication comes with the durability issue)";

/// One master: the engine, the ownership table and the exactly-once results.
#[derive(Debug)]
pub struct Master {
    /// The object store.
    pub engine: Engine,
    pub(crate) ownership: RwLock<Ownership>,
    pub(crate) results: UnackedResults,
    /// Serialises tablet-control steps (take, prepare, drop + delete).
    pub(crate) table_ops: parking_lot::Mutex<()>,
    server_id: AtomicU64,
    transport: String,
    poll: String,
}

impl Master {
    /// A master over `engine`; `transport` and `poll` are reported by `GetServerInfo`.
    pub fn new(engine: Engine, transport: &str, poll: &str) -> Master {
        Master {
            engine,
            ownership: RwLock::new(Ownership::default()),
            results: UnackedResults::default(),
            table_ops: parking_lot::Mutex::new(()),
            server_id: AtomicU64::new(0),
            transport: transport.to_string(),
            poll: poll.to_string(),
        }
    }

    /// This server's id (0 until enlisted).
    pub fn server_id(&self) -> ServerId {
        ServerId(self.server_id.load(Ordering::Relaxed))
    }

    /// Record the id the coordinator gave.
    pub fn set_server_id(&self, id: ServerId) {
        self.server_id.store(id.0, Ordering::Relaxed)
    }

    /// Number of served ranges.
    pub fn served_ranges(&self) -> usize {
        self.ownership.read().served_ranges()
    }
}

/// The engine's table id for a wire table id, or `None` if it cannot exist (≥ 2^32).
pub fn table_id(wire: u64) -> Option<TableId> {
    TableId::try_from(wire).ok()
}

/// The status (and current version) a storage error is answered with.
pub fn storage_status(e: &StorageError) -> (Status, u64) {
    match e {
        StorageError::UnknownTable(_) => (Status::UNKNOWN_TABLET, 0),
        StorageError::ObjectDoesntExist => (Status::OBJECT_DOESNT_EXIST, 0),
        StorageError::ObjectExists { version } => (Status::OBJECT_EXISTS, *version),
        StorageError::WrongVersion { current } => (Status::WRONG_VERSION, *current),
        StorageError::NoSpace => (Status::RETRY, 0),
        StorageError::EmptyKey
        | StorageError::KeyTooLarge { .. }
        | StorageError::ValueTooLarge { .. }
        | StorageError::NotANumber { .. }
        | StorageError::Overflow => (Status::REQUEST_FORMAT_ERROR, 0),
        StorageError::TableExists(_) => (Status::INTERNAL_ERROR, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faascache_transport::msg;

    #[test]
    fn wire_and_engine_agree() {
        // Clients place keys with the protocol's hash; masters store them with the engine's.
        for len in 0..300usize {
            let key: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            assert_eq!(msg::key_hash(&key), crate::storage::key_hash(&key));
        }
        assert_eq!(msg::MAX_KEY_LEN, crate::storage::config::MAX_KEY_LEN);
        assert_eq!(msg::MAX_VALUE_LEN, crate::storage::config::MAX_VALUE_LEN);
        assert_eq!(table_id(u32::MAX as u64), Some(u32::MAX));
        assert_eq!(table_id(1 << 32), None);
        assert_eq!(storage_status(&StorageError::NoSpace).0, Status::RETRY);
        assert_eq!(
            storage_status(&StorageError::WrongVersion { current: 4 }),
            (Status::WRONG_VERSION, 4)
        );
    }
}
