//! Replication, the I/O shell: one thread per master that snapshots the log, feeds
//! [`ReplicaManager`] and carries out its actions as `BackupWrite` / `BackupFree` RPCs, all
//! backups in parallel; then acknowledges every write that was in the log when the round began
//! (group commit: one round covers every write queued meanwhile).
//!
//! Writers never block a dispatch thread: a mutation's handler defers its reply to
//! [`Replication::reply_when_durable`], which queues it with a ticket; the thread replies once a
//! sync round that started after the ticket was taken has completed.
//!
//! How many replicas: `min(--replicas, other backups the coordinator lists as up)`, at least
//! one ([`ReplicaManager::target`]); with fewer than `--replicas` the master is under-replicated,
//! which [`Replication::describe`] and [`Replication::under_replicated`] report (for `status`)
//! and the log says when it starts and ends. A backup that did not answer stays in the count
//! (it is only kept from new replicas for `BACKUP_BACKOFF`) until the coordinator drops it;
//! the shell reports it to the coordinator at once while writes wait for it.
//!
//! A backup that says this master was declared dead (`CALLER_NOT_IN_CLUSTER`) fences it: no
//! queued write is acknowledged (clients are told to refresh their tablet map) and
//! [`Replication::fenced`] turns true; the server process exits (see `node.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::{
    BackupFreeRequest, BackupWriteRequest, ReplicaCertificate, SetReplicaEpochRequest,
};
use faascache_protocol::msg::coordinator::{
    GetServerListRequest, HintServerCrashedRequest, ServerStatus,
};
use faascache_protocol::msg::{ErrorReply, Message, ServerId, Services};
use faascache_transport::call;
use faascache_transport::server::Responder;
use faascache_transport::CoordinatorLocator;
use faascache_transport::{ClientConfig, Opcode, PendingRpc, ServiceLocator, Session, Status};
use parking_lot::{Condvar, Mutex};

use super::replication::{Action, Health, ReplicaManager, SegmentInfo, WriteOutcome};
use faascache_storage::{Engine, LogSegment};

/// How long the backup RPCs of one round may take, all together (they run in parallel):
/// a backup that has not answered by then counts as down and its replicas are placed
/// elsewhere, so one dead backup delays a write by at most this, not this per action.
pub const BACKUP_RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes of replica data one window of a replication round has in flight (each action's
/// request is a copy of its bytes until answered): a round that replicates more is sent in
/// windows, one after the other.
pub const MAX_ROUND_BYTES: usize = 32 << 20;

/// The end of the window of `actions` starting at `start`: as many actions as fit in `budget`
/// bytes of writes (frees cost nothing), and always at least one.
pub(crate) fn window_end(actions: &[Action], start: usize, budget: usize) -> usize {
    let mut bytes = 0usize;
    let mut end = start;
    while end < actions.len() {
        let len = match actions[end] {
            Action::Write { from, to, .. } => to.saturating_sub(from) as usize,
            Action::Free { .. } => 0,
        };
        if end > start && bytes + len > budget {
            break;
        }
        bytes += len;
        end += 1;
    }
    end
}
/// Connecting to a backup gives up after this long (a dead host must not hold the round).
const BACKUP_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A backup we could not reach is not tried again for this long.
const BACKUP_BACKOFF: Duration = Duration::from_secs(2);
/// How often the server list is refreshed while all is well.
const BACKUP_LIST_REFRESH: Duration = Duration::from_secs(1);
/// Sync rounds also run this often without writes (cleaner survivors, frees, lost backups).
const IDLE_ROUND: Duration = Duration::from_millis(20);
/// How long recording a replica epoch at the coordinator may take.
const EPOCH_RECORD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writes wait for missing backups before they are answered `RETRY`.
const SHORT_GRACE: Duration = Duration::from_secs(2);

enum Waiter {
    Reply {
        ticket: u64,
        responder: Responder,
        status: Status,
        payload: Vec<u8>,
    },
    Notify {
        ticket: u64,
        tx: std::sync::mpsc::Sender<bool>,
    },
}

impl Waiter {
    fn ticket(&self) -> u64 {
        match self {
            Waiter::Reply { ticket, .. } | Waiter::Notify { ticket, .. } => *ticket,
        }
    }
    fn complete(self, round: &Round) {
        match self {
            Waiter::Reply {
                responder,
                status,
                payload,
                ..
            } => match round {
                Round::Durable => responder.reply_vec(status, payload),
                Round::Short(detail) => {
                    responder.reply_vec(Status::RETRY, ErrorReply { version: 0, detail }.to_vec())
                }
                Round::NotServing(detail) => responder.reply_vec(
                    Status::NOT_SERVING,
                    ErrorReply { version: 0, detail }.to_vec(),
                ),
                Round::Fenced => {
                    let detail = "this master was declared dead and its tablets are being recovered elsewhere: refresh the tablet map";
                    responder.reply_vec(
                        Status::UNKNOWN_TABLET,
                        ErrorReply { version: 0, detail }.to_vec(),
                    );
                }
            },
            Waiter::Notify { tx, .. } => {
                let _ = tx.send(*round == Round::Durable);
            }
        }
    }
}

/// How a sync round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Round {
    /// Everything observed is on every replica.
    Durable,
    /// Replicas that could not be placed for too long (no other backup up, or the ones up
    /// unreachable or refusing): writes are answered `RETRY` with this explanation (the data
    /// stays in memory and is replicated once a backup can take it). Fewer backups up than R
    /// is not this: the log is then kept on the ones up (under-replicated).
    Short(String),
    /// Declared dead, or stopping.
    Fenced,
    /// The master lease ran out: not acknowledged (the client refreshes its map and retries).
    NotServing(&'static str),
}

/// A master's replication state shared by the dispatch threads and the replication thread.
pub struct Replication {
    replicas: usize,
    ticket: AtomicU64,
    queue: Mutex<Vec<Waiter>>,
    wake: Condvar,
    fenced: AtomicBool,
    stop: AtomicBool,
    status: Mutex<String>,
    under_replicated: AtomicBool,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// `replicas` backups per segment (0 = memory only).
    pub fn new(replicas: usize) -> Replication {
        Replication {
            replicas,
            ticket: AtomicU64::new(0),
            queue: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            fenced: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            under_replicated: AtomicBool::new(false),
            status: Mutex::new(if replicas == 0 {
                "memory only (--replicas 0)".into()
            } else {
                "starting".into()
            }),
        }
    }

    /// Replicas per segment.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Whether a backup said this master was declared dead.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// One line for `status`.
    pub fn describe(&self) -> String {
        self.status.lock().clone()
    }

    /// Whether some segment of the log has fewer than `--replicas` complete replicas (too few
    /// backups up, or replicas being re-made); [`Replication::describe`] says why.
    pub fn under_replicated(&self) -> bool {
        self.under_replicated.load(Ordering::Acquire)
    }

    /// Reply once everything in the log now is on every replica (at once without replication).
    pub fn reply_when_durable(&self, responder: Responder, status: Status, payload: Vec<u8>) {
        if self.replicas == 0 {
            return responder.reply_vec(status, payload);
        }
        self.enqueue(|ticket| Waiter::Reply {
            ticket,
            responder,
            status,
            payload,
        });
    }

    /// Waits until everything in the log now is on every replica; `false` if fenced, stopped
    /// or not done within `timeout`.
    pub fn wait_durable(&self, timeout: Duration) -> bool {
        if self.replicas == 0 {
            return true;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.enqueue(|ticket| Waiter::Notify { ticket, tx });
        rx.recv_timeout(timeout).unwrap_or(false)
    }

    fn enqueue(&self, w: impl FnOnce(u64) -> Waiter) {
        let mut q = self.queue.lock();
        // Taken after the caller's write is in the log (the caller wrote before calling).
        let ticket = self.ticket.fetch_add(1, Ordering::SeqCst) + 1;
        q.push(w(ticket));
        self.wake.notify_one();
    }

    /// Stops the replication thread (queued writes are not acknowledged).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _q = self.queue.lock();
        self.wake.notify_all();
    }
}

/// What the replication thread needs of its master. The master (`super::Master`) implements it;
/// this module does not name the master, so the dependency points one way.
pub trait ReplicationHost: Send + Sync + 'static {
    /// The master's storage engine (its log is what is replicated).
    fn engine(&self) -> &Engine;
    /// The replication state shared with the master's write path.
    fn replication(&self) -> &Replication;
    /// The master's server id (names its replicas on the backups).
    fn server_id(&self) -> ServerId;
    /// Whether the master may acknowledge writes now (`Err`: why not). A master whose lease ran
    /// out may have had its tablets recovered elsewhere while its replication was in flight: it
    /// must not acknowledge then, even if a backup took the data.
    fn may_acknowledge(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// The `status` line of a master's replication (`segs` segments, `reps` replicas placed).
fn health_text(h: &Health, segs: usize, reps: usize) -> String {
    if !h.under_replicated() {
        return format!(
            "{} replicas per segment on {} backups ({segs} segments, {reps} replicas)",
            h.r, h.available
        );
    }
    if h.available < h.r {
        format!(
            "UNDER-REPLICATED: R={} but {} other backup(s) up: writes are acknowledged on {} replica(s); the least-replicated segment has {}; full replication returns when more servers join ({segs} segments, {reps} replicas)",
            h.r, h.available, h.target, h.min_copies
        )
    } else {
        format!(
            "UNDER-REPLICATED: re-replicating to R={} on {} other backups up; the least-replicated segment has {} ({segs} segments, {reps} replicas)",
            h.r, h.available, h.min_copies
        )
    }
}

/// Starts the replication thread of `master` (nothing to do without replicas).
pub fn start(
    master: Arc<dyn ReplicationHost>,
    coordinator: CoordinatorLocator,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if master.replication().replicas == 0 {
        return Ok(None);
    }
    master.engine().require_replication(true);
    std::thread::Builder::new()
        .name("faascache-replication".into())
        .spawn(move || Shell::new(master, coordinator).run())
        .map(Some)
}

struct Shell {
    master: Arc<dyn ReplicationHost>,
    coordinator: CoordinatorLocator,
    coord_session: Option<Session>,
    mgr: ReplicaManager,
    backups: Vec<(ServerId, String)>,
    listed_at: Option<Instant>,
    sessions: HashMap<ServerId, Session>,
    handles: HashMap<u64, LogSegment>,
    buf: Vec<u8>,
    short_since: Option<Instant>,
    /// Backups that failed recently → not before this instant.
    backoff: HashMap<ServerId, Instant>,
    /// Backups to report to the coordinator after the round (never inside it).
    hints: Vec<ServerId>,
}

impl Shell {
    fn new(master: Arc<dyn ReplicationHost>, coordinator: CoordinatorLocator) -> Shell {
        let r = master.replication().replicas;
        Shell {
            mgr: ReplicaManager::new(master.server_id(), r),
            master,
            coordinator,
            coord_session: None,
            backups: Vec::new(),
            listed_at: None,
            sessions: HashMap::new(),
            handles: HashMap::new(),
            buf: Vec::new(),
            short_since: None,
            backoff: HashMap::new(),
            hints: Vec::new(),
        }
    }

    fn rep(&self) -> &Replication {
        self.master.replication()
    }

    fn run(mut self) {
        // The first head (with its digest) exists and is replicated before the first write,
        // so a crash always leaves a digest on the backups.
        self.master.engine().open_head();
        loop {
            {
                let rep = &self.master.replication();
                let mut q = rep.queue.lock();
                if q.is_empty() && !rep.stop.load(Ordering::Acquire) {
                    rep.wake.wait_for(&mut q, IDLE_ROUND);
                }
            }
            if self.rep().stop.load(Ordering::Acquire) {
                break;
            }
            let t = self.rep().ticket.load(Ordering::SeqCst);
            let mut round = self.sync_round();
            if round == Round::Durable {
                if let Err(why) = self.master.may_acknowledge() {
                    round = Round::NotServing(why);
                }
            }
            let done: Vec<Waiter> = {
                let mut q = self.rep().queue.lock();
                let (done, keep) = std::mem::take(&mut *q)
                    .into_iter()
                    .partition(|w| w.ticket() <= t || round == Round::Fenced);
                *q = keep;
                done
            };
            for w in done {
                w.complete(&round);
            }
            self.send_hints();
            if matches!(round, Round::Short(_)) {
                // Do not spin: wait for a backup to join.
                std::thread::sleep(Duration::from_millis(200));
                self.refresh_backups(true);
                self.short_since = None;
            }
            if self.mgr.fenced() {
                self.rep().fenced.store(true, Ordering::Release);
                *self.rep().status.lock() = "fenced: declared dead by the coordinator".into();
                tracing::error!("a backup refused our writes: this master was declared dead; stopping replication");
                // Refuse every later write until the process exits.
                loop {
                    let mut q = self.rep().queue.lock();
                    for w in std::mem::take(&mut *q) {
                        w.complete(&Round::Fenced);
                    }
                    if self.rep().stop.load(Ordering::Acquire) {
                        return;
                    }
                    self.rep().wake.wait_for(&mut q, Duration::from_millis(100));
                }
            }
        }
    }

    /// Snapshot the log and replicate until it is complete on every replica.
    fn sync_round(&mut self) -> Round {
        loop {
            if self.rep().stop.load(Ordering::Acquire) || self.mgr.fenced() {
                return Round::Fenced;
            }
            self.refresh_backups(false);
            self.observe();
            let ids: Vec<ServerId> = self.backups.iter().map(|b| b.0).collect();
            let now = Instant::now();
            let avoid: Vec<ServerId> = self
                .backoff
                .iter()
                .filter(|(_, until)| now < **until)
                .map(|(id, _)| *id)
                .collect();
            let actions = self.mgr.next_actions_avoiding(&ids, &avoid);
            self.mark_replicated();
            if actions.is_empty() {
                if let Some(round) = self.record_epoch() {
                    return round;
                }
                if self.mgr.synced() {
                    return self.durable();
                }
                if self.mgr.short_of_backups() {
                    // Tell the coordinator now about backups that did not answer: until it
                    // drops them from the list they count as up and writes wait for them.
                    self.send_hints();
                    let since = *self.short_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > SHORT_GRACE {
                        let h = self.mgr.health();
                        let msg = if h.available == 0 {
                            format!(
                                "UNDER-REPLICATED: no other backup is up (R={}): writes are not acknowledged until a server joins (a write only in this master's memory would not survive its crash)",
                                h.r
                            )
                        } else {
                            format!(
                                "UNDER-REPLICATED: {} replica(s) per segment needed (R={}, {} other backup(s) up) but some cannot be placed (unreachable, full or refusing); writes are not acknowledged until they can",
                                h.target, h.r, h.available
                            )
                        };
                        self.rep().under_replicated.store(true, Ordering::Release);
                        let mut st = self.rep().status.lock();
                        if *st != msg {
                            tracing::warn!("{msg}");
                            *st = msg.clone();
                        }
                        return Round::Short(msg);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    self.refresh_backups(true);
                    continue;
                }
            }
            self.execute(&actions);
            if let Some(round) = self.record_epoch() {
                return round;
            }
            if self.mgr.synced() {
                // Everything observed is durable; replicas still being made (a backup joined,
                // so the target rose) go on in the next rounds without holding writes back.
                return self.durable();
            }
        }
    }

    /// Records a raised replica epoch at the coordinator once every open replica has it (see
    /// `replication`): `None` if nothing was due or it is recorded; else how the round ends —
    /// `Fenced` if the coordinator no longer lists this master, `Short` (writes answered
    /// `RETRY`, tried again next round) if it could not be reached.
    fn record_epoch(&mut self) -> Option<Round> {
        let epoch = self.mgr.epoch_to_record()?;
        if self
            .coord_session
            .as_ref()
            .is_none_or(|s| s.failure().is_some())
        {
            self.coord_session = self.coordinator.connect(ClientConfig::default()).ok();
        }
        let req = SetReplicaEpochRequest {
            server: self.master.server_id(),
            epoch,
        };
        let answer = match &self.coord_session {
            Some(s) => call(s, &req, EPOCH_RECORD_TIMEOUT, |_| ()),
            None => {
                let why = format!("the coordinator is unreachable: cannot record replica epoch {epoch}; writes wait (answered RETRY)");
                tracing::warn!("{why}");
                return Some(Round::Short(why));
            }
        };
        match answer {
            Ok(()) => {
                tracing::info!(
                    epoch,
                    "replica epoch recorded at the coordinator (a lost open replica is stale)"
                );
                self.mgr.epoch_recorded(epoch);
                None
            }
            Err(e) if e.status() == Some(Status::SERVER_DOESNT_EXIST) => {
                tracing::error!(error = %e, "the coordinator refused our replica epoch: this master was declared dead");
                self.mgr.fence();
                Some(Round::Fenced)
            }
            Err(e) => {
                let why = format!("cannot record replica epoch {epoch} at the coordinator ({e}); writes wait (answered RETRY)");
                tracing::warn!("{why}");
                Some(Round::Short(why))
            }
        }
    }

    /// A round ends durable.
    fn durable(&mut self) -> Round {
        if let Some(t) = self.short_since.take() {
            tracing::info!(after = ?t.elapsed(), "enough backups again: writes are acknowledged");
        }
        self.report_health();
        Round::Durable
    }

    /// The `status` line and the log after a durable round: whether the log is
    /// under-replicated, and why.
    fn report_health(&mut self) {
        let h = self.mgr.health();
        let (segs, reps) = self.mgr.counts();
        let text = health_text(&h, segs, reps);
        let was = self
            .rep()
            .under_replicated
            .swap(h.under_replicated(), Ordering::AcqRel);
        match (was, h.under_replicated()) {
            (false, true) => tracing::warn!(
                replicas = h.r,
                other_backups_up = h.available,
                kept = h.target,
                fewest = h.min_copies,
                "{text}"
            ),
            (true, false) => tracing::info!("fully replicated again: {text}"),
            _ => {}
        }
        *self.rep().status.lock() = text;
    }

    fn observe(&mut self) {
        let segs = self.master.engine().log_segments();
        let mut infos = Vec::with_capacity(segs.len());
        self.handles.clear();
        for s in segs {
            let cert = s.certificate();
            infos.push(SegmentInfo {
                id: s.id,
                head: s.head,
                closed: s.closed(),
                length: cert.length,
                checksum: cert.checksum,
                // Only the head's digest can still become durable: older heads' digests are
                // kept by the manager from when they were heads (no O(segments²) copy a round).
                digest: s
                    .head
                    .then(|| s.digest().map(|(v, end)| (v.to_vec(), end)))
                    .flatten(),
                identity: s.identity(),
            });
            self.handles.insert(s.id, s);
        }
        self.mgr.observe(&infos);
    }

    /// Tells the cleaner which segments are complete. A segment that was complete and no
    /// longer is (a replica was lost) must not be under cleaning while we re-send it.
    fn mark_replicated(&mut self) {
        let mut lowered = false;
        for (id, h) in &self.handles {
            let complete = self.mgr.is_complete(*id);
            if h.replicated() && !complete {
                lowered = true;
            }
            h.set_replicated(complete);
        }
        if lowered {
            self.master.engine().wait_cleaning();
        }
    }

    /// Sends a round's actions in windows of at most [`MAX_ROUND_BYTES`] of replica data, each
    /// answered (or timed out) before the next is built, so the copies a round holds stay
    /// bounded however much it replicates (a whole log re-sent to a new backup).
    fn execute(&mut self, actions: &[Action]) {
        let mut down: Vec<ServerId> = Vec::new();
        let mut start = 0;
        while start < actions.len() {
            let end = window_end(actions, start, MAX_ROUND_BYTES);
            self.execute_window(&actions[start..end], &mut down);
            start = end;
        }
    }

    fn execute_window(&mut self, actions: &[Action], down: &mut Vec<ServerId>) {
        let me = self.master.server_id();
        let mut pending: Vec<(usize, Option<PendingRpc>)> = Vec::with_capacity(actions.len());
        // A write's request is built in `self.buf` (its log bytes read straight into it) and
        // sent before the next is built.
        let mut buf = std::mem::take(&mut self.buf);
        for (i, a) in actions.iter().enumerate() {
            buf.clear();
            let (backup, op) = match *a {
                Action::Write {
                    backup,
                    segment,
                    from,
                    to,
                    checksum,
                    open,
                    close,
                    epoch,
                } => {
                    let Some(h) = self.handles.get(&segment) else {
                        // Left the log since the snapshot: the next round frees it.
                        pending.push((i, None));
                        continue;
                    };
                    let mut flags = 0;
                    if open {
                        flags |= BackupWriteRequest::OPEN;
                    }
                    if close {
                        flags |= BackupWriteRequest::CLOSE;
                    }
                    let req = BackupWriteRequest {
                        master: me,
                        segment_id: segment,
                        offset: from,
                        flags,
                        certificate: ReplicaCertificate {
                            length: to,
                            checksum,
                        },
                        data: &[],
                        epoch,
                    };
                    let engine = self.master.engine();
                    req.encode_filled(&mut buf, |out| {
                        engine.read_segment(h, from as usize, to as usize, out);
                    });
                    (backup, Opcode::BackupWrite)
                }
                Action::Free { backup, segment } => {
                    BackupFreeRequest {
                        master: me,
                        segment_id: segment,
                    }
                    .encode(&mut buf);
                    (backup, Opcode::BackupFree)
                }
            };
            let sent = self.session(backup).and_then(|s| s.send(op, &buf).ok());
            pending.push((i, sent));
        }
        self.buf = buf;
        // One deadline for the whole window: every RPC went out at once above.
        let deadline = Instant::now() + BACKUP_RPC_TIMEOUT;
        for (i, p) in pending {
            let a = &actions[i];
            let backup = match a {
                Action::Write { backup, .. } | Action::Free { backup, .. } => *backup,
            };
            let outcome = match p {
                None if matches!(a, Action::Write { .. })
                    && !self.sessions.contains_key(&backup) =>
                {
                    WriteOutcome::BackupDown
                }
                None => WriteOutcome::Refused,
                // Already found down in this round: do not wait for it again.
                Some(_) if down.contains(&backup) => WriteOutcome::BackupDown,
                Some(mut rpc) => match rpc.wait(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok((Status::OK, _)) => WriteOutcome::Ok,
                    Ok((Status::CALLER_NOT_IN_CLUSTER, _)) => WriteOutcome::Fenced,
                    Ok((status, body)) => {
                        let detail = ErrorReply::decode(&body)
                            .map(|e| e.detail.to_string())
                            .unwrap_or_default();
                        tracing::warn!(%backup, %status, detail, action = ?a, "backup refused a replica write; placing the replica elsewhere");
                        WriteOutcome::Refused
                    }
                    Err(e) => {
                        tracing::warn!(%backup, error = %e, "backup unreachable: re-replicating its replicas elsewhere");
                        down.push(backup);
                        self.sessions.remove(&backup);
                        self.forget_backup(backup);
                        WriteOutcome::BackupDown
                    }
                },
            };
            if let Action::Write { .. } = a {
                self.mgr.on_result(a, outcome);
            }
        }
    }

    fn forget_backup(&mut self, backup: ServerId) {
        // Tell the coordinator after the round (it checks and, if the backup is dead,
        // recovers it); not trying it again for a while.
        if !self.hints.contains(&backup) {
            self.hints.push(backup);
        }
        // It stays in the list (it still counts towards the target until the coordinator
        // drops it) but gets no new replica during the backoff.
        self.backoff.insert(backup, Instant::now() + BACKUP_BACKOFF);
        self.mgr.backup_down(backup);
        // Ask the list again soon: the coordinator decides whether it crashed.
        self.listed_at = None;
    }

    /// Report the backups found down in the last round to the coordinator (after the round's
    /// writes were answered: a slow coordinator must not delay them).
    fn send_hints(&mut self) {
        if self.hints.is_empty() {
            return;
        }
        let hints = std::mem::take(&mut self.hints);
        if let Some(s) = &self.coord_session {
            for backup in hints {
                let _ = call(
                    s,
                    &HintServerCrashedRequest { server: backup },
                    Duration::from_secs(1),
                    |_| (),
                );
            }
        }
    }

    fn session(&mut self, backup: ServerId) -> Option<&Session> {
        if self
            .backoff
            .get(&backup)
            .is_some_and(|until| Instant::now() < *until)
        {
            return None;
        }
        self.backoff.remove(&backup);
        if self
            .sessions
            .get(&backup)
            .is_some_and(|s| s.failure().is_some())
        {
            self.sessions.remove(&backup);
        }
        if !self.sessions.contains_key(&backup) {
            let loc = self.backups.iter().find(|b| b.0 == backup)?.1.clone();
            let parsed: ServiceLocator = loc.parse().ok()?;
            let cfg = ClientConfig {
                connect_timeout: BACKUP_CONNECT_TIMEOUT,
                ..ClientConfig::default()
            };
            match faascache_transport::connect(&parsed, cfg) {
                Ok(s) => {
                    self.sessions.insert(backup, s);
                }
                Err(e) => {
                    tracing::warn!(%backup, error = %e, "cannot connect to backup; trying others for a while");
                    self.backoff.insert(backup, Instant::now() + BACKUP_BACKOFF);
                    return None;
                }
            }
        }
        self.sessions.get(&backup)
    }

    /// The backups that are up (other than this server), from the coordinator.
    fn refresh_backups(&mut self, force: bool) {
        if !force
            && self
                .listed_at
                .is_some_and(|t| t.elapsed() < BACKUP_LIST_REFRESH)
        {
            return;
        }
        self.listed_at = Some(Instant::now());
        if self
            .coord_session
            .as_ref()
            .is_none_or(|s| s.failure().is_some())
        {
            self.coord_session = self.coordinator.connect(ClientConfig::default()).ok();
        }
        let Some(s) = &self.coord_session else {
            return;
        };
        let me = self.master.server_id();
        let req = GetServerListRequest {
            services: Services::BACKUP,
        };
        match call(s, &req, Duration::from_secs(2), |r| {
            r.servers
                .iter()
                .filter(|e| e.status == ServerStatus::Up && e.id != me)
                .map(|e| (e.id, e.locator.to_string()))
                .collect::<Vec<_>>()
        }) {
            Ok(list) => {
                for (id, _) in &self.backups {
                    if !list.iter().any(|(l, _)| l == id) {
                        self.mgr.backup_down(*id);
                        self.sessions.remove(id);
                    }
                }
                self.backups = list;
            }
            Err(e) => tracing::debug!(error = %e, "cannot refresh the backup list"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(from: u32, to: u32) -> Action {
        Action::Write {
            backup: ServerId(1),
            segment: 1,
            from,
            to,
            checksum: 0,
            open: false,
            close: false,
            epoch: 0,
        }
    }

    #[test]
    fn windows_bound_the_bytes_in_flight() {
        let seg = 8 << 20;
        // A new backup receiving a 10-segment log: 80 MiB in one round.
        let mut actions: Vec<Action> = (0..10).map(|_| write(0, seg)).collect();
        actions.insert(
            3,
            Action::Free {
                backup: ServerId(2),
                segment: 9,
            },
        );
        let mut start = 0;
        let mut windows = Vec::new();
        while start < actions.len() {
            let end = window_end(&actions, start, MAX_ROUND_BYTES);
            let bytes: usize = actions[start..end]
                .iter()
                .map(|a| match a {
                    Action::Write { from, to, .. } => (to - from) as usize,
                    Action::Free { .. } => 0,
                })
                .sum();
            assert!(bytes <= MAX_ROUND_BYTES, "window of {bytes} bytes");
            windows.push(end - start);
            start = end;
        }
        assert_eq!(windows.iter().sum::<usize>(), actions.len());
        assert_eq!(
            windows,
            vec![5, 4, 2],
            "4 segments (+ the free) per 32 MiB window"
        );
        // One action larger than the budget still goes (alone).
        let big = [write(0, 64 << 20), write(0, 1)];
        assert_eq!(window_end(&big, 0, MAX_ROUND_BYTES), 1);
        assert_eq!(window_end(&big, 1, MAX_ROUND_BYTES), 2);
    }
}
