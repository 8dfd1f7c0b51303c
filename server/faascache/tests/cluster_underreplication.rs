//! Fewer backups than `--replicas` (real processes on 127.0.0.1): three servers with R = 2
//! survive the kill of any one of them. After the kill each survivor has one other backup, so
//! its log is kept on one replica instead of two (under-replicated) rather than never
//! acknowledged: the killed master's tablets are recovered, every acknowledged write reads back,
//! writes go on, and `faascache status` says which masters are under-replicated and why. When a
//! fourth server joins, the masters re-replicate to R = 2 and `status` clears.

mod cluster_util;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use serde_json::Value;

/// Acknowledged writes: key → (value, version).
type Acked = HashMap<Vec<u8>, (Vec<u8>, u64)>;

const R: &[&str] = &["--replicas", "2"];

fn client(coord: &str) -> Client {
    Client::connect_with(
        coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .expect("client connects")
}

fn write_keys(c: &Client, t: u64, range: std::ops::Range<u32>, acked: &mut Acked) {
    for i in range {
        let k = format!("k{i}").into_bytes();
        let v = format!("value-{i}").into_bytes();
        let ver = c
            .write(t, &k, &v)
            .unwrap_or_else(|e| panic!("write k{i}: {e}"));
        acked.insert(k, (v, ver));
    }
}

fn check_all(c: &Client, t: u64, acked: &Acked) {
    let mut bad = Vec::new();
    for (k, (v, ver)) in acked {
        match c.read(t, k) {
            Ok(o) if &o.value == v && o.version == *ver => {}
            Ok(o) => bad.push(format!(
                "{}: read {:?} v{}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&o.value),
                o.version
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

fn status_json(coord: &str) -> Value {
    let out = Command::new(BIN)
        .args(["status", "--coordinator", coord, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_text(coord: &str) -> String {
    let out = Command::new(BIN)
        .args(["status", "--coordinator", coord])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The up masters of `status --json`: (locator, under-replicated, replication line).
fn masters(v: &Value) -> Vec<(String, bool, String)> {
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "up")
        .map(|s| {
            (
                s["locator"].as_str().unwrap().to_string(),
                s["under_replicated"].as_bool().unwrap_or(false),
                s["replication"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Three servers with R = 2, a one-tablet table; kill server `victim` (0-based); returns the
/// time from the kill until the table's first key read back.
fn kill_one_of_three(victim: usize) -> Duration {
    let dir = tempdir("underrep");
    let (_cp, coord) = coordinator(&dir, 0, "coordinator");
    let mut servers: Vec<(Proc, String)> = (1..=3)
        .map(|i| server_with(&dir, &coord, &format!("server-{i}"), R))
        .collect();
    let c = client(&coord);
    let t = c.create_table("u", 1).unwrap();
    let mut acked = Acked::new();
    write_keys(&c, t, 0..300, &mut acked);
    let owner = Raw::new(&coord).tablets(t)[0].2.clone();
    let kind = if servers[victim].1 == owner {
        "the table's master"
    } else {
        "a server that is not the table's master"
    };
    // Fully replicated before the kill (once every master has seen the other two enlist).
    eventually(Duration::from_secs(20), || {
        let v = status_json(&coord);
        let m = masters(&v);
        (m.len() == 3 && m.iter().all(|x| !x.1))
            .then_some(())
            .ok_or(format!("{v}"))
    });

    servers[victim].0.kill();
    let killed = Instant::now();
    let readable = eventually(Duration::from_secs(60), || {
        c.read(t, b"k0")
            .map(|_| killed.elapsed())
            .map_err(|e| e.to_string())
    });
    eprintln!(
        "killed server-{} ({kind}): table readable {readable:?} after the kill",
        victim + 1
    );
    check_all(&c, t, &acked);
    // Writes go on with one replica per segment.
    write_keys(&c, t, 300..400, &mut acked);
    check_all(&c, t, &acked);

    // `status` says both survivors are under-replicated, and why.
    eventually(Duration::from_secs(20), || {
        let v = status_json(&coord);
        let m = masters(&v);
        let ok = m.len() == 2
            && m.iter()
                .all(|x| x.1 && x.2.contains("R=2") && x.2.contains("1 other backup"));
        ok.then_some(()).ok_or(format!("{v}"))
    });
    let text = status_text(&coord);
    assert!(
        text.contains("UNDER-REPLICATED") && text.contains("under-replicated"),
        "{text}"
    );

    // A fourth server joins: every master is back to two replicas per segment.
    servers.push(server_with(&dir, &coord, "server-4", R));
    eventually(Duration::from_secs(30), || {
        let v = status_json(&coord);
        let m = masters(&v);
        let ok = m.len() == 3
            && m.iter()
                .all(|x| !x.1 && x.2.starts_with("2 replicas per segment"));
        ok.then_some(()).ok_or(format!("{v}"))
    });
    assert!(!status_text(&coord).contains("UNDER-REPLICATED"));
    write_keys(&c, t, 400..450, &mut acked);
    check_all(&c, t, &acked);
    readable
}

#[test]
fn three_servers_with_r2_survive_the_kill_of_any_one() {
    let times: Vec<Duration> = (0..3).map(kill_one_of_three).collect();
    eprintln!("kill → table readable: {times:?}");
}
