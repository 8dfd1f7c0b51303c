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
    assert!(err.to_string().contains("largest possible"), "{err}");
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
        .write_versioned(1, b"k", b"v", u64::MAX - 1)
        .expect("store"));
    // The existing object is newer-or-equal: this path used to compute `version + 1` too.
    let err = e.write_versioned(1, b"k", b"w", u64::MAX).unwrap_err();
    assert_eq!(err, StorageError::VersionOverflow { version: u64::MAX });
    assert!(!e
        .write_versioned(1, b"k", b"w", u64::MAX - 2)
        .expect("older version"));
    let mut out = Vec::new();
    let read = e.read(1, b"k", &RejectRules::default(), &mut out);
    assert_eq!(read, Ok(u64::MAX - 1));
    assert_eq!(out, b"v");
}
