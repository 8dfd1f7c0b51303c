//! Which key-hash ranges of which tables this master serves, and the state of each range.
//!
//! A master owns a set of disjoint ranges per table. `TakeTabletOwnership` adds one,
//! `DropTabletOwnership` subtracts one (splitting an owned range if needed), so a tablet split
//! at the coordinator needs no message to the master. A range is:
//! * `Serving` — reads and writes are served;
//! * `MigratingOut` — still served, but every mutated key is noted (the migration re-sends it);
//!   once *frozen*, mutations get `RETRY` (reads are still served) until the range is dropped;
//! * `Incoming` — a migration target: accepts `ReceiveMigrationData`, clients get
//!   `UNKNOWN_TABLET` until `TakeTabletOwnership`.
//!
//! The master holds this table under a `RwLock`: each request holds the read lock while it
//! checks ownership *and* runs (so noting a mutated key is atomic with the mutation); freezing a
//! migration takes the write lock, which waits for the mutations in flight.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use faascache_transport::Status;
use parking_lot::Mutex;

use faascache_storage::TableId;

/// A migration out of a range this master does not serve whole (or that already migrates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this master does not serve all of table {} hashes {:#x}..={:#x} (or it is already migrating)", .0.table, .0.start, .0.end)]
pub struct NotServing(pub Range);

/// A range of key hashes of one table (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    /// Table.
    pub table: TableId,
    /// First hash.
    pub start: u64,
    /// Last hash (inclusive).
    pub end: u64,
}

impl Range {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// Source side of a migration in progress.
#[derive(Debug, Default)]
pub struct MigrationOut {
    dirty: Mutex<HashSet<Vec<u8>>>,
    frozen: AtomicBool,
}

impl MigrationOut {
    /// Note a key mutated while the migration runs.
    pub fn note(&self, key: &[u8]) {
        let mut d = self.dirty.lock();
        if !d.contains(key) {
            d.insert(key.to_vec());
        }
    }
    /// Take the keys noted so far.
    pub fn take_dirty(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.dirty.lock())
            .into_iter()
            .collect()
    }
    /// Is the range frozen (mutations answered `RETRY`)?
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }
}

/// State of an owned range.
#[derive(Debug, Clone)]
pub enum RangeState {
    /// Served.
    Serving,
    /// Served, being copied to another master.
    MigratingOut(Arc<MigrationOut>),
    /// Being received from another master; not served yet.
    Incoming,
}

#[derive(Debug, Clone)]
struct Owned {
    start: u64,
    end: u64,
    state: RangeState,
}

/// The ownership table.
#[derive(Debug, Default)]
pub struct Ownership {
    tables: HashMap<TableId, Vec<Owned>>,
}

impl Ownership {
    fn find(&self, table: TableId, hash: u64) -> Option<&Owned> {
        self.tables
            .get(&table)?
            .iter()
            .find(|o| o.start <= hash && hash <= o.end)
    }

    /// May a read of `hash` in `table` be served?
    pub fn check_read(&self, table: TableId, hash: u64) -> Result<(), Status> {
        match self.find(table, hash) {
            Some(Owned {
                state: RangeState::Serving | RangeState::MigratingOut(_),
                ..
            }) => Ok(()),
            _ => Err(Status::UNKNOWN_TABLET),
        }
    }

    /// May a mutation of `hash` in `table` run? Returns the migration to note the key in, if any.
    pub fn check_write(
        &self,
        table: TableId,
        hash: u64,
    ) -> Result<Option<&Arc<MigrationOut>>, Status> {
        match self.find(table, hash) {
            Some(Owned {
                state: RangeState::Serving,
                ..
            }) => Ok(None),
            Some(Owned {
                state: RangeState::MigratingOut(m),
                ..
            }) => {
                if m.is_frozen() {
                    Err(Status::RETRY)
                } else {
                    Ok(Some(m))
                }
            }
            _ => Err(Status::UNKNOWN_TABLET),
        }
    }

    /// Is `[start, end]` inside one served range of `table`?
    pub fn covers(&self, table: TableId, start: u64, end: u64) -> bool {
        self.tables.get(&table).is_some_and(|v| {
            v.iter().any(|o| {
                o.start <= start && end <= o.end && !matches!(o.state, RangeState::Incoming)
            })
        })
    }

    /// Is `[start, end]` inside one incoming range of `table`?
    pub fn is_incoming(&self, table: TableId, start: u64, end: u64) -> bool {
        self.tables.get(&table).is_some_and(|v| {
            v.iter().any(|o| {
                o.start <= start && end <= o.end && matches!(o.state, RangeState::Incoming)
            })
        })
    }

    /// Remove `[start, end]` from whatever ranges of `table` overlap it.
    fn subtract(&mut self, table: TableId, start: u64, end: u64) {
        let Some(v) = self.tables.get_mut(&table) else {
            return;
        };
        let mut out = Vec::with_capacity(v.len() + 1);
        for o in v.drain(..) {
            if !(Range {
                table,
                start: o.start,
                end: o.end,
            })
            .overlaps(start, end)
            {
                out.push(o);
                continue;
            }
            if o.start < start {
                out.push(Owned {
                    start: o.start,
                    end: start - 1,
                    state: o.state.clone(),
                });
            }
            if o.end > end {
                out.push(Owned {
                    start: end + 1,
                    end: o.end,
                    state: o.state.clone(),
                });
            }
        }
        out.sort_by_key(|o| o.start);
        *v = out;
    }

    fn insert(&mut self, r: Range, state: RangeState) {
        self.subtract(r.table, r.start, r.end);
        let v = self.tables.entry(r.table).or_default();
        v.push(Owned {
            start: r.start,
            end: r.end,
            state,
        });
        v.sort_by_key(|o| o.start);
    }

    /// Serve `r` (idempotent; an incoming range becomes served).
    pub fn take(&mut self, r: Range) {
        self.insert(r, RangeState::Serving);
    }

    /// Accept migration data for `r`.
    pub fn prepare_incoming(&mut self, r: Range) {
        self.insert(r, RangeState::Incoming);
    }

    /// Stop serving `r`. Returns whether the table has no range left here.
    pub fn drop_range(&mut self, r: Range) -> bool {
        self.subtract(r.table, r.start, r.end);
        let empty = self.tables.get(&r.table).is_none_or(|v| v.is_empty());
        if empty {
            self.tables.remove(&r.table);
        }
        empty
    }

    /// Start migrating `r` out: it must lie inside one served range.
    pub fn start_migration(&mut self, r: Range) -> Result<Arc<MigrationOut>, NotServing> {
        let inside = self.tables.get(&r.table).is_some_and(|v| {
            v.iter().any(|o| {
                o.start <= r.start && r.end <= o.end && matches!(o.state, RangeState::Serving)
            })
        });
        if !inside {
            return Err(NotServing(r));
        }
        let m = Arc::new(MigrationOut::default());
        self.insert(r, RangeState::MigratingOut(m.clone()));
        Ok(m)
    }

    /// Freeze a migrating range (call with the write lock held: mutations in flight finished).
    pub fn freeze(&self, m: &MigrationOut) {
        m.frozen.store(true, Ordering::Release);
    }

    /// A failed migration: serve the range again (if it is still migrating out).
    pub fn abort_migration(&mut self, r: Range) {
        let still = self.tables.get(&r.table).is_some_and(|v| {
            v.iter().any(|o| {
                o.start == r.start
                    && o.end == r.end
                    && matches!(o.state, RangeState::MigratingOut(_))
            })
        });
        if still {
            self.insert(r, RangeState::Serving);
        }
    }

    /// Number of served (or migrating-out) ranges.
    pub fn served_ranges(&self) -> usize {
        self.tables
            .values()
            .flatten()
            .filter(|o| !matches!(o.state, RangeState::Incoming))
            .count()
    }

    /// The ranges of `table` this master serves and may write (not migrating, not incoming).
    pub fn serving_ranges(&self, table: TableId) -> Vec<Range> {
        self.tables.get(&table).map_or_else(Vec::new, |v| {
            v.iter()
                .filter(|o| matches!(o.state, RangeState::Serving))
                .map(|o| Range {
                    table,
                    start: o.start,
                    end: o.end,
                })
                .collect()
        })
    }

    /// Does this master hold any range (any state) of `table`?
    pub fn has_table(&self, table: TableId) -> bool {
        self.tables.contains_key(&table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_drop_split_migrate() {
        let mut o = Ownership::default();
        o.take(Range {
            table: 1,
            start: 0,
            end: 99,
        });
        assert_eq!(o.check_read(1, 50), Ok(()));
        assert_eq!(o.check_read(2, 50), Err(Status::UNKNOWN_TABLET));
        assert!(o.covers(1, 10, 20) && !o.covers(1, 10, 200));
        // Drop the upper part (as after a split + migration).
        assert!(!o.drop_range(Range {
            table: 1,
            start: 50,
            end: 99
        }));
        assert_eq!(o.check_read(1, 49), Ok(()));
        assert_eq!(o.check_read(1, 50), Err(Status::UNKNOWN_TABLET));
        // Migrate [10, 19] out.
        let m = o
            .start_migration(Range {
                table: 1,
                start: 10,
                end: 19,
            })
            .unwrap();
        assert!(o
            .start_migration(Range {
                table: 1,
                start: 10,
                end: 19
            })
            .is_err());
        assert!(o.check_write(1, 15).unwrap().is_some());
        assert!(o.check_write(1, 25).unwrap().is_none());
        o.freeze(&m);
        assert_eq!(o.check_write(1, 15).err(), Some(Status::RETRY));
        assert_eq!(o.check_read(1, 15), Ok(()));
        o.abort_migration(Range {
            table: 1,
            start: 10,
            end: 19,
        });
        assert!(o.check_write(1, 15).unwrap().is_none());
        // Incoming ranges are not served until taken.
        o.prepare_incoming(Range {
            table: 1,
            start: 60,
            end: 70,
        });
        assert!(o.is_incoming(1, 60, 70));
        assert_eq!(o.check_read(1, 65), Err(Status::UNKNOWN_TABLET));
        o.take(Range {
            table: 1,
            start: 60,
            end: 70,
        });
        assert_eq!(o.check_read(1, 65), Ok(()));
        assert_eq!(o.served_ranges(), 4);
        assert!(!o.drop_range(Range {
            table: 1,
            start: 0,
            end: 49
        }));
        assert!(o.drop_range(Range {
            table: 1,
            start: 60,
            end: 70
        }));
        assert!(!o.has_table(1));
    }
}
