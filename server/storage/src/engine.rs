//! The object store of one master: tables of key-value objects kept in the log and indexed
//! by the hash table. This is the only module that knows what an object is.
//!
//! How a read stays safe while the cleaner moves and frees memory: every access to an
//! object's bytes — read, write, remove, relocate — happens with the hash-table stripe of its
//! key locked. The cleaner relocates a live object under that lock and frees a segment only
//! after relocating every live object in it; a reader that found the old address held the lock
//! before the cleaner took it, so it has finished. No epochs or reference counts are needed.
//!
//! Versions come from one master-wide counter (`next_version`), so a key that is removed and
//! created again never reuses a version, and every overwrite gets a larger one. Each new head
//! segment records the counter (a `SafeVersion` entry) so recovery restores it.

use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::cleaner::{self, CleanReport, CleanerCounters, Fate, LogEntryHandlers, Relocator, Want};
use super::config::{EngineConfig, HASH_LOCK_STRIPES, MAX_KEY_LEN, MAX_VALUE_LEN};

use super::error::{ConfigError, ResizeError, StorageError};
use super::format::{self, le16, le32, le64, EntryType, TableStat, TombstoneView};
use super::hashtable::{Found, HashTable, StripeGuard};
use super::log::{AppendError, HeadMetadata, Log};

mod cache;
mod cleaning;
mod multi;
mod put;
mod replication;
mod rpc;
pub use replication::LogSegment;
pub use rpc::{CompletionLiveness, Rpc};

use faascache_protocol::Status;

/// Identifies a table. Tables are numbered by the coordinator.
pub type TableId = u32;

/// The 64-bit hash of a key (the protocol's: tablets are ranges of it, so clients compute it too).
pub use faascache_protocol::key_hash;
/// Conditions under which an operation is refused (the protocol's reject rules; checked by
/// [`check_rules`]).
pub use faascache_protocol::RejectRules;

#[inline]
fn tag(hash: u64, table: TableId) -> u16 {
    (hash as u16) ^ (table as u16).wrapping_mul(0x9e37)
}

/// Checks reject rules against the object's version (`None`: no object). Version rules apply
/// only to an object that exists.
pub fn check_rules(rules: &RejectRules, version: Option<u64>) -> Result<(), StorageError> {
    let Some(v) = version else {
        return if rules.doesnt_exist {
            Err(StorageError::ObjectDoesntExist)
        } else {
            Ok(())
        };
    };
    if rules.exists {
        return Err(StorageError::ObjectExists { version: v });
    }
    if rules.version_le_given && v <= rules.given_version {
        return Err(StorageError::WrongVersion { current: v });
    }
    if rules.version_ne_given && v != rules.given_version {
        return Err(StorageError::WrongVersion { current: v });
    }
    Ok(())
}

/// Versions handed to the engine from outside (migration, recovery replay) must be below this:
/// the master-wide counter moves past every stored version, and ordinary writes then add one at a
/// time, so a version near `u64::MAX` would make the counter wrap and versions go backwards.
/// 2^62 versions is more than any log can use (146 years at a billion writes a second).
pub const MAX_VERSION: u64 = 1 << 62;

/// The version the counter must move to after storing `version`, or the error for a version at
/// or above [`MAX_VERSION`].
fn checked_next_version(version: u64) -> Result<u64, StorageError> {
    if version >= MAX_VERSION {
        return Err(StorageError::VersionOverflow { version });
    }
    Ok(version + 1)
}

/// Options of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Under memory pressure the cleaner may drop clean objects of this table (a cache of a
    /// backing store) instead of relocating them. Dirty objects are never dropped.
    pub evictable: bool,
}

/// Table ids are small integers chosen by the coordinator: hash them by multiplication
/// instead of SipHash (this map is consulted on every operation).
type TableHasher = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Debug, Default)]
struct TableInfo {
    evictable: AtomicBool,
    objects: AtomicI64,
    bytes: AtomicI64,
}

/// An object returned by [`Engine::enumerate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumeratedObject {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Version.
    pub version: u64,
}

/// One batch of an enumeration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enumeration {
    /// Objects in this batch.
    pub objects: Vec<EnumeratedObject>,
    /// Cursor to pass to the next call, `None` when the range is exhausted.
    pub next_cursor: Option<u64>,
}

/// One write of [`Engine::multi_write`].
#[derive(Clone, Copy, Debug)]
pub struct WriteOp<'a> {
    /// Table.
    pub table: TableId,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Conditions.
    pub rules: RejectRules,
}

/// Counters of the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// Bytes the log may use now.
    pub budget_bytes: usize,
    /// Bytes of seglets allocated.
    pub allocated_bytes: usize,
    /// Bytes of live entries (objects and tombstones still needed).
    pub live_bytes: usize,
    /// Live objects.
    pub objects: u64,
    /// Bytes of keys and values of live objects.
    pub key_value_bytes: u64,
    /// Segments in memory.
    pub segments: usize,
    /// Hash-table bytes (primary and overflow buckets).
    pub hash_table_bytes: usize,
    /// Cleaner counters.
    pub cleaner: CleanerCounters,
    /// Clean cache objects re-appended at the head on a hit ([`Engine::promote_if_old`]).
    pub promoted: u64,
}

/// What [`Engine::remove_clean`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveClean {
    /// Removed; the version it had.
    Removed(u64),
    /// Not removed: dirty (not yet in the backing store).
    Dirty,
    /// Not removed: at another version than asked.
    Changed,
    /// There was no such object.
    Absent,
}

/// Source of the timestamps stored in objects: seconds, monotonic enough for cleaning ages.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since an arbitrary epoch, below 2^31.
    fn now(&self) -> u32;
}

/// Wall-clock seconds since 2020-01-01.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u32 {
        // Seconds are all the cleaner needs: the coarse clock is several times cheaper than
        // the precise one, and this is read on every write.
        let secs = super::sys::coarse_unix_seconds();
        (secs.saturating_sub(1_577_836_800) as u32) & !format::DIRTY_BIT
    }
}

pub(crate) struct Inner {
    pub(crate) log: Log,
    ht: HashTable,
    tables: RwLock<HashMap<TableId, Arc<TableInfo>, TableHasher>>,
    next_version: AtomicU64,
    clock: Arc<dyn Clock>,
    pub(crate) counters: cleaner::AtomicCounters,
    /// Serialises cleaning passes (background thread, forced cleaning, resize).
    pub(crate) cleaning: Mutex<()>,
    wake: Condvar,
    wake_lock: Mutex<bool>,
    stop: AtomicBool,
    /// Seglets a pending shrink wants free; the cleaner evicts while it is set.
    shrink_target: AtomicU64,
    /// Promotion on hits (`engine/cache.rs`): the horizon and when it was computed.
    promotion: Promotion,
    /// Decides whether a completion record is still needed (the master's exactly-once table);
    /// without one every record is dead.
    completion_live: RwLock<Option<CompletionLiveness>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("log", &self.log.config)
            .finish_non_exhaustive()
    }
}

/// The storage engine of one master. Cheap to share: all methods take `&self` and may be
/// called from any thread.
#[derive(Debug)]
pub struct Engine {
    inner: Arc<Inner>,
    cleaner: Option<JoinHandle<()>>,
    /// Faults in the free log memory the next segments will use (the arena's `warm_up`).
    warmer: Option<JoinHandle<()>>,
}

/// The promotion horizon (cached) and the count of promotions (`engine/cache.rs`).
#[derive(Debug, Default)]
pub(crate) struct Promotion {
    /// Engine-clock second at which `horizon` was computed (0: never).
    computed_at: AtomicU32,
    /// Objects written before this second are promoted on a hit.
    horizon: AtomicU32,
    promoted: AtomicU64,
}

impl Promotion {
    pub(crate) fn promoted(&self) -> u64 {
        self.promoted.load(Ordering::Relaxed)
    }
}

/// What [`Engine::stat`] tells about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStat {
    /// Its version.
    pub version: u64,
    /// Bytes of its value.
    pub value_len: usize,
    /// Whether it is clean (in its backing store).
    pub clean: bool,
}

struct Existing {
    found: Found,
    version: u64,
    entry_len: usize,
    kv_len: usize,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Engine {
    /// Starts an engine with the system clock.
    pub fn new(config: EngineConfig) -> Result<Engine, ConfigError> {
        Engine::with_clock(config, Arc::new(SystemClock))
    }

    /// Starts an engine with an injected clock (tests and simulation).
    pub fn with_clock(config: EngineConfig, clock: Arc<dyn Clock>) -> Result<Engine, ConfigError> {
        let background = config.background_cleaner;
        let config_warm_ahead = config.warm_ahead_bytes;
        let buckets = config.buckets();
        let log = Log::new(config)?;
        let inner = Arc::new(Inner {
            log,
            ht: HashTable::new(buckets, HASH_LOCK_STRIPES.min(buckets)),
            tables: RwLock::new(HashMap::default()),
            next_version: AtomicU64::new(1),
            clock,
            counters: Default::default(),
            cleaning: Mutex::new(()),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
            stop: AtomicBool::new(false),
            shrink_target: AtomicU64::new(u64::MAX),
            promotion: Promotion::default(),
            completion_live: RwLock::new(None),
        });
        let cleaner = if background {
            let inner2 = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("faascache-cleaner".into())
                    .spawn(move || inner2.cleaner_loop())
                    .map_err(|e| ConfigError(format!("cannot start the cleaner thread: {e}")))?,
            )
        } else {
            None
        };
        let warm_ahead = config_warm_ahead;
        let warmer = if background && warm_ahead > 0 {
            let inner2 = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("faascache-warm".into())
                    .spawn(move || inner2.log.arena.warm_loop(warm_ahead, &inner2.stop))
                    .map_err(|e| {
                        ConfigError(format!("cannot start the log warm-up thread: {e}"))
                    })?,
            )
        } else {
            None
        };
        Ok(Engine {
            inner,
            cleaner,
            warmer,
        })
    }

    /// Creates a table.
    pub fn create_table(&self, table: TableId, opts: TableOptions) -> Result<(), StorageError> {
        let mut t = self.inner.tables.write();
        if t.contains_key(&table) {
            return Err(StorageError::TableExists(table));
        }
        let info = TableInfo {
            evictable: AtomicBool::new(opts.evictable),
            ..Default::default()
        };
        t.insert(table, Arc::new(info));
        Ok(())
    }

    /// Marks a table evictable (a cache) or not.
    pub fn set_evictable(&self, table: TableId, evictable: bool) -> Result<(), StorageError> {
        self.inner
            .table(table)?
            .evictable
            .store(evictable, Ordering::Relaxed);
        Ok(())
    }

    /// Drops a table and all its objects; returns how many objects were removed. No
    /// tombstones are written: a dropped table's objects are ignored by recovery.
    pub fn drop_table(&self, table: TableId) -> Result<u64, StorageError> {
        let info = self
            .inner
            .tables
            .write()
            .remove(&table)
            .ok_or(StorageError::UnknownTable(table))?;
        let inner = &self.inner;
        let mut removed = 0;
        let mut addrs = Vec::new();
        for b in 0..inner.ht.buckets() {
            let mut g = inner.ht.lock_bucket(b, 0);
            addrs.clear();
            g.all(&mut addrs);
            for &addr in &addrs {
                let Some(len) =
                    inner
                        .log
                        .with_entry_prefix(addr, format::OBJECT_FIXED, |h, body| {
                            (h.ty == EntryType::Object && le32(body, 4) == table)
                                .then_some(h.total_len())
                        })
                else {
                    continue;
                };
                let f = g.find_addr(addr).expect("listed above");
                g.remove(f.slot);
                inner.log.add_live(addr, -(len as i64));
                removed += 1;
            }
        }
        drop(info);
        Ok(removed)
    }

    /// Tables on this engine.
    pub fn tables(&self) -> Vec<TableId> {
        let mut v: Vec<TableId> = self.inner.tables.read().keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Reads an object: appends its value to `out` and returns its version.
    pub fn read(
        &self,
        table: TableId,
        key: &[u8],
        rules: &RejectRules,
        out: &mut Vec<u8>,
    ) -> Result<u64, StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        inner.check_table(table)?;
        let fixed = format::OBJECT_FIXED + key.len();
        inner.with_object(table, key, |found| {
            let Some((addr, h, version)) = found else {
                check_rules(rules, None)?;
                return Err(StorageError::ObjectDoesntExist);
            };
            check_rules(rules, Some(version))?;
            inner
                .log
                .read_body(addr, &h, fixed, h.body_len - fixed, out);
            Ok(version)
        })
    }

    /// Writes an object (dirty, if its table is a cache); returns the new version.
    pub fn write(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        rules: &RejectRules,
    ) -> Result<u64, StorageError> {
        self.write_with(table, key, value, rules, false)
    }

    /// Writes an object that is already in the backing store (a cache fill): it is clean and
    /// may be evicted under memory pressure if its table is evictable.
    pub fn write_clean(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        rules: &RejectRules,
    ) -> Result<u64, StorageError> {
        self.write_with(table, key, value, rules, true)
    }

    /// Stores an object at a version chosen elsewhere — an object migrated from another
    /// master, or replayed by recovery — unless this engine already holds the key at that
    /// version or a newer one. Returns whether it was stored. Versions handed out afterwards
    /// are larger than `version`. The object is dirty (see [`Engine::write_versioned_as`]).
    pub fn write_versioned(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        version: u64,
    ) -> Result<bool, StorageError> {
        self.write_versioned_as(table, key, value, version, false)
    }

    /// [`Engine::write_versioned`] keeping the object's clean/dirty state (`clean`: it is in
    /// the backing store). A clean copy at the version already held dirty replaces it: the
    /// same version was written back (a recovery may replay the dirty copy first).
    pub fn write_versioned_as(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        version: u64,
        clean: bool,
    ) -> Result<bool, StorageError> {
        check_key(key)?;
        self.check_value(key, value)?;
        // The counter must move past `version`; a version from the network (migration, replay)
        // may be anything. Refusing those at or above `MAX_VERSION` keeps the counter's later
        // `fetch_add`s from ever wrapping (no real log reaches 2^62 versions).
        let next = checked_next_version(version)?;
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        let cleaned = clean
            && existing
                .as_ref()
                .is_some_and(|e| e.version == version && !e.found.clean);
        if !cleaned && existing.as_ref().is_some_and(|e| e.version >= version) {
            inner.next_version.fetch_max(next, Ordering::Relaxed);
            return Ok(false);
        }
        inner.put_locked(
            &mut g,
            &info,
            table,
            key,
            value,
            existing,
            clean,
            Some(version),
            None,
        )?;
        Ok(true)
    }

    /// Rewrites an object at its current version as clean — e.g. with the store's ETag once a
    /// write-back upload finished — if it is still at `version`. Returns whether it did (false:
    /// absent or written meanwhile, so it stays dirty and queued).
    pub fn replace_clean(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        version: u64,
    ) -> Result<bool, StorageError> {
        check_key(key)?;
        self.check_value(key, value)?;
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        match existing {
            Some(e) if e.version == version => {
                inner.put_locked(
                    &mut g,
                    &info,
                    table,
                    key,
                    value,
                    Some(e),
                    true,
                    Some(version),
                    None,
                )?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Removes an object only if it is clean (in its backing store) and, when `version` is
    /// given, still at that version: how an invalidation drops a cached copy without losing a
    /// write that is not yet in the store.
    pub fn remove_clean(
        &self,
        table: TableId,
        key: &[u8],
        version: Option<u64>,
    ) -> Result<RemoveClean, StorageError> {
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        let Some(old) = existing else {
            return Ok(RemoveClean::Absent);
        };
        if !old.found.clean {
            return Ok(RemoveClean::Dirty);
        }
        if version.is_some_and(|v| v != old.version) {
            return Ok(RemoveClean::Changed);
        }
        inner
            .remove_locked(&mut g, &info, table, key, old, None)
            .map(RemoveClean::Removed)
    }

    fn write_with(
        &self,
        table: TableId,
        key: &[u8],
        value: &[u8],
        rules: &RejectRules,
        clean: bool,
    ) -> Result<u64, StorageError> {
        check_key(key)?;
        self.check_value(key, value)?;
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        check_rules(rules, existing.as_ref().map(|e| e.version))?;
        inner.put_locked(
            &mut g, &info, table, key, value, existing, clean, None, None,
        )
    }

    /// Removes an object; returns the version removed (`None` if there was none).
    pub fn remove(
        &self,
        table: TableId,
        key: &[u8],
        rules: &RejectRules,
    ) -> Result<Option<u64>, StorageError> {
        let mut refused = None;
        let r = self.remove_if(table, key, |v| match check_rules(rules, Some(v)) {
            Ok(()) => true,
            Err(e) => {
                refused = Some(e);
                false
            }
        });
        match (r, refused) {
            (_, Some(e)) => Err(e),
            (Ok(None), None) => {
                check_rules(rules, None)?;
                Ok(None)
            }
            (r, None) => r,
        }
    }

    /// Removes the object if `pred(version)` holds; `Ok(None)` if absent or refused.
    fn remove_if(
        &self,
        table: TableId,
        key: &[u8],
        pred: impl FnOnce(u64) -> bool,
    ) -> Result<Option<u64>, StorageError> {
        let inner = &self.inner;
        let (info, mut g, existing) = inner.locate(table, key)?;
        let Some(old) = existing else { return Ok(None) };
        if !pred(old.version) {
            return Ok(None);
        }
        inner
            .remove_locked(&mut g, &info, table, key, old, None)
            .map(Some)
    }

    /// Adds `delta` to the 8-byte little-endian i64 stored at the key (created as 0 if
    /// absent); returns the new value and version.
    pub fn increment_i64(
        &self,
        table: TableId,
        key: &[u8],
        delta: i64,
        rules: &RejectRules,
    ) -> Result<(i64, u64), StorageError> {
        self.increment_i64_rpc(table, key, delta, rules, None)
    }

    /// Adds `delta` to the 8-byte little-endian f64 stored at the key (created as 0.0 if
    /// absent); returns the new value and version.
    pub fn increment_f64(
        &self,
        table: TableId,
        key: &[u8],
        delta: f64,
        rules: &RejectRules,
    ) -> Result<(f64, u64), StorageError> {
        self.increment_f64_rpc(table, key, delta, rules, None)
    }

    /// Marks an object clean (written back to its backing store) if it is still at `version`.
    /// Returns whether it was marked.
    pub fn mark_clean(
        &self,
        table: TableId,
        key: &[u8],
        version: u64,
    ) -> Result<bool, StorageError> {
        let (_, mut g, existing) = self.inner.locate(table, key)?;
        match existing {
            Some(e) if e.version == version => {
                g.set_clean(e.found.slot, true);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// An object's version, value length and whether it is clean, without copying its value
    /// (`None` if it does not exist).
    pub fn stat(&self, table: TableId, key: &[u8]) -> Result<Option<ObjectStat>, StorageError> {
        let (_, _g, existing) = self.inner.locate(table, key)?;
        Ok(existing.map(|e| ObjectStat {
            version: e.version,
            value_len: e.kv_len.saturating_sub(key.len()),
            clean: e.found.clean,
        }))
    }

    /// Whether the object is dirty (`None` if it does not exist).
    pub fn is_dirty(&self, table: TableId, key: &[u8]) -> Result<Option<bool>, StorageError> {
        let (_, _g, existing) = self.inner.locate(table, key)?;
        Ok(existing.map(|e| !e.found.clean))
    }

    /// The log memory budget now and the most [`Engine::resize`] may grow it to (the space
    /// reserved at start), bytes. Cheap: two loads.
    pub fn memory_bytes(&self) -> (usize, usize) {
        let (arena, seglet) = (&self.inner.log.arena, self.inner.log.config.seglet_bytes);
        (arena.budget() * seglet, arena.total_seglets() * seglet)
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        let (segs, _) = inner.log.segments();
        let live: usize = segs.iter().map(|s| inner.log.live_bytes(s)).sum();
        let tables = inner.tables.read();
        let cfg = &inner.log.config;
        EngineStats {
            budget_bytes: inner.log.arena.budget() * cfg.seglet_bytes,
            allocated_bytes: inner.log.arena.in_use() * cfg.seglet_bytes,
            live_bytes: live,
            objects: tables
                .values()
                .map(|t| t.objects.load(Ordering::Relaxed).max(0) as u64)
                .sum(),
            key_value_bytes: tables
                .values()
                .map(|t| t.bytes.load(Ordering::Relaxed).max(0) as u64)
                .sum(),
            segments: segs.len(),
            hash_table_bytes: inner.ht.bytes() + inner.ht.overflow_buckets() * 64,
            cleaner: inner.counters.snapshot(),
            promoted: inner.promotion.promoted(),
        }
    }

    /// The largest value that can be stored with a key of `key_len` bytes.
    pub fn max_value_len(&self, key_len: usize) -> usize {
        let room = self
            .inner
            .log
            .max_entry_body()
            .saturating_sub(format::OBJECT_FIXED + key_len);
        room.min(MAX_VALUE_LEN)
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.check_value_len(key, value.len())
    }

    fn check_value_len(&self, key: &[u8], len: usize) -> Result<(), StorageError> {
        let max = self.max_value_len(key.len());
        if len > max {
            return Err(StorageError::ValueTooLarge { len, max });
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.poke_cleaner();
        if let Some(t) = self.cleaner.take() {
            let _ = t.join();
        }
        if let Some(t) = self.warmer.take() {
            let _ = t.join();
        }
    }
}

fn check_key(key: &[u8]) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

#[inline]
fn entry_len(body_len: usize) -> usize {
    1 + format::length_bytes(body_len) + body_len
}

/// The object's version if `body` is an object of `table` with key `key`.
#[inline]
fn object_matches(body: &[u8], table: TableId, key: &[u8]) -> Option<u64> {
    if le32(body, 4) != table || le16(body, 20) as usize != key.len() {
        return None;
    }
    (&body[format::OBJECT_FIXED..format::OBJECT_FIXED + key.len()] == key).then(|| le64(body, 8))
}

impl Inner {
    fn table(&self, table: TableId) -> Result<Arc<TableInfo>, StorageError> {
        self.tables
            .read()
            .get(&table)
            .cloned()
            .ok_or(StorageError::UnknownTable(table))
    }

    fn check_table(&self, table: TableId) -> Result<(), StorageError> {
        if self.tables.read().contains_key(&table) {
            Ok(())
        } else {
            Err(StorageError::UnknownTable(table))
        }
    }

    /// Checks the key and the table, locks the key's hash-table stripe and finds the object:
    /// the common start of every operation that may change it.
    fn locate(
        &self,
        table: TableId,
        key: &[u8],
    ) -> Result<(Arc<TableInfo>, StripeGuard<'_>, Option<Existing>), StorageError> {
        check_key(key)?;
        let info = self.table(table)?;
        let h = key_hash(key);
        let g = self.ht.lock(h, tag(h, table));
        let existing = self.lookup(&g, table, key);
        Ok((info, g, existing))
    }

    /// Under the key's stripe, `f` with the object `key` of `table` if there is one: its entry's
    /// address, header and version. Only the entry's fixed part and key are looked at (a
    /// value of many seglets is never gathered); `f` copies what it wants with `read_body`.
    fn with_object<R>(
        &self,
        table: TableId,
        key: &[u8],
        f: impl FnOnce(Option<(u64, format::EntryHeader, u64)>) -> R,
    ) -> R {
        let h = key_hash(key);
        let g = self.ht.lock(h, tag(h, table));
        let fixed = format::OBJECT_FIXED + key.len();
        let mut hit = None;
        g.find(|addr| {
            let found = self.log.with_entry_prefix(addr, fixed, |h, prefix| {
                object_matches(prefix, table, key).map(|v| (h, v))
            });
            found.map(|(h, v)| hit = Some((addr, h, v))).is_some()
        });
        let r = f(hit);
        drop(g);
        r
    }

    fn lookup(&self, g: &StripeGuard<'_>, table: TableId, key: &[u8]) -> Option<Existing> {
        let mut info = None;
        let fixed = format::OBJECT_FIXED + key.len();
        let found = g.find(|addr| {
            // The fixed part and key only: a large entry is not gathered to be compared.
            self.log.with_entry_prefix(addr, fixed, |h, prefix| {
                let Some(version) = object_matches(prefix, table, key) else {
                    return false;
                };
                info = Some((version, h.total_len(), h.body_len - format::OBJECT_FIXED));
                true
            })
        })?;
        let (version, entry_len, kv_len) = info.expect("set with found");
        Some(Existing {
            found,
            version,
            entry_len,
            kv_len,
        })
    }

    /// Writes a tombstone for `old` (and the completion record of `rpc`, in the same append) and
    /// drops the object; returns the removed version. The caller holds the key's stripe.
    fn remove_locked(
        &self,
        g: &mut StripeGuard<'_>,
        info: &TableInfo,
        table: TableId,
        key: &[u8],
        old: Existing,
        rpc: Option<&Rpc>,
    ) -> Result<u64, StorageError> {
        let now = self.clock.now();
        let t = TombstoneView {
            table,
            segment_id: self.log.segment_of(old.found.addr),
            version: old.version,
            timestamp: now,
            key,
        };
        let rec = rpc.map(|r| r.record(table, key, now, Status::OK, old.version, None));
        SCRATCH.with(|s| {
            let mut body = s.borrow_mut();
            format::encode_tombstone(&mut body, &t);
            let addr =
                self.append_tracked(EntryType::Tombstone, &[&body[..]], now, rec.as_ref())?;
            self.log.add_live(addr, entry_len(body.len()) as i64);
            Ok::<(), StorageError>(())
        })?;
        g.remove(old.found.slot);
        self.log.add_live(old.found.addr, -(old.entry_len as i64));
        info.objects.fetch_sub(1, Ordering::Relaxed);
        info.bytes.fetch_sub(old.kv_len as i64, Ordering::Relaxed);
        Ok(old.version)
    }

    fn append(&self, ty: EntryType, body: &[u8], now: u32) -> Result<u64, StorageError> {
        let r = self.log.append(ty, body, Some(now), self, now);
        self.append_result(r, body.len())
    }

    /// Counts and maps an append's outcome; wakes the cleaner when memory runs low.
    fn append_result<T>(&self, r: Result<T, AppendError>, len: usize) -> Result<T, StorageError> {
        match r {
            Ok(a) => {
                if self.log.arena.in_use() + self.low_water() > self.log.arena.budget() {
                    self.poke_cleaner();
                }
                Ok(a)
            }
            Err(AppendError::NoSpace) => {
                self.counters.no_space.fetch_add(1, Ordering::Relaxed);
                self.poke_cleaner();
                Err(StorageError::NoSpace)
            }
            Err(AppendError::TooLarge) => Err(StorageError::ValueTooLarge {
                len,
                max: self.log.max_entry_body(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
