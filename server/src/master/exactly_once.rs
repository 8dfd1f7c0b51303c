//! Exactly-once mutations: the results of tracked writes, removes and increments, kept until
//! the client acknowledges them (RAMCloud's `UnackedRpcResults`).
//!
//! A tracked mutation carries (client id ≠ 0, rpc id, ack id). Before running it the master
//! calls [`UnackedResults::begin`]:
//! * first time → [`Begin::Run`]: the rpc id is marked *in progress*; after running, the master
//!   calls [`UnackedResults::finish`] with the reply to keep (or [`UnackedResults::abandon`] if
//!   the mutation did not run — `RETRY`, `UNKNOWN_TABLET` — so a retry runs it);
//! * a retry of a finished rpc → [`Begin::Done`] with the saved reply (nothing runs again);
//! * a retry while the first attempt still runs (another dispatch core) → [`Begin::InProgress`]
//!   (answer `RETRY`);
//! * an rpc id at or below the client's ack id → [`Begin::Stale`] (its reply was already
//!   delivered; the client must not send it again);
//! * more than [`MAX_RESULTS_PER_CLIENT`] unacknowledged results of one client, or
//!   [`MAX_RESULTS_TOTAL`] overall → [`Begin::Full`] (answer `RETRY`: the client's next requests
//!   carry a higher ack id and free room).
//!
//! Every request's ack id first discards that client's results with rpc id ≤ ack id.
//!
//! Memory: a saved result costs about 80 bytes (map entry + the reply bytes, ≤ 17 bytes for the
//! single-object mutations), so the totals below bound this table to ~21 MiB. The records live in
//! memory only: they do not survive a crash of this master (durability of these records comes
//! with the durability issue) and are not moved by tablet migration.
//!
//! Threads: any dispatch thread; 16 mutex shards by client id.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use faascache_transport::Status;
use parking_lot::Mutex;

/// Most unacknowledged results kept per client: a client may have this many tracked
/// mutations outstanding (RAMCloud's clients keep far fewer).
pub const MAX_RESULTS_PER_CLIENT: usize = 4096;
/// Most unacknowledged results kept in total (≈ 21 MiB at ~80 B each).
pub const MAX_RESULTS_TOTAL: usize = 262_144;

const SHARDS: usize = 16;

/// A reply kept for retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedReply {
    /// Status.
    pub status: Status,
    /// The object's version the reply states (the new version on `OK`; the current one, or 0,
    /// in an error reply), kept typed so a multi-op item needs no re-parse of `payload`.
    pub version: u64,
    /// Payload.
    pub payload: Vec<u8>,
}

/// What to do with a tracked mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run it (then `finish` or `abandon`).
    Run,
    /// Already done: send this reply again.
    Done(SavedReply),
    /// The first attempt is still running.
    InProgress,
    /// The rpc id is at or below the ack id.
    Stale,
    /// Too many unacknowledged results.
    Full,
}

#[derive(Debug, Default)]
struct ClientRecord {
    acked: u64,
    results: BTreeMap<u64, Option<SavedReply>>,
}

/// The table of unacknowledged results.
#[derive(Debug)]
pub struct UnackedResults {
    shards: Vec<Mutex<HashMap<u64, ClientRecord>>>,
    total: AtomicUsize,
    per_client: usize,
    max_total: usize,
}

impl Default for UnackedResults {
    fn default() -> Self {
        Self::with_limits(MAX_RESULTS_PER_CLIENT, MAX_RESULTS_TOTAL)
    }
}

impl UnackedResults {
    /// A table with the given limits (tests use small ones).
    pub fn with_limits(per_client: usize, max_total: usize) -> Self {
        UnackedResults {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            total: AtomicUsize::new(0),
            per_client,
            max_total,
        }
    }

    fn shard(&self, client: u64) -> &Mutex<HashMap<u64, ClientRecord>> {
        &self.shards[(client as usize) % SHARDS]
    }

    /// Results currently kept.
    pub fn len(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Clients with a record (an approximation under concurrent use).
    pub fn clients(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Memory the table takes, estimated: per client ~96 bytes (hash-map slot and record),
    /// per result ~64 bytes (tree entry, reply header) plus its payload.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .values()
                    .map(|r| {
                        96 + r
                            .results
                            .values()
                            .map(|v| 64 + v.as_ref().map_or(0, |s| s.payload.len()))
                            .sum::<usize>()
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Process the ack id and decide what to do with `rpc_id` of `client` (≠ 0).
    pub fn begin(&self, client: u64, rpc_id: u64, ack_id: u64) -> Begin {
        let mut shard = self.shard(client).lock();
        let rec = shard.entry(client).or_default();
        if ack_id > rec.acked {
            rec.acked = ack_id;
            let keep = rec.results.split_off(&(ack_id.saturating_add(1)));
            let dropped = std::mem::replace(&mut rec.results, keep).len();
            self.total.fetch_sub(dropped, Ordering::Relaxed);
        }
        if rpc_id <= rec.acked {
            return Begin::Stale;
        }
        match rec.results.get(&rpc_id) {
            Some(Some(saved)) => return Begin::Done(saved.clone()),
            Some(None) => return Begin::InProgress,
            None => {}
        }
        if rec.results.len() >= self.per_client
            || self.total.load(Ordering::Relaxed) >= self.max_total
        {
            if rec.results.is_empty() {
                shard.remove(&client);
            }
            return Begin::Full;
        }
        rec.results.insert(rpc_id, None);
        self.total.fetch_add(1, Ordering::Relaxed);
        Begin::Run
    }

    /// Keep the reply of a mutation that ran.
    pub fn finish(&self, client: u64, rpc_id: u64, reply: SavedReply) {
        let mut shard = self.shard(client).lock();
        if let Some(rec) = shard.get_mut(&client) {
            if let Some(slot) = rec.results.get_mut(&rpc_id) {
                *slot = Some(reply);
            }
        }
    }

    /// Forget an in-progress mark of a mutation that did not run, so a retry runs it.
    pub fn abandon(&self, client: u64, rpc_id: u64) {
        let mut shard = self.shard(client).lock();
        if let Some(rec) = shard.get_mut(&client) {
            if rec.results.remove(&rpc_id).is_some() {
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: u8) -> SavedReply {
        SavedReply {
            status: Status::OK,
            version: u64::from(v),
            payload: vec![v],
        }
    }

    #[test]
    fn retries_get_the_saved_reply_until_acked() {
        let t = UnackedResults::default();
        assert_eq!(t.begin(7, 1, 0), Begin::Run);
        assert_eq!(t.begin(7, 1, 0), Begin::InProgress);
        t.finish(7, 1, ok(1));
        assert_eq!(t.begin(7, 1, 0), Begin::Done(ok(1)));
        assert_eq!(t.begin(7, 2, 0), Begin::Run);
        t.finish(7, 2, ok(2));
        assert_eq!(t.len(), 2);
        // Ack 1: result 1 is forgotten, its retry is stale; 2 still answered.
        assert_eq!(t.begin(7, 3, 1), Begin::Run);
        assert_eq!(t.len(), 2);
        assert_eq!(t.begin(7, 1, 1), Begin::Stale);
        assert_eq!(t.begin(7, 2, 1), Begin::Done(ok(2)));
        // Another client is independent.
        assert_eq!(t.begin(8, 1, 0), Begin::Run);
        t.abandon(8, 1);
        assert_eq!(t.begin(8, 1, 0), Begin::Run);
    }

    #[test]
    fn bounded() {
        let t = UnackedResults::with_limits(2, 3);
        assert_eq!(t.begin(1, 1, 0), Begin::Run);
        assert_eq!(t.begin(1, 2, 0), Begin::Run);
        assert_eq!(t.begin(1, 3, 0), Begin::Full);
        assert_eq!(t.begin(2, 1, 0), Begin::Run);
        assert_eq!(t.begin(3, 1, 0), Begin::Full);
        // Acks free room.
        assert_eq!(t.begin(1, 3, 2), Begin::Run);
        assert_eq!(t.len(), 2);
        assert_eq!(t.begin(3, 1, 0), Begin::Run);
    }
}
