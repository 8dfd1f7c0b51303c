//! The replicas a backup holds: in memory, and in files when the backup has a directory.
//!
//! Structure: one map `(master, segment) → Arc<Replica>` plus the set of fenced masters, behind
//! one mutex held only for lookups and inserts. Each replica has two locks, taken in this order:
//! `io` (its file; held across disk writes) then `state` (bytes, certificate, flags; held for
//! memory operations only, never across I/O). A `Memory`-mode write takes only `state`, so the
//! flusher writing the same replica's file never delays it; a `Disk`-mode write holds `io` for
//! its `fdatasync`s, on the calling dispatch thread.
//!
//! Invariants:
//! - `state.data.len() ≤ MAX_REPLICA_BYTES`, checked before the vector grows; the stored
//!   certificate is the one of the write that reached the greatest length (so its length equals
//!   the data length).
//! - A freed replica (`state.freed`) is out of the map, holds no bytes and never gets a file
//!   again: writers, the flusher and readers check the flag under the `state` lock, and its file
//!   is deleted under the `io` lock.
//! - Fencing: `BackupGetReplicas{M}` inserts M into the fenced set (under the map lock, so no new
//!   replica of M can be created) and sets `state.fenced` on each of M's replicas before reading
//!   it (so a write that had already looked the replica up is refused, and every write the
//!   listing does not show was refused). With a directory the fence set is saved to
//!   `DIR/fences` (module `fences`) before `BackupGetReplicas` answers, and loaded at start; it
//!   is dropped at `BackupRecoveryDone` and replaced by the coordinator's list when the server
//!   enlists. Saves are serialised by `fence_io` and write a snapshot taken under it.
//! - Capacity: `reserved` is the sum of every live replica's `charge` (see
//!   `BackupConfig::capacity_bytes`); it is checked only when a replica is created.
//!
//! The memory-mode flusher (one thread, started by the service when there is a directory) takes
//! replicas from `pending`; a write marks its replica dirty and queues it once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use faascache_protocol::msg::backup::{
    replica_usable, BackupGetReplicasResponse, BackupWriteRequest, LogDigestInfo, ReplicaInfo,
    MAX_REPLICA_BYTES,
};
use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::ServerId;
use faascache_transport::Status;
use parking_lot::{Condvar, Mutex};

use super::fences::{self, Fences};
use super::file::{self, ReplicaFile};
use super::frames::{Frames, FRAME_BYTES};
use super::lock::{take_lock, LockFile};
use super::recovery;
use super::{BackupConfig, BackupError, BackupStats, Durability, FLUSH_INTERVAL};
use faascache_storage::format::{
    decode_entry_header, decode_segment_header, Certificate, EntryType,
};

/// A refused request: the status to answer and a detail saying what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Status of the reply.
    pub status: Status,
    /// Cause and remedy.
    pub detail: String,
}

fn refuse(status: Status, detail: String) -> Refusal {
    Refusal { status, detail }
}

type Key = (ServerId, u64);

#[derive(Debug, Default)]
struct Map {
    replicas: HashMap<Key, Arc<Replica>>,
    fenced: Fences,
}

#[derive(Debug)]
pub(crate) struct Replica {
    master: ServerId,
    segment_id: u64,
    io: Mutex<Io>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct Io {
    file: Option<ReplicaFile>,
}

#[derive(Default)]
struct State {
    data: Vec<u8>,
    cert: Certificate,
    closed: bool,
    /// The highest replica epoch its master wrote (see `BackupWriteRequest`).
    epoch: u64,
    fenced: bool,
    freed: bool,
    /// Capacity the segment header declares (≤ MAX_REPLICA_BYTES), once seen.
    declared: Option<usize>,
    /// What this replica adds to `Store::reserved`.
    charge: u64,
    /// Memory mode with a directory: lowest offset written since the last flush.
    dirty_from: Option<usize>,
    /// Queued in `Store::pending`.
    queued: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes themselves (up to 8 MiB) are left out.
        f.debug_struct("State")
            .field("len", &self.data.len())
            .field("cert", &self.cert)
            .field("closed", &self.closed)
            .field("fenced", &self.fenced)
            .field("freed", &self.freed)
            .field("charge", &self.charge)
            .finish_non_exhaustive()
    }
}

impl State {
    fn charge(&self) -> u64 {
        let len = self.data.len();
        if self.closed {
            len as u64
        } else {
            len.max(self.declared.unwrap_or(MAX_REPLICA_BYTES)) as u64
        }
    }
}

/// The capacity a segment image declares in its segment header, if `data` (the replica's first
/// bytes) holds the whole header.
fn declared_capacity(data: &[u8]) -> Option<usize> {
    let h = decode_entry_header(data, 0).ok()?;
    if h.ty != EntryType::SegmentHeader || h.total_len() > data.len() {
        return None;
    }
    let sh = decode_segment_header(&data[h.header_len..h.total_len()], 0).ok()?;
    Some((sh.capacity as usize).min(MAX_REPLICA_BYTES))
}

/// Why a loaded replica's bytes are not valid under its certificate.
#[derive(Debug, thiserror::Error)]
enum InvalidReplica {
    /// Nothing certified, yet a checksum.
    #[error("empty replica with a non-zero certificate checksum")]
    EmptyWithChecksum,
    /// The certified bytes do not parse as a segment.
    #[error(transparent)]
    Format(#[from] faascache_storage::FormatError),
}

/// Validation used when loading a file: an empty replica is valid (nothing written yet).
fn validate_loaded(data: &[u8], cert: Certificate) -> Result<(), InvalidReplica> {
    if cert.length == 0 {
        return if cert.checksum == 0 {
            Ok(())
        } else {
            Err(InvalidReplica::EmptyWithChecksum)
        };
    }
    recovery::validate(data, cert).map(|_| ())?;
    Ok(())
}

/// Every replica of a backup.
#[derive(Debug)]
pub(crate) struct Store {
    config: BackupConfig,
    map: Mutex<Map>,
    reserved: AtomicU64,
    bytes: AtomicU64,
    pending: Mutex<Vec<Arc<Replica>>>,
    /// Held while a batch taken from `pending` is written, so `flush` also waits for the
    /// flusher's batch in progress.
    flushing: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// Serialises saves of `DIR/fences`.
    fence_io: Mutex<()>,
    /// Replicas freed on a dispatch thread whose files are still to be deleted.
    unlink: Mutex<Vec<Arc<Replica>>>,
    /// The last replica-file write that failed, for `status` (cleared by a write that works).
    disk_error: Mutex<Option<String>>,
    /// Memory for full-size replicas, faulted in ahead.
    frames: Frames,
    _lock: Option<LockFile>,
}

/// What a failed replica-file write means, in words an operator acts on.
pub(crate) fn disk_trouble(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(28) => "the backup's disk is full (ENOSPC): free space or move --backup-dir",
        Some(122) => "the backup's disk quota is exhausted (EDQUOT): raise the quota or free space",
        Some(30) => "the backup's file system is read-only (EROFS): remount it read-write or move --backup-dir",
        Some(5) => "the backup's disk reports I/O errors (EIO): replace the disk and restart this backup",
        Some(13) | Some(1) => "the backup may not write its directory (permission denied): fix the permissions of --backup-dir",
        _ => "the backup cannot write its replica files",
    }
}

impl Store {
    /// Checks the configuration, takes the directory (creating it) and loads every replica
    /// file in it; bad files are renamed `*.bad` and reported, never fatal.
    pub(crate) fn open(config: BackupConfig) -> Result<Store, BackupError> {
        if config.capacity_bytes == 0 {
            return Err(BackupError::Config(
                "backup capacity is 0 bytes: give it room for at least one segment replica (8 MiB)"
                    .into(),
            ));
        }
        if config.durability == Durability::Disk && config.dir.is_none() {
            return Err(BackupError::Config(
                "durability `disk` needs a backup directory (--backup-dir)".into(),
            ));
        }
        let lock = match &config.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| BackupError::Io {
                    op: "create",
                    path: dir.display().to_string(),
                    source,
                })?;
                Some(take_lock(dir)?)
            }
            None => None,
        };
        let frames = Frames::new(config.warm_bytes);
        let store = Store {
            config,
            map: Mutex::new(Map::default()),
            reserved: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            flushing: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            fence_io: Mutex::new(()),
            unlink: Mutex::new(Vec::new()),
            disk_error: Mutex::new(None),
            frames,
            _lock: lock,
        };
        if let Some(dir) = store.config.dir.clone() {
            let saved = fences::load(&dir).map_err(BackupError::Fences)?;
            if !saved.is_empty() {
                tracing::info!(masters = ?saved, "fences loaded from the backup directory");
            }
            let mut map = store.map.lock();
            for m in saved {
                map.fenced.insert(m);
            }
            drop(map);
            store.load_dir(&dir)?;
        }
        Ok(store)
    }

    pub(crate) fn config(&self) -> &BackupConfig {
        &self.config
    }

    fn load_dir(&self, dir: &Path) -> Result<(), BackupError> {
        let entries = std::fs::read_dir(dir).map_err(|source| BackupError::Io {
            op: "list",
            path: dir.display().to_string(),
            source,
        })?;
        let (mut loaded, mut bad) = (0usize, 0usize);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name == "lock" || fences::is_fence_file(&name) {
                continue;
            }
            let Some(master) = file::parse_master_dir(&name).filter(|_| path.is_dir()) else {
                tracing::warn!(path = %path.display(), "unknown entry in the backup directory; ignored");
                continue;
            };
            let files = match std::fs::read_dir(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot list a master's replica directory; its replicas are not loaded");
                    continue;
                }
            };
            for f in files.flatten() {
                let fname = f.file_name().to_string_lossy().into_owned();
                let fpath = f.path();
                if fname.ends_with(file::BAD_SUFFIX) {
                    continue;
                }
                let Some(segment_id) = file::parse_replica_name(&fname) else {
                    tracing::warn!(path = %fpath.display(), "unknown file in the backup directory; ignored");
                    continue;
                };
                match file::load(&fpath, master, segment_id, validate_loaded) {
                    Ok(l) => {
                        if l.fell_back {
                            tracing::warn!(path = %fpath.display(), length = l.certificate.length,
                                "the replica's last update was torn or incomplete; loaded the previous one");
                        }
                        self.insert_loaded(master, segment_id, l);
                        loaded += 1;
                    }
                    Err(reason) => {
                        bad += 1;
                        let mut to = fpath.clone().into_os_string();
                        to.push(file::BAD_SUFFIX);
                        let renamed = std::fs::rename(&fpath, &to);
                        tracing::error!(path = %fpath.display(), %reason, renamed = renamed.is_ok(),
                            "skipping a bad replica file (renamed *.bad for inspection)");
                    }
                }
            }
        }
        let reserved = self.reserved.load(Ordering::Relaxed);
        if reserved > self.config.capacity_bytes as u64 {
            tracing::warn!(
                reserved,
                capacity = self.config.capacity_bytes,
                "replicas loaded from the backup directory exceed the configured capacity; new segments are refused until some are freed"
            );
        }
        tracing::info!(
            dir = %dir.display(),
            replicas = loaded,
            bad,
            bytes = self.bytes.load(Ordering::Relaxed),
            masters = self.stats().masters,
            "loaded backup replicas"
        );
        Ok(())
    }

    fn insert_loaded(&self, master: ServerId, segment_id: u64, l: file::LoadedReplica) {
        let mut st = State {
            declared: declared_capacity(&l.data),
            data: l.data,
            cert: l.certificate,
            closed: l.closed,
            epoch: l.epoch,
            ..State::default()
        };
        st.charge = st.charge();
        self.reserved.fetch_add(st.charge, Ordering::Relaxed);
        self.bytes
            .fetch_add(st.data.len() as u64, Ordering::Relaxed);
        let r = Arc::new(Replica {
            master,
            segment_id,
            io: Mutex::new(Io { file: Some(l.file) }),
            state: Mutex::new(st),
        });
        self.map.lock().replicas.insert((master, segment_id), r);
    }

    /// Finds the replica of a write, or creates it if the write opens it.
    fn find_or_open(&self, req: &BackupWriteRequest<'_>) -> Result<Arc<Replica>, Refusal> {
        let key = (req.master, req.segment_id);
        let mut map = self.map.lock();
        if map.fenced.contains(&req.master) {
            return Err(fenced(req.master));
        }
        if let Some(r) = map.replicas.get(&key) {
            return Ok(r.clone());
        }
        if !req.open() {
            return Err(refuse(
                Status::BACKUP_BAD_SEGMENT_ID,
                format!(
                    "this backup has no replica of segment {} of master {}: open it first (flag \
                     OPEN), or it was freed",
                    req.segment_id, req.master
                ),
            ));
        }
        let declared = if req.offset == 0 {
            declared_capacity(req.data)
        } else {
            None
        };
        let state = State {
            declared,
            data: self.frames.take(declared),
            ..State::default()
        };
        let charge = state.charge().max(req.end());
        let reserved = self.reserved.load(Ordering::Relaxed);
        if reserved + charge > self.config.capacity_bytes as u64 {
            return Err(refuse(
                Status::RETRY,
                format!(
                    "backup full: {reserved} of {} bytes reserved, a new replica needs {charge}: \
                     write this segment to another backup",
                    self.config.capacity_bytes
                ),
            ));
        }
        self.reserved.fetch_add(charge, Ordering::Relaxed);
        let r = Arc::new(Replica {
            master: req.master,
            segment_id: req.segment_id,
            io: Mutex::new(Io::default()),
            state: Mutex::new(State { charge, ..state }),
        });
        map.replicas.insert(key, r.clone());
        Ok(r)
    }

    /// `BackupWrite`.
    pub(crate) fn write(&self, req: &BackupWriteRequest<'_>) -> Result<(), Refusal> {
        if req.master.is_none() {
            return Err(refuse(
                Status::REQUEST_FORMAT_ERROR,
                "master id 0 names no server".into(),
            ));
        }
        let end = req.end();
        if end > MAX_REPLICA_BYTES as u64 {
            return Err(refuse(
                Status::BACKUP_SEGMENT_OVERFLOW,
                format!(
                    "the write reaches byte {end} of segment {}; replicas hold at most \
                     {MAX_REPLICA_BYTES} bytes",
                    req.segment_id
                ),
            ));
        }
        if u64::from(req.certificate.length) != end {
            return Err(refuse(
                Status::REQUEST_FORMAT_ERROR,
                format!(
                    "certificate length {} differs from offset + data length {end}",
                    req.certificate.length
                ),
            ));
        }
        let (offset, end) = (req.offset as usize, end as usize);
        let replica = self.find_or_open(req)?;
        let disk = self.config.durability == Durability::Disk;
        let mut io = disk.then(|| replica.io.lock());
        let mut st = replica.state.lock();
        if st.freed {
            return Err(refuse(
                Status::BACKUP_BAD_SEGMENT_ID,
                format!(
                    "the replica of segment {} of master {} was freed: open it again",
                    req.segment_id, req.master
                ),
            ));
        }
        if st.fenced {
            return Err(fenced(req.master));
        }
        let len = st.data.len();
        if st.closed {
            if end <= len {
                // A retry of a write already applied (a closed replica needs no epoch: it is
                // complete).
                return Ok(());
            }
            return Err(refuse(
                Status::BACKUP_SEGMENT_ALREADY_OPEN,
                format!(
                    "closed: segment {} of master {} was closed at {len} bytes; a write up to \
                     byte {end} cannot be added",
                    req.segment_id, req.master
                ),
            ));
        }
        if offset > len {
            return Err(refuse(
                Status::BACKUP_SEGMENT_OVERFLOW,
                format!(
                    "gap: the write starts at byte {offset} but this backup holds only {len} bytes \
                     of segment {} (it lost data, e.g. restarted in memory mode): replicate the \
                     segment to another backup",
                    req.segment_id
                ),
            ));
        }
        // Apply: overwrite what is there (retries resend the same bytes), append the rest.
        let overlap = end.min(len);
        if offset < overlap {
            st.data[offset..overlap].copy_from_slice(&req.data[..overlap - offset]);
        }
        if end > len {
            // Grow geometrically but never past the largest replica (no 16 MiB vector for an
            // 8 MiB replica); `end` was checked against MAX_REPLICA_BYTES above.
            if end > st.data.capacity() {
                let target = (st.data.capacity() * 2).clamp(end, MAX_REPLICA_BYTES.max(end));
                st.data.reserve_exact(target - len);
            }
            st.data.extend_from_slice(&req.data[len - offset..]);
            self.bytes.fetch_add((end - len) as u64, Ordering::Relaxed);
        }
        if end >= len {
            st.cert = Certificate {
                length: req.certificate.length,
                checksum: req.certificate.checksum,
            };
        }
        st.epoch = st.epoch.max(req.epoch);
        if req.close() && !st.closed {
            st.closed = true;
            // A closed replica never grows: give back the spare capacity (a frame nearly full
            // stays whole, to be reused when freed).
            if st.data.capacity() != FRAME_BYTES || st.data.len() < FRAME_BYTES / 4 * 3 {
                st.data.shrink_to_fit();
            }
        }
        if st.declared.is_none() {
            st.declared = declared_capacity(&st.data);
        }
        let charge = st.charge();
        self.adjust_reserved(st.charge, charge);
        st.charge = charge;

        if let Some(io) = io.as_mut() {
            let (length, cert, closed) = (st.data.len() as u32, st.cert, st.closed);
            let epoch = st.epoch;
            drop(st);
            let meta = (length, cert, closed, epoch);
            let written = self.write_file(io, &replica, offset, req.data, meta);
            if written.is_ok() && self.disk_error.lock().is_some() {
                tracing::info!("the backup's disk accepts replica writes again");
                *self.disk_error.lock() = None;
            }
            if let Err(e) = written {
                let path = io.file.as_ref().map(|f| f.path().display().to_string());
                let what = self.disk_failed(&e);
                tracing::error!(master = %req.master, segment = req.segment_id, ?path, error = %e,
                    "{what}: cannot store a replica; dropped it (the master places it on another backup)");
                self.remove(&replica);
                self.release(&replica, io);
                return Err(refuse(
                    Status::BACKUP_STORAGE_ERROR,
                    format!(
                        "{what} ({e}): segment {} of master {} was not stored and its replica \
                         was dropped; place it on another backup",
                        req.segment_id, req.master
                    ),
                ));
            }
        } else if self.config.dir.is_some() {
            st.dirty_from = Some(st.dirty_from.map_or(offset, |d| d.min(offset)));
            if !st.queued {
                st.queued = true;
                drop(st);
                self.pending.lock().push(replica.clone());
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Writes `data` at `offset` of the replica's file and a header recording `meta`: (bytes
    /// written, certificate, closed, epoch).
    fn write_file(
        &self,
        io: &mut Io,
        r: &Replica,
        offset: usize,
        data: &[u8],
        meta: (u32, Certificate, bool, u64),
    ) -> std::io::Result<()> {
        let (length, cert, closed, epoch) = meta;
        let Some(dir) = &self.config.dir else {
            return Ok(());
        };
        if io.file.is_none() {
            io.file = Some(ReplicaFile::create(dir, r.master, r.segment_id)?);
        }
        match io.file.as_mut() {
            Some(f) => {
                f.set_epoch(epoch);
                f.write(offset, data, length, cert, closed)
            }
            None => Ok(()),
        }
    }

    /// Record a failed replica-file write for `status`; returns what it means.
    fn disk_failed(&self, e: &std::io::Error) -> &'static str {
        let what = disk_trouble(e);
        *self.disk_error.lock() = Some(format!("{what} ({e})"));
        what
    }

    fn adjust_reserved(&self, old: u64, new: u64) {
        if new >= old {
            self.reserved.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.reserved.fetch_sub(old - new, Ordering::Relaxed);
        }
    }

    /// Takes `r` out of the map if it is still the map's replica for its key.
    fn remove(&self, r: &Arc<Replica>) {
        let mut map = self.map.lock();
        let key = (r.master, r.segment_id);
        if map.replicas.get(&key).is_some_and(|m| Arc::ptr_eq(m, r)) {
            map.replicas.remove(&key);
        }
    }

    /// Frees a replica already out of the map: its memory, its accounting and its file.
    fn release(&self, r: &Replica, io: &mut Io) {
        if self.forget(r) {
            delete_file(io);
        }
    }

    /// Frees a replica's memory and accounting (not its file); false if it was freed already.
    /// Takes only the `state` lock, which no I/O holds.
    fn forget(&self, r: &Replica) -> bool {
        let mut st = r.state.lock();
        if st.freed {
            return false;
        }
        st.freed = true;
        self.adjust_reserved(st.charge, 0);
        self.bytes
            .fetch_sub(st.data.len() as u64, Ordering::Relaxed);
        st.charge = 0;
        self.frames.give(std::mem::take(&mut st.data));
        true
    }

    /// `BackupFree` on a dispatch thread: the replica leaves the map and its memory is freed at
    /// once; its file (which a disk write may be holding) is deleted by [`Store::unlink_freed`]
    /// on the write worker or the flusher.
    pub(crate) fn free_now(&self, master: ServerId, segment_id: u64) {
        let r = self.map.lock().replicas.remove(&(master, segment_id));
        if let Some(r) = r {
            if self.forget(&r) && self.config.dir.is_some() {
                // Bounded: each replica once, and replicas are bounded by the capacity.
                self.unlink.lock().push(r);
            }
        }
    }

    /// Deletes the files of replicas freed by [`Store::free_now`].
    pub(crate) fn unlink_freed(&self) {
        let list = std::mem::take(&mut *self.unlink.lock());
        for r in list {
            delete_file(&mut r.io.lock());
        }
    }

    fn release_locked(&self, r: &Replica) {
        let mut io = r.io.lock();
        self.release(r, &mut io);
    }

    /// `BackupFree`: idempotent.
    pub(crate) fn free(&self, master: ServerId, segment_id: u64) {
        let r = self.map.lock().replicas.remove(&(master, segment_id));
        if let Some(r) = r {
            self.release_locked(&r);
        }
    }

    /// `BackupRecoveryDone`: frees every replica of `master` and drops its fence.
    pub(crate) fn free_master(&self, master: ServerId) -> usize {
        let gone: Vec<Arc<Replica>> = {
            let mut map = self.map.lock();
            map.fenced.remove(&master);
            let keys: Vec<Key> = map
                .replicas
                .keys()
                .filter(|k| k.0 == master)
                .copied()
                .collect();
            keys.iter().filter_map(|k| map.replicas.remove(k)).collect()
        };
        for r in &gone {
            self.release_locked(r);
        }
        if let Some(dir) = &self.config.dir {
            // Only succeeds if empty; a leftover `*.bad` file keeps it.
            let _ = std::fs::remove_dir(file::master_dir(dir, master));
        }
        self.save_fences();
        gone.len()
    }

    /// Writes the fence set to `DIR/fences` (if there is a directory); a failure is logged (the
    /// fences hold in memory; a restart would forget the unsaved ones until the server enlists
    /// and learns the pending ones again).
    fn save_fences(&self) {
        let Some(dir) = &self.config.dir else {
            return;
        };
        let _io = self.fence_io.lock();
        let list = self.map.lock().fenced.list();
        if let Err(e) = fences::save(dir, &list) {
            tracing::error!(dir = %dir.display(), error = %e, fenced = list.len(),
                "cannot save the fence set: a restart of this backup forgets the new fences until it enlists again; check the disk");
        }
    }

    /// Drop the fence of `master` (tests that inspect a backup with `get_replicas`).
    #[cfg(test)]
    pub(crate) fn unfence(&self, master: ServerId) {
        self.map.lock().fenced.remove(&master);
        self.save_fences();
    }

    /// The fenced masters, sorted.
    pub(crate) fn fenced(&self) -> Vec<ServerId> {
        self.map.lock().fenced.list()
    }

    /// A mark for [`Store::adopt_fences`].
    pub(crate) fn fence_token(&self) -> u64 {
        self.map.lock().fenced.token()
    }

    /// The coordinator's list of masters awaiting recovery (asked after `token`): fence them;
    /// drop older fences of masters not listed (recovered while this backup was away) and free
    /// their replicas.
    pub(crate) fn adopt_fences(&self, list: &[ServerId], token: u64) {
        let (added, dropped) = {
            let mut map = self.map.lock();
            let (added, dropped) = map.fenced.adopt(list, token);
            let fenced: Vec<Arc<Replica>> = map
                .replicas
                .values()
                .filter(|r| added.contains(&r.master))
                .cloned()
                .collect();
            drop(map);
            for r in fenced {
                r.state.lock().fenced = true;
            }
            (added, dropped)
        };
        if added.is_empty() && dropped.is_empty() {
            return;
        }
        tracing::info!(
            ?added,
            ?dropped,
            "fences updated from the coordinator's list of masters awaiting recovery"
        );
        for m in &dropped {
            let n = self.free_master(*m);
            if n > 0 {
                tracing::info!(master = %m, freed = n, "its recovery completed while this backup was away: replicas freed");
            }
        }
        self.save_fences();
    }

    /// `BackupGetReplicas`: fences `master`, lists its valid replicas and the newest digest
    /// among them. Open replicas below `min_epoch` are stale copies the master gave up on
    /// ([`replica_usable`]): neither listed nor a source of the digest.
    pub(crate) fn get_replicas(
        &self,
        master: ServerId,
        min_epoch: u64,
    ) -> BackupGetReplicasResponse {
        let (newly, mut list): (bool, Vec<Arc<Replica>>) = {
            let mut map = self.map.lock();
            let newly = map.fenced.insert(master);
            let list = map
                .replicas
                .iter()
                .filter(|(k, _)| k.0 == master)
                .map(|(_, r)| r.clone())
                .collect();
            (newly, list)
        };
        if newly {
            // Durable before the coordinator hears the listing (and recovery goes on).
            self.save_fences();
        }
        list.sort_by_key(|r| r.segment_id);
        let mut out = BackupGetReplicasResponse::default();
        for r in &list {
            let mut st = r.state.lock();
            st.fenced = true;
            if st.freed {
                continue;
            }
            if st.data.is_empty() {
                tracing::debug!(%master, segment = r.segment_id, "empty replica (nothing written yet) not listed");
                continue;
            }
            if !replica_usable(st.closed, st.epoch, min_epoch) {
                tracing::info!(%master, segment = r.segment_id, epoch = st.epoch, min_epoch, length = st.data.len(),
                    "stale open replica (its master gave up on it and recorded a higher epoch) not offered for recovery");
                continue;
            }
            match recovery::validate(&st.data, st.cert) {
                Ok(summary) => {
                    out.replicas.push(ReplicaInfo {
                        segment_id: r.segment_id,
                        length: st.cert.length,
                        closed: st.closed,
                    });
                    if let Some(segments) = summary.digest {
                        // Sorted by segment id: the last one found is the newest.
                        out.digest = Some(LogDigestInfo {
                            segment_id: r.segment_id,
                            segments,
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(%master, segment = r.segment_id, length = st.data.len(), error = %e,
                        "replica fails validation; not offered for recovery");
                }
            }
        }
        tracing::info!(%master, replicas = out.replicas.len(), digest = ?out.digest.as_ref().map(|d| d.segment_id),
            "master fenced; replicas listed for its recovery");
        out
    }

    /// `BackupGetRecoveryData`: appends the replica's entries of `ranges` to `out`.
    pub(crate) fn recovery_data(
        &self,
        master: ServerId,
        segment_id: u64,
        ranges: &[TabletRange],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let r = self.map.lock().replicas.get(&(master, segment_id)).cloned();
        let missing = || {
            refuse(
                Status::BACKUP_BAD_SEGMENT_ID,
                format!("this backup has no replica of segment {segment_id} of master {master}"),
            )
        };
        let r = r.ok_or_else(missing)?;
        let st = r.state.lock();
        if st.freed {
            return Err(missing());
        }
        recovery::filter_recovery_entries(&st.data, st.cert, ranges, out).map_err(|e| {
            tracing::error!(%master, segment = segment_id, error = %e, "replica asked for recovery fails validation");
            refuse(
                Status::BACKUP_MALFORMED_SEGMENT,
                format!(
                    "the replica of segment {segment_id} of master {master} fails validation \
                     ({e}): read the segment from another backup"
                ),
            )
        })
    }

    /// Writes every queued replica to its file (memory mode with a directory). Returns false if
    /// some write failed (those replicas are queued again).
    pub(crate) fn flush_pending(&self) -> bool {
        let _batch_lock = self.flushing.lock();
        self.unlink_freed();
        let batch = std::mem::take(&mut *self.pending.lock());
        let mut ok = true;
        for r in batch {
            ok &= self.flush_one(&r);
        }
        ok
    }

    fn flush_one(&self, r: &Arc<Replica>) -> bool {
        let mut io = r.io.lock();
        let (from, bytes, meta) = {
            let mut st = r.state.lock();
            st.queued = false;
            if st.freed {
                return true;
            }
            let len = st.data.len();
            let from = st.dirty_from.take().unwrap_or(len).min(len);
            (
                from,
                st.data[from..].to_vec(),
                (len as u32, st.cert, st.closed, st.epoch),
            )
        };
        match self.write_file(&mut io, r, from, &bytes, meta) {
            Ok(()) => {
                *self.disk_error.lock() = None;
                true
            }
            Err(e) => {
                let what = self.disk_failed(&e);
                tracing::warn!(master = %r.master, segment = r.segment_id, error = %e,
                    "{what}: cannot write a replica to its file; will retry");
                let mut st = r.state.lock();
                st.dirty_from = Some(st.dirty_from.map_or(from, |d| d.min(from)));
                if !st.queued && !st.freed {
                    st.queued = true;
                    drop(st);
                    self.pending.lock().push(r.clone());
                }
                false
            }
        }
    }

    /// The flusher thread's loop: flush what is queued, wait for more, until `stop`; then
    /// flush once more.
    pub(crate) fn run_flusher(&self) {
        loop {
            let failed = {
                let mut p = self.pending.lock();
                if p.is_empty() && !self.stop.load(Ordering::Acquire) {
                    self.wake.wait_for(&mut p, FLUSH_INTERVAL);
                }
                drop(p);
                !self.flush_pending()
            };
            if self.stop.load(Ordering::Acquire) {
                self.flush_pending();
                return;
            }
            if failed {
                // Back off instead of spinning on a failing disk.
                let mut p = self.pending.lock();
                if !self.stop.load(Ordering::Acquire) {
                    self.wake.wait_for(&mut p, FLUSH_INTERVAL);
                }
            }
        }
    }

    pub(crate) fn stop_flusher(&self) {
        self.stop.store(true, Ordering::Release);
        let _g = self.pending.lock();
        self.wake.notify_all();
    }

    pub(crate) fn stats(&self) -> BackupStats {
        let map = self.map.lock();
        let masters: HashSet<ServerId> = map.replicas.keys().map(|k| k.0).collect();
        BackupStats {
            replicas: map.replicas.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            masters: masters.len(),
            durability: self.config.durability,
            dir: self.config.dir.clone(),
            capacity_bytes: self.config.capacity_bytes,
            reserved_bytes: self.reserved.load(Ordering::Relaxed),
            disk_error: self.disk_error.lock().clone(),
        }
    }
}

/// Deletes a freed replica's file, if it has one.
fn delete_file(io: &mut Io) {
    if let Some(f) = io.file.take() {
        match std::fs::remove_file(f.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %f.path().display(), error = %e, "cannot delete a freed replica's file");
            }
        }
    }
}

fn fenced(master: ServerId) -> Refusal {
    refuse(
        Status::CALLER_NOT_IN_CLUSTER,
        format!(
            "master {master} was declared crashed and its replicas are being recovered: it must \
             stop serving and exit"
        ),
    )
}
