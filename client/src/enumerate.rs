//! Enumeration: every object of a table, tablet by tablet, as an [`Iterator`].
//!
//! The position is a key hash: the iterator asks the master of the tablet holding it for a
//! batch (`Enumerate` with the tablet's range and a cursor), continues at the reply's cursor,
//! and moves to the next tablet when one is exhausted. Because the position is a hash, not a
//! tablet, a tablet map refreshed in the middle (split, migration) resumes where it stopped. An
//! object that exists for the whole enumeration is returned exactly once; objects written or
//! removed meanwhile may or may not appear.
//!
//! [`Client::enumerate_page`] is the same walk one batch at a time, with the position in the
//! caller's hands (for a caller that cannot borrow the client across calls, such as the Python
//! binding's iterator); [`Client::enumerate`] is built on it.

use faascache_protocol::msg::master::EnumerateRequest;
use faascache_protocol::msg::Request;

use crate::client::{Attempt, Client};
use crate::error::{Result, TableId};

/// Soft limit on key + value bytes per `Enumerate` reply.
const BATCH_BYTES: u32 = 256 * 1024;

/// An object returned by [`Client::enumerate`] or [`Client::enumerate_page`].
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

/// One batch of an enumeration; see [`Client::enumerate_page`].
///
/// ```
/// let p = faascache_client::EnumeratePage { entries: Vec::new(), next: None };
/// assert!(p.is_last());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnumeratePage {
    /// Objects whose key hash is at least the page's `from` and below `next` (at most one
    /// `Enumerate` reply's worth: about 256 KiB of keys and values). May be empty even when
    /// `next` is `Some` (an empty tablet, or an empty stretch of one).
    pub entries: Vec<Entry>,
    /// The key hash to pass as `from` for the next page; `None`: the table is done.
    pub next: Option<u64>,
}

impl EnumeratePage {
    /// Whether this is the table's last page (`next` is `None`).
    pub fn is_last(&self) -> bool {
        self.next.is_none()
    }
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
    /// The rest of the current page.
    buf: std::vec::IntoIter<Entry>,
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
            buf: Vec::new().into_iter(),
        }
    }

    /// One batch of `table`'s objects: those from key hash `from` on, up to the end of a
    /// reply (about 256 KiB of keys and values) or of the tablet holding `from`. Start with
    /// `from = 0` and continue with each page's `next` until it is `None`; a page may be empty
    /// with more to come. The pages hold no borrow of the client and no state on the servers,
    /// so a caller may keep the cursor anywhere and resume later (or never). The guarantees
    /// are those of [`Client::enumerate`], which is built on this: an object that exists for
    /// the whole paging is returned exactly once.
    ///
    /// ```no_run
    /// let c = faascache_client::Client::connect("tcp:host=127.0.0.1,port=12246")?;
    /// let t = c.table_id("users")?;
    /// let mut from = Some(0);
    /// while let Some(f) = from {
    ///     let page = c.enumerate_page(t, f)?;
    ///     for e in &page.entries {
    ///         println!("{:?} = {} bytes", e.key, e.value.len());
    ///     }
    ///     from = page.next;
    /// }
    /// # Ok::<(), faascache_client::Error>(())
    /// ```
    pub fn enumerate_page(&self, table: TableId, from: u64) -> Result<EnumeratePage> {
        let mut backoff = self.backoff();
        loop {
            let map = self.tablet_map(table)?;
            let Some(tablet) = map.next_from(from).cloned() else {
                if map.is_complete() || map.tablets().is_empty() {
                    return Ok(EnumeratePage::default());
                }
                // A hole at the end of an incomplete map: look again before concluding.
                self.invalidate_map(table);
                let map = self.tablet_map(table)?;
                if map.next_from(from).is_none() {
                    return Ok(EnumeratePage::default());
                }
                continue;
            };
            // The position, and the tablet that holds it. The request is built inside the
            // attempt from the map current then: a map refreshed after `UNKNOWN_TABLET` (split,
            // migration) yields the new tablet's range.
            let hash = from.max(tablet.start);
            let (objects, next, end) = self.on_master(table, hash, &mut backoff, |s, left| {
                let map = self.tablet_map(table).map_err(|e| {
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
                self.classify(table, EnumerateRequest::OPCODE, r)
            })?;
            let next = match next {
                Some(c) if c > hash => Some(c),
                Some(_) => {
                    // A cursor that does not move would loop forever.
                    return Err(crate::Error::Protocol(format!(
                        "enumeration of {} did not advance at key hash {hash:#018x}",
                        self.table_label(table)
                    )));
                }
                None => end.checked_add(1),
            };
            return Ok(EnumeratePage {
                entries: objects,
                next,
            });
        }
    }
}

impl Iterator for Enumerate<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(e) = self.buf.next() {
                return Some(Ok(e));
            }
            let from = self.next_hash?;
            match self.client.enumerate_page(self.table, from) {
                Ok(page) => {
                    self.buf = page.entries.into_iter();
                    self.next_hash = page.next;
                }
                Err(e) => {
                    self.next_hash = None;
                    return Some(Err(e));
                }
            }
        }
    }
}
