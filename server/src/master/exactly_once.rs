//! Exactly-once mutations: the results of tracked writes, removes and increments, kept until
//! the client acknowledges them or its lease ends (RIFL's result table; RAMCloud's
//! `UnackedRpcResults`).
//!
//! A tracked mutation carries (client id ≠ 0, rpc id, ack id, lease). Before running it the
//! master calls [`UnackedResults::begin`]:
//! * lease expired at or before the cluster time this master knows → [`Begin::Expired`]
//!   (answer `EXPIRED_LEASE`; nothing runs: the coordinator never extends an expired lease, so
//!   the client must get a new one);
//! * first time → [`Begin::Run`]: the rpc id is marked *in progress*; after running, the master
//!   calls [`UnackedResults::finish`] with the outcome (which the engine also wrote to the log as
//!   a completion record), or [`UnackedResults::abandon`] if the mutation did not run (`RETRY`,
//!   `UNKNOWN_TABLET`, a malformed key) so that a retry runs it;
//! * a retry of a finished rpc → [`Begin::Done`] with the saved outcome (nothing runs again);
//! * a retry while the first attempt still runs (another dispatch core) → [`Begin::InProgress`];
//! * an rpc id at or below the client's ack id → [`Begin::Stale`];
//! * more than [`MAX_RESULTS_PER_CLIENT`] unacknowledged results of one client →
//!   [`Begin::ClientFull`], or [`MAX_RESULTS_TOTAL`] overall → [`Begin::Full`] (answer `RETRY`).
//!
//! Results die when the client's ack id passes them, or when its lease is dead: the lease
//! checker (`master::leases`) asks the coordinator about clients whose lease looks expired or
//! that have been idle, and calls [`UnackedResults::drop_clients`] for the dead ones. A client
//! dropped while its lease had time left is remembered as *departed* until that time passes,
//! so a late request under its lease is refused instead of run a second time.
//!
//! Durability: each result is also a completion record in the log (`faascache_storage::engine::
//! rpc`), replicated with the object; crash recovery and tablet migration bring them back with
//! [`UnackedResults::replay`]. The cleaner asks [`UnackedResults::is_live`] about each record.
//!
//! Memory: [`CLIENT_BYTES`] per client plus [`RESULT_BYTES`] per result (measured estimates of
//! the hash-map slot, the record and the tree entry), so the totals bound this table to about
//! `MAX_RESULTS_TOTAL × (RESULT_BYTES + CLIENT_BYTES)` ≈ 45 MiB in the worst case (one result per
//! client); under client churn the lease checker keeps it far below.
//!
//! Threads: any dispatch thread; 16 mutex shards by client id.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use faascache_storage::{CompletionRecord, Rpc, StorageError};
use faascache_transport::Status;
use parking_lot::Mutex;

/// Most unacknowledged results kept per client: a client may have this many tracked
/// mutations outstanding.
pub const MAX_RESULTS_PER_CLIENT: usize = 4096;
/// Most unacknowledged results kept in total.
pub const MAX_RESULTS_TOTAL: usize = 262_144;
/// Most departed clients remembered (each until its lease's expiration passes).
pub const MAX_DEPARTED: usize = 1 << 20;
/// Estimated bytes of one client's record (hash-map slot + record + tree root).
pub const CLIENT_BYTES: usize = 112;
/// Estimated bytes of one saved result (tree entry: key, slot, node overhead).
pub const RESULT_BYTES: usize = 72;

const SHARDS: usize = 16;

/// What a reply to a finished tracked mutation says: enough to rebuild it (the master encodes
/// the payload by `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Status.
    pub status: Status,
    /// The version the reply states.
    pub version: u64,
    /// Which reply to build (`service::kind`).
    pub kind: u8,
    /// An increment's new value (little-endian bytes), else zeros.
    pub value: [u8; 8],
}

/// A kept result: the outcome and where its key lives (tablet migration moves it with the
/// tablet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Saved {
    outcome: Outcome,
    table: u32,
    key_hash: u64,
    /// Taken in from a completion record (recovery, migration), not run here.
    replayed: bool,
}

/// What to do with a tracked mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run it (then `finish` or `abandon`).
    Run,
    /// Already done: send this reply again.
    Done(Outcome),
    /// The first attempt is still running.
    InProgress,
    /// The rpc id is at or below the ack id.
    Stale,
    /// This client has too many unacknowledged results.
    ClientFull,
    /// The table holds its maximum of results.
    Full,
    /// The client's lease has expired.
    Expired,
}

#[derive(Debug)]
struct ClientRecord {
    acked: u64,
    results: BTreeMap<u64, Option<Saved>>,
    /// Largest lease expiration seen (cluster ms; 0 = unknown: check with the coordinator).
    lease_expiration: u64,
    /// When this master last heard from the client or checked its lease (its own ms clock).
    last_seen: u64,
    last_checked: u64,
}

impl ClientRecord {
    fn new(now: u64) -> ClientRecord {
        ClientRecord {
            acked: 0,
            results: BTreeMap::new(),
            lease_expiration: 0,
            last_seen: now,
            last_checked: now,
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    clients: HashMap<u64, ClientRecord>,
    /// Clients dropped while their lease had time left → that lease's expiration.
    departed: HashMap<u64, u64>,
}

/// The table of unacknowledged results.
#[derive(Debug)]
pub struct UnackedResults {
    shards: Vec<Mutex<Shard>>,
    total: AtomicUsize,
    clients: AtomicUsize,
    /// Counts results that died (acknowledged or dropped): the cleaner recounts when it moves.
    died: AtomicU64,
    per_client: usize,
    max_total: usize,
}

impl Default for UnackedResults {
    fn default() -> Self {
        Self::with_limits(MAX_RESULTS_PER_CLIENT, MAX_RESULTS_TOTAL)
    }
}

/// What came of a tracked mutation handed to [`UnackedResults::run_tracked`].
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Not run; why (never `Run` or `Done`).
    Refused(Begin),
    /// Answered from the saved result of an earlier attempt.
    Saved(Outcome),
    /// Ran now. An error that is an outcome (a refusal by the object's state) was recorded and
    /// a retry gets it again; any other error means it did not run, and a retry runs it.
    Ran(Result<Outcome, StorageError>),
}

/// A request's exactly-once fields, as [`UnackedResults::begin`] needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// Client id (≠ 0).
    pub client: u64,
    /// Rpc id.
    pub rpc_id: u64,
    /// Ack id.
    pub ack_id: u64,
    /// The lease's expiration (cluster ms).
    pub lease_expiration: u64,
}

impl UnackedResults {
    /// A table with the given limits (tests use small ones).
    pub fn with_limits(per_client: usize, max_total: usize) -> Self {
        UnackedResults {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            total: AtomicUsize::new(0),
            clients: AtomicUsize::new(0),
            died: AtomicU64::new(0),
            per_client,
            max_total,
        }
    }

    fn shard(&self, client: u64) -> &Mutex<Shard> {
        &self.shards[(client as usize) % SHARDS]
    }

    /// Results currently kept.
    pub fn len(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Clients with a record.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Estimated memory of the table (see the module docs).
    pub fn bytes(&self) -> usize {
        let departed: usize = self.shards.iter().map(|s| s.lock().departed.len()).sum();
        self.clients() * CLIENT_BYTES + self.len() * RESULT_BYTES + departed * 32
    }

    /// How many results have died so far (a counter that only grows).
    pub fn died(&self) -> u64 {
        self.died.load(Ordering::Relaxed)
    }

    fn forget(&self, n: usize) {
        if n > 0 {
            self.total.fetch_sub(n, Ordering::Relaxed);
            self.died.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Process the ack id and decide what to do with the rpc. `cluster_time` is the cluster
    /// time this master knows (0 = none yet: leases cannot be judged), `now` its own clock (ms).
    pub fn begin(&self, t: Tracked, cluster_time: u64, now: u64) -> Begin {
        if cluster_time != 0 && t.lease_expiration <= cluster_time {
            return Begin::Expired;
        }
        let mut shard = self.shard(t.client).lock();
        if shard.departed.contains_key(&t.client) {
            return Begin::Expired;
        }
        let rec = shard.clients.entry(t.client).or_insert_with(|| {
            self.clients.fetch_add(1, Ordering::Relaxed);
            ClientRecord::new(now)
        });
        rec.lease_expiration = rec.lease_expiration.max(t.lease_expiration);
        rec.last_seen = now;
        if t.ack_id > rec.acked {
            rec.acked = t.ack_id;
            let keep = rec.results.split_off(&(t.ack_id.saturating_add(1)));
            let dropped = std::mem::replace(&mut rec.results, keep).len();
            self.forget(dropped);
        }
        if t.rpc_id <= rec.acked {
            return Begin::Stale;
        }
        match rec.results.get(&t.rpc_id) {
            Some(Some(saved)) => {
                if saved.replayed {
                    tracing::info!(
                        client = t.client,
                        rpc = t.rpc_id,
                        "answered a retry from a recovered completion record"
                    );
                }
                return Begin::Done(saved.outcome);
            }
            Some(None) => return Begin::InProgress,
            None => {}
        }
        if rec.results.len() >= self.per_client {
            return Begin::ClientFull;
        }
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Begin::Full;
        }
        rec.results.insert(t.rpc_id, None);
        self.total.fetch_add(1, Ordering::Relaxed);
        Begin::Run
    }

    /// Run a tracked mutation at most once: [`begin`](Self::begin); then `op` with the rpc's
    /// identity (so the engine writes its completion record) and `kind` (how its reply is
    /// rebuilt); then [`finish`](Self::finish) or [`abandon`](Self::abandon). `op` returns the
    /// version and an increment's new value.
    #[allow(clippy::too_many_arguments)]
    pub fn run_tracked(
        &self,
        t: Tracked,
        kind: u8,
        table: u32,
        key_hash: u64,
        cluster_time: u64,
        now: u64,
        op: impl FnOnce(&Rpc) -> Result<(u64, [u8; 8]), StorageError>,
    ) -> Attempt {
        match self.begin(t, cluster_time, now) {
            Begin::Run => {}
            Begin::Done(o) => return Attempt::Saved(o),
            other => return Attempt::Refused(other),
        }
        let rpc = Rpc {
            client_id: t.client,
            rpc_id: t.rpc_id,
            ack_id: t.ack_id,
            kind,
        };
        match op(&rpc) {
            Ok((version, value)) => {
                let o = Outcome {
                    status: Status::OK,
                    version,
                    kind,
                    value,
                };
                self.finish(t.client, t.rpc_id, table, key_hash, o);
                Attempt::Ran(Ok(o))
            }
            Err(e) => {
                if e.is_outcome() {
                    let (status, version) = e.status();
                    let o = Outcome {
                        status,
                        version,
                        kind,
                        value: [0; 8],
                    };
                    self.finish(t.client, t.rpc_id, table, key_hash, o);
                } else {
                    self.abandon(t.client, t.rpc_id);
                }
                Attempt::Ran(Err(e))
            }
        }
    }

    /// Keep the outcome of a mutation that ran on `key_hash` of `table`.
    pub fn finish(&self, client: u64, rpc_id: u64, table: u32, key_hash: u64, outcome: Outcome) {
        let mut shard = self.shard(client).lock();
        if let Some(slot) = shard
            .clients
            .get_mut(&client)
            .and_then(|rec| rec.results.get_mut(&rpc_id))
        {
            *slot = Some(Saved {
                outcome,
                table,
                key_hash,
                replayed: false,
            });
        }
    }

    /// Forget an in-progress mark of a mutation that did not run, so a retry runs it.
    pub fn abandon(&self, client: u64, rpc_id: u64) {
        let mut shard = self.shard(client).lock();
        if let Some(rec) = shard.clients.get_mut(&client) {
            if rec.results.remove(&rpc_id).is_some() {
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether the result a completion record holds is still needed.
    pub fn is_live(&self, rec: &CompletionRecord) -> bool {
        let shard = self.shard(rec.client_id).lock();
        shard
            .clients
            .get(&rec.client_id)
            .is_some_and(|c| c.results.contains_key(&rec.rpc_id))
    }

    /// Take in a result from a completion record (crash recovery, tablet migration). Returns
    /// whether it was new here (the caller then writes the record to this master's log).
    pub fn replay(&self, c: &CompletionRecord, now: u64) -> bool {
        let mut shard = self.shard(c.client_id).lock();
        if shard.departed.contains_key(&c.client_id) {
            return false;
        }
        let rec = shard.clients.entry(c.client_id).or_insert_with(|| {
            self.clients.fetch_add(1, Ordering::Relaxed);
            // Lease unknown: the checker asks the coordinator at its next round.
            ClientRecord::new(now)
        });
        if c.ack_id > rec.acked {
            rec.acked = c.ack_id;
            let keep = rec.results.split_off(&(c.ack_id.saturating_add(1)));
            let dropped = std::mem::replace(&mut rec.results, keep).len();
            self.forget(dropped);
        }
        if c.rpc_id <= rec.acked {
            return false;
        }
        let saved = Saved {
            outcome: Outcome {
                status: Status(c.status),
                version: c.version,
                kind: c.kind,
                value: c.value,
            },
            table: c.table,
            key_hash: c.key_hash,
            replayed: true,
        };
        match rec.results.insert(c.rpc_id, Some(saved)) {
            None => {
                self.total.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(_) => false,
        }
    }

    /// The kept results of keys in `table` with hashes in `start..=end`, as completion records
    /// (to move with a tablet).
    pub fn records_in(&self, table: u32, start: u64, end: u64, now: u32) -> Vec<CompletionRecord> {
        let mut out = Vec::new();
        for s in &self.shards {
            let shard = s.lock();
            for (&client, rec) in &shard.clients {
                for (&rpc_id, saved) in &rec.results {
                    let Some(sv) = saved else { continue };
                    if sv.table == table && (start..=end).contains(&sv.key_hash) {
                        out.push(CompletionRecord {
                            table,
                            key_hash: sv.key_hash,
                            client_id: client,
                            rpc_id,
                            ack_id: rec.acked,
                            timestamp: now,
                            status: sv.outcome.status.0,
                            version: sv.outcome.version,
                            kind: sv.outcome.kind,
                            value: sv.outcome.value,
                        });
                    }
                }
            }
        }
        out
    }

    /// Clients whose lease should be checked with the coordinator: it looks expired at
    /// `cluster_time`, or the client has been idle for `idle` ms and was not checked in that
    /// time. At most `max`.
    pub fn lease_candidates(&self, cluster_time: u64, now: u64, idle: u64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for s in &self.shards {
            let shard = s.lock();
            for (&id, rec) in &shard.clients {
                if out.len() >= max {
                    return out;
                }
                let looks_expired = rec.lease_expiration <= cluster_time;
                let quiet = now.saturating_sub(rec.last_seen) >= idle
                    && now.saturating_sub(rec.last_checked) >= idle;
                if looks_expired || quiet {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Apply the coordinator's answer about `ids`: expiration 0 drops the client (its results
    /// die; it is remembered as departed while a lease it used may still look valid), any other
    /// value is the lease's current expiration. Returns the results dropped.
    pub fn apply_lease_checks(
        &self,
        ids: &[u64],
        expirations: &[u64],
        cluster_time: u64,
        now: u64,
    ) -> usize {
        let mut dropped = 0;
        for (&id, &exp) in ids.iter().zip(expirations) {
            let mut shard = self.shard(id).lock();
            if exp != 0 {
                if let Some(rec) = shard.clients.get_mut(&id) {
                    rec.lease_expiration = rec.lease_expiration.max(exp);
                    rec.last_checked = now;
                }
                continue;
            }
            if let Some(rec) = shard.clients.remove(&id) {
                self.clients.fetch_sub(1, Ordering::Relaxed);
                dropped += rec.results.len();
                self.forget(rec.results.len());
                if rec.lease_expiration > cluster_time && shard.departed.len() < MAX_DEPARTED {
                    shard.departed.insert(id, rec.lease_expiration);
                }
            }
        }
        dropped
    }

    /// Forget departed clients whose lease expiration the cluster time has passed (their
    /// requests are refused by the expiration test alone from now on).
    pub fn prune_departed(&self, cluster_time: u64) {
        for s in &self.shards {
            s.lock().departed.retain(|_, exp| *exp > cluster_time);
        }
    }
}

#[cfg(test)]
mod tests;
