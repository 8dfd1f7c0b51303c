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
