//! Horizontal elasticity (issue 18): draining a server out of the cluster, and rebalancing by
//! memory budget when a server joins.
//!
//! `drain_moves_a_gibibyte_and_dirty_objects_without_losing_a_write`: three servers (each
//! master + backup, one replica per segment). One server owns a plain table holding 1 GiB and
//! half of an ephemeral table (its objects are never uploaded: dirty for ever) and of a
//! write-back table backed by a real S3 store (moto). While two clients keep writing —
//! overwriting objects of the big table and adding objects to the other two, each acknowledged
//! write recorded — `faascache drain` moves every tablet of that server to the others and
//! removes it. Then: the drained process exits with status 0, the server list shows it
//! removed, every acknowledged write reads back with its last value, and after a flush the
//! store holds every write-back object. The drain's time is printed.
//!
//! `a_joining_server_takes_a_share_by_memory_budget`: a coordinator with `--rebalance`, one
//! 256 MiB server owning 6 tablets; a 768 MiB server joins and ends up with 4 of them (shares
//! 1.5 and 4.5), every object readable.
//!
//! `a_drain_with_nowhere_to_go_is_refused_and_changes_nothing`: draining the only master fails
//! with the reason, and the server stays up, serving and placed on.
//!
//! The first SKIPs without moto unless `FAASCACHE_REQUIRE` names `moto`.

mod cluster_util;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions, Error, TableId};
use faascache_objstore::{ClientOptions as StoreOptions, GetResult, Settings};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

const MIB: usize = 1 << 20;
const BIG: usize = 512 << 10;
const BIG_OBJECTS: usize = 1024 * MIB / BIG;
const SMALL: usize = 8 << 10;

fn body(tag: &str, key: &str, round: usize, len: usize) -> Vec<u8> {
    format!("{tag}/{key}/{round}:")
        .bytes()
        .cycle()
        .take(len)
        .collect()
}

fn start_server(
    dir: &Path,
    coord: &str,
    name: &str,
    memory: &str,
    replicas: &str,
    env: &[(&str, &str)],
) -> (Proc, String) {
    let lf = dir.join(format!("{name}.locator"));
    #[rustfmt::skip]
    let args = [
        "server", "--coordinator", coord, "--memory", memory, "--replicas", replicas,
        "--poll", "block", "--no-pin", "--listen", "tcp:host=127.0.0.1,port=0",
        "--locator-file", lf.to_str().unwrap(),
    ];
    let mut p = faascache_launch::Launch::new(name, BIN, dir.join(format!("{name}.log")))
        .args(args)
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let loc = wait_up(&mut p, &lf, T);
    (p, loc)
}

/// Write, retrying the documented back-pressure; any other error fails the test.
fn write(c: &Client, t: TableId, key: &str, value: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.write(t, key.as_bytes(), value) {
            Ok(_) => return,
            Err(Error::WriteBackFull(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("write {key}: {e}"),
        }
    }
}

fn tablets_of(c: &Client, loc: &str) -> u32 {
    c.server_stats(loc).unwrap().tablets
}

/// Acknowledged writes: (table, key) and the value.
type Acked = Vec<((TableId, String), Vec<u8>)>;

/// Two writers run while `faascache drain SERVER --json` runs, and half a second around it;
/// each acknowledged write is recorded. The drain's JSON report, its wall time, the writes.
fn drain_under_writes(
    coord: &str,
    server: &str,
    (big, wb, eph): (TableId, TableId, TableId),
) -> (serde_json::Value, Duration, Acked) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let big_writer = s.spawn(|| {
            let c = Client::connect(coord).unwrap();
            let mut acked: Acked = Vec::new();
            let mut round = 1;
            while !stop.load(Ordering::Relaxed) {
                for i in (0..BIG_OBJECTS).step_by(97) {
                    let k = format!("b{i}");
                    let v = body("big", &k, round, BIG);
                    write(&c, big, &k, &v);
                    acked.push(((big, k), v));
                }
                round += 1;
            }
            acked
        });
        let small_writer = s.spawn(|| {
            let c = Client::connect(coord).unwrap();
            let mut acked: Acked = Vec::new();
            let mut i = 1000;
            while !stop.load(Ordering::Relaxed) {
                for (t, tag) in [(wb, "wb"), (eph, "eph")] {
                    let k = format!("{tag}{i}");
                    let v = body(tag, &k, 0, SMALL);
                    write(&c, t, &k, &v);
                    acked.push(((t, k), v));
                }
                i += 1;
            }
            acked
        });
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let out = std::process::Command::new(BIN)
            .args(["drain", server, "--json", "--coordinator", coord])
            .output()
            .unwrap();
        let wall = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let mut acked = big_writer.join().unwrap();
        acked.extend(small_writer.join().unwrap());
        assert!(
            out.status.success(),
            "drain failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report, wall, acked)
    })
}

/// After a flush, the store holds the last value of every write-back object; how many.
fn store_has_every_write_back_object(
    c: &Client,
    wb: TableId,
    url: &str,
    vars: &[(&str, String)],
    last: &HashMap<(TableId, String), Vec<u8>>,
) -> usize {
    c.flush(wb, None, Duration::from_secs(300)).unwrap();
    let settings =
        Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(url, &settings, &StoreOptions::default()).unwrap();
    let mut in_store = 0;
    for ((t, k), v) in last {
        if *t != wb {
            continue;
        }
        match store.get(k, None) {
            Ok(GetResult::Found { body, .. }) => assert!(body.as_ref() == v.as_slice(), "{k}"),
            other => panic!("{k} not in the store: {other:?}"),
        }
        in_store += 1;
    }
    in_store
}

#[test]
fn drain_moves_a_gibibyte_and_dirty_objects_without_losing_a_write() {
    let Some(env) = faascache_testkit::stores::moto("drain") else {
        return;
    };
    let vars = moto_vars(env);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir("drain");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let mut servers: Vec<(Proc, String)> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| start_server(&dir, &coord, n, "1536MiB", "1", &pairs))
        .collect();
    let c = Client::connect_with(
        &coord,
        ClientOptions::default().timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let big = c.create_table("big", 1).unwrap();
    let owner = (0..3)
        .find(|&i| tablets_of(&c, &servers[i].1) == 1)
        .expect("one server owns the big table");
    let url = format!(
        "s3://{}/drain-{}",
        env.var("FAASCACHE_MOTO_BUCKET"),
        std::process::id()
    );
    let wb = c
        .create_backed_table("wb", 3, &TableBacking::new(&url, WritePolicy::WriteBack))
        .unwrap();
    let eph = c
        .create_backed_table("eph", 3, &TableBacking::new("", WritePolicy::Ephemeral))
        .unwrap();
    let owned = tablets_of(&c, &servers[owner].1);
    assert_eq!(
        owned, 3,
        "the big table's tablet and one of each backed table"
    );

    // Load: 1 GiB in the big table, 1,000 objects in each backed table.
    let t = Instant::now();
    let mut last: HashMap<(TableId, String), Vec<u8>> = HashMap::new();
    for i in 0..BIG_OBJECTS {
        let k = format!("b{i}");
        let v = body("big", &k, 0, BIG);
        write(&c, big, &k, &v);
        last.insert((big, k), v);
    }
    for i in 0..1000 {
        for (t, tag) in [(wb, "wb"), (eph, "eph")] {
            let k = format!("{tag}{i}");
            let v = body(tag, &k, 0, SMALL);
            write(&c, t, &k, &v);
            last.insert((t, k), v);
        }
    }
    let stats = c.server_stats(&servers[owner].1).unwrap();
    eprintln!(
        "loaded in {:.1} s; the drained server holds {} MiB live in {} objects",
        t.elapsed().as_secs_f64(),
        stats.live_bytes / MIB as u64,
        stats.objects
    );
    assert!(stats.live_bytes >= 1 << 30, "{stats:?}");

    let (report, wall, acked) = drain_under_writes(&coord, &servers[owner].1, (big, wb, eph));
    eprintln!(
        "drain under writes: {report}; wall {:.3} s; {} writes acknowledged meanwhile",
        wall.as_secs_f64(),
        acked.len()
    );
    assert_eq!(report["tablets_moved"], 3, "{report}");
    assert_eq!(report["retired"], true, "{report}");
    assert!(
        acked.len() > 10,
        "the writers made progress: {}",
        acked.len()
    );
    let writes_during = acked.len();
    for (k, v) in acked {
        last.insert(k, v);
    }

    // The drained server exits with success after its grace period; the list says removed.
    let gone = servers[owner]
        .0
        .wait_until(Instant::now() + Duration::from_secs(40))
        .expect("the drained server exits");
    assert!(gone.success(), "drained server exit: {gone:?}");
    let info = c.find_server(&servers[owner].1).unwrap();
    assert_eq!(info.status, "removed", "{info:?}");
    for (i, (_, loc)) in servers.iter().enumerate().filter(|(i, _)| *i != owner) {
        assert!(tablets_of(&c, loc) >= 1, "server {i} took no tablet");
    }

    // Every acknowledged write reads back with its last value.
    for ((t, k), v) in &last {
        let o = c
            .read(*t, k.as_bytes())
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert!(&o.value == v, "{k}: not the last acknowledged value");
    }
    let in_store = store_has_every_write_back_object(&c, wb, &url, &vars, &last);
    eprintln!(
        "zero lost writes: {} keys checked ({writes_during} written during the drain), {in_store} write-back objects in the store",
        last.len()
    );
    servers.clear();
}

#[test]
fn a_joining_server_takes_a_share_by_memory_budget() {
    let dir = tempdir("rebalance");
    let (_cp, coord) = coordinator_tcp_with(&dir, "coordinator", &["--rebalance"]);
    let (_s1, l1) = start_server(&dir, &coord, "s1", "256MiB", "0", &[]);
    let c = Client::connect(&coord).unwrap();
    let t = c.create_table("t", 6).unwrap();
    for i in 0..600 {
        write(&c, t, &format!("k{i}"), format!("v{i}").as_bytes());
    }
    assert_eq!(tablets_of(&c, &l1), 6);
    let started = Instant::now();
    let (_s2, l2) = start_server(&dir, &coord, "s2", "768MiB", "0", &[]);
    eventually(Duration::from_secs(60), || {
        let (a, b) = (tablets_of(&c, &l1), tablets_of(&c, &l2));
        if (a, b) == (2, 4) {
            Ok(())
        } else {
            Err(format!(
                "tablets {a} + {b}, expected 2 + 4 (shares 1.5 and 4.5)"
            ))
        }
    });
    eprintln!(
        "rebalanced 6 tablets to 2 + 4 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // It stays balanced (no move back and forth).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!((tablets_of(&c, &l1), tablets_of(&c, &l2)), (2, 4));
    for i in 0..600 {
        let o = c.read(t, format!("k{i}").as_bytes()).unwrap();
        assert_eq!(o.value, format!("v{i}").as_bytes());
    }
}

#[test]
fn a_drain_with_nowhere_to_go_is_refused_and_changes_nothing() {
    let dir = tempdir("drain-refused");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let (mut s1, l1) = start_server(&dir, &coord, "s1", "128MiB", "0", &[]);
    let c = Client::connect(&coord).unwrap();
    let t = c.create_table("t", 2).unwrap();
    write(&c, t, "k", b"v");
    let drain = |server: &str| {
        std::process::Command::new(BIN)
            .args(["drain", server, "--coordinator", &coord])
            .output()
            .unwrap()
    };
    // The only master: its tablets have nowhere to go.
    let out = drain("1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no other master"),
        "{err}"
    );
    // Nothing changed: still up, still serving, placed on again.
    assert!(s1
        .wait_until(Instant::now() + Duration::from_secs(1))
        .is_none());
    assert_eq!(c.find_server("1").unwrap().status, "up");
    assert_eq!(c.read(t, b"k").unwrap().value, b"v");
    c.create_table("u", 1).unwrap();
    assert_eq!(tablets_of(&c, &l1), 3);
    // An unknown server is named as such.
    let out = drain("9.9");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no server \"9.9\""),
        "{err}"
    );
}
