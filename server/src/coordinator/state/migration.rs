//! Tablet splits and migration: the transitions of [`CoordinatorState`] that the
//! `MigrateTablet` / `SplitTablet` RPCs drive (sans-I/O; the shell runs the copy).

use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::{ServerId, Services};

use super::{Action, Control, CoordError, CoordinatorState, MigrationPlan, Tablet};

impl CoordinatorState {
    /// Split the tablet containing `split` so that `split` starts a new tablet (same owner).
    pub fn split_tablet(&mut self, table: u64, split: u64) -> Result<Vec<Action>, CoordError> {
        if !self.tables.values().any(|t| t.id == table) {
            return Err(CoordError::NoSuchTableId(table));
        }
        let i = self
            .tablets
            .iter()
            .position(|t| t.table_id == table && t.start <= split && split <= t.end)
            .ok_or(CoordError::NoSuchTablet {
                table,
                start: split,
                end: split,
            })?;
        let t = self.tablets[i];
        if t.start == split {
            return Ok(Vec::new());
        }
        if t.state == TabletState::Migrating {
            return Err(CoordError::Conflict(
                "the tablet is migrating: split it afterwards".into(),
            ));
        }
        self.tablets[i].end = split - 1;
        self.tablets.push(Tablet { start: split, ..t });
        self.sort_tablets();
        self.tablet_map_version += 1;
        Ok(vec![Action::Persist])
    }

    /// Start moving tablet `[start, end]` of `table` to `target`. The tablet is marked
    /// migrating (not persisted: a restarted coordinator sees it at its old owner, which is where
    /// a failed migration leaves it).
    pub fn begin_migration(
        &mut self,
        table: u64,
        start: u64,
        end: u64,
        target: ServerId,
    ) -> Result<MigrationPlan, CoordError> {
        let i = self
            .tablets
            .iter()
            .position(|t| t.table_id == table && t.start == start && t.end == end)
            .ok_or(CoordError::NoSuchTablet { table, start, end })?;
        let t = self.tablets[i];
        if t.state != TabletState::Normal {
            return Err(CoordError::Conflict(format!(
                "the tablet is {}: try again later",
                t.state
            )));
        }
        let tgt = self
            .server(target)
            .filter(|s| s.status == ServerStatus::Up && s.services.has(Services::MASTER))
            .ok_or(CoordError::NoSuchServer(target))?;
        if t.owner == target {
            return Err(CoordError::Conflict(format!(
                "server {target} already owns the tablet"
            )));
        }
        let src = self
            .server(t.owner)
            .filter(|s| s.status == ServerStatus::Up)
            .ok_or(CoordError::NoSuchServer(t.owner))?;
        let plan = MigrationPlan {
            range: t.range(),
            source: (src.id, src.locator.clone()),
            target: (tgt.id, tgt.locator.clone()),
        };
        self.tablets[i].state = TabletState::Migrating;
        self.tablet_map_version += 1;
        Ok(plan)
    }

    /// The source copied the tablet: the target owns it now.
    pub fn finish_migration(&mut self, plan: &MigrationPlan) -> Vec<Action> {
        let mut actions = vec![Action::Persist];
        if let Some(i) = self.find_tablet(&plan.range) {
            self.tablets[i].owner = plan.target.0;
            self.tablets[i].state = TabletState::Normal;
            self.tablet_map_version += 1;
            actions.extend(self.send(plan.target.0, Control::Take(plan.range)));
            actions.extend(self.send(plan.source.0, Control::Drop(plan.range)));
        } else {
            // The table was dropped meanwhile: the target drops what it received.
            actions.extend(self.send(plan.target.0, Control::Drop(plan.range)));
            actions.extend(self.send(plan.source.0, Control::Drop(plan.range)));
        }
        actions
    }

    /// The migration failed: the source keeps the tablet; the target drops what it received.
    pub fn abort_migration(&mut self, plan: &MigrationPlan) -> Vec<Action> {
        if let Some(i) = self.find_tablet(&plan.range) {
            if self.tablets[i].state == TabletState::Migrating {
                self.tablets[i].state = TabletState::Normal;
                self.tablet_map_version += 1;
            }
        }
        self.send(plan.target.0, Control::Drop(plan.range))
            .into_iter()
            .collect()
    }
}
