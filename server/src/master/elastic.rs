//! Live resize of a master's log memory (issue 18, `ResizeMemory`): the RPC's work, run on the
//! master's one resize worker (a shrink cleans and evicts, which takes milliseconds to seconds —
//! never on a dispatch core).
//!
//! What a shrink may drop: clean objects of backed tables (the store has them; a later read
//! reads them through). What it never drops: dirty objects (written but not yet uploaded, and
//! every object of an ephemeral table, which is never uploaded) and objects of plain tables —
//! the engine's eviction only takes clean objects of evictable tables. If those do not fit the
//! new size, the engine leaves the budget as it was and the caller gets the bytes still needed.

use std::sync::atomic::Ordering;
use std::time::Instant;

use faascache_protocol::msg::elastic::ResizeMemoryResponse;
use faascache_storage::ResizeError;

use faascache_protocol::msg::ServerId;

use super::Master;

/// A `RetireServer` for another server id (an earlier process at this address).
#[derive(Debug, thiserror::Error)]
#[error("this server is {me}, not {asked}: not retiring (the request is for another process)")]
pub struct NotThisServer {
    /// This server's id.
    pub me: ServerId,
    /// The id in the request.
    pub asked: ServerId,
}

/// How long a retired server keeps serving after `RetireServer` before it exits: its backup
/// replicas stay readable while their masters (which see it leave the server list within about
/// a second) write new replicas elsewhere, and a recovery already reading them finishes.
pub const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Master {
    /// The coordinator drained this server (it owns no tablet) and is removing it: stop
    /// heartbeating (a removed server that heartbeats would re-enlist) and exit after
    /// [`RETIRE_GRACE`]. `Err` if `id` is not this server's id (a retire meant for an earlier
    /// process at this address). Idempotent.
    pub fn retire(&self, id: ServerId) -> Result<(), NotThisServer> {
        let me = self.server_id();
        if id != me {
            return Err(NotThisServer { me, asked: id });
        }
        if self.retiring.set(Instant::now()).is_ok() {
            // Its log holds no tablet any more, and the coordinator frees its replicas next:
            // nothing is written to backups from now on.
            self.replication.stop();
            tracing::warn!(server = %me, grace = ?RETIRE_GRACE, tablets = self.ownership.read().served_ranges(), "drained and retired by the coordinator: heartbeats stopped; exiting after the grace period");
        }
        Ok(())
    }

    /// When this server was told to retire, if it was.
    pub fn retiring_since(&self) -> Option<Instant> {
        self.retiring.get().copied()
    }

    /// Retired, and the grace period is over: the process should exit.
    pub fn retired(&self) -> bool {
        self.retiring_since()
            .is_some_and(|t| t.elapsed() >= RETIRE_GRACE)
    }

    /// Change the log memory budget to `bytes` now (see the module docs). When the write-back
    /// limit follows the memory (no `--write-back-limit`), it becomes a quarter of the new
    /// budget.
    pub fn resize(&self, bytes: u64) -> Result<ResizeMemoryResponse, ResizeError> {
        let started = Instant::now();
        let before = self.engine.stats();
        let requested = usize::try_from(bytes).unwrap_or(usize::MAX);
        let result = self.engine.resize(requested);
        let after = self.engine.stats();
        let (budget, max) = self.engine.memory_bytes();
        let elapsed_us = started.elapsed().as_micros() as u64;
        let evicted = after.cleaner.evicted - before.cleaner.evicted;
        let relocated = after.cleaner.bytes_relocated - before.cleaner.bytes_relocated;
        match &result {
            Ok(()) => tracing::info!(
                from = before.budget_bytes,
                to = budget,
                live = after.live_bytes,
                evicted,
                relocated,
                elapsed_us,
                "log memory resized"
            ),
            Err(e) => tracing::warn!(
                from = before.budget_bytes,
                requested = bytes,
                evicted,
                relocated,
                elapsed_us,
                error = %e,
                "log memory resize refused"
            ),
        }
        result?;
        if self.write_back_follows_memory.load(Ordering::Relaxed) {
            self.writeback.set_limit(budget as u64 / 4);
        }
        Ok(ResizeMemoryResponse {
            previous_bytes: before.budget_bytes as u64,
            budget_bytes: budget as u64,
            max_bytes: max as u64,
            live_bytes: after.live_bytes as u64,
            evicted_objects: evicted,
            relocated_bytes: relocated,
            elapsed_us,
        })
    }

    /// The write-back limit is a quarter of the memory budget and follows resizes (the
    /// server was started without `--write-back-limit`).
    pub fn write_back_follows_memory(&self) {
        self.write_back_follows_memory
            .store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faascache_protocol::RejectRules;
    use faascache_storage::{Engine, EngineConfig, TableOptions};

    fn has(e: &Engine, table: u32, key: String) -> bool {
        e.read(table, key.as_bytes(), &RejectRules::NONE, &mut Vec::new())
            .is_ok()
    }

    const MIB: usize = 1 << 20;

    fn master(memory: usize, max: usize) -> Master {
        let mut cfg = EngineConfig::with_memory(memory);
        cfg.max_memory_bytes = max;
        cfg.background_cleaner = false;
        cfg.warm_ahead_bytes = 0;
        Master::new(Engine::new(cfg).unwrap(), "tcp", "block")
    }

    #[test]
    fn grows_at_once_and_shrinks_by_evicting_only_clean_cache_objects() {
        let m = master(64 * MIB, 256 * MIB);
        m.write_back_follows_memory();
        let r = m.resize(256 * MIB as u64).unwrap();
        assert_eq!((r.previous_bytes, r.budget_bytes), (64 << 20, 256 << 20));
        assert_eq!(r.max_bytes, 256 << 20);
        let e = &m.engine;
        e.create_table(1, TableOptions { evictable: true }).unwrap();
        e.create_table(2, TableOptions::default()).unwrap();
        let v = vec![7u8; 64 * 1024];
        // 96 MiB of clean cache objects — a third filled from the store (written clean), two
        // thirds written dirty and uploaded since (marked clean: the log entry keeps its dirty
        // bit) — 16 MiB of dirty ones, 8 MiB in a plain table.
        for i in 0..1536u32 {
            let key = format!("c{i}");
            if i % 3 == 0 {
                e.write_clean(1, key.as_bytes(), &v, &RejectRules::NONE)
                    .unwrap();
            } else {
                let version = e.write(1, key.as_bytes(), &v, &RejectRules::NONE).unwrap();
                assert!(e.mark_clean(1, key.as_bytes(), version).unwrap());
            }
        }
        for i in 0..256u32 {
            e.write(1, format!("d{i}").as_bytes(), &v, &RejectRules::NONE)
                .unwrap();
        }
        for i in 0..128u32 {
            e.write(2, format!("p{i}").as_bytes(), &v, &RejectRules::NONE)
                .unwrap();
        }
        let r = m.resize(64 * MIB as u64).unwrap();
        assert_eq!(r.budget_bytes, 64 << 20);
        assert!(r.evicted_objects > 0, "{r:?}");
        assert!(e.stats().allocated_bytes <= 64 * MIB);
        for i in 0..256u32 {
            assert!(has(e, 1, format!("d{i}")), "dirty d{i} dropped");
        }
        for i in 0..128u32 {
            assert!(has(e, 2, format!("p{i}")), "plain p{i} dropped");
        }
        assert_eq!(m.writeback.gauges().limit, 16 << 20);
        // Dirty and plain data (24 MiB) cannot fit in 32 MiB with the cleaner's reserve and a
        // head: refused, budget unchanged, nothing dropped.
        let err = m.resize(24 * MIB as u64).unwrap_err();
        assert!(
            err.to_string().contains("still needed") || err.to_string().contains("at least"),
            "{err}"
        );
        assert_eq!(e.memory_bytes().0, 64 * MIB);
        for i in 0..256u32 {
            assert!(has(e, 1, format!("d{i}")));
        }
        // Above the reservation: refused with the reason.
        let err = m.resize(1 << 30).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }
}
