//! Crash recovery's transitions of [`CoordinatorState`] (sans-I/O, like the rest): confirm a
//! crash, find pending recoveries, plan the partitions, hand recovered ranges over, remove the
//! recovered server. The I/O that drives them is `coordinator/recovery.rs`.

use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::{ServerId, Services};

use super::{Action, Control, CoordError, CoordinatorState, RecoveryPart, ServerRecord, Tablet};

impl CoordinatorState {
    /// A server reported `id` unreachable and the coordinator could not reach it either:
    /// mark it crashed now (recovery starts) instead of waiting for the heartbeat timeout.
    pub fn confirm_crashed(&mut self, id: ServerId) -> Vec<Action> {
        match self.server(id) {
            Some(s) if s.status == ServerStatus::Up => {
                tracing::warn!(server = %id, "confirmed unreachable: marking the server crashed");
                self.mark_crashed(id);
                vec![Action::Persist]
            }
            _ => Vec::new(),
        }
    }

    // ---- recovery ------------------------------------------------------------------------------

    /// Crashed servers whose tablets wait for recovery.
    pub fn recoveries_pending(&self) -> Vec<ServerRecord> {
        self.servers
            .values()
            .filter(|s| s.status == ServerStatus::Crashed)
            .filter(|s| {
                self.tablets
                    .iter()
                    .any(|t| t.owner == s.id && t.state == TabletState::Recovering)
            })
            .cloned()
            .collect()
    }

    /// Up servers running a backup, other than `except`.
    pub fn up_backups(&self, except: ServerId) -> Vec<ServerRecord> {
        self.servers
            .values()
            .filter(|s| {
                s.status == ServerStatus::Up && s.services.has(Services::BACKUP) && s.id != except
            })
            .cloned()
            .collect()
    }

    /// Partitions the tablets of `crashed` that wait for recovery over the up masters: each
    /// tablet is split into one key-hash range per recovery master (at most `max_parts`), so
    /// that they replay in parallel. Returns (master, its locator, its ranges); persist first.
    pub fn plan_recovery(
        &mut self,
        crashed: ServerId,
        max_parts: usize,
    ) -> Result<(Vec<RecoveryPart>, Vec<Action>), CoordError> {
        let masters: Vec<(ServerId, String)> = self
            .up_masters()
            .iter()
            .filter(|s| s.id != crashed)
            .map(|s| (s.id, s.locator.clone()))
            .collect();
        if masters.is_empty() {
            return Err(CoordError::NoMasters);
        }
        let parts = masters.len().min(max_parts.max(1));
        let mine: Vec<Tablet> = self
            .tablets
            .iter()
            .filter(|t| t.owner == crashed && t.state == TabletState::Recovering)
            .copied()
            .collect();
        let mut changed = false;
        // Split only on the first plan: a retried recovery (a part failed) reuses the ranges
        // it has, so the map does not grow with every attempt.
        let split = mine.len() < parts;
        for t in mine.iter().filter(|_| split) {
            // Split points at equal fractions of the tablet's hash range.
            let width = (t.end - t.start) as u128 + 1;
            for k in 1..parts {
                let at = t.start as u128 + width * k as u128 / parts as u128;
                if at > t.start as u128 && at <= t.end as u128 {
                    let split = at as u64;
                    if let Some(i) = self
                        .tablets
                        .iter()
                        .position(|x| x.table_id == t.table_id && x.start < split && split <= x.end)
                    {
                        let x = self.tablets[i];
                        self.tablets[i].end = split - 1;
                        self.tablets.push(Tablet { start: split, ..x });
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.sort_tablets();
        }
        let mut plan: Vec<RecoveryPart> = masters
            .iter()
            .map(|(id, loc)| (*id, loc.clone(), Vec::new()))
            .collect();
        let mut i = self.rr;
        let n = plan.len();
        for t in self
            .tablets
            .iter()
            .filter(|t| t.owner == crashed && t.state == TabletState::Recovering)
        {
            plan[i % n].2.push(t.range());
            i += 1;
        }
        self.rr = i;
        plan.retain(|p| !p.2.is_empty());
        Ok((plan, vec![Action::Persist]))
    }

    /// `master` recovered `ranges` of `crashed`: it owns them now.
    pub fn finish_recovery(
        &mut self,
        crashed: ServerId,
        master: ServerId,
        ranges: &[TabletRange],
    ) -> Vec<Action> {
        let mut actions = vec![Action::Persist];
        for r in ranges {
            if let Some(i) = self.find_tablet(r) {
                let t = &mut self.tablets[i];
                if t.owner == crashed && t.state == TabletState::Recovering {
                    t.owner = master;
                    t.state = TabletState::Normal;
                    actions.extend(self.send(master, Control::Take(*r)));
                }
            }
        }
        self.tablet_map_version += 1;
        actions
    }

    /// Recovery of `crashed` is complete (it owns nothing): remove it from the cluster.
    pub fn recovery_done(&mut self, crashed: ServerId) -> Vec<Action> {
        if self.tablets.iter().any(|t| t.owner == crashed) {
            return Vec::new();
        }
        match self.servers.get_mut(&crashed.index()) {
            Some(s) if s.id == crashed && s.status == ServerStatus::Crashed => {
                s.status = ServerStatus::Removed;
                self.server_list_version += 1;
                vec![Action::Persist]
            }
            _ => Vec::new(),
        }
    }
}
