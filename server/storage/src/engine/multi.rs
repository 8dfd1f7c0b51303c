//! Operations on many objects at once: batched reads, writes and removes (their hash buckets are
//! prefetched together), and enumeration of a table's objects by hash range.

use super::*;

impl Engine {
    /// Reads several objects; one result per request, in order.
    pub fn multi_read(
        &self,
        reqs: &[(TableId, &[u8])],
    ) -> Vec<Result<(u64, Vec<u8>), StorageError>> {
        // The hash buckets of a batch are prefetched before the first lookup, so their DRAM
        // misses overlap instead of adding up.
        let mut out = Vec::with_capacity(reqs.len());
        for batch in reqs.chunks(16) {
            for &(_, k) in batch {
                self.inner.ht.prefetch(key_hash(k));
            }
            for &(t, k) in batch {
                let mut v = Vec::new();
                out.push(
                    self.read(t, k, &RejectRules::NONE, &mut v)
                        .map(|ver| (ver, v)),
                );
            }
        }
        out
    }

    /// Starts loading the hash bucket of `key` into the cache, so a read or write of it a
    /// little later does not wait for DRAM (a batch of keys can overlap their misses).
    #[inline]
    pub fn prefetch(&self, key: &[u8]) {
        self.inner.ht.prefetch(key_hash(key));
    }

    /// Writes several objects; one result per request, in order. Each write is atomic on its
    /// own; the batch is not a transaction.
    pub fn multi_write(&self, ops: &[WriteOp<'_>]) -> Vec<Result<u64, StorageError>> {
        ops.iter()
            .map(|o| self.write(o.table, o.key, o.value, &o.rules))
            .collect()
    }

    /// Removes several objects; one result per request, in order.
    pub fn multi_remove(
        &self,
        reqs: &[(TableId, &[u8])],
    ) -> Vec<Result<Option<u64>, StorageError>> {
        reqs.iter()
            .map(|&(t, k)| self.remove(t, k, &RejectRules::NONE))
            .collect()
    }

    /// Lists objects of `table` whose key hash lies in `range`, in batches of about
    /// `max_bytes`. Start with `cursor = None`; pass each batch's `next_cursor` back. An object
    /// that exists for the whole enumeration is returned exactly once; objects written or
    /// removed meanwhile may or may not appear.
    pub fn enumerate(
        &self,
        table: TableId,
        range: RangeInclusive<u64>,
        cursor: Option<u64>,
        max_bytes: usize,
    ) -> Result<Enumeration, StorageError> {
        let inner = &self.inner;
        inner.table(table)?;
        let start = cursor.unwrap_or(*range.start()).max(*range.start());
        if start > *range.end() {
            return Ok(Enumeration::default());
        }
        let first = inner.ht.bucket_of(start);
        let last = inner.ht.bucket_of(*range.end());
        let mut out = Enumeration::default();
        let mut bytes = 0;
        let mut addrs = Vec::new();
        for b in first..=last {
            if bytes >= max_bytes.max(1) {
                out.next_cursor = Some(inner.ht.first_hash_of_bucket(b).max(start));
                return Ok(out);
            }
            let g = inner.ht.lock_bucket(b, 0);
            addrs.clear();
            g.all(&mut addrs);
            for &addr in &addrs {
                inner.log.with_entry(addr, |h, body| {
                    if h.ty != EntryType::Object || le32(body, 4) != table {
                        return;
                    }
                    let kl = le16(body, 20) as usize;
                    let key = &body[format::OBJECT_FIXED..format::OBJECT_FIXED + kl];
                    let hash = key_hash(key);
                    if hash < start || hash > *range.end() {
                        return;
                    }
                    let value = &body[format::OBJECT_FIXED + kl..];
                    bytes += key.len() + value.len();
                    out.objects.push(EnumeratedObject {
                        key: key.to_vec(),
                        value: value.to_vec(),
                        version: le64(body, 8),
                    });
                });
            }
            drop(g);
        }
        Ok(out)
    }
}
