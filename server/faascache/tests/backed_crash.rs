//! Write-back through a master crash, with real processes and moto's S3 server: a coordinator
//! and three servers (`--replicas 2`); a writer overwrites keys of a write-back table; the master
//! owning the table is killed with SIGKILL while it holds dirty objects; after recovery every
//! key's last acknowledged value reaches the store (checked in the store itself after a flush).
//! `CRASH_RUNS` (default 2) repeats it; `scripts/crash-writeback.sh N` runs it N times.

mod cluster_util;

use std::collections::HashMap;
use std::time::Duration;

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use faascache_objstore::{ClientOptions as StoreOptions, GetResult, Settings};
use faascache_protocol::msg::control::GetServerInfoRequest;
use faascache_protocol::msg::faas::{TableBacking, WritePolicy};

fn crash_run(run: u64, env: &faascache_testkit::stores::StoreEnv) {
    let vars = moto_vars(env);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir("backed-crash");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let mut servers: Vec<(Proc, String)> = (1..=3)
        .map(|i| server_env(&dir, &coord, &format!("s{i}"), &["--replicas", "2"], &pairs))
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("crash-{}-{nanos}", std::process::id());
    let url = format!("s3://{}/{prefix}", env.var("FAASCACHE_MOTO_BUCKET"));
    let c = Client::connect_with(
        &coord,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let table = c
        .create_backed_table("wb", 1, &TableBacking::new(&url, WritePolicy::WriteBack))
        .unwrap();
    // Rounds of overwrites: every key's last acknowledged value is what the store must end with.
    let mut last: HashMap<String, Vec<u8>> = HashMap::new();
    for round in 0..4u32 {
        for k in 0..150u32 {
            let key = format!("k/{k}");
            let value = format!("{run}:{round}:{k}:")
                .repeat(1 + (k as usize % 40))
                .into_bytes();
            c.write(table, key.as_bytes(), &value).unwrap();
            last.insert(key, value);
        }
    }
    let mut raw = Raw::new(&coord);
    let owner = raw.tablets(table)[0].2.clone();
    let victim = servers.iter().position(|s| s.1 == owner).unwrap();
    let dirty = faascache_transport::call(&connect(&owner), &GetServerInfoRequest, T, |r| {
        r.cache.dirty_objects
    })
    .unwrap_or(0);
    eprintln!(
        "run {run}: killing the owner (server {}) holding {dirty} dirty objects",
        victim + 1
    );
    servers[victim].0.kill();
    // Recovery: writes and flushes are answered by the recovery master.
    let flushed = eventually(Duration::from_secs(60), || {
        c.flush(table, None, Duration::from_secs(20))
            .map_err(|e| format!("flush: {e}"))
    });
    eprintln!(
        "run {run}: after recovery, flush waited for {} objects",
        flushed.objects
    );
    let settings =
        Settings::from_env_with(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()));
    let store = faascache_objstore::open(&url, &settings, &StoreOptions::default()).unwrap();
    let mut wrong = Vec::new();
    for (key, value) in &last {
        match store.get(key, None).unwrap() {
            GetResult::Found { body, .. } if body.as_ref() == value.as_slice() => {}
            GetResult::Found { body, .. } => wrong.push(format!(
                "{key}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(20)])
            )),
            _ => wrong.push(format!("{key}: missing")),
        }
    }
    assert!(
        wrong.is_empty(),
        "run {run}: {} of {} keys lack their last value in the store: {:?}",
        wrong.len(),
        last.len(),
        &wrong[..wrong.len().min(5)]
    );
    eprintln!(
        "run {run}: PASS, all {} keys hold their last value",
        last.len()
    );
}

#[test]
fn write_back_survives_a_master_crash() {
    let Some(env) = faascache_testkit::stores::moto("write_back_survives_a_master_crash") else {
        return;
    };
    let runs: u64 = std::env::var("CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for r in 0..runs {
        crash_run(r, env);
    }
}
