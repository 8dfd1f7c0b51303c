//! Moving tablets: `MigrateTablet` (one tablet, on request), `DrainServer` (every tablet of a
//! server, then retire and remove it) and the rebalancer (`--rebalance`: shares proportional
//! to memory budgets). The choices are the state machine's (`state::drain`); this runs the
//! copies, on the migration workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::BackupRecoveryDoneRequest;
use faascache_protocol::msg::control::{MigrateTabletOutRequest, PrepareMigrationRequest};
use faascache_protocol::msg::coordinator::{MigrateTabletRequest, ServerStatus};
use faascache_protocol::msg::elastic::{
    DrainServerRequest, DrainServerResponse, RetireServerRequest,
};
use faascache_protocol::msg::{Message, ServerId};
use faascache_transport::server::IncomingRpc;
use faascache_transport::Status;

use super::super::cluster_io::ClusterIo;
use super::super::state::{DrainStep, MigrationPlan, TabletMove};
use super::{
    bad_request, reply_fail, Coordinator, CoordinatorService, Fail, MigrationError,
    CONTROL_TIMEOUT, MIGRATE_TIMEOUT,
};

/// How long a drain waits for a tablet of the server that is migrating or recovering.
pub const DRAIN_WAIT: Duration = Duration::from_secs(120);
/// How often the rebalancer looks for a move.
pub const REBALANCE_PERIOD: Duration = Duration::from_secs(2);

impl Coordinator {
    fn run_migration(&self, plan: &MigrationPlan) -> Result<(), MigrationError> {
        self.rpc(
            &plan.target.1,
            &PrepareMigrationRequest {
                range: plan.range,
                source: plan.source.0,
            },
            CONTROL_TIMEOUT,
            |_| (),
        )
        .map_err(MigrationError::Prepare)?;
        self.rpc(
            &plan.source.1,
            &MigrateTabletOutRequest {
                range: plan.range,
                target: plan.target.0,
                target_locator: &plan.target.1,
            },
            MIGRATE_TIMEOUT,
            |_| (),
        )
        .map_err(MigrationError::Copy)
    }

    /// Move one tablet to `target` (copy, then hand ownership over). On failure the source
    /// keeps the tablet.
    fn migrate(&self, table: u64, start: u64, end: u64, target: ServerId) -> Result<(), Fail> {
        let (plan, _) = self.transition(|st| {
            st.begin_migration(table, start, end, target)
                .map(|p| (p, Vec::new()))
        })?;
        tracing::info!(table, source = %plan.source.0, target = %plan.target.0, "migration started");
        match self.run_migration(&plan) {
            Ok(()) => {
                let ((), sends) = self.transition(|st| Ok(((), st.finish_migration(&plan))))?;
                let sent = self.send_all(sends);
                tracing::info!(table, target = %plan.target.0, ?sent, "migration finished");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(table, error = %e, "migration failed; the source keeps the tablet");
                if let Ok(((), sends)) = self.transition(|st| Ok(((), st.abort_migration(&plan)))) {
                    let _ = self.send_all(sends);
                }
                Err(Fail(
                    Status::INTERNAL_ERROR,
                    format!("migration failed: {e}"),
                ))
            }
        }
    }

    /// Drain `id`: move its tablets, retire and remove it (see `DrainServerRequest`).
    fn drain(&self, id: ServerId) -> Result<DrainServerResponse, Fail> {
        let started = Instant::now();
        self.transition(|st| st.begin_drain(id).map(|()| ((), Vec::new())))?;
        tracing::warn!(server = %id, "draining: moving its tablets to other masters");
        let moved = self.drain_tablets(id);
        let out = match moved {
            Ok(moved) => self.retire(id, moved, started),
            Err((moved, f)) => {
                tracing::warn!(server = %id, moved, error = %f.1, "drain stopped; the server keeps its other tablets");
                Err(Fail(
                    f.0,
                    format!("{} ({moved} tablets were moved before)", f.1),
                ))
            }
        };
        let _ = self.transition(|st| {
            st.end_drain(id);
            Ok(((), Vec::new()))
        });
        out
    }

    /// Move every tablet off `id`: how many, or how many before the error.
    fn drain_tablets(&self, id: ServerId) -> Result<u32, (u32, Fail)> {
        let mut moved = 0u32;
        let mut waiting_since: Option<Instant> = None;
        loop {
            let step = self
                .with_state(|st| st.drain_step(id))
                .map_err(|e| (moved, Fail::from(e)))?;
            match step {
                DrainStep::Done => return Ok(moved),
                DrainStep::Wait(why) => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > DRAIN_WAIT {
                        return Err((
                            moved,
                            Fail(
                                Status::RETRY,
                                format!("waited {DRAIN_WAIT:?} for a tablet: {why}; try again"),
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                DrainStep::Move(TabletMove {
                    table,
                    start,
                    end,
                    to,
                    ..
                }) => {
                    waiting_since = None;
                    self.migrate(table, start, end, to)
                        .map_err(|f| (moved, f))?;
                    moved += 1;
                }
            }
        }
    }

    /// Tell the drained server to retire, remove it, and free its log's replicas.
    fn retire(
        &self,
        id: ServerId,
        moved: u32,
        started: Instant,
    ) -> Result<DrainServerResponse, Fail> {
        let locator = self.with_state(|st| {
            st.server(id)
                .filter(|s| s.status == ServerStatus::Up)
                .map(|s| s.locator.clone())
        });
        let retired = match &locator {
            Some(l) => match self.rpc(
                l,
                &RetireServerRequest { server: id },
                CONTROL_TIMEOUT,
                |_| (),
            ) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(server = %id, error = %e, "the drained server did not acknowledge RetireServer; removing it anyway (if it still runs, it re-enlists as a new empty server: stop it)");
                    false
                }
            },
            None => false,
        };
        self.transition(|st| st.remove_drained(id).map(|a| ((), a)))?;
        // Its log holds none of the cluster's data now: its replicas can go.
        let done = BackupRecoveryDoneRequest { master: id };
        for b in self.with_state(|st| st.up_backups(id)) {
            if let Err(e) = self.recovery_done(&b.locator, &done, CONTROL_TIMEOUT) {
                tracing::debug!(backup = %b.id, error = %e, "cannot free a drained server's replicas there");
            }
        }
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::warn!(server = %id, moved, retired, seconds = elapsed_us as f64 / 1e6, "server drained and removed");
        Ok(DrainServerResponse {
            tablets_moved: moved,
            retired,
            elapsed_us,
        })
    }

    /// The rebalancer's thread: one move at a time, every [`REBALANCE_PERIOD`], until `stop`.
    pub(super) fn rebalance_loop(&self, stop: &AtomicBool) {
        let mut last = Instant::now();
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() < REBALANCE_PERIOD {
                continue;
            }
            last = Instant::now();
            let Some(m) = self.with_state(|st| st.rebalance_move()) else {
                continue;
            };
            // On this thread: one rebalancing move at a time, besides requested migrations.
            tracing::info!(table = m.table, from = %m.from, to = %m.to, "rebalancing by memory budget");
            if let Err(f) = self.migrate(m.table, m.start, m.end, m.to) {
                tracing::warn!(table = m.table, error = %f.1, "a rebalancing move failed");
            }
            last = Instant::now();
        }
    }
}

impl CoordinatorService {
    pub(super) fn on_migrate_tablet(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, MigrateTabletRequest);
        self.on_migration_worker(call, move |c| {
            c.migrate(req.table_id, req.start_hash, req.end_hash, req.target)
                .map(|()| Vec::new())
        });
    }

    pub(super) fn on_drain_server(&self, call: &mut IncomingRpc<'_>) {
        let req = decode_or_reply!(call, DrainServerRequest);
        self.on_migration_worker(call, move |c| c.drain(req.server).map(|r| r.to_vec()));
    }

    /// Run `job` on a migration worker (copies take long: the coordinator's worker keeps
    /// serving) and reply with what it returns; `RETRY` if no place is free.
    fn on_migration_worker(
        &self,
        call: &mut IncomingRpc<'_>,
        job: impl FnOnce(&Coordinator) -> Result<Vec<u8>, Fail> + Send + 'static,
    ) {
        let place = match self.c.migrations.reserve() {
            Ok(p) => p,
            Err(busy) => return super::fail_now(call, Fail(Status::RETRY, busy.to_string())),
        };
        let Some(r) = call.defer() else {
            return;
        };
        let c = self.c.clone();
        place.submit(move || match job(&c) {
            Ok(body) => r.reply_vec(Status::OK, body),
            Err(f) => reply_fail(r, f),
        });
    }
}
