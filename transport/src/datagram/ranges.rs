//! Received byte ranges of one inbound datagram message (non-overlapping, merged).

use std::collections::BTreeMap;

/// Received byte ranges of one message (non-overlapping, merged).
#[derive(Debug, Default)]
pub(crate) struct Ranges(pub(crate) BTreeMap<u32, u32>);

impl Ranges {
    /// Insert `[s, e)`; returns the number of new bytes.
    pub(crate) fn insert(&mut self, mut s: u32, mut e: u32) -> u32 {
        let before: u32 = self.total();
        // Merge with a range starting at or before s that reaches s.
        if let Some((&ps, &pe)) = self.0.range(..=s).next_back() {
            if pe >= s {
                s = ps;
                e = e.max(pe);
                self.0.remove(&ps);
            }
        }
        // Absorb ranges starting inside [s, e].
        let inside: Vec<u32> = self.0.range(s..=e).map(|(&k, _)| k).collect();
        for k in inside {
            let ke = self.0.remove(&k).expect("present");
            e = e.max(ke);
        }
        self.0.insert(s, e);
        self.total() - before
    }
    pub(crate) fn total(&self) -> u32 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }
    /// First missing range below `limit`, if any.
    pub(crate) fn first_gap(&self, limit: u32) -> Option<(u32, u32)> {
        let mut at = 0;
        for (&s, &e) in &self.0 {
            if s > at {
                return Some((at, s.min(limit)));
            }
            at = e;
            if at >= limit {
                return None;
            }
        }
        (at < limit).then_some((at, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_gaps() {
        let mut r = Ranges::default();
        assert_eq!(r.insert(10, 20), 10);
        assert_eq!(r.insert(15, 25), 5);
        assert_eq!(r.insert(0, 5), 5);
        assert_eq!(r.first_gap(100), Some((5, 10)));
        assert_eq!(r.insert(5, 10), 5);
        assert_eq!(r.first_gap(100), Some((25, 100)));
        assert_eq!(r.first_gap(25), None);
        assert_eq!(r.insert(0, 25), 0);
        assert_eq!(r.0.len(), 1);
        let mut r = Ranges::default();
        r.insert(30, 40);
        r.insert(10, 20);
        assert_eq!(r.insert(0, 50), 30);
        assert_eq!(r.0.len(), 1);
    }

    #[test]
    fn ranges_agree_with_a_byte_model() {
        let mut rng = crate::datagram::sim::Rng::new(77);
        for _ in 0..200 {
            let len = 1 + rng.upto(300) as u32;
            let mut r = Ranges::default();
            let mut model = vec![false; len as usize];
            for _ in 0..rng.upto(40) {
                let s = rng.upto(u64::from(len) - 1) as u32;
                let e = s + 1 + rng.upto(u64::from(len - s - 1)) as u32;
                let before = model.iter().filter(|&&b| b).count() as u32;
                model[s as usize..e as usize]
                    .iter_mut()
                    .for_each(|b| *b = true);
                let after = model.iter().filter(|&&b| b).count() as u32;
                assert_eq!(r.insert(s, e), after - before);
                assert_eq!(r.total(), after);
                let gap = model.iter().position(|&b| !b).map(|g| {
                    let end = model[g..]
                        .iter()
                        .position(|&b| b)
                        .map_or(len as usize, |x| g + x);
                    (g as u32, end as u32)
                });
                assert_eq!(r.first_gap(len), gap);
                // Ranges stay disjoint and non-adjacent.
                let v: Vec<(u32, u32)> = r.0.iter().map(|(&a, &b)| (a, b)).collect();
                assert!(v.windows(2).all(|w| w[0].1 < w[1].0), "{v:?}");
            }
        }
    }
}
