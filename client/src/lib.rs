//! The FaaSCache client: tables, reads, writes, conditional and multi-object operations and
//! enumeration against a FaaSCache cluster, plus (feature `cli`, off by default) the client
//! subcommands of the `faascache` binary.
//!
//! ```no_run
//! use faascache_client::{Client, Error, RejectRules, WriteItem, WriteOptions};
//!
//! let client = Client::connect("tcp:host=127.0.0.1,port=12246")?;
//! let users = client.create_table("users", 2)?;            // spread over 2 masters
//! let v = client.write(users, b"alice", b"{\"age\":42}")?;
//! let o = client.read(users, b"alice")?;
//! assert_eq!(o.version, v);
//!
//! // Compare-and-swap: only if nobody wrote since our read.
//! let cas = WriteOptions::default().reject(RejectRules::version_is(o.version));
//! match client.write_with(users, b"alice", b"{\"age\":43}", &cas) {
//!     Ok(_) | Err(Error::VersionMismatch { .. }) => {}
//!     Err(e) => return Err(e),
//! }
//!
//! // Many objects at once: grouped by master, sent in parallel.
//! client.multi_write(&[WriteItem::new(users, b"bob", b"1"), WriteItem::new(users, b"eve", b"2")]);
//! let n = client.enumerate(users).count();
//! # Ok::<(), faascache_client::Error>(())
//! ```
//!
//! Reading order: [`error`] (what can go wrong), [`options`], [`tablets`] (the tablet-map
//! cache), [`retry`] (back-off), `client.rs` ([`Client`]: sessions, coordinator calls,
//! exactly-once ids, retries), [`lease`] (the client lease: acquire, renew, release), `ops.rs` (single-object operations), `multi.rs`,
//! `enumerate.rs`, `pending.rs` (pipelining), `cli.rs`.
//!
//! Exactly-once: writes, removes and increments are *tracked* by default — the client takes a
//! lease from the coordinator on its first mutation (renewed in the background, released when
//! the last clone drops; see [`lease`]) and a retried mutation runs at most once.
//! [`ClientOptions::tracked`]`(false)` sends them untracked (no lease; at most once per send).
//!
//! Threading: a [`Client`] is `Clone + Send + Sync`; clones share sessions and caches. Calls
//! block the calling thread (the transport is caller-driven: the waiting thread reads the
//! socket itself); many threads may call at once, and their RPCs to one master share that
//! master's session.

#![forbid(unsafe_code)]

mod admin;
pub mod backed;
mod backed_object;
mod cache_stats;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod enumerate;
pub mod error;
pub mod lease;
mod lease_state;
mod multi;
mod object_writer;
mod ops;
pub mod options;
mod pending;
pub mod retry;
pub mod tablets;

pub use admin::{DrainReport, ResizeReport};
pub use backed::{ObjectInfo, ObjectPiece};
pub use cache_stats::CacheStats;
pub use client::{Client, Object, ServerInfo, ServerStats, TableInfo};
pub use enumerate::{Entry, Enumerate, EnumeratePage};
pub use error::{Error, Result, TableId};
pub use faascache_protocol::msg::faas::{
    FlushResponse, InvalidateResponse, ObjectMeta, TableBacking, WritePolicy,
};
pub use multi::WriteItem;
pub use object_writer::ObjectWriter;
pub use options::{ClientOptions, ReadOptions, RejectRules, WriteOptions};
pub use pending::Pending;
pub use retry::Backoff;
pub use tablets::{Tablet, TabletMap, TabletMapError};

/// The transport crate this client runs on (sessions, locators, polling modes, opcodes), for
/// callers that pipeline raw RPCs or tune the transport.
///
/// ```
/// let mode = faascache_client::transport::PollMode::Spin;
/// # let _ = mode;
/// ```
pub use faascache_transport as transport;

/// The hash that places a key in a tablet (XXH3-64, seed 0; the same on every client and
/// master).
///
/// ```
/// assert_eq!(faascache_client::key_hash(b"a"), faascache_client::key_hash(b"a"));
/// ```
pub fn key_hash(key: &[u8]) -> u64 {
    faascache_protocol::msg::key_hash(key)
}

// Handles shared across threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
};
