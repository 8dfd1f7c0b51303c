//! The seam between crash recovery and the coordinator's RPC shell: [`ClusterIo`] is every
//! operation recovery performs on the cluster — read or change the coordinator state under its
//! lock (persisting before anything is sent), carry out control sends, and the three RPCs it
//! makes to backups and recovery masters. The shell (`service::Coordinator`) implements it over
//! real sessions; a test or a simulator implements it in memory. Recovery names only this
//! module and the state machine, never the shell.
//!
//! The errors of those operations live here too, so that both sides name them without naming
//! each other.

use std::time::Duration;

use faascache_protocol::msg::backup::{
    BackupGetReplicasRequest, BackupGetReplicasResponse, BackupRecoveryDoneRequest,
};
use faascache_protocol::msg::control::{RecoverTabletsRequest, RecoverTabletsResponse};
use faascache_protocol::msg::ServerId;
use faascache_transport::{CallError, Status};

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
    /// `BackupGetReplicas` to the backup at `locator` (also fences the crashed master there).
    fn get_replicas(
        &self,
        locator: &str,
        req: &BackupGetReplicasRequest,
        timeout: Duration,
    ) -> Result<BackupGetReplicasResponse, CallError>;
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
