//! Seeded simulation of replication: the real [`ReplicaManager`] (the sans-I/O core of a
//! master's replication) drives simulated backups over a lossy network, while a model log takes
//! writes, rolls heads, and a model cleaner relocates data into survivor segments and drops
//! cleaned ones. Backups crash (losing their replicas) and new ones join.
//!
//! Backups crash down to one (fewer than R: the log is then under-replicated, kept on every
//! backup up) and join again (R is restored in the background).
//!
//! After **every** message delivered (except while a lost backup's replicas are being re-made
//! and some segment had a single complete replica: k replicas survive k − 1 lost backups together
//! with the master), the checker
//! runs the coordinator's recovery rule (`coordinator::recovery::choose_log`, the code recovery
//! runs) on what the live backups hold — the digest of the replica with the highest segment id,
//! every segment it names — and asserts that every acknowledged write is in that log (no acknowledged write is
//! ever lost, at any instant) and that no segment the digest names is missing.
//!
//! Backups the master gave up on (a lost message) keep their replicas: stale, open copies. So
//! the checker also lets random subsets of backups be unreachable (the rest answering): recovery
//! may then wait, but if it completes, its log must hold every acknowledged write. Backups list
//! replicas as the real ones do: open replicas below the master's recorded replica epoch are
//! left out (`replica_usable`); the simulated coordinator records an epoch when the manager
//! asks (`epoch_to_record`), over the same lossy network.
//!
//! `SIM_SEEDS` (default 50) seeds run; a failure prints its seed (`SIM_SEED=<n>` reruns one).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use faascache_protocol::msg::backup::{
    replica_usable, BackupGetReplicasResponse, LogDigestInfo, ReplicaInfo,
};
use faascache_protocol::msg::ServerId;
use faascache_server::coordinator::recovery::{choose_log, LogLocation, Unreachable};
use faascache_server::master::replication::{Action, ReplicaManager, SegmentInfo, WriteOutcome};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CAP: u32 = 4096;
const DIGEST_END: u32 = 64;
const ME: ServerId = ServerId(1);

#[derive(Debug, Clone)]
struct Seg {
    len: u32,
    closed: bool,
    digest: Option<Vec<u64>>,
    identity: u64,
}

/// The master's log, as far as replication cares.
#[derive(Debug, Default)]
struct Log {
    segs: BTreeMap<u64, Seg>,
    head: u64,
    next_id: u64,
    /// Every digest ever written, by head id (backups hold the same bytes).
    digests: HashMap<u64, Vec<u64>>,
    /// Object → every (segment, end offset) it has lived at.
    places: Vec<Vec<(u64, u32)>>,
    acked: Vec<bool>,
}

impl Log {
    fn new() -> Log {
        let mut l = Log {
            next_id: 1,
            ..Log::default()
        };
        l.roll();
        l
    }

    fn roll(&mut self) {
        if let Some(h) = self.segs.get_mut(&self.head) {
            h.closed = true;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut names: Vec<u64> = self.segs.keys().copied().collect();
        names.push(id);
        self.digests.insert(id, names.clone());
        self.segs.insert(
            id,
            Seg {
                len: DIGEST_END,
                closed: false,
                digest: Some(names),
                identity: id,
            },
        );
        self.head = id;
    }

    fn write(&mut self, rng: &mut SmallRng) -> usize {
        let n = rng.gen_range(16..400);
        if self.segs[&self.head].len + n > CAP {
            self.roll();
        }
        let h = self.segs.get_mut(&self.head).unwrap();
        h.len += n;
        self.places.push(vec![(self.head, h.len)]);
        self.acked.push(false);
        self.places.len() - 1
    }

    /// Level-2 cleaning of one closed segment the manager reports complete: its objects move
    /// to a new closed survivor, the segment leaves the log, a new head drops it from the
    /// digest.
    fn clean(&mut self, mgr: &ReplicaManager, rng: &mut SmallRng) {
        let cands: Vec<u64> = self
            .segs
            .iter()
            .filter(|(id, s)| **id != self.head && s.closed && mgr.is_complete(**id))
            .map(|(id, _)| *id)
            .collect();
        if cands.is_empty() {
            return;
        }
        let victim = cands[rng.gen_range(0..cands.len())];
        let surv = self.next_id;
        self.next_id += 1;
        let mut len = 32;
        for p in self.places.iter_mut() {
            if p.last().is_some_and(|&(s, _)| s == victim) {
                len += 20;
                p.push((surv, len));
            }
        }
        self.segs.insert(
            surv,
            Seg {
                len,
                closed: true,
                digest: None,
                identity: surv,
            },
        );
        self.segs.remove(&victim);
        self.roll();
    }

    fn snapshot(&self) -> Vec<SegmentInfo> {
        self.segs
            .iter()
            .map(|(&id, s)| SegmentInfo {
                id,
                head: id == self.head,
                closed: s.closed,
                length: s.len,
                checksum: s.len,
                // As the replicator does: only the head's digest is passed.
                digest: (id == self.head)
                    .then(|| s.digest.clone().map(|d| (d, DIGEST_END)))
                    .flatten(),
                identity: s.identity,
            })
            .collect()
    }
}

/// A backup: segment → (length, closed, epoch).
#[derive(Debug, Default, Clone)]
struct Backup {
    replicas: BTreeMap<u64, (u32, bool, u64)>,
}

struct Sim {
    rng: SmallRng,
    log: Log,
    mgr: ReplicaManager,
    backups: BTreeMap<ServerId, Backup>,
    next_backup: u64,
    loss: f64,
    checks: u64,
    /// A backup crashed while some segment had one complete replica: until re-replication
    /// completes, a master crash would lose data (one replica survives no backup loss together
    /// with the master), so no checks.
    degraded: bool,
    /// The replica epoch the coordinator recorded for the master.
    recorded: u64,
    /// Recoveries with some backups unreachable that completed (and were checked).
    partial_checks: u64,
}

impl Sim {
    /// What the backups not in `unreachable` answer to `BackupGetReplicas` (as a backup does:
    /// usable replicas only, the digest of the newest), and the longest usable replica of each
    /// segment among them.
    fn listings(&self, unreachable: &BTreeSet<ServerId>) -> (Vec<Listing>, BTreeMap<u64, u32>) {
        let mut have: BTreeMap<u64, u32> = BTreeMap::new();
        let mut listings = Vec::new();
        for (id, b) in self
            .backups
            .iter()
            .filter(|(id, _)| !unreachable.contains(id))
        {
            let mut digest: Option<LogDigestInfo> = None;
            let mut replicas = Vec::new();
            for (&seg, &(len, closed, epoch)) in &b.replicas {
                if !replica_usable(closed, epoch, self.recorded) {
                    continue;
                }
                let e = have.entry(seg).or_insert(0);
                *e = (*e).max(len);
                replicas.push(ReplicaInfo {
                    segment_id: seg,
                    length: len,
                    closed,
                });
                if len >= DIGEST_END {
                    if let Some(names) = self.log.digests.get(&seg) {
                        digest = Some(LogDigestInfo {
                            segment_id: seg,
                            segments: names.clone(),
                        });
                    }
                }
            }
            listings.push((
                *id,
                format!("backup-{}", id.0),
                BackupGetReplicasResponse { replicas, digest },
            ));
        }
        (listings, have)
    }

    /// Every acknowledged write is in the log `choose_log` found.
    fn assert_complete(
        &self,
        loc: &LogLocation,
        have: &BTreeMap<u64, u32>,
        unreachable: &BTreeSet<ServerId>,
    ) {
        let head = loc.segments.last().map_or(0, |s| s.0);
        let names: BTreeSet<u64> = loc.segments.iter().map(|s| s.0).collect();
        for (i, places) in self.log.places.iter().enumerate() {
            if !self.log.acked[i] {
                continue;
            }
            let found = places
                .iter()
                .any(|(seg, end)| names.contains(seg) && have.get(seg).is_some_and(|l| l >= end));
            assert!(
                found,
                "acknowledged write {i} (at {places:?}) is not in the recoverable log (digest of {head}: {names:?}; replicas: {have:?}; unreachable: {unreachable:?}; recorded epoch {})",
                self.recorded
            );
        }
    }

    fn check(&mut self) {
        if self.degraded {
            return;
        }
        self.checks += 1;
        // What each backup would answer to `BackupGetReplicas`, fed to the coordinator's rule
        // (`choose_log`, the code recovery runs).
        let none = BTreeSet::new();
        let (listings, have) = self.listings(&none);
        if !listings.iter().any(|l| l.2.digest.is_some()) {
            assert!(
                !self.log.acked.iter().any(|&a| a),
                "acknowledged writes but no digest on any backup"
            );
            return;
        }
        let loc = match choose_log(ME, &listings, &[]) {
            Ok(l) => l,
            Err(e) => panic!("recovery would wait forever: {e}"),
        };
        self.assert_complete(&loc, &have, &none);
        // Some backups unreachable: recovery may wait, but what it completes with is complete.
        let ids: Vec<ServerId> = self.backups.keys().copied().collect();
        {
            let unreachable: BTreeSet<ServerId> = ids
                .iter()
                .copied()
                .filter(|_| self.rng.gen_bool(0.5))
                .collect();
            if unreachable.is_empty() || unreachable.len() == ids.len() {
                return;
            }
            let (listings, have) = self.listings(&unreachable);
            let why: Vec<Unreachable> = unreachable
                .iter()
                .map(|&backup| Unreachable {
                    backup,
                    reason: "simulated".into(),
                })
                .collect();
            if let Ok(loc) = choose_log(ME, &listings, &why) {
                self.partial_checks += 1;
                self.assert_complete(&loc, &have, &unreachable);
            }
        }
    }

    fn deliver(&mut self, a: &Action) -> WriteOutcome {
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("deliver {a:?}");
        }
        match *a {
            Action::Free { backup, segment } => {
                if let Some(b) = self.backups.get_mut(&backup) {
                    if !self.rng.gen_bool(self.loss) {
                        b.replicas.remove(&segment);
                    }
                }
                WriteOutcome::Ok
            }
            Action::Write {
                backup,
                segment,
                from,
                to,
                open,
                close,
                epoch,
                ..
            } => {
                let lost = self.rng.gen_bool(self.loss);
                let Some(b) = self.backups.get_mut(&backup) else {
                    return WriteOutcome::BackupDown;
                };
                // A lost request never arrives; a lost reply arrives but is not seen.
                let lost_request = lost && self.rng.gen_bool(0.5);
                if !lost_request {
                    match b.replicas.get_mut(&segment) {
                        None if open => {
                            b.replicas.insert(segment, (to, close, epoch));
                        }
                        None => return WriteOutcome::Refused,
                        Some(r) if from > r.0 => return WriteOutcome::Refused,
                        Some(r) => {
                            r.0 = r.0.max(to);
                            r.1 |= close;
                            r.2 = r.2.max(epoch);
                        }
                    }
                }
                if lost {
                    WriteOutcome::BackupDown
                } else {
                    WriteOutcome::Ok
                }
            }
        }
    }

    /// One sync round; `true` if it ended synced (writes before it are then acknowledged).
    fn sync(&mut self) -> bool {
        let pending: Vec<usize> = (0..self.log.acked.len())
            .filter(|&i| !self.log.acked[i])
            .collect();
        for _ in 0..50 {
            self.mgr.observe(&self.log.snapshot());
            let ids: Vec<ServerId> = self.backups.keys().copied().collect();
            let actions = self.mgr.next_actions(&ids);
            for a in &actions {
                let out = self.deliver(a);
                if matches!(a, Action::Write { .. }) {
                    self.mgr.on_result(a, out);
                }
                self.check();
            }
            // The coordinator records a raised epoch (the request or its reply may be lost:
            // then the manager asks again).
            let due = self.mgr.epoch_to_record();
            if let Some(e) = due {
                if !self.rng.gen_bool(self.loss) {
                    self.recorded = self.recorded.max(e);
                }
                if !self.rng.gen_bool(self.loss) && self.recorded >= e {
                    self.mgr.epoch_recorded(e);
                }
                self.check();
            }
            if actions.is_empty() && due.is_none() {
                break;
            }
        }
        if self.mgr.synced() {
            for i in pending {
                self.log.acked[i] = true;
            }
            self.check();
            true
        } else {
            false
        }
    }

    fn step(&mut self) {
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!(
                "log head {} segs {:?}",
                self.log.head,
                self.log.segs.keys().collect::<Vec<_>>()
            );
        }
        match self.rng.gen_range(0..100) {
            0..=59 => {
                for _ in 0..self.rng.gen_range(1..6) {
                    self.log.write(&mut self.rng);
                }
                self.sync();
            }
            60..=74 => {
                self.log.clean(&self.mgr, &mut self.rng);
                self.sync();
            }
            75..=84 if self.backups.len() > 1 && self.mgr.synced() => {
                // A backup crashes (at most one at a time: the log is synced before the next),
                // down to one backup: with fewer than R left the log is under-replicated.
                let ids: Vec<ServerId> = self.backups.keys().copied().collect();
                let dead = ids[self.rng.gen_range(0..ids.len())];
                self.backups.remove(&dead);
                self.degraded = self.mgr.health().min_copies <= 1;
                self.check();
                self.mgr.backup_down(dead);
                while !self.sync() {}
                self.degraded = false;
                self.check();
            }
            85..=92 => {
                self.next_backup += 1;
                self.backups
                    .insert(ServerId(100 + self.next_backup), Backup::default());
            }
            _ => {
                self.sync();
            }
        }
    }
}

fn run(seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let r = rng.gen_range(1..=3);
    // Fewer backups than R too: the log starts under-replicated.
    let nb = rng.gen_range(1..=r + 3);
    let mut backups = BTreeMap::new();
    for i in 0..nb as u64 {
        backups.insert(ServerId(100 + i), Backup::default());
    }
    let loss = [0.0, 0.02, 0.1][rng.gen_range(0..3)];
    let mut sim = Sim {
        rng,
        log: Log::new(),
        mgr: ReplicaManager::new(ME, r),
        backups,
        next_backup: nb as u64,
        loss,
        checks: 0,
        degraded: false,
        recorded: 0,
        partial_checks: 0,
    };
    let steps = 300;
    for _ in 0..steps {
        sim.step();
    }
    while !sim.sync() {}
    assert!(sim.log.acked.iter().all(|&a| a));
    assert!(sim.checks > 0);
    PARTIAL.fetch_add(sim.partial_checks, Ordering::Relaxed);
    EPOCHS.fetch_add(sim.recorded, Ordering::Relaxed);
}

/// What a backup answers: its id, locator and listing.
type Listing = (ServerId, String, BackupGetReplicasResponse);

static PARTIAL: AtomicU64 = AtomicU64::new(0);
static EPOCHS: AtomicU64 = AtomicU64::new(0);

#[test]
fn no_acknowledged_write_is_ever_unrecoverable() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return run(seed);
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    for seed in 0..n {
        let r = std::panic::catch_unwind(|| run(seed));
        if let Err(e) = r {
            eprintln!("simulation failed with seed {seed} (rerun: SIM_SEED={seed})");
            std::panic::resume_unwind(e);
        }
    }
    // The checks with backups unreachable did run, and stale replicas did arise.
    let (partial, epochs) = (
        PARTIAL.load(Ordering::Relaxed),
        EPOCHS.load(Ordering::Relaxed),
    );
    eprintln!("{n} seeds: {partial} recoveries with unreachable backups checked; epochs recorded: {epochs}");
    assert!(partial > 0 && epochs > 0);
}
