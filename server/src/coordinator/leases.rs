//! Client leases: the coordinator's authority over which client ids are alive (RIFL's lease
//! manager, our own code).
//!
//! A client gets an id and a lease of `term` milliseconds of cluster time
//! ([`super::clock::ClusterClock`]) with `GetClientLease`, renews it before it expires, and
//! releases it when it exits. Masters keep exactly-once results per client id and ask
//! `CheckClientLeases` about idle clients; an id this table calls dead (expiration 0) is dead
//! for good: it is never renewed or answered as alive again by this coordinator, so a master
//! may drop its records.
//!
//! Rules (each has a unit test below):
//! - **grant**: a new id (allocated by the caller from the persisted id counter) gets
//!   `now + term`.
//! - **renew**: an id whose lease is valid (`expiration > now`) gets `now + term`; an expired
//!   or released id is *not* renewed: the caller hands out a new id instead.
//! - **release**: the lease ends now.
//! - **check**: per id its expiration, or 0 if dead.
//! - **restart / failover**: the table is in memory only. Ids below the persisted id ceiling
//!   at this coordinator's start (`first_new_id`) that it has no record of were maybe granted
//!   by a predecessor: they count as valid until `start + term` (the *grace* end), and a renewal
//!   in that window keeps the id. After the grace end they are dead. (A predecessor's lease
//!   ended at most `term` after its last grant, and that was before this coordinator started —
//!   as long as the coordinators' clocks agree to well within half a term.)
//! - **bounds**: at most `max_leases` entries; beyond, new ids and grace renewals are refused
//!   ([`LeaseError::Full`], answered `RETRY`). Expired entries are pruned, amortised over
//!   operations: every id has exactly one entry in a FIFO of (prune time, id); operations pop
//!   a few due entries and either drop the id or requeue it at its new prune time.
//!
//! Threads: one mutex of its own (never the coordinator's state mutex); every operation is
//! O(1) amortised, so the handlers run on the dispatch thread.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// Default lease term.
pub const DEFAULT_TERM_MS: u64 = 30_000;
/// Default cap of lease entries (live leases plus expired ones not yet pruned).
pub const DEFAULT_MAX_LEASES: usize = 4 << 20;
/// Due entries examined per operation (amortised pruning).
const PRUNE_PER_OP: usize = 4;

/// Why a lease operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The table holds `max` leases.
    #[error("the coordinator holds the most client leases it keeps ({max}): retry later (leases of exited clients expire within the lease term); raise the cap or shorten --client-lease-term if this persists")]
    Full {
        /// The cap.
        max: usize,
    },
}

/// What a renewal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The id is alive: its lease now expires here.
    Renewed {
        /// New expiration (cluster ms).
        expiration: u64,
    },
    /// The id is dead: the caller must grant a new id.
    Dead,
}

#[derive(Debug)]
struct Table {
    /// id → expiration (cluster ms); 0 = dead (kept only as a tombstone during the grace
    /// window for ids of a predecessor).
    leases: HashMap<u64, u64>,
    /// (prune time, id): exactly one entry per id in `leases`.
    queue: VecDeque<(u64, u64)>,
}

/// The lease table.
#[derive(Debug)]
pub struct LeaseTable {
    term_ms: u64,
    max_leases: usize,
    /// Ids below this were maybe granted by a predecessor (the persisted ceiling at start).
    first_new_id: u64,
    /// Until when those ids count as valid without a record.
    grace_end: u64,
    table: Mutex<Table>,
}

impl LeaseTable {
    /// A table started at cluster time `now`; ids below `first_new_id` are a predecessor's.
    pub fn new(term_ms: u64, max_leases: usize, first_new_id: u64, now: u64) -> LeaseTable {
        let term_ms = term_ms.max(1);
        LeaseTable {
            term_ms,
            max_leases: max_leases.max(1),
            first_new_id,
            grace_end: now.saturating_add(term_ms),
            table: Mutex::new(Table {
                leases: HashMap::new(),
                queue: VecDeque::new(),
            }),
        }
    }

    /// The lease term (ms).
    pub fn term_ms(&self) -> u64 {
        self.term_ms
    }

    /// Leases held (live and expired not yet pruned).
    pub fn len(&self) -> usize {
        self.table.lock().leases.len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Until when an entry of `id` with expiration `exp` must be kept.
    fn keep_until(&self, id: u64, exp: u64) -> u64 {
        if id < self.first_new_id {
            exp.max(self.grace_end)
        } else {
            exp
        }
    }

    /// Pops up to `n` due queue entries (all due ones if `n` is `usize::MAX`).
    fn prune(&self, t: &mut Table, now: u64, n: usize) {
        let mut left = n;
        while left > 0 {
            let Some(&(due, id)) = t.queue.front() else {
                break;
            };
            if due > now {
                break;
            }
            t.queue.pop_front();
            left -= 1;
            let Some(&exp) = t.leases.get(&id) else {
                continue;
            };
            let keep = self.keep_until(id, exp);
            if keep <= now {
                t.leases.remove(&id);
            } else {
                t.queue.push_back((keep, id));
            }
        }
    }

    fn insert(&self, t: &mut Table, id: u64, exp: u64, now: u64) -> Result<(), LeaseError> {
        if t.leases.len() >= self.max_leases {
            self.prune(t, now, usize::MAX);
            if t.leases.len() >= self.max_leases {
                return Err(LeaseError::Full {
                    max: self.max_leases,
                });
            }
        }
        t.leases.insert(id, exp);
        t.queue.push_back((self.keep_until(id, exp), id));
        Ok(())
    }

    /// A lease for `id`, a new id from the persisted counter. Returns its expiration.
    pub fn grant(&self, id: u64, now: u64) -> Result<u64, LeaseError> {
        let mut t = self.table.lock();
        self.prune(&mut t, now, PRUNE_PER_OP);
        let exp = now.saturating_add(self.term_ms);
        self.insert(&mut t, id, exp, now)?;
        Ok(exp)
    }

    /// Whether a new id can be granted now (checked before allocating one).
    pub fn has_room(&self, now: u64) -> Result<(), LeaseError> {
        let mut t = self.table.lock();
        if t.leases.len() >= self.max_leases {
            self.prune(&mut t, now, usize::MAX);
            if t.leases.len() >= self.max_leases {
                return Err(LeaseError::Full {
                    max: self.max_leases,
                });
            }
        }
        Ok(())
    }

    /// Renews `id` if it is alive.
    pub fn renew(&self, id: u64, now: u64) -> Result<Renewal, LeaseError> {
        let mut t = self.table.lock();
        self.prune(&mut t, now, PRUNE_PER_OP);
        let exp = now.saturating_add(self.term_ms);
        match t.leases.get_mut(&id) {
            Some(e) if *e > now => {
                // Its queue entry stays; when it comes due the entry is requeued.
                *e = exp;
                Ok(Renewal::Renewed { expiration: exp })
            }
            Some(_) => Ok(Renewal::Dead),
            None if id != 0 && id < self.first_new_id && now < self.grace_end => {
                self.insert(&mut t, id, exp, now)?;
                Ok(Renewal::Renewed { expiration: exp })
            }
            None => Ok(Renewal::Dead),
        }
    }

    /// Ends `id`'s lease now (unknown or dead ids: nothing to do, but a predecessor's id in the
    /// grace window is recorded dead).
    pub fn release(&self, id: u64, now: u64) {
        let mut t = self.table.lock();
        self.prune(&mut t, now, PRUNE_PER_OP);
        let in_grace = id != 0 && id < self.first_new_id && now < self.grace_end;
        match t.leases.get_mut(&id) {
            Some(e) => *e = 0,
            None if in_grace => {
                // A tombstone until the grace end (room permitting: without it the id only
                // stays valid until then, as it would have anyway).
                let _ = self.insert(&mut t, id, 0, now);
            }
            None => {}
        }
    }

    /// Per id: its expiration (cluster ms), or 0 if it is dead for good.
    pub fn check(&self, ids: &[u64], now: u64) -> Vec<u64> {
        let mut t = self.table.lock();
        self.prune(&mut t, now, PRUNE_PER_OP);
        ids.iter()
            .map(|&id| match t.leases.get(&id) {
                Some(&e) if e > now => e,
                Some(_) => 0,
                None if id != 0 && id < self.first_new_id && now < self.grace_end => self.grace_end,
                None => 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    #[test]
    fn grant_renew_release_check() {
        let l = LeaseTable::new(1000, 100, 1, T0);
        assert_eq!(l.grant(5, T0), Ok(T0 + 1000));
        assert_eq!(l.check(&[5], T0 + 500), vec![T0 + 1000]);
        assert_eq!(
            l.renew(5, T0 + 500),
            Ok(Renewal::Renewed {
                expiration: T0 + 1500
            })
        );
        assert_eq!(l.check(&[5, 6, 0], T0 + 600), vec![T0 + 1500, 0, 0]);
        l.release(5, T0 + 700);
        assert_eq!(l.check(&[5], T0 + 700), vec![0], "released: dead now");
        assert_eq!(
            l.renew(5, T0 + 701),
            Ok(Renewal::Dead),
            "never renewed again"
        );
    }

    #[test]
    fn an_expired_lease_is_dead_for_good() {
        let l = LeaseTable::new(1000, 100, 1, T0);
        l.grant(7, T0).unwrap();
        assert_eq!(
            l.check(&[7], T0 + 1000),
            vec![0],
            "expiration ≤ now is dead"
        );
        assert_eq!(l.renew(7, T0 + 1000), Ok(Renewal::Dead));
        // Even after the entry is pruned, the id stays dead (it is ≥ first_new_id).
        l.check(&[], T0 + 5000);
        for i in 100..200 {
            l.grant(i, T0 + 5000).unwrap();
        }
        assert_eq!(l.check(&[7], T0 + 5001), vec![0]);
        assert_eq!(l.renew(7, T0 + 5001), Ok(Renewal::Dead));
    }

    #[test]
    fn a_new_coordinator_honours_its_predecessors_ids_for_one_term() {
        // Persisted ceiling 50 at start: ids 1..50 may be alive somewhere.
        let l = LeaseTable::new(1000, 100, 50, T0);
        assert_eq!(l.check(&[10, 50, 60], T0 + 10), vec![T0 + 1000, 0, 0]);
        // A renewal in the window keeps the id.
        assert_eq!(
            l.renew(10, T0 + 200),
            Ok(Renewal::Renewed {
                expiration: T0 + 1200
            })
        );
        assert_eq!(l.check(&[10], T0 + 1100), vec![T0 + 1200]);
        // Unknown predecessor ids die at the grace end, and stay dead.
        assert_eq!(l.check(&[11], T0 + 1000), vec![0]);
        assert_eq!(l.renew(11, T0 + 1000), Ok(Renewal::Dead));
        // A predecessor id released in the window stays dead in the window.
        l.release(12, T0 + 300);
        assert_eq!(l.check(&[12], T0 + 301), vec![0]);
        assert_eq!(l.renew(12, T0 + 302), Ok(Renewal::Dead));
        // Pruning does not resurrect it before the grace end.
        for i in 100..110 {
            l.grant(i, T0 + 900).unwrap();
        }
        assert_eq!(l.check(&[12], T0 + 950), vec![0]);
        // An id of this coordinator that expired is dead even in the window.
        l.grant(60, T0).unwrap();
        assert_eq!(l.renew(60, T0 + 1000), Ok(Renewal::Dead));
    }

    #[test]
    fn expired_entries_are_pruned_and_the_table_is_bounded() {
        let l = LeaseTable::new(100, 8, 1, T0);
        for id in 1..=8 {
            l.grant(id, T0).unwrap();
        }
        assert_eq!(
            l.grant(9, T0 + 50),
            Err(LeaseError::Full { max: 8 }),
            "all 8 alive"
        );
        assert!(l.has_room(T0 + 50).is_err());
        assert!(l
            .grant(9, T0 + 50)
            .unwrap_err()
            .to_string()
            .contains("retry later"));
        // Once they expire, room is made.
        assert!(l.has_room(T0 + 100).is_ok());
        assert_eq!(l.grant(9, T0 + 100), Ok(T0 + 200));
        // Churn: many short leases through a small table.
        let mut now = T0 + 100;
        for id in 10..10_000 {
            now += 13;
            l.grant(id, now).unwrap();
            assert!(l.len() <= 8);
        }
    }

    #[test]
    fn renewed_entries_survive_pruning() {
        let l = LeaseTable::new(100, 1000, 1, T0);
        l.grant(1, T0).unwrap();
        let mut now = T0;
        // Renew at half term for a long time while others churn.
        for i in 0..100u64 {
            now += 50;
            assert!(matches!(l.renew(1, now), Ok(Renewal::Renewed { .. })));
            l.grant(1000 + i, now).unwrap();
        }
        assert_eq!(l.check(&[1], now), vec![now + 100]);
        assert!(l.len() <= 4, "expired grants were pruned: {}", l.len());
    }
}
