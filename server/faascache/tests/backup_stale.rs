//! A stale replica is never recovered (issue 15, replica epochs), with real processes on
//! loopback.
//!
//! Four servers with `--replicas 1` and replica files (`--backup-dir`). The master M writes;
//! its head's one replica is on backup X. X is frozen (SIGSTOP): M gives up on it after one
//! round deadline, re-replicates the head on Y, raises its replica epoch, writes it to Y, records
//! it at the coordinator and acknowledges the writes made meanwhile — which X's copy lacks. X is
//! then killed and restarted on its replica files: it is up again, holding the stale open copy
//! of M's head. Now M and Y are killed together (beyond what R = 1 survives: the only complete
//! copy is gone); X and the fourth server W remain, enough for a recovery. Before replica
//! epochs, recovery took X's stale copy for M's log and the table came back without the
//! acknowledged writes — reads said "no such object". Now X leaves the stale copy out of its
//! listing, recovery finds no log and waits (the writes may come back with Y's files), and no
//! read ever answers that an acknowledged write does not exist.

mod cluster_util;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_protocol::msg::control::GetServerInfoRequest;
use faascache_protocol::msg::master::ReadRequest;
use faascache_protocol::msg::RejectRules;
use faascache_transport::{call, CallError, Status};

const VALUE: [u8; 200] = [9u8; 200];
/// How long reads are watched after M and Y are killed: detection (2 s heartbeat timeout) plus
/// the master-lease wait plus a recovery, with room to spare on a loaded machine.
const WATCH: Duration = Duration::from_secs(15);

fn start(dir: &Path, cloc: &str, name: &str, bdir: &Path) -> (Proc, String) {
    server_with(
        dir,
        cloc,
        name,
        &["--replicas", "1", "--backup-dir", bdir.to_str().unwrap()],
    )
}

#[test]
fn a_stale_replica_is_never_recovered() {
    let dir = tempdir("backup-stale");
    let (_coord, cloc) =
        coordinator_with(dir.path(), 0, "coordinator", &["--heartbeat-timeout", "2s"]);
    let mut servers: Vec<(Option<Proc>, String, PathBuf)> = Vec::new();
    for i in 1..=4 {
        let bdir = dir.path().join(format!("replicas-{i}"));
        let (p, loc) = start(dir.path(), &cloc, &format!("server-{i}"), &bdir);
        servers.push((Some(p), loc, bdir));
    }
    let mut c = Raw::new(&cloc);
    let table = c.create_table("stale", 1);
    let owner = c.tablets(table)[0].2.clone();
    let m = servers.iter().position(|s| s.1 == owner).unwrap();
    let m_id = call(&connect(&owner), &GetServerInfoRequest, T, |r| r.server_id)
        .unwrap()
        .0;
    for i in 0..200 {
        c.write(table, format!("w{i}").as_bytes(), &VALUE).unwrap();
    }
    // X: the backup whose files hold M's head (memory durability writes files soon after).
    let x = eventually(T, || {
        (0..4)
            .find(|&i| i != m && holds_replica_of(&servers[i].2, m_id))
            .ok_or_else(|| "no replica file of the master yet".to_string())
    });
    // Let X's flusher write the warm-up writes to its file, then freeze it.
    std::thread::sleep(Duration::from_millis(500));
    signal(servers[x].0.as_ref().unwrap(), "-STOP");
    // Writes while X is frozen: the first waits one round deadline, then all go to Y.
    let t = Instant::now();
    let mut acked = Vec::new();
    for i in 0..100 {
        let key = format!("p{i}");
        c.write(table, key.as_bytes(), &VALUE).unwrap();
        acked.push(key);
    }
    eprintln!("100 writes with X frozen took {:?}", t.elapsed());
    // Y: where M re-replicated its head.
    let y = eventually(T, || {
        (0..4)
            .find(|&i| i != m && i != x && holds_replica_of(&servers[i].2, m_id))
            .ok_or_else(|| "no new replica file of the master yet".to_string())
    });
    let mlog = dir.path().join(format!("server-{}.log", m + 1));
    eventually(T, || {
        let log = std::fs::read_to_string(&mlog).unwrap_or_default();
        if log.contains("replica epoch recorded") {
            Ok(())
        } else {
            Err(format!(
                "M has not recorded a replica epoch: {}",
                mlog.display()
            ))
        }
    });
    // Let Y's flusher write the acknowledged writes to its files (memory durability).
    std::thread::sleep(Duration::from_millis(500));
    // X comes back from its files (a new process, a new server id), with the stale copy.
    drop(servers[x].0.take()); // SIGKILL (works on a stopped process) and reap
    let xdir = servers[x].2.clone();
    let (px, _) = start(dir.path(), &cloc, "server-x-again", &xdir);
    servers[x].0 = Some(px);
    // M and Y die together.
    drop(servers[m].0.take());
    drop(servers[y].0.take());
    let killed = Instant::now();
    // Until WATCH: a read either cannot be served (recovery waits) or returns the value; it
    // never says that an acknowledged write does not exist.
    let mut served = 0u32;
    let mut waiting = 0u32;
    while killed.elapsed() < WATCH {
        for key in [&acked[0], &acked[99], &"w0".to_string()] {
            let req = ReadRequest {
                table,
                rules: RejectRules::NONE,
                key: key.as_bytes(),
            };
            match c.keyed(
                table,
                key.as_bytes(),
                &req,
                Duration::from_millis(300),
                |r| r.value.to_vec(),
            ) {
                Ok(v) => {
                    assert_eq!(v, VALUE.to_vec(), "{key}");
                    served += 1;
                }
                Err(CallError::Failed(f)) if f.status == Status::OBJECT_DOESNT_EXIST => {
                    panic!(
                        "acknowledged write {key} reads as missing {:?} after M and Y were killed: recovery replayed X's stale replica",
                        killed.elapsed()
                    )
                }
                Err(_) => waiting += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let clog = std::fs::read_to_string(dir.path().join("coordinator.log")).unwrap_or_default();
    let xlog = std::fs::read_to_string(dir.path().join("server-x-again.log")).unwrap_or_default();
    eprintln!("{served} reads served, {waiting} not served in {WATCH:?}");
    assert!(
        xlog.contains("stale open replica"),
        "X did not leave its stale replica out:\n{xlog}"
    );
    assert!(
        clog.contains("recovery waits"),
        "the coordinator did not wait for M's log:\n{clog}"
    );
    // Y comes back from its files, with the current copy (epoch 1): recovery completes, and
    // every acknowledged write is there.
    let ydir = servers[y].2.clone();
    let (py, _) = start(dir.path(), &cloc, "server-y-again", &ydir);
    servers[y].0 = Some(py);
    let back = Instant::now();
    for key in acked
        .iter()
        .chain((0..200).map(|i| format!("w{i}")).collect::<Vec<_>>().iter())
    {
        let (_, v) = c
            .read(table, key.as_bytes())
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert_eq!(v, VALUE.to_vec(), "{key}");
    }
    eprintln!(
        "Y restarted: all 300 acknowledged writes read back {:?} later",
        back.elapsed()
    );
}
