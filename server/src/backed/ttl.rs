//! The TTL of ephemeral tables (`--ttl`, `TableBacking::ttl_ms`): an object is removed
//! `ttl_ms` after it was written (its envelope's `stamp_ms`). The same thread settles the
//! chunks of large writes (`super::chunked::sweep`) every tick.
//!
//! * **Reads.** An expired object not yet swept is answered `OBJECT_DOESNT_EXIST`
//!   ([`expired`], checked by the read path).
//! * **Sweep.** One thread per master (`ttl-sweep`) visits each ephemeral table with a TTL
//!   every max(ttl/4, 1 s) and removes the expired objects of the ranges it serves — a real
//!   removal at the version seen (a newer write is kept), logged and replicated like any.
//!   A pass examines at most [`SWEEP_BUDGET`] objects per table; a larger table is continued
//!   from where the pass stopped on the next tick.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use faascache_protocol::msg::common::RejectRules;
use faascache_protocol::msg::faas::WritePolicy;
use faascache_storage::TableId;

use super::envelope;
use super::registry::BackedTable;
use super::upload::wall_ms;
use crate::master::tablets::Range;
use crate::master::Master;

/// Shortest time between two sweeps of one table.
pub const SWEEP_MIN: Duration = Duration::from_secs(1);
/// Objects one pass examines per table at most.
pub const SWEEP_BUDGET: usize = 4096;
/// How often the sweeper looks for tables due.
const TICK: Duration = Duration::from_millis(250);
/// Bytes of one enumeration page.
const PAGE_BYTES: usize = 256 << 10;

/// Whether objects of `t` expire (an ephemeral table with a TTL).
pub fn applies(t: &BackedTable) -> bool {
    t.backing.policy == WritePolicy::Ephemeral && t.backing.ttl_ms > 0
}

/// Whether an object of `t` written at `stamp_ms` has expired at `now_ms` (never for tables
/// that are not ephemeral or have no TTL).
pub fn expired(t: &BackedTable, stamp_ms: u64, now_ms: u64) -> bool {
    applies(t) && now_ms.saturating_sub(stamp_ms) >= t.backing.ttl_ms
}

/// Time between two sweeps of a table with a TTL of `ttl_ms`.
pub fn period(ttl_ms: u64) -> Duration {
    Duration::from_millis(ttl_ms / 4).max(SWEEP_MIN)
}

/// What one pass over a table did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Objects examined.
    pub examined: usize,
    /// Expired objects removed.
    pub removed: usize,
    /// Whether the pass stopped at its budget (the rest is swept next).
    pub partial: bool,
}

/// Where a partial pass stopped: (table, range start) → enumeration cursor.
pub type Cursors = HashMap<(TableId, u64), u64>;

/// Sweep the ranges of `t` this master serves, examining at most `budget` objects, from
/// where the last partial pass stopped (`cursors`).
pub fn sweep(m: &Master, t: &BackedTable, budget: usize, cursors: &mut Cursors) -> Swept {
    let mut out = Swept::default();
    let ranges = m.ownership.read().serving_ranges(t.id);
    for r in ranges {
        if out.examined >= budget {
            out.partial = true;
            break;
        }
        let mut cursor = cursors.remove(&(t.id, r.start));
        loop {
            if m.check_serving().is_err() {
                return out;
            }
            let page = match m
                .engine
                .enumerate(t.id, r.start..=r.end, cursor, PAGE_BYTES)
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(table = t.id, error = %e, "ttl sweep cannot enumerate");
                    break;
                }
            };
            out.examined += page.objects.len();
            out.removed += remove_expired(m, t, r, page.objects);
            match page.next_cursor {
                Some(c) if out.examined >= budget => {
                    cursors.insert((t.id, r.start), c);
                    out.partial = true;
                    break;
                }
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    out
}

/// Remove the expired ones of `objects` (of range `r`, if still served); returns how many.
fn remove_expired(
    m: &Master,
    t: &BackedTable,
    r: Range,
    objects: Vec<faascache_storage::EnumeratedObject>,
) -> usize {
    let now = wall_ms();
    let own = m.ownership.read();
    if !own.serving_ranges(t.id).contains(&r) {
        return 0;
    }
    let mut n = 0;
    for o in objects {
        let Ok(env) = envelope::decode(&o.value) else {
            continue;
        };
        if !expired(t, env.stamp_ms, now) {
            continue;
        }
        // At the version seen: an object written again meanwhile is kept.
        if let Ok(Some(_)) = m
            .engine
            .remove(t.id, &o.key, &RejectRules::version_is(o.version))
        {
            n += 1;
        }
    }
    n
}

/// Start `master`'s sweeper thread (call once per master). It holds the master weakly and
/// stops when the master is gone.
pub fn start(master: &Arc<Master>) {
    let weak = Arc::downgrade(master);
    let spawned = std::thread::Builder::new()
        .name("ttl-sweep".into())
        .spawn(move || run(&weak));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the ttl sweeper: expired ephemeral objects are hidden from reads but not removed");
    }
}

fn run(weak: &Weak<Master>) {
    let mut next: HashMap<TableId, Instant> = HashMap::new();
    let mut cursors = Cursors::new();
    loop {
        std::thread::sleep(TICK);
        let Some(m) = weak.upgrade() else { return };
        if !m.chunked.is_empty() {
            let s = super::chunked::sweep(&m);
            if s.removed + s.cleaned > 0 {
                tracing::debug!(
                    removed = s.removed,
                    cleaned = s.cleaned,
                    "large writes settled"
                );
            }
        }
        let tables: Vec<_> = m.backed.all().into_iter().filter(|t| applies(t)).collect();
        next.retain(|id, _| tables.iter().any(|t| t.id == *id));
        cursors.retain(|(id, _), _| tables.iter().any(|t| t.id == *id));
        let now = Instant::now();
        for t in tables {
            if next.get(&t.id).is_some_and(|at| *at > now) {
                continue;
            }
            let s = sweep(&m, &t, SWEEP_BUDGET, &mut cursors);
            if s.removed > 0 {
                tracing::debug!(table = t.id, removed = s.removed, "ttl sweep");
            }
            // A partial pass goes on at the next tick; a full one waits its period.
            let wait = if s.partial {
                TICK
            } else {
                period(t.backing.ttl_ms)
            };
            next.insert(t.id, now + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faascache_protocol::msg::faas::TableBacking;

    fn table(policy: WritePolicy, ttl_ms: u64) -> BackedTable {
        let mut b = TableBacking::new("", policy);
        b.ttl_ms = ttl_ms;
        BackedTable::for_test(1, b)
    }

    #[test]
    fn only_ephemeral_tables_with_a_ttl_expire() {
        let e = table(WritePolicy::Ephemeral, 1000);
        assert!(!expired(&e, 5_000, 5_999));
        assert!(expired(&e, 5_000, 6_000));
        assert!(
            !expired(&e, 5_000, 1_000),
            "a stamp from the future: not expired"
        );
        assert!(!expired(&table(WritePolicy::Ephemeral, 0), 0, u64::MAX));
        assert!(!expired(&table(WritePolicy::WriteBack, 1), 0, u64::MAX));
        assert_eq!(period(400), SWEEP_MIN);
        assert_eq!(period(60_000), Duration::from_secs(15));
    }
}
