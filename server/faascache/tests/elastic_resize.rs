//! Live resize under load (issue 18) with a real store (moto's S3 server, started by the test
//! kit): one server started with `--memory 1GiB`, a write-back table holding 384 MiB of clean
//! objects (written through the cache and flushed to the store) and an ephemeral table of 8 MiB
//! (dirty for ever). While a client keeps writing new objects and reading old ones — each value
//! checked byte for byte — `faascache resize` shrinks the server to 256 MiB: the only errors
//! allowed are the documented back-pressure (`WRITE_BACK_FULL`, retried), clean objects are
//! evicted, the server's resident memory drops, reads of evicted objects read through, every
//! write reaches the store, every ephemeral object stays. Then a shrink below what cannot be
//! evicted is refused with the bytes needed (nothing changes), and a grow back to 1 GiB is
//! immediate. The coordinator learns each budget from the server's heartbeats.
//!
//! SKIP without moto unless `FAASCACHE_REQUIRE` names `moto`.

mod cluster_util;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster_util::*;
use faascache_client::{Client, ClientOptions, Error};
use faascache_objstore::{ClientOptions as StoreOptions, GetResult, Settings};
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;
const OBJECT: usize = 64 << 10;
const CLEAN: usize = 384 * (MIB as usize) / OBJECT;
const EPHEMERAL: usize = 8 * (MIB as usize) / OBJECT;

fn body(table: &str, i: usize) -> Vec<u8> {
    let tag = format!("{table}/{i}:");
    tag.bytes().cycle().take(OBJECT).collect()
}

/// Write with the documented back-pressure retried; any other error fails the test.
fn write_retrying(
    c: &Client,
    table: faascache_client::TableId,
    key: &str,
    value: &[u8],
    pushed_back: &AtomicU64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.write(table, key.as_bytes(), value) {
            Ok(_) => return,
            Err(Error::WriteBackFull(_)) if Instant::now() < deadline => {
                pushed_back.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("write {key}: {e}"),
        }
    }
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--coordinator")
        .arg(
            std::fs::read_to_string(dir.join("coord.locator"))
                .unwrap()
                .trim(),
        )
        .output()
        .unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), s(&out.stdout), s(&out.stderr))
}

/// Every object reads back (evicted ones through the store), the store has every write, the
/// ephemeral table is whole.
fn nothing_lost(
    c: &Client,
    (wb, eph): (faascache_client::TableId, faascache_client::TableId),
    total: usize,
    url: &str,
    vars: &[(&str, String)],
) {
    c.flush(wb, None, Duration::from_secs(300)).unwrap();
    let settings =
        Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(url, &settings, &StoreOptions::default()).unwrap();
    for i in (0..total).step_by(7).chain(CLEAN..total) {
        let key = format!("obj/{i}");
        let o = c.read(wb, key.as_bytes()).unwrap();
        assert!(
            o.value == body("wb", i),
            "{key} has wrong bytes in the cache"
        );
        match store.get(&key, None) {
            Ok(GetResult::Found { body: b, .. }) => {
                assert!(
                    b.as_ref() == body("wb", i).as_slice(),
                    "{key}: wrong bytes in the store"
                )
            }
            other => panic!("{key} not in the store: {other:?}"),
        }
    }
    for i in 0..EPHEMERAL {
        let o = c.read(eph, format!("e/{i}").as_bytes()).unwrap();
        assert!(o.value == body("eph", i), "ephemeral e/{i} lost or wrong");
    }
}

/// A shrink below what may not be evicted and a grow above `--max-memory` are refused with
/// their reasons and change nothing; a grow is immediate; an unknown server is named.
fn refusals_then_grow(c: &Client, dir: &std::path::Path, loc: &str) {
    // Below what may not be evicted (8 MiB of ephemeral objects, the cleaner's reserve and a
    // head): refused with the reason; the budget stays.
    let (ok, _, err) = cli(dir, &["resize", loc, "32MiB"]);
    assert!(!ok, "a shrink below the unevictable data succeeded");
    assert!(err.contains("refused") && err.contains("needed"), "{err}");
    assert_eq!(c.server_stats(loc).unwrap().budget_bytes, 256 << 20);
    // Above --max-memory: refused, saying which flag.
    let (ok, _, err) = cli(dir, &["resize", "1", "2GiB"]);
    assert!(!ok && err.contains("--max-memory"), "{err}");
    // Growing is immediate.
    let r = c.resize_server("1", 1 << 30).unwrap();
    eprintln!("grow 256 MiB -> 1 GiB: server time {:?}", r.server_time);
    assert_eq!(r.budget_bytes, 1 << 30);
    assert!(r.server_time < Duration::from_millis(100), "{r:?}");
    // An unknown server is a clear error.
    let (ok, _, err) = cli(dir, &["resize", "9.9", "1GiB"]);
    assert!(!ok && err.contains("no server \"9.9\""), "{err}");
}

#[test]
fn shrink_under_load_evicts_clean_objects_only_and_grows_back_at_once() {
    let Some(env) = faascache_testkit::stores::moto("shrink_under_load") else {
        return;
    };
    let vars = moto_vars(env);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir("elastic-resize");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    std::fs::write(dir.join("coord.locator"), &coord).unwrap();
    let lf = dir.join("s1.locator");
    #[rustfmt::skip]
    let args = [
        "server", "--coordinator", &coord, "--memory", "1GiB", "--max-memory", "1GiB",
        "--replicas", "0", "--poll", "block", "--no-pin", "--listen",
        "tcp:host=127.0.0.1,port=0", "--locator-file", lf.to_str().unwrap(),
    ];
    let mut sp = faascache_launch::Launch::new("s1", BIN, dir.join("s1.log"))
        .args(args)
        .envs(pairs.iter().copied())
        .spawn()
        .unwrap();
    let loc = wait_up(&mut sp, &lf, T);
    let url = format!(
        "s3://{}/resize-{}-{}",
        env.var("FAASCACHE_MOTO_BUCKET"),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let c = Client::connect_with(
        &coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let wb = c
        .create_backed_table("wb", 1, &TableBacking::new(&url, WritePolicy::WriteBack))
        .unwrap();
    let eph = c
        .create_backed_table("eph", 1, &TableBacking::new("", WritePolicy::Ephemeral))
        .unwrap();
    let pushed_back = AtomicU64::new(0);
    let t = Instant::now();
    for i in 0..CLEAN {
        write_retrying(&c, wb, &format!("obj/{i}"), &body("wb", i), &pushed_back);
    }
    for i in 0..EPHEMERAL {
        write_retrying(&c, eph, &format!("e/{i}"), &body("eph", i), &pushed_back);
    }
    c.flush(wb, None, Duration::from_secs(300)).unwrap();
    let before = c.server_stats(&loc).unwrap();
    let rss_before = rss_bytes(sp.pid()) as u64;
    eprintln!(
        "{CLEAN} objects written and flushed in {:.1} s; live {} MiB of {} MiB; RSS {} MiB",
        t.elapsed().as_secs_f64(),
        before.live_bytes / MIB,
        before.budget_bytes / MIB,
        rss_before / MIB
    );
    assert_eq!(before.budget_bytes, 1 << 30);

    // The load: new objects written, old ones read and checked, until told to stop.
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    let (report, shrink_wall) = std::thread::scope(|s| {
        s.spawn(|| {
            let c = Client::connect(&coord).unwrap();
            let mut rng = rand::rngs::SmallRng::seed_from_u64(18);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let i = CLEAN + n;
                write_retrying(&c, wb, &format!("obj/{i}"), &body("wb", i), &pushed_back);
                n += 1;
                written.store(n as u64, Ordering::Relaxed);
                for _ in 0..4 {
                    let j = rng.gen_range(0..CLEAN + n);
                    let o = c
                        .read(wb, format!("obj/{j}").as_bytes())
                        .unwrap_or_else(|e| panic!("read obj/{j}: {e}"));
                    assert!(o.value == body("wb", j), "obj/{j} has wrong bytes");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let (ok, out, err) = cli(&dir, &["resize", "1", "256MiB", "--json"]);
        let wall = t.elapsed();
        if ok {
            std::thread::sleep(Duration::from_millis(1500));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(ok, "resize failed: {err}");
        (
            serde_json::from_str::<serde_json::Value>(out.trim()).unwrap(),
            wall,
        )
    });
    let after = c.server_stats(&loc).unwrap();
    let rss_after = rss_bytes(sp.pid()) as u64;
    eprintln!(
        "shrink 1 GiB -> 256 MiB under load: {report}; wall {:.1} ms; RSS {} -> {} MiB; {} writes \
         ({} pushed back), {} checked reads meanwhile",
        shrink_wall.as_secs_f64() * 1000.0,
        rss_before / MIB,
        rss_after / MIB,
        written.load(Ordering::Relaxed),
        pushed_back.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    assert_eq!(report["budget_bytes"], 256 << 20);
    assert!(report["evicted_objects"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(after.budget_bytes, 256 << 20);
    assert!(after.cache.evicted > before.cache.evicted);
    assert!(
        rss_after + 300 * MIB < rss_before,
        "resident memory did not drop: {} -> {} MiB",
        rss_before / MIB,
        rss_after / MIB
    );
    assert!(reads.load(Ordering::Relaxed) > 0 && written.load(Ordering::Relaxed) > 0);
    // The coordinator learns the new budget from the next heartbeat.
    eventually(Duration::from_secs(10), || {
        let b = c.find_server("1").map_err(|e| e.to_string())?.budget_bytes;
        if b == 256 << 20 {
            Ok(())
        } else {
            Err(format!("the coordinator still says {b} bytes"))
        }
    });

    let total = CLEAN + written.load(Ordering::Relaxed) as usize;
    nothing_lost(&c, (wb, eph), total, &url, &vars);

    refusals_then_grow(&c, &dir, &loc);
}
