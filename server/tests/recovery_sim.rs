//! Seeded simulation of coordinator crash recovery with slow and dead backups (issue 15): the
//! real `coordinator::recovery::recover` drives a simulated cluster through the
//! [`ClusterIo`] seam, on a virtual clock.
//!
//! Each seed builds a cluster (3–8 servers, master + backup each), a table over them, and the
//! log of the server that crashes: segments `1..=S`, each on R random other backups, every
//! replica carrying the digest its segment had when it was the head (the head `S` is open, the
//! others closed). Each backup is healthy (answers in 0–50 ms), slow (answers after the
//! listing deadline for its first rounds, then in time), dead and hung (never answers), or dead
//! and refusing (the connection fails at once). Recovery runs round after round, as the
//! coordinator's recovery loop does, and the checker asserts:
//!
//! * **no acknowledged segment is lost**: every `RecoverTablets` names every segment `1..=S`,
//!   each with backups that do hold it — whatever answered or did not;
//! * **recovery completes when the data is available**: if every segment has a replica on a
//!   backup that is not dead, the crashed master's tablets are all served elsewhere once the
//!   slow backups answer; if not, nothing is replayed and the tablets wait;
//! * **a round waits one deadline, not one per backup**: the virtual time a round spends
//!   listing replicas is at most one listing deadline plus the slowest answer in time (the
//!   queries are concurrent); asking the backups one after another costs a deadline per slow or
//!   hung backup and fails this.
//!
//! `SIM_SEEDS` (default 300) seeds run; a failure prints its seed (`SIM_SEED=<n>` reruns one).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use faascache_protocol::msg::backup::{
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest, LogDigestInfo,
    ReplicaInfo,
};
use faascache_protocol::msg::control::{RecoverTabletsRequest, RecoverTabletsResponse};
use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::{ServerId, Services};
use faascache_server::coordinator::cluster_io::{ClusterIo, ControlSendError, TransitionError};
use faascache_server::coordinator::recovery::recover;
use faascache_server::coordinator::state::{Action, CoordError, CoordinatorState};
use faascache_transport::{CallError, Error as TransportError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ALL: Services = Services(Services::MASTER.0 | Services::BACKUP.0 | Services::REPLICATED.0);
/// Most recovery rounds a seed runs.
const ROUNDS: usize = 12;
/// Slow backups miss the listing deadline in at most this many first rounds.
const SLOW_ROUNDS: usize = 4;
/// The slowest answer of a healthy backup.
const HEALTHY_MAX: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Healthy(Duration),
    /// Misses the deadline in rounds `< .0`, answers in `.1` after.
    Slow(usize, Duration),
    DeadHung,
    DeadRefusing,
}

#[derive(Debug)]
struct SimBackup {
    kind: Kind,
    /// Segments of the crashed master it holds.
    holds: BTreeSet<u64>,
}

/// A `RecoverTablets` received: the round, segment → backups named.
type Received = (usize, Vec<(u64, Vec<ServerId>)>);

struct Sim {
    state: Mutex<CoordinatorState>,
    backups: HashMap<String, SimBackup>,
    ids: HashMap<ServerId, String>,
    head: u64,
    round: AtomicUsize,
    /// Virtual time each round spent in `BackupGetReplicas`, and the longest deadline given.
    listing: Mutex<BTreeMap<usize, (Duration, Duration)>>,
    recovered: Mutex<Vec<Received>>,
}

impl Sim {
    fn kind(&self, locator: &str) -> Kind {
        self.backups
            .get(locator)
            .map_or(Kind::DeadRefusing, |b| b.kind)
    }

    /// The backup's listing: its replicas, the digest of the newest (its segment when head).
    fn listing(&self, b: &SimBackup) -> BackupGetReplicasResponse {
        BackupGetReplicasResponse {
            replicas: b
                .holds
                .iter()
                .map(|&segment_id| ReplicaInfo {
                    segment_id,
                    length: 4096,
                    closed: segment_id != self.head,
                })
                .collect(),
            digest: b.holds.iter().next_back().map(|&s| LogDigestInfo {
                segment_id: s,
                segments: (1..=s).collect(),
            }),
        }
    }
}

impl ClusterIo for Sim {
    fn read<T>(&self, f: impl FnOnce(&CoordinatorState) -> T) -> T {
        f(&self.state.lock().unwrap())
    }
    fn transition<T>(
        &self,
        f: impl FnOnce(&mut CoordinatorState) -> Result<(T, Vec<Action>), CoordError>,
    ) -> Result<(T, Vec<Action>), TransitionError> {
        let mut st = self.state.lock().unwrap();
        let (v, actions) = f(&mut st)?;
        st.check().expect("invariants hold after every transition");
        Ok((
            v,
            actions
                .into_iter()
                .filter(|a| *a != Action::Persist)
                .collect(),
        ))
    }
    fn send(&self, _actions: Vec<Action>) -> Result<(), ControlSendError> {
        Ok(())
    }
    /// The requests go out together: the call lasts until the last answer or the deadline.
    fn get_replicas(
        &self,
        locators: &[&str],
        _req: &BackupGetReplicasRequest,
        timeout: Duration,
    ) -> Vec<Result<BackupGetReplicasResponse, CallError>> {
        let round = self.round.load(Ordering::Acquire);
        let mut took = Duration::from_millis(1);
        let answers = locators
            .iter()
            .map(|&l| {
                let answered_after = match self.kind(l) {
                    Kind::Healthy(d) => Some(d),
                    Kind::Slow(until, d) if round >= until => Some(d),
                    Kind::Slow(..) | Kind::DeadHung => None,
                    Kind::DeadRefusing => {
                        return Err(CallError::Transport(TransportError::Connect {
                            locator: l.into(),
                            reason: "connection refused".into(),
                        }))
                    }
                };
                match answered_after {
                    Some(d) if d < timeout => {
                        took = took.max(d);
                        Ok(self.listing(&self.backups[l]))
                    }
                    _ => {
                        took = took.max(timeout);
                        Err(CallError::Transport(TransportError::Timeout(timeout)))
                    }
                }
            })
            .collect();
        let mut listing = self.listing.lock().unwrap();
        let e = listing.entry(round).or_default();
        e.0 += took;
        e.1 = e.1.max(timeout);
        answers
    }
    /// The recovery master reads each segment from the first backup named that holds it and is
    /// alive; a segment it cannot read fails its part.
    fn recover_tablets(
        &self,
        locator: &str,
        req: &RecoverTabletsRequest<'_>,
        timeout: Duration,
    ) -> Result<RecoverTabletsResponse, CallError> {
        let round = self.round.load(Ordering::Acquire);
        if matches!(self.kind(locator), Kind::DeadHung | Kind::DeadRefusing) {
            return Err(CallError::Transport(TransportError::Timeout(timeout)));
        }
        let mut got = Vec::new();
        for s in &req.segments {
            let named: Vec<ServerId> = s.backups.iter().map(|b| b.0).collect();
            let readable = s.backups.iter().any(|(_, l)| {
                self.backups.get(*l).is_some_and(|b| {
                    b.holds.contains(&s.segment_id)
                        && !matches!(b.kind, Kind::DeadHung | Kind::DeadRefusing)
                })
            });
            got.push((s.segment_id, named));
            if !readable {
                self.recovered.lock().unwrap().push((round, got));
                return Err(CallError::Transport(TransportError::Timeout(timeout)));
            }
        }
        self.recovered.lock().unwrap().push((round, got));
        Ok(RecoverTabletsResponse {
            objects: 1,
            bytes: 1,
            read_bytes: 1,
        })
    }
    fn recovery_done(
        &self,
        locator: &str,
        _req: &BackupRecoveryDoneRequest,
        timeout: Duration,
    ) -> Result<(), CallError> {
        match self.kind(locator) {
            Kind::DeadHung | Kind::DeadRefusing => {
                Err(CallError::Transport(TransportError::Timeout(timeout)))
            }
            _ => Ok(()),
        }
    }
}

/// Whether a backup of this kind is dead (never answers again).
fn dead(k: Kind) -> bool {
    matches!(k, Kind::DeadHung | Kind::DeadRefusing)
}

/// The replays the simulation saw, and the time each listing of replicas took.
fn check_replays(sim: &Sim, segments: u64) {
    // No acknowledged segment lost: every replay names a gapless prefix `1..=k` of the log,
    // each segment on backups that hold it; and the whole log unless each of the segments left
    // out is held by crashed backups only (declared crashed from round SLOW_ROUNDS on: with
    // every replica of the head lost, the newest surviving digest is the log).
    let lost = |seg: u64, round: usize| {
        round >= SLOW_ROUNDS
            && sim
                .backups
                .values()
                .filter(|b| b.holds.contains(&seg))
                .all(|b| dead(b.kind))
    };
    for (round, got) in sim.recovered.lock().unwrap().iter() {
        let named: Vec<u64> = got.iter().map(|s| s.0).collect();
        let k = named.len() as u64;
        assert_eq!(
            named,
            (1..=k).collect::<Vec<_>>(),
            "round {round}: a replay named {named:?}"
        );
        for seg in k + 1..=segments {
            assert!(
                lost(seg, *round),
                "round {round}: a replay of {named:?} left out segment {seg} of {segments}, which a backup that may still answer holds: acknowledged writes lost"
            );
        }
        for (seg, holders) in got {
            assert!(!holders.is_empty(), "segment {seg} named without a backup");
            for h in holders {
                let loc = &sim.ids[h];
                assert!(
                    sim.backups[loc].holds.contains(seg),
                    "segment {seg} said to be on {loc}, which does not hold it"
                );
            }
        }
    }
    // One deadline per round, not one per backup.
    for (round, (took, deadline)) in sim.listing.lock().unwrap().iter() {
        assert!(
            *took <= *deadline + HEALTHY_MAX,
            "round {round}: listing replicas took {took:?} of virtual time (deadline {deadline:?}): the backups were asked one after another"
        );
    }
}

fn run(seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let n = rng.gen_range(3..=8usize);
    let mut st = CoordinatorState::default();
    let ids: Vec<ServerId> = (0..n)
        .map(|i| {
            st.enlist(
                ALL,
                &format!("s{i}"),
                ServerId::NONE,
                Duration::from_secs(1),
            )
            .0
        })
        .collect();
    let (table, _) = st
        .create_table("t", rng.gen_range(1..=6u32))
        .expect("a table");
    st.confirm_crashed(ids[0]);
    let crashed = st
        .recoveries_pending()
        .pop()
        .expect("a recovery is pending");
    assert_eq!(crashed.id, ids[0]);

    // The survivors' behaviour; at least one is healthy (a recovery master must be reachable
    // for the simulation to say anything about completion).
    let mut backups = HashMap::new();
    for i in 1..n {
        let kind = match rng.gen_range(0..10) {
            _ if i == 1 => Kind::Healthy(Duration::from_millis(rng.gen_range(0..=50))),
            0..=4 => Kind::Healthy(Duration::from_millis(rng.gen_range(0..=50))),
            5..=6 => Kind::Slow(
                rng.gen_range(1..=SLOW_ROUNDS),
                Duration::from_millis(rng.gen_range(0..=50)),
            ),
            7..=8 => Kind::DeadHung,
            _ => Kind::DeadRefusing,
        };
        backups.insert(
            format!("s{i}"),
            SimBackup {
                kind,
                holds: BTreeSet::new(),
            },
        );
    }
    let segments = rng.gen_range(1..=12u64);
    let r = rng.gen_range(1..=3usize).min(n - 1);
    for seg in 1..=segments {
        let mut others: Vec<usize> = (1..n).collect();
        for _ in 0..r {
            let k = rng.gen_range(0..others.len());
            let b = others.swap_remove(k);
            backups
                .get_mut(&format!("s{b}"))
                .expect("a backup")
                .holds
                .insert(seg);
        }
    }
    let available = (1..=segments).all(|seg| {
        backups
            .values()
            .any(|b| !dead(b.kind) && b.holds.contains(&seg))
    });
    let sim = Sim {
        state: Mutex::new(st),
        ids: ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, format!("s{i}")))
            .collect(),
        backups,
        head: segments,
        round: AtomicUsize::new(0),
        listing: Mutex::new(BTreeMap::new()),
        recovered: Mutex::new(Vec::new()),
    };
    // Dead backups that answer nothing are recovery masters too (every up master is): the
    // coordinator learns of their death only later; the simulation marks them crashed after a
    // few rounds, as failure detection would.
    let mut done_at = None;
    for round in 0..ROUNDS {
        sim.round.store(round, Ordering::Release);
        if round == SLOW_ROUNDS {
            let mut st = sim.state.lock().unwrap();
            for (id, loc) in &sim.ids {
                if sim.backups.get(loc).is_some_and(|b| dead(b.kind)) {
                    st.confirm_crashed(*id);
                }
            }
        }
        let pending = sim.read(|st| st.recoveries_pending());
        if !pending.iter().any(|p| p.id == crashed.id) {
            break;
        }
        if recover(&sim, &crashed).is_ok() {
            done_at = Some(round);
            break;
        }
    }

    check_replays(&sim, segments);
    let owners: Vec<(ServerId, TabletState)> = sim.read(|st| {
        st.tablet_map(table)
            .expect("the table")
            .1
            .iter()
            .map(|(t, _)| (t.owner, t.state))
            .collect()
    });
    let crashed_owned = |o: &ServerId| {
        *o == crashed.id || sim.backups.get(&sim.ids[o]).is_some_and(|b| dead(b.kind))
    };
    if available {
        assert!(
            done_at.is_some(),
            "the log is available (every segment on a live backup) but recovery did not complete in {ROUNDS} rounds"
        );
        for (owner, state) in &owners {
            assert_ne!(*owner, crashed.id);
            if !crashed_owned(owner) {
                assert_eq!(*state, TabletState::Normal);
            }
        }
        let status = sim.read(|st| st.server(crashed.id).map(|s| s.status));
        assert!(
            status.is_none_or(|s| s == ServerStatus::Removed),
            "{status:?}"
        );
    } else if let Some(round) = done_at {
        // Only once the backups holding the missing segments were declared crashed.
        assert!(
            round >= SLOW_ROUNDS,
            "round {round}: recovery completed without a segment that only unreachable backups hold"
        );
    } else {
        assert!(
            owners.iter().any(|(o, _)| *o == crashed.id),
            "recovery did not complete but handed the tablets over"
        );
    }
}

#[test]
fn recovery_with_slow_and_dead_backups() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return run(seed);
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..n {
        let r = std::panic::catch_unwind(|| run(seed));
        if let Err(e) = r {
            eprintln!("simulation failed with seed {seed} (rerun: SIM_SEED={seed})");
            std::panic::resume_unwind(e);
        }
    }
}
