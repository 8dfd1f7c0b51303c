//! The seam between crash recovery and the coordinator's RPC shell: [`ClusterIo`] is every
//! operation recovery performs on the cluster — read or change the coordinator state under its
//! lock (persisting before anything is sent), carry out control sends, and the three RPCs it
//! makes to backups and recovery masters. The shell (`service::Coordinator`) implements it over
//! real sessions; a test or a simulator implements it in memory. Recovery names only this
//! module and the state machine, never the shell.
//!
//! The errors of those operations live here too, so that both sides name them without naming
//! each other.

use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::{
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest,
};
use faascache_protocol::msg::control::{RecoverTabletsRequest, RecoverTabletsResponse};
use faascache_protocol::msg::ServerId;
use faascache_protocol::msg::{decode_reply, Request};
use faascache_transport::{CallError, Session, Status};

use super::external::ExternalStorageError;
use super::state::{Action, CoordError, CoordinatorState};

/// Why a coordinator state transition did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The state machine refused it (nothing changed); its status goes to the client.
    #[error(transparent)]
    Rejected(#[from] CoordError),
    /// The new state could not be written to external storage: nothing was sent or answered,
    /// and the in-memory state is ahead of the persisted one. Typically the coordinator lost
    /// leadership ([`ExternalStorageError::NotLeader`]) and must exit.
    #[error("the coordinator cannot persist its state: {0}")]
    Persist(#[from] ExternalStorageError),
}

impl TransitionError {
    /// The status a client gets.
    pub fn status(&self) -> Status {
        match self {
            TransitionError::Rejected(e) => e.status(),
            TransitionError::Persist(_) => Status::INTERNAL_ERROR,
        }
    }
}

/// A control RPC to a master (`TakeTabletOwnership`, `DropTabletOwnership`) failed. The master
/// is told again when it re-registers.
#[derive(Debug, thiserror::Error)]
#[error("server {to}: {source}")]
pub struct ControlSendError {
    /// The master.
    pub to: ServerId,
    /// What failed.
    pub source: CallError,
}

/// Everything crash recovery does to the cluster (see the module documentation).
pub trait ClusterIo: Sync {
    /// Run a query on the coordinator state (under its lock).
    fn read<T>(&self, f: impl FnOnce(&CoordinatorState) -> T) -> T;
    /// Run a state transition under the lock; if it returns [`Action::Persist`], persist the
    /// new state before returning. Returns its value and the control sends it produced (not
    /// yet carried out: see [`ClusterIo::send`]).
    fn transition<T>(
        &self,
        f: impl FnOnce(&mut CoordinatorState) -> Result<(T, Vec<Action>), CoordError>,
    ) -> Result<(T, Vec<Action>), TransitionError>;
    /// How long until the master lease last granted to `server` is surely over (lease +
    /// margin after the grant): its tablets are handed to recovery masters only then. Zero by
    /// default (an I/O layer that grants no leases).
    fn master_lease_wait(&self, server: ServerId) -> Duration {
        let _ = server;
        Duration::ZERO
    }
    /// Carry out control sends; every failure is logged and the first is returned.
    fn send(&self, actions: Vec<Action>) -> Result<(), ControlSendError>;
    /// `BackupGetReplicas` to every backup in `locators` at once (it also fences the crashed
    /// master there), all answers awaited with one deadline `timeout` from now: a dead backup
    /// costs one deadline however many there are. One result per locator, in order.
    fn get_replicas(
        &self,
        locators: &[&str],
        req: &BackupGetReplicasRequest,
        timeout: Duration,
    ) -> Vec<Result<BackupGetReplicasResponse, CallError>>;
    /// `RecoverTablets` to the recovery master at `locator`.
    fn recover_tablets(
        &self,
        locator: &str,
        req: &RecoverTabletsRequest<'_>,
        timeout: Duration,
    ) -> Result<RecoverTabletsResponse, CallError>;
    /// `BackupRecoveryDone` to the backup at `locator`: it may free the crashed master's
    /// replicas.
    fn recovery_done(
        &self,
        locator: &str,
        req: &BackupRecoveryDoneRequest,
        timeout: Duration,
    ) -> Result<(), CallError>;
}

/// Send `req` on every session at once, then wait for every reply with one deadline (`timeout`
/// from now); decode each with `f`. One result per session, in order. No thread per peer: the
/// replies are read by the calling thread.
pub fn fan_out<'a, R: Request<'a>, T>(
    sessions: Vec<Result<Session, CallError>>,
    req: &R,
    timeout: Duration,
    f: impl for<'b> Fn(R::Response<'b>) -> T,
) -> Vec<Result<T, CallError>> {
    let payload = req.to_vec();
    let deadline = Instant::now() + timeout;
    let pending: Vec<_> = sessions
        .into_iter()
        .map(|s| s.and_then(|s| s.send(R::OPCODE, &payload).map_err(CallError::from)))
        .collect();
    pending
        .into_iter()
        .map(|p| {
            let mut rpc = p?;
            let (status, body) = rpc.wait(deadline.saturating_duration_since(Instant::now()))?;
            // A named binding: the borrow of `body` must end before `body` is dropped.
            #[allow(clippy::let_and_return)]
            let out = match decode_reply::<R::Response<'_>>(status, &body) {
                Ok(r) => Ok(f(r)),
                Err(Ok(failure)) => Err(CallError::Failed(failure)),
                Err(Err(e)) => Err(CallError::Malformed(e)),
            };
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faascache_protocol::msg::backup::BackupGetReplicasRequest;
    use faascache_transport::{connect, ClientConfig, ServiceLocator};

    /// Three backups that accept connections and never answer: one deadline in all.
    #[test]
    fn hung_peers_cost_one_deadline() {
        let hung: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let sessions = hung
            .iter()
            .map(|l| {
                let loc: ServiceLocator =
                    format!("tcp:host=127.0.0.1,port={}", l.local_addr().unwrap().port())
                        .parse()
                        .unwrap();
                connect(&loc, ClientConfig::default()).map_err(CallError::from)
            })
            .collect();
        let timeout = Duration::from_millis(400);
        let start = Instant::now();
        let r = fan_out(
            sessions,
            &BackupGetReplicasRequest {
                master: ServerId(7),
                min_epoch: 0,
            },
            timeout,
            |r| r.replicas.len(),
        );
        let took = start.elapsed();
        assert_eq!(r.len(), 3);
        assert!(
            r.iter().all(|x| matches!(x, Err(CallError::Transport(_)))),
            "{r:?}"
        );
        assert!(
            took >= timeout && took < 2 * timeout,
            "three hung peers took {took:?}"
        );
    }
}
