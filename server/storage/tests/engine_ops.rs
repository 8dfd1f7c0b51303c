//! Behaviour of every engine operation, including bad input and memory pressure.

mod common;

use common::{small_config, small_engine};
use faascache_storage::format::{Entry, SegmentIterator};
use faascache_storage::{
    key_hash, Engine, EngineConfig, RejectRules, ResizeError, StorageError, TableOptions, Want,
    WriteOp,
};
use std::collections::BTreeMap;

fn read(e: &Engine, t: u32, k: &[u8]) -> Result<(u64, Vec<u8>), StorageError> {
    let mut v = Vec::new();
    e.read(t, k, &RejectRules::NONE, &mut v).map(|ver| (ver, v))
}

#[test]
fn write_read_overwrite_remove() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let v1 = e.write(1, b"alpha", b"one", &RejectRules::NONE).unwrap();
    assert_eq!(read(&e, 1, b"alpha").unwrap(), (v1, b"one".to_vec()));
    let v2 = e.write(1, b"alpha", b"two!", &RejectRules::NONE).unwrap();
    assert!(v2 > v1);
    assert_eq!(read(&e, 1, b"alpha").unwrap(), (v2, b"two!".to_vec()));
    assert_eq!(e.remove(1, b"alpha", &RejectRules::NONE).unwrap(), Some(v2));
    assert_eq!(read(&e, 1, b"alpha"), Err(StorageError::ObjectDoesntExist));
    assert_eq!(e.remove(1, b"alpha", &RejectRules::NONE).unwrap(), None);
    // Re-created: a fresh, larger version, never a reused one.
    let v3 = e.write(1, b"alpha", b"three", &RejectRules::NONE).unwrap();
    assert!(v3 > v2);
    // Empty values are fine.
    e.write(1, b"empty", b"", &RejectRules::NONE).unwrap();
    assert_eq!(read(&e, 1, b"empty").unwrap().1, b"");
}

#[test]
fn stat_looks_without_copying_the_value() {
    let (e, _) = small_engine(4 << 20);
    e.create_table(1, TableOptions { evictable: true }).unwrap();
    assert_eq!(e.stat(1, b"none").unwrap(), None);
    let big: Vec<u8> = (0..6_000u32).map(|i| i as u8).collect();
    let v = e.write(1, b"big", &big, &RejectRules::NONE).unwrap();
    let st = e.stat(1, b"big").unwrap().unwrap();
    assert_eq!((st.version, st.value_len, st.clean), (v, big.len(), false));
    let c = e
        .write_clean(1, b"small", b"ab", &RejectRules::NONE)
        .unwrap();
    let st = e.stat(1, b"small").unwrap().unwrap();
    assert_eq!((st.version, st.value_len, st.clean), (c, 2, true));
    assert!(e.stat(9, b"big").is_err(), "unknown table");
}

#[test]
fn tables_are_separate_namespaces() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    e.create_table(2, TableOptions::default()).unwrap();
    assert_eq!(
        e.create_table(2, TableOptions::default()),
        Err(StorageError::TableExists(2))
    );
    e.write(1, b"k", b"in one", &RejectRules::NONE).unwrap();
    e.write(2, b"k", b"in two", &RejectRules::NONE).unwrap();
    assert_eq!(read(&e, 1, b"k").unwrap().1, b"in one");
    assert_eq!(read(&e, 2, b"k").unwrap().1, b"in two");
    assert_eq!(e.drop_table(1).unwrap(), 1);
    assert_eq!(read(&e, 1, b"k"), Err(StorageError::UnknownTable(1)));
    assert_eq!(read(&e, 2, b"k").unwrap().1, b"in two");
    assert_eq!(e.tables(), vec![2]);
}

#[test]
fn reject_rules_follow_ramcloud() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let r = RejectRules::must_exist();
    assert_eq!(
        e.write(1, b"k", b"v", &r),
        Err(StorageError::ObjectDoesntExist)
    );
    let v = e
        .write(1, b"k", b"v", &RejectRules::must_not_exist())
        .unwrap();
    assert_eq!(
        e.write(1, b"k", b"w", &RejectRules::must_not_exist()),
        Err(StorageError::ObjectExists { version: v })
    );
    // Compare-and-swap.
    assert_eq!(
        e.write(1, b"k", b"w", &RejectRules::version_is(v + 100)),
        Err(StorageError::WrongVersion { current: v })
    );
    let v2 = e.write(1, b"k", b"w", &RejectRules::version_is(v)).unwrap();
    let le = RejectRules {
        version_le_given: true,
        given_version: v2,
        ..RejectRules::NONE
    };
    assert_eq!(
        e.remove(1, b"k", &le),
        Err(StorageError::WrongVersion { current: v2 })
    );
    let le = RejectRules {
        version_le_given: true,
        given_version: v2 - 1,
        ..RejectRules::NONE
    };
    let mut out = Vec::new();
    assert_eq!(e.read(1, b"k", &le, &mut out), Ok(v2));
    // A refused read appends nothing.
    let mut out = Vec::new();
    assert!(e
        .read(1, b"k", &RejectRules::version_is(1), &mut out)
        .is_err());
    assert!(out.is_empty());
    // Version rules do not apply to a missing object.
    let ne = RejectRules {
        version_ne_given: true,
        given_version: 5,
        ..RejectRules::NONE
    };
    e.write(1, b"new", b"x", &ne).unwrap();
}

#[test]
fn increments_create_add_and_refuse_non_numbers() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    assert_eq!(
        e.increment_i64(1, b"n", 5, &RejectRules::NONE).unwrap().0,
        5
    );
    let (v, ver) = e.increment_i64(1, b"n", -7, &RejectRules::NONE).unwrap();
    assert_eq!(v, -2);
    assert_eq!(
        read(&e, 1, b"n").unwrap(),
        (ver, (-2i64).to_le_bytes().to_vec())
    );
    e.write(1, b"n", &i64::MAX.to_le_bytes(), &RejectRules::NONE)
        .unwrap();
    assert_eq!(
        e.increment_i64(1, b"n", 1, &RejectRules::NONE),
        Err(StorageError::Overflow)
    );
    assert_eq!(
        e.increment_f64(1, b"f", 1.5, &RejectRules::NONE).unwrap().0,
        1.5
    );
    assert_eq!(
        e.increment_f64(1, b"f", 0.25, &RejectRules::NONE)
            .unwrap()
            .0,
        1.75
    );
    e.write(1, b"s", b"text", &RejectRules::NONE).unwrap();
    assert_eq!(
        e.increment_i64(1, b"s", 1, &RejectRules::NONE),
        Err(StorageError::NotANumber { len: 4 })
    );
    assert_eq!(
        e.increment_i64(1, b"absent", 1, &RejectRules::must_exist()),
        Err(StorageError::ObjectDoesntExist)
    );
}

#[test]
fn bad_input_is_a_typed_error_with_a_message() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let err = e.write(9, b"k", b"v", &RejectRules::NONE).unwrap_err();
    assert_eq!(err, StorageError::UnknownTable(9));
    assert!(err.to_string().contains("table 9 does not exist"));
    assert_eq!(
        e.write(1, b"", b"v", &RejectRules::NONE),
        Err(StorageError::EmptyKey)
    );
    let big_key = vec![1u8; 65536];
    let err = e.write(1, &big_key, b"v", &RejectRules::NONE).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::KeyTooLarge {
                len: 65536,
                max: 65535
            }
        ),
        "{err}"
    );
    // This small engine's segments (16 KiB) cap values at what half a segment holds.
    let max = e.max_value_len(1);
    let err = e
        .write(1, b"k", &vec![0; max + 1], &RejectRules::NONE)
        .unwrap_err();
    assert!(matches!(err, StorageError::ValueTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("too large"));
    e.write(1, b"k", &vec![7; max], &RejectRules::NONE).unwrap();
    // Nothing stored was lost by the refusals.
    assert_eq!(read(&e, 1, b"k").unwrap().1, vec![7; max]);
    let mut out = Vec::new();
    assert_eq!(
        e.read(1, b"", &RejectRules::NONE, &mut out),
        Err(StorageError::EmptyKey)
    );
}

#[test]
fn default_engine_takes_a_one_mib_value_and_a_max_key() {
    let mut cfg = EngineConfig::with_memory(64 << 20);
    cfg.background_cleaner = false;
    let e = Engine::new(cfg).unwrap();
    e.create_table(1, TableOptions::default()).unwrap();
    let key = vec![b'k'; 65535];
    let value = vec![3u8; 1 << 20];
    e.write(1, &key, &value, &RejectRules::NONE).unwrap();
    assert_eq!(read(&e, 1, &key).unwrap().1, value);
    assert!(matches!(
        e.write(1, b"k", &vec![0; (1 << 20) + 1], &RejectRules::NONE),
        Err(StorageError::ValueTooLarge { max: 1048576, .. })
    ));
}

#[test]
fn bad_configurations_are_refused_with_reasons() {
    let mut c = small_config(256 * 1024);
    c.seglet_bytes = 1000;
    assert!(Engine::new(c)
        .unwrap_err()
        .to_string()
        .contains("power of two"));
    let mut c = small_config(256 * 1024);
    c.memory_bytes = 1024;
    assert!(Engine::new(c)
        .unwrap_err()
        .to_string()
        .contains("too small"));
}

#[test]
fn multi_operations_return_one_result_each() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let ops = [
        WriteOp {
            table: 1,
            key: b"a",
            value: b"1",
            rules: RejectRules::NONE,
        },
        WriteOp {
            table: 2,
            key: b"b",
            value: b"2",
            rules: RejectRules::NONE,
        },
        WriteOp {
            table: 1,
            key: b"c",
            value: b"3",
            rules: RejectRules::NONE,
        },
    ];
    let r = e.multi_write(&ops);
    assert!(r[0].is_ok() && r[2].is_ok());
    assert_eq!(r[1], Err(StorageError::UnknownTable(2)));
    let got = e.multi_read(&[(1, b"a"), (1, b"zz"), (1, b"c")]);
    assert_eq!(got[0].as_ref().unwrap().1, b"1");
    assert_eq!(got[1], Err(StorageError::ObjectDoesntExist));
    assert_eq!(got[2].as_ref().unwrap().1, b"3");
    let rm = e.multi_remove(&[(1, b"a"), (1, b"zz")]);
    assert!(rm[0].as_ref().unwrap().is_some());
    assert_eq!(rm[1], Ok(None));
}

#[test]
fn enumerate_returns_each_object_once_across_batches_and_ranges() {
    let (e, _) = small_engine(512 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    e.create_table(2, TableOptions::default()).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..300u32 {
        let k = format!("key-{i}");
        e.write(1, k.as_bytes(), &i.to_le_bytes(), &RejectRules::NONE)
            .unwrap();
        e.write(2, k.as_bytes(), b"other table", &RejectRules::NONE)
            .unwrap();
        want.insert(k.into_bytes(), i.to_le_bytes().to_vec());
    }
    // Whole range in small batches.
    let mut got = BTreeMap::new();
    let mut cursor = None;
    let mut batches = 0;
    loop {
        let b = e.enumerate(1, 0..=u64::MAX, cursor, 200).unwrap();
        batches += 1;
        for o in b.objects {
            assert!(
                got.insert(o.key, o.value).is_none(),
                "object returned twice"
            );
        }
        match b.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(batches > 5);
    assert_eq!(got, want);
    // Two halves of the hash space partition the table (as two tablets would).
    let mid = u64::MAX / 2;
    let mut n = 0;
    for r in [0..=mid, mid + 1..=u64::MAX] {
        let (lo, hi) = (*r.start(), *r.end());
        let mut cursor = None;
        loop {
            let b = e.enumerate(1, r.clone(), cursor, 1 << 20).unwrap();
            for o in &b.objects {
                let h = key_hash(&o.key);
                assert!(h >= lo && h <= hi);
            }
            n += b.objects.len();
            match b.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    assert_eq!(n, 300);
}

#[test]
fn full_memory_is_a_retryable_error_and_cleaning_makes_room() {
    let (e, _) = small_engine(128 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let value = vec![5u8; 500];
    // Overwrite a handful of keys until the log is full of dead versions.
    let mut i = 0u32;
    let err = loop {
        let k = format!("k{}", i % 8);
        match e.write(1, k.as_bytes(), &value, &RejectRules::NONE) {
            Ok(_) => i += 1,
            Err(err) => break err,
        }
        assert!(i < 100_000, "never filled");
    };
    assert_eq!(err, StorageError::NoSpace);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("retry"));
    // Cleaning frees the dead versions; writes succeed again and nothing was lost.
    let r = e.clean();
    assert!(r.seglets_freed > 0, "{r:?}");
    e.write(1, b"k0", b"after", &RejectRules::NONE).unwrap();
    assert_eq!(read(&e, 1, b"k0").unwrap().1, b"after");
    for j in 1..8 {
        assert_eq!(read(&e, 1, format!("k{j}").as_bytes()).unwrap().1, value);
    }
}

#[test]
fn truly_full_memory_refuses_writes_without_losing_data() {
    let (e, _) = small_engine(128 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let mut stored = Vec::new();
    for i in 0.. {
        let k = format!("unique-{i}");
        match e.write(1, k.as_bytes(), &[i as u8; 300], &RejectRules::NONE) {
            Ok(_) => stored.push((k, i as u8)),
            Err(StorageError::NoSpace) => {
                // All data is live: cleaning cannot help, and says so by freeing nothing.
                let r = e.clean();
                if e.write(1, k.as_bytes(), &[i as u8; 300], &RejectRules::NONE)
                    .is_err()
                {
                    assert!(r.seglets_freed <= 2, "{r:?}");
                    break;
                }
                stored.push((k, i as u8));
            }
            Err(other) => panic!("{other}"),
        }
    }
    for (k, b) in stored {
        assert_eq!(read(&e, 1, k.as_bytes()).unwrap().1, vec![b; 300]);
    }
}

#[test]
fn both_cleaner_levels_preserve_every_object_and_tombstones_die() {
    let (e, clock) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let mut model = BTreeMap::new();
    let mut removes = 0;
    for round in 0..20u32 {
        clock.advance(10);
        for i in 0..40u32 {
            let k = format!("obj{i}");
            if (i + round) % 7 == 0 {
                if e.remove(1, k.as_bytes(), &RejectRules::NONE)
                    .unwrap()
                    .is_some()
                {
                    removes += 1;
                }
                model.remove(&k);
            } else {
                let v = vec![(i + round) as u8; 100 + (i as usize * 13) % 300];
                loop {
                    match e.write(1, k.as_bytes(), &v, &RejectRules::NONE) {
                        Ok(_) => break,
                        Err(StorageError::NoSpace) => {
                            e.clean();
                        }
                        Err(x) => panic!("{x}"),
                    }
                }
                model.insert(k, v);
            }
        }
        let want = if round % 2 == 0 {
            Want::Compact
        } else {
            Want::Combined
        };
        e.clean_with(want);
        for (k, v) in &model {
            assert_eq!(
                &read(&e, 1, k.as_bytes()).unwrap().1,
                v,
                "after round {round}"
            );
        }
    }
    let s = e.stats();
    assert!(s.cleaner.compactions > 0 && s.cleaner.combined > 0, "{s:?}");
    assert_eq!(s.objects as usize, model.len());
    // Every segment in memory is a valid log segment. Tombstones die once the segment of
    // the object they kill has left the log, so most of them are gone by now. (One whose
    // target is cleaned in the same pass is kept until a later pass: conservative.)
    let count_tombstones = |e: &Engine| {
        let mut n = 0;
        for (id, img, cert) in &e.segment_images() {
            let mut it = SegmentIterator::new(img, Some(*cert)).unwrap();
            assert_eq!(it.header().segment_id, *id);
            while let Some(entry) = it.next() {
                if let (_, Entry::Tombstone(_)) = entry.unwrap() {
                    n += 1;
                }
            }
        }
        n
    };
    for _ in 0..4 {
        e.clean_with(Want::Combined);
    }
    let left = count_tombstones(&e);
    assert!(
        removes > 50 && left * 2 < removes,
        "{left} of {removes} tombstones still in the log"
    );
}

#[test]
fn newest_head_digest_names_the_whole_log() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    for i in 0..400u32 {
        e.write(
            1,
            format!("k{}", i % 50).as_bytes(),
            &[1; 200],
            &RejectRules::NONE,
        )
        .unwrap();
    }
    e.clean_with(Want::Combined);
    let images = e.segment_images();
    let ids: Vec<u64> = images.iter().map(|(id, _, _)| *id).collect();
    // The head is the segment with the highest id holding a digest.
    let mut newest = None;
    for (id, img, cert) in &images {
        let mut it = SegmentIterator::new(img, Some(*cert)).unwrap();
        while let Some(Ok((_, entry))) = it.next() {
            if let Entry::LogDigest(d) = entry {
                newest = Some((*id, d));
            }
        }
    }
    let (_, digest) = newest.expect("a digest");
    let mut d = digest.clone();
    d.sort_unstable();
    assert_eq!(d, ids, "digest {digest:?} vs segments in memory {ids:?}");
}

#[test]
fn cache_tables_evict_clean_objects_only() {
    let (e, _) = small_engine(128 * 1024);
    e.create_table(1, TableOptions { evictable: true }).unwrap();
    e.create_table(2, TableOptions::default()).unwrap();
    // Dirty data in both tables, then many clean cache fills.
    for i in 0..20u32 {
        e.write(
            1,
            format!("dirty{i}").as_bytes(),
            &[1; 200],
            &RejectRules::NONE,
        )
        .unwrap();
        e.write(
            2,
            format!("plain{i}").as_bytes(),
            &[2; 200],
            &RejectRules::NONE,
        )
        .unwrap();
    }
    // Far more clean fills than memory holds: each succeeds, at worst after a cleaning pass.
    for i in 0..2000u32 {
        let k = format!("clean{i}");
        let mut tries = 0;
        while let Err(err) = e.write_clean(1, k.as_bytes(), &[3; 200], &RejectRules::NONE) {
            assert_eq!(err, StorageError::NoSpace);
            e.clean();
            tries += 1;
            assert!(tries < 5, "cache fill {i} kept failing");
        }
    }
    let s = e.stats();
    assert!(s.cleaner.evicted > 0, "{s:?}");
    for i in 0..20u32 {
        assert_eq!(
            read(&e, 1, format!("dirty{i}").as_bytes()).unwrap().1,
            vec![1; 200]
        );
        assert_eq!(
            read(&e, 2, format!("plain{i}").as_bytes()).unwrap().1,
            vec![2; 200]
        );
        assert_eq!(
            e.is_dirty(1, format!("dirty{i}").as_bytes()).unwrap(),
            Some(true)
        );
    }
    // Write-back marks an object clean only at the version that was written back.
    let v = e.write(1, b"wb", b"x", &RejectRules::NONE).unwrap();
    assert!(!e.mark_clean(1, b"wb", v + 1).unwrap());
    assert!(e.mark_clean(1, b"wb", v).unwrap());
    assert_eq!(e.is_dirty(1, b"wb").unwrap(), Some(false));
}

#[test]
fn resize_grows_shrinks_and_refuses_when_data_does_not_fit() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    for i in 0..100u32 {
        for _ in 0..4 {
            e.write(
                1,
                format!("k{i}").as_bytes(),
                &[i as u8; 300],
                &RejectRules::NONE,
            )
            .unwrap();
        }
    }
    e.resize(512 * 1024).unwrap();
    assert_eq!(e.stats().budget_bytes, 512 * 1024);
    // About 35 KiB live: shrinking to 128 KiB works after cleaning away the dead versions.
    e.resize(128 * 1024).unwrap();
    assert_eq!(e.stats().budget_bytes, 128 * 1024);
    assert!(e.stats().allocated_bytes <= 128 * 1024);
    for i in 0..100u32 {
        assert_eq!(
            read(&e, 1, format!("k{i}").as_bytes()).unwrap().1,
            vec![i as u8; 300]
        );
    }
    assert!(matches!(
        e.resize(10 * 1024),
        Err(ResizeError::BelowMinimum { .. })
    ));
    assert!(matches!(
        e.resize(4 << 20),
        Err(ResizeError::AboveReservation { .. })
    ));
    // Fill with live data, then ask for less than it needs: refused, nothing lost.
    e.resize(512 * 1024).unwrap();
    let mut n = 0u32;
    while e.stats().live_bytes < 300 * 1024 {
        e.write(
            1,
            format!("big{n}").as_bytes(),
            &[9; 1000],
            &RejectRules::NONE,
        )
        .unwrap();
        n += 1;
    }
    let err = e.resize(128 * 1024).unwrap_err();
    assert!(matches!(err, ResizeError::LiveDataTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("still needed"));
    assert_eq!(e.stats().budget_bytes, 512 * 1024);
    for i in 0..n {
        assert_eq!(
            read(&e, 1, format!("big{i}").as_bytes()).unwrap().1,
            vec![9; 1000]
        );
    }
}

#[test]
fn shrinking_evicts_clean_cache_objects_but_never_dirty_ones() {
    let (e, _) = small_engine(512 * 1024);
    e.create_table(1, TableOptions { evictable: true }).unwrap();
    for i in 0..200u32 {
        e.write_clean(
            1,
            format!("c{i}").as_bytes(),
            &[1; 1000],
            &RejectRules::NONE,
        )
        .unwrap();
    }
    for i in 0..20u32 {
        e.write(
            1,
            format!("d{i}").as_bytes(),
            &[2; 1000],
            &RejectRules::NONE,
        )
        .unwrap();
    }
    e.resize(128 * 1024).unwrap();
    for i in 0..20u32 {
        assert_eq!(
            read(&e, 1, format!("d{i}").as_bytes()).unwrap().1,
            vec![2; 1000]
        );
    }
    assert!(e.stats().cleaner.evicted > 0);
}

#[test]
fn concurrent_readers_and_writers_with_background_cleaner() {
    let mut cfg = small_config(512 * 1024);
    cfg.background_cleaner = true;
    let e = std::sync::Arc::new(Engine::new(cfg).unwrap());
    e.create_table(1, TableOptions::default()).unwrap();
    let threads: Vec<_> = (0..3u32)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut last = [0u32; 50];
                for n in 1..4000u32 {
                    let i = (n * 7 + t) as usize % 50;
                    let k = format!("t{t}-k{i}");
                    let v = n.to_le_bytes().repeat(20 + i);
                    loop {
                        match e.write(1, k.as_bytes(), &v, &RejectRules::NONE) {
                            Ok(_) => break,
                            Err(StorageError::NoSpace) => std::thread::yield_now(),
                            Err(x) => panic!("{x}"),
                        }
                    }
                    last[i] = n;
                    let j = (n as usize * 13) % 50;
                    if last[j] > 0 {
                        let mut out = Vec::new();
                        e.read(
                            1,
                            format!("t{t}-k{j}").as_bytes(),
                            &RejectRules::NONE,
                            &mut out,
                        )
                        .unwrap();
                        assert_eq!(out, last[j].to_le_bytes().repeat(20 + j));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = e.stats();
    assert!(
        s.cleaner.compactions + s.cleaner.combined > 0,
        "cleaner never ran: {s:?}"
    );
}

#[test]
fn overwrites_at_90_percent_utilisation_keep_every_object() {
    // 1 MiB engine; live data is 90 % of what writers can use (budget less the cleaner's
    // reserve and one head segment). Random overwrites force cleaning continually.
    let (e, clock) = small_engine(1 << 20);
    e.create_table(1, TableOptions::default()).unwrap();
    let usable = (1 << 20) - 48 * 1024;
    let value_len = 200;
    let per_object = value_len + 30 + 25;
    let n = usable * 90 / 100 / per_object;
    let mut versions = vec![0u64; n];
    let key = |i: usize| format!("object-{i:08}-padding-to-30-b");
    for (i, v) in versions.iter_mut().enumerate() {
        *v = e
            .write(1, key(i).as_bytes(), &[i as u8; 200], &RejectRules::NONE)
            .unwrap();
    }
    let mut x = 12345u64;
    let mut retries = 0;
    for round in 0..5 * n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % n as u64) as usize;
        if round % 500 == 0 {
            clock.advance(1);
        }
        loop {
            match e.write(
                1,
                key(i).as_bytes(),
                &[(i + round) as u8; 200],
                &RejectRules::NONE,
            ) {
                Ok(v) => {
                    versions[i] = v;
                    break;
                }
                Err(StorageError::NoSpace) => {
                    retries += 1;
                    e.clean();
                    assert!(
                        retries < 100 * n,
                        "cleaning makes no progress: {:?}",
                        e.stats()
                    );
                }
                Err(x) => panic!("{x}"),
            }
        }
        let j = (x >> 32) as usize % n;
        let mut out = Vec::new();
        assert_eq!(
            e.read(1, key(j).as_bytes(), &RejectRules::NONE, &mut out),
            Ok(versions[j])
        );
        assert_eq!(out.len(), 200);
    }
    let s = e.stats();
    assert!(s.live_bytes as f64 > 0.85 * usable as f64, "{s:?}");
    assert!(s.cleaner.compactions + s.cleaner.combined > 10, "{s:?}");
}

#[test]
fn mass_deletes_at_high_utilisation_do_not_fill_memory_with_tombstones() {
    // FAST'14 W3 in small: fill to 85 % of writable memory with 100 B objects, delete 90 %
    // of them (a tombstone each), then write 130 B objects holding the same live amount.
    // Tombstones die once level-2 cleaning removes the segments they point into; the
    // workload must complete with every surviving object intact.
    let (e, clock) = small_engine(1 << 20);
    e.create_table(1, TableOptions::default()).unwrap();
    let usable = (1 << 20) - 48 * 1024;
    let target = usable * 85 / 100;
    let key = |i: usize| format!("w3-{i:010}-padding-to-30-bytes");
    let entry = |v: usize| 2 + 22 + 30 + v;
    let retry = |f: &mut dyn FnMut() -> Result<(), StorageError>| {
        let mut tries = 0;
        loop {
            match f() {
                Ok(()) => return,
                Err(StorageError::NoSpace) => {
                    e.clean();
                    tries += 1;
                    assert!(tries < 1000, "no progress: {:?}", e.stats());
                }
                Err(x) => panic!("{x}"),
            }
        }
    };
    let mut live = 0;
    let mut keys = Vec::new();
    let mut next = 0;
    while live + entry(100) <= target {
        retry(&mut || {
            e.write(1, key(next).as_bytes(), &[1; 100], &RejectRules::NONE)
                .map(|_| ())
        });
        keys.push((next, 100));
        live += entry(100);
        next += 1;
    }
    let mut kept = Vec::new();
    for (i, (k, sz)) in keys.drain(..).enumerate() {
        if i % 10 == 0 {
            kept.push((k, sz));
        } else {
            retry(&mut || {
                e.remove(1, key(k).as_bytes(), &RejectRules::NONE)
                    .map(|_| ())
            });
            live -= entry(sz);
        }
    }
    let mut keys = kept;
    let mut written = 0;
    let mut x = 7u64;
    while written < 3 * target {
        clock.advance(1);
        while live + entry(130) > target {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (k, sz) = keys.swap_remove((x >> 33) as usize % keys.len());
            retry(&mut || {
                e.remove(1, key(k).as_bytes(), &RejectRules::NONE)
                    .map(|_| ())
            });
            live -= entry(sz);
        }
        retry(&mut || {
            e.write(1, key(next).as_bytes(), &[2; 130], &RejectRules::NONE)
                .map(|_| ())
        });
        keys.push((next, 130));
        live += entry(130);
        written += entry(130);
        next += 1;
    }
    for &(k, sz) in &keys {
        let mut out = Vec::new();
        e.read(1, key(k).as_bytes(), &RejectRules::NONE, &mut out)
            .unwrap();
        assert_eq!(out.len(), sz);
    }
    assert_eq!(e.stats().objects as usize, keys.len());
}

#[test]
fn versioned_writes_keep_the_newest_and_raise_the_counter() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    assert!(e.write_versioned(1, b"m", b"from source", 500).unwrap());
    assert_eq!(read(&e, 1, b"m").unwrap(), (500, b"from source".to_vec()));
    // An older copy does not replace a newer one.
    assert!(!e.write_versioned(1, b"m", b"stale", 400).unwrap());
    assert!(e.write_versioned(1, b"m", b"newer", 501).unwrap());
    // Versions handed out afterwards are above every version received.
    let v = e.write(1, b"other", b"x", &RejectRules::NONE).unwrap();
    assert!(v > 501);
    assert!(
        e.write(1, b"m", b"y", &RejectRules::version_is(501))
            .unwrap()
            > 501
    );
}
