//! Exactly-once across a master crash, with real processes on 127.0.0.1: counters incremented
//! by tracked clients while the master holding them is killed with SIGKILL count every
//! increment once. A retry of an increment the crashed master ran (its reply lost with it) is
//! answered by the recovery master from the replayed completion record, not run again.
//!
//! `CRASH_RUNS` (default 2) repeats it with different kill timing; `scripts/crash-loop.sh
//! exactly-once` runs many. The seed of each run is printed.

mod cluster_util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use rand::{Rng, SeedableRng};

/// Concurrent incrementers, each on its own counter.
const COUNTERS: usize = 6;

fn client(coord: &str) -> Client {
    Client::connect_with(
        coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .expect("client connects")
}

/// What one incrementer saw: the values its acknowledged increments returned, and how many
/// failed (outcome unknown).
struct Seen {
    returned: Vec<i64>,
    failed: usize,
}

fn incrementer(coord: String, id: usize, stop: Arc<AtomicBool>) -> Seen {
    let c = client(&coord);
    let t = c.table_id("eo").unwrap();
    let key = format!("counter-{id}").into_bytes();
    let mut seen = Seen {
        returned: Vec::new(),
        failed: 0,
    };
    while !stop.load(Ordering::Acquire) {
        match c.increment_i64(t, &key, 1) {
            Ok((v, _)) => seen.returned.push(v),
            Err(e) => {
                eprintln!("incrementer {id}: increment failed (outcome unknown): {e}");
                seen.failed += 1;
            }
        }
    }
    seen
}

fn crash_run(seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let dir = tempdir("eo-crash");
    let (_cp, coord) = coordinator(&dir, 0, "coordinator");
    let mut servers: Vec<(Proc, String)> = (1..=3)
        .map(|i| server_with(&dir, &coord, &format!("server-{i}"), &["--replicas", "1"]))
        .collect();
    client(&coord).create_table("eo", 3).unwrap();
    // The victim: the server owning most of the table.
    let victim = {
        let mut raw = Raw::new(&coord);
        use faascache_protocol::msg::coordinator::{GetTableIdRequest, TableNameRequest};
        let id = raw
            .coord_call(&GetTableIdRequest(TableNameRequest { name: "eo" }), |r| {
                r.table_id
            })
            .unwrap();
        let tablets = raw.tablets(id);
        (0..servers.len())
            .max_by_key(|&i| tablets.iter().filter(|t| t.2 == servers[i].1).count())
            .unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..COUNTERS)
        .map(|i| {
            let (coord, stop) = (coord.clone(), stop.clone());
            std::thread::spawn(move || incrementer(coord, i, stop))
        })
        .collect();
    let delay = Duration::from_millis(rng.gen_range(200..900));
    std::thread::sleep(delay);
    eprintln!("seed {seed}: killing server {} after {delay:?}", victim + 1);
    servers[victim].0.kill();
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(rng.gen_range(1500..2500)));
    stop.store(true, Ordering::Release);
    let seen: Vec<Seen> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let c = client(&coord);
    let t = c.table_id("eo").unwrap();
    let mut total = 0;
    let mut bad = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        total += s.returned.len();
        let key = format!("counter-{i}").into_bytes();
        let stored = c
            .read(t, &key)
            .map(|o| i64::from_le_bytes(o.value.as_slice().try_into().expect("8 bytes")))
            .unwrap_or(0);
        // Every acknowledged increment counted once: the returned values are 1, 2, 3, ...
        // with no gap (a gap is an increment run twice) and the stored value is the last one —
        // unless some increment failed, whose outcome is unknown (at most once each).
        let n = s.returned.len() as i64;
        let consecutive = s.returned.iter().zip(1..).all(|(&v, want)| v == want);
        if s.failed == 0 && (!consecutive || stored != n) {
            bad.push(format!(
                "counter {i}: {n} acknowledged increments, stored {stored}, first gap at {:?}",
                s.returned.iter().zip(1..).find(|(&v, w)| v != *w)
            ));
        }
        if s.failed > 0 && !(n..=n + s.failed as i64).contains(&stored) {
            bad.push(format!(
                "counter {i}: {n} acknowledged and {} failed increments, stored {stored}",
                s.failed
            ));
        }
    }
    eprintln!(
        "seed {seed}: {total} acknowledged increments on {COUNTERS} counters; checked {:?} after the kill",
        killed_at.elapsed()
    );
    let answered = servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(i, _)| {
            std::fs::read_to_string(dir.join(format!("server-{}.log", i + 1)))
                .unwrap_or_default()
                .matches("answered a retry from a recovered completion record")
                .count()
        })
        .sum::<usize>();
    eprintln!("seed {seed}: {answered} retries answered from recovered completion records");
    assert!(total > 100, "too few increments to mean anything");
    assert!(
        bad.is_empty(),
        "increments not counted exactly once: {bad:?}"
    );
}

#[test]
fn increments_retried_around_a_master_crash_count_once() {
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
