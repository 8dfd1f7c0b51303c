//! The coordinator's external storage backends through one set of checks ([`check_backend`]):
//! memory and `file:`, and `zk:` against a private ZooKeeper (Debian's package; SKIP when it is
//! not installed, a failure under `FAASCACHE_REQUIRE=zk`): reopening, chroots as clusters, size
//! limits, standbys waiting behind the leader and a deposed leader fenced by epoch.

use std::sync::mpsc;
use std::time::Duration;

use faascache_server::coordinator::external::Versioned;
use faascache_server::coordinator::{
    ExternalStorage, ExternalStorageError, FileStorage, MemStorage, ZkStorage,
};
use faascache_testkit::zk::ZkServer;
use faascache_testkit::{check, continually, eventually};
use faascache_transport::CoordinatorLocator;
use faascache_zk::ZkSession;

/// The behaviour every backend must show, from a fresh store (no epoch, no blobs). Returns
/// the last epoch acquired (2). Run over memory, `file:` and `zk:`.
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

#[test]
fn memory_backend_passes_the_shared_checks() {
    check_backend(&MemStorage::default());
}

#[test]
fn file_backend_round_trip_versions_and_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    {
        let s = FileStorage::open(&dir).unwrap();
        assert!(matches!(
            FileStorage::open(&dir),
            Err(ExternalStorageError::Locked { .. })
        ));
        assert_eq!(check_backend(&s), 2);
        assert!(matches!(
            s.set(2, "leader-epoch", b"x", None),
            Err(ExternalStorageError::BadName(_))
        ));
    }
    // Reopened (a restarted coordinator): data and epoch are there.
    let s = FileStorage::open(&dir).unwrap();
    assert_eq!(s.get("state").unwrap().unwrap().version, 4);
    assert_eq!(s.acquire_leadership().unwrap(), 3);
    assert!(s.describe().starts_with("file:"));
}

/// Short sessions so that the tests do not wait long for expiry.
const TEST_TIMEOUT: Duration = Duration::from_secs(2);

fn open(addr: &str) -> ZkStorage {
    ZkStorage::open_with(addr, TEST_TIMEOUT).unwrap()
}

#[test]
fn zk_backend_passes_the_shared_checks_and_survives_reopening() {
    let Some(zk) = ZkServer::start("zk_storage_shared") else {
        return;
    };
    let addr = zk.address_in("shared/cluster-1");
    {
        let s = open(&addr);
        assert_eq!(check_backend(&s), 2);
        assert_eq!(s.describe(), addr);
    }
    // A restarted coordinator (new session) finds the blobs and the epoch.
    let s = open(&addr);
    assert_eq!(s.get("state").unwrap().unwrap().version, 4);
    assert_eq!(s.acquire_leadership().unwrap(), 3);
    // Another chroot is another cluster.
    let other = open(&zk.address_in("shared/cluster-2"));
    assert_eq!(other.get("state").unwrap(), None);
    assert_eq!(other.acquire_leadership().unwrap(), 1);
    // Blobs larger than a znode may hold are refused with the reason, not sent.
    let big = vec![0u8; 2 << 20];
    let e = s.set(3, "big", &big, None).unwrap_err().to_string();
    assert!(e.contains("jute.maxbuffer"), "{e}");
    // Bad addresses.
    assert!(matches!(
        ZkStorage::open("zk:nohost"),
        Err(ExternalStorageError::BadLocator(_))
    ));
}

#[test]
fn standbys_wait_and_a_deposed_leader_is_fenced() {
    let Some(zk) = ZkServer::start("zk_storage_fencing") else {
        return;
    };
    let addr = zk.address_in("fence");
    let a = open(&addr);
    let ea = a.acquire_leadership().unwrap();
    assert_eq!(ea, 1);
    a.set(ea, "state", b"from a", None).unwrap();
    a.advertise(ea, "tcp:host=127.0.0.1,port=1001").unwrap();
    let coord: CoordinatorLocator = addr.parse().unwrap();
    assert_eq!(
        coord.resolve().unwrap().to_string(),
        "tcp:host=127.0.0.1,port=1001"
    );

    // B is a standby while A's election znode lives: once B is in the election (its znode
    // behind A's), it must not lead for a while.
    let raw = ZkSession::connect(&addr.parse().unwrap(), TEST_TIMEOUT).unwrap();
    let b = std::sync::Arc::new(open(&addr));
    let (tx, rx) = mpsc::channel();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(b2.acquire_leadership());
    });
    let candidates = eventually(Duration::from_secs(30), || {
        let mut c = raw
            .get_children("/fence/election", false)
            .map_err(|e| e.to_string())?;
        c.sort();
        check(c.len() == 2, || format!("election znodes: {c:?}")).map(|()| c)
    });
    continually(Duration::from_millis(500), || {
        check(rx.try_recv().is_err(), || {
            "B must not lead while A does".into()
        })
    });
    a.set(ea, "state", b"still a", None).unwrap();

    // Depose A without ending its session (as if ZooKeeper had expired it while A was
    // paused): remove A's election znode from outside.
    // A's is the lowest sequence number.
    let mine = format!("/fence/election/{}", candidates[0]);
    raw.delete(&mine, -1).unwrap();
    let eb = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("B takes over")
        .unwrap();
    waiter.join().unwrap();
    assert_eq!(eb, 2);
    assert_eq!(b.get("state").unwrap().unwrap().data, b"still a");

    // A's session still works (it reads), but every write of epoch 1 fails in ZooKeeper's multi.
    assert_eq!(a.get("state").unwrap().unwrap().data, b"still a");
    assert!(matches!(
        a.set(ea, "state", b"zombie", None),
        Err(ExternalStorageError::NotLeader {
            ours: 1,
            current: 2
        })
    ));
    assert!(matches!(
        a.remove(ea, "state"),
        Err(ExternalStorageError::NotLeader { .. })
    ));
    assert!(matches!(
        a.advertise(ea, "tcp:host=127.0.0.1,port=6666"),
        Err(ExternalStorageError::NotLeader { .. })
    ));
    let lost = a.check_leadership().unwrap_err().to_string();
    assert!(lost.contains("election znode"), "{lost}");
    assert_eq!(b.get("state").unwrap().unwrap().data, b"still a");

    // B publishes its locator over A's (A's ephemeral znode is replaced, fenced by epoch).
    b.set(eb, "state", b"from b", None).unwrap();
    b.advertise(eb, "tcp:host=127.0.0.1,port=1002").unwrap();
    assert_eq!(
        coord.resolve().unwrap().to_string(),
        "tcp:host=127.0.0.1,port=1002"
    );
    b.check_leadership().unwrap();

    // C waits behind B; B's session ends (process exit): C leads, with B's state, and no
    // leader is published until C advertises.
    let c = std::sync::Arc::new(open(&addr));
    let (tx, rx) = mpsc::channel();
    let c2 = c.clone();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(c2.acquire_leadership());
    });
    drop(a); // A's stale session goes too
    drop(b);
    let ec = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("C takes over")
        .unwrap();
    waiter.join().unwrap();
    assert_eq!(ec, 3);
    assert_eq!(c.get("state").unwrap().unwrap().data, b"from b");
    let e = coord.resolve().unwrap_err().to_string();
    assert!(e.contains("no coordinator leads"), "{e}");
    c.advertise(ec, "tcp:host=127.0.0.1,port=1003").unwrap();
    assert_eq!(
        coord.resolve().unwrap().to_string(),
        "tcp:host=127.0.0.1,port=1003"
    );
}
