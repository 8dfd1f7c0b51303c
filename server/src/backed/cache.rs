//! The read path's state and vocabulary (a leaf module: the master holds [`Reads`]): what a
//! reader wants and is answered, the waiters of a fetch, the single-flight map and the
//! negative cache.

use std::collections::HashMap;

use faascache_protocol::msg::faas::{ObjectMeta, ReadObjectResponse};
use faascache_protocol::msg::master::ReadResponse;
use faascache_protocol::msg::{ErrorReply, Message};
use faascache_storage::{RejectRules, StorageError, TableId};
use faascache_transport::server::Responder;
use faascache_transport::Status;
use parking_lot::Mutex;

use super::registry::StoreFailure;
use crate::pool::WorkerPool;
/// Most negative-cache entries per master (beyond: expired ones are dropped, then any).
pub const NEGATIVE_MAX: usize = 65_536;
/// Most readers waiting for one key's fetch (beyond: `RETRY`).
pub const WAITERS_MAX: usize = 4_096;

/// What a reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The whole object (`Read`, `MultiRead`).
    Read,
    /// A piece (`ReadObject`).
    Piece {
        /// First byte.
        offset: u64,
        /// Most bytes.
        max_len: u32,
    },
}

/// The answer to one reader.
#[derive(Debug)]
pub enum Served {
    /// The object's bytes (all of them, or the piece asked for).
    Data {
        /// Version (0: passed through, not cached).
        version: u64,
        /// Length of the whole object.
        total_len: u64,
        /// Store metadata.
        meta: ObjectMeta,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A failure status with its version and detail.
    Fail(Status, u64, String),
    /// Not in the engine (or a chunk is missing): read through.
    Miss,
    /// A clean hit older than the table's revalidation time.
    Revalidate {
        /// Its version.
        version: u64,
        /// Its ETag.
        etag: String,
    },
}

impl Served {
    /// A failure reply from a storage error.
    pub fn storage(e: &StorageError) -> Served {
        let (s, v) = e.status();
        Served::Fail(s, v, e.to_string())
    }

    /// A store failure.
    pub fn store(f: &StoreFailure) -> Served {
        Served::Fail(f.status, 0, f.detail.clone())
    }

    /// The reply's status and payload for `want`.
    pub fn encode(&self, want: Want) -> (Status, Vec<u8>) {
        match self {
            Served::Data {
                version,
                total_len,
                meta,
                data,
            } => {
                let mut out = Vec::with_capacity(data.len() + 64);
                match want {
                    Want::Read => ReadResponse::encode_head(*version, data.len(), &mut out),
                    Want::Piece { .. } => ReadObjectResponse::encode_head(
                        *version,
                        *total_len,
                        meta,
                        data.len(),
                        &mut out,
                    ),
                }
                out.extend_from_slice(data);
                (Status::OK, out)
            }
            Served::Fail(s, version, detail) => (
                *s,
                ErrorReply {
                    version: *version,
                    detail,
                }
                .to_vec(),
            ),
            Served::Miss | Served::Revalidate { .. } => (
                Status::RETRY,
                ErrorReply {
                    version: 0,
                    detail: "the object was evicted while being read: retry",
                }
                .to_vec(),
            ),
        }
    }
}
/// A reader waiting for a fetch (`None`: a multi-read item that was answered `RETRY`).
#[derive(Debug)]
pub(crate) struct Waiter {
    pub responder: Option<Responder>,
    pub rules: RejectRules,
    pub want: Want,
}

/// What a fetch does.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Read through.
    Miss,
    /// Conditional GET of a clean copy at `version` with `etag`.
    Revalidate { version: u64, etag: String },
}

pub(crate) type FlightKey = (TableId, Vec<u8>);

/// The read path's state on a master.
#[derive(Debug)]
pub struct Reads {
    pool: WorkerPool,
    pub(crate) flights: Mutex<HashMap<FlightKey, Vec<Waiter>>>,
    negative: Mutex<HashMap<FlightKey, u64>>,
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            pool: WorkerPool::new("store-fetch", 8, 1024),
            flights: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
        }
    }
}

impl Reads {
    /// Whether `key` is known not to be in the store (at monotonic `now` ms).
    pub fn is_negative(&self, table: TableId, key: &[u8], now: u64) -> bool {
        let mut n = self.negative.lock();
        let k = (table, key.to_vec());
        match n.get(&k) {
            Some(&until) if until > now => true,
            Some(_) => {
                n.remove(&k);
                false
            }
            None => false,
        }
    }

    /// Remember that `key` is not in the store until `until` (monotonic ms).
    pub fn set_negative(&self, table: TableId, key: &[u8], now: u64, until: u64) {
        let mut n = self.negative.lock();
        if n.len() >= NEGATIVE_MAX {
            n.retain(|_, u| *u > now);
            if n.len() >= NEGATIVE_MAX {
                if let Some(k) = n.keys().next().cloned() {
                    n.remove(&k);
                }
            }
        }
        n.insert((table, key.to_vec()), until);
    }

    /// Forget negative entries of `table` whose key starts with `prefix` (or is `key`).
    pub fn clear_negative(&self, table: TableId, key: &[u8], prefix: bool) -> u64 {
        let mut n = self.negative.lock();
        let before = n.len();
        if prefix {
            n.retain(|(t, k), _| !(*t == table && k.starts_with(key)));
        } else {
            n.remove(&(table, key.to_vec()));
        }
        (before - n.len()) as u64
    }

    /// The `store-fetch` pool (fetches and prefix invalidations).
    pub(crate) fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// Keys being fetched (for tests and `status`).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().len()
    }
}
