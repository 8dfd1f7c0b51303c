//! Seeded simulation of exactly-once mutations with client leases and completion records: the
//! real result table (`UnackedResults::run_tracked`), the real engine (completion records in
//! the log, the cleaner keeping the live ones), the real coordinator lease table, and the real
//! recovery path (the backups' filter over segment images, then replay) drive simulated clients
//! that lose replies and retry, freeze past their leases, depart, and a master that crashes.
//!
//! Invariants, checked at the end of every run:
//! * a retried rpc always gets its first result (never a second run);
//! * per counter: acknowledged increments ≤ value ≤ acknowledged + increments whose outcome
//!   became unknown (the client's lease expired while a reply was outstanding) — a double run
//!   breaks the upper bound;
//! * once every client has departed and the lease checker has run, the master keeps no
//!   results (the table is bounded by leases, not by history).
//!
//! `SIM_SEEDS` (default 40) seeds run; a failure prints its seed (`SIM_SEED=<n>` reruns one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use faascache_protocol::msg::control::TabletRange;
use faascache_server::backup::recovery::filter_recovery_entries;
use faascache_server::backup::{for_each_recovery_entry, RecoveryEntry};
use faascache_server::coordinator::leases::{LeaseTable, Renewal};
use faascache_server::master::exactly_once::{Attempt, Begin, Tracked, UnackedResults};
use faascache_storage::{
    Clock, Engine, EngineConfig, RejectRules, StorageError, TableOptions, Want,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TABLE: u32 = 1;
const TERM: u64 = 3_000;
const CLIENTS: usize = 6;
const STEPS: usize = 1_500;
/// The reply kind the master uses for an i64 increment.
const KIND_I64: u8 = 2;

#[derive(Debug)]
struct SimClock(AtomicU32);
impl Clock for SimClock {
    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Master {
    engine: Engine,
    results: Arc<UnackedResults>,
    /// Cluster time this master has heard of (0 = none: a fresh master).
    cluster_time: u64,
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        memory_bytes: 4 << 20,
        max_memory_bytes: 4 << 20,
        seglet_bytes: 4096,
        segment_bytes: 64 * 1024,
        hash_buckets: Some(4096),
        huge_pages: false,
        log_id: 1,
        background_cleaner: false,
        cleaner_reserve_seglets: None,
        warm_ahead_bytes: 0,
    }
}

impl Master {
    fn new(clock: &Arc<SimClock>) -> Master {
        let engine = Engine::with_clock(engine_config(), clock.clone()).unwrap();
        engine.create_table(TABLE, TableOptions::default()).unwrap();
        let results = Arc::new(UnackedResults::default());
        let r2 = results.clone();
        engine.set_completion_liveness(Arc::new(move |c| r2.is_live(c)));
        Master {
            engine,
            results,
            cluster_time: 0,
        }
    }

    /// A new master recovering this one's log, through the backups' filter and the replay rules.
    fn recover(&self, clock: &Arc<SimClock>, now: u64) -> Master {
        let m = Master::new(clock);
        let all = [TabletRange {
            table_id: u64::from(TABLE),
            start_hash: 0,
            end_hash: u64::MAX,
        }];
        for (_, bytes, cert) in self.engine.segment_images() {
            let mut out = Vec::new();
            filter_recovery_entries(&bytes, cert, &all, &mut out).unwrap();
            for_each_recovery_entry(&out, |e| match e {
                RecoveryEntry::Object(o) => {
                    m.engine
                        .write_versioned(o.table, o.key, o.value, o.version)
                        .unwrap();
                }
                RecoveryEntry::Tombstone(t) => {
                    m.engine
                        .remove_versioned(t.table, t.key, t.version)
                        .unwrap();
                }
                RecoveryEntry::SafeVersion(v) => m.engine.raise_version_floor(v).unwrap(),
                RecoveryEntry::Completion(c) => {
                    if m.results.replay(&c, now) {
                        m.engine.record_completion(&c).unwrap();
                    }
                }
            })
            .unwrap();
        }
        m
    }

    fn counter(&self, key: &[u8]) -> i64 {
        let mut v = Vec::new();
        match self.engine.read(TABLE, key, &RejectRules::NONE, &mut v) {
            Ok(_) => i64::from_le_bytes(v.as_slice().try_into().unwrap()),
            Err(StorageError::ObjectDoesntExist) => 0,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[derive(Debug)]
struct Outstanding {
    rpc_id: u64,
    /// An attempt went out whose answer was lost: it may have run.
    maybe_ran: bool,
    first: Option<i64>,
}

#[derive(Debug)]
struct Client {
    id: u64,
    expiration: u64,
    renewed_at: u64,
    next_rpc: u64,
    ack: u64,
    out: Option<Outstanding>,
    frozen_until: u64,
    key: Vec<u8>,
}

#[derive(Debug, Default)]
struct Counter {
    acked: i64,
    unknown: i64,
}

struct Sim {
    rng: SmallRng,
    now: u64,
    clock: Arc<SimClock>,
    coord: LeaseTable,
    next_id: u64,
    master: Master,
    clients: Vec<Client>,
    counters: HashMap<Vec<u8>, Counter>,
    crashes: u32,
    saved_answers: u32,
}

impl Sim {
    fn new_client(&mut self, key: Vec<u8>) -> Client {
        let id = self.next_id;
        self.next_id += 1;
        let expiration = self.coord.grant(id, self.now).unwrap();
        Client {
            id,
            expiration,
            renewed_at: self.now,
            next_rpc: 1,
            ack: 0,
            out: None,
            frozen_until: 0,
            key,
        }
    }

    /// The client renews its lease (or gets a new id when it is dead).
    fn renew(&mut self, i: usize) {
        let now = self.now;
        let id = self.clients[i].id;
        match self.coord.renew(id, now).unwrap() {
            Renewal::Renewed { expiration } => {
                let c = &mut self.clients[i];
                c.expiration = expiration;
                c.renewed_at = now;
            }
            Renewal::Dead => {
                let key = self.clients[i].key.clone();
                let fresh = self.new_client(key.clone());
                let old = std::mem::replace(&mut self.clients[i], fresh);
                if let Some(o) = old.out {
                    if o.maybe_ran {
                        self.counters.entry(key).or_default().unknown += 1;
                    } else {
                        // Never ran: it moves to the new id.
                        let c = &mut self.clients[i];
                        c.out = Some(Outstanding {
                            rpc_id: c.next_rpc,
                            maybe_ran: false,
                            first: None,
                        });
                        c.next_rpc += 1;
                    }
                }
            }
        }
    }

    /// The client sends (or resends) an increment of its counter.
    fn send(&mut self, i: usize) {
        let lost = self.rng.gen_bool(0.3);
        let now = self.now;
        let c = &mut self.clients[i];
        if c.out.is_none() {
            c.out = Some(Outstanding {
                rpc_id: c.next_rpc,
                maybe_ran: false,
                first: None,
            });
            c.next_rpc += 1;
        }
        let o = c.out.as_ref().unwrap();
        let t = Tracked {
            client: c.id,
            rpc_id: o.rpc_id,
            ack_id: c.ack,
            lease_expiration: c.expiration,
        };
        let (key, engine) = (c.key.clone(), &self.master.engine);
        let attempt = self.master.results.run_tracked(
            t,
            KIND_I64,
            TABLE,
            faascache_storage::key_hash(&key),
            self.master.cluster_time,
            now,
            |rpc| {
                engine
                    .increment_i64_rpc(TABLE, &key, 1, &RejectRules::NONE, Some(rpc))
                    .map(|(v, version)| (version, v.to_le_bytes()))
            },
        );
        let c = &mut self.clients[i];
        let o = c.out.as_mut().unwrap();
        let value = match attempt {
            Attempt::Ran(Ok(out)) | Attempt::Saved(out) => {
                if matches!(attempt, Attempt::Saved(_)) {
                    self.saved_answers += 1;
                }
                i64::from_le_bytes(out.value)
            }
            Attempt::Ran(Err(e)) => panic!("increment failed: {e}"),
            Attempt::Refused(Begin::Expired) => return self.renew(i),
            Attempt::Refused(Begin::InProgress) => return,
            Attempt::Refused(b) => panic!("refused: {b:?}"),
        };
        if let Some(first) = o.first {
            assert_eq!(value, first, "a retry got another result: run twice");
        }
        if lost {
            o.maybe_ran = true;
            o.first = Some(value);
            return;
        }
        c.ack = o.rpc_id;
        c.out = None;
        self.counters.entry(key).or_default().acked += 1;
    }

    fn checker_round(&mut self) {
        for _ in 0..8 {
            let m = &self.master;
            let ids = m
                .results
                .lease_candidates(m.cluster_time, self.now, 2_000, 8192);
            if ids.is_empty() {
                break;
            }
            let exp = self.coord.check(&ids, self.now);
            self.master.cluster_time = self.master.cluster_time.max(self.now);
            let m = &self.master;
            m.results
                .apply_lease_checks(&ids, &exp, m.cluster_time, self.now);
        }
        self.master.results.prune_departed(self.master.cluster_time);
        self.master.engine.completions_changed();
    }

    fn step(&mut self) {
        self.now += self.rng.gen_range(0..150);
        self.clock
            .0
            .store((self.now / 1000) as u32, Ordering::Relaxed);
        let i = self.rng.gen_range(0..self.clients.len());
        let frozen = self.clients[i].frozen_until > self.now;
        match self.rng.gen_range(0..100) {
            0..=59 if !frozen => {
                if self.now - self.clients[i].renewed_at > TERM / 2 {
                    self.renew(i);
                }
                self.send(i);
            }
            60..=64 if !frozen => {
                // Freeze past the lease (a paused sandbox).
                self.clients[i].frozen_until = self.now + TERM + self.rng.gen_range(0..2_000);
            }
            65..=67 if !frozen && self.clients[i].out.is_none() => {
                // Departs (releases its lease); a new function instance takes its counter.
                self.coord.release(self.clients[i].id, self.now);
                let key = self.clients[i].key.clone();
                let fresh = self.new_client(key);
                self.clients[i] = fresh;
            }
            68..=79 => self.master.cluster_time = self.master.cluster_time.max(self.now),
            80..=87 => self.checker_round(),
            88..=93 => {
                self.master.engine.clean_with(Want::Combined);
            }
            94 => {
                let m = self.master.recover(&self.clock, self.now);
                self.master = m;
                self.crashes += 1;
            }
            _ => {}
        }
    }
}

fn run(seed: u64) {
    let clock = Arc::new(SimClock(AtomicU32::new(0)));
    let mut sim = Sim {
        rng: SmallRng::seed_from_u64(seed),
        now: 0,
        clock: clock.clone(),
        coord: LeaseTable::new(TERM, 1 << 20, 1, 0),
        next_id: 1,
        master: Master::new(&clock),
        clients: Vec::new(),
        counters: HashMap::new(),
        crashes: 0,
        saved_answers: 0,
    };
    for k in 0..CLIENTS {
        let c = sim.new_client(format!("counter-{k}").into_bytes());
        sim.clients.push(c);
    }
    for _ in 0..STEPS {
        sim.step();
    }
    // Every client finishes its outstanding increment (thawed, renewing as needed), departs.
    sim.now += TERM * 2;
    for i in 0..sim.clients.len() {
        sim.clients[i].frozen_until = 0;
        for _ in 0..100 {
            if sim.clients[i].out.is_none() {
                break;
            }
            if sim.now - sim.clients[i].renewed_at > TERM / 2 {
                sim.renew(i);
            }
            sim.send(i);
        }
        assert!(
            sim.clients[i].out.is_none(),
            "seed {seed}: client {i} never got an answer"
        );
        sim.coord.release(sim.clients[i].id, sim.now);
    }
    for (key, c) in &sim.counters {
        let v = sim.master.counter(key);
        assert!(
            c.acked <= v && v <= c.acked + c.unknown,
            "seed {seed}: {}: value {v}, {} acknowledged, {} unknown (crashes {})",
            String::from_utf8_lossy(key),
            c.acked,
            c.unknown,
            sim.crashes
        );
    }
    // All leases ended: the checker frees every result.
    sim.master.cluster_time = sim.now;
    sim.now += 3_000;
    sim.checker_round();
    assert_eq!(
        (sim.master.results.len(), sim.master.results.clients()),
        (0, 0),
        "seed {seed}: results of ended leases are freed"
    );
    eprintln!(
        "seed {seed}: {} crashes, {} retries answered from saved results, counters {:?}",
        sim.crashes,
        sim.saved_answers,
        sim.counters
            .values()
            .map(|c| (c.acked, c.unknown))
            .collect::<Vec<_>>()
    );
}

#[test]
fn increments_count_once_through_lost_replies_lease_expiry_cleaning_and_crashes() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return run(seed);
    }
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        run(seed);
    }
}
