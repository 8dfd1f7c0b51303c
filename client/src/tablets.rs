//! The client's cache of the tablet map: for each table, its tablets (inclusive key-hash
//! ranges) sorted by start, each with the locator of the master that owns it.
//!
//! Invariants of a [`TabletMap`]: tablets are sorted by `start`, do not overlap, and
//! `start <= end`. A table's map need not cover the whole hash space while a tablet moves; a
//! lookup that falls in a hole returns `None` and the caller refreshes the map from the
//! coordinator.

use crate::error::TableId;

/// One tablet: the objects of a table whose key hash lies in `start..=end`.
///
/// ```
/// use faascache_client::Tablet;
/// let t = Tablet { start: 0, end: u64::MAX, master: "tcp:host=127.0.0.1,port=12247".into(), server_id: 1 };
/// assert!(t.contains(42));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tablet {
    /// First key hash of the tablet.
    pub start: u64,
    /// Last key hash of the tablet (inclusive).
    pub end: u64,
    /// Service locator of the master that owns the tablet.
    pub master: String,
    /// The owning server's id (as the coordinator reports it; 0 if unknown).
    pub server_id: u64,
}

impl Tablet {
    /// Whether `hash` falls in this tablet.
    ///
    /// ```
    /// let t = faascache_client::Tablet { start: 10, end: 20, master: String::new(), server_id: 0 };
    /// assert!(t.contains(10) && t.contains(20) && !t.contains(21));
    /// ```
    pub fn contains(&self, hash: u64) -> bool {
        self.start <= hash && hash <= self.end
    }
}

/// The tablets of one table, sorted by start hash.
///
/// ```
/// use faascache_client::{Tablet, TabletMap};
/// let m = TabletMap::new(7, vec![
///     Tablet { start: 1 << 63, end: u64::MAX, master: "b".into(), server_id: 2 },
///     Tablet { start: 0, end: (1 << 63) - 1, master: "a".into(), server_id: 1 },
/// ]).unwrap();
/// assert_eq!(m.lookup(5).unwrap().master, "a");
/// assert_eq!(m.lookup(u64::MAX).unwrap().master, "b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletMap {
    table: TableId,
    tablets: Vec<Tablet>,
}

/// A tablet map the coordinator sent that cannot be right (a coordinator bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TabletMapError {
    /// A tablet with `start > end`.
    #[error("tablet {start:#x}..={end:#x} of table {table} is empty")]
    Empty {
        /// The table.
        table: TableId,
        /// Its start hash.
        start: u64,
        /// Its end hash.
        end: u64,
    },
    /// Two tablets overlap.
    #[error("tablets {:#x}..={:#x} and {:#x}..={:#x} of table {table} overlap", .first.0, .first.1, .second.0, .second.1)]
    Overlap {
        /// The table.
        table: TableId,
        /// One tablet (start, end).
        first: (u64, u64),
        /// The other.
        second: (u64, u64),
    },
}

impl TabletMap {
    /// Builds the map of `table` from tablets in any order. Fails if two tablets overlap or one
    /// has `start > end` (a coordinator bug).
    ///
    /// ```
    /// use faascache_client::{Tablet, TabletMap};
    /// let t = |s, e| Tablet { start: s, end: e, master: String::new(), server_id: 0 };
    /// assert!(TabletMap::new(1, vec![t(0, 10), t(5, 20)]).is_err());
    /// ```
    pub fn new(table: TableId, mut tablets: Vec<Tablet>) -> Result<TabletMap, TabletMapError> {
        tablets.sort_by_key(|t| t.start);
        for t in &tablets {
            if t.start > t.end {
                return Err(TabletMapError::Empty {
                    table,
                    start: t.start,
                    end: t.end,
                });
            }
        }
        for w in tablets.windows(2) {
            if w[0].end >= w[1].start {
                return Err(TabletMapError::Overlap {
                    table,
                    first: (w[0].start, w[0].end),
                    second: (w[1].start, w[1].end),
                });
            }
        }
        Ok(TabletMap { table, tablets })
    }

    /// The table this map describes.
    ///
    /// ```
    /// assert_eq!(faascache_client::TabletMap::new(3, vec![]).unwrap().table(), 3);
    /// ```
    pub fn table(&self) -> TableId {
        self.table
    }

    /// The tablets, sorted by start hash.
    ///
    /// ```
    /// assert!(faascache_client::TabletMap::new(3, vec![]).unwrap().tablets().is_empty());
    /// ```
    pub fn tablets(&self) -> &[Tablet] {
        &self.tablets
    }

    /// The tablet holding `hash`, if the map covers it.
    ///
    /// ```
    /// use faascache_client::{Tablet, TabletMap};
    /// let m = TabletMap::new(1, vec![Tablet { start: 100, end: 200, master: "m".into(), server_id: 1 }]).unwrap();
    /// assert!(m.lookup(150).is_some());
    /// assert!(m.lookup(99).is_none() && m.lookup(201).is_none());
    /// ```
    pub fn lookup(&self, hash: u64) -> Option<&Tablet> {
        // Index of the first tablet whose start is > hash; the candidate is the one before.
        let i = self.tablets.partition_point(|t| t.start <= hash);
        let t = self.tablets.get(i.checked_sub(1)?)?;
        t.contains(hash).then_some(t)
    }

    /// The first tablet that holds any hash ≥ `hash` (enumeration walks tablets in order).
    ///
    /// ```
    /// use faascache_client::{Tablet, TabletMap};
    /// let m = TabletMap::new(1, vec![Tablet { start: 100, end: 200, master: "m".into(), server_id: 1 }]).unwrap();
    /// assert_eq!(m.next_from(5).unwrap().start, 100);
    /// assert!(m.next_from(201).is_none());
    /// ```
    pub fn next_from(&self, hash: u64) -> Option<&Tablet> {
        let i = self.tablets.partition_point(|t| t.end < hash);
        self.tablets.get(i)
    }

    /// Whether the tablets cover every hash `0..=u64::MAX`.
    ///
    /// ```
    /// use faascache_client::{Tablet, TabletMap};
    /// let m = TabletMap::new(1, vec![Tablet { start: 0, end: u64::MAX, master: "m".into(), server_id: 1 }]).unwrap();
    /// assert!(m.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        let mut next = 0u64;
        for (i, t) in self.tablets.iter().enumerate() {
            if t.start != next {
                return false;
            }
            if t.end == u64::MAX {
                return i + 1 == self.tablets.len();
            }
            next = t.end + 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: u64, end: u64, m: &str) -> Tablet {
        Tablet {
            start,
            end,
            master: m.into(),
            server_id: 0,
        }
    }

    #[test]
    fn lookup_finds_the_owning_tablet() {
        let m = TabletMap::new(
            1,
            vec![t(200, u64::MAX, "c"), t(0, 99, "a"), t(100, 199, "b")],
        )
        .unwrap();
        assert!(m.is_complete());
        for (h, want) in [
            (0, "a"),
            (99, "a"),
            (100, "b"),
            (199, "b"),
            (200, "c"),
            (u64::MAX, "c"),
        ] {
            assert_eq!(m.lookup(h).unwrap().master, want, "hash {h}");
        }
    }

    #[test]
    fn holes_and_bad_maps() {
        let m = TabletMap::new(1, vec![t(10, 19, "a"), t(30, 39, "b")]).unwrap();
        assert!(!m.is_complete());
        assert!(m.lookup(0).is_none());
        assert!(m.lookup(20).is_none());
        assert!(m.lookup(40).is_none());
        assert_eq!(m.next_from(20).unwrap().master, "b");
        assert_eq!(m.next_from(15).unwrap().master, "a");
        assert!(m.next_from(40).is_none());
        assert!(TabletMap::new(1, vec![t(5, 4, "a")]).is_err());
        assert!(TabletMap::new(1, vec![t(0, 10, "a"), t(10, 20, "b")]).is_err());
        assert!(!TabletMap::new(1, vec![]).unwrap().is_complete());
        assert!(!TabletMap::new(1, vec![t(0, 5, "a")]).unwrap().is_complete());
    }

    #[test]
    fn lookup_agrees_with_a_linear_scan() {
        // Pseudo-random tablet boundaries; compare with the obvious search.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut step = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut bounds: Vec<u64> = (0..15).map(|_| step()).collect();
        bounds.sort();
        bounds.dedup();
        let mut tablets = Vec::new();
        let mut start = 0;
        for (i, &b) in bounds.iter().enumerate() {
            if b >= start && i % 3 != 1 {
                tablets.push(t(start, b, &i.to_string()));
            }
            start = b.saturating_add(1);
        }
        let m = TabletMap::new(9, tablets.clone()).unwrap();
        for _ in 0..10_000 {
            let h = step();
            let want = tablets.iter().find(|t| t.contains(h));
            assert_eq!(m.lookup(h), want);
        }
    }
}
