//! The server side's per-peer state of a datagram [`Endpoint`](super::proto::Endpoint): for each
//! client session (source address + session nonce) its `ack_below` watermark and the index of
//! its RPCs, so that a watermark advance touches only that peer's RPCs.
//!
//! Bounded: at most `max` peers. A peer with an RPC in progress (receiving, executing or
//! responding) is *busy* and never evicted; one whose RPCs are all finished (tombstones) or gone
//! is *idle*, ordered by when it was last heard. A new peer when the table is full evicts the
//! least recently heard idle peer (its tombstones go with it); if every peer is busy the new one
//! is refused (its packets are dropped; its client resends later). Idle peers not heard from for
//! the endpoint's `peer_idle` are expired.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One client session as a server sees it.
#[derive(Debug)]
pub(crate) struct PeerState {
    /// Every rpc id below it is finished at the client (its highest `ack_below`).
    pub(crate) watermark: u64,
    /// Ids of this peer's RPCs the endpoint holds (in progress or tombstones).
    pub(crate) rpcs: BTreeSet<u64>,
    /// RPCs in progress.
    busy: u32,
    last_heard: Instant,
    /// Position in the idle order (when `busy == 0`).
    seq: u64,
}

/// What [`PeerTable::admit`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit<K> {
    /// Known, or added without evicting anyone.
    Present,
    /// Added after evicting this peer, whose RPC ids (tombstones) the caller must drop.
    Evicted(K, BTreeSet<u64>),
    /// Full of busy peers: refused.
    Refused,
}

/// Peers of one endpoint, with their idle order.
#[derive(Debug)]
pub(crate) struct PeerTable<K> {
    map: HashMap<K, PeerState>,
    /// Idle peers by `seq` (oldest first); the value is when it went idle or was last heard.
    idle: BTreeMap<u64, (K, Instant)>,
    next_seq: u64,
    max: usize,
}

impl<K: Copy + Eq + Hash> PeerTable<K> {
    pub(crate) fn new(max: usize) -> Self {
        PeerTable {
            map: HashMap::new(),
            idle: BTreeMap::new(),
            next_seq: 0,
            max: max.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&PeerState> {
        self.map.get(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut PeerState> {
        self.map.get_mut(k)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Note a packet from `k` (known or not): move it to the back of the idle order.
    pub(crate) fn touch(&mut self, k: K, now: Instant) {
        let seq = self.next_seq + 1;
        let Some(p) = self.map.get_mut(&k) else {
            return;
        };
        p.last_heard = now;
        if p.busy == 0 {
            self.idle.remove(&p.seq);
            p.seq = seq;
            self.next_seq = seq;
            self.idle.insert(seq, (k, now));
        }
    }

    /// Make sure `k` has state, evicting the least recently heard idle peer if the table is
    /// full, or refusing `k` if every peer is busy.
    pub(crate) fn admit(&mut self, k: K, now: Instant) -> Admit<K> {
        if self.map.contains_key(&k) {
            return Admit::Present;
        }
        let mut result = Admit::Present;
        if self.map.len() >= self.max {
            let Some((_, (old, _))) = self.idle.pop_first() else {
                return Admit::Refused;
            };
            let gone = self.map.remove(&old).expect("idle peers are in the map");
            result = Admit::Evicted(old, gone.rpcs);
        }
        let seq = self.seq();
        self.idle.insert(seq, (k, now));
        self.map.insert(
            k,
            PeerState {
                watermark: 0,
                rpcs: BTreeSet::new(),
                busy: 0,
                last_heard: now,
                seq,
            },
        );
        result
    }

    /// An RPC of `k` started (it must be admitted).
    pub(crate) fn started(&mut self, k: K, id: u64) {
        let p = self.map.get_mut(&k).expect("admitted");
        p.rpcs.insert(id);
        p.busy += 1;
        if p.busy == 1 {
            self.idle.remove(&p.seq);
        }
    }

    /// An RPC of `k` stopped being in progress (finished: a tombstone remains, or dropped:
    /// `remove` says so and the id leaves the index).
    pub(crate) fn ended(&mut self, k: K, id: u64, remove: bool, now: Instant) {
        let seq = self.next_seq + 1;
        let Some(p) = self.map.get_mut(&k) else {
            return;
        };
        if remove {
            p.rpcs.remove(&id);
        }
        p.busy -= 1;
        if p.busy == 0 {
            p.seq = seq;
            self.next_seq = seq;
            self.idle.insert(seq, (k, now));
        }
    }

    /// A finished RPC's tombstone of `k` was dropped.
    pub(crate) fn forget(&mut self, k: K, id: u64) {
        if let Some(p) = self.map.get_mut(&k) {
            p.rpcs.remove(&id);
        }
    }

    /// When the least recently heard idle peer expires (`None`: no idle peer).
    pub(crate) fn next_expiry(&self, idle_for: Duration) -> Option<Instant> {
        self.idle
            .first_key_value()
            .map(|(_, (_, since))| *since + idle_for)
    }

    /// Remove idle peers quiet since `now - idle_for`, oldest first; returns them with their
    /// tombstones' ids.
    pub(crate) fn expire(&mut self, now: Instant, idle_for: Duration) -> Vec<(K, BTreeSet<u64>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.idle.first_entry() {
            let (k, since) = *entry.get();
            if now.saturating_duration_since(since) < idle_for {
                break;
            }
            entry.remove();
            if let Some(p) = self.map.remove(&k) {
                out.push((k, p.rpcs));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_heard_idle_peer_never_a_busy_one() {
        let t = Instant::now();
        let mut p: PeerTable<u32> = PeerTable::new(3);
        for k in 1..=3 {
            assert_eq!(p.admit(k, t), Admit::Present);
        }
        p.started(1, 10);
        p.touch(2, t); // 2 is now more recent than 3
        assert_eq!(p.admit(4, t), Admit::Evicted(3, BTreeSet::new()));
        p.started(2, 20);
        p.started(4, 40);
        assert_eq!(p.admit(5, t), Admit::Refused, "every peer busy");
        p.ended(4, 40, false, t); // a tombstone remains
        assert_eq!(p.admit(5, t), Admit::Evicted(4, BTreeSet::from([40])));
        assert_eq!(p.len(), 3);
        assert!(p.get(&1).is_some() && p.get(&2).is_some());
    }

    #[test]
    fn idle_peers_expire_busy_ones_stay() {
        let t = Instant::now();
        let later = t + Duration::from_secs(100);
        let mut p: PeerTable<u32> = PeerTable::new(10);
        for k in 1..=4 {
            p.admit(k, t);
        }
        p.started(1, 1);
        p.touch(2, later);
        let gone: Vec<u32> = p
            .expire(later, Duration::from_secs(10))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(gone, vec![3, 4]);
        assert!(p.get(&1).is_some(), "busy peer kept however quiet");
        p.ended(1, 1, true, later);
        assert!(p.expire(later, Duration::from_secs(10)).is_empty());
        assert_eq!(
            p.expire(later + Duration::from_secs(10), Duration::from_secs(10))
                .len(),
            2
        );
        assert_eq!(p.len(), 0);
    }
}
