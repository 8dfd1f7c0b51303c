//! Write-back through a master crash, with real processes and moto's S3 server: a coordinator
//! and three servers (`--replicas 2`); a writer overwrites keys of a write-back table; the master
//! owning the table is killed with SIGKILL while it holds dirty objects; after recovery every
//! key's last acknowledged value reaches the store (checked in the store itself after a flush).
//! Large objects too (written in chunks and committed, 1.5–2.5 MiB), and two large writes the
//! crash cut between their chunks and their commits: one is committed at the recovery master
//! (its chunks were replayed) and reaches the store whole; the other's chunks are removed after
//! the servers' `--orphan-chunk-age` (its late commit then finds them missing).
//! `CRASH_RUNS` (default 2) repeats it; `scripts/crash-writeback.sh N` runs it N times.

mod cluster_util;

use std::collections::HashMap;
use std::time::Duration;

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use faascache_objstore::{ClientOptions as StoreOptions, GetResult, Settings};
use faascache_protocol::msg::common::{ExactlyOnce, RejectRules};
use faascache_protocol::msg::control::GetServerInfoRequest;
use faascache_protocol::msg::faas::{ObjectMeta, TableBacking, WritePolicy};
use faascache_protocol::msg::large::{
    CommitObjectRequest, WriteObjectChunkRequest, MAX_CHUNK_DATA,
};
use faascache_transport::{CallError, Status};

fn crash_run(run: u64, env: &faascache_testkit::stores::StoreEnv) {
    let vars = moto_vars(env);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempdir("backed-crash");
    let (_cp, coord) = coordinator_tcp(&dir, 0, "coordinator");
    let mut servers: Vec<(Proc, String)> = (1..=3)
        .map(|i| {
            let extra = ["--replicas", "2", "--orphan-chunk-age", "4s"];
            server_env(&dir, &coord, &format!("s{i}"), &extra, &pairs)
        })
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
    // Large objects, overwritten once: the last value of each must reach the store whole.
    for round in 0..2usize {
        for k in 0..3usize {
            let key = format!("big/{k}");
            let len = (3 << 19) + k * (1 << 19) + round;
            let value: Vec<u8> = (0..len)
                .map(|i| (i * 7 + k + run as usize + round) as u8)
                .collect();
            c.write(table, key.as_bytes(), &value).unwrap();
            last.insert(key, value);
        }
    }
    let mut raw = Raw::new(&coord);
    // Two large writes cut by the crash: two chunks each, no commit.
    let cut = |i: u64| Cut {
        table,
        key: format!("big/cut{i}"),
        object_id: 0x0bad_cafe_u64 + 2 * run + i,
    };
    for i in 0..2 {
        cut(i).write_chunks(&mut raw);
    }
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
    let killed = std::time::Instant::now();
    // The first cut write committed at the recovery master, from the replayed chunks.
    cut(0)
        .commit(&mut raw, Duration::from_secs(60))
        .expect("commit after recovery");
    last.insert(cut(0).key, cut(0).value());
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
    // The other's chunks, replayed dirty and tracked, were removed after the orphan age: its
    // commit finds them missing and changes nothing.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(killed.elapsed()));
    let refused = eventually(Duration::from_secs(20), || {
        match cut(1).commit(&mut raw, T) {
            Err(CallError::Failed(f)) if f.detail.contains("missing") => Ok(f),
            other => Err(format!("the cut write's chunks are still there: {other:?}")),
        }
    });
    assert_eq!(
        refused.status,
        Status::REQUEST_FORMAT_ERROR,
        "{}",
        refused.detail
    );
    assert!(
        c.read(table, cut(1).key.as_bytes()).is_err(),
        "no object from the cut write"
    );
    eprintln!(
        "run {run}: PASS, all {} keys (one a large write committed after recovery) hold their last value; the abandoned large write left nothing",
        last.len()
    );
}

/// A large write of two chunks that a crash cuts before its commit.
struct Cut {
    table: u64,
    key: String,
    object_id: u64,
}

impl Cut {
    fn chunk(index: u32) -> Vec<u8> {
        vec![index as u8 + 1; MAX_CHUNK_DATA as usize]
    }

    fn value(&self) -> Vec<u8> {
        [Cut::chunk(0), Cut::chunk(1)].concat()
    }

    fn write_chunks(&self, raw: &mut Raw) {
        for index in 0..2 {
            let data = Cut::chunk(index);
            let req = WriteObjectChunkRequest {
                table: self.table,
                key: self.key.as_bytes(),
                object_id: self.object_id,
                index,
                data: &data,
            };
            raw.keyed(self.table, self.key.as_bytes(), &req, T, |r| r.version)
                .unwrap();
        }
    }

    fn commit(&self, raw: &mut Raw, timeout: Duration) -> Result<u64, CallError> {
        let req = CommitObjectRequest {
            table: self.table,
            rpc: ExactlyOnce::UNTRACKED,
            rules: RejectRules::NONE,
            key: self.key.as_bytes(),
            meta: ObjectMeta::default(),
            total_len: 2 * MAX_CHUNK_DATA as u64,
            chunk_len: MAX_CHUNK_DATA,
            chunks: 2,
            object_id: self.object_id,
        };
        raw.keyed(self.table, self.key.as_bytes(), &req, timeout, |r| {
            r.version
        })
    }
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
