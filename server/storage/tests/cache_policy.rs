//! The eviction policy of cache tables, measured: a zipfian (s = 0.99) read load over a working
//! set three times the memory, each miss filled like a read-through (`write_clean`), with and
//! without promotion of hits (`Engine::promote_if_old`). Dirty objects written first must all
//! survive. Prints both hit ratios and an exact LRU's on the same key sequence for reference;
//! promotion must beat plain FIFO eviction (deterministic: seeded keys, a manual clock, one
//! thread; the numbers are in docs/benchmarks.md).

mod common;

use common::ManualClock;
use faascache_storage::{Engine, EngineConfig, RejectRules, StorageError, TableOptions};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const VALUE: usize = 1000;
const MEMORY: usize = 8 << 20;

/// Zipfian sampler over `n` ranks by inverse CDF.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 1..=n {
            sum += 1.0 / (r as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

struct Run {
    hit_ratio: f64,
    resident: u64,
    evicted: u64,
    promoted: u64,
}

fn engine() -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    clock.advance(1);
    let cfg = EngineConfig {
        hash_buckets: Some(1 << 15),
        ..common::small_config(MEMORY)
    };
    let e = Engine::with_clock(cfg, clock.clone()).expect("engine");
    e.create_table(1, TableOptions { evictable: true }).unwrap();
    (e, clock)
}

fn fill(e: &Engine, key: &[u8], value: &[u8]) {
    for _ in 0..8 {
        match e.write_clean(1, key, value, &RejectRules::must_not_exist()) {
            Ok(_) | Err(StorageError::ObjectExists { .. }) => return,
            Err(StorageError::NoSpace) => {
                e.clean();
            }
            Err(err) => panic!("fill: {err}"),
        }
    }
    panic!("a fill kept failing with NoSpace: {:?}", e.stats());
}

fn run(promote: bool) -> Run {
    let (e, clock) = engine();
    let value = vec![7u8; VALUE];
    // Objects the memory holds at the cleaner's 85 % live target, roughly.
    let capacity = MEMORY * 85 / 100 / (VALUE + 40);
    let keys = 3 * capacity;
    // Dirty objects (not yet written back): never evicted.
    for i in 0..200 {
        e.write(
            1,
            format!("dirty{i}").as_bytes(),
            &value,
            &RejectRules::NONE,
        )
        .unwrap();
    }
    let zipf = Zipf::new(keys, 0.99);
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let ops = 40 * keys;
    let (mut hits, mut counted) = (0u64, 0u64);
    let mut out = Vec::new();
    for op in 0..ops {
        if op % 500 == 0 {
            clock.advance(1);
        }
        let k = format!("k{}", zipf.sample(&mut rng));
        out.clear();
        let hit = match e.read(1, k.as_bytes(), &RejectRules::NONE, &mut out) {
            Ok(version) => {
                if promote {
                    e.promote_if_old(1, k.as_bytes(), version).unwrap();
                }
                true
            }
            Err(StorageError::ObjectDoesntExist) => {
                fill(&e, k.as_bytes(), &value);
                false
            }
            Err(err) => panic!("read: {err}"),
        };
        // The second half, once the cache is warm.
        if op >= ops / 2 {
            counted += 1;
            hits += u64::from(hit);
        }
    }
    for i in 0..200 {
        let k = format!("dirty{i}");
        out.clear();
        e.read(1, k.as_bytes(), &RejectRules::NONE, &mut out)
            .unwrap_or_else(|err| panic!("dirty object {k} lost: {err}"));
        assert_eq!(e.is_dirty(1, k.as_bytes()).unwrap(), Some(true));
    }
    let s = e.stats();
    Run {
        hit_ratio: hits as f64 / counted as f64,
        resident: s.objects,
        evicted: s.cleaner.evicted,
        promoted: s.promoted,
    }
}

/// The hit ratio of an exact LRU cache of `capacity` objects on the same key sequence, for
/// reference.
fn lru(keys: usize, capacity: usize) -> f64 {
    use std::collections::{BTreeMap, HashMap};
    let zipf = Zipf::new(keys, 0.99);
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let ops = 40 * keys;
    let (mut by_time, mut at): (BTreeMap<u64, usize>, HashMap<usize, u64>) = Default::default();
    let (mut hits, mut counted) = (0u64, 0u64);
    for op in 0..ops as u64 {
        let k = zipf.sample(&mut rng);
        let hit = match at.insert(k, op) {
            Some(t) => {
                by_time.remove(&t);
                true
            }
            None => false,
        };
        by_time.insert(op, k);
        if at.len() > capacity {
            let (&t, &old) = by_time.iter().next().unwrap();
            by_time.remove(&t);
            at.remove(&old);
        }
        if op >= ops as u64 / 2 {
            counted += 1;
            hits += u64::from(hit);
        }
    }
    hits as f64 / counted as f64
}

#[test]
fn promotion_keeps_hot_objects_and_dirty_ones_are_never_evicted() {
    let fifo = run(false);
    let promoted = run(true);
    let capacity = MEMORY * 85 / 100 / (VALUE + 40);
    eprintln!(
        "zipf 0.99, working set 3x memory: hit ratio FIFO {:.3} ({} evicted, {} resident), with promotion {:.3} ({} evicted, {} promoted, {} resident); exact LRU of {capacity} objects {:.3}",
        fifo.hit_ratio, fifo.evicted, fifo.resident, promoted.hit_ratio, promoted.evicted, promoted.promoted, promoted.resident, lru(3 * capacity, capacity)
    );
    assert!(
        fifo.evicted > 0 && promoted.evicted > 0,
        "no memory pressure"
    );
    assert_eq!(fifo.promoted, 0);
    assert!(promoted.promoted > 0);
    assert!(
        promoted.hit_ratio > fifo.hit_ratio + 0.01,
        "promotion {:.3} vs FIFO {:.3}",
        promoted.hit_ratio,
        fifo.hit_ratio
    );
}
