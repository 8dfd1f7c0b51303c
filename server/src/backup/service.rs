//! The backup's RPC handlers ([`Dispatch`] for opcodes `0x0301`–`0x0305`) and its direct API.
//! Each handler decodes its request (`faascache_protocol::msg::backup`), calls the store and
//! replies; refusals carry an [`ErrorReply`] detail (see `docs/protocol.md`, "Backup").
//!
//! Threading: every method may run on any dispatch thread at once (the store locks). Nothing
//! slow runs on a dispatch thread: `Disk`-mode writes go to one write worker, in arrival order
//! (it also deletes the files of freed replicas); `BackupGetReplicas`, `BackupGetRecoveryData` and
//! `BackupRecoveryDone` to the recovery workers; the dispatch thread decodes, enqueues (a full
//! queue is answered `RETRY`) and the worker replies through the call's `Responder`.
//! Memory-mode writes stay inline: a copy into RAM under the replica's `state` lock, which no
//! I/O ever holds. The memory-mode flusher is a thread of its own, stopped (after a last flush)
//! when the service is dropped.

use std::sync::Arc;
use std::thread::JoinHandle;

use faascache_protocol::msg::backup::{
    BackupFreeRequest, BackupGetRecoveryDataRequest, BackupGetRecoveryDataResponse,
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest,
    BackupWriteRequest,
};
use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::msg::{ErrorReply, Message, MsgError};
use faascache_protocol::ServerId;
use faascache_transport::server::IncomingRpc;
use faascache_transport::{Dispatch, Status};
use parking_lot::Mutex;

use crate::pool::{Busy, WorkerPool};

pub use super::store::Refusal;
use super::store::Store;
use super::{BackupConfig, BackupError, BackupStats, Durability};

/// A backup: replicas of other masters' segments. Serve it through the node's dispatcher
/// (it implements [`Dispatch`] for the backup opcodes only), e.g.
/// `move |call: &mut IncomingRpc<'_>| faascache_transport::dispatch(&*service, call)`.
#[derive(Debug)]
pub struct BackupService {
    pub(crate) store: Arc<Store>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Disk-mode writes and deleting freed replicas' files: one thread, so a replica's writes
    /// run in the order they arrived.
    writes: WorkerPool,
    /// `BackupGetReplicas`, `BackupGetRecoveryData`, `BackupRecoveryDone`.
    recovery: WorkerPool,
}

/// Requests waiting for the write worker (each holds its payload, at most `MAX_PAYLOAD`).
pub const WRITE_QUEUE: usize = 8;
/// Threads and queue of the recovery workers.
pub const RECOVERY_THREADS: usize = 2;
/// Requests waiting for a recovery worker.
pub const RECOVERY_QUEUE: usize = 32;

impl BackupService {
    /// Starts a backup: checks `cfg`, takes and scans its directory (loading every replica file
    /// found; bad files are renamed `*.bad` and logged), and in memory mode with a directory
    /// starts the flusher thread.
    pub fn open(cfg: BackupConfig) -> Result<Arc<BackupService>, BackupError> {
        let store = Arc::new(Store::open(cfg)?);
        let flusher =
            if store.config().dir.is_some() && store.config().durability == Durability::Memory {
                let s = store.clone();
                let h = std::thread::Builder::new()
                    .name("backup-flusher".into())
                    .spawn(move || s.run_flusher())
                    .map_err(|source| BackupError::Io {
                        op: "start the flusher thread for",
                        path: store
                            .config()
                            .dir
                            .as_ref()
                            .map(|d| d.display().to_string())
                            .unwrap_or_default(),
                        source,
                    })?;
                Some(h)
            } else {
                None
            };
        let s = store.stats();
        tracing::info!(durability = %s.durability, dir = ?s.dir, capacity = s.capacity_bytes,
            replicas = s.replicas, "backup service started");
        Ok(Arc::new(BackupService {
            store,
            flusher: Mutex::new(flusher),
            writes: WorkerPool::new("backup-write", 1, WRITE_QUEUE),
            recovery: WorkerPool::new("backup-recovery", RECOVERY_THREADS, RECOVERY_QUEUE),
        }))
    }

    /// What the backup holds (for `status`).
    pub fn stats(&self) -> BackupStats {
        self.store.stats()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &BackupConfig {
        self.store.config()
    }

    /// Memory mode with a directory: write every replica changed since the last flush to its
    /// file now (the flusher does this in the background anyway). Returns false if a file write
    /// failed (the replica stays queued; the error is logged). A no-op otherwise.
    pub fn flush(&self) -> bool {
        self.store.flush_pending()
    }

    /// `BackupWrite` without the RPC: `Ok` once the bytes are buffered (memory) or on disk.
    pub fn write(&self, req: &BackupWriteRequest<'_>) -> Result<(), Refusal> {
        self.store.write(req)
    }

    /// `BackupFree` without the RPC (idempotent).
    pub fn free(&self, master: ServerId, segment_id: u64) {
        self.store.free(master, segment_id)
    }

    /// `BackupGetReplicas` without the RPC: fences `master`, lists its valid replicas.
    pub fn get_replicas(&self, master: ServerId) -> BackupGetReplicasResponse {
        self.store.get_replicas(master, 0)
    }

    /// [`Self::get_replicas`] leaving out open replicas below `min_epoch`.
    pub fn get_replicas_from_epoch(
        &self,
        master: ServerId,
        min_epoch: u64,
    ) -> BackupGetReplicasResponse {
        self.store.get_replicas(master, min_epoch)
    }

    /// `BackupGetRecoveryData` without the RPC: appends the replica's entries of `ranges` to
    /// `out` (nothing on error).
    pub fn recovery_data(
        &self,
        master: ServerId,
        segment_id: u64,
        ranges: &[TabletRange],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        self.store.recovery_data(master, segment_id, ranges, out)
    }

    /// `BackupRecoveryDone` without the RPC: frees every replica of `master` and drops its
    /// fence; returns how many replicas.
    pub fn recovery_done(&self, master: ServerId) -> usize {
        self.store.free_master(master)
    }

    /// The masters this backup fences (sorted).
    pub fn fenced(&self) -> Vec<ServerId> {
        self.store.fenced()
    }

    /// A mark to take before asking the coordinator `GetFencedMasters`.
    pub fn fence_token(&self) -> u64 {
        self.store.fence_token()
    }

    /// Adopt the coordinator's `GetFencedMasters` answer, asked after `token`: fence the masters
    /// listed, drop older fences of the others (their recovery completed) and free their
    /// replicas.
    pub fn adopt_fences(&self, masters: &[ServerId], token: u64) {
        self.store.adopt_fences(masters, token)
    }
}

impl Drop for BackupService {
    fn drop(&mut self) {
        self.store.stop_flusher();
        if let Some(h) = self.flusher.lock().take() {
            let _ = h.join();
        }
    }
}

fn fail(call: &mut IncomingRpc<'_>, status: Status, detail: &str) {
    call.reply_with(status, |b| ErrorReply { version: 0, detail }.encode(b));
}

fn refused(call: &mut IncomingRpc<'_>, r: Refusal) {
    fail(call, r.status, &r.detail);
}

fn bad_request(call: &mut IncomingRpc<'_>, e: MsgError) {
    let detail = format!("malformed {} request: {e}", call.opcode());
    fail(call, e.status(), &detail);
}

macro_rules! decode_or_reply {
    ($call:expr, $ty:ty) => {
        match <$ty>::decode($call.payload()) {
            Ok(r) => r,
            Err(e) => return bad_request($call, e),
        }
    };
}

fn ok_empty(call: &mut IncomingRpc<'_>) {
    call.reply(Status::OK, &[]);
}

/// The refusal of a request that found the backup's worker queue full.
fn busy(call: &mut IncomingRpc<'_>, b: &Busy) {
    fail(call, Status::RETRY, &b.to_string());
}

impl BackupService {
    /// Run `job` on `pool` and reply with what it returns; `RETRY` at once if the pool is
    /// full. The dispatch thread only decodes and enqueues.
    fn offload(
        &self,
        pool: &WorkerPool,
        call: &mut IncomingRpc<'_>,
        job: impl FnOnce(&Store) -> (Status, Vec<u8>) + Send + 'static,
    ) {
        let place = match pool.reserve() {
            Ok(p) => p,
            Err(b) => return busy(call, &b),
        };
        let Some(responder) = call.defer() else {
            return;
        };
        let store = self.store.clone();
        place.submit(move || {
            let (status, body) = job(&store);
            responder.reply_vec(status, body);
        });
    }

    /// Does a write or free touch files (so it must leave the dispatch thread)?
    fn disk_bound_write(&self) -> bool {
        self.store.config().durability == Durability::Disk
    }
}

fn refusal_body(r: Refusal) -> (Status, Vec<u8>) {
    let body = ErrorReply {
        version: 0,
        detail: &r.detail,
    }
    .to_vec();
    (r.status, body)
}

impl Dispatch for BackupService {
    /// Memory mode: inline (a copy into RAM under the replica's `state` lock; the flusher
    /// never holds it across I/O). Disk mode: on the write worker (it `fdatasync`s).
    fn backup_write(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, BackupWriteRequest<'_>);
        if !self.disk_bound_write() {
            return match self.store.write(&req) {
                Ok(()) => ok_empty(call),
                Err(r) => refused(call, r),
            };
        }
        // Bounded: the pool's queue (WRITE_QUEUE requests of at most MAX_PAYLOAD bytes).
        let payload = call.payload().to_vec();
        self.offload(&self.writes, call, move |store| {
            let outcome = BackupWriteRequest::decode(&payload)
                .map_err(|e| Refusal {
                    status: e.status(),
                    detail: format!("malformed BackupWrite request: {e}"),
                })
                .and_then(|req| store.write(&req));
            store.unlink_freed();
            match outcome {
                Ok(()) => (Status::OK, Vec::new()),
                Err(r) => refusal_body(r),
            }
        });
    }

    /// Inline: the replica leaves the map and its memory is freed now; with a directory its
    /// file is deleted on the write worker (which may wait for a disk write of that replica),
    /// or, if that queue is full, by the next write job or flush.
    fn backup_free(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, BackupFreeRequest);
        self.store.free_now(req.master, req.segment_id);
        if self.store.config().dir.is_some() {
            let store = self.store.clone();
            let _ = self.writes.submit(move || store.unlink_freed());
        }
        ok_empty(call);
    }

    /// On a recovery worker: validates (checksums) every replica of the master and saves the
    /// fence set.
    fn backup_get_replicas(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, BackupGetReplicasRequest);
        if req.master.is_none() {
            return fail(
                call,
                Status::REQUEST_FORMAT_ERROR,
                "master id 0 names no server",
            );
        }
        self.offload(&self.recovery, call, move |store| {
            (
                Status::OK,
                store.get_replicas(req.master, req.min_epoch).to_vec(),
            )
        });
    }

    /// On a recovery worker: filters up to a whole replica.
    fn backup_get_recovery_data(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, BackupGetRecoveryDataRequest);
        self.offload(&self.recovery, call, move |store| {
            let mut out = Vec::new();
            BackupGetRecoveryDataResponse::encode_head(0, &mut out);
            match store.recovery_data(req.master, req.segment_id, &req.ranges, &mut out) {
                Ok(()) => {
                    let len = (out.len() - 4) as u32;
                    out[..4].copy_from_slice(&len.to_le_bytes());
                    (Status::OK, out)
                }
                Err(r) => refusal_body(r),
            }
        });
    }

    /// On a recovery worker: deletes files and saves the fence set.
    fn backup_recovery_done(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, BackupRecoveryDoneRequest);
        self.offload(&self.recovery, call, move |store| {
            let n = store.free_master(req.master);
            tracing::info!(master = %req.master, freed = n, "recovery done; the master's replicas were freed and its fence dropped");
            (Status::OK, Vec::new())
        });
    }
}
