//! Model-based property test: random operation sequences run against the engine and against
//! a `BTreeMap`, and every read is compared. Each case first fills memory to a random level
//! between 50 % and 95 % of what writers can use, so forced cleaning, resizes and `NoSpace`
//! happen at high utilisation.
//!
//! Cases: 10 000 by default (`MODEL_CASES` overrides, e.g. for a longer soak).

mod common;

use common::small_engine;
use faascache_storage::{
    key_hash, Engine, RejectRules, ResizeError, StorageError, TableOptions, Want,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const MEMORY: usize = 160 * 1024;
const KEYS: u8 = 48;

#[derive(Clone, Debug)]
enum Cond {
    None,
    MustExist,
    MustNotExist,
    /// Compare with the model's current version, plus an offset (0 = should succeed).
    VersionIs(u8),
    VersionLe(u8),
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        table: u32,
        key: u8,
        len: u16,
        fill: u8,
        cond: Cond,
        clean: bool,
    },
    Remove {
        table: u32,
        key: u8,
        cond: Cond,
    },
    Read {
        table: u32,
        key: u8,
    },
    Incr {
        table: u32,
        key: u8,
        delta: i16,
    },
    Clean(u8),
    Resize(u16),
    Enumerate {
        table: u32,
        half: bool,
    },
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        6 => Just(Cond::None),
        1 => Just(Cond::MustExist),
        1 => Just(Cond::MustNotExist),
        1 => (0u8..2).prop_map(Cond::VersionIs),
        1 => (0u8..2).prop_map(Cond::VersionLe),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let table = 1u32..3;
    prop_oneof![
        30 => (table.clone(), 0..KEYS, 0u16..1500, any::<u8>(), cond(), any::<bool>())
            .prop_map(|(table, key, len, fill, cond, clean)| Op::Write { table, key, len, fill, cond, clean }),
        8 => (table.clone(), 0..KEYS, cond()).prop_map(|(table, key, cond)| Op::Remove { table, key, cond }),
        20 => (table.clone(), 0..KEYS).prop_map(|(table, key)| Op::Read { table, key }),
        5 => (table.clone(), 0..KEYS, any::<i16>()).prop_map(|(table, key, delta)| Op::Incr { table, key, delta }),
        3 => (0u8..3).prop_map(Op::Clean),
        2 => (96u16..320).prop_map(Op::Resize),
        2 => (table, any::<bool>()).prop_map(|(table, half)| Op::Enumerate { table, half }),
    ]
}

type Model = BTreeMap<(u32, Vec<u8>), (u64, Vec<u8>)>;

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:03}-padding-to-30-bytes").into_bytes()
}

fn rules(c: &Cond, current: Option<u64>) -> RejectRules {
    let v = current.unwrap_or(0);
    match c {
        Cond::None => RejectRules::NONE,
        Cond::MustExist => RejectRules::must_exist(),
        Cond::MustNotExist => RejectRules::must_not_exist(),
        Cond::VersionIs(d) => RejectRules::version_is(v + *d as u64),
        Cond::VersionLe(d) => RejectRules {
            version_le_given: true,
            given_version: v.saturating_sub(*d as u64),
            ..RejectRules::NONE
        },
    }
}

/// The model's answer to reject rules, written independently of the engine's.
fn model_allows(c: &Cond, current: Option<u64>) -> bool {
    match (c, current) {
        (Cond::None, _) => true,
        (Cond::MustExist, cur) => cur.is_some(),
        (Cond::MustNotExist, cur) => cur.is_none(),
        (Cond::VersionIs(_), None) => false,
        (Cond::VersionIs(d), Some(_)) => *d == 0,
        (Cond::VersionLe(_), None) => true,
        // given = v - d: refused when v <= given, i.e. when d == 0.
        (Cond::VersionLe(d), Some(v)) => *d > 0 && v > 0,
    }
}

fn usable(e: &Engine) -> usize {
    // Budget less the cleaner's reserve (two 16 KiB segments) and one head segment.
    e.stats().budget_bytes.saturating_sub(48 * 1024)
}

/// A write that may meet a full log: retried after cleaning, as a client retries `NoSpace`.
fn with_retry<T>(
    e: &Engine,
    mut f: impl FnMut() -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    for _ in 0..4 {
        match f() {
            Err(StorageError::NoSpace) => {
                e.clean();
            }
            other => return other,
        }
    }
    let r = f();
    if matches!(r, Err(StorageError::NoSpace)) {
        // Persistent NoSpace is only acceptable when live data really fills memory.
        let s = e.stats();
        assert!(
            s.live_bytes * 2 > usable(e),
            "NoSpace with only {} live bytes of {} usable: {s:?}",
            s.live_bytes,
            usable(e)
        );
    }
    r
}

fn check_all(e: &Engine, m: &Model) {
    for ((t, k), (ver, val)) in m {
        let mut out = Vec::new();
        let got = e.read(*t, k, &RejectRules::NONE, &mut out);
        assert_eq!(got, Ok(*ver), "read of {:?}", String::from_utf8_lossy(k));
        assert_eq!(&out, val);
    }
    let s = e.stats();
    assert_eq!(s.objects as usize, m.len());
}

fn run(fill_level: f64, ops: Vec<Op>) {
    let (e, clock) = small_engine(MEMORY);
    e.create_table(1, TableOptions::default()).unwrap();
    e.create_table(2, TableOptions::default()).unwrap();
    let mut m = fill(&e, fill_level);
    check_all(&e, &m);
    for op in ops {
        clock.advance(1);
        apply(&e, &mut m, op);
    }
    check_all(&e, &m);
}

/// Fill phase: overwrite keys until live data reaches `fill_level` of what writers can use.
fn fill(e: &Engine, fill_level: f64) -> Model {
    let mut m: Model = BTreeMap::new();
    let target = (usable(e) as f64 * fill_level) as usize;
    let per_key = target / (KEYS as usize * 2);
    'fill: for round in 0..3u8 {
        for t in 1..3u32 {
            for k in 0..KEYS {
                let len = per_key.saturating_sub(60).max(1);
                let v = vec![round ^ k; len];
                match with_retry(e, || e.write(t, &key(k), &v, &RejectRules::NONE)) {
                    Ok(ver) => {
                        m.insert((t, key(k)), (ver, v));
                    }
                    Err(StorageError::NoSpace) => break 'fill,
                    Err(x) => panic!("{x}"),
                }
            }
        }
    }
    m
}

/// Run `op` on the engine and the model, comparing the outcomes.
fn apply(e: &Engine, m: &mut Model, op: Op) {
    match op {
        Op::Write {
            table,
            key: k,
            len,
            fill,
            cond,
            clean,
        } => {
            let mk = (table, key(k));
            let cur = m.get(&mk).map(|x| x.0);
            let v = vec![fill; len as usize];
            let r = rules(&cond, cur);
            let res = with_retry(e, || {
                if clean {
                    e.write_clean(table, &mk.1, &v, &r)
                } else {
                    e.write(table, &mk.1, &v, &r)
                }
            });
            match res {
                Ok(ver) => {
                    assert!(
                        model_allows(&cond, cur),
                        "{cond:?} on {cur:?} should refuse"
                    );
                    assert!(ver > cur.unwrap_or(0));
                    m.insert(mk, (ver, v));
                }
                Err(StorageError::NoSpace) => {}
                Err(err) => assert!(!model_allows(&cond, cur), "{cond:?} on {cur:?}: {err}"),
            }
        }
        Op::Remove {
            table,
            key: k,
            cond,
        } => {
            let mk = (table, key(k));
            let cur = m.get(&mk).map(|x| x.0);
            match with_retry(e, || e.remove(table, &mk.1, &rules(&cond, cur))) {
                Ok(removed) => {
                    assert!(model_allows(&cond, cur));
                    assert_eq!(removed, cur);
                    m.remove(&mk);
                }
                Err(StorageError::NoSpace) => {}
                Err(err) => assert!(!model_allows(&cond, cur), "{err}"),
            }
        }
        Op::Read { table, key: k } => {
            let mut out = Vec::new();
            let got = e.read(table, &key(k), &RejectRules::NONE, &mut out);
            match m.get(&(table, key(k))) {
                Some((ver, val)) => {
                    assert_eq!(got, Ok(*ver));
                    assert_eq!(&out, val);
                }
                None => assert_eq!(got, Err(StorageError::ObjectDoesntExist)),
            }
        }
        Op::Incr {
            table,
            key: k,
            delta,
        } => {
            let mk = (table, key(k));
            let cur = m.get(&mk).cloned();
            let res = with_retry(e, || {
                e.increment_i64(table, &mk.1, delta as i64, &RejectRules::NONE)
            });
            match (res, cur) {
                (Err(StorageError::NoSpace), _) => {}
                (Ok((n, ver)), None) => {
                    assert_eq!(n, delta as i64);
                    m.insert(mk, (ver, n.to_le_bytes().to_vec()));
                }
                (Ok((n, ver)), Some((_, old))) => {
                    let old = i64::from_le_bytes(old.try_into().expect("model says 8 bytes"));
                    assert_eq!(n, old + delta as i64);
                    m.insert(mk, (ver, n.to_le_bytes().to_vec()));
                }
                (Err(StorageError::NotANumber { len }), Some((_, old))) => {
                    assert_eq!(len, old.len())
                }
                (Err(x), c) => panic!("increment on {c:?}: {x}"),
            }
        }
        Op::Clean(w) => {
            let want = [Want::Auto, Want::Compact, Want::Combined][w as usize];
            e.clean_with(want);
        }
        Op::Resize(kib) => {
            let before = e.stats().budget_bytes;
            match e.resize(kib as usize * 1024) {
                Ok(()) => assert_eq!(e.stats().budget_bytes, kib as usize * 1024),
                Err(ResizeError::LiveDataTooLarge { .. }) => {
                    assert_eq!(e.stats().budget_bytes, before)
                }
                Err(ResizeError::BelowMinimum { .. }) => assert!(kib < 64),
                Err(x) => panic!("{x}"),
            }
        }
        Op::Enumerate { table, half } => check_enumerate(e, m, table, half),
    }
}

/// Enumerate `table` (all of it, or the lower half of the hash space) and compare with the model.
fn check_enumerate(e: &Engine, m: &Model, table: u32, half: bool) {
    let range = if half { 0..=u64::MAX / 2 } else { 0..=u64::MAX };
    let mut got = BTreeMap::new();
    let mut cursor = None;
    loop {
        let b = e.enumerate(table, range.clone(), cursor, 4096).unwrap();
        for o in b.objects {
            assert!(got.insert(o.key, (o.version, o.value)).is_none());
        }
        match b.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: BTreeMap<Vec<u8>, (u64, Vec<u8>)> = m
        .iter()
        .filter(|((t, k), _)| *t == table && range.contains(&key_hash(k)))
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got, want);
}

fn cases() -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap_model(fill in 0.5f64..0.95, ops in proptest::collection::vec(op(), 1..60)) {
        run(fill, ops);
    }
}
