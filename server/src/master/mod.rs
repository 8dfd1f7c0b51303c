//! The master service: serves reads and writes of the tablets this server owns, on the storage
//! engine ([`faascache_storage::Engine`]).
//!
//! Reading order: [`tablets`] (ownership and migration state) → [`exactly_once`] (saved
//! results of retried mutations) → [`service`] (the RPC handlers) → [`migration`] (copying a
//! tablet to another master).
//!
//! Every request checks ownership (table + key hash inside a served range) while holding the
//! ownership read lock, and runs on the dispatch core that received it (the engine's operations
//! are short); long work — dropping a table's data, migrating a tablet — is deferred to its own
//! thread. `NoSpace` from the engine becomes `RETRY` (the cleaner is freeing room).

pub mod client_leases;
pub mod elastic;
pub mod exactly_once;
pub mod faults;
pub mod lease;
pub mod migration;
pub mod recovery;
pub mod replication;
pub mod replicator;
pub mod service;
mod service_backed;
pub mod tablets;

use std::sync::atomic::{AtomicU64, Ordering};

use faascache_protocol::msg::ServerId;
use faascache_transport::Status;
use parking_lot::RwLock;

use exactly_once::UnackedResults;
use faascache_storage::{Engine, StorageError, TableId};
use tablets::Ownership;

pub use service::MasterService;

/// What an acknowledged write survives without replication (shown by `status`).
pub const DURABILITY: &str =
    "memory only (--replicas 0): an acknowledged write is lost if its master crashes";

/// The write-back limit of a master built without one (tests): 64 MiB.
pub const DEFAULT_WRITE_BACK_LIMIT: u64 = 64 << 20;

/// The master's worker pools (threads are started as work arrives).
#[derive(Debug)]
pub(crate) struct Pools {
    /// Tablet-control steps (serialised by `table_ops` anyway: one worker).
    pub control: crate::pool::WorkerPool,
    /// Migrations out of this master.
    pub migrate: crate::pool::WorkerPool,
    /// Recoveries of a crashed master's tablets onto this one.
    pub recovery: crate::pool::WorkerPool,
    /// Memory resizes (`ResizeMemory`): one at a time, a few waiting.
    pub resize: crate::pool::WorkerPool,
}

impl Default for Pools {
    fn default() -> Self {
        use crate::pool::WorkerPool;
        Pools {
            control: WorkerPool::new("control", 1, 256),
            migrate: WorkerPool::new("migrate", 1, 4),
            recovery: WorkerPool::new("recovery", 2, 16),
            resize: WorkerPool::new("resize", 1, 4),
        }
    }
}

/// One master: the engine, the ownership table and the exactly-once results.
#[derive(Debug)]
pub struct Master {
    /// The object store.
    pub engine: Engine,
    pub(crate) ownership: RwLock<Ownership>,
    /// Exactly-once results (shared with the engine's test of which completion records live).
    pub(crate) results: std::sync::Arc<UnackedResults>,
    /// Serialises tablet-control steps (take, prepare, drop + delete).
    pub(crate) table_ops: parking_lot::Mutex<()>,
    /// Workers for tablet-control steps, migrations out and recoveries (bounded: a request
    /// beyond them is answered RETRY).
    pub(crate) pools: Pools,
    /// Segment replication to backups.
    pub replication: replicator::Replication,
    /// This server's backup service (for `status`).
    backup: std::sync::OnceLock<std::sync::Arc<crate::backup::BackupService>>,
    server_id: AtomicU64,
    /// Cluster time (ms) as last heard from the coordinator (heartbeat replies, lease checks)
    /// or seen in a client lease's timestamp: a lower bound of the coordinator's clock.
    cluster_time: AtomicU64,
    /// The master's own clock's origin (for [`Master::now_ms`]).
    started: std::time::Instant,
    /// The master lease ([`lease`]): renewed by the node's heartbeats, checked by every read
    /// and mutation ([`Master::check_serving`]).
    pub lease: lease::MasterLease,
    /// Transport serving clients and why it was chosen (set once serving).
    transport: parking_lot::Mutex<(String, String)>,
    poll: String,
    /// Which tables are backed by an object store, and their stores (issue 16).
    pub backed: crate::backed::BackedTables,
    /// The backed tables' counters (`status`).
    pub counters: crate::backed::Counters,
    /// The backed tables' read path: fetch pool, single flight, negative cache.
    pub reads: crate::backed::cache::Reads,
    /// The backed tables' write-back queue and worker (issue 16).
    pub writeback: crate::backed::upload::WriteBack,
    /// Large writes whose chunks are not settled yet (`backed::chunked`).
    pub chunked: crate::backed::pending::Pending,
    /// The write-back limit is a quarter of the memory budget and follows resizes.
    write_back_follows_memory: std::sync::atomic::AtomicBool,
    /// When the coordinator told this server to retire (`RetireServer`, after a drain).
    retiring: std::sync::OnceLock<std::time::Instant>,
}

impl replicator::ReplicationHost for Master {
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn replication(&self) -> &replicator::Replication {
        &self.replication
    }
    fn server_id(&self) -> ServerId {
        Master::server_id(self)
    }
    fn may_acknowledge(&self) -> Result<(), &'static str> {
        self.check_serving()
    }
}

impl Master {
    /// A master over `engine`; `transport` and `poll` are reported by `GetServerInfo`.
    pub fn new(engine: Engine, transport: &str, poll: &str) -> Master {
        let results = std::sync::Arc::new(UnackedResults::default());
        let r2 = results.clone();
        engine.set_completion_liveness(std::sync::Arc::new(move |c| r2.is_live(c)));
        Master {
            engine,
            ownership: RwLock::new(Ownership::default()),
            results,
            table_ops: parking_lot::Mutex::new(()),
            pools: Pools::default(),
            replication: replicator::Replication::new(0),
            backup: std::sync::OnceLock::new(),
            server_id: AtomicU64::new(0),
            cluster_time: AtomicU64::new(0),
            started: std::time::Instant::now(),
            lease: lease::MasterLease::default(),
            transport: parking_lot::Mutex::new((transport.to_string(), "first choice".into())),
            poll: poll.to_string(),
            backed: crate::backed::BackedTables::default(),
            counters: crate::backed::Counters::default(),
            reads: crate::backed::cache::Reads::default(),
            writeback: crate::backed::upload::WriteBack::new(DEFAULT_WRITE_BACK_LIMIT),
            chunked: crate::backed::pending::Pending::default(),
            write_back_follows_memory: std::sync::atomic::AtomicBool::new(false),
            retiring: std::sync::OnceLock::new(),
        }
    }

    /// Limit the dirty bytes of write-back tables on this master (`--write-back-limit`).
    pub fn with_write_back_limit(mut self, limit: u64) -> Master {
        self.writeback = crate::backed::upload::WriteBack::new(limit);
        self
    }

    /// Learn tables' backings (and open their stores) with `backed`.
    pub fn with_backed(mut self, backed: crate::backed::BackedTables) -> Master {
        self.backed = backed;
        self
    }

    /// Make sure the engine has `table`, learning first whether it is backed (a backed table is
    /// evictable: its clean objects are a cache of the store). Runs on a control or recovery
    /// thread, before a range of the table is served.
    pub(crate) fn prepare_table(
        &self,
        table: TableId,
    ) -> Result<(), crate::backed::registry::ConfigError> {
        let evictable = self.backed.learn(table)?.is_some();
        match self
            .engine
            .create_table(table, faascache_storage::TableOptions { evictable })
        {
            Ok(()) => {}
            Err(StorageError::TableExists(_)) if evictable => {
                if let Err(e) = self.engine.set_evictable(table, true) {
                    tracing::error!(table, error = %e, "cannot make a backed table evictable");
                }
            }
            Err(StorageError::TableExists(_)) => {}
            Err(e) => tracing::error!(table, error = %e, "cannot create table"),
        }
        Ok(())
    }

    /// Keep `replicas` backup copies of every segment (start the thread with
    /// [`replicator::start`] once the server id is known).
    pub fn with_replicas(mut self, replicas: usize) -> Master {
        self.replication = replicator::Replication::new(replicas);
        self
    }

    /// Record the transport the server ended up serving on, and why (shown by `status`).
    pub fn set_transport(&self, kind: &str, reason: &str) {
        // GetServerInfo carries at most 4 KiB of it.
        let mut reason = reason.to_string();
        if reason.len() > 4000 {
            let mut cut = 4000;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push_str(" ...");
        }
        *self.transport.lock() = (kind.to_string(), reason);
    }

    /// Record this server's backup service (shown by `status`).
    pub fn set_backup(&self, b: std::sync::Arc<crate::backup::BackupService>) {
        let _ = self.backup.set(b);
    }

    /// What an acknowledged write survives, and what this server's backup holds, for `status`.
    pub fn durability(&self) -> String {
        let master = match self.replication.replicas() {
            0 => DURABILITY.to_string(),
            r => format!(
                "replicas {r}: an acknowledged write is in DRAM here and on {r} backups of other servers (while fewer are up: on every one, at least one; see replication), so it survives the crash of this master and of up to {} of those backups, and — where those backups use --durability disk — their restart",
                r - 1,
            ),
        };
        match self.backup.get() {
            None => format!("{master}; backup: none (--no-backup)"),
            Some(b) => {
                let st = b.stats();
                let what = match st.durability {
                    crate::backup::Durability::Disk => "acknowledged once fdatasync'ed: replicas here survive this process's crash and a power loss",
                    crate::backup::Durability::Memory if st.dir.is_some() => "acknowledged once in RAM, written to files soon after: replicas here survive a crash of this process only if already flushed",
                    crate::backup::Durability::Memory => "acknowledged once in RAM: replicas here are lost if this process dies",
                };
                format!(
                    "{master}; backup: durability {} ({what}), {} replicas of {} masters, {} MiB{}{}",
                    st.durability,
                    st.replicas,
                    st.masters,
                    st.bytes >> 20,
                    st.dir
                        .map(|d| format!(" in {}", d.display()))
                        .unwrap_or_default(),
                    st.disk_error
                        .map(|e| format!("; DISK ERROR: {e}"))
                        .unwrap_or_default()
                )
            }
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

    /// The cluster time (ms) this master knows: a lower bound of the coordinator's.
    pub fn cluster_time(&self) -> u64 {
        self.cluster_time.load(Ordering::Acquire)
    }

    /// Milliseconds on this master's monotonic clock (since it started).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Learn a cluster time from the coordinator (or a lease it granted); it only moves forward.
    pub fn observe_cluster_time(&self, t: u64) {
        self.cluster_time.fetch_max(t, Ordering::AcqRel);
    }

    /// Whether this master may serve its tablets now: `Err` with the reason when its master
    /// lease has run out (it has not heard from the coordinator in time), so that a master
    /// cut off from the cluster never answers from data recovered elsewhere.
    #[inline]
    pub(crate) fn check_serving(&self) -> Result<(), &'static str> {
        self.lease.check()
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
    e.status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(table_id(u32::MAX as u64), Some(u32::MAX));
        assert_eq!(table_id(1 << 32), None);
        assert_eq!(storage_status(&StorageError::NoSpace).0, Status::RETRY);
        assert_eq!(
            storage_status(&StorageError::WrongVersion { current: 4 }),
            (Status::WRONG_VERSION, 4)
        );
    }
}
