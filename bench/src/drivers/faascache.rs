//! FaaSCache driver: not wired yet.
//!
//! The transport crate (`faascache_transport::connect(&locator, ClientConfig { poll, .. })`,
//! `Session::send -> PendingRpc`, `Session::call(Opcode::Echo, ..)`) and the client library are
//! being written. When they exist, this file becomes:
//!
//! ```text
//! struct FaasCacheDriver { locator, info }            // impl Driver
//! struct FaasCacheClient { session, pending: VecDeque<(OpKind, PendingRpc)> }  // impl Client
//!   send(Op::Echo{payload})  -> pending.push_back(session.send(Opcode::Echo, payload))
//!   send(Op::Get/Set/...)    -> the client library's async read/write (or opcodes directly)
//!   flush()                  -> no-op (or the session's doorbell)
//!   recv(deadline)           -> wait on pending.front() (spin if ClientConfig::poll is Busy)
//! server_pid()               -> from the locator's port via procinfo::pid_listening_on
//! ```
//! and `bench/Cargo.toml` gains `faascache-transport = { path = "../transport" }`.

use crate::driver::{Driver, DriverSpec};
use anyhow::Result;

/// Fails with an explanation until the FaaSCache client exists.
pub fn open(spec: &DriverSpec, _server_pid: Option<u32>) -> Result<Box<dyn Driver>> {
    anyhow::bail!(
        "FaaSCache driver is not available yet (asked for {}): the transport and client crates \
         are still being written; it will plug in at bench/src/drivers/faascache.rs. \
         Use --driver redis://HOST:PORT or --driver memcached://HOST:PORT for now.",
        spec.describe()
    )
}
