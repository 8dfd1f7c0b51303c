//! Crash recovery, the coordinator's side (a thread of the RPC shell; the decisions are in
//! [`super::state`]): for each crashed master whose tablets wait for recovery,
//!
//! 1. ask every up backup for its replicas of that master (`BackupGetReplicas`, which also
//!    fences the master there: a zombie can no longer get a write acknowledged);
//! 2. take the log digest from the replica with the highest segment id, and check that every
//!    segment it names has a replica — if one is missing the recovery **waits** (its backup may
//!    be restarting) and says so in the log every few seconds, never replaying a partial log;
//! 3. split the crashed master's tablets over the up masters ([`CoordinatorState::plan_recovery`],
//!    persisted) and send each its part (`RecoverTablets`), all in parallel;
//! 4. as each recovery master answers, record it as the owner (persisted) and tell it to serve;
//!    a part that failed is planned again on the next round;
//! 5. when nothing is left, tell the backups to free the crashed master's replicas and remove
//!    it from the server list.
//!
//! A crashed master that did not replicate (`--replicas 0`) has nothing to recover: its tablets
//! are handed out empty at once, with a warning that their data is lost.
//!
//! [`CoordinatorState::plan_recovery`]: super::state::CoordinatorState::plan_recovery

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::{
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest,
};
use faascache_protocol::msg::control::{RecoverTabletsRequest, RecoverySegment};
use faascache_protocol::msg::{ServerId, Services};
use faascache_transport::call;

use super::service::Coordinator;
use super::state::ServerRecord;

/// How often pending recoveries are looked at.
pub const RECOVERY_TICK: Duration = Duration::from_millis(200);
/// Most recovery masters one crashed master's tablets are split over.
pub const MAX_PARTITIONS: usize = 8;
/// Timeout of `BackupGetReplicas`.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one `RecoverTablets` (a large master takes a while).
const RECOVER_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs until `stop`.
pub fn recovery_loop(c: Arc<Coordinator>, stop: Arc<AtomicBool>) {
    let mut last_warned: BTreeMap<ServerId, Instant> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(RECOVERY_TICK);
        let pending = c.with_state(|st| st.recoveries_pending());
        for crashed in pending {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if let Err(why) = recover(&c, &crashed) {
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

/// The recovery rule, without I/O (the seeded simulation checks it too): the log is the one
/// named by the digest in the replica with the highest segment id; every segment it names must
/// have a replica on some backup that answered, else `Err` says which are missing (recovery
/// waits). `unreachable` names backups that did not answer (for the message).
pub fn choose_log(
    crashed: ServerId,
    listings: &[ReplicaListing],
    unreachable: &[String],
) -> Result<LogLocation, String> {
    let mut replicas: BTreeMap<u64, Vec<(u32, ServerId, String)>> = BTreeMap::new();
    let mut best_digest: Option<(u64, &[u64])> = None;
    for (id, locator, r) in listings {
        for x in &r.replicas {
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
    let unreachable = if unreachable.is_empty() {
        String::new()
    } else {
        format!("; unreachable backups: {}", unreachable.join(", "))
    };
    let Some((head, digest)) = best_digest else {
        return Err(format!(
            "no backup holds a log digest of {crashed} ({} backups answered{unreachable}): its head's backups may be down or restarting",
            listings.len(),
        ));
    };
    let missing: Vec<u64> = digest
        .iter()
        .filter(|id| !replicas.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the log of {crashed} (digest in segment {head}) names segments with no replica on any up backup: {missing:?}{unreachable}"
        ));
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
fn locate_log(c: &Coordinator, crashed: &ServerRecord) -> Result<LogLocation, String> {
    let backups = c.with_state(|st| st.up_backups(crashed.id));
    if backups.is_empty() {
        return Err("no backup is up".into());
    }
    let req = BackupGetReplicasRequest { master: crashed.id };
    let mut listings = Vec::new();
    let mut unreachable = Vec::new();
    for b in &backups {
        let s = match c.session(&b.locator) {
            Ok(s) => s,
            Err(e) => {
                unreachable.push(format!("{} ({e})", b.id));
                continue;
            }
        };
        match call(&s, &req, LIST_TIMEOUT, |r: BackupGetReplicasResponse| r) {
            Ok(r) => listings.push((b.id, b.locator.clone(), r)),
            Err(e) => unreachable.push(format!("{} ({e})", b.id)),
        }
    }
    choose_log(crashed.id, &listings, &unreachable)
}

fn recover(c: &Arc<Coordinator>, crashed: &ServerRecord) -> Result<(), String> {
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
        .transition_now(|st| st.plan_recovery(crashed.id, MAX_PARTITIONS))
        .map_err(|e| format!("cannot plan the recovery: {e}"))?;
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
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
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
                    let s = c.session(locator)?;
                    let r = call(&s, &req, RECOVER_TIMEOUT, |r| r)
                        .map_err(|e| format!("recovery master {master}: {e}"))?;
                    tracing::info!(
                        crashed = %crashed.id,
                        %master,
                        ranges = ranges.len(),
                        objects = r.objects,
                        read_mib = r.read_bytes >> 20,
                        "partition recovered"
                    );
                    let ((), sends) = c
                        .transition_now(|st| {
                            Ok(((), st.finish_recovery(crashed.id, *master, ranges)))
                        })
                        .map_err(|e| format!("cannot record the new owner: {e}"))?;
                    let _ = c.send_actions(sends);
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("recovery thread panicked".into()))
            })
            .collect()
    });
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Err(format!(
            "{} of {} partitions failed (retried): {}",
            failures.len(),
            plan.len(),
            failures.join("; ")
        ));
    }
    // Everything recovered: the replicas can go, and the server leaves the list.
    for b in c.with_state(|st| st.up_backups(crashed.id)) {
        if let Ok(s) = c.session(&b.locator) {
            let _ = call(
                &s,
                &BackupRecoveryDoneRequest { master: crashed.id },
                LIST_TIMEOUT,
                |_| (),
            );
        }
    }
    let _ = c.transition_now(|st| Ok(((), st.recovery_done(crashed.id))));
    tracing::info!(
        server = %crashed.id,
        seconds = started.elapsed().as_secs_f64(),
        "recovery complete"
    );
    Ok(())
}
