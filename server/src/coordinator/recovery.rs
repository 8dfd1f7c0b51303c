//! Crash recovery, the coordinator's side (a thread of the RPC shell; the decisions are in
//! [`super::state`], the I/O goes through [`ClusterIo`] so that a test or a simulator can drive
//! it): for each crashed master whose tablets wait for recovery,
//!
//! 1. ask every up backup for its replicas of that master (`BackupGetReplicas`, which also
//!    fences the master there: a zombie can no longer get a write acknowledged);
//! 2. take the log digest from the replica with the highest segment id, and check that every
//!    segment it names has a replica — if one is missing the recovery **waits** (its backup may
//!    be restarting) and says so in the log every few seconds, never replaying a partial log;
//! 3. split the crashed master's tablets over the up masters ([`CoordinatorState::plan_recovery`],
//!    persisted) and send each its part (`RecoverTablets`), all in parallel;
//! 4. as each recovery master answers, wait until the crashed master's lease is surely over
//!    ([`ClusterIo::master_lease_wait`]: the last grant + lease + margin; the wait overlaps the
//!    replay and is usually over by then), then record it as the owner (persisted) and tell it
//!    to serve; a part that failed is planned again on the next round;
//! 5. when nothing is left, tell the backups to free the crashed master's replicas and remove
//!    it from the server list.
//!
//! A crashed master that did not replicate (`--replicas 0`) has nothing to recover: its tablets
//! are handed out empty at once, with a warning that their data is lost.
//!
//! [`CoordinatorState::plan_recovery`]: super::state::CoordinatorState::plan_recovery

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::{
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest,
};
use faascache_protocol::msg::control::{RecoverTabletsRequest, RecoverySegment};
use faascache_protocol::msg::{ServerId, Services};
use faascache_transport::CallError;

use super::cluster_io::{ClusterIo, TransitionError};
use super::state::ServerRecord;

/// How often pending recoveries are looked at.
pub const RECOVERY_TICK: Duration = Duration::from_millis(200);
/// Most recovery masters one crashed master's tablets are split over.
pub const MAX_PARTITIONS: usize = 8;
/// Timeout of `BackupGetReplicas`.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one `RecoverTablets` (a large master takes a while).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(600);

/// A backup that did not answer `BackupGetReplicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The backup.
    pub backup: ServerId,
    /// Why (the call's error).
    pub reason: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.backup, self.reason)
    }
}

/// "; unreachable backups: a (why), b (why)" or nothing.
fn unreachable_suffix(u: &[Unreachable]) -> String {
    if u.is_empty() {
        return String::new();
    }
    let list: Vec<String> = u.iter().map(Unreachable::to_string).collect();
    format!("; unreachable backups: {}", list.join(", "))
}

/// Why the crashed master's log cannot be replayed yet (recovery waits and tries again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// No backup is up to ask.
    #[error("no backup is up")]
    NoBackups,
    /// No answering backup holds a replica with a log digest.
    #[error("no backup holds a log digest of {master} ({answered} backups answered{}): its head's backups may be down or restarting", unreachable_suffix(.unreachable))]
    NoDigest {
        /// The crashed master.
        master: ServerId,
        /// How many backups answered.
        answered: usize,
        /// Those that did not.
        unreachable: Vec<Unreachable>,
    },
    /// The newest digest found is in a closed segment (not the head: a head is open) while
    /// some backups did not answer: the head, with the newest writes, may be on them.
    #[error("the newest log digest of {master} found is in closed segment {segment}: its head may be on a backup that did not answer{}", unreachable_suffix(.unreachable))]
    HeadUnconfirmed {
        /// The crashed master.
        master: ServerId,
        /// The closed segment holding the newest digest found.
        segment: u64,
        /// Backups that did not answer (one may hold the head).
        unreachable: Vec<Unreachable>,
    },
    /// The digest names segments that no answering backup holds.
    #[error("the log of {master} (digest in segment {head}) names segments with no replica on any up backup: {missing:?}{}", unreachable_suffix(.unreachable))]
    MissingSegments {
        /// The crashed master.
        master: ServerId,
        /// The segment holding the digest.
        head: u64,
        /// Segments without a replica.
        missing: Vec<u64>,
        /// Backups that did not answer (one may hold them).
        unreachable: Vec<Unreachable>,
    },
}

/// Why one recovery master's part failed (it is planned again on the next round).
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// `RecoverTablets` failed.
    #[error("recovery master {master}: {source}")]
    Master {
        /// The recovery master.
        master: ServerId,
        /// What failed.
        source: CallError,
    },
    /// The master recovered its part but the new ownership could not be recorded.
    #[error("cannot record the new owner: {0}")]
    Record(TransitionError),
    /// The thread driving the part panicked.
    #[error("recovery thread panicked")]
    Panicked,
}

/// Why a round of recovery of one crashed master did not finish (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The log cannot be replayed yet.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The partition plan could not be made or persisted.
    #[error("cannot plan the recovery: {0}")]
    Plan(TransitionError),
    /// Some partitions failed (the others are recovered and recorded).
    #[error("{} of {planned} partitions failed (retried): {}", .failures.len(), join(.failures))]
    Incomplete {
        /// Partitions planned.
        planned: usize,
        /// The failures.
        failures: Vec<PartitionError>,
    },
}

fn join(f: &[PartitionError]) -> String {
    let v: Vec<String> = f.iter().map(PartitionError::to_string).collect();
    v.join("; ")
}

/// Runs until `stop`.
pub fn recovery_loop<C: ClusterIo>(c: &C, stop: &AtomicBool) {
    let mut last_warned: BTreeMap<ServerId, Instant> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(RECOVERY_TICK);
        let pending = c.read(|st| st.recoveries_pending());
        for crashed in pending {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if let Err(why) = recover(c, &crashed) {
                let warn = last_warned
                    .get(&crashed.id)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
                if warn {
                    tracing::error!(server = %crashed.id, "recovery waits: {why}");
                    last_warned.insert(crashed.id, Instant::now());
                }
            }
        }
    }
}

/// Where the segments of a crashed master's log are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    /// Segment id (the digest's order) → backups holding a replica (longest first).
    pub segments: Vec<(u64, Vec<(ServerId, String)>)>,
}

/// What one backup answered to `BackupGetReplicas`: its id, locator and reply.
pub type ReplicaListing = (ServerId, String, BackupGetReplicasResponse);

/// The recovery rule, without I/O (the seeded simulations check it too): the log is the one
/// named by the digest in the replica with the highest segment id; every segment it names must
/// have a replica on some backup that answered, else the error says which are missing (recovery
/// waits). `unreachable` names backups that did not answer. If some did not and the newest
/// digest found is in a closed segment, recovery waits too: the head (open until the master
/// dies) may be on them, and replaying the older digest's log would drop the head's
/// acknowledged writes. (With every backup answering, a closed newest digest is the log: the
/// master died after closing its head and before its next head reached a backup.)
pub fn choose_log(
    crashed: ServerId,
    listings: &[ReplicaListing],
    unreachable: &[Unreachable],
) -> Result<LogLocation, LogError> {
    let mut replicas: BTreeMap<u64, Vec<(u32, ServerId, String)>> = BTreeMap::new();
    let mut best_digest: Option<(u64, &[u64])> = None;
    let mut open: Vec<u64> = Vec::new();
    for (id, locator, r) in listings {
        for x in &r.replicas {
            if !x.closed {
                open.push(x.segment_id);
            }
            replicas
                .entry(x.segment_id)
                .or_default()
                .push((x.length, *id, locator.clone()));
        }
        if let Some(d) = &r.digest {
            if best_digest.is_none_or(|(h, _)| d.segment_id > h) {
                best_digest = Some((d.segment_id, &d.segments));
            }
        }
    }
    let Some((head, digest)) = best_digest else {
        return Err(LogError::NoDigest {
            master: crashed,
            answered: listings.len(),
            unreachable: unreachable.to_vec(),
        });
    };
    if !unreachable.is_empty() && !open.contains(&head) {
        return Err(LogError::HeadUnconfirmed {
            master: crashed,
            segment: head,
            unreachable: unreachable.to_vec(),
        });
    }
    let missing: Vec<u64> = digest
        .iter()
        .filter(|id| !replicas.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(LogError::MissingSegments {
            master: crashed,
            head,
            missing,
            unreachable: unreachable.to_vec(),
        });
    }
    let segments = digest
        .iter()
        .map(|id| {
            let mut v = replicas.remove(id).unwrap_or_default();
            v.sort_by_key(|b| std::cmp::Reverse(b.0));
            (*id, v.into_iter().map(|(_, b, l)| (b, l)).collect())
        })
        .collect();
    Ok(LogLocation { segments })
}

/// Finds the crashed master's log on the backups (fencing it there).
fn locate_log<C: ClusterIo>(c: &C, crashed: &ServerRecord) -> Result<LogLocation, LogError> {
    let backups = c.read(|st| st.up_backups(crashed.id));
    if backups.is_empty() {
        return Err(LogError::NoBackups);
    }
    // Open replicas below the epoch the master recorded are stale copies it gave up on.
    let req = BackupGetReplicasRequest {
        master: crashed.id,
        min_epoch: crashed.replica_epoch,
    };
    let mut listings = Vec::new();
    let mut unreachable = Vec::new();
    // All at once, one deadline: a dead backup costs LIST_TIMEOUT once, not once each.
    let locators: Vec<&str> = backups.iter().map(|b| b.locator.as_str()).collect();
    let answers = c.get_replicas(&locators, &req, LIST_TIMEOUT);
    for (b, answer) in backups.iter().zip(answers) {
        match answer {
            Ok(r) => listings.push((b.id, b.locator.clone(), r)),
            Err(e) => unreachable.push(Unreachable {
                backup: b.id,
                reason: e.to_string(),
            }),
        }
    }
    choose_log(crashed.id, &listings, &unreachable)
}

/// One round of recovery of `crashed`: locate its log, plan, replay in parallel, record the new
/// owners; when every part is recovered, free the replicas and drop the server from the list.
pub fn recover<C: ClusterIo>(c: &C, crashed: &ServerRecord) -> Result<(), RecoveryError> {
    let started = Instant::now();
    let replicated = crashed.services.has(Services::REPLICATED);
    let log = if replicated {
        locate_log(c, crashed)?
    } else {
        tracing::warn!(server = %crashed.id, "the crashed master did not replicate its log (--replicas 0): its tablets are handed to other masters EMPTY; their data is lost");
        LogLocation {
            segments: Vec::new(),
        }
    };
    let (plan, _) = c
        .transition(|st| st.plan_recovery(crashed.id, MAX_PARTITIONS))
        .map_err(RecoveryError::Plan)?;
    tracing::info!(
        server = %crashed.id,
        segments = log.segments.len(),
        masters = plan.len(),
        "recovering"
    );
    let segments: Vec<RecoverySegment<'_>> = log
        .segments
        .iter()
        .map(|(id, b)| RecoverySegment {
            segment_id: *id,
            backups: b
                .iter()
                .take(faascache_protocol::msg::control::MAX_RECOVER_BACKUPS)
                .map(|(i, l)| (*i, l.as_str()))
                .collect(),
        })
        .collect();
    let results: Vec<Result<(), PartitionError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .iter()
            .map(|(master, locator, ranges)| {
                let segments = &segments;
                scope.spawn(move || {
                    let req = RecoverTabletsRequest {
                        crashed: crashed.id,
                        ranges: ranges.clone(),
                        segments: segments.clone(),
                    };
                    let r =
                        c.recover_tablets(locator, &req, RECOVER_TIMEOUT)
                            .map_err(|source| PartitionError::Master {
                                master: *master,
                                source,
                            })?;
                    tracing::info!(
                        crashed = %crashed.id,
                        %master,
                        ranges = ranges.len(),
                        objects = r.objects,
                        read_mib = r.read_bytes >> 20,
                        "partition recovered"
                    );
                    // Hand over only once the crashed master's lease is surely over: a zombie
                    // never serves a tablet another master serves (the wait overlaps replay).
                    let wait = c.master_lease_wait(crashed.id);
                    if !wait.is_zero() {
                        tracing::info!(crashed = %crashed.id, wait_ms = wait.as_millis() as u64, "waiting out the crashed master's lease before the handover");
                        std::thread::sleep(wait);
                    }
                    let ((), sends) = c
                        .transition(|st| Ok(((), st.finish_recovery(crashed.id, *master, ranges))))
                        .map_err(PartitionError::Record)?;
                    let _ = c.send(sends);
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(PartitionError::Panicked)))
            .collect()
    });
    let failures: Vec<PartitionError> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Err(RecoveryError::Incomplete {
            planned: plan.len(),
            failures,
        });
    }
    // Everything recovered: the replicas can go, and the server leaves the list.
    let done = BackupRecoveryDoneRequest { master: crashed.id };
    for b in c.read(|st| st.up_backups(crashed.id)) {
        if let Err(e) = c.recovery_done(&b.locator, &done, LIST_TIMEOUT) {
            tracing::debug!(backup = %b.id, error = %e, "BackupRecoveryDone failed; that backup keeps the recovered master's replicas");
        }
    }
    if let Err(e) = c.transition(|st| Ok(((), st.recovery_done(crashed.id)))) {
        tracing::warn!(server = %crashed.id, error = %e, "cannot persist the end of recovery");
    }
    tracing::info!(
        server = %crashed.id,
        seconds = started.elapsed().as_secs_f64(),
        "recovery complete"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Recovery driven through a fake [`ClusterIo`]: the seam is real, no sockets or threads of
    //! a coordinator involved.

    use std::collections::HashMap;

    use faascache_protocol::msg::backup::{LogDigestInfo, ReplicaInfo};
    use faascache_protocol::msg::control::{RecoverTabletsResponse, TabletRange};
    use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
    use faascache_transport::Error as TransportError;
    use parking_lot::Mutex;

    use super::super::cluster_io::ControlSendError;
    use super::super::state::{Action, CoordError, CoordinatorState};
    use super::*;

    /// How a fake backup answers `BackupGetReplicas`.
    enum Backup {
        /// With these replicas of the crashed master.
        Holds(BackupGetReplicasResponse),
        /// Not at all: it is slow (the call times out).
        Slow,
    }

    /// A `RecoverTablets` received: master locator, ranges, segment → backups named.
    type Received = (String, Vec<TabletRange>, Vec<(u64, Vec<ServerId>)>);

    #[derive(Default)]
    struct Fake {
        state: Mutex<CoordinatorState>,
        backups: HashMap<String, Backup>,
        /// RecoverTablets received.
        recovered: Mutex<Vec<Received>>,
        sent: Mutex<Vec<Action>>,
        done_told: Mutex<Vec<String>>,
        persisted: Mutex<usize>,
        /// Until when the crashed master's lease runs (`None`: no lease).
        lease_until: Option<Instant>,
        /// When each handover was recorded (a recovery master told to serve).
        handed_over: Mutex<Vec<Instant>>,
        /// Simulated time spent waiting for backups' listings.
        waited: Mutex<Duration>,
    }

    impl ClusterIo for Fake {
        fn master_lease_wait(&self, _server: ServerId) -> Duration {
            self.lease_until.map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(Instant::now())
            })
        }
        fn read<T>(&self, f: impl FnOnce(&CoordinatorState) -> T) -> T {
            f(&self.state.lock())
        }
        fn transition<T>(
            &self,
            f: impl FnOnce(&mut CoordinatorState) -> Result<(T, Vec<Action>), CoordError>,
        ) -> Result<(T, Vec<Action>), TransitionError> {
            let mut st = self.state.lock();
            let (v, actions) = f(&mut st)?;
            st.check().expect("invariants hold after every transition");
            if actions.contains(&Action::Persist) {
                *self.persisted.lock() += 1;
            }
            Ok((
                v,
                actions
                    .into_iter()
                    .filter(|a| *a != Action::Persist)
                    .collect(),
            ))
        }
        fn send(&self, actions: Vec<Action>) -> Result<(), ControlSendError> {
            self.handed_over.lock().push(Instant::now());
            self.sent.lock().extend(actions);
            Ok(())
        }
        /// Models the wire: the requests go out together; the call lasts until the last
        /// answer or the deadline (charged to `waited`, a simulated clock).
        fn get_replicas(
            &self,
            locators: &[&str],
            _req: &BackupGetReplicasRequest,
            timeout: Duration,
        ) -> Vec<Result<BackupGetReplicasResponse, CallError>> {
            let answers: Vec<_> = locators
                .iter()
                .map(|&locator| match self.backups.get(locator) {
                    Some(Backup::Holds(r)) => Ok(r.clone()),
                    Some(Backup::Slow) => {
                        Err(CallError::Transport(TransportError::Timeout(timeout)))
                    }
                    None => Err(CallError::Transport(TransportError::Connect {
                        locator: locator.into(),
                        reason: "connection refused".into(),
                    })),
                })
                .collect();
            let mut waited = self.waited.lock();
            if locators
                .iter()
                .any(|l| matches!(self.backups.get(*l), Some(Backup::Slow)))
            {
                *waited += timeout;
            }
            *waited += Duration::from_millis(1);
            answers
        }
        fn recover_tablets(
            &self,
            locator: &str,
            req: &RecoverTabletsRequest<'_>,
            _timeout: Duration,
        ) -> Result<RecoverTabletsResponse, CallError> {
            let segments = req
                .segments
                .iter()
                .map(|s| (s.segment_id, s.backups.iter().map(|b| b.0).collect()))
                .collect();
            self.recovered
                .lock()
                .push((locator.to_string(), req.ranges.clone(), segments));
            Ok(RecoverTabletsResponse {
                objects: 10,
                bytes: 100,
                read_bytes: 1000,
            })
        }
        fn recovery_done(
            &self,
            locator: &str,
            _req: &BackupRecoveryDoneRequest,
            _timeout: Duration,
        ) -> Result<(), CallError> {
            self.done_told.lock().push(locator.to_string());
            Ok(())
        }
    }

    /// A backup's listing; the digest's segment is the head (open), the others closed.
    fn replicas(segments: &[u64], digest: Option<(u64, &[u64])>) -> Backup {
        Backup::Holds(BackupGetReplicasResponse {
            replicas: segments
                .iter()
                .map(|&segment_id| ReplicaInfo {
                    segment_id,
                    length: 4096,
                    closed: digest.is_none_or(|d| d.0 != segment_id),
                })
                .collect(),
            digest: digest.map(|(segment_id, s)| LogDigestInfo {
                segment_id,
                segments: s.to_vec(),
            }),
        })
    }

    const ALL: Services =
        Services(Services::MASTER.0 | Services::BACKUP.0 | Services::REPLICATED.0);

    /// Four servers (master + backup each) and a table of 4 tablets; the first server crashes.
    /// Its log is segments 1..=3 (digest in 3); `b1` holds 1 and 2, `b2` holds 2 and 3 with the
    /// digest, `b3` is slow. Returns the fake, the crashed server's record and the table id.
    fn cluster(b2_holds: Backup) -> (Fake, ServerRecord, u64) {
        let mut st = CoordinatorState::default();
        let s = Duration::from_secs(1);
        let ids: Vec<ServerId> = (0..4)
            .map(|i| st.enlist(ALL, &format!("b{i}"), ServerId::NONE, s).0)
            .collect();
        let (table, _) = st.create_table("t", 4).unwrap();
        st.confirm_crashed(ids[0]);
        let crashed = st
            .recoveries_pending()
            .pop()
            .expect("a recovery is pending");
        assert_eq!(crashed.id, ids[0]);
        let mut backups = HashMap::new();
        backups.insert("b1".to_string(), replicas(&[1, 2], None));
        backups.insert("b2".to_string(), b2_holds);
        backups.insert("b3".to_string(), Backup::Slow);
        let fake = Fake {
            state: Mutex::new(st),
            backups,
            ..Fake::default()
        };
        (fake, crashed, table)
    }

    #[test]
    fn recovery_hands_the_tablets_over_despite_a_slow_backup() {
        let (fake, crashed, table) = cluster(replicas(&[2, 3], Some((3, &[1, 2, 3]))));
        recover(&fake, &crashed).unwrap();
        // Every tablet of the table now belongs to a surviving master, serving.
        let (_, tablets) = fake.read(|st| {
            let (v, t) = st.tablet_map(table).unwrap();
            (v, t.into_iter().map(|(t, _)| t).collect::<Vec<_>>())
        });
        assert!(!tablets.is_empty());
        for t in &tablets {
            assert_ne!(t.owner, crashed.id, "{t:?}");
            assert_eq!(t.state, TabletState::Normal, "{t:?}");
        }
        // The recovery masters were told where each segment is: never on the slow backup,
        // never on the crashed server's own backup.
        let recovered = fake.recovered.lock();
        assert!(!recovered.is_empty());
        for (master, _, segments) in recovered.iter() {
            assert_ne!(master, "b0");
            let ids: Vec<u64> = segments.iter().map(|s| s.0).collect();
            assert_eq!(ids, [1, 2, 3]);
            for (seg, holders) in segments {
                assert!(!holders.is_empty(), "segment {seg} has no backup");
                for h in holders {
                    let loc = fake.read(|st| st.server(*h).unwrap().locator.clone());
                    assert!(loc == "b1" || loc == "b2", "segment {seg} on {loc}");
                }
            }
        }
        // The crashed master's tablet was split over the three survivors.
        let covered: usize = recovered.iter().map(|r| r.1.len()).sum();
        assert_eq!(recovered.len(), 3);
        assert_eq!(covered, 3);
        // The new owners were told to serve; the backups to free the replicas; the crashed
        // server left the list; the state was persisted along the way.
        assert_eq!(fake.sent.lock().len(), covered);
        assert!(fake.done_told.lock().contains(&"b1".to_string()));
        let status = fake.read(|st| st.server(crashed.id).map(|s| s.status));
        assert!(
            status.is_none_or(|s| s == ServerStatus::Removed),
            "{status:?}"
        );
        assert!(fake.read(|st| st.recoveries_pending()).is_empty());
        assert!(*fake.persisted.lock() >= 2);
    }

    #[test]
    fn recovery_waits_while_a_segment_is_only_on_a_slow_backup() {
        // b2 holds the head (3, with the digest), b1 only segment 1: segment 2 is on no
        // backup that answered; b3 (slow) may hold it.
        let (mut fake, crashed, table) = cluster(replicas(&[3], Some((3, &[1, 2, 3]))));
        fake.backups.insert("b1".into(), replicas(&[1], None));
        let err = recover(&fake, &crashed).unwrap_err();
        match &err {
            RecoveryError::Log(LogError::MissingSegments {
                master,
                head,
                missing,
                unreachable,
            }) => {
                assert_eq!(
                    (*master, *head, missing.as_slice()),
                    (crashed.id, 3, &[2][..])
                );
                assert_eq!(unreachable.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("[2]") && text.contains("unreachable backups"),
            "{text}"
        );
        // Nothing was replayed or handed over.
        assert!(fake.recovered.lock().is_empty());
        let owners: Vec<ServerId> = fake.read(|st| {
            st.tablet_map(table)
                .unwrap()
                .1
                .iter()
                .map(|(t, _)| t.owner)
                .collect()
        });
        assert!(owners.contains(&crashed.id));
        assert_eq!(fake.read(|st| st.recoveries_pending()).len(), 1);
    }

    #[test]
    fn tablets_are_handed_over_only_after_the_crashed_masters_lease() {
        let (mut fake, crashed, _) = cluster(replicas(&[2, 3], Some((3, &[1, 2, 3]))));
        let until = Instant::now() + Duration::from_millis(150);
        fake.lease_until = Some(until);
        recover(&fake, &crashed).unwrap();
        let handed = fake.handed_over.lock();
        assert_eq!(handed.len(), 3, "one handover per recovery master");
        for t in handed.iter() {
            assert!(
                *t >= until,
                "a recovery master served before the lease ran out"
            );
        }
        assert!(fake.read(|st| st.recoveries_pending()).is_empty());
    }

    /// The head's only replica is on the slow backup: the newest digest that answered is in a
    /// closed segment, so recovery waits instead of replaying the log without the head (which
    /// dropped the head's acknowledged writes); with every backup answering it goes on.
    #[test]
    fn recovery_waits_while_the_head_may_be_on_a_slow_backup() {
        // b2 holds segment 2, closed, with the digest it had as head; the head 3 is on b3.
        let (mut fake, crashed, _) = cluster(Backup::Slow);
        fake.backups.insert(
            "b2".into(),
            Backup::Holds(BackupGetReplicasResponse {
                replicas: vec![ReplicaInfo {
                    segment_id: 2,
                    length: 4096,
                    closed: true,
                }],
                digest: Some(LogDigestInfo {
                    segment_id: 2,
                    segments: vec![1, 2],
                }),
            }),
        );
        let err = recover(&fake, &crashed).unwrap_err();
        assert!(
            matches!(
                err,
                RecoveryError::Log(LogError::HeadUnconfirmed { segment: 2, .. })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("closed segment 2"), "{err}");
        assert!(fake.recovered.lock().is_empty(), "nothing is replayed");
        // b3 answers: the head is found and the whole log replayed.
        fake.backups
            .insert("b3".into(), replicas(&[3], Some((3, &[1, 2, 3]))));
        recover(&fake, &crashed).unwrap();
        for (_, _, segments) in fake.recovered.lock().iter() {
            assert_eq!(segments.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
        }
    }

    /// Three dead backups (they never answer) among five: locating the log costs one
    /// deadline, not one per dead backup (the old `locate_log` asked one at a time).
    #[test]
    fn dead_backups_cost_one_deadline_in_all() {
        let (mut fake, crashed, _) = cluster(replicas(&[2, 3], Some((3, &[1, 2, 3]))));
        fake.state
            .lock()
            .enlist(ALL, "b4", ServerId::NONE, Duration::from_secs(1));
        fake.state
            .lock()
            .enlist(ALL, "b5", ServerId::NONE, Duration::from_secs(1));
        fake.backups.insert("b4".into(), Backup::Slow);
        fake.backups.insert("b5".into(), Backup::Slow);
        let log = locate_log(&fake, &crashed).expect("the log is found on b1 and b2");
        assert_eq!(
            log.segments.iter().map(|s| s.0).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let waited = *fake.waited.lock();
        assert!(
            waited >= LIST_TIMEOUT && waited < 2 * LIST_TIMEOUT,
            "three dead backups cost {waited:?} (deadline {LIST_TIMEOUT:?})"
        );
    }
}
