//! Operation generators for the tests (ClusterPerf-style and YCSB core workloads) and the
//! preloader. One key/value generator for every driver.

use crate::driver::{ClientConfig, Driver, Op, Reply};
use crate::keys::{make_key, make_value, KeyChooser, Zipfian};
use crate::load::{OpClass, OpGen, RecordCount};
use crate::net::PollMode;
use anyhow::{bail, Result};
use rand::rngs::SmallRng;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Operation mix in fractions (they need not sum to exactly 1; they are normalised).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Mix {
    /// reads
    pub read: f64,
    /// overwrites
    pub update: f64,
    /// inserts of new records
    pub insert: f64,
    /// short scans
    pub scan: f64,
    /// read-modify-writes
    pub rmw: f64,
}

/// A YCSB core workload.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ycsb {
    /// A..F
    pub name: char,
    /// operation mix
    pub mix: Mix,
    /// request distribution: "zipfian" or "latest"
    pub distribution: &'static str,
}

impl Ycsb {
    /// The YCSB core workload definitions (workloads/workloada..f).
    pub fn core(name: char) -> Option<Self> {
        let m = |read, update, insert, scan, rmw| Mix {
            read,
            update,
            insert,
            scan,
            rmw,
        };
        let (mix, distribution) = match name.to_ascii_uppercase() {
            'A' => (m(0.5, 0.5, 0.0, 0.0, 0.0), "zipfian"),
            'B' => (m(0.95, 0.05, 0.0, 0.0, 0.0), "zipfian"),
            'C' => (m(1.0, 0.0, 0.0, 0.0, 0.0), "zipfian"),
            'D' => (m(0.95, 0.0, 0.05, 0.0, 0.0), "latest"),
            'E' => (m(0.0, 0.0, 0.05, 0.95, 0.0), "zipfian"),
            'F' => (m(0.5, 0.0, 0.0, 0.0, 0.5), "zipfian"),
            _ => return None,
        };
        Some(Self {
            name: name.to_ascii_uppercase(),
            mix,
            distribution,
        })
    }
}

/// YCSB E: scan lengths are uniform in 1..=100.
pub const YCSB_MAX_SCAN: usize = 100;

/// What a generator emits.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// single-key reads
    Read,
    /// single-key writes
    Write,
    /// multi-reads of `n` distinct records
    MultiRead(usize),
    /// multi-writes of `n` distinct records
    MultiWrite(usize),
    /// a YCSB mix
    Ycsb(Mix),
    /// echo of `value_size` bytes
    Echo,
}

/// The generator shared by all tests.
#[derive(Debug)]
pub struct KvGen {
    pattern: Pattern,
    chooser: KeyChooser,
    key_size: usize,
    /// explicit key (readVaryingKeyLength): used instead of generated keys
    fixed_key: Option<Vec<u8>>,
    records: RecordCount,
    key: Vec<u8>,
    value: Vec<u8>,
    keys: Vec<Vec<u8>>,
    /// YCSB F: the key whose write half is due next
    rmw_pending: Option<u64>,
}

impl KvGen {
    /// New generator. `records` is the shared count of existing records (records 0..count).
    pub fn new(
        pattern: Pattern,
        chooser: KeyChooser,
        key_size: usize,
        value_size: usize,
        records: RecordCount,
        seed: u64,
    ) -> Self {
        let mut value = Vec::new();
        make_value(seed, value_size, &mut value);
        Self {
            pattern,
            chooser,
            key_size,
            fixed_key: None,
            records,
            key: Vec::with_capacity(key_size),
            value,
            keys: Vec::new(),
            rmw_pending: None,
        }
    }

    /// Always use this key (single-object tests with arbitrary key bytes).
    pub fn with_fixed_key(mut self, key: Vec<u8>) -> Self {
        self.fixed_key = Some(key);
        self
    }

    fn pick(&mut self, rng: &mut SmallRng) -> Result<()> {
        if let Some(k) = &self.fixed_key {
            self.key.clone_from(k);
            return Ok(());
        }
        let n = self.records.load(Ordering::Relaxed);
        let i = self.chooser.next(rng, n);
        make_key(i, self.key_size, &mut self.key)?;
        Ok(())
    }

    fn fill_range(&mut self, first: u64, n: usize, total: u64) -> Result<()> {
        self.keys.resize_with(n, Vec::new);
        for j in 0..n {
            let idx = (first + j as u64) % total.max(1);
            make_key(idx, self.key_size, &mut self.keys[j])?;
        }
        Ok(())
    }
}

impl OpGen for KvGen {
    fn next(&mut self, rng: &mut SmallRng) -> Result<(OpClass, Op<'_>)> {
        match self.pattern.clone() {
            Pattern::Read => {
                self.pick(rng)?;
                Ok((OpClass::Read, Op::Get { key: &self.key }))
            }
            Pattern::Write => {
                self.pick(rng)?;
                Ok((
                    OpClass::Update,
                    Op::Set {
                        key: &self.key,
                        value: &self.value,
                    },
                ))
            }
            Pattern::Echo => Ok((
                OpClass::Echo,
                Op::Echo {
                    payload: &self.value,
                },
            )),
            Pattern::MultiRead(n) | Pattern::MultiWrite(n) => {
                let total = self.records.load(Ordering::Relaxed);
                if (n as u64) > total {
                    bail!("multi-op of {n} objects needs at least {n} records (--keys)");
                }
                let first = self.chooser.next(rng, total);
                self.fill_range(first, n, total)?;
                if matches!(self.pattern, Pattern::MultiRead(_)) {
                    Ok((OpClass::Read, Op::MultiGet { keys: &self.keys }))
                } else {
                    Ok((
                        OpClass::Update,
                        Op::MultiSet {
                            keys: &self.keys,
                            value: &self.value,
                        },
                    ))
                }
            }
            Pattern::Ycsb(mix) => {
                if let Some(i) = self.rmw_pending.take() {
                    make_key(i, self.key_size, &mut self.key)?;
                    return Ok((
                        OpClass::ReadModifyWrite,
                        Op::Set {
                            key: &self.key,
                            value: &self.value,
                        },
                    ));
                }
                let total = mix.read + mix.update + mix.insert + mix.scan + mix.rmw;
                let mut u = rng.gen::<f64>() * total;
                let n = self.records.load(Ordering::Relaxed);
                if u < mix.read {
                    self.pick(rng)?;
                    return Ok((OpClass::Read, Op::Get { key: &self.key }));
                }
                u -= mix.read;
                if u < mix.update {
                    self.pick(rng)?;
                    return Ok((
                        OpClass::Update,
                        Op::Set {
                            key: &self.key,
                            value: &self.value,
                        },
                    ));
                }
                u -= mix.update;
                if u < mix.insert {
                    let i = self.records.fetch_add(1, Ordering::Relaxed);
                    make_key(i, self.key_size, &mut self.key)?;
                    return Ok((
                        OpClass::Insert,
                        Op::Set {
                            key: &self.key,
                            value: &self.value,
                        },
                    ));
                }
                u -= mix.insert;
                if u < mix.scan {
                    let len = rng.gen_range(1..=YCSB_MAX_SCAN).min(n.max(1) as usize);
                    let first = self.chooser.next(rng, n);
                    self.fill_range(first, len, n)?;
                    return Ok((OpClass::Scan, Op::MultiGet { keys: &self.keys }));
                }
                // read-modify-write: the read now, the write as the next op
                let i = self.chooser.next(rng, n);
                self.rmw_pending = Some(i);
                make_key(i, self.key_size, &mut self.key)?;
                Ok((OpClass::Read, Op::Get { key: &self.key }))
            }
        }
    }
}

/// Builds the key chooser for a distribution name.
pub fn chooser(distribution: &str, records: u64, theta: f64) -> Result<KeyChooser> {
    Ok(match distribution {
        "uniform" => KeyChooser::Uniform(records.max(1)),
        "zipfian" => KeyChooser::for_theta(records, theta)?,
        "latest" => KeyChooser::Latest(Zipfian::new(records.max(2), theta)?),
        "single" => KeyChooser::Single(0),
        other => bail!("unknown key distribution {other:?}"),
    })
}

/// Writes records `0..n` (`key_size`-byte keys, `value_size`-byte values) with pipelined sets.
pub fn preload(
    driver: &dyn Driver,
    n: u64,
    key_size: usize,
    value_size: usize,
    poll: PollMode,
) -> Result<()> {
    let mut c = driver.connect(&ClientConfig {
        poll,
        timeout: Duration::from_secs(30),
    })?;
    let mut value = Vec::new();
    make_value(0xfeed, value_size, &mut value);
    let mut key = Vec::new();
    let batch = 256u64;
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        for j in i..end {
            make_key(j, key_size, &mut key)?;
            c.send(&Op::Set {
                key: &key,
                value: &value,
            })?;
        }
        c.flush()?;
        for _ in i..end {
            if let Some(Reply::Error(e)) = c.recv(None)? {
                bail!("preload: server refused a write: {e}");
            }
        }
        i = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn ycsb_definitions() {
        let a = Ycsb::core('a').unwrap();
        assert_eq!(a.mix.read, 0.5);
        assert_eq!(a.mix.update, 0.5);
        assert_eq!(Ycsb::core('D').unwrap().distribution, "latest");
        assert_eq!(Ycsb::core('E').unwrap().mix.scan, 0.95);
        assert_eq!(Ycsb::core('F').unwrap().mix.rmw, 0.5);
        assert!(Ycsb::core('G').is_none());
    }

    #[test]
    fn generators_emit_valid_ops() {
        let mut rng = SmallRng::seed_from_u64(1);
        let recs: RecordCount = Arc::new(AtomicU64::new(1000));
        let mut g = KvGen::new(
            Pattern::Read,
            KeyChooser::Uniform(1000),
            30,
            100,
            recs.clone(),
            1,
        );
        for _ in 0..100 {
            match g.next(&mut rng).unwrap().1 {
                Op::Get { key } => assert_eq!(key.len(), 30),
                o => panic!("{o:?}"),
            }
        }
        let mut g = KvGen::new(
            Pattern::MultiRead(10),
            KeyChooser::Uniform(1000),
            30,
            100,
            recs.clone(),
            1,
        );
        let (_, op) = g.next(&mut rng).unwrap();
        assert_eq!(op.objects(), 10);
        let mut g = KvGen::new(
            Pattern::MultiWrite(2000),
            KeyChooser::Uniform(1000),
            30,
            100,
            recs.clone(),
            1,
        );
        assert!(g.next(&mut rng).is_err());

        let e = Ycsb::core('E').unwrap();
        let mut g = KvGen::new(
            Pattern::Ycsb(e.mix),
            chooser("zipfian", 1000, 0.99).unwrap(),
            30,
            100,
            recs.clone(),
            1,
        );
        let (mut scans, mut inserts) = (0, 0);
        for _ in 0..2000 {
            match g.next(&mut rng).unwrap() {
                (OpClass::Scan, Op::MultiGet { keys }) => {
                    scans += 1;
                    assert!(!keys.is_empty() && keys.len() <= YCSB_MAX_SCAN);
                }
                (OpClass::Insert, Op::Set { .. }) => inserts += 1,
                other => panic!("{:?}", other.0),
            }
        }
        assert!(scans > 1800 && inserts > 40, "{scans} {inserts}");
        assert!(recs.load(Ordering::Relaxed) > 1000);

        // F: every read of an RMW is followed by the write of the same key
        let f = Ycsb::core('F').unwrap();
        let mut g = KvGen::new(
            Pattern::Ycsb(f.mix),
            chooser("zipfian", 100, 0.99).unwrap(),
            8,
            10,
            recs,
            2,
        );
        let mut last_read: Option<Vec<u8>> = None;
        for _ in 0..1000 {
            let (c, op) = g.next(&mut rng).unwrap();
            match (c, op) {
                (OpClass::ReadModifyWrite, Op::Set { key, .. }) => {
                    assert_eq!(Some(key.to_vec()), last_read.take());
                }
                (OpClass::Read, Op::Get { key }) => last_read = Some(key.to_vec()),
                _ => panic!("unexpected op"),
            }
        }
    }
}
