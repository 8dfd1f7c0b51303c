//! The read path of backed tables, in process: a master served on loopback TCP whose backed
//! table's store is an injected `Faulty<MemoryStore>` (the registry's test hooks), driven over
//! real RPCs. Read-through, single flight, negative cache, revalidation, admission, large
//! objects in chunks, invalidation, store errors.

use std::sync::Arc;
use std::time::Duration;

use faascache_objstore::{Fault, Faulty, MemoryStore, ObjectStore, Op, PutMeta, Settings};
use faascache_protocol::msg::common::chunk_key;
use faascache_protocol::msg::common::{ExactlyOnce, RejectRules};
use faascache_protocol::msg::control::{
    DropTabletOwnershipRequest, TabletRange, TakeTabletOwnershipRequest,
};
use faascache_protocol::msg::faas::{
    InvalidateRequest, ObjectMeta, ReadObjectRequest, TableBacking, WritePolicy,
    MAX_READ_OBJECT_PIECE,
};
use faascache_protocol::msg::master::{MultiReadItem, MultiReadRequest, ReadRequest, WriteRequest};
use faascache_server::backed::envelope::{self, Kind};
use faascache_server::backed::registry::FixedConfigs;
use faascache_server::backed::BackedTables;
use faascache_server::master::{Master, MasterService};
use faascache_storage::{Engine, EngineConfig};
use faascache_transport::{
    call, connect, serve, CallError, ClientConfig, DispatchConfig, DispatchHandler, ServerHandle,
    Session, Status,
};

const TABLE: u64 = 1;
const MISSING: u64 = 2;
const SCRATCH: u64 = 3;
const URL: &str = "s3://bucket/prefix";

struct Rig {
    master: Arc<Master>,
    _server: ServerHandle,
    session: Session,
    store: Arc<Faulty<Arc<dyn ObjectStore>>>,
}

fn rig(memory: usize, backing: TableBacking) -> Rig {
    rig_on(memory, backing, Arc::new(MemoryStore::new("mem")))
}

/// A master whose table `TABLE` is backed by `store` (counted and faulted by a `Faulty`).
fn rig_on(memory: usize, backing: TableBacking, store: Arc<dyn ObjectStore>) -> Rig {
    let fixed = Arc::new(FixedConfigs::default());
    let backing_url = backing.url.clone();
    fixed.insert(TABLE as u32, "t", Some(backing));
    fixed.insert(
        MISSING as u32,
        "m",
        Some(TableBacking::new("s3://nobucket", WritePolicy::WriteBack)),
    );
    fixed.insert(
        SCRATCH as u32,
        "s",
        Some(TableBacking::new("", WritePolicy::Ephemeral)),
    );
    let backed = BackedTables::new(Settings::default(), Some(fixed));
    let store = Arc::new(Faulty::new(store));
    backed.inject_store(&backing_url, store.clone());
    backed.inject_store(
        "s3://nobucket",
        Arc::new(MemoryStore::missing_bucket("nobucket")),
    );
    let engine = Engine::new(EngineConfig::with_memory(memory)).unwrap();
    let master = Arc::new(Master::new(engine, "tcp", "spin").with_backed(backed));
    let server = serve(
        &"tcp:host=127.0.0.1,port=0".parse().unwrap(),
        Arc::new(DispatchHandler(MasterService {
            master: master.clone(),
        })),
        DispatchConfig {
            cores: 2,
            pin: false,
            ..DispatchConfig::default()
        },
    )
    .unwrap();
    let session = session_to(&server);
    for table_id in [TABLE, MISSING, SCRATCH] {
        let r = TakeTabletOwnershipRequest(TabletRange {
            table_id,
            start_hash: 0,
            end_hash: u64::MAX,
        });
        call(&session, &r, Duration::from_secs(5), |_| ()).unwrap();
    }
    assert!(master.backed.is_backed(TABLE as u32));
    Rig {
        master,
        _server: server,
        session,
        store,
    }
}

fn session_to(server: &ServerHandle) -> Session {
    connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .unwrap()
}

fn backing(f: impl FnOnce(&mut TableBacking)) -> TableBacking {
    let mut b = TableBacking::new(URL, WritePolicy::WriteBack);
    f(&mut b);
    b
}

const T: Duration = Duration::from_secs(20);

type Answer<X> = Result<X, (Status, String)>;

fn failed(e: CallError) -> (Status, String) {
    match e {
        CallError::Failed(f) => (f.status, f.detail),
        e => panic!("transport failure: {e}"),
    }
}

fn read_on(s: &Session, table: u64, key: &[u8]) -> Answer<Vec<u8>> {
    let r = ReadRequest {
        table,
        rules: RejectRules::NONE,
        key,
    };
    call(s, &r, T, |r| r.value.to_vec()).map_err(failed)
}

fn read(rig: &Rig, key: &[u8]) -> Answer<Vec<u8>> {
    read_on(&rig.session, TABLE, key)
}

fn piece(
    rig: &Rig,
    key: &[u8],
    offset: u64,
    max_len: u32,
) -> Answer<(u64, u64, ObjectMeta, Vec<u8>)> {
    let r = ReadObjectRequest {
        table: TABLE,
        rules: RejectRules::NONE,
        key,
        offset,
        max_len,
    };
    call(&rig.session, &r, T, |r| {
        (r.version, r.total_len, r.meta, r.data.to_vec())
    })
    .map_err(failed)
}

fn whole(rig: &Rig, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (_, total, _, data) = piece(rig, key, out.len() as u64, MAX_READ_OBJECT_PIECE).unwrap();
        out.extend_from_slice(&data);
        if out.len() as u64 >= total || data.is_empty() {
            return out;
        }
    }
}

fn put(rig: &Rig, key: &str, body: Vec<u8>) {
    let meta = PutMeta {
        content_type: Some("text/x-test".into()),
        ..PutMeta::default()
    };
    rig.store.inner().put(key, body.into(), &meta).unwrap();
}

fn gets(rig: &Rig) -> u64 {
    rig.store.calls()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

fn write_dirty(rig: &Rig, key: &[u8], value: &[u8]) {
    let r = WriteRequest {
        table: TABLE,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::NONE,
        key,
        value,
    };
    call(&rig.session, &r, T, |_| ()).unwrap();
}

fn invalidate(rig: &Rig, key: &[u8], prefix: bool) -> (u64, u64) {
    let r = InvalidateRequest {
        table: TABLE,
        prefix,
        key,
    };
    call(&rig.session, &r, T, |r| (r.invalidated, r.kept_dirty)).unwrap()
}

#[test]
fn miss_reads_through_once_then_hits_with_metadata() {
    let rig = rig(32 << 20, backing(|_| {}));
    put(&rig, "a/1", b"hello".to_vec());
    assert_eq!(read(&rig, b"a/1").unwrap(), b"hello");
    assert_eq!(gets(&rig), 1);
    assert_eq!(read(&rig, b"a/1").unwrap(), b"hello");
    let (version, total, meta, data) = piece(&rig, b"a/1", 1, 3).unwrap();
    assert_eq!((total, data.as_slice()), (5, &b"ell"[..]));
    assert!(version > 0);
    assert_eq!(meta.content_type, "text/x-test");
    assert!(!meta.etag.is_empty());
    assert_eq!(gets(&rig), 1, "hits must not ask the store");
    let c = &rig.master.counters;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!((c.misses.load(Relaxed), c.hits.load(Relaxed)), (1, 2));
    // Empty objects too.
    put(&rig, "empty", Vec::new());
    assert_eq!(read(&rig, b"empty").unwrap(), b"");
    assert_eq!(piece(&rig, b"empty", 0, 10).unwrap().3, b"");
}

#[test]
fn concurrent_misses_make_one_store_get() {
    let rig = rig(32 << 20, backing(|_| {}));
    put(&rig, "hot", pattern(10_000, 1));
    rig.store
        .script(Some(Op::Get), Fault::Delay(Duration::from_millis(400)));
    let n = 16;
    let sessions: Vec<Session> = (0..n).map(|_| session_to(&rig._server)).collect();
    let values: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = sessions
            .iter()
            .map(|sess| s.spawn(move || read_on(sess, TABLE, b"hot").unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(values.iter().all(|v| *v == pattern(10_000, 1)));
    assert_eq!(
        gets(&rig),
        1,
        "{n} concurrent misses must make exactly one GET"
    );
    assert_eq!(rig.master.reads.in_flight(), 0);
}

#[test]
fn negative_answers_are_cached_for_their_ttl() {
    let rig = rig(32 << 20, backing(|b| b.negative_ttl_ms = 400));
    assert_eq!(
        read(&rig, b"nope").unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
    assert_eq!(gets(&rig), 1);
    put(&rig, "nope", b"now".to_vec());
    assert_eq!(
        read(&rig, b"nope").unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
    assert_eq!(gets(&rig), 1, "a negative entry answers without the store");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&rig, b"nope").unwrap(), b"now");
    assert_eq!(gets(&rig), 2);
}

#[test]
fn old_hits_revalidate_304_200_404() {
    let rig = rig(32 << 20, backing(|b| b.revalidate_ms = 150));
    put(&rig, "r", b"v1".to_vec());
    assert_eq!(read(&rig, b"r").unwrap(), b"v1");
    assert_eq!(read(&rig, b"r").unwrap(), b"v1");
    assert_eq!(gets(&rig), 1, "a fresh hit is not revalidated");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(read(&rig, b"r").unwrap(), b"v1"); // 304
    assert_eq!(gets(&rig), 2);
    assert_eq!(read(&rig, b"r").unwrap(), b"v1");
    assert_eq!(gets(&rig), 2, "a 304 restamps the copy");
    put(&rig, "r", b"v2".to_vec());
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(read(&rig, b"r").unwrap(), b"v2"); // 200
    assert_eq!(gets(&rig), 3);
    rig.store.inner().delete("r").unwrap();
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(read(&rig, b"r").unwrap_err().0, Status::OBJECT_DOESNT_EXIST); // 404
    assert_eq!(gets(&rig), 4);
}

#[test]
fn objects_over_the_admission_limit_pass_through() {
    let rig = rig(32 << 20, backing(|b| b.admit_max_bytes = 1000));
    let big = pattern(2000, 7);
    put(&rig, "big", big.clone());
    put(&rig, "small", b"s".to_vec());
    assert_eq!(read(&rig, b"big").unwrap(), big);
    assert_eq!(read(&rig, b"big").unwrap(), big);
    let (version, total, _, data) = piece(&rig, b"big", 1500, 700).unwrap();
    assert_eq!((version, total), (0, 2000));
    assert_eq!(data, &big[1500..]);
    assert_eq!(gets(&rig), 3, "not cached: every read goes to the store");
    read(&rig, b"small").unwrap();
    read(&rig, b"small").unwrap();
    assert_eq!(gets(&rig), 4);
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(rig.master.counters.not_admitted.load(Relaxed), 3);
}

#[test]
fn large_objects_are_chunked_and_served_at_any_offset() {
    let rig = rig(200 << 20, backing(|_| {}));
    let max = rig.master.engine.max_value_len(8) as u64;
    const MIB: usize = 1 << 20;
    for (i, n) in [MIB - 1, MIB, MIB + 1, 3 * MIB + 17, 64 * MIB]
        .into_iter()
        .enumerate()
    {
        let key = format!("large/{i}");
        let body = pattern(n, i as u8);
        put(&rig, &key, body.clone());
        let before = gets(&rig);
        assert_eq!(whole(&rig, key.as_bytes()), body, "{n} bytes");
        assert_eq!(gets(&rig), before + 1);
        match read(&rig, key.as_bytes()) {
            Ok(v) => assert_eq!(v, body),
            Err((s, detail)) => {
                assert_eq!(s, Status::OBJECT_TOO_LARGE);
                assert!(detail.contains(&n.to_string()), "{detail}");
                assert!(n as u64 + 20 > max);
            }
        }
        let clen = faascache_server::backed::fill::chunk_len(&rig.master, key.as_bytes()) as u64;
        let mut offsets = vec![0, 1, n as u64 / 2, n as u64 - 1, n as u64];
        let mut c = clen;
        while c < n as u64 {
            offsets.extend([c - 1, c, c + 1]);
            c += clen;
        }
        for off in offsets {
            let off = off.min(n as u64);
            for len in [1u32, 4097, MAX_READ_OBJECT_PIECE] {
                let (_, total, _, data) = piece(&rig, key.as_bytes(), off, len).unwrap();
                assert_eq!(total, n as u64);
                let end = (off as usize + len as usize).min(n);
                assert_eq!(data, &body[off as usize..end], "{n} bytes at {off}+{len}");
            }
        }
        assert_eq!(gets(&rig), before + 1, "served from the cache");
    }
}

/// A `ReadObject` of 0 bytes (the client's `head_object`) answers the metadata and the whole
/// length without data: on a miss of a large object (it reads through and fills the chunks),
/// on the hit after it, on a small object, and at or past the end.
#[test]
fn a_read_object_of_no_bytes_is_the_metadata_and_length() {
    let rig = rig(64 << 20, backing(|_| {}));
    let n = 3 * (1 << 20) + 17;
    let body = pattern(n, 9);
    put(&rig, "head/big", body.clone());
    put(&rig, "head/small", b"tiny".to_vec());
    for key in ["head/big", "head/small"] {
        let len = if key == "head/big" { n as u64 } else { 4 };
        for (off, pass) in [
            (0, "miss"),
            (0, "hit"),
            (len, "at the end"),
            (len + 9, "past"),
        ] {
            let (version, total, meta, data) = piece(&rig, key.as_bytes(), off, 0).unwrap();
            assert_eq!((total, data.len()), (len, 0), "{key} {pass}");
            assert_eq!(meta.content_type, "text/x-test", "{key} {pass}");
            assert!(!meta.etag.is_empty(), "{key} {pass}");
            if pass == "miss" {
                // A large miss may answer before its fill ends (version 0): wait for the end.
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while piece(&rig, key.as_bytes(), 0, 0).unwrap().0 == 0 {
                    assert!(std::time::Instant::now() < deadline, "{key}: never cached");
                    std::thread::sleep(Duration::from_millis(10));
                }
            } else {
                assert!(version > 0, "{key} {pass}: cached");
            }
        }
    }
    assert_eq!(gets(&rig), 2, "one store read per object");
    assert_eq!(whole(&rig, b"head/big"), body);
    let (status, _) = piece(&rig, b"head/none", 0, 0).unwrap_err();
    assert_eq!(status, Status::OBJECT_DOESNT_EXIST);
}

#[test]
fn an_evicted_chunk_makes_the_object_a_miss() {
    let rig = rig(64 << 20, backing(|_| {}));
    let body = pattern(3 << 20, 9);
    put(&rig, "obj", body.clone());
    assert_eq!(whole(&rig, b"obj"), body);
    let mut buf = Vec::new();
    rig.master
        .engine
        .read(TABLE as u32, b"obj", &RejectRules::NONE, &mut buf)
        .unwrap();
    let Kind::Manifest(mf) = envelope::decode(&buf).unwrap().kind else {
        panic!("not chunked")
    };
    rig.master
        .engine
        .remove_clean(TABLE as u32, &chunk_key(b"obj", mf.object_id, 1), None)
        .unwrap();
    assert_eq!(gets(&rig), 1);
    assert_eq!(whole(&rig, b"obj"), body);
    assert_eq!(gets(&rig), 2, "a missing chunk is read through again");
}

#[test]
fn invalidation_drops_clean_copies_and_keeps_dirty_ones() {
    let rig = rig(32 << 20, backing(|b| b.negative_ttl_ms = 60_000));
    for k in ["p/1", "p/2", "q"] {
        put(&rig, k, k.as_bytes().to_vec());
        read(&rig, k.as_bytes()).unwrap();
    }
    write_dirty(&rig, b"p/3", b"mine");
    assert_eq!(
        read(&rig, b"p/x").unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
    put(&rig, "p/x", b"late".to_vec());
    assert_eq!(invalidate(&rig, b"q", false), (1, 0));
    assert_eq!(invalidate(&rig, b"p/3", false), (0, 1));
    assert_eq!(invalidate(&rig, b"p/", true), (2, 1));
    assert_eq!(read(&rig, b"p/3").unwrap(), b"mine", "dirty data is kept");
    let before = gets(&rig);
    for k in ["p/1", "p/2", "q"] {
        assert_eq!(read(&rig, k.as_bytes()).unwrap(), k.as_bytes());
    }
    assert_eq!(
        read(&rig, b"p/x").unwrap(),
        b"late",
        "negative entries are dropped"
    );
    assert_eq!(gets(&rig), before + 4);
    // A chunked object's chunks go with it.
    put(&rig, "p/big", pattern(3 << 20, 2));
    whole(&rig, b"p/big");
    let objects = rig.master.engine.stats().objects;
    assert_eq!(invalidate(&rig, b"p/big", false), (1, 0));
    assert!(rig.master.engine.stats().objects + 4 <= objects);
}

#[test]
fn store_errors_are_unavailable_or_rejected() {
    let rig = rig(32 << 20, backing(|_| {}));
    put(&rig, "k", b"v".to_vec());
    rig.store.script(Some(Op::Get), Fault::ServerError(503));
    let (s, detail) = read(&rig, b"k").unwrap_err();
    assert_eq!(s, Status::STORE_UNAVAILABLE, "{detail}");
    assert_eq!(
        read(&rig, b"k").unwrap(),
        b"v",
        "the next read goes through"
    );
    let (s, detail) = read_on(&rig.session, MISSING, b"k").unwrap_err();
    assert_eq!(s, Status::STORE_REJECTED, "{detail}");
    assert!(detail.contains("nobucket"), "{detail}");
    let (s, detail) = read_on(&rig.session, SCRATCH, b"k").unwrap_err();
    assert_eq!(
        s,
        Status::OBJECT_DOESNT_EXIST,
        "no store, no read-through: {detail}"
    );
    let (s, detail) = read(&rig, &[0xFF, 0xFE]).unwrap_err();
    assert_eq!(s, Status::STORE_REJECTED, "{detail}");
    assert!(detail.contains("UTF-8"), "{detail}");
}

#[test]
fn multi_read_items_that_miss_are_fetched_and_retried() {
    let rig = rig(32 << 20, backing(|_| {}));
    put(&rig, "m1", b"one".to_vec());
    let ask = || {
        let r = MultiReadRequest {
            items: vec![MultiReadItem {
                table: TABLE,
                key: b"m1",
            }],
        };
        call(&rig.session, &r, T, |r| {
            (r.items[0].status, r.items[0].value.to_vec())
        })
        .unwrap()
    };
    assert_eq!(ask().0, Status::RETRY);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (s, v) = ask();
        if s == Status::OK {
            assert_eq!(v, b"one");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never fetched");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(gets(&rig), 1);
}

/// Read-through from the real stores (moto; Swift through s3api and its native API) of
/// objects put directly into the store, at the sizes functions move.
fn real_store_read_through(which: &str) {
    let test = format!("backed_read_through_{which}");
    let env = match which {
        "moto" => faascache_testkit::stores::moto(&test),
        _ => faascache_testkit::stores::swift(&test),
    };
    let Some(env) = env else { return };
    let prefix = format!(
        "{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (url, settings) = real_settings(which, env, &prefix);
    let store = faascache_objstore::open(&url, &settings, &Default::default()).unwrap();
    store.check().unwrap();
    let rig = rig_on(
        200 << 20,
        TableBacking::new(&url, WritePolicy::WriteBack),
        store,
    );
    const MIB: usize = 1 << 20;
    for (i, n) in [0, 1, MIB - 1, MIB, MIB + 1, 64 * MIB]
        .into_iter()
        .enumerate()
    {
        let key = format!("obj-{n}");
        let body = pattern(n, i as u8 + 1);
        put(&rig, &key, body.clone());
        let before = gets(&rig);
        assert_eq!(whole(&rig, key.as_bytes()), body, "{which}: {n} bytes");
        assert_eq!(gets(&rig), before + 1, "{which}: one GET per miss");
        let (_, total, meta, _) = piece(&rig, key.as_bytes(), 0, 1).unwrap();
        assert_eq!(total, n as u64);
        assert!(!meta.etag.is_empty(), "{which}: the ETag is kept");
        assert_eq!(meta.content_type, "text/x-test", "{which}");
        if n <= 1 {
            assert_eq!(read(&rig, key.as_bytes()).unwrap(), body);
        }
        assert_eq!(
            gets(&rig),
            before + 1,
            "{which}: then served from the cache"
        );
    }
    assert_eq!(
        read(&rig, b"absent").unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
}

fn real_settings(
    which: &str,
    env: &faascache_testkit::stores::StoreEnv,
    prefix: &str,
) -> (String, Settings) {
    use faascache_objstore::config::{S3Settings, SwiftSettings};
    use faascache_objstore::Secret;
    let mut settings = Settings::default();
    let url = match which {
        "swift-native" => {
            settings.swift = SwiftSettings {
                auth_url: Some(env.var("ST_AUTH").into()),
                user: Some(env.var("ST_USER").into()),
                key: Some(Secret::new(env.var("ST_KEY"))),
                ..Default::default()
            };
            format!("swift://{}/{prefix}", env.var("FAASCACHE_SWIFT_CONTAINER"))
        }
        _ => {
            let (endpoint, bucket, user, key) = if which == "moto" {
                (
                    env.var("FAASCACHE_MOTO_ENDPOINT"),
                    env.var("FAASCACHE_MOTO_BUCKET"),
                    "moto-test",
                    "moto-secret",
                )
            } else {
                (
                    env.var("FAASCACHE_SWIFT_S3_ENDPOINT"),
                    env.var("FAASCACHE_SWIFT_CONTAINER"),
                    env.var("ST_USER"),
                    env.var("ST_KEY"),
                )
            };
            settings.s3 = S3Settings {
                endpoint: Some(endpoint.into()),
                region: Some("us-east-1".into()),
                access_key_id: Some(user.into()),
                secret_access_key: Some(Secret::new(key)),
                ..Default::default()
            };
            format!("s3://{bucket}/{prefix}")
        }
    };
    (url, settings)
}

#[test]
fn read_through_from_moto() {
    real_store_read_through("moto");
}

#[test]
fn read_through_from_swift_s3_api() {
    real_store_read_through("swift-s3");
}

#[test]
fn read_through_from_swift_native_api() {
    real_store_read_through("swift-native");
}

/// A configuration source that cannot answer (the coordinator is unreachable).
#[derive(Debug)]
struct Unreachable;

impl faascache_server::backed::registry::ConfigSource for Unreachable {
    fn table_config(
        &self,
        table: u32,
    ) -> Result<
        Option<faascache_server::backed::registry::TableConfig>,
        faascache_server::backed::registry::ConfigError,
    > {
        Err(
            faascache_server::backed::registry::ConfigError::Coordinator {
                table,
                source: CallError::Failed(faascache_protocol::msg::Failure {
                    status: Status::RETRY,
                    version: 0,
                    detail: "coordinator unreachable (test)".into(),
                }),
            },
        )
    }
}

#[test]
fn a_range_is_not_served_until_its_table_config_is_known() {
    let backed = BackedTables::new(Settings::default(), Some(Arc::new(Unreachable)));
    let engine = Engine::new(EngineConfig::with_memory(32 << 20)).unwrap();
    let master = Arc::new(Master::new(engine, "tcp", "spin").with_backed(backed));
    let server = serve(
        &"tcp:host=127.0.0.1,port=0".parse().unwrap(),
        Arc::new(DispatchHandler(MasterService {
            master: master.clone(),
        })),
        DispatchConfig {
            cores: 1,
            pin: false,
            ..DispatchConfig::default()
        },
    )
    .unwrap();
    let session = session_to(&server);
    let r = TakeTabletOwnershipRequest(TabletRange {
        table_id: TABLE,
        start_hash: 0,
        end_hash: u64::MAX,
    });
    let (s, detail) = failed(call(&session, &r, T, |_| ()).unwrap_err());
    assert_eq!(s, Status::RETRY, "{detail}");
    assert!(detail.contains("coordinator unreachable"), "{detail}");
    assert_eq!(master.served_ranges(), 0, "the range is not served");
    assert_eq!(
        read_on(&session, TABLE, b"k").unwrap_err().0,
        Status::UNKNOWN_TABLET
    );
}

#[test]
fn a_fill_that_ends_after_its_range_left_leaves_nothing() {
    let rig = rig(32 << 20, backing(|_| {}));
    put(&rig, "moving", b"v".to_vec());
    rig.store
        .script(Some(Op::Get), Fault::Delay(Duration::from_millis(500)));
    let reader = session_to(&rig._server);
    std::thread::scope(|s| {
        let h = s.spawn(|| read_on(&reader, TABLE, b"moving"));
        std::thread::sleep(Duration::from_millis(150));
        let h_key = faascache_protocol::msg::key_hash(b"moving");
        let r = DropTabletOwnershipRequest(TabletRange {
            table_id: TABLE,
            start_hash: h_key,
            end_hash: h_key,
        });
        call(&rig.session, &r, T, |_| ()).unwrap();
        assert_eq!(h.join().unwrap().unwrap_err().0, Status::UNKNOWN_TABLET);
    });
    let mut buf = Vec::new();
    assert!(rig
        .master
        .engine
        .read(TABLE as u32, b"moving", &RejectRules::NONE, &mut buf)
        .is_err());
}

/// Hit vs miss latency against moto (printed; run with `--nocapture` to see the numbers).
#[test]
fn hits_are_much_cheaper_than_read_through_on_moto() {
    let Some(env) = faascache_testkit::stores::moto("hits_vs_misses") else {
        return;
    };
    let prefix = format!("hits-vs-misses-{}", std::process::id());
    let (url, settings) = real_settings("moto", env, &prefix);
    let store = faascache_objstore::open(&url, &settings, &Default::default()).unwrap();
    let rig = rig_on(
        64 << 20,
        TableBacking::new(&url, WritePolicy::WriteBack),
        store,
    );
    let p50 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for size in [1024usize, 128 * 1024] {
        let n = 20;
        for i in 0..n {
            put(&rig, &format!("{size}/{i}"), pattern(size, i as u8));
        }
        let mut misses = Vec::new();
        for i in 0..n {
            let t = std::time::Instant::now();
            read(&rig, format!("{size}/{i}").as_bytes()).unwrap();
            misses.push(t.elapsed());
        }
        let mut hits = Vec::new();
        for r in 0..10 * n {
            let t = std::time::Instant::now();
            read(&rig, format!("{size}/{}", r % n).as_bytes()).unwrap();
            hits.push(t.elapsed());
        }
        let (miss, hit) = (p50(misses), p50(hits));
        println!("moto {size} B: miss (read-through) p50 {miss:?}, hit p50 {hit:?}");
        assert!(hit * 3 < miss, "{size} B: hit {hit:?} vs miss {miss:?}");
    }
}
