//! Draining a server and rebalancing tablets by memory budget (issue 18): the choices and
//! transitions of [`CoordinatorState`] that `DrainServer` and the rebalancer
//! (`faascache coordinator --rebalance`) drive (sans-I/O; the shell runs the migrations).
//!
//! **Weights.** A master's weight is its memory budget as its last heartbeat said; a master
//! whose budget is not known yet weighs the mean of the known ones (1 if none is known). A
//! master's *share* of the `T` tablets owned by up masters not being drained is
//! `T × weight / Σ weight`.
//!
//! **Drain target.** Each tablet of the drained server goes to the master with the most weight
//! per tablet after the move (`weight / (tablets + 1)`), so a drain fills large budgets first.
//!
//! **Rebalancing.** One move at a time, only when every tablet is normal (no recovery or
//! migration running): from the master most above its share (`excess = tablets − share`) to
//! the one most below it (`deficit = share − tablets`), when `excess + deficit > 1`. Each
//! move lowers Σ (tablets − share)² by `2 (excess + deficit − 1) > 0`, so rebalancing stops,
//! and it never moves a tablet back and forth (3 tablets over two equal masters stay 2 + 1).

use faascache_protocol::msg::coordinator::{ServerStatus, TabletState};
use faascache_protocol::msg::ServerId;

use super::{Action, CoordError, CoordinatorState, ServerRecord};

/// A tablet to move, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TabletMove {
    /// Table.
    pub table: u64,
    /// First hash.
    pub start: u64,
    /// Last hash.
    pub end: u64,
    /// Owner now.
    pub from: ServerId,
    /// Owner after.
    pub to: ServerId,
}

/// What a drain does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainStep {
    /// The server owns no tablet: retire and remove it.
    Done,
    /// Move this tablet.
    Move(TabletMove),
    /// A tablet of the server is migrating or recovering: wait for it (why).
    Wait(String),
}

impl CoordinatorState {
    /// Start draining `id`: nothing new is placed on it from now on. `Err` if it is not an up
    /// server, or is already draining.
    pub fn begin_drain(&mut self, id: ServerId) -> Result<(), CoordError> {
        self.server(id)
            .filter(|s| s.status == ServerStatus::Up)
            .ok_or(CoordError::NoSuchServer(id))?;
        if !self.draining.insert(id.index()) {
            return Err(CoordError::Conflict(format!(
                "server {id} is already being drained"
            )));
        }
        Ok(())
    }

    /// The drain of `id` is over (done or failed): it may be placed on again if still up.
    pub fn end_drain(&mut self, id: ServerId) {
        self.draining.remove(&id.index());
    }

    /// Whether `id` is being drained.
    pub fn is_draining(&self, id: ServerId) -> bool {
        self.server(id).is_some() && self.draining.contains(&id.index())
    }

    /// The next step of draining `id`. `Err` if a tablet has nowhere to go (no other up
    /// master that is not being drained) or `id` is no longer an up server.
    pub fn drain_step(&self, id: ServerId) -> Result<DrainStep, CoordError> {
        self.server(id)
            .filter(|s| s.status == ServerStatus::Up)
            .ok_or(CoordError::NoSuchServer(id))?;
        let owned: Vec<_> = self.tablets.iter().filter(|t| t.owner == id).collect();
        let Some(t) = owned.iter().find(|t| t.state == TabletState::Normal) else {
            return Ok(match owned.first() {
                None => DrainStep::Done,
                Some(t) => DrainStep::Wait(format!(
                    "tablet {:#x}..={:#x} of table {} is {}",
                    t.start, t.end, t.table_id, t.state
                )),
            });
        };
        let weights = self.weights();
        let to = weights
            .iter()
            .filter(|(s, _)| s.id != id)
            .map(|(s, w)| (s.id, w / (self.owned_by(s.id) as f64 + 1.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0 .0.cmp(&a.0 .0)))
            .map(|(s, _)| s)
            .ok_or_else(|| {
                CoordError::Conflict(format!(
                    "server {id} owns tablets and no other master is up to take them: start a server first"
                ))
            })?;
        Ok(DrainStep::Move(TabletMove {
            table: t.table_id,
            start: t.start,
            end: t.end,
            from: id,
            to,
        }))
    }

    /// Remove the drained server `id` from the cluster (persisted). `Err` if it still owns a
    /// tablet. A server already gone (crashed owning nothing, hence removed) is not an error.
    pub fn remove_drained(&mut self, id: ServerId) -> Result<Vec<Action>, CoordError> {
        if let Some(t) = self.tablets.iter().find(|t| t.owner == id) {
            return Err(CoordError::Conflict(format!(
                "server {id} still owns tablet {:#x}..={:#x} of table {}",
                t.start, t.end, t.table_id
            )));
        }
        self.draining.remove(&id.index());
        match self.servers.get_mut(&id.index()) {
            Some(s) if s.id == id && s.status != ServerStatus::Removed => {
                s.status = ServerStatus::Removed;
                self.last_heard.remove(&id.index());
                self.budgets.remove(&id.index());
                self.server_list_version += 1;
                Ok(vec![Action::Persist])
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The next rebalancing move, if one is worth making (see the module docs).
    pub fn rebalance_move(&self) -> Option<TabletMove> {
        if self.tablets.iter().any(|t| t.state != TabletState::Normal) {
            return None;
        }
        let weights = self.weights();
        if weights.len() < 2 {
            return None;
        }
        let total_weight: f64 = weights.iter().map(|(_, w)| w).sum();
        let tablets: f64 = weights
            .iter()
            .map(|(s, _)| self.owned_by(s.id) as f64)
            .sum();
        // (tablets − share) per master: share = T × w / Σw.
        let off: Vec<(ServerId, f64)> = weights
            .iter()
            .map(|(s, w)| {
                (
                    s.id,
                    self.owned_by(s.id) as f64 - tablets * w / total_weight,
                )
            })
            .collect();
        let donor = off.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let receiver = off.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
        if donor.0 == receiver.0 || donor.1 - receiver.1 <= 1.0 + 1e-9 {
            return None;
        }
        let t = self
            .tablets
            .iter()
            .find(|t| t.owner == donor.0 && t.state == TabletState::Normal)?;
        Some(TabletMove {
            table: t.table_id,
            start: t.start,
            end: t.end,
            from: donor.0,
            to: receiver.0,
        })
    }

    /// Tablets owned by `id`.
    fn owned_by(&self, id: ServerId) -> usize {
        self.tablets.iter().filter(|t| t.owner == id).count()
    }

    /// The up masters not being drained, with their weights (see the module docs).
    fn weights(&self) -> Vec<(&ServerRecord, f64)> {
        let masters = self.up_masters();
        let known: Vec<f64> = masters
            .iter()
            .filter_map(|s| self.budgets.get(&s.id.index()))
            .map(|&b| b as f64)
            .collect();
        let fallback = if known.is_empty() {
            1.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        masters
            .into_iter()
            .map(|s| {
                let w = self
                    .budgets
                    .get(&s.id.index())
                    .map_or(fallback, |&b| b as f64);
                (s, w)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faascache_protocol::msg::Services;

    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MIB: u64 = 1 << 20;

    fn cluster(n: usize) -> (CoordinatorState, Vec<ServerId>) {
        let mut st = CoordinatorState::default();
        let ids = (0..n)
            .map(|i| {
                st.enlist(
                    Services::MASTER,
                    &format!("tcp:host=h,port={i}"),
                    ServerId::NONE,
                    S,
                )
                .0
            })
            .collect();
        (st, ids)
    }

    /// Carry a move out in the state, as the shell does after the copy.
    fn apply(st: &mut CoordinatorState, m: TabletMove) {
        let plan = st.begin_migration(m.table, m.start, m.end, m.to).unwrap();
        st.finish_migration(&plan);
    }

    fn owned(st: &CoordinatorState, ids: &[ServerId]) -> Vec<usize> {
        ids.iter().map(|&i| st.owned_by(i)).collect()
    }

    #[test]
    fn a_drain_moves_every_tablet_to_the_largest_budgets_then_removes_the_server() {
        let (mut st, ids) = cluster(3);
        st.create_table("t", 6).unwrap();
        st.record_budget(ids[1], 768 * MIB);
        st.record_budget(ids[2], 256 * MIB);
        st.begin_drain(ids[0]).unwrap();
        assert!(st.begin_drain(ids[0]).is_err(), "one drain per server");
        assert!(st.is_draining(ids[0]));
        // New tables avoid it.
        st.create_table("u", 4).unwrap();
        assert_eq!(owned(&st, &ids)[0], 2, "only t's tablets");
        let mut moves = 0;
        loop {
            match st.drain_step(ids[0]).unwrap() {
                DrainStep::Done => break,
                DrainStep::Move(m) => {
                    assert_eq!(m.from, ids[0]);
                    apply(&mut st, m);
                    moves += 1;
                }
                DrainStep::Wait(w) => panic!("nothing migrates: {w}"),
            }
        }
        assert_eq!(moves, 2);
        // 768 MiB against 256 MiB: the larger budget takes more.
        let o = owned(&st, &ids);
        assert_eq!(o[0], 0);
        assert!(o[1] > o[2], "{o:?}");
        let a = st.remove_drained(ids[0]).unwrap();
        assert_eq!(a, vec![Action::Persist]);
        assert_eq!(st.server(ids[0]).unwrap().status, ServerStatus::Removed);
        assert!(!st.is_draining(ids[0]));
        assert!(st.check().is_ok());
        // Again: nothing to do, no error.
        assert!(st.remove_drained(ids[0]).unwrap().is_empty());
    }

    #[test]
    fn a_drain_waits_for_migrations_and_refuses_without_another_master() {
        let (mut st, ids) = cluster(2);
        st.create_table("t", 2).unwrap();
        let t = st
            .tablets
            .iter()
            .find(|t| t.owner == ids[0])
            .copied()
            .unwrap();
        let plan = st
            .begin_migration(t.table_id, t.start, t.end, ids[1])
            .unwrap();
        st.begin_drain(ids[0]).unwrap();
        assert!(matches!(st.drain_step(ids[0]).unwrap(), DrainStep::Wait(_)));
        assert!(st.remove_drained(ids[0]).is_err(), "it still owns a tablet");
        st.abort_migration(&plan);
        st.end_drain(ids[0]);
        // Both draining: nowhere to go.
        st.begin_drain(ids[0]).unwrap();
        st.begin_drain(ids[1]).unwrap();
        let e = st.drain_step(ids[0]).unwrap_err();
        assert!(e.to_string().contains("no other master"), "{e}");
        st.end_drain(ids[1]);
        assert!(matches!(st.drain_step(ids[0]).unwrap(), DrainStep::Move(_)));
        // Not a server.
        assert!(st.begin_drain(ServerId::new(40, 1)).is_err());
    }

    #[test]
    fn rebalancing_follows_budgets_and_stops() {
        let (mut st, mut ids) = cluster(1);
        st.create_table("t", 8).unwrap();
        assert_eq!(st.rebalance_move(), None, "one master");
        let (late, _) = st.enlist(Services::MASTER, "tcp:host=h,port=9", ServerId::NONE, S);
        ids.push(late);
        st.record_budget(ids[0], 256 * MIB);
        st.record_budget(ids[1], 768 * MIB);
        let mut moves = 0;
        while let Some(m) = st.rebalance_move() {
            apply(&mut st, m);
            moves += 1;
            assert!(moves <= 8, "rebalancing must stop");
        }
        // Shares 2 and 6.
        assert_eq!(owned(&st, &ids), vec![2, 6]);
        assert_eq!(moves, 6);
        // Equal budgets and an odd count: 2 + 1, no ping-pong.
        let (mut st, ids) = cluster(2);
        st.create_table("odd", 3).unwrap();
        assert_eq!(st.rebalance_move(), None, "{:?}", owned(&st, &ids));
        // A draining master is neither donor nor receiver.
        let (mut st, ids) = cluster(2);
        st.create_table("t", 4).unwrap();
        let (third, _) = st.enlist(Services::MASTER, "tcp:host=h,port=9", ServerId::NONE, S);
        st.begin_drain(third).unwrap();
        assert_eq!(st.rebalance_move(), None);
        st.end_drain(third);
        let m = st.rebalance_move().expect("the new master takes a share");
        assert_eq!(m.to, third);
        assert!(ids.contains(&m.from));
    }
}
