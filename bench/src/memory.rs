//! Memory efficiency under shifting object sizes (the FAST'14 log-structured-memory patterns):
//! load a fixed amount of live data, change value sizes by overwrites (optionally after deleting
//! 90 % of the objects), then report the server's resident memory ÷ live key+value bytes.

use crate::driver::{ClientConfig, Driver, Op, Reply};
use crate::keys::{make_key, make_value};
use crate::net::PollMode;
use crate::procinfo::rss_bytes;
use anyhow::{bail, Context, Result};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Duration;

/// A size-shift pattern.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pattern {
    /// W2, W3, W5, W8
    pub name: &'static str,
    /// value sizes before (inclusive range)
    pub before: (usize, usize),
    /// value sizes after
    pub after: (usize, usize),
    /// fraction of objects deleted before the new sizes are written
    pub delete_fraction: f64,
}

/// The FAST'14 patterns this test implements.
pub const PATTERNS: [Pattern; 4] = [
    Pattern {
        name: "W2",
        before: (100, 100),
        after: (130, 130),
        delete_fraction: 0.0,
    },
    Pattern {
        name: "W3",
        before: (100, 100),
        after: (130, 130),
        delete_fraction: 0.9,
    },
    Pattern {
        name: "W5",
        before: (100, 150),
        after: (200, 250),
        delete_fraction: 0.9,
    },
    Pattern {
        name: "W8",
        before: (50, 150),
        after: (5000, 15000),
        delete_fraction: 0.9,
    },
];

/// Looks a pattern up by name.
pub fn pattern(name: &str) -> Result<Pattern> {
    PATTERNS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .copied()
        .with_context(|| format!("unknown memory pattern {name:?} (known: W2, W3, W5, W8)"))
}

/// Result of one pattern.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryResult {
    /// pattern name
    pub pattern: String,
    /// live key+value bytes at the end
    pub live_bytes: u64,
    /// live objects at the end
    pub live_objects: u64,
    /// server RSS before loading (after flush)
    pub rss_baseline_bytes: u64,
    /// server RSS at the end
    pub rss_bytes: u64,
    /// rss ÷ live
    pub rss_per_live: f64,
    /// (rss − baseline) ÷ live
    pub rss_growth_per_live: f64,
    /// writes issued
    pub writes: u64,
    /// deletes issued
    pub deletes: u64,
    /// writes the server refused (e.g. memcached out of memory for a slab class)
    pub refused: u64,
}

struct Loader {
    c: Box<dyn crate::driver::Client>,
    key: Vec<u8>,
    value: Vec<u8>,
    queued: usize,
    refused: u64,
    key_size: usize,
}

impl Loader {
    fn write(&mut self, idx: u64, size: usize) -> Result<()> {
        make_key(idx, self.key_size, &mut self.key)?;
        if self.value.len() < size {
            make_value(idx, size, &mut self.value);
        }
        self.c.send(&Op::Set {
            key: &self.key,
            value: &self.value[..size],
        })?;
        self.bump()
    }

    fn delete(&mut self, idx: u64) -> Result<()> {
        make_key(idx, self.key_size, &mut self.key)?;
        self.c.send(&Op::Delete { key: &self.key })?;
        self.bump()
    }

    fn bump(&mut self) -> Result<()> {
        self.queued += 1;
        if self.queued >= 128 {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        self.c.flush()?;
        for _ in 0..self.queued {
            if let Some(Reply::Error(_)) = self.c.recv(None)? {
                self.refused += 1;
            }
        }
        self.queued = 0;
        Ok(())
    }
}

/// Runs one pattern against a freshly flushed server holding `live_target` bytes of live data.
pub fn run(
    driver: &dyn Driver,
    p: &Pattern,
    live_target: u64,
    key_size: usize,
    seed: u64,
) -> Result<MemoryResult> {
    let pid = driver
        .server_pid()
        .context("the memory test needs the server's pid (local server, or --server-pid)")?;
    driver.flush_all()?;
    std::thread::sleep(Duration::from_millis(200));
    let baseline = rss_bytes(pid).context("cannot read server RSS")?;
    let c = driver.connect(&ClientConfig {
        poll: PollMode::Block,
        timeout: Duration::from_secs(30),
    })?;
    let mut l = Loader {
        c,
        key: Vec::new(),
        value: Vec::new(),
        queued: 0,
        refused: 0,
        key_size,
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let size_in = |rng: &mut SmallRng, r: (usize, usize)| {
        if r.0 == r.1 {
            r.0
        } else {
            rng.gen_range(r.0..=r.1)
        }
    };
    // sizes[i] = current value size of record i (0 = absent)
    let mut sizes: Vec<u32> = Vec::new();
    let mut live: u64 = 0;
    let (mut writes, mut deletes) = (0u64, 0u64);
    // 1. fill with the "before" sizes
    while live < live_target {
        let s = size_in(&mut rng, p.before);
        let idx = sizes.len() as u64;
        l.write(idx, s)?;
        sizes.push(s as u32);
        live += (key_size + s) as u64;
        writes += 1;
    }
    let mut order: Vec<u64> = (0..sizes.len() as u64).collect();
    order.shuffle(&mut rng);
    // 2. optionally delete a random fraction
    let ndel = (order.len() as f64 * p.delete_fraction) as usize;
    for &idx in &order[..ndel] {
        l.delete(idx)?;
        live -= (key_size as u64) + sizes[idx as usize] as u64;
        sizes[idx as usize] = 0;
        deletes += 1;
    }
    let survivors: Vec<u64> = order[ndel..].to_vec();
    if p.delete_fraction == 0.0 {
        // 3a. overwrite every object with the new size, deleting others to hold live data fixed
        let mut tail = survivors.len();
        let mut i = 0;
        while i < tail {
            let idx = survivors[i];
            let s = size_in(&mut rng, p.after);
            l.write(idx, s)?;
            live = live - sizes[idx as usize] as u64 + s as u64;
            sizes[idx as usize] = s as u32;
            writes += 1;
            i += 1;
            while live > live_target && tail > i {
                tail -= 1;
                let d = survivors[tail];
                l.delete(d)?;
                live -= (key_size as u64) + sizes[d as usize] as u64;
                sizes[d as usize] = 0;
                deletes += 1;
            }
        }
    } else {
        // 3b. write new objects of the new size until live data is back at the target
        while live < live_target {
            let s = size_in(&mut rng, p.after);
            let idx = sizes.len() as u64;
            l.write(idx, s)?;
            sizes.push(s as u32);
            live += (key_size + s) as u64;
            writes += 1;
        }
    }
    l.drain()?;
    std::thread::sleep(Duration::from_millis(300));
    let rss = rss_bytes(pid).context("cannot read server RSS")?;
    if live == 0 {
        bail!("no live data");
    }
    Ok(MemoryResult {
        pattern: p.name.to_string(),
        live_bytes: live,
        live_objects: sizes.iter().filter(|&&s| s > 0).count() as u64,
        rss_baseline_bytes: baseline,
        rss_bytes: rss,
        rss_per_live: rss as f64 / live as f64,
        rss_growth_per_live: rss.saturating_sub(baseline) as f64 / live as f64,
        writes,
        deletes,
        refused: l.refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_known() {
        assert_eq!(pattern("w8").unwrap().after, (5000, 15000));
        assert_eq!(pattern("W2").unwrap().delete_fraction, 0.0);
        assert!(pattern("W9").is_err());
    }
}
