//! FaaSCache server: the storage engine today; master, backup, coordinator and dispatch as
//! they are built (see `docs/ARCHITECTURE.md`).

#![deny(unsafe_code)]

pub mod backup;
pub mod coordinator;
pub mod master;
pub mod node;
pub mod storage;
pub mod units;
