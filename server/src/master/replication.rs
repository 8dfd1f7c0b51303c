//! Segment replication, the sans-I/O part: which bytes of which segment go to which backup,
//! in what order, and when a replica may be freed. Time and messages come in as arguments
//! ([`ReplicaManager::observe`] with a snapshot of the log, [`ReplicaManager::on_result`] with the
//! outcome of an action); what to send comes out of [`ReplicaManager::next_actions`]. The I/O
//! shell is `replicator`; a seeded simulation drives this same code in
//! `server/tests/replication_sim.rs`.
//!
//! Invariants (what recovery relies on, see `docs/operations.md`):
//! * **Every segment has `target` replicas on distinct backups, none on this server**, where
//!   `target = min(r, backups up besides this server)` but at least 1 (with `r ≥ 1`): with fewer
//!   backups than `r` the log is *under-replicated* rather than never acknowledged; with none, no
//!   write is acknowledged (a write only in this master's DRAM would not survive its crash). A
//!   replica lost (backup crashed, write refused) is replaced on another backup, written from
//!   offset 0; when backups join, the target rises and the missing replicas are made.
//! * **A segment is durable** when it has as many complete replicas as it needs: `target` for
//!   bytes no replica set has acknowledged yet; for bytes already acknowledged, the number of
//!   replicas they were acknowledged on (capped by `target`). So a replica lost with a backup
//!   up to replace it must be re-made before the next acknowledgement, but a replica added
//!   because a backup joined (the target rose) is made in the background without holding
//!   writes back.
//! * **The newest durable digest names a complete log.** The head's bytes — its digest first
//!   of all — are sent only once every segment with a smaller id (earlier heads, cleaner
//!   survivors it names) is durable. So a digest that reached a backup never names a segment
//!   without complete replicas.
//! * **A replica is freed only when no durable digest can name its segment.** A segment that
//!   left the log (cleaned) is freed on its backups once a head with a larger id, whose digest
//!   does not name it, is durable (its digest prefix acknowledged by `target` replicas).
//! * **Acknowledged means durable**: [`ReplicaManager::synced`] holds only when every segment
//!   observed is durable; the shell acknowledges writes only then.
//! * Bytes of a segment are sent only while it is unchanged in memory: the shell keeps the
//!   cleaner off incomplete segments ([`ReplicaManager::is_complete`]); a segment found
//!   compacted while incomplete loses its incomplete replicas (freed) and is written anew.
//! * **No stale replica is offered to recovery (replica epochs, as in RAMCloud).** A replica
//!   that leaves a segment's set before it was closed (its backup did not answer, refused, or
//!   the segment was compacted under it) may stay on its backup, open, without the bytes
//!   acknowledged later. Losing one raises the master's replica epoch; every open replica it
//!   keeps is written the new epoch (a write that may add no bytes); only then is the epoch
//!   recorded at the coordinator ([`ReplicaManager::epoch_to_record`]), and no write is
//!   acknowledged before that ([`ReplicaManager::synced`]). Recovery asks backups for replicas
//!   that are closed or carry at least the recorded epoch. Until the record, the lost copy is
//!   still usable and still holds every acknowledged byte (nothing was acknowledged since).

use std::collections::{BTreeMap, BTreeSet};

use faascache_protocol::msg::ServerId;

/// A segment of the log as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment id.
    pub id: u64,
    /// Whether it is the head.
    pub head: bool,
    /// Whether it takes no more appends.
    pub closed: bool,
    /// Certificate: bytes appended.
    pub length: u32,
    /// Certificate: checksum of those bytes' entry headers.
    pub checksum: u32,
    /// For heads: the segments the digest names and the length just past the digest (needed
    /// while the segment is the head; kept by the manager afterwards).
    pub digest: Option<(Vec<u64>, u32)>,
    /// Identity of the in-memory copy (changes when the cleaner compacts the segment).
    pub identity: u64,
}

/// Something the shell must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `BackupWrite` of bytes `from..to` (certificate: `to`, `checksum`).
    Write {
        /// Backup.
        backup: ServerId,
        /// Segment.
        segment: u64,
        /// First byte.
        from: u32,
        /// End (exclusive) = certificate length.
        to: u32,
        /// Certificate checksum at `to`.
        checksum: u32,
        /// First write of this replica.
        open: bool,
        /// Segment closed: close the replica.
        close: bool,
        /// The master's replica epoch (the backup keeps the highest it was sent).
        epoch: u64,
    },
    /// `BackupFree` (fire and forget).
    Free {
        /// Backup.
        backup: ServerId,
        /// Segment.
        segment: u64,
    },
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored (durably, as the backup's mode defines).
    Ok,
    /// The backup refused this replica (full, lost bytes, unknown): place it elsewhere.
    Refused,
    /// The backup is unreachable: every replica on it is lost.
    BackupDown,
    /// The backup says this master was declared dead: stop.
    Fenced,
}

#[derive(Debug, Clone)]
struct Replica {
    backup: ServerId,
    acked: u32,
    closed: bool,
    busy: bool,
    /// Highest epoch sent to it (the backup may hold it even if the write is unanswered).
    epoch_sent: u64,
    /// Highest epoch it acknowledged.
    epoch_acked: u64,
}

/// What of a segment was last durable: its length, whether closed, on how many replicas.
#[derive(Debug, Clone, Copy)]
struct Durable {
    length: u32,
    closed: bool,
    copies: usize,
}

#[derive(Debug, Clone)]
struct Seg {
    info: SegmentInfo,
    replicas: Vec<Replica>,
    /// Backups that lost or refused a replica of this segment: not chosen again for it.
    excluded: BTreeSet<ServerId>,
    /// The last time the segment was durable (see [`Seg::durable`]).
    durable: Option<Durable>,
}

impl Seg {
    fn replica_complete(&self, x: &Replica) -> bool {
        !x.busy && x.acked >= self.info.length && (!self.info.closed || x.closed)
    }

    /// Every replica placed is complete, and there are `target` of them (the cleaner may touch
    /// the segment: no bytes of it are being sent).
    fn complete(&self, target: usize) -> bool {
        self.replicas.len() >= target && self.replicas.iter().all(|x| self.replica_complete(x))
    }

    /// Replicas holding every byte of the segment.
    fn complete_copies(&self) -> usize {
        self.replicas
            .iter()
            .filter(|x| self.replica_complete(x))
            .count()
    }

    /// Complete replicas the segment needs before a write in it is acknowledged: `target` for
    /// bytes (or a close) not yet durable; else as many as it was durable on, at most `target`.
    fn need(&self, target: usize) -> usize {
        match self.durable {
            Some(d) if d.length >= self.info.length && (d.closed || !self.info.closed) => {
                d.copies.min(target)
            }
            _ => target,
        }
    }

    fn is_durable(&self, target: usize) -> bool {
        self.complete_copies() >= self.need(target)
    }

    /// Records what is durable now, if the segment is.
    fn note_durable(&mut self, target: usize) {
        if self.is_durable(target) {
            self.durable = Some(Durable {
                length: self.info.length,
                closed: self.info.closed,
                copies: self.complete_copies(),
            });
        }
    }
}

/// How well a master's log is replicated (for `status` and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Replicas per segment asked for (`--replicas`).
    pub r: usize,
    /// Backups up besides this server, as the coordinator lists them.
    pub available: usize,
    /// Replicas per segment kept now: `min(r, available)`, at least 1.
    pub target: usize,
    /// Fewest complete replicas of any segment (`r` for an empty log).
    pub min_copies: usize,
}

impl Health {
    /// Some segment has fewer than `r` complete replicas.
    pub fn under_replicated(&self) -> bool {
        self.min_copies < self.r
    }
}

/// The replication state of one master's log.
#[derive(Debug, Clone)]
pub struct ReplicaManager {
    me: ServerId,
    r: usize,
    segs: BTreeMap<u64, Seg>,
    /// Segments that left the log → backups still holding a replica.
    retired: BTreeMap<u64, Vec<ServerId>>,
    /// Replicas to free at once (stale copies after a refusal or a compaction).
    stale: Vec<(ServerId, u64)>,
    /// Newest head whose digest is on all its replicas, and that digest.
    durable_head: Option<(u64, BTreeSet<u64>)>,
    fenced: bool,
    rr: usize,
    /// Backups up besides this server (the last list given to `next_actions`).
    available: usize,
    /// The replica epoch: raised when an open replica is lost.
    epoch: u64,
    /// The epoch the coordinator has recorded.
    recorded: u64,
}

impl ReplicaManager {
    /// A manager for master `me` keeping `r` replicas of every segment.
    pub fn new(me: ServerId, r: usize) -> ReplicaManager {
        ReplicaManager {
            me,
            r,
            segs: BTreeMap::new(),
            retired: BTreeMap::new(),
            stale: Vec::new(),
            durable_head: None,
            fenced: false,
            rr: 0,
            available: 0,
            epoch: 0,
            recorded: 0,
        }
    }

    /// A replica left its segment's set: if it was not closed, the copy its backup may keep
    /// is stale from now on, so the epoch rises above anything sent to it.
    fn lost(epoch: &mut u64, x: &Replica) {
        if !x.closed && x.epoch_sent >= *epoch {
            *epoch = x.epoch_sent + 1;
        }
    }

    /// The replica epoch now, and the one the coordinator has recorded.
    pub fn epochs(&self) -> (u64, u64) {
        (self.epoch, self.recorded)
    }

    /// The epoch to record at the coordinator now, if one is due: the epoch rose, every
    /// segment is durable again (a segment whose only replicas were lost has its new ones: until
    /// then the lost copy may be the only one holding its acknowledged bytes) and every open
    /// replica kept has acknowledged the epoch.
    pub fn epoch_to_record(&self) -> Option<u64> {
        if self.epoch == self.recorded || self.fenced {
            return None;
        }
        let target = self.target();
        let ready = self.segs.values().all(|s| {
            s.is_durable(target)
                && s.replicas
                    .iter()
                    .all(|x| x.closed || (x.epoch_acked >= self.epoch && !x.busy))
        });
        ready.then_some(self.epoch)
    }

    /// The coordinator recorded `epoch`.
    pub fn epoch_recorded(&mut self, epoch: u64) {
        self.recorded = self.recorded.max(epoch);
    }

    /// The coordinator refused to record the epoch: this master was declared crashed.
    pub fn fence(&mut self) {
        self.fenced = true;
    }

    /// Replicas per segment kept now: `min(r, backups up)`, but at least 1 if `r ≥ 1` (a master
    /// with no backup up acknowledges nothing).
    pub fn target(&self) -> usize {
        if self.r == 0 {
            0
        } else {
            self.r.min(self.available).max(1)
        }
    }

    /// How well the log is replicated now.
    pub fn health(&self) -> Health {
        Health {
            r: self.r,
            available: self.available,
            target: self.target(),
            min_copies: self
                .segs
                .values()
                .map(Seg::complete_copies)
                .min()
                .unwrap_or(self.r),
        }
    }

    /// Replicas per segment.
    pub fn replicas(&self) -> usize {
        self.r
    }

    /// Whether a backup said this master was declared dead.
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// A new snapshot of the log (every segment in memory).
    pub fn observe(&mut self, log: &[SegmentInfo]) {
        let target = self.target();
        let present: BTreeSet<u64> = log.iter().map(|s| s.id).collect();
        // Segments that left the log: their replicas wait for a digest that drops them.
        let gone: Vec<u64> = self
            .segs
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            let seg = self.segs.remove(&id).expect("listed");
            let holders: Vec<ServerId> = seg.replicas.iter().map(|x| x.backup).collect();
            if !holders.is_empty() {
                self.retired.entry(id).or_default().extend(holders);
            }
        }
        for info in log {
            match self.segs.get_mut(&info.id) {
                None => {
                    self.segs.insert(
                        info.id,
                        Seg {
                            info: info.clone(),
                            replicas: Vec::new(),
                            excluded: BTreeSet::new(),
                            durable: None,
                        },
                    );
                }
                Some(seg) => {
                    let compacted = seg.info.identity != info.identity;
                    if compacted && !seg.complete(target) {
                        // The bytes changed under incomplete replicas: start them over.
                        for x in seg.replicas.drain(..) {
                            Self::lost(&mut self.epoch, &x);
                            self.stale.push((x.backup, info.id));
                            seg.excluded.insert(x.backup);
                        }
                    }
                    // Complete replicas keep the original bytes (a valid superset of the
                    // compacted copy); a re-replication sends the compacted copy. A digest seen
                    // while the segment was the head is kept.
                    let digest = info.digest.clone().or_else(|| seg.info.digest.take());
                    seg.info = SegmentInfo {
                        digest,
                        ..info.clone()
                    };
                }
            }
        }
    }

    /// The next actions, given the backups that are up (this server excluded by the
    /// manager). Marks the replicas written as busy until [`ReplicaManager::on_result`].
    pub fn next_actions(&mut self, backups: &[ServerId]) -> Vec<Action> {
        self.next_actions_avoiding(backups, &[])
    }

    /// [`ReplicaManager::next_actions`], placing no new replica on `avoid` (backups that are up
    /// as far as the coordinator knows but did not answer a moment ago: they still count
    /// towards the target, so an unreachable backup never lowers the replication).
    pub fn next_actions_avoiding(
        &mut self,
        backups: &[ServerId],
        avoid: &[ServerId],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.fenced {
            return out;
        }
        for (backup, segment) in self.stale.drain(..) {
            out.push(Action::Free { backup, segment });
        }
        let up: BTreeSet<ServerId> = backups.iter().copied().filter(|&b| b != self.me).collect();
        self.available = up.len();
        let candidates: Vec<ServerId> = up.into_iter().filter(|b| !avoid.contains(b)).collect();
        let r = self.target();
        for seg in self.segs.values_mut() {
            seg.note_durable(r);
        }
        let mut earlier_complete = true;
        let ids: Vec<u64> = self.segs.keys().copied().collect();
        for id in ids {
            let rr = self.rr;
            let seg = self.segs.get_mut(&id).expect("listed");
            // Place missing replicas.
            let mut k = 0;
            while seg.replicas.len() < r && k < candidates.len() {
                let b = candidates[(rr + k) % candidates.len()];
                k += 1;
                if seg.excluded.contains(&b) || seg.replicas.iter().any(|x| x.backup == b) {
                    continue;
                }
                seg.replicas.push(Replica {
                    backup: b,
                    acked: 0,
                    closed: false,
                    busy: false,
                    epoch_sent: 0,
                    epoch_acked: 0,
                });
            }
            self.rr = self.rr.wrapping_add(1);
            // A head is written only after everything before it is complete.
            let may_write = !seg.info.head || earlier_complete;
            // A replica kept open through an epoch change is written the new epoch (with
            // whatever bytes are due; a write adding none if there are none).
            if may_write {
                for x in seg.replicas.iter_mut().filter(|x| !x.busy) {
                    let more = x.acked < seg.info.length;
                    let close = seg.info.closed && !x.closed;
                    let stamp = !x.closed && x.epoch_acked < self.epoch;
                    if more || close || stamp {
                        x.busy = true;
                        x.epoch_sent = x.epoch_sent.max(self.epoch);
                        out.push(Action::Write {
                            backup: x.backup,
                            segment: id,
                            from: x.acked.min(seg.info.length),
                            to: seg.info.length,
                            checksum: seg.info.checksum,
                            open: x.acked == 0,
                            close: seg.info.closed,
                            epoch: self.epoch,
                        });
                    }
                }
            }
            if !seg.is_durable(r) {
                earlier_complete = false;
            }
        }
        // Frees covered by a durable digest.
        if let Some((head, digest)) = &self.durable_head {
            let free: Vec<u64> = self
                .retired
                .keys()
                .filter(|&&id| id < *head && !digest.contains(&id))
                .copied()
                .collect();
            for id in free {
                for backup in self.retired.remove(&id).unwrap_or_default() {
                    out.push(Action::Free {
                        backup,
                        segment: id,
                    });
                }
            }
        }
        out
    }

    /// The outcome of an action from [`ReplicaManager::next_actions`] (frees need none).
    pub fn on_result(&mut self, action: &Action, outcome: WriteOutcome) {
        let Action::Write {
            backup,
            segment,
            to,
            close,
            epoch,
            ..
        } = *action
        else {
            return;
        };
        match outcome {
            WriteOutcome::Ok => {
                let target = self.target();
                if let Some(seg) = self.segs.get_mut(&segment) {
                    if let Some(x) = seg.replicas.iter_mut().find(|x| x.backup == backup) {
                        x.busy = false;
                        x.acked = x.acked.max(to);
                        x.closed |= close;
                        x.epoch_acked = x.epoch_acked.max(epoch);
                    }
                    seg.note_durable(target);
                }
                self.note_durable_digest(segment);
            }
            WriteOutcome::Refused => {
                if let Some(seg) = self.segs.get_mut(&segment) {
                    for x in seg.replicas.iter().filter(|x| x.backup == backup) {
                        Self::lost(&mut self.epoch, x);
                    }
                    seg.replicas.retain(|x| x.backup != backup);
                    seg.excluded.insert(backup);
                }
                self.stale.push((backup, segment));
            }
            WriteOutcome::BackupDown => self.backup_down(backup),
            WriteOutcome::Fenced => self.fenced = true,
        }
    }

    /// A backup crashed (or left): its replicas are gone; they are placed elsewhere.
    pub fn backup_down(&mut self, backup: ServerId) {
        for seg in self.segs.values_mut() {
            for x in seg.replicas.iter().filter(|x| x.backup == backup) {
                Self::lost(&mut self.epoch, x);
            }
            seg.replicas.retain(|x| x.backup != backup);
        }
        for holders in self.retired.values_mut() {
            holders.retain(|&b| b != backup);
        }
        self.retired.retain(|_, h| !h.is_empty());
        self.stale.retain(|(b, _)| *b != backup);
    }

    fn note_durable_digest(&mut self, segment: u64) {
        let Some(seg) = self.segs.get(&segment) else {
            return;
        };
        let Some((names, end)) = &seg.info.digest else {
            return;
        };
        if self
            .durable_head
            .as_ref()
            .is_some_and(|(h, _)| *h >= segment)
        {
            return;
        }
        let target = self.target();
        let durable =
            target > 0 && seg.replicas.iter().filter(|x| x.acked >= *end).count() >= target;
        if durable {
            self.durable_head = Some((segment, names.iter().copied().collect()));
        }
    }

    /// Whether every observed segment is durable (acknowledge writes).
    pub fn synced(&self) -> bool {
        let target = self.target();
        !self.fenced
            && self.epoch == self.recorded
            && self.segs.values().all(|s| s.is_durable(target))
    }

    /// Whether some segment lacks a replica and no backup is left to place it on.
    pub fn short_of_backups(&self) -> bool {
        let target = self.target();
        self.segs.values().any(|s| s.replicas.len() < target)
    }

    /// Whether segment `id` is complete on all its replicas (the cleaner may touch it).
    pub fn is_complete(&self, id: u64) -> bool {
        let target = self.target();
        self.segs.get(&id).is_some_and(|s| s.complete(target))
    }

    /// Backups holding replicas (for `status`): (segments, replicas).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.segs.len(),
            self.segs.values().map(|s| s.replicas.len()).sum(),
        )
    }

    /// Replicas of segment `id` that are complete, by backup (tests and simulation).
    pub fn complete_replicas(&self, id: u64) -> Vec<ServerId> {
        self.segs
            .get(&id)
            .map(|s| {
                s.replicas
                    .iter()
                    .filter(|x| !x.busy && x.acked >= s.info.length)
                    .map(|x| x.backup)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, head: bool, closed: bool, length: u32) -> SegmentInfo {
        SegmentInfo {
            id,
            head,
            closed,
            length,
            checksum: length * 7,
            digest: head.then(|| ((1..=id).collect(), 40)),
            identity: id,
        }
    }

    fn ack_all(m: &mut ReplicaManager, actions: &[Action]) {
        for a in actions {
            m.on_result(a, WriteOutcome::Ok);
        }
    }

    const ME: ServerId = ServerId(1);
    fn b(i: u64) -> ServerId {
        ServerId(10 + i)
    }

    #[test]
    fn places_r_distinct_replicas_never_on_itself() {
        let mut m = ReplicaManager::new(ME, 2);
        m.observe(&[seg(1, true, false, 100)]);
        let a = m.next_actions(&[ME, b(1), b(2), b(3)]);
        assert_eq!(a.len(), 2);
        let mut targets: Vec<ServerId> = a
            .iter()
            .map(|x| match x {
                Action::Write {
                    backup, open, from, ..
                } => {
                    assert!(*open && *from == 0);
                    *backup
                }
                _ => panic!("{x:?}"),
            })
            .collect();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), 2);
        assert!(!targets.contains(&ME));
        assert!(!m.synced());
        ack_all(&mut m, &a);
        assert!(m.synced());
        // Appends send only the new bytes.
        m.observe(&[seg(1, true, false, 150)]);
        let a = m.next_actions(&[b(1), b(2), b(3)]);
        assert!(a.iter().all(|x| matches!(
            x,
            Action::Write {
                from: 100,
                to: 150,
                open: false,
                ..
            }
        )));
    }

    #[test]
    fn head_waits_for_earlier_segments() {
        let mut m = ReplicaManager::new(ME, 1);
        m.observe(&[seg(1, true, false, 100)]);
        let a = m.next_actions(&[b(1)]);
        ack_all(&mut m, &a);
        // Head rolls: 1 closed with more bytes, 2 is the head.
        m.observe(&[seg(1, false, true, 120), seg(2, true, false, 60)]);
        let a = m.next_actions(&[b(1)]);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(matches!(
            a[0],
            Action::Write {
                segment: 1,
                close: true,
                ..
            }
        ));
        // Nothing for the head while 1 is busy.
        assert!(m.next_actions(&[b(1)]).is_empty());
        ack_all(&mut m, &a);
        let a = m.next_actions(&[b(1)]);
        assert!(matches!(
            a[..],
            [Action::Write {
                segment: 2,
                open: true,
                ..
            }]
        ));
        ack_all(&mut m, &a);
        assert!(m.synced());
    }

    #[test]
    fn lost_backup_is_replaced_and_refused_replica_freed() {
        let mut m = ReplicaManager::new(ME, 2);
        m.observe(&[seg(1, true, false, 100)]);
        let a = m.next_actions(&[b(1), b(2), b(3)]);
        ack_all(&mut m, &a);
        m.backup_down(b(1));
        assert!(!m.synced());
        let a = m.next_actions(&[b(2), b(3)]);
        // The replacement, and the epoch stamp of the replica kept (its copy on b(1) is stale).
        assert_eq!(a.len(), 2, "{a:?}");
        let new = a
            .iter()
            .find(|x| matches!(x, Action::Write { open: true, .. }))
            .unwrap();
        let Action::Write { backup, .. } = *new else {
            panic!()
        };
        assert!(backup != b(1));
        assert!(a.iter().any(|x| matches!(
            x,
            Action::Write {
                open: false,
                from: 100,
                to: 100,
                epoch: 1,
                ..
            }
        )));
        m.on_result(new, WriteOutcome::Refused);
        // The refusing backup gets a free and is not chosen again for this segment.
        let a = m.next_actions(&[b(2), b(3), b(4)]);
        assert!(a.contains(&Action::Free { backup, segment: 1 }));
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::Write { backup: nb, .. } if *nb != backup)));
    }

    #[test]
    fn frees_wait_for_a_durable_digest_without_the_segment() {
        let mut m = ReplicaManager::new(ME, 1);
        m.observe(&[seg(1, false, true, 100), seg(2, true, false, 80)]);
        loop {
            let a = m.next_actions(&[b(1)]);
            if a.is_empty() {
                break;
            }
            ack_all(&mut m, &a);
        }
        assert!(m.synced());
        // Segment 1 cleaned; the head (2) still names it: no free yet.
        m.observe(&[seg(2, true, false, 90)]);
        let a = m.next_actions(&[b(1)]);
        assert!(a.iter().all(|x| !matches!(x, Action::Free { .. })), "{a:?}");
        ack_all(&mut m, &a);
        // A new head 3 whose digest names only 2 and 3.
        let mut h = seg(3, true, false, 50);
        h.digest = Some((vec![2, 3], 40));
        m.observe(&[seg(2, false, true, 90), h]);
        for _ in 0..3 {
            let a = m.next_actions(&[b(1)]);
            if a.contains(&Action::Free {
                backup: b(1),
                segment: 1,
            }) {
                return;
            }
            ack_all(&mut m, &a);
        }
        panic!("segment 1 was never freed");
    }

    #[test]
    fn fenced_master_sends_nothing_and_never_syncs() {
        let mut m = ReplicaManager::new(ME, 1);
        m.observe(&[seg(1, true, false, 10)]);
        let a = m.next_actions(&[b(1)]);
        m.on_result(&a[0], WriteOutcome::Fenced);
        assert!(m.fenced() && !m.synced());
        assert!(m.next_actions(&[b(1)]).is_empty());
    }

    /// Fewer backups than R: the log is kept on every backup there is (under-replicated) and
    /// writes are acknowledged; with no backup at all, nothing is.
    #[test]
    fn too_few_backups_degrade_to_the_ones_up_but_never_to_none() {
        let mut m = ReplicaManager::new(ME, 2);
        m.observe(&[seg(1, false, true, 100), seg(2, true, false, 60)]);
        loop {
            let a = m.next_actions(&[b(1)]);
            if a.is_empty() {
                break;
            }
            assert!(a
                .iter()
                .all(|x| matches!(x, Action::Write { backup, .. } if *backup == b(1))));
            ack_all(&mut m, &a);
        }
        assert!(
            m.synced(),
            "R = 2 with one backup up: acknowledged on that one"
        );
        assert!(!m.short_of_backups());
        let h = m.health();
        assert_eq!((h.r, h.available, h.target, h.min_copies), (2, 1, 1, 1));
        assert!(h.under_replicated());
        // The backup dies and none is left: nothing more is acknowledged.
        m.backup_down(b(1));
        m.observe(&[seg(1, false, true, 100), seg(2, true, false, 70)]);
        assert!(m.next_actions(&[]).is_empty());
        assert!(!m.synced() && m.short_of_backups());
        assert_eq!(m.health().target, 1);
    }

    /// A backup that joins raises the target: the missing replicas are made, but bytes already
    /// acknowledged do not wait for them; new bytes need both replicas.
    #[test]
    fn a_joining_backup_restores_r_without_holding_writes_back() {
        let mut m = ReplicaManager::new(ME, 2);
        m.observe(&[seg(1, false, true, 100), seg(2, true, false, 60)]);
        while let a @ [_, ..] = &m.next_actions(&[b(1)])[..] {
            let a = a.to_vec();
            ack_all(&mut m, &a);
        }
        assert!(m.synced());
        // b(2) joins: both segments get a replica there.
        let a = m.next_actions(&[b(1), b(2)]);
        let to_b2: Vec<u64> = a
            .iter()
            .filter_map(|x| match x {
                Action::Write {
                    backup, segment, ..
                } if *backup == b(2) => Some(*segment),
                _ => None,
            })
            .collect();
        assert!(to_b2.contains(&1), "{a:?}");
        assert!(
            m.synced(),
            "what was acknowledged stays acknowledged meanwhile"
        );
        assert!(
            !m.is_complete(1),
            "the cleaner keeps off a segment being sent"
        );
        ack_all(&mut m, &a);
        while let a @ [_, ..] = &m.next_actions(&[b(1), b(2)])[..] {
            let a = a.to_vec();
            ack_all(&mut m, &a);
        }
        assert!(m.synced());
        assert!(!m.health().under_replicated());
        assert_eq!(m.complete_replicas(1).len(), 2);
        // New bytes in the head are acknowledged only on both.
        m.observe(&[seg(1, false, true, 100), seg(2, true, false, 90)]);
        let a = m.next_actions(&[b(1), b(2)]);
        assert_eq!(a.len(), 2, "{a:?}");
        m.on_result(&a[0], WriteOutcome::Ok);
        assert!(!m.synced());
        m.on_result(&a[1], WriteOutcome::Ok);
        assert!(m.synced());
    }

    /// A backup the coordinator still lists but that did not answer counts towards R: its
    /// replica is re-made elsewhere if possible, and writes wait rather than being acknowledged
    /// on fewer replicas.
    #[test]
    fn an_unreachable_backup_does_not_lower_the_target() {
        let mut m = ReplicaManager::new(ME, 2);
        m.observe(&[seg(1, true, false, 100)]);
        let a = m.next_actions_avoiding(&[b(1), b(2)], &[b(2)]);
        assert_eq!(a.len(), 1, "{a:?}");
        ack_all(&mut m, &a);
        assert!(m.next_actions_avoiding(&[b(1), b(2)], &[b(2)]).is_empty());
        assert!(!m.synced() && m.short_of_backups());
        assert_eq!(m.health().target, 2);
        // A replica lost while another backup can take it: re-made before acknowledging.
        let a = m.next_actions(&[b(1), b(2), b(3)]);
        ack_all(&mut m, &a);
        assert!(m.synced());
        m.backup_down(b(1));
        assert!(!m.synced());
    }

    #[test]
    fn zero_replicas_is_always_synced() {
        let mut m = ReplicaManager::new(ME, 0);
        m.observe(&[seg(1, true, false, 10)]);
        assert!(m.next_actions(&[b(1)]).is_empty());
        assert!(m.synced());
        assert!(m.is_complete(1));
    }

    #[test]
    fn losing_an_open_replica_raises_the_epoch_and_holds_acks_until_it_is_recorded() {
        let mut m = ReplicaManager::new(ME, 2);
        let up = [b(1), b(2), b(3)];
        m.observe(&[seg(1, true, false, 100)]);
        let a = m.next_actions(&up);
        ack_all(&mut m, &a);
        assert!(m.synced());
        assert_eq!(m.epochs(), (0, 0));
        assert_eq!(m.epoch_to_record(), None);
        let holders = m.complete_replicas(1);
        let (lost, kept) = (holders[0], holders[1]);
        let third = *up.iter().find(|x| !holders.contains(x)).unwrap();
        // More bytes; the backup of one replica does not answer: its copy (100 bytes, open)
        // is stale from now on.
        m.observe(&[seg(1, true, false, 150)]);
        for x in m.next_actions(&up) {
            let lost_one = matches!(x, Action::Write { backup, .. } if backup == lost);
            let outcome = if lost_one {
                WriteOutcome::BackupDown
            } else {
                WriteOutcome::Ok
            };
            m.on_result(&x, outcome);
        }
        assert_eq!(m.epochs(), (1, 0));
        assert!(!m.synced());
        assert_eq!(m.epoch_to_record(), None, "the kept replica has epoch 0");
        // The replacement is written at epoch 1, and the kept replica is stamped with a write
        // that adds no bytes.
        let a = m.next_actions(&[kept, third]);
        assert!(
            a.iter()
                .all(|x| matches!(x, Action::Write { epoch: 1, .. })),
            "{a:?}"
        );
        assert!(a.iter().any(|x| matches!(x,
            Action::Write { backup, from: 150, to: 150, .. } if *backup == kept)));
        assert!(a.iter().any(|x| matches!(x,
            Action::Write { backup, from: 0, to: 150, open: true, .. } if *backup == third)));
        ack_all(&mut m, &a);
        assert!(
            !m.synced(),
            "no acknowledgement before the coordinator has the epoch"
        );
        assert_eq!(m.epoch_to_record(), Some(1));
        m.epoch_recorded(1);
        assert!(m.synced());
        assert!(m.next_actions(&[kept, third]).is_empty());
        // Losing a backup that holds only closed replicas changes no epoch.
        m.observe(&[seg(1, false, true, 150), seg(2, true, false, 60)]);
        while let a @ [_, ..] = &m.next_actions(&[kept, third])[..] {
            let a = a.to_vec();
            ack_all(&mut m, &a);
        }
        m.observe(&[seg(1, false, true, 150)]);
        m.backup_down(third);
        assert_eq!(m.epochs(), (1, 1));
    }

    #[test]
    fn an_unanswered_stamp_raises_the_epoch_again() {
        let mut m = ReplicaManager::new(ME, 2);
        m.observe(&[seg(1, true, false, 100)]);
        let a = m.next_actions(&[b(1), b(2), b(3)]);
        ack_all(&mut m, &a);
        let holders = m.complete_replicas(1);
        m.backup_down(holders[0]);
        assert_eq!(m.epochs(), (1, 0));
        // The stamp of epoch 1 to the other holder goes unanswered: that copy may carry epoch
        // 1, so recording 1 would not exclude it.
        let a = m.next_actions(&[holders[1]]);
        for x in &a {
            m.on_result(x, WriteOutcome::BackupDown);
        }
        assert_eq!(m.epochs(), (2, 0));
    }
}
