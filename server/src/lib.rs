//! FaaSCache's servers as a library: the master service (data operations over the storage
//! engine, exactly-once results, replication, migration, recovery replay), the backup service,
//! the coordinator (server list, tables, tablet map, crash recovery, external storage on files or
//! ZooKeeper) and the node that puts them on one transport. No command-line code: the `faascache`
//! binary (`server/faascache`) parses flags and calls [`node::start`] and [`coordinator::start`].
//! See `docs/ARCHITECTURE.md`.

#![deny(unsafe_code)]

pub mod backed;
pub mod backup;
pub mod coordinator;
pub mod master;
pub mod node;
pub mod pool;
