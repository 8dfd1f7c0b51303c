//! Multi-object operations: `multi_read`, `multi_write`, `multi_remove`.
//!
//! The items are grouped by the master that owns each key ([`group_by_master`]), each group is
//! cut into RPCs of `ClientOptions::multi_batch` items (RAMCloud: 20), every RPC of every master
//! is sent at once (pipelined on the masters' sessions), then all replies are awaited. Items
//! whose answer is retryable (`RETRY`, `NO_TABLE_SPACE`, `UNKNOWN_TABLET`, a failed session) are
//! grouped and sent again after a back-off, with a refreshed tablet map where needed, until the
//! call's deadline. Each item has its own result; the batch is not a transaction.
//!
//! Exactly-once: each write/remove item gets its own rpc id once, before the first attempt, and
//! keeps it across retries. The ids of one call stay "in flight" until the call returns, so the
//! ack id sent with a retry does not yet cover items of the same call that completed (a
//! conservative ack: the master keeps their results a little longer).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Most exactly-once mutations of one multi-write or multi-remove in flight at once (half the
/// master's limit of unacknowledged results per client, `server/src/master/exactly_once.rs`);
/// larger calls run in waves, each acknowledged before the next.
pub const MULTI_MUTATION_WAVE: usize = 2048;

/// The shortest wait before items answered `RETRY` are asked again (then doubling up to
/// `ClientOptions::max_backoff`, bounded by the call's timeout): a backed table answers `RETRY`
/// for an object it is fetching from its store, which takes milliseconds, so re-asking after
/// the default 100 µs would only add load.
pub const RETRY_ITEM_BACKOFF: std::time::Duration = std::time::Duration::from_millis(1);

use faascache_protocol::msg::master::{
    MultiReadItem, MultiReadRequest, MultiReadResponse, MultiRemoveItem, MultiRemoveRequest,
    MultiResponse, MultiWriteItem, MultiWriteRequest,
};
use faascache_protocol::msg::{self, Empty, Failure, Message, MsgError};
use faascache_transport::{Opcode, Status};

use crate::client::{check_key, check_value, failure_error, Client, Object};
use crate::error::{disposition, Disposition, Error, Result, TableId};
use crate::lease::RpcGuard;
use crate::lease_state::LeaseSnap;
use crate::options::RejectRules;
use crate::tablets::TabletMap;

/// One write of [`Client::multi_write`].
///
/// ```
/// use faascache_client::{RejectRules, WriteItem};
/// let w = WriteItem::new(1, b"k", b"v").reject(RejectRules::must_not_exist());
/// assert!(w.reject.exists);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteItem<'a> {
    /// Table id.
    pub table: TableId,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Conditions.
    pub reject: RejectRules,
}

impl<'a> WriteItem<'a> {
    /// An unconditional write.
    ///
    /// ```
    /// let w = faascache_client::WriteItem::new(1, b"k", b"v");
    /// assert!(w.reject.is_none());
    /// ```
    pub fn new(table: TableId, key: &'a [u8], value: &'a [u8]) -> Self {
        WriteItem {
            table,
            key,
            value,
            reject: RejectRules::NONE,
        }
    }

    /// With reject rules.
    ///
    /// ```
    /// let w = faascache_client::WriteItem::new(1, b"k", b"v")
    ///     .reject(faascache_client::RejectRules::version_is(4));
    /// assert_eq!(w.reject.given_version, 4);
    /// ```
    pub fn reject(mut self, reject: RejectRules) -> Self {
        self.reject = reject;
        self
    }
}

/// Items bound for one master in one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The master's locator.
    pub master: String,
    /// Indices of the items, in request order.
    pub items: Vec<usize>,
}

/// Groups items `(index, table, key hash)` by the master owning them according to `maps`,
/// cutting each master's group into batches of at most `batch` items. Masters appear in the
/// order of their first item; items keep their order within a master. Returns the batches and
/// the items no map covers (table not cached, or a hole in its map).
pub(crate) fn group_by_master(
    items: impl IntoIterator<Item = (usize, TableId, u64)>,
    maps: &HashMap<TableId, Arc<TabletMap>>,
    batch: usize,
) -> (Vec<Batch>, Vec<usize>) {
    let batch = batch.max(1);
    let mut order: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut unresolved = Vec::new();
    for (i, table, hash) in items {
        match maps.get(&table).and_then(|m| m.lookup(hash)) {
            Some(t) => {
                let slot = *index.entry(t.master.as_str()).or_insert_with(|| {
                    order.push((t.master.as_str(), Vec::new()));
                    order.len() - 1
                });
                order[slot].1.push(i);
            }
            None => unresolved.push(i),
        }
    }
    let mut out = Vec::new();
    for (master, items) in order {
        for chunk in items.chunks(batch) {
            out.push(Batch {
                master: master.to_string(),
                items: chunk.to_vec(),
            });
        }
    }
    (out, unresolved)
}

/// The fate of one item after an attempt.
pub(crate) enum ItemOutcome<T> {
    /// Final result.
    Done(Result<T>),
    /// Send again later (refresh the table's map first if `refresh`).
    Again {
        /// Refresh the tablet map first.
        refresh: bool,
        /// The master refused the client lease as expired: renew it first.
        lease: bool,
        /// For the timeout message.
        cause: String,
    },
}

/// The least wait before items answered this way are asked again: [`RETRY_ITEM_BACKOFF`] for
/// "retry later" (`RETRY`, `NO_TABLE_SPACE`), nothing more for a stale map or lease.
fn wait_floor(refresh: bool, lease: bool) -> std::time::Duration {
    if refresh || lease {
        std::time::Duration::ZERO
    } else {
        RETRY_ITEM_BACKOFF
    }
}

/// What an item's non-OK status means.
fn item_failure<T>(
    client: &Client,
    table: TableId,
    status: Status,
    version: u64,
) -> ItemOutcome<T> {
    match disposition(status) {
        Disposition::Retry => ItemOutcome::Again {
            refresh: false,
            lease: status == Status::EXPIRED_LEASE,
            cause: status.to_string(),
        },
        Disposition::RefreshTablets => ItemOutcome::Again {
            refresh: true,
            lease: false,
            cause: status.to_string(),
        },
        _ => {
            let label = client.table_label(table);
            let f = Failure {
                status,
                version,
                detail: String::new(),
            };
            ItemOutcome::Done(Err(failure_error(&f, &label)))
        }
    }
}

/// The decoded outcomes of an `OK` reply, or one protocol error per item if the reply is
/// malformed or has the wrong number of results.
fn checked_outcomes<T>(
    opcode: Opcode,
    items: &[usize],
    decoded: std::result::Result<Vec<ItemOutcome<T>>, MsgError>,
) -> Vec<ItemOutcome<T>> {
    let problem = match decoded {
        Ok(o) if o.len() == items.len() => return o,
        Ok(o) => format!(
            "{opcode} reply has {} results for {} items",
            o.len(),
            items.len()
        ),
        Err(e) => format!("malformed {opcode} reply: {e}"),
    };
    items
        .iter()
        .map(|_| ItemOutcome::Done(Err(Error::Protocol(problem.clone()))))
        .collect()
}

impl Client {
    /// The outcomes of a batch whose reply is a failure status (with the server's detail).
    fn failed_outcomes<T>(
        &self,
        keys: &[(TableId, u64)],
        items: &[usize],
        status: Status,
        payload: &[u8],
    ) -> Vec<ItemOutcome<T>> {
        let (version, detail) = match msg::decode_reply::<Empty>(status, payload) {
            Err(Ok(f)) => (f.version, f.detail),
            _ => (0, String::new()),
        };
        items
            .iter()
            .map(|&i| match item_failure(self, keys[i].0, status, version) {
                ItemOutcome::Done(Err(Error::Server(m))) if !detail.is_empty() => {
                    ItemOutcome::Done(Err(Error::Server(format!("{m} ({detail})"))))
                }
                o => o,
            })
            .collect()
    }

    /// Moves the tracked items of a round to the current lease (or fails those that may have
    /// run under an expired one); the lease the round's requests carry.
    fn align_round<T>(
        &self,
        guards: &[RpcGuard],
        pending: &[usize],
        results: &mut [Option<Result<T>>],
    ) -> LeaseSnap {
        if guards.is_empty() {
            return LeaseSnap::default();
        }
        match self.current_lease() {
            Ok(snap) => {
                for &i in pending {
                    if let Err(e) = self.align(&guards[i], snap) {
                        results[i] = Some(Err(e));
                    }
                }
                snap
            }
            Err(e) => {
                for &i in pending {
                    results[i] = Some(Err(e.clone()));
                }
                LeaseSnap::default()
            }
        }
    }

    /// The multi-op engine: `keys[i]` is item i's (table, key hash); `guards[i]` its rpc id if
    /// it is a tracked mutation (empty for reads); `encode` builds the request for a batch of
    /// item indices under a lease; `decode` turns an `OK` reply into one outcome per item.
    fn run_multi<T>(
        &self,
        opcode: Opcode,
        keys: &[(TableId, u64)],
        guards: &[RpcGuard],
        mut encode: impl FnMut(&[usize], &LeaseSnap) -> Vec<u8>,
        mut decode: impl FnMut(&[u8], &[usize]) -> std::result::Result<Vec<ItemOutcome<T>>, MsgError>,
    ) -> Vec<Result<T>> {
        let mut results: Vec<Option<Result<T>>> = (0..keys.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut backoff = self.backoff();
        let mut cause = String::new();
        let mut lease_refused = false;
        while !pending.is_empty() {
            if !cause.is_empty() && backoff.remaining(Instant::now()).is_zero() {
                for &i in &pending {
                    results[i] = Some(Err(self.timeout_error(cause.clone())));
                }
                break;
            }
            // Tablet maps of the tables involved.
            let mut tables: Vec<TableId> = pending.iter().map(|&i| keys[i].0).collect();
            tables.sort_unstable();
            tables.dedup();
            for t in tables {
                if let Err(e) = self.tablet_map(t) {
                    if e.is_transient() {
                        cause = e.to_string();
                    } else {
                        for &i in pending.iter().filter(|&&i| keys[i].0 == t) {
                            results[i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
            let snap = self.align_round(guards, &pending, &mut results);
            pending.retain(|&i| results[i].is_none());
            let maps = self.cached_maps();
            let (batches, unresolved) = group_by_master(
                pending.iter().map(|&i| (i, keys[i].0, keys[i].1)),
                &maps,
                self.options().multi_batch,
            );
            let mut again = Vec::new();
            for &i in &unresolved {
                self.invalidate_map(keys[i].0);
                cause = format!("no master owns key hash {:#018x} yet", keys[i].1);
            }
            again.extend(unresolved);

            // Send every batch, then wait for every reply.
            let mut inflight = Vec::new();
            for b in batches {
                let sent = self.master_session(&b.master).and_then(|s| {
                    s.send(opcode, &encode(&b.items, &snap))
                        .map_err(|e| Error::from_transport(e, &format!("master at {}", b.master)))
                });
                match sent {
                    Ok(p) => inflight.push((b, p)),
                    Err(e) if e.is_transient() => {
                        self.forget_master(&b.master);
                        for &i in &b.items {
                            self.invalidate_map(keys[i].0);
                        }
                        cause = e.to_string();
                        again.extend(b.items);
                    }
                    Err(e) => {
                        for &i in &b.items {
                            results[i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
            for (b, mut p) in inflight {
                let outcomes: Vec<ItemOutcome<T>> = match p.wait(backoff.remaining(Instant::now()))
                {
                    Ok((status, payload)) if status.is_ok() => {
                        checked_outcomes(opcode, &b.items, decode(&payload, &b.items))
                    }
                    Ok((status, payload)) => self.failed_outcomes(keys, &b.items, status, &payload),
                    Err(faascache_transport::Error::Timeout(_)) => b
                        .items
                        .iter()
                        .map(|_| {
                            ItemOutcome::Done(Err(self.timeout_error(format!(
                                "the master at {} did not answer a {opcode} RPC",
                                b.master
                            ))))
                        })
                        .collect(),
                    Err(e) => {
                        self.forget_master(&b.master);
                        let cause = e.to_string();
                        b.items
                            .iter()
                            .map(|&i| {
                                if let Some(g) = guards.get(i) {
                                    g.mark_maybe_ran(); // sent, no answer
                                }
                                ItemOutcome::Again {
                                    refresh: true,
                                    lease: false,
                                    cause: cause.clone(),
                                }
                            })
                            .collect()
                    }
                };
                for (&i, o) in b.items.iter().zip(outcomes) {
                    match o {
                        ItemOutcome::Done(r) => results[i] = Some(r),
                        ItemOutcome::Again {
                            refresh,
                            lease,
                            cause: c,
                        } => {
                            if refresh {
                                self.invalidate_map(keys[i].0);
                            }
                            backoff.at_least(wait_floor(refresh, lease));
                            lease_refused |= lease;
                            cause = c;
                            again.push(i);
                        }
                    }
                }
            }
            if std::mem::take(&mut lease_refused) {
                if let Err(e) = self.lease_refused(snap) {
                    cause = format!(
                        "a master refused the client lease as expired and renewing failed: {e}"
                    );
                }
            }
            again.sort_unstable();
            pending = again;
            if !pending.is_empty() && !backoff.sleep() {
                for &i in &pending {
                    results[i] = Some(Err(self.timeout_error(cause.clone())));
                }
                break;
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Protocol("item left without a result".into()))))
            .collect()
    }

    /// Reads many objects, grouped by master and sent in parallel. Results are in request
    /// order, one per key.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// for r in c.multi_read(&[(t, &b"alice"[..]), (t, &b"bob"[..])]) {
    ///     match r {
    ///         Ok(o) => println!("{} bytes", o.value.len()),
    ///         Err(e) => println!("{e}"),
    ///     }
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn multi_read(&self, items: &[(TableId, &[u8])]) -> Vec<Result<Object>> {
        let mut early: Vec<Option<Error>> = items.iter().map(|(_, k)| check_key(k).err()).collect();
        let keys: Vec<(TableId, u64)> = items.iter().map(|&(t, k)| (t, msg::key_hash(k))).collect();
        let valid: Vec<usize> = (0..items.len()).filter(|&i| early[i].is_none()).collect();
        let sub_keys: Vec<(TableId, u64)> = valid.iter().map(|&i| keys[i]).collect();
        let res = self.run_multi(
            Opcode::MultiRead,
            &sub_keys,
            &[],
            |batch, _| {
                MultiReadRequest {
                    items: batch
                        .iter()
                        .map(|&j| MultiReadItem {
                            table: items[valid[j]].0,
                            key: items[valid[j]].1,
                        })
                        .collect(),
                }
                .to_vec()
            },
            |payload, batch| {
                let r = MultiReadResponse::decode(payload)?;
                Ok(r.items
                    .iter()
                    .zip(batch)
                    .map(|(it, &j)| {
                        if it.status.is_ok() {
                            ItemOutcome::Done(Ok(Object {
                                value: it.value.to_vec(),
                                version: it.version,
                            }))
                        } else {
                            item_failure(self, sub_keys[j].0, it.status, it.version)
                        }
                    })
                    .collect())
            },
        );
        merge(&mut early, valid, res)
    }

    /// Writes many objects, grouped by master and sent in parallel; returns each new version
    /// (or error) in request order. Each write is atomic and exactly-once on its own.
    ///
    /// ```no_run
    /// use faascache_client::{Client, WriteItem};
    /// let c = Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let rs = c.multi_write(&[WriteItem::new(t, b"a", b"1"), WriteItem::new(t, b"b", b"2")]);
    /// assert!(rs.iter().all(|r| r.is_ok()));
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn multi_write(&self, items: &[WriteItem<'_>]) -> Vec<Result<u64>> {
        // In waves: a master keeps at most 4 096 unacknowledged exactly-once results per client.
        items
            .chunks(MULTI_MUTATION_WAVE)
            .flat_map(|wave| self.multi_write_wave(wave))
            .collect()
    }

    fn multi_write_wave(&self, items: &[WriteItem<'_>]) -> Vec<Result<u64>> {
        let mut early: Vec<Option<Error>> = items
            .iter()
            .map(|w| check_key(w.key).and_then(|_| check_value(w.value)).err())
            .collect();
        let valid: Vec<usize> = (0..items.len()).filter(|&i| early[i].is_none()).collect();
        let sub_keys: Vec<(TableId, u64)> = valid
            .iter()
            .map(|&i| (items[i].table, msg::key_hash(items[i].key)))
            .collect();
        let guards = match self.begin_rpcs(valid.len()) {
            Ok(g) => g,
            Err(e) => {
                return merge(
                    &mut early,
                    valid.clone(),
                    valid.iter().map(|_| Err(e.clone())).collect(),
                )
            }
        };
        let res = self.run_multi(
            Opcode::MultiWrite,
            &sub_keys,
            &guards,
            |batch, snap| {
                let client_id = snap.client_id;
                MultiWriteRequest {
                    client_id,
                    ack_id: if client_id == 0 { 0 } else { self.ack_id() },
                    lease: snap.lease,
                    items: batch
                        .iter()
                        .map(|&j| {
                            let w = &items[valid[j]];
                            MultiWriteItem {
                                table: w.table,
                                rpc_id: if client_id == 0 { 0 } else { guards[j].id() },
                                rules: w.reject,
                                key: w.key,
                                value: w.value,
                            }
                        })
                        .collect(),
                }
                .to_vec()
            },
            |payload, batch| {
                let r = MultiResponse::decode(payload)?;
                Ok(version_outcomes(self, &r, batch, &sub_keys, |v| v))
            },
        );
        drop(guards);
        merge(&mut early, valid, res)
    }

    /// Removes many objects, grouped by master and sent in parallel; returns each removed
    /// version (`None`: there was no object) in request order.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let rs = c.multi_remove(&[(t, &b"a"[..]), (t, &b"b"[..])]);
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn multi_remove(&self, items: &[(TableId, &[u8])]) -> Vec<Result<Option<u64>>> {
        items
            .chunks(MULTI_MUTATION_WAVE)
            .flat_map(|wave| self.multi_remove_wave(wave))
            .collect()
    }

    fn multi_remove_wave(&self, items: &[(TableId, &[u8])]) -> Vec<Result<Option<u64>>> {
        let mut early: Vec<Option<Error>> = items.iter().map(|(_, k)| check_key(k).err()).collect();
        let valid: Vec<usize> = (0..items.len()).filter(|&i| early[i].is_none()).collect();
        let sub_keys: Vec<(TableId, u64)> = valid
            .iter()
            .map(|&i| (items[i].0, msg::key_hash(items[i].1)))
            .collect();
        let guards = match self.begin_rpcs(valid.len()) {
            Ok(g) => g,
            Err(e) => {
                return merge(
                    &mut early,
                    valid.clone(),
                    valid.iter().map(|_| Err(e.clone())).collect(),
                )
            }
        };
        let res = self.run_multi(
            Opcode::MultiRemove,
            &sub_keys,
            &guards,
            |batch, snap| {
                let client_id = snap.client_id;
                MultiRemoveRequest {
                    client_id,
                    ack_id: if client_id == 0 { 0 } else { self.ack_id() },
                    lease: snap.lease,
                    items: batch
                        .iter()
                        .map(|&j| MultiRemoveItem {
                            table: items[valid[j]].0,
                            rpc_id: if client_id == 0 { 0 } else { guards[j].id() },
                            rules: msg::RejectRules::NONE,
                            key: items[valid[j]].1,
                        })
                        .collect(),
                }
                .to_vec()
            },
            |payload, batch| {
                let r = MultiResponse::decode(payload)?;
                Ok(version_outcomes(self, &r, batch, &sub_keys, |v| {
                    (v != 0).then_some(v)
                }))
            },
        );
        drop(guards);
        merge(&mut early, valid, res)
    }
}

fn version_outcomes<T>(
    client: &Client,
    r: &MultiResponse,
    batch: &[usize],
    keys: &[(TableId, u64)],
    ok: impl Fn(u64) -> T,
) -> Vec<ItemOutcome<T>> {
    r.items
        .iter()
        .zip(batch)
        .map(|(it, &j)| {
            if it.status.is_ok() {
                ItemOutcome::Done(Ok(ok(it.version)))
            } else {
                item_failure(client, keys[j].0, it.status, it.version)
            }
        })
        .collect()
}

/// Puts the results of the valid items back among the items refused before sending.
fn merge<T>(early: &mut [Option<Error>], valid: Vec<usize>, res: Vec<Result<T>>) -> Vec<Result<T>> {
    let mut res: Vec<Option<Result<T>>> = res.into_iter().map(Some).collect();
    let mut pos: HashMap<usize, usize> = HashMap::with_capacity(valid.len());
    for (j, i) in valid.into_iter().enumerate() {
        pos.insert(i, j);
    }
    (0..early.len())
        .map(|i| match early[i].take() {
            Some(e) => Err(e),
            None => res[pos[&i]].take().expect("each result is taken once"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tablets::Tablet;

    fn map(table: TableId, parts: &[(u64, u64, &str)]) -> Arc<TabletMap> {
        Arc::new(
            TabletMap::new(
                table,
                parts
                    .iter()
                    .map(|&(s, e, m)| Tablet {
                        start: s,
                        end: e,
                        master: m.into(),
                        server_id: 0,
                    })
                    .collect(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn groups_by_master_in_order_and_cuts_batches() {
        let mut maps = HashMap::new();
        maps.insert(1, map(1, &[(0, 99, "A"), (100, u64::MAX, "B")]));
        maps.insert(2, map(2, &[(0, u64::MAX, "A")]));
        let items = vec![
            (0, 1, 150), // B
            (1, 1, 5),   // A
            (2, 2, 500), // A (other table, same master)
            (3, 1, 7),   // A
            (4, 3, 1),   // table 3: no map
            (5, 1, 101), // B
            (6, 1, 50),  // A
        ];
        let (batches, unresolved) = group_by_master(items.clone(), &maps, 2);
        assert_eq!(unresolved, vec![4]);
        let got: Vec<(&str, Vec<usize>)> = batches
            .iter()
            .map(|b| (b.master.as_str(), b.items.clone()))
            .collect();
        assert_eq!(
            got,
            vec![("B", vec![0, 5]), ("A", vec![1, 2]), ("A", vec![3, 6]),]
        );
        let (batches, _) = group_by_master(items, &maps, 20);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].items, vec![1, 2, 3, 6]);
    }

    #[test]
    fn holes_are_unresolved_and_batch_zero_is_one() {
        let mut maps = HashMap::new();
        maps.insert(1, map(1, &[(10, 20, "A")]));
        let (batches, unresolved) =
            group_by_master(vec![(0, 1, 5), (1, 1, 15), (2, 1, 16)], &maps, 0);
        assert_eq!(unresolved, vec![0]);
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|b| b.items.len() == 1));
    }

    #[test]
    fn merge_restores_request_order() {
        let mut early = vec![None, Some(Error::NoSuchObject), None];
        let out = merge(&mut early, vec![0, 2], vec![Ok(10u64), Ok(30)]);
        assert_eq!(out, vec![Ok(10), Err(Error::NoSuchObject), Ok(30)]);
    }

    #[test]
    fn retry_items_wait_at_least_a_millisecond() {
        use std::time::Duration;
        assert_eq!(wait_floor(false, false), RETRY_ITEM_BACKOFF);
        assert!(RETRY_ITEM_BACKOFF >= Duration::from_millis(1));
        assert_eq!(wait_floor(true, false), Duration::ZERO);
        assert_eq!(wait_floor(false, true), Duration::ZERO);
    }
}
