//! The object index: a hash table from (table, key) to the object's address in the log.
//!
//! Layout follows RAMCloud: cache-line (64-byte) buckets of eight 8-byte entries. An entry is
//!
//! ```text
//! bit 63..49  tag: 15 more bits of the hash, so most non-matching entries are skipped
//!             without touching the log
//! bit 48      clean: the object is also in its backing store (cache tables may evict it);
//!             kept here, not in the log, because the log is immutable
//! bit 47      chain: the entry points to an overflow bucket, not to the log
//! bit 46..0   log address of the entry (arena offset) plus one, or the overflow bucket
//!             index
//! ```
//!
//! and 0 is an empty slot. The table stores no keys: callers compare the real key in the log
//! (the closure passed to [`Stripe::find`]).
//!
//! The bucket of a key is the *top* bits of its 64-bit key hash, so buckets are ordered by key
//! hash and a tablet (a key-hash range) is a contiguous run of buckets — enumeration walks it
//! with a cursor that stays valid while objects come and go.
//!
//! Concurrency: buckets are grouped into lock stripes (bucket `b` belongs to stripe
//! `b % stripes`); every access to a bucket holds its stripe's mutex. The engine keeps that
//! mutex while it reads the object's bytes, which is what keeps the cleaner from freeing them
//! underneath (see `engine.rs`). Memory is sized once, from the configuration; overflow
//! buckets are added per stripe when a bucket's eight slots are full.

use parking_lot::{Mutex, MutexGuard};

const EMPTY: u64 = 0;
const CHAIN_BIT: u64 = 1 << 47;
const CLEAN_BIT: u64 = 1 << 48;
const TAG_SHIFT: u32 = 49;
const ADDR_MASK: u64 = (1 << 47) - 1;
const SLOTS: usize = 8;

#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket([u64; SLOTS]);

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// The buckets of one lock stripe, plus their overflow buckets.
#[derive(Debug)]
pub struct Stripe {
    buckets: Box<[Bucket]>,
    overflow: Vec<Bucket>,
    free_overflow: Vec<u32>,
}

/// Where an entry sits: bucket (primary local index, or overflow index) and slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    bucket: BucketId,
    slot: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BucketId {
    Primary(u32),
    Overflow(u32),
}

/// The hash table.
#[derive(Debug)]
pub struct HashTable {
    stripes: Box<[Mutex<Stripe>]>,
    /// Address of each stripe's primary buckets (fixed at construction), for prefetching
    /// without taking the lock.
    bucket_base: Box<[usize]>,
    bucket_bits: u32,
    stripe_bits: u32,
}

/// A locked stripe positioned at the bucket of one key hash.
#[derive(Debug)]
pub struct StripeGuard<'a> {
    stripe: MutexGuard<'a, Stripe>,
    local: u32,
    tag: u16,
}

impl HashTable {
    /// A table of `buckets` buckets (a power of two) in `stripes` lock stripes (a power of two,
    /// at most `buckets`).
    pub fn new(buckets: usize, stripes: usize) -> HashTable {
        assert!(buckets.is_power_of_two() && stripes.is_power_of_two() && stripes <= buckets);
        let per = buckets / stripes;
        let stripes_v: Vec<Mutex<Stripe>> = (0..stripes)
            .map(|_| {
                Mutex::new(Stripe {
                    buckets: vec![Bucket::default(); per].into_boxed_slice(),
                    overflow: Vec::new(),
                    free_overflow: Vec::new(),
                })
            })
            .collect();
        let bucket_base = stripes_v
            .iter()
            .map(|s| s.lock().buckets.as_ptr() as usize)
            .collect();
        HashTable {
            bucket_base,
            stripes: stripes_v.into_boxed_slice(),
            bucket_bits: buckets.trailing_zeros(),
            stripe_bits: stripes.trailing_zeros(),
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        1 << self.bucket_bits
    }

    /// Bytes the table occupies (primary buckets; overflow buckets are counted by
    /// [`HashTable::overflow_buckets`]).
    pub fn bytes(&self) -> usize {
        self.buckets() * std::mem::size_of::<Bucket>()
    }

    /// Overflow buckets allocated so far.
    pub fn overflow_buckets(&self) -> usize {
        self.stripes.iter().map(|s| s.lock().overflow.len()).sum()
    }

    /// Bucket index of a key hash: its top bits.
    #[inline]
    pub fn bucket_of(&self, key_hash: u64) -> usize {
        if self.bucket_bits == 0 {
            0
        } else {
            (key_hash >> (64 - self.bucket_bits)) as usize
        }
    }

    /// First key hash that falls in `bucket`.
    pub fn first_hash_of_bucket(&self, bucket: usize) -> u64 {
        if self.bucket_bits == 0 {
            0
        } else {
            (bucket as u64) << (64 - self.bucket_bits)
        }
    }

    /// Asks the CPU to start loading the bucket of `key_hash` (the cleaner does this a few
    /// entries ahead, so the lookups it then makes hit the cache).
    #[inline]
    pub fn prefetch(&self, key_hash: u64) {
        let b = self.bucket_of(key_hash);
        let stripe_mask = (1usize << self.stripe_bits) - 1;
        let local = b >> self.stripe_bits;
        super::arena::prefetch(
            self.bucket_base[b & stripe_mask] + local * std::mem::size_of::<Bucket>(),
        );
    }

    /// Locks the stripe of `key_hash`; `tag` distinguishes keys within the bucket (the engine
    /// mixes the table id into it).
    #[inline]
    pub fn lock(&self, key_hash: u64, tag: u16) -> StripeGuard<'_> {
        self.lock_bucket(self.bucket_of(key_hash), tag)
    }

    /// Locks the stripe of bucket `bucket`.
    pub fn lock_bucket(&self, bucket: usize, tag: u16) -> StripeGuard<'_> {
        let stripe_mask = (1usize << self.stripe_bits) - 1;
        let stripe = self.stripes[bucket & stripe_mask].lock();
        StripeGuard {
            stripe,
            local: (bucket >> self.stripe_bits) as u32,
            tag,
        }
    }
}

/// Stored form of a log address: plus one, so that address 0 (the first byte of the arena,
/// which may hold an object) is not mistaken for an empty slot.
#[inline]
fn enc(addr: u64) -> u64 {
    assert!(addr < ADDR_MASK, "log address {addr} cannot be indexed");
    addr + 1
}

#[inline]
fn dec(e: u64) -> u64 {
    (e & ADDR_MASK) - 1
}

#[inline]
fn entry(tag: u16, clean: bool, addr: u64) -> u64 {
    (((tag & 0x7fff) as u64) << TAG_SHIFT) | if clean { CLEAN_BIT } else { 0 } | enc(addr)
}

/// What a hash-table entry says about an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where the entry sits.
    pub slot: Slot,
    /// Log address of the object.
    pub addr: u64,
    /// Whether the object is clean (safe to evict from a cache table).
    pub clean: bool,
}

impl StripeGuard<'_> {
    fn bucket(&self, id: BucketId) -> &Bucket {
        match id {
            BucketId::Primary(i) => &self.stripe.buckets[i as usize],
            BucketId::Overflow(i) => &self.stripe.overflow[i as usize],
        }
    }

    fn bucket_mut(&mut self, id: BucketId) -> &mut Bucket {
        match id {
            BucketId::Primary(i) => &mut self.stripe.buckets[i as usize],
            BucketId::Overflow(i) => &mut self.stripe.overflow[i as usize],
        }
    }

    /// Calls `visit(slot, entry)` on every slot of the bucket chain, stopping early if it
    /// returns true; returns the slot it stopped at.
    fn walk(&self, mut visit: impl FnMut(Slot, u64) -> bool) -> Option<Slot> {
        let mut id = BucketId::Primary(self.local);
        loop {
            let b = self.bucket(id);
            for (i, &e) in b.0.iter().enumerate() {
                if i == SLOTS - 1 && e & CHAIN_BIT != 0 {
                    id = BucketId::Overflow((e & ADDR_MASK) as u32);
                    break;
                }
                let slot = Slot {
                    bucket: id,
                    slot: i as u8,
                };
                if visit(slot, e) {
                    return Some(slot);
                }
                if i == SLOTS - 1 {
                    return None;
                }
            }
        }
    }

    /// Finds the entry whose tag matches and for whose log address `is_match` says yes.
    #[inline]
    pub fn find(&self, mut is_match: impl FnMut(u64) -> bool) -> Option<Found> {
        let tag = (self.tag & 0x7fff) as u64;
        let mut found = 0;
        let slot = self.walk(|_, e| {
            if e != EMPTY && e >> TAG_SHIFT == tag && is_match(dec(e)) {
                found = e;
                true
            } else {
                false
            }
        })?;
        Some(Found {
            slot,
            addr: dec(found),
            clean: found & CLEAN_BIT != 0,
        })
    }

    /// Every log address in this bucket chain, whatever its tag.
    pub fn all(&self, out: &mut Vec<u64>) {
        self.walk(|_, e| {
            if e != EMPTY {
                out.push(dec(e));
            }
            false
        });
    }

    /// Points `slot` at a new log address (same key: tag unchanged).
    pub fn replace(&mut self, slot: Slot, addr: u64, clean: bool) {
        let tag = self.tag;
        let b = self.bucket_mut(slot.bucket);
        let old = b.0[slot.slot as usize];
        assert!(
            old != EMPTY && old & CHAIN_BIT == 0,
            "replacing an empty or chain slot"
        );
        b.0[slot.slot as usize] = entry(tag, clean, addr);
    }

    /// Sets or clears the clean flag of `slot`.
    pub fn set_clean(&mut self, slot: Slot, clean: bool) {
        let b = self.bucket_mut(slot.bucket);
        let e = &mut b.0[slot.slot as usize];
        assert!(
            *e != EMPTY && *e & CHAIN_BIT == 0,
            "flagging an empty or chain slot"
        );
        *e = if clean {
            *e | CLEAN_BIT
        } else {
            *e & !CLEAN_BIT
        };
    }

    /// Finds the entry holding exactly `addr` (the cleaner's liveness check).
    pub fn find_addr(&self, addr: u64) -> Option<Found> {
        let mut found = 0;
        let slot = self.walk(|_, e| {
            found = e;
            e != EMPTY && dec(e) == addr
        })?;
        Some(Found {
            slot,
            addr,
            clean: found & CLEAN_BIT != 0,
        })
    }

    /// Points `slot` at `new_addr`, keeping its tag and flags.
    pub fn relocate(&mut self, slot: Slot, new_addr: u64) {
        let b = self.bucket_mut(slot.bucket);
        let old = b.0[slot.slot as usize];
        assert!(
            old != EMPTY && old & CHAIN_BIT == 0,
            "relocating an empty or chain slot"
        );
        b.0[slot.slot as usize] = (old & !ADDR_MASK) | enc(new_addr);
    }

    /// Empties a slot.
    pub fn remove(&mut self, slot: Slot) {
        let b = self.bucket_mut(slot.bucket);
        assert!(b.0[slot.slot as usize] & CHAIN_BIT == 0 || slot.slot as usize != SLOTS - 1);
        b.0[slot.slot as usize] = EMPTY;
    }

    /// Adds an entry for `addr` with this guard's tag, growing the chain if needed.
    pub fn insert(&mut self, addr: u64, clean: bool) {
        let e = entry(self.tag, clean, addr);
        if let Some(slot) = self.walk(|_, v| v == EMPTY) {
            let b = self.bucket_mut(slot.bucket);
            b.0[slot.slot as usize] = e;
            return;
        }
        // Full chain: move the last slot of the last bucket into a new overflow bucket and
        // chain to it.
        let mut last = BucketId::Primary(self.local);
        loop {
            let tail = self.bucket(last).0[SLOTS - 1];
            if tail & CHAIN_BIT != 0 {
                last = BucketId::Overflow((tail & ADDR_MASK) as u32);
            } else {
                break;
            }
        }
        let moved = self.bucket(last).0[SLOTS - 1];
        let mut nb = Bucket::default();
        nb.0[0] = moved;
        nb.0[1] = e;
        let idx = match self.stripe.free_overflow.pop() {
            Some(i) => {
                self.stripe.overflow[i as usize] = nb;
                i
            }
            None => {
                self.stripe.overflow.push(nb);
                (self.stripe.overflow.len() - 1) as u32
            }
        };
        self.bucket_mut(last).0[SLOTS - 1] = CHAIN_BIT | idx as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_replace_remove_with_overflow_chains() {
        let t = HashTable::new(16, 4);
        // 30 keys with the same hash: forces three overflow buckets.
        let hash = 0xABCD_0000_0000_0000u64;
        for i in 1..=30u64 {
            t.lock(hash, 7).insert(i * 8, i % 2 == 0);
        }
        assert!(t.overflow_buckets() >= 3);
        for i in 1..=30u64 {
            let g = t.lock(hash, 7);
            let f = g.find(|a| a == i * 8).expect("present");
            assert_eq!((f.addr, f.clean), (i * 8, i % 2 == 0));
            drop(g);
            let mut g = t.lock(hash, 7);
            g.replace(f.slot, i * 8 + 1, false);
        }
        let g = t.lock(hash, 7);
        assert!(g.find(|a| a == 8).is_none());
        let mut all = Vec::new();
        g.all(&mut all);
        assert_eq!(all.len(), 30);
        drop(g);
        // A different tag never matches.
        assert!(t.lock(hash, 8).find(|_| true).is_none());
        for i in 1..=30u64 {
            let mut g = t.lock(hash, 7);
            let f = g.find(|a| a == i * 8 + 1).unwrap();
            assert!(!f.clean);
            g.remove(f.slot);
        }
        let mut all = Vec::new();
        t.lock(hash, 7).all(&mut all);
        assert!(all.is_empty());
    }

    #[test]
    fn buckets_follow_hash_order() {
        let t = HashTable::new(1024, 16);
        assert_eq!(t.bucket_of(0), 0);
        assert_eq!(t.bucket_of(u64::MAX), 1023);
        assert_eq!(t.bucket_of(t.first_hash_of_bucket(517)), 517);
        assert!(t.bucket_of(1 << 53) < t.bucket_of(1 << 63));
    }
}
