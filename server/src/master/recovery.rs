//! Recovery master: replays the part of a crashed master's log that falls in the key-hash
//! ranges it was given (`RecoverTablets`), reading each segment from one of its backups.
//!
//! Replay rules (segments arrive in any order, several at once):
//! * an object is stored unless this master holds the key at that version or newer, or a
//!   tombstone of that version or newer was seen;
//! * a tombstone removes the key if it holds that version or older (and is remembered, so an
//!   older copy of the object read later stays dead); the removal writes a tombstone here, so it
//!   survives this master's own crash;
//! * a safe version raises this master's version counter above it;
//! * a completion record (a tracked mutation's result) joins this master's exactly-once table
//!   unless the client's ack id passed it, and is written to this master's log — so a client
//!   retrying a mutation the crashed master ran gets its first result, not a second run.
//!
//! Each key's check-and-apply runs under one of [`SHARDS`] locks, so a tombstone and an object
//! of the same key replayed by two threads cannot interleave. Segments are fetched by
//! [`FETCHERS`] threads. The reply goes out only after what was replayed is on this master's
//! own replicas — as many as it keeps now: `--replicas`, or fewer (at least one) while fewer
//! other backups are up (see `replication`), so recovery never waits for backups that are gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::{
    BackupGetRecoveryDataRequest, BackupGetRecoveryDataResponse,
};
use faascache_protocol::msg::control::{
    RecoverTabletsRequest, RecoverTabletsResponse, TabletRange,
};
use faascache_protocol::msg::{
    decode_reply, Failure, Message, MsgError, Request as RpcRequest, ServerId,
};
use faascache_transport::{ClientConfig, LocatorError, ServiceLocator, Session, Status};
use parking_lot::Mutex;

use super::Master;
use crate::backup::{for_each_recovery_entry, RecoveryEntry};
use faascache_storage::{key_hash, FormatError, StorageError, TableId, TableOptions};

/// Key shards serialising replay of the same key.
pub const SHARDS: usize = 64;
/// Segments fetched and replayed at once.
pub const FETCHERS: usize = 4;
/// Timeout of one `BackupGetRecoveryData`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the replayed data to reach this master's replicas.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(30);

type Tombstones = HashMap<(TableId, Vec<u8>), u64>;

struct Replay<'a> {
    master: &'a Master,
    ranges: &'a [TabletRange],
    shards: Vec<Mutex<Tombstones>>,
    objects: AtomicU64,
    bytes: AtomicU64,
    removed: AtomicU64,
    read: AtomicU64,
    completions: AtomicU64,
}

impl Replay<'_> {
    fn in_ranges(&self, table: u32, hash: u64) -> bool {
        self.ranges
            .iter()
            .any(|r| r.table_id == u64::from(table) && r.contains(hash))
    }

    fn apply(&self, e: RecoveryEntry<'_>) -> Result<(), StorageError> {
        let engine = &self.master.engine;
        match e {
            RecoveryEntry::SafeVersion(v) => engine.raise_version_floor(v)?,
            RecoveryEntry::Completion(c) => {
                if !self.in_ranges(c.table, c.key_hash) {
                    return Ok(());
                }
                // Kept here, and written to this master's log so it survives its own crash.
                if self.master.results.replay(&c, self.master.now_ms()) {
                    retry_full(|| engine.record_completion(&c))?;
                    self.completions.fetch_add(1, Ordering::Relaxed);
                }
            }
            RecoveryEntry::Object(o) => {
                let h = key_hash(o.key);
                if !self.in_ranges(o.table, h) {
                    return Ok(());
                }
                let shard = self.shards[(h as usize) % SHARDS].lock();
                // (Most logs hold few tombstones: skip the lookup's key copy when none was seen.)
                if !shard.is_empty()
                    && shard
                        .get(&(o.table, o.key.to_vec()))
                        .is_some_and(|&t| t >= o.version)
                {
                    return Ok(());
                }
                if retry_full(|| {
                    engine.write_versioned_as(o.table, o.key, o.value, o.version, !o.dirty)
                })? {
                    self.objects.fetch_add(1, Ordering::Relaxed);
                    self.bytes
                        .fetch_add((o.key.len() + o.value.len()) as u64, Ordering::Relaxed);
                }
                drop(shard);
            }
            RecoveryEntry::Tombstone(t) => {
                let h = key_hash(t.key);
                if !self.in_ranges(t.table, h) {
                    return Ok(());
                }
                let mut shard = self.shards[(h as usize) % SHARDS].lock();
                let v = shard.entry((t.table, t.key.to_vec())).or_insert(0);
                *v = (*v).max(t.version);
                if retry_full(|| engine.remove_versioned(t.table, t.key, t.version))? {
                    self.removed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

/// Why one backup did not supply a segment (the next one is tried).
#[derive(Debug, thiserror::Error)]
pub enum BackupFetchError {
    /// Its locator does not parse.
    #[error("bad locator {locator:?}: {source}")]
    BadLocator {
        /// The locator.
        locator: String,
        /// Why.
        source: LocatorError,
    },
    /// Connecting or the call failed.
    #[error(transparent)]
    Transport(#[from] faascache_transport::Error),
    /// The backup answered with an error.
    #[error("{0}")]
    Failed(Failure),
    /// The reply does not decode.
    #[error("malformed reply: {0}")]
    Malformed(MsgError),
    /// The recovery data does not parse.
    #[error("bad recovery data: {0}")]
    BadData(FormatError),
}

/// Why replaying one segment's data failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// No backup could supply it; each one's error.
    #[error("no backup could supply segment {segment} of {crashed}: {}", attempts_text(.attempts))]
    NoBackup {
        /// The segment.
        segment: u64,
        /// The crashed master.
        crashed: ServerId,
        /// Each backup tried and why it failed.
        attempts: Vec<(ServerId, BackupFetchError)>,
    },
    /// Applying an entry failed on this master (e.g. out of memory): not the replica's fault,
    /// so no other backup is tried.
    #[error("replay failed on this master: {0}")]
    Replay(StorageError),
}

fn attempts_text(a: &[(ServerId, BackupFetchError)]) -> String {
    let v: Vec<String> = a.iter().map(|(id, e)| format!("{id}: {e}")).collect();
    v.join("; ")
}

/// Why a `RecoverTablets` request failed; [`RecoverError::status`] is the reply's status.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// A range names a table id that is not below 2^32.
    #[error("table id {0} is not below 2^32")]
    BadTable(u64),
    /// A recovered table could not be created here.
    #[error("{0}")]
    CreateTable(StorageError),
    /// A segment could not be replayed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Whether a recovered table is backed could not be learnt from the coordinator.
    #[error(transparent)]
    Config(#[from] crate::backed::registry::ConfigError),
    /// The replayed data did not reach this master's replicas in time (with the replication's
    /// state: e.g. no other backup is up).
    #[error("the recovered data did not reach this master's replicas in time: {0}")]
    NotDurable(String),
}

impl RecoverError {
    /// The status of the `RecoverTablets` reply.
    pub fn status(&self) -> Status {
        match self {
            RecoverError::BadTable(_) => Status::REQUEST_FORMAT_ERROR,
            RecoverError::CreateTable(_) => Status::INTERNAL_ERROR,
            RecoverError::Segment(_) => Status::SEGMENT_RECOVERY_FAILED,
            RecoverError::NotDurable(_) => Status::RETRY,
            RecoverError::Config(e) => e.status(),
        }
    }
}

/// What the replay callback of [`fetch`] reports.
enum ApplyError {
    /// The data is bad: try another backup.
    BadData(FormatError),
    /// This master failed: stop.
    Replay(StorageError),
}

/// Retries an engine operation while the log is full (the cleaner makes room), up to 10 s.
fn retry_full<T>(mut f: impl FnMut() -> Result<T, StorageError>) -> Result<T, StorageError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(StorageError::NoSpace) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => return r,
        }
    }
}

fn fetch(
    sessions: &mut HashMap<ServerId, Session>,
    crashed: ServerId,
    segment: u64,
    backups: &[(ServerId, &str)],
    ranges: &[TabletRange],
    f: &mut dyn FnMut(&[u8]) -> Result<(), ApplyError>,
) -> Result<(), SegmentError> {
    let req = BackupGetRecoveryDataRequest {
        master: crashed,
        segment_id: segment,
        ranges: ranges.to_vec(),
    }
    .to_vec();
    let mut errors = Vec::new();
    for (id, loc) in backups {
        if !sessions.contains_key(id) {
            let parsed: ServiceLocator = match loc.parse() {
                Ok(l) => l,
                Err(source) => {
                    errors.push((
                        *id,
                        BackupFetchError::BadLocator {
                            locator: loc.to_string(),
                            source,
                        },
                    ));
                    continue;
                }
            };
            match faascache_transport::connect(&parsed, ClientConfig::default()) {
                Ok(s) => {
                    sessions.insert(*id, s);
                }
                Err(e) => {
                    errors.push((*id, e.into()));
                    continue;
                }
            }
        }
        let s = &sessions[id];
        match s.call(
            <BackupGetRecoveryDataRequest as RpcRequest<'_>>::OPCODE,
            &req,
            FETCH_TIMEOUT,
        ) {
            Ok((status, body)) => {
                match decode_reply::<BackupGetRecoveryDataResponse<'_>>(status, &body) {
                    Ok(r) => match f(r.entries) {
                        Ok(()) => return Ok(()),
                        Err(ApplyError::BadData(e)) => {
                            errors.push((*id, BackupFetchError::BadData(e)))
                        }
                        Err(ApplyError::Replay(e)) => return Err(SegmentError::Replay(e)),
                    },
                    Err(Ok(fail)) => errors.push((*id, BackupFetchError::Failed(fail))),
                    Err(Err(e)) => errors.push((*id, BackupFetchError::Malformed(e))),
                }
            }
            Err(e) => {
                sessions.remove(id);
                errors.push((*id, e.into()));
            }
        }
    }
    Err(SegmentError::NoBackup {
        segment,
        crashed,
        attempts: errors,
    })
}

/// Runs a `RecoverTablets` request to completion.
pub fn recover(
    master: &Master,
    req: &RecoverTabletsRequest<'_>,
) -> Result<RecoverTabletsResponse, RecoverError> {
    let started = Instant::now();
    for r in &req.ranges {
        let Ok(table) = TableId::try_from(r.table_id) else {
            return Err(RecoverError::BadTable(r.table_id));
        };
        // Learn first whether the table is backed (it is then evictable), before serving it.
        let evictable = master.backed.learn(table)?.is_some();
        match master
            .engine
            .create_table(table, TableOptions { evictable })
        {
            Ok(()) => {}
            Err(StorageError::TableExists(_)) if evictable => master
                .engine
                .set_evictable(table, true)
                .map_err(RecoverError::CreateTable)?,
            Err(StorageError::TableExists(_)) => {}
            Err(e) => return Err(RecoverError::CreateTable(e)),
        }
    }
    let replay = Replay {
        master,
        ranges: &req.ranges,
        shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        objects: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        removed: AtomicU64::new(0),
        read: AtomicU64::new(0),
        completions: AtomicU64::new(0),
    };
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<SegmentError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..FETCHERS.min(req.segments.len()) {
            scope.spawn(|| {
                let mut sessions = HashMap::new();
                loop {
                    if failure.lock().is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(seg) = req.segments.get(i) else {
                        return;
                    };
                    let r = fetch(
                        &mut sessions,
                        req.crashed,
                        seg.segment_id,
                        &seg.backups,
                        &req.ranges,
                        &mut |entries| {
                            replay
                                .read
                                .fetch_add(entries.len() as u64, Ordering::Relaxed);
                            let mut err = None;
                            for_each_recovery_entry(entries, |e| {
                                if err.is_none() {
                                    if let Err(x) = replay.apply(e) {
                                        err = Some(x);
                                    }
                                }
                            })
                            .map_err(ApplyError::BadData)?;
                            match err {
                                // Out of memory here is not the replica's fault: stop.
                                Some(e) => Err(ApplyError::Replay(e)),
                                None => Ok(()),
                            }
                        },
                    );
                    if let Err(e) = r {
                        let mut f = failure.lock();
                        if f.is_none() {
                            *f = Some(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner() {
        return Err(e.into());
    }
    if !master.replication.wait_durable(DURABLE_TIMEOUT) {
        return Err(RecoverError::NotDurable(master.replication.describe()));
    }
    // Every dirty object of a backed table recovered here goes back on the upload queue.
    let mut requeued = 0;
    for r in &req.ranges {
        if let Ok(table) = TableId::try_from(r.table_id) {
            let range = super::tablets::Range {
                table,
                start: r.start_hash,
                end: r.end_hash,
            };
            requeued += crate::backed::requeue::requeue(master, range)
                .map_err(|e| RecoverError::Segment(SegmentError::Replay(e)))?;
        }
    }
    let resp = RecoverTabletsResponse {
        objects: replay.objects.load(Ordering::Relaxed),
        bytes: replay.bytes.load(Ordering::Relaxed),
        read_bytes: replay.read.load(Ordering::Relaxed),
    };
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        crashed = %req.crashed,
        ranges = req.ranges.len(),
        segments = req.segments.len(),
        objects = resp.objects,
        removed = replay.removed.load(Ordering::Relaxed),
        completions = replay.completions.load(Ordering::Relaxed),
        requeued,
        read_mib = resp.read_bytes >> 20,
        seconds = secs,
        mb_per_s = resp.read_bytes as f64 / 1e6 / secs.max(1e-9),
        "recovered tablets"
    );
    Ok(resp)
}
