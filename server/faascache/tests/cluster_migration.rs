//! Tablet split and migration between two real servers while a writer keeps writing: every
//! acknowledged write (and remove) must be readable from the new owner afterwards.

mod cluster_util;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_util::*;
use faascache_protocol::msg::control::GetServerInfoRequest;
use faascache_protocol::msg::coordinator::*;
use faascache_protocol::msg::master::RemoveRequest;
use faascache_protocol::msg::{RejectRules, Services};
use faascache_transport::call;
use faascache_transport::Status;

type Acked = HashMap<Vec<u8>, Option<Vec<u8>>>;

#[test]
fn cluster_migration_under_concurrent_writes() {
    let dir = tempdir("migration");
    let (_coord, cloc) = coordinator(&dir, 0, "coordinator");
    let (_a, aloc) = server(&dir, &cloc, "server-a");
    let (_b, bloc) = server(&dir, &cloc, "server-b");
    let mut c = Raw::new(&cloc);
    let t = c.create_table("moving", 1);
    let source = c.tablets(t)[0].2.clone();
    let target_loc = if source == aloc {
        bloc.clone()
    } else {
        aloc.clone()
    };
    let servers = c
        .coord_call(
            &GetServerListRequest {
                services: Services::MASTER,
            },
            |r| {
                r.servers
                    .iter()
                    .map(|s| (s.id, s.locator.to_string()))
                    .collect::<Vec<_>>()
            },
        )
        .unwrap();
    let target = servers.iter().find(|s| s.1 == target_loc).unwrap().0;

    // Preload so that the copy takes a while.
    let value = vec![b'p'; 200];
    for i in 0..3000 {
        c.write(t, format!("pre{i}").as_bytes(), &value).unwrap();
    }

    // A writer: overwrites a hot set, adds new keys, removes some; records what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let (stop2, cloc2, progress2) = (stop.clone(), cloc.clone(), progress.clone());
    let writer = std::thread::spawn(move || writer(&cloc2, t, &stop2, &progress2));

    writer_advances(&progress);
    split_and_migrate(&mut c, &cloc, t, (target, &target_loc), &source, &progress);
    writer_advances(&progress);
    stop.store(true, Ordering::Relaxed);
    let (acked, writes) = writer.join().unwrap();
    assert!(writes >= 2000);
    check_moved(&mut c, t, &acked, &value, &target_loc, &source);
}

/// Wait until the writer has acknowledged a few more operations (it had the time to run).
fn writer_advances(progress: &AtomicU64) {
    let from = progress.load(Ordering::Relaxed);
    eventually(Duration::from_secs(30), || {
        let now = progress.load(Ordering::Relaxed);
        faascache_testkit::check(now >= from + 10, || {
            format!("the writer is stuck at operation {now} (was {from})")
        })
    });
}

/// The writer thread: returns what was acknowledged and how many operations it made.
fn writer(cloc: &str, t: u64, stop: &AtomicBool, progress: &AtomicU64) -> (Acked, u64) {
    let mut w = Raw::new(cloc);
    w.refresh();
    let mut acked: Acked = HashMap::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) || seq < 2000 {
        seq += 1;
        progress.store(seq, Ordering::Relaxed);
        let key = if seq.is_multiple_of(3) {
            format!("new{seq}")
        } else {
            format!("hot{}", seq % 200)
        }
        .into_bytes();
        if seq.is_multiple_of(17) {
            let rpc = w.eo();
            let req = RemoveRequest {
                table: t,
                rpc,
                rules: RejectRules::NONE,
                key: &key,
            };
            w.keyed(t, &key, &req, Duration::from_secs(30), |_| ())
                .expect("remove acknowledged");
            acked.insert(key, None);
        } else {
            let v = format!("v{seq}").into_bytes();
            w.write(t, &key, &v).expect("write acknowledged");
            acked.insert(key, Some(v));
        }
        if seq > 200_000 {
            break;
        }
    }
    (acked, seq)
}

/// Split, then move the upper half, then the lower half to `target`; refused migrations.
fn split_and_migrate(
    c: &mut Raw,
    cloc: &str,
    t: u64,
    (target, target_loc): (faascache_protocol::ServerId, &str),
    source: &str,
    progress: &AtomicU64,
) {
    c.coord_call(
        &SplitTabletRequest {
            table_id: t,
            split_hash: 1 << 63,
        },
        |_| (),
    )
    .unwrap();
    assert_eq!(c.tablets(t).len(), 2);
    let coord = connect(cloc);
    let before = progress.load(Ordering::Relaxed);
    let long = Duration::from_secs(60);
    call(
        &coord,
        &MigrateTabletRequest {
            table_id: t,
            start_hash: 1 << 63,
            end_hash: u64::MAX,
            target,
        },
        long,
        |_| (),
    )
    .unwrap();
    let map = c.tablets(t);
    assert_eq!(map[1].2, target_loc, "upper half moved");
    assert_eq!(map[0].2, source, "lower half stayed");
    writer_advances(progress);
    call(
        &coord,
        &MigrateTabletRequest {
            table_id: t,
            start_hash: 0,
            end_hash: (1 << 63) - 1,
            target,
        },
        long,
        |_| (),
    )
    .unwrap();
    let during = progress.load(Ordering::Relaxed) - before;
    assert!(
        during > 0,
        "the writer made no progress while the tablets moved"
    );
    // Migrating to the owner, or a tablet that does not exist, is refused.
    let r = call(
        &coord,
        &MigrateTabletRequest {
            table_id: t,
            start_hash: 0,
            end_hash: (1 << 63) - 1,
            target,
        },
        long,
        |_| (),
    );
    assert_eq!(r.unwrap_err().status(), Some(Status::RETRY));
    let r = call(
        &coord,
        &MigrateTabletRequest {
            table_id: t,
            start_hash: 5,
            end_hash: 6,
            target,
        },
        long,
        |_| (),
    );
    assert_eq!(r.unwrap_err().status(), Some(Status::UNKNOWN_TABLET));
}

/// Everything lives on the target now, and every acknowledged write is there.
fn check_moved(c: &mut Raw, t: u64, acked: &Acked, value: &[u8], target_loc: &str, source: &str) {
    assert!(c.tablets(t).iter().all(|x| x.2 == target_loc));
    for (k, v) in acked {
        match (v, c.read(t, k)) {
            (Some(v), Ok((_, got))) => assert_eq!(&got, v, "key {}", String::from_utf8_lossy(k)),
            (None, r) => assert_eq!(status(r), Status::OBJECT_DOESNT_EXIST),
            (Some(_), Err(e)) => panic!(
                "acknowledged write of {} lost: {e}",
                String::from_utf8_lossy(k)
            ),
        }
    }
    for i in (0..3000).step_by(13) {
        assert_eq!(c.read(t, format!("pre{i}").as_bytes()).unwrap().1, value);
    }
    // The source dropped its data.
    let s = connect(source);
    let (tablets, objects) = call(&s, &GetServerInfoRequest, Duration::from_secs(5), |r| {
        (r.tablets, r.objects)
    })
    .unwrap();
    assert_eq!((tablets, objects), (0, 0));
}

/// A tracked increment whose reply the client never saw, retried after its tablet moved to
/// another master, gets its first result there (the completion record moved with the tablet)
/// instead of counting twice.
#[test]
fn a_retry_after_the_tablet_moved_gets_the_first_result() {
    use faascache_protocol::msg::master::{IncrementRequest, Number};
    let dir = tempdir("migration-eo");
    let (_coord, cloc) = coordinator(&dir, 0, "coordinator");
    let (_a, aloc) = server(&dir, &cloc, "server-a");
    let (_b, bloc) = server(&dir, &cloc, "server-b");
    let mut c = Raw::new(&cloc);
    let t = c.create_table("eo-moving", 1);
    let source = c.tablets(t)[0].2.clone();
    let target_loc = if source == aloc { &bloc } else { &aloc };
    let servers = c
        .coord_call(
            &GetServerListRequest {
                services: Services::MASTER,
            },
            |r| {
                r.servers
                    .iter()
                    .map(|s| (s.id, s.locator.to_string()))
                    .collect::<Vec<_>>()
            },
        )
        .unwrap();
    let target = servers.iter().find(|s| &s.1 == target_loc).unwrap().0;
    let inc = IncrementRequest {
        table: t,
        rpc: c.eo(),
        rules: RejectRules::NONE,
        key: b"moving-counter",
        delta: Number::I64(7),
    };
    let first = c
        .keyed(t, b"moving-counter", &inc, T, |r| (r.version, r.value))
        .unwrap();
    assert_eq!(first.1, Number::I64(7));
    c.coord_call(
        &MigrateTabletRequest {
            table_id: t,
            start_hash: 0,
            end_hash: u64::MAX,
            target,
        },
        |_| (),
    )
    .unwrap();
    c.refresh();
    assert_eq!(&c.tablets(t)[0].2, target_loc, "the tablet moved");
    // The same rpc again, now answered by the new owner: the first result, not a second run.
    let again = c
        .keyed(t, b"moving-counter", &inc, T, |r| (r.version, r.value))
        .unwrap();
    assert_eq!(again, first, "the retry got the first result");
    let next = IncrementRequest { rpc: c.eo(), ..inc };
    assert_eq!(
        c.keyed(t, b"moving-counter", &next, T, |r| r.value)
            .unwrap(),
        Number::I64(14),
        "counted once"
    );
}
