// The behaviour every `ExternalStorage` backend must show. Included (`include!`) by the unit
// tests of `coordinator/external.rs` (memory and `file:`) and by `tests/zk_storage.rs` (`zk:`);
// the includer imports `ExternalStorage`, `ExternalStorageError` and `Versioned`.

/// The behaviour every backend must show, from a fresh store (no epoch, no blobs). Returns
/// the last epoch acquired (2). Run over `file:`, memory and `zk:` (in `tests/zk_storage.rs`).
fn check_backend(s: &dyn ExternalStorage) -> u64 {
    let e = s.acquire_leadership().unwrap();
    assert_eq!(e, 1);
    assert_eq!(s.get("state").unwrap(), None);
    assert_eq!(s.set(e, "state", b"one", Some(0)).unwrap(), 1);
    assert_eq!(s.set(e, "state", b"two", None).unwrap(), 2);
    assert!(matches!(
        s.set(e, "state", b"x", Some(1)),
        Err(ExternalStorageError::VersionMismatch {
            expected: 1,
            found: 2,
            ..
        })
    ));
    assert!(matches!(
        s.set(e, "state", b"x", Some(0)),
        Err(ExternalStorageError::VersionMismatch { found: 2, .. })
    ));
    assert_eq!(
        s.get("state").unwrap(),
        Some(Versioned {
            data: b"two".to_vec(),
            version: 2
        })
    );
    // An empty blob, a blob created without an expected version, then removed.
    assert_eq!(s.set(e, "empty", b"", None).unwrap(), 1);
    assert_eq!(s.get("empty").unwrap().unwrap().data, b"");
    s.remove(e, "empty").unwrap();
    assert_eq!(s.get("empty").unwrap(), None);
    s.remove(e, "empty").unwrap(); // absent: fine
    for bad in ["../etc", "", ".hidden", "a/b", "sp ace"] {
        assert!(
            matches!(
                s.set(e, bad, b"x", None),
                Err(ExternalStorageError::BadName(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(s.get(bad), Err(ExternalStorageError::BadName(_))));
    }
    // A second leader deposes the first: the old epoch can neither write nor remove.
    let e2 = s.acquire_leadership().unwrap();
    assert_eq!(e2, 2);
    assert!(matches!(
        s.set(e, "state", b"old", None),
        Err(ExternalStorageError::NotLeader {
            ours: 1,
            current: 2
        })
    ));
    assert!(matches!(
        s.remove(e, "state"),
        Err(ExternalStorageError::NotLeader { .. })
    ));
    assert_eq!(s.get("state").unwrap().unwrap().data, b"two");
    s.remove(e2, "other").unwrap();
    assert_eq!(s.set(e2, "state", b"three", Some(2)).unwrap(), 3);
    assert_eq!(s.set(e2, "state", b"two", Some(3)).unwrap(), 4);
    s.check_leadership().unwrap();
    e2
}
