//! Unit tests of engine internals that the public-API tests (tests/engine_ops.rs) cannot reach.

use super::*;

fn engine() -> Engine {
    let e = Engine::new(EngineConfig::with_memory(64 << 20)).expect("engine");
    e.create_table(1, TableOptions::default()).expect("table");
    e
}

#[test]
fn write_versioned_refuses_the_last_version() {
    let e = engine();
    let err = e.write_versioned(1, b"k", b"v", u64::MAX).unwrap_err();
    assert_eq!(err, StorageError::VersionOverflow { version: u64::MAX });
    assert!(err.to_string().contains("beyond the largest"), "{err}");
    // Nothing was stored and the version counter did not wrap: writes still get fresh versions.
    let mut out = Vec::new();
    let read = e.read(1, b"k", &RejectRules::default(), &mut out);
    assert_eq!(read, Err(StorageError::ObjectDoesntExist));
    let v = e
        .write(1, b"k", b"v", &RejectRules::default())
        .expect("write");
    assert!(v >= 1);
    assert_eq!(
        e.write(1, b"k", b"w", &RejectRules::default())
            .expect("overwrite"),
        v + 1
    );
}

#[test]
fn write_versioned_refuses_the_last_version_over_an_existing_object() {
    let e = engine();
    assert!(e
        .write_versioned(1, b"k", b"v", MAX_VERSION - 1)
        .expect("store"));
    // The existing object is newer-or-equal: this path used to compute `version + 1` too.
    let err = e.write_versioned(1, b"k", b"w", u64::MAX).unwrap_err();
    assert_eq!(err, StorageError::VersionOverflow { version: u64::MAX });
    assert!(!e
        .write_versioned(1, b"k", b"w", MAX_VERSION - 2)
        .expect("older version"));
    let mut out = Vec::new();
    let read = e.read(1, b"k", &RejectRules::default(), &mut out);
    assert_eq!(read, Ok(MAX_VERSION - 1));
    assert_eq!(out, b"v");
}

#[test]
fn versions_near_the_top_are_refused_so_the_counter_never_wraps() {
    let e = engine();
    for v in [MAX_VERSION, MAX_VERSION + 1, u64::MAX - 1, u64::MAX] {
        assert_eq!(
            e.write_versioned(1, b"k", b"v", v),
            Err(StorageError::VersionOverflow { version: v })
        );
    }
    // The largest accepted version moves the counter just past it; writes keep increasing.
    assert!(e
        .write_versioned(1, b"a", b"v", MAX_VERSION - 1)
        .expect("store"));
    let v1 = e
        .write(1, b"b", b"v", &RejectRules::default())
        .expect("write");
    let v2 = e
        .write(1, b"b", b"w", &RejectRules::default())
        .expect("write");
    assert_eq!(v1, MAX_VERSION);
    assert_eq!(v2, MAX_VERSION + 1);
}

fn cache_engine() -> Engine {
    let e = Engine::new(EngineConfig::with_memory(64 << 20)).expect("engine");
    e.create_table(1, TableOptions { evictable: true })
        .expect("table");
    e
}

#[test]
fn replace_clean_keeps_the_version_and_only_at_that_version() {
    let e = cache_engine();
    let v = e.write(1, b"k", b"dirty", &RejectRules::NONE).unwrap();
    assert_eq!(e.is_dirty(1, b"k").unwrap(), Some(true));
    // A write came in meanwhile: the upload of `v` must not mark the newer value clean.
    let v2 = e.write(1, b"k", b"newer", &RejectRules::NONE).unwrap();
    assert!(!e.replace_clean(1, b"k", b"with-etag", v).unwrap());
    assert_eq!(e.is_dirty(1, b"k").unwrap(), Some(true));
    assert!(e.replace_clean(1, b"k", b"with-etag", v2).unwrap());
    assert_eq!(e.is_dirty(1, b"k").unwrap(), Some(false));
    let mut out = Vec::new();
    assert_eq!(e.read(1, b"k", &RejectRules::NONE, &mut out).unwrap(), v2);
    assert_eq!(out, b"with-etag");
    assert!(!e.replace_clean(1, b"absent", b"x", 1).unwrap());
    // Versions handed out later still grow.
    assert!(e.write(1, b"k", b"x", &RejectRules::NONE).unwrap() > v2);
}

#[test]
fn remove_clean_never_drops_a_dirty_object() {
    let e = cache_engine();
    let v = e.write(1, b"d", b"dirty", &RejectRules::NONE).unwrap();
    assert_eq!(e.remove_clean(1, b"d", None).unwrap(), RemoveClean::Dirty);
    let c = e
        .write_clean(1, b"c", b"clean", &RejectRules::must_not_exist())
        .unwrap();
    assert_eq!(
        e.remove_clean(1, b"c", Some(c + 100)).unwrap(),
        RemoveClean::Changed
    );
    assert_eq!(
        e.remove_clean(1, b"c", Some(c)).unwrap(),
        RemoveClean::Removed(c)
    );
    assert_eq!(e.remove_clean(1, b"c", None).unwrap(), RemoveClean::Absent);
    let mut out = Vec::new();
    assert_eq!(e.read(1, b"d", &RejectRules::NONE, &mut out).unwrap(), v);
}

#[test]
fn replay_keeps_the_dirty_bit_and_a_clean_copy_wins_at_equal_version() {
    let e = cache_engine();
    // A clean fill replays clean; a dirty write replays dirty.
    assert!(e.write_versioned_as(1, b"f", b"v", 5, true).unwrap());
    assert_eq!(e.is_dirty(1, b"f").unwrap(), Some(false));
    assert!(e.write_versioned_as(1, b"w", b"v", 6, false).unwrap());
    assert_eq!(e.is_dirty(1, b"w").unwrap(), Some(true));
    // The written-back copy of version 6 replaces the dirty one; the dirty one never
    // replaces the clean one.
    assert!(e.write_versioned_as(1, b"w", b"v+etag", 6, true).unwrap());
    assert_eq!(e.is_dirty(1, b"w").unwrap(), Some(false));
    assert!(!e.write_versioned_as(1, b"w", b"v", 6, false).unwrap());
    assert_eq!(e.is_dirty(1, b"w").unwrap(), Some(false));
    // An older version never replaces a newer one, clean or not.
    assert!(!e.write_versioned_as(1, b"w", b"old", 4, true).unwrap());
}

#[test]
fn read_range_reads_a_piece_of_a_value() {
    let e = engine();
    let v = e.write(1, b"k", b"0123456789", &RejectRules::NONE).unwrap();
    let mut out = Vec::new();
    assert_eq!(e.read_range(1, b"k", 3, 4, &mut out).unwrap(), (v, 10));
    assert_eq!(out, b"3456");
    out.clear();
    assert_eq!(e.read_range(1, b"k", 8, 100, &mut out).unwrap(), (v, 10));
    assert_eq!(out, b"89");
    out.clear();
    assert_eq!(e.read_range(1, b"k", 50, 4, &mut out).unwrap(), (v, 10));
    assert!(out.is_empty());
    assert_eq!(
        e.read_range(1, b"absent", 0, 4, &mut out),
        Err(StorageError::ObjectDoesntExist)
    );
}

#[test]
fn large_values_read_whole_and_in_ranges_across_seglets() {
    let e = engine();
    // Values of many seglets (64 KiB each), a key that shifts them off seglet alignment.
    let value: Vec<u8> = (0..700_001u32).map(|i| (i * 7 + i / 251) as u8).collect();
    for key in [&b"k"[..], &[b'x'; 300][..]] {
        let v = e.write(1, key, &value, &RejectRules::NONE).unwrap();
        let mut out = vec![9u8; 3];
        assert_eq!(e.read(1, key, &RejectRules::NONE, &mut out).unwrap(), v);
        assert!(
            out[..3] == [9, 9, 9] && out[3..] == value[..],
            "appended whole"
        );
        let seglet = 64 * 1024;
        for (from, len) in [
            (0, 1),
            (seglet - 40, 80),
            (seglet * 3 + 5, seglet * 2),
            (123_456, 500_000),
            (699_999, 10),
            (700_001, 10),
            (0, 1 << 20),
        ] {
            out.clear();
            let (got_v, total) = e.read_range(1, key, from, len, &mut out).unwrap();
            assert_eq!((got_v, total), (v, value.len()));
            let end = (from + len).min(value.len());
            assert!(out[..] == value[from.min(end)..end], "range {from}+{len}");
        }
    }
}
