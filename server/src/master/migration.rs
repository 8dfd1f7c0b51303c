//! Source side of a tablet migration (see `faascache_protocol::msg::control` for the protocol).
//!
//! 1. Mark the range *migrating out*: writes go on, and every mutated key is noted.
//! 2. Copy the range to the target in batches (enumeration).
//! 3. Re-send the noted keys (current value, or "removed") until few remain.
//! 4. Freeze the range (taking the ownership write lock waits for mutations in flight; later
//!    ones get `RETRY`), send the last noted keys and the results of tracked mutations of the
//!    range's keys (completion records), return. The coordinator then moves ownership.
//!
//! Every write acknowledged before the freeze was either copied in step 2 or noted and re-sent
//! (in step 3 or 4); after the freeze none is acknowledged here. On failure the range is served
//! again as before.

use std::time::{Duration, Instant};

use faascache_protocol::msg::control::{
    MigratedCompletion, MigratedObject, ReceiveMigrationDataRequest, TabletRange,
    MAX_MIGRATED_COMPLETIONS,
};
use faascache_protocol::msg::Message;
use faascache_transport::{call, CallError};
use faascache_transport::{
    ClientConfig, LocatorError, Opcode, PendingRpc, ServiceLocator, Session, Status,
};

use super::tablets::{NotServing, Range};
use super::Master;
use faascache_storage::{RejectRules, StorageError};

/// Bytes of keys and values per `ReceiveMigrationData` batch.
pub const BATCH_BYTES: usize = 512 * 1024;
/// Re-send rounds stop when this few keys were written during the last one.
pub const FREEZE_BELOW_KEYS: usize = 64;
/// At most this many re-send rounds before freezing anyway (a writer faster than the copy).
pub const MAX_RESEND_ROUNDS: usize = 8;
/// Batches of the bulk copy in flight at once (each waits for the target's replicas: a window
/// keeps the link and the target's backups busy while one batch is being made durable).
pub const WINDOW: usize = 4;
/// Timeout of one batch RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a batch is retried while the target answers `RETRY` (out of memory).
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// Why a migration out failed (the range is served here again).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The range is not served here whole, or already migrates.
    #[error(transparent)]
    NotServing(#[from] NotServing),
    /// The target's locator does not parse.
    #[error("bad target locator {target:?}: {source}")]
    BadTarget {
        /// The locator.
        target: String,
        /// Why.
        source: LocatorError,
    },
    /// The target cannot be reached.
    #[error("cannot reach the target {target}: {source}")]
    Unreachable {
        /// The locator.
        target: String,
        /// Why.
        source: faascache_transport::Error,
    },
    /// A `ReceiveMigrationData` batch failed (after retries while the target said `RETRY`).
    #[error("sending {objects} objects to the target failed: {source}")]
    Send {
        /// Objects in the batch.
        objects: usize,
        /// Why.
        source: CallError,
    },
    /// Reading a key written during the copy failed here.
    #[error("reading a migrating key failed: {0}")]
    Read(StorageError),
    /// Enumerating the range failed here.
    #[error("enumerating the tablet failed: {0}")]
    Enumerate(StorageError),
}

/// What a migration moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct MigrationStats {
    /// Objects copied in the bulk pass.
    pub objects: u64,
    /// Keys re-sent because they were written meanwhile.
    pub resent: u64,
    /// Results of tracked mutations moved with the tablet.
    pub completions: u64,
}

/// An object to send: removed, clean, key, value, version.
type Item = (bool, bool, Vec<u8>, Vec<u8>, u64);

struct Sender<'a> {
    session: Session,
    range: TabletRange,
    batch: Vec<Item>,
    bytes: usize,
    master: &'a Master,
    r: Range,
    /// Bulk batches sent and not yet answered (at most `window`), with their payloads.
    in_flight: std::collections::VecDeque<(PendingRpc, Vec<u8>)>,
    /// [`WINDOW`] during the bulk copy; 1 (each batch answered before the next) for the
    /// re-sends, where one key may be sent twice and the later value must land last.
    window: usize,
}

impl Sender<'_> {
    fn push(
        &mut self,
        removed: bool,
        key: Vec<u8>,
        value: Vec<u8>,
        version: u64,
    ) -> Result<(), MigrationError> {
        self.bytes += key.len() + value.len() + 16;
        // A backed table's object already in its store stays clean at the target.
        let clean = !removed
            && self
                .master
                .engine
                .is_dirty(self.r.table, &key)
                .ok()
                .flatten()
                == Some(false);
        self.batch.push((removed, clean, key, value, version));
        if self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MigrationError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let req = ReceiveMigrationDataRequest {
            range: self.range,
            completions: Vec::new(),
            objects: self
                .batch
                .iter()
                .map(|(removed, clean, k, v, ver)| MigratedObject {
                    removed: *removed,
                    clean: *clean,
                    key: k,
                    value: v,
                    version: *ver,
                })
                .collect(),
        };
        if self.window > 1 {
            let payload = req.to_vec();
            while self.in_flight.len() >= self.window {
                self.complete_oldest()?;
            }
            match self.session.send(Opcode::ReceiveMigrationData, &payload) {
                Ok(rpc) => self.in_flight.push_back((rpc, payload)),
                Err(_) => self.resend(&payload)?,
            }
        } else {
            self.send(&req)?;
        }
        self.batch.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Wait for the oldest batch in flight; one not answered OK is sent again the careful way
    /// (which retries `RETRY` and reports other failures).
    fn complete_oldest(&mut self) -> Result<(), MigrationError> {
        let Some((mut rpc, payload)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        if let Ok((Status::OK, _)) = rpc.wait(RPC_TIMEOUT) {
            return Ok(());
        }
        self.resend(&payload)
    }

    fn resend(&self, payload: &[u8]) -> Result<(), MigrationError> {
        let req = ReceiveMigrationDataRequest::decode(payload)
            .expect("a request this sender encoded decodes");
        self.send(&req)
    }

    /// Wait for every batch in flight; later batches go one at a time.
    fn settle(&mut self) -> Result<(), MigrationError> {
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        self.window = 1;
        Ok(())
    }

    /// Send one batch, retrying while the target answers `RETRY` (out of memory).
    fn send(&self, req: &ReceiveMigrationDataRequest<'_>) -> Result<(), MigrationError> {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match call(&self.session, req, RPC_TIMEOUT, |_| ()) {
                Ok(()) => break,
                Err(CallError::Failed(f))
                    if f.status == Status::RETRY && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(MigrationError::Send {
                        objects: req.objects.len() + req.completions.len(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Send the results of tracked mutations of the range's keys (after the freeze: no more
    /// are made here), so that retries at the new owner get them.
    fn send_completions(&self) -> Result<u64, MigrationError> {
        let r = self.r;
        let recs = self.master.results.records_in(r.table, r.start, r.end, 0);
        for chunk in recs.chunks(MAX_MIGRATED_COMPLETIONS) {
            let req = ReceiveMigrationDataRequest {
                range: self.range,
                objects: Vec::new(),
                completions: chunk
                    .iter()
                    .map(|c| MigratedCompletion {
                        key_hash: c.key_hash,
                        client_id: c.client_id,
                        rpc_id: c.rpc_id,
                        ack_id: c.ack_id,
                        status: c.status,
                        version: c.version,
                        kind: c.kind,
                        value: c.value,
                    })
                    .collect(),
            };
            self.send(&req)?;
        }
        Ok(recs.len() as u64)
    }

    /// Queue the current state of each key (value, or removed).
    fn send_keys(&mut self, keys: Vec<Vec<u8>>) -> Result<u64, MigrationError> {
        let n = keys.len() as u64;
        for key in keys {
            let mut value = Vec::new();
            match self
                .master
                .engine
                .read(self.r.table, &key, &RejectRules::NONE, &mut value)
            {
                Ok(version) => self.push(false, key, value, version)?,
                Err(StorageError::ObjectDoesntExist) => self.push(true, key, Vec::new(), 0)?,
                Err(e) => return Err(MigrationError::Read(e)),
            }
        }
        self.flush()?;
        Ok(n)
    }
}

/// Copy range `r` of `master` to the master at `target` and freeze it here. On error the range
/// is served again.
pub fn migrate_out(
    master: &Master,
    r: Range,
    target: &str,
) -> Result<MigrationStats, MigrationError> {
    let mig = master.ownership.write().start_migration(r)?;
    let result = (|| {
        let loc: ServiceLocator = target.parse().map_err(|source| MigrationError::BadTarget {
            target: target.to_string(),
            source,
        })?;
        let session =
            faascache_transport::connect(&loc, ClientConfig::default()).map_err(|source| {
                MigrationError::Unreachable {
                    target: target.to_string(),
                    source,
                }
            })?;
        let mut s = Sender {
            session,
            range: TabletRange {
                table_id: r.table as u64,
                start_hash: r.start,
                end_hash: r.end,
            },
            batch: Vec::new(),
            bytes: 0,
            master,
            r,
            in_flight: std::collections::VecDeque::new(),
            window: WINDOW,
        };
        let mut stats = MigrationStats::default();
        let mut cursor = None;
        loop {
            let en = master
                .engine
                .enumerate(r.table, r.start..=r.end, cursor, BATCH_BYTES)
                .map_err(MigrationError::Enumerate)?;
            for o in en.objects {
                stats.objects += 1;
                s.push(false, o.key, o.value, o.version)?;
            }
            match en.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        s.flush()?;
        s.settle()?;
        for _ in 0..MAX_RESEND_ROUNDS {
            let keys = mig.take_dirty();
            let small = keys.len() <= FREEZE_BELOW_KEYS;
            stats.resent += s.send_keys(keys)?;
            if small {
                break;
            }
        }
        {
            let own = master.ownership.write();
            own.freeze(&mig);
        }
        stats.resent += s.send_keys(mig.take_dirty())?;
        stats.completions = s.send_completions()?;
        Ok(stats)
    })();
    if result.is_err() {
        master.ownership.write().abort_migration(r);
    }
    result
}
