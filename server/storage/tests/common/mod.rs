//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use faascache_storage::{Clock, Engine, EngineConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU32);

impl Clock for ManualClock {
    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl ManualClock {
    pub fn advance(&self, secs: u32) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

/// A small engine: 1 KiB seglets, 16 KiB segments, `memory` bytes, no background cleaner.
pub fn small_config(memory: usize) -> EngineConfig {
    EngineConfig {
        memory_bytes: memory,
        max_memory_bytes: memory * 4,
        seglet_bytes: 1024,
        segment_bytes: 16 * 1024,
        hash_buckets: Some(4096),
        huge_pages: false,
        log_id: 1,
        background_cleaner: false,
        cleaner_reserve_seglets: None,
        warm_ahead_bytes: 0,
    }
}

pub fn small_engine(memory: usize) -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let e = Engine::with_clock(small_config(memory), clock.clone()).expect("engine");
    (e, clock)
}
