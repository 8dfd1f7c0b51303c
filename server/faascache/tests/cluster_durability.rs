//! Durability with real processes on 127.0.0.1: a coordinator and several `faascache server`s
//! replicating their logs to each other's backups.
//!
//! * A writer records every acknowledged write; a master is killed with SIGKILL mid-stream;
//!   after recovery every acknowledged write reads back with its value and version.
//!   `CRASH_RUNS` (default 2) repeats it with different kill timing (`scripts/crash-loop.sh`
//!   runs many); the seed of each run is printed.
//! * A backup is killed during writes: its replicas are re-made elsewhere, so a later crash of
//!   the master still loses nothing.
//! * A whole cluster whose backups used `--durability disk` is killed and restarted from its
//!   files: everything comes back.

mod cluster_util;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use rand::{Rng, SeedableRng};

/// Acknowledged writes: key → (value, version).
type Acked = HashMap<Vec<u8>, (Vec<u8>, u64)>;

fn client(coord: &str) -> Client {
    Client::connect_with(
        coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .expect("client connects")
}

/// Writes fresh keys (and overwrites some of its own acknowledged ones) until `stop`;
/// returns what was acknowledged and the keys whose last write failed (value uncertain).
fn writer(
    coord: String,
    table: &'static str,
    id: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (Acked, Vec<Vec<u8>>) {
    let c = client(&coord);
    let t = c.table_id(table).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ id as u64);
    let mut acked = Acked::new();
    let mut uncertain = Vec::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let key = if !keys.is_empty() && rng.gen_bool(0.2) {
            keys[rng.gen_range(0..keys.len())].clone()
        } else {
            n += 1;
            format!("w{id}-k{n}").into_bytes()
        };
        if uncertain.contains(&key) {
            continue;
        }
        let value = format!("{}-{}", String::from_utf8_lossy(&key), rng.gen::<u32>()).into_bytes();
        match c.write(t, &key, &value) {
            Ok(version) => {
                if !acked.contains_key(&key) {
                    keys.push(key.clone());
                }
                acked.insert(key, (value, version));
            }
            Err(e) => {
                eprintln!("writer {id}: write failed (not acknowledged): {e}");
                acked.remove(&key);
                uncertain.push(key);
            }
        }
    }
    (acked, uncertain)
}

fn check_all(coord: &str, table: &str, acked: &Acked) {
    let c = client(coord);
    let t = c.table_id(table).unwrap();
    let mut bad = Vec::new();
    for (k, (v, ver)) in acked {
        match c.read(t, k) {
            Ok(o) if &o.value == v && o.version == *ver => {}
            Ok(o) => bad.push(format!(
                "{}: read {:?} v{} want {:?} v{ver}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&o.value),
                o.version,
                String::from_utf8_lossy(v)
            )),
            Err(e) => bad.push(format!("{}: {e}", String::from_utf8_lossy(k))),
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} acknowledged writes lost or wrong, e.g. {:?}",
        bad.len(),
        acked.len(),
        &bad[..bad.len().min(5)]
    );
}

struct Cluster {
    coord: String,
    _coord_proc: Proc,
    servers: Vec<(Proc, String)>,
    /// Last: removed once the processes are gone.
    dir: TestDir,
}

fn cluster(tag: &str, servers: usize, extra: &[&str]) -> Cluster {
    let dir = tempdir(tag);
    let (cp, coord) = coordinator(&dir, 0, "coordinator");
    let servers = (1..=servers)
        .map(|i| server_with(&dir, &coord, &format!("server-{i}"), extra))
        .collect();
    Cluster {
        dir,
        coord,
        _coord_proc: cp,
        servers,
    }
}

/// Index of the server that owns most tablets of `table`.
fn busiest(c: &Cluster, table: &str) -> usize {
    use faascache_protocol::msg::coordinator::{GetTableIdRequest, TableNameRequest};
    let mut raw = Raw::new(&c.coord);
    let id = raw
        .coord_call(&GetTableIdRequest(TableNameRequest { name: table }), |r| {
            r.table_id
        })
        .unwrap();
    let tablets = raw.tablets(id);
    (0..c.servers.len())
        .max_by_key(|&i| tablets.iter().filter(|t| t.2 == c.servers[i].1).count())
        .unwrap()
}

fn crash_run(seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let c = cluster("crash", 3, &["--replicas", "1"]);
    client(&c.coord).create_table("crash", 3).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let (coord, stop) = (c.coord.clone(), stop.clone());
            std::thread::spawn(move || writer(coord, "crash", i, seed, stop))
        })
        .collect();
    let victim = busiest(&c, "crash");
    let delay = Duration::from_millis(rng.gen_range(100..800));
    std::thread::sleep(delay);
    let mut c = c;
    eprintln!("seed {seed}: killing server {} after {delay:?}", victim + 1);
    c.servers[victim].0.kill();
    let killed_at = Instant::now();
    // Keep writing through the recovery, then a little after it.
    std::thread::sleep(Duration::from_millis(rng.gen_range(1500..2500)));
    stop.store(true, Ordering::Release);
    let mut acked = Acked::new();
    let mut uncertain = 0;
    for w in writers {
        let (a, u) = w.join().unwrap();
        uncertain += u.len();
        acked.extend(a);
    }
    eprintln!(
        "seed {seed}: {} acknowledged writes ({uncertain} failed); checking {:?} after the kill",
        acked.len(),
        killed_at.elapsed()
    );
    assert!(acked.len() > 50, "too few writes to mean anything");
    check_all(&c.coord, "crash", &acked);
}

#[test]
fn crash_of_a_master_loses_no_acknowledged_write() {
    let runs: u64 = std::env::var("CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let base: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    for r in 0..runs {
        crash_run(base.wrapping_add(r));
    }
}

#[test]
fn lost_backup_is_replaced_and_a_later_master_crash_loses_nothing() {
    // Two servers first (R = 1): every replica of each master's log is on the other one.
    let mut c = cluster("backup", 2, &["--replicas", "1"]);
    let cl = client(&c.coord);
    let t = cl.create_table("b", 1).unwrap();
    let owner = busiest(&c, "b");
    let mut acked = Acked::new();
    let write = |i: u32, acked: &mut Acked| {
        let k = format!("k{i}").into_bytes();
        let v = format!("value-{i}").into_bytes();
        let ver = cl.write(t, &k, &v).expect("write");
        acked.insert(k, (v, ver));
    };
    for i in 0..300 {
        write(i, &mut acked);
    }
    // Two more servers join; then the owner's only backup dies.
    for i in 3..=4 {
        c.servers.push(server_with(
            &c.dir,
            &c.coord,
            &format!("server-{i}"),
            &["--replicas", "1"],
        ));
    }
    let backup = 1 - owner;
    c.servers[backup].0.kill();
    // Acknowledged writes after the loss mean the whole log has a replica again (a sync
    // round covers every segment).
    for i in 300..600 {
        write(i, &mut acked);
    }
    c.servers[owner].0.kill();
    check_all(&c.coord, "b", &acked);
}

#[test]
fn whole_cluster_restart_from_disk_backups_recovers_everything() {
    let dir = tempdir("restart");
    let bdir = |i: usize| dir.join(format!("backup-{i}")).display().to_string();
    let hb = ["--heartbeat-timeout", "2s"];
    let (cp, coord) = coordinator_with(&dir, 0, "coordinator", &hb);
    let start_servers = |coord: &str, gen: &str| -> Vec<(Proc, String)> {
        (1..=3)
            .map(|i| {
                let b = bdir(i);
                server_with(
                    &dir,
                    coord,
                    &format!("server-{gen}-{i}"),
                    &[
                        "--replicas",
                        "1",
                        "--durability",
                        "disk",
                        "--backup-dir",
                        &b,
                    ],
                )
            })
            .collect()
    };
    let servers = start_servers(&coord, "a");
    let cl = client(&coord);
    let t = cl.create_table("r", 3).unwrap();
    let mut acked = Acked::new();
    for i in 0..500u32 {
        let k = format!("k{i}").into_bytes();
        let v = format!("value-{i}").into_bytes();
        let ver = cl.write(t, &k, &v).expect("write");
        acked.insert(k, (v, ver));
    }
    drop(cl);
    // Power loss: everything dies at once.
    drop(servers);
    drop(cp);
    // Restart: the same coordinator storage, new server processes on the same backup dirs.
    let (_cp, coord) = coordinator_with(&dir, 0, "coordinator", &hb);
    let _servers = start_servers(&coord, "b");
    let started = Instant::now();
    check_all(&coord, "r", &acked);
    eprintln!(
        "{} objects back {:?} after the restart",
        acked.len(),
        started.elapsed()
    );
}
