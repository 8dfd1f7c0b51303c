//! Enumeration: every object of a table, tablet by tablet, as an [`Iterator`].
//!
//! The position is a key hash: the iterator asks the master of the tablet holding it for a
//! batch (`Enumerate` with the tablet's range and a cursor), continues at the reply's cursor,
//! and moves to the next tablet when one is exhausted. Because the position is a hash, not a
//! tablet, a tablet map refreshed in the middle (split, migration) resumes where it stopped. An
//! object that exists for the whole enumeration is returned exactly once; objects written or
//! removed meanwhile may or may not appear.

use std::collections::VecDeque;

use faascache_protocol::msg::master::EnumerateRequest;
use faascache_protocol::msg::Request;

use crate::client::{Attempt, Client};
use crate::error::{Result, TableId};

/// Soft limit on key + value bytes per `Enumerate` reply.
const BATCH_BYTES: u32 = 256 * 1024;

/// An object returned by [`Client::enumerate`].
///
/// ```
/// let e = faascache_client::Entry { key: b"k".to_vec(), value: b"v".to_vec(), version: 1 };
/// assert_eq!(e.key, b"k");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Version.
    pub version: u64,
}

/// Iterator over the objects of a table; see [`Client::enumerate`]. After an error it ends.
///
/// ```no_run
/// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
/// let t = c.table_id("users")?;
/// let bytes: usize = c.enumerate(t).filter_map(Result::ok).map(|e| e.value.len()).sum();
/// # Ok::<(), faascache_client::Error>(())
/// ```
#[derive(Debug)]
pub struct Enumerate<'c> {
    client: &'c Client,
    table: TableId,
    /// Next key hash to look at; `None` once the whole hash space is done.
    next_hash: Option<u64>,
    buf: VecDeque<Entry>,
}

impl Client {
    /// Iterates over every object of `table` (order: by key hash, tablet by tablet).
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// for entry in c.enumerate(t) {
    ///     let e = entry?;
    ///     println!("{:?} = {} bytes (version {})", e.key, e.value.len(), e.version);
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn enumerate(&self, table: TableId) -> Enumerate<'_> {
        Enumerate {
            client: self,
            table,
            next_hash: Some(0),
            buf: VecDeque::new(),
        }
    }
}

impl Enumerate<'_> {
    /// Fetches the next batch into `buf` (may be empty); advances the position.
    fn fetch(&mut self, from: u64) -> Result<()> {
        let client = self.client;
        let table = self.table;
        let mut backoff = client.backoff();
        loop {
            let map = client.tablet_map(table)?;
            let Some(tablet) = map.next_from(from).cloned() else {
                if map.is_complete() || map.tablets().is_empty() {
                    self.next_hash = None;
                    return Ok(());
                }
                // A hole at the end of an incomplete map: look again before concluding.
                client.invalidate_map(table);
                let map = client.tablet_map(table)?;
                if map.next_from(from).is_none() {
                    self.next_hash = None;
                    return Ok(());
                }
                continue;
            };
            // The position, and the tablet that holds it. The request is built inside the
            // attempt from the map current then: a map refreshed after `UNKNOWN_TABLET` (split,
            // migration) yields the new tablet's range.
            let hash = from.max(tablet.start);
            let (objects, next, end) = client.on_master(table, hash, &mut backoff, |s, left| {
                let map = client.tablet_map(table).map_err(|e| {
                    if e.is_transient() {
                        Attempt::Retry(e.to_string())
                    } else {
                        Attempt::Fail(e)
                    }
                })?;
                let Some(tablet) = map.lookup(hash).cloned() else {
                    return Err(Attempt::Refresh(format!(
                        "no master owns key hash {hash:#018x} yet"
                    )));
                };
                let req = EnumerateRequest {
                    table,
                    start_hash: tablet.start,
                    end_hash: tablet.end,
                    cursor: (hash > tablet.start).then_some(hash),
                    max_bytes: BATCH_BYTES,
                };
                let r = faascache_transport::call(s, &req, left, |r| {
                    let objs: Vec<Entry> = r
                        .objects
                        .iter()
                        .map(|o| Entry {
                            key: o.key.to_vec(),
                            value: o.value.to_vec(),
                            version: o.version,
                        })
                        .collect();
                    (objs, r.next_cursor, tablet.end)
                });
                client.classify(table, EnumerateRequest::OPCODE, r)
            })?;
            self.buf.extend(objects);
            match next {
                Some(c) if c > hash => self.next_hash = Some(c),
                Some(_) => {
                    // A cursor that does not move would loop forever.
                    return Err(crate::Error::Protocol(format!(
                        "enumeration of {} did not advance at key hash {hash:#018x}",
                        client.table_label(table)
                    )));
                }
                None => self.next_hash = end.checked_add(1),
            }
            return Ok(());
        }
    }
}

impl Iterator for Enumerate<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                return Some(Ok(e));
            }
            let from = self.next_hash?;
            if let Err(e) = self.fetch(from) {
                self.next_hash = None;
                return Some(Err(e));
            }
        }
    }
}
