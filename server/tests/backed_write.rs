//! The write path of backed tables, in process: a master on loopback TCP whose backed tables'
//! store is an injected `Faulty<MemoryStore>`, driven over real RPCs. Write-back with the
//! store down (acknowledged up to the limit, then WRITE_BACK_FULL, nothing lost, drained when
//! it returns), removal markers, write-through, flush, refusals; `WriteObject` (metadata in
//! the envelope, uploaded with the bytes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_objstore::{Fault, Faulty, GetResult, MemoryStore, ObjectStore, Op, Settings};
use faascache_protocol::msg::common::{chunk_key, ExactlyOnce, RejectRules};
use faascache_protocol::msg::control::{
    GetServerInfoRequest, TabletRange, TakeTabletOwnershipRequest,
};
use faascache_protocol::msg::faas::{
    FlushRequest, ObjectMeta, ReadObjectRequest, TableBacking, WriteObjectRequest, WritePolicy,
};
use faascache_protocol::msg::large::{
    CommitObjectRequest, WriteObjectChunkRequest, MAX_CHUNK_DATA,
};
use faascache_protocol::msg::master::{
    IncrementRequest, Number, ReadRequest, RemoveRequest, WriteRequest,
};
use faascache_server::backed::registry::FixedConfigs;
use faascache_server::backed::BackedTables;
use faascache_server::master::{Master, MasterService};
use faascache_storage::{Engine, EngineConfig};
use faascache_transport::{
    call, connect, serve, CallError, ClientConfig, DispatchConfig, DispatchHandler, ServerHandle,
    Session, Status,
};

const BACK: u64 = 1;
const THROUGH: u64 = 2;
/// Ephemeral, no store, objects expire [`TTL_MS`] after they were written.
const EPH: u64 = 3;
const TTL_MS: u64 = 1500;
/// Write-back under a prefix of [`PREFIX_LEN`] bytes with the `/` (same store).
const PREFIXED: u64 = 4;
const PREFIXED_URL: &str = "s3://bucket/some/prefix";
const PREFIX_LEN: usize = "some/prefix/".len();
const URL: &str = "s3://bucket";
const T: Duration = Duration::from_secs(30);

struct Rig {
    master: Arc<Master>,
    _server: ServerHandle,
    s: Session,
    store: Arc<Faulty<MemoryStore>>,
}

fn rig(limit: u64) -> Rig {
    let fixed = Arc::new(FixedConfigs::default());
    fixed.insert(
        BACK as u32,
        "b",
        Some(TableBacking::new(URL, WritePolicy::WriteBack)),
    );
    let through = TableBacking::new(URL, WritePolicy::WriteThrough);
    fixed.insert(THROUGH as u32, "t", Some(through));
    let mut eph = TableBacking::new("", WritePolicy::Ephemeral);
    eph.ttl_ms = TTL_MS;
    fixed.insert(EPH as u32, "e", Some(eph));
    let prefixed = TableBacking::new(PREFIXED_URL, WritePolicy::WriteBack);
    fixed.insert(PREFIXED as u32, "p", Some(prefixed));
    let backed = BackedTables::new(Settings::default(), Some(fixed));
    let store = Arc::new(Faulty::new(MemoryStore::new("mem")));
    backed.inject_store(URL, store.clone());
    backed.inject_store(PREFIXED_URL, store.clone());
    let engine = Engine::new(EngineConfig::with_memory(64 << 20)).unwrap();
    let master = Arc::new(
        Master::new(engine, "tcp", "spin")
            .with_backed(backed)
            .with_write_back_limit(limit),
    );
    faascache_server::backed::write::start(&master);
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
    let s = connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .unwrap();
    for table_id in [BACK, THROUGH, EPH, PREFIXED] {
        let r = TakeTabletOwnershipRequest(TabletRange {
            table_id,
            start_hash: 0,
            end_hash: u64::MAX,
        });
        call(&s, &r, T, |_| ()).unwrap();
    }
    Rig {
        master,
        _server: server,
        s,
        store,
    }
}

type Answer<X> = Result<X, (Status, String)>;

fn failed(e: CallError) -> (Status, String) {
    match e {
        CallError::Failed(f) => (f.status, f.detail),
        e => panic!("transport failure: {e}"),
    }
}

fn write(rig: &Rig, table: u64, key: &str, value: &[u8]) -> Answer<u64> {
    let r = WriteRequest {
        table,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::NONE,
        key: key.as_bytes(),
        value,
    };
    call(&rig.s, &r, T, |r| r.version).map_err(failed)
}

fn remove(rig: &Rig, table: u64, key: &str) -> Answer<()> {
    let r = RemoveRequest {
        table,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::NONE,
        key: key.as_bytes(),
    };
    call(&rig.s, &r, T, |_| ()).map_err(failed)
}

fn read(rig: &Rig, table: u64, key: &str) -> Answer<Vec<u8>> {
    let r = ReadRequest {
        table,
        rules: RejectRules::NONE,
        key: key.as_bytes(),
    };
    call(&rig.s, &r, T, |r| r.value.to_vec()).map_err(failed)
}

fn flush(rig: &Rig, table: u64, key: &str, timeout_ms: u32) -> Answer<(u64, u64)> {
    let r = FlushRequest {
        table,
        key: key.as_bytes(),
        timeout_ms,
    };
    call(&rig.s, &r, T, |r| (r.objects, r.bytes)).map_err(failed)
}

fn stored(rig: &Rig, key: &str) -> Option<Vec<u8>> {
    match rig.store.inner().get(key, None).unwrap() {
        GetResult::Found { body, .. } => Some(body.to_vec()),
        _ => None,
    }
}

fn dirty(rig: &Rig) -> (u64, u64) {
    call(&rig.s, &GetServerInfoRequest, T, |r| {
        (r.cache.dirty_objects, r.cache.dirty_bytes)
    })
    .unwrap()
}

#[test]
fn store_down_fills_to_the_limit_then_drains_with_the_last_values() {
    let rig = rig(64 * 1024);
    rig.store.set_down(true);
    let value = |k: usize, round: u8| vec![round; 1000 + k % 7];
    let mut acked = 0;
    let full = loop {
        match write(&rig, BACK, &format!("k/{acked}"), &value(acked, 0)) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 1000, "never refused");
    };
    assert_eq!(full.0, Status::WRITE_BACK_FULL, "{}", full.1);
    assert!(full.1.contains("limit"), "{}", full.1);
    assert!(
        (50..=64).contains(&acked),
        "{acked} writes of ~1 KiB under 64 KiB"
    );
    // Overwrites of queued keys that add nothing are still admitted (coalesced).
    for k in 0..acked {
        write(&rig, BACK, &format!("k/{k}"), &value(k, 1)).unwrap();
    }
    assert_eq!(dirty(&rig).0, acked as u64);
    // Reads answer from the cache meanwhile.
    assert_eq!(read(&rig, BACK, "k/3").unwrap(), value(3, 1));
    let (status, detail) = flush(&rig, BACK, "", 300).unwrap_err();
    assert_eq!(status, Status::TIMEOUT);
    assert!(
        detail.contains("still dirty") && detail.contains("store:"),
        "{detail}"
    );
    assert!(stored(&rig, "k/0").is_none());
    rig.store.set_down(false);
    let (objects, _) = flush(&rig, BACK, "", 20_000).unwrap();
    assert_eq!(objects, acked as u64);
    for k in 0..acked {
        assert_eq!(stored(&rig, &format!("k/{k}")), Some(value(k, 1)), "k/{k}");
    }
    assert_eq!(dirty(&rig), (0, 0));
    assert!(rig.master.engine.is_dirty(BACK as u32, b"k/0").unwrap() == Some(false));
    write(&rig, BACK, "after", b"x").unwrap();
}

#[test]
fn removes_are_markers_until_the_store_deleted() {
    let rig = rig(1 << 20);
    write(&rig, BACK, "a/b", b"one").unwrap();
    flush(&rig, BACK, "a/b", 10_000).unwrap();
    assert_eq!(stored(&rig, "a/b").as_deref(), Some(&b"one"[..]));
    rig.store.set_down(true);
    remove(&rig, BACK, "a/b").unwrap();
    assert_eq!(
        read(&rig, BACK, "a/b").unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
    assert_eq!(
        rig.master.engine.is_dirty(BACK as u32, b"a/b").unwrap(),
        Some(true)
    );
    rig.store.set_down(false);
    flush(&rig, BACK, "a/b", 10_000).unwrap();
    assert_eq!(stored(&rig, "a/b"), None);
    assert_eq!(
        rig.master.engine.is_dirty(BACK as u32, b"a/b").unwrap(),
        None
    );
}

#[test]
fn write_through_answers_after_the_upload_or_with_the_store_error() {
    let rig = rig(1 << 20);
    write(&rig, THROUGH, "t", b"v1").unwrap();
    assert_eq!(
        stored(&rig, "t").as_deref(),
        Some(&b"v1"[..]),
        "in the store on reply"
    );
    rig.store.set_down(true);
    let started = Instant::now();
    let (status, detail) = write(&rig, THROUGH, "t", b"v2").unwrap_err();
    assert_eq!(status, Status::STORE_UNAVAILABLE, "{detail}");
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(read(&rig, THROUGH, "t").unwrap(), b"v2", "the cache has it");
    rig.store.set_down(false);
    flush(&rig, THROUGH, "", 20_000).unwrap();
    assert_eq!(stored(&rig, "t").as_deref(), Some(&b"v2"[..]));
}

#[test]
fn write_through_answers_store_rejected_at_once_for_an_error_no_retry_fixes() {
    let rig = rig(1 << 20);
    for status in [403, 401] {
        let key = format!("r{status}");
        rig.store.script(Some(Op::Put), Fault::ServerError(status));
        let started = Instant::now();
        let (got, detail) = write(&rig, THROUGH, &key, b"v").unwrap_err();
        assert_eq!(got, Status::STORE_REJECTED, "{status}: {detail}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "at once, not after the write-through wait: {:?}",
            started.elapsed()
        );
        assert!(detail.contains("refused"), "{detail}");
        assert_eq!(read(&rig, THROUGH, &key).unwrap(), b"v", "the cache has it");
        assert_eq!(stored(&rig, &key), None);
        // Still queued: uploaded on a retry once the store takes it.
        flush(&rig, THROUGH, &key, 20_000).unwrap();
        assert_eq!(stored(&rig, &key).as_deref(), Some(&b"v"[..]));
    }
    // A retryable failure is still retried within the write.
    rig.store.script(Some(Op::Put), Fault::ServerError(503));
    write(&rig, THROUGH, "r", b"w").unwrap();
    assert_eq!(stored(&rig, "r").as_deref(), Some(&b"w"[..]));
}

#[test]
fn bad_keys_and_increments_are_refused_before_writing() {
    let rig = rig(1 << 20);
    for key in ["/abs", "a//b", "dot/./x"] {
        let (status, detail) = write(&rig, BACK, key, b"x").unwrap_err();
        assert_eq!(status, Status::STORE_REJECTED, "{key}: {detail}");
        assert_eq!(
            rig.master
                .engine
                .is_dirty(BACK as u32, key.as_bytes())
                .unwrap(),
            None,
            "nothing written"
        );
    }
    // Key length counts the backing's prefix: 1024 bytes in the store at most.
    let longest = "k".repeat(1024 - PREFIX_LEN);
    let over = format!("{longest}k");
    let (status, detail) = write(&rig, PREFIXED, &over, b"x").unwrap_err();
    assert_eq!(status, Status::STORE_REJECTED, "{detail}");
    assert!(detail.contains("prefix"), "{detail}");
    let held = rig.master.engine.is_dirty(PREFIXED as u32, over.as_bytes());
    assert_eq!(held.unwrap(), None, "nothing written");
    write(&rig, BACK, &over, b"x").expect("the same key fits without a prefix");
    write(&rig, PREFIXED, &longest, b"x").expect("the longest key that fits");
    flush(&rig, BACK, "", 20_000).unwrap();
    flush(&rig, PREFIXED, "", 20_000).unwrap();
    let r = IncrementRequest {
        table: BACK,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::NONE,
        key: b"n",
        delta: Number::I64(1),
    };
    let (status, detail) = call(&rig.s, &r, T, |_| ()).map_err(failed).unwrap_err();
    assert_eq!(status, Status::REQUEST_FORMAT_ERROR);
    assert!(
        detail.contains("not supported on backed tables"),
        "{detail}"
    );
    assert_eq!(dirty(&rig), (0, 0));
}

#[test]
fn migrated_objects_keep_their_dirty_bit_and_dirty_ones_are_uploaded() {
    use faascache_protocol::msg::control::{
        MigratedObject, PrepareMigrationRequest, ReceiveMigrationDataRequest,
    };
    use faascache_protocol::msg::ServerId;
    let rig = rig(1 << 20);
    const IN: u64 = 3;
    let range = TabletRange {
        table_id: IN,
        start_hash: 0,
        end_hash: u64::MAX,
    };
    // Table 3 is not backed: a plain table keeps the bits too (clean stays clean).
    let prep = PrepareMigrationRequest {
        range,
        source: ServerId::new(9, 0),
    };
    call(&rig.s, &prep, T, |_| ()).unwrap();
    let objects = vec![
        MigratedObject {
            removed: false,
            clean: true,
            key: b"c",
            value: b"x",
            version: 5,
        },
        MigratedObject {
            removed: false,
            clean: false,
            key: b"d",
            value: b"y",
            version: 6,
        },
    ];
    let req = ReceiveMigrationDataRequest {
        range,
        objects,
        completions: Vec::new(),
    };
    call(&rig.s, &req, T, |_| ()).unwrap();
    let e = &rig.master.engine;
    assert_eq!(e.is_dirty(IN as u32, b"c").unwrap(), Some(false));
    assert_eq!(e.is_dirty(IN as u32, b"d").unwrap(), Some(true));
    assert_eq!(dirty(&rig), (0, 0), "not backed: nothing queued");
}

#[test]
fn ephemeral_objects_expire_ttl_after_they_were_written() {
    let rig = rig(1 << 20);
    let held = |key: &str| {
        let mut buf = Vec::new();
        rig.master
            .engine
            .read(EPH as u32, key.as_bytes(), &RejectRules::NONE, &mut buf)
            .is_ok()
    };
    for i in 0..50 {
        write(&rig, EPH, &format!("k{i}"), b"tmp").unwrap();
    }
    let written = Instant::now(); // after every first write
    assert_eq!(read(&rig, EPH, "k0").unwrap(), b"tmp");
    // Rewritten later: its TTL counts from the newer write.
    std::thread::sleep(Duration::from_millis(TTL_MS / 2));
    write(&rig, EPH, "k1", b"newer").unwrap();
    let rewritten = Instant::now();
    while written.elapsed() < Duration::from_millis(TTL_MS + 5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Expired: not served, whether or not the sweeper removed it yet.
    let (status, detail) = read(&rig, EPH, "k0").unwrap_err();
    assert_eq!(status, Status::OBJECT_DOESNT_EXIST, "{detail}");
    if rewritten.elapsed() < Duration::from_millis(TTL_MS) {
        assert_eq!(read(&rig, EPH, "k1").unwrap(), b"newer");
    }
    // The sweeper removes them within its period (max(ttl/4, 1 s)) and a tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    while held("k2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        (0..50).filter(|i| *i != 1).all(|i| !held(&format!("k{i}"))),
        "every expired object removed from the engine"
    );
    while held("k1") && Instant::now() < deadline + Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!held("k1"), "the rewritten one too, later");
    assert_eq!(dirty(&rig), (0, 0), "never queued for upload");
    // A new write after expiry is a new object.
    write(&rig, EPH, "k0", b"again").unwrap();
    assert_eq!(read(&rig, EPH, "k0").unwrap(), b"again");
}

fn write_object(rig: &Rig, table: u64, key: &str, meta: &ObjectMeta, value: &[u8]) -> Answer<u64> {
    let r = WriteObjectRequest {
        table,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::NONE,
        key: key.as_bytes(),
        meta: meta.clone(),
        value,
    };
    call(&rig.s, &r, T, |r| r.version).map_err(failed)
}

/// `ReadObject` of `max_len` bytes from 0: version, total length, metadata, data.
fn read_object(
    rig: &Rig,
    table: u64,
    key: &str,
    max_len: u32,
) -> Answer<(u64, u64, ObjectMeta, Vec<u8>)> {
    let r = ReadObjectRequest {
        table,
        rules: RejectRules::NONE,
        key: key.as_bytes(),
        offset: 0,
        max_len,
    };
    call(&rig.s, &r, T, |r| {
        (r.version, r.total_len, r.meta, r.data.to_vec())
    })
    .map_err(failed)
}

fn gateway_meta() -> ObjectMeta {
    ObjectMeta {
        etag: "5d41402abc4b2a76b9719d911017c592".into(),
        content_type: "text/plain; charset=utf-8".into(),
        last_modified_ms: 0,
        user: vec![
            ("Owner".into(), "me".into()),
            ("colour-space".into(), "sRGB".into()),
        ],
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn write_object_keeps_its_metadata_in_the_cache_and_uploads_it() {
    let rig = rig(1 << 20);
    let before = now_ms();
    let v = write_object(&rig, BACK, "o/hello.txt", &gateway_meta(), b"hello").unwrap();
    let after = now_ms();
    let (version, total, meta, data) = read_object(&rig, BACK, "o/hello.txt", 1 << 20).unwrap();
    assert_eq!((version, total, data.as_slice()), (v, 5, &b"hello"[..]));
    assert_eq!(
        meta.etag,
        gateway_meta().etag,
        "kept as given until uploaded"
    );
    assert_eq!(meta.content_type, "text/plain; charset=utf-8");
    let user = vec![
        ("owner".into(), "me".into()),
        ("colour-space".into(), "sRGB".into()),
    ];
    assert_eq!(meta.user, user, "names in lower case");
    assert!(
        (before..=after).contains(&meta.last_modified_ms),
        "0 is stamped with the write's time"
    );
    // Metadata and length without the bytes.
    let (hv, htotal, hmeta, hdata) = read_object(&rig, BACK, "o/hello.txt", 0).unwrap();
    assert_eq!((hv, htotal, &hmeta, hdata.len()), (v, 5, &meta, 0));
    assert_eq!(read(&rig, BACK, "o/hello.txt").unwrap(), b"hello");
    // After the upload the store has the content type and the user metadata, and the cache
    // the store's ETag.
    flush(&rig, BACK, "o/hello.txt", 10_000).unwrap();
    let stored_meta = match rig.store.inner().get("o/hello.txt", None).unwrap() {
        GetResult::Found { body, meta } => {
            assert_eq!(&body[..], b"hello");
            meta
        }
        _ => panic!("not uploaded"),
    };
    assert_eq!(
        stored_meta.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        stored_meta.user_meta.get("owner").map(String::as_str),
        Some("me")
    );
    assert_eq!(
        stored_meta
            .user_meta
            .get("colour-space")
            .map(String::as_str),
        Some("sRGB")
    );
    let (_, _, clean, _) = read_object(&rig, BACK, "o/hello.txt", 0).unwrap();
    assert_eq!(clean.etag, stored_meta.etag.as_str(), "the store's ETag");
    assert_eq!(clean.content_type, meta.content_type);
    assert_eq!(clean.user, meta.user);
    assert_eq!(clean.last_modified_ms, meta.last_modified_ms);
    // A given last-modified is kept; reject rules apply as for Write.
    let mut given = gateway_meta();
    given.last_modified_ms = 1_600_000_000_000;
    write_object(&rig, BACK, "o/dated", &given, b"d").unwrap();
    let (_, _, m, _) = read_object(&rig, BACK, "o/dated", 0).unwrap();
    assert_eq!(m.last_modified_ms, 1_600_000_000_000);
    let r = WriteObjectRequest {
        table: BACK,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::must_not_exist(),
        key: b"o/dated",
        meta: given,
        value: b"again",
    };
    let (status, _) = call(&rig.s, &r, T, |r| r.version)
        .map_err(failed)
        .unwrap_err();
    assert_eq!(status, Status::OBJECT_EXISTS);
    flush(&rig, BACK, "", 10_000).unwrap();
    assert_eq!(stored(&rig, "o/dated").as_deref(), Some(&b"d"[..]));
}

#[test]
fn write_object_through_and_ephemeral() {
    let rig = rig(1 << 20);
    write_object(&rig, THROUGH, "t/o", &gateway_meta(), b"through").unwrap();
    match rig.store.inner().get("t/o", None).unwrap() {
        GetResult::Found { body, meta } => {
            assert_eq!(&body[..], b"through", "in the store on reply");
            assert_eq!(
                meta.content_type.as_deref(),
                Some("text/plain; charset=utf-8")
            );
            assert_eq!(meta.user_meta.get("owner").map(String::as_str), Some("me"));
        }
        _ => panic!("not in the store on reply"),
    }
    // Write-through with the store down: the store's error, the object cached dirty.
    rig.store.script(Some(Op::Put), Fault::ServerError(403));
    let (status, detail) = write_object(&rig, THROUGH, "t/p", &gateway_meta(), b"p").unwrap_err();
    assert_eq!(status, Status::STORE_REJECTED, "{detail}");
    let (_, _, meta, data) = read_object(&rig, THROUGH, "t/p", 100).unwrap();
    assert_eq!(
        (meta.content_type.as_str(), data.as_slice()),
        ("text/plain; charset=utf-8", &b"p"[..])
    );
    flush(&rig, THROUGH, "", 20_000).unwrap();
    // Ephemeral: kept with its metadata, never queued.
    let v = write_object(&rig, EPH, "e/o", &gateway_meta(), b"tmp").unwrap();
    let (version, total, meta, data) = read_object(&rig, EPH, "e/o", 100).unwrap();
    assert_eq!((version, total, data.as_slice()), (v, 3, &b"tmp"[..]));
    assert_eq!(meta.etag, gateway_meta().etag);
    assert_eq!(meta.user[0], ("owner".to_string(), "me".to_string()));
    assert_eq!(dirty(&rig), (0, 0), "never queued for upload");
}

#[test]
fn write_object_refusals() {
    let rig = rig(1 << 20);
    // A plain table.
    const PLAIN: u64 = 9;
    let r = TakeTabletOwnershipRequest(TabletRange {
        table_id: PLAIN,
        start_hash: 0,
        end_hash: u64::MAX,
    });
    call(&rig.s, &r, T, |_| ()).unwrap();
    let (status, detail) = write_object(&rig, PLAIN, "k", &gateway_meta(), b"v").unwrap_err();
    assert_eq!(status, Status::REQUEST_FORMAT_ERROR);
    assert!(
        detail.contains("WriteObject needs a table backed"),
        "{detail}"
    );
    assert_eq!(
        read(&rig, PLAIN, "k").unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
    write(&rig, PLAIN, "k", b"plain").expect("Write still works there");
    // Too large for one value with its envelope: OBJECT_TOO_LARGE saying to write it in
    // chunks (the clients then do), the same for Write, nothing written.
    let big = vec![1u8; 1 << 20];
    let (status, detail) = write_object(&rig, BACK, "big", &gateway_meta(), &big).unwrap_err();
    assert_eq!(status, Status::OBJECT_TOO_LARGE, "{detail}");
    assert!(detail.contains("write it in chunks"), "{detail}");
    let (wstatus, wdetail) = write(&rig, BACK, "big", &big).unwrap_err();
    assert_eq!(wstatus, status, "{wdetail}");
    assert_eq!(
        rig.master.engine.is_dirty(BACK as u32, b"big").unwrap(),
        None
    );
    // Metadata the store cannot carry, a key it refuses: refused before anything is written.
    let mut bad = gateway_meta();
    bad.user.push(("bad name".into(), "x".into()));
    let (status, detail) = write_object(&rig, BACK, "m", &bad, b"v").unwrap_err();
    assert_eq!(status, Status::STORE_REJECTED, "{detail}");
    assert!(
        detail.contains("bad name") && detail.contains("nothing was written"),
        "{detail}"
    );
    let mut bad = gateway_meta();
    bad.user[0].1 = "caf\u{e9}".into();
    assert_eq!(
        write_object(&rig, BACK, "m", &bad, b"v").unwrap_err().0,
        Status::STORE_REJECTED
    );
    assert_eq!(rig.master.engine.is_dirty(BACK as u32, b"m").unwrap(), None);
    let (status, _) = write_object(&rig, BACK, "/abs", &gateway_meta(), b"v").unwrap_err();
    assert_eq!(status, Status::STORE_REJECTED);
    // The ephemeral table without a store takes any metadata.
    let mut odd = gateway_meta();
    odd.user.push(("any name".into(), "caf\u{e9}".into()));
    write_object(&rig, EPH, "e/odd", &odd, b"v").unwrap();
    assert_eq!(dirty(&rig), (0, 0));
}

#[test]
fn write_object_is_refused_past_the_write_back_limit() {
    let rig = rig(16 * 1024);
    rig.store.set_down(true);
    let value = vec![3u8; 4000];
    let mut refused = None;
    for i in 0..20 {
        if let Err(e) = write_object(&rig, BACK, &format!("w/{i}"), &gateway_meta(), &value) {
            refused = Some(e);
            break;
        }
    }
    let (status, detail) = refused.expect("refused past the limit");
    assert_eq!(status, Status::WRITE_BACK_FULL, "{detail}");
    rig.store.set_down(false);
    flush(&rig, BACK, "", 20_000).unwrap();
}

// ---- Large objects written in chunks (`WriteObjectChunk` + `CommitObject`).

fn chunk(rig: &Rig, table: u64, key: &str, object_id: u64, index: u32, data: &[u8]) -> Answer<u64> {
    let r = WriteObjectChunkRequest {
        table,
        key: key.as_bytes(),
        object_id,
        index,
        data,
    };
    call(&rig.s, &r, T, |r| r.version).map_err(failed)
}

fn commit(
    rig: &Rig,
    table: u64,
    key: &str,
    object_id: u64,
    len: usize,
    meta: &ObjectMeta,
) -> Answer<u64> {
    let chunk_len = MAX_CHUNK_DATA;
    let r = CommitObjectRequest {
        table,
        rpc: ExactlyOnce::default(),
        rules: RejectRules::NONE,
        key: key.as_bytes(),
        meta: meta.clone(),
        total_len: len as u64,
        chunk_len,
        chunks: len.div_ceil(chunk_len as usize) as u32,
        object_id,
    };
    call(&rig.s, &r, T, |r| r.version).map_err(failed)
}

/// Every chunk of `value` under `object_id`, then the commit.
fn write_large(rig: &Rig, table: u64, key: &str, object_id: u64, value: &[u8]) -> Answer<u64> {
    for (i, c) in value.chunks(MAX_CHUNK_DATA as usize).enumerate() {
        chunk(rig, table, key, object_id, i as u32, c)?;
    }
    commit(rig, table, key, object_id, value.len(), &gateway_meta())
}

/// The whole object read piece by piece.
fn read_large(rig: &Rig, table: u64, key: &str) -> Answer<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let r = ReadObjectRequest {
            table,
            rules: RejectRules::NONE,
            key: key.as_bytes(),
            offset: out.len() as u64,
            max_len: 1 << 20,
        };
        let (version, total, data) =
            call(&rig.s, &r, T, |r| (r.version, r.total_len, r.data.to_vec())).map_err(failed)?;
        out.extend_from_slice(&data);
        if out.len() as u64 >= total {
            return Ok((version, out));
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn chunk_state(rig: &Rig, table: u64, key: &str, object_id: u64, i: u32) -> Option<bool> {
    let ck = chunk_key(key.as_bytes(), object_id, i);
    rig.master
        .engine
        .stat(table as u32, &ck)
        .unwrap()
        .map(|s| s.clean)
}

/// Wait until `f` holds (the sweep runs every 250 ms).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn large_objects_are_invisible_until_committed_then_uploaded_whole() {
    let rig = rig(64 << 20);
    let value = pattern(MAX_CHUNK_DATA as usize * 5 / 2, 7);
    let key = "big/photo.raw";
    // Two of three chunks: the commit names the missing one and changes nothing.
    chunk(&rig, BACK, key, 42, 0, &value[..MAX_CHUNK_DATA as usize]).unwrap();
    chunk(
        &rig,
        BACK,
        key,
        42,
        1,
        &value[MAX_CHUNK_DATA as usize..2 * MAX_CHUNK_DATA as usize],
    )
    .unwrap();
    let (status, detail) = commit(&rig, BACK, key, 42, value.len(), &gateway_meta()).unwrap_err();
    assert_eq!(status, Status::REQUEST_FORMAT_ERROR, "{detail}");
    assert!(
        detail.contains("chunk 2 of 3") && detail.contains("missing"),
        "{detail}"
    );
    assert_eq!(
        read_object(&rig, BACK, key, 16).unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST,
        "chunks alone are no object"
    );
    assert_eq!(dirty(&rig), (0, 0), "chunks are not queued on their own");
    // A chunk of the wrong length is named too.
    chunk(&rig, BACK, key, 42, 2, b"short").unwrap();
    let (_, detail) = commit(&rig, BACK, key, 42, value.len(), &gateway_meta()).unwrap_err();
    assert!(detail.contains("5 bytes long"), "{detail}");
    // Down until the flush below: the object stays dirty meanwhile.
    rig.store.set_down(true);
    chunk(
        &rig,
        BACK,
        key,
        42,
        2,
        &value[2 * MAX_CHUNK_DATA as usize..],
    )
    .unwrap();
    let v = commit(&rig, BACK, key, 42, value.len(), &gateway_meta()).unwrap();
    let (rv, got) = read_large(&rig, BACK, key).unwrap();
    assert_eq!(rv, v);
    assert!(got == value, "read back as written");
    let (_, total, meta, _) = read_object(&rig, BACK, key, 0).unwrap();
    assert_eq!(
        (total, meta.content_type.as_str()),
        (value.len() as u64, "text/plain; charset=utf-8")
    );
    assert_eq!(
        dirty(&rig),
        (1, value.len() as u64),
        "the whole object counts as dirty"
    );
    assert_eq!(
        chunk_state(&rig, BACK, key, 42, 0),
        Some(false),
        "dirty until uploaded"
    );
    // Write-back uploads the whole object with its metadata; then the chunks become clean.
    rig.store.set_down(false);
    flush(&rig, BACK, key, 20_000).unwrap();
    assert!(
        stored(&rig, key).unwrap() == value,
        "the store has every byte"
    );
    match rig.store.inner().get(key, None).unwrap() {
        GetResult::Found { meta, .. } => {
            assert_eq!(
                meta.content_type.as_deref(),
                Some("text/plain; charset=utf-8")
            );
            assert_eq!(meta.user_meta.get("owner").map(String::as_str), Some("me"));
        }
        _ => panic!("not uploaded"),
    }
    eventually("chunks marked clean", || {
        (0..3).all(|i| chunk_state(&rig, BACK, key, 42, i) == Some(true))
    });
    assert!(rig.master.chunked.is_empty(), "the write is settled");
    // A small object over it: the large one's chunks go.
    write_object(&rig, BACK, key, &gateway_meta(), b"small now").unwrap();
    eventually("old chunks removed", || {
        (0..3).all(|i| chunk_state(&rig, BACK, key, 42, i).is_none())
    });
    assert_eq!(read(&rig, BACK, key).unwrap(), b"small now");
    flush(&rig, BACK, key, 20_000).unwrap();
    assert_eq!(stored(&rig, key).as_deref(), Some(&b"small now"[..]));
}

#[test]
fn large_objects_write_through_ephemeral_and_above_the_stream_threshold() {
    let rig = rig(256 << 20);
    // Write-through: the commit answers once the store has it.
    let value = pattern(MAX_CHUNK_DATA as usize + 10, 1);
    write_large(&rig, THROUGH, "t/big", 7, &value).unwrap();
    assert!(
        stored(&rig, "t/big").unwrap() == value,
        "in the store at the answer"
    );
    // Ephemeral: kept dirty, never uploaded.
    write_large(&rig, EPH, "e/big", 8, &value).unwrap();
    assert!(read_large(&rig, EPH, "e/big").unwrap().1 == value);
    assert!(stored(&rig, "e/big").is_none());
    assert_eq!(chunk_state(&rig, EPH, "e/big", 8, 1), Some(false));
    // Above the one-PUT threshold: streamed to the store chunk by chunk.
    let big = pattern(17 << 20, 3);
    write_large(&rig, BACK, "b/huge", 9, &big).unwrap();
    flush(&rig, BACK, "b/huge", 30_000).unwrap();
    assert!(
        stored(&rig, "b/huge").unwrap() == big,
        "streamed upload has every byte"
    );
    // A table that is not backed: refused with the reason.
    let (status, detail) = chunk(&rig, 99, "k", 1, 0, b"x").unwrap_err();
    assert_eq!(status, Status::REQUEST_FORMAT_ERROR, "{detail}");
    assert!(detail.contains("this table is plain"), "{detail}");
}

#[test]
fn abandoned_and_replaced_large_writes_leave_no_chunks() {
    let rig = rig(64 << 20);
    rig.master
        .chunked
        .set_orphan_age(Duration::from_millis(300));
    let c = MAX_CHUNK_DATA as usize;
    let value = pattern(2 * c, 5);
    // A client that died after two chunks: removed after the orphan age; a late commit is
    // refused and changes nothing.
    chunk(&rig, BACK, "a/orphan", 11, 0, &value[..c]).unwrap();
    chunk(&rig, BACK, "a/orphan", 11, 1, &value[c..]).unwrap();
    eventually("orphan chunks removed", || {
        (0..2).all(|i| chunk_state(&rig, BACK, "a/orphan", 11, i).is_none())
    });
    let (status, detail) =
        commit(&rig, BACK, "a/orphan", 11, value.len(), &gateway_meta()).unwrap_err();
    assert_eq!(status, Status::REQUEST_FORMAT_ERROR, "{detail}");
    assert_eq!(
        read_object(&rig, BACK, "a/orphan", 0).unwrap_err().0,
        Status::OBJECT_DOESNT_EXIST
    );
    // With the store down, a second large write over a first (both dirty): the first's
    // chunks are removed, the last value reaches the store once it is back.
    rig.store.set_down(true);
    write_large(&rig, BACK, "a/twice", 21, &value).unwrap();
    let second = pattern(3 * c - 1, 9);
    write_large(&rig, BACK, "a/twice", 22, &second).unwrap();
    eventually("the first write's chunks removed", || {
        (0..2).all(|i| chunk_state(&rig, BACK, "a/twice", 21, i).is_none())
    });
    assert_eq!(
        chunk_state(&rig, BACK, "a/twice", 22, 2),
        Some(false),
        "the second's kept dirty"
    );
    assert!(read_large(&rig, BACK, "a/twice").unwrap().1 == second);
    // A removal over a large object: its chunks go once the removal is in the store.
    write_large(&rig, BACK, "a/gone", 31, &value).unwrap();
    remove(&rig, BACK, "a/gone").unwrap();
    rig.store.set_down(false);
    flush(&rig, BACK, "", 30_000).unwrap();
    assert!(stored(&rig, "a/twice").unwrap() == second);
    assert!(stored(&rig, "a/gone").is_none());
    eventually("every chunk settled", || rig.master.chunked.is_empty());
    for i in 0..3 {
        assert_eq!(chunk_state(&rig, BACK, "a/twice", 22, i), Some(true));
    }
    for i in 0..2 {
        assert_eq!(chunk_state(&rig, BACK, "a/gone", 31, i), None);
    }
    // Past the write-back limit a chunk is refused with the reason.
    let small = rig_limit_refusal();
    assert_eq!(small.0, Status::WRITE_BACK_FULL, "{}", small.1);
}

/// A chunk past a small write-back limit with the store down.
fn rig_limit_refusal() -> (Status, String) {
    let rig = rig(3 << 20);
    rig.store.set_down(true);
    // Chunks of writes not committed yet count too: two writes in flight cannot hold more
    // than the limit between them.
    let data = vec![2u8; MAX_CHUNK_DATA as usize];
    for i in 0..3 {
        chunk(&rig, BACK, "l/a", 90, i, &data).unwrap();
    }
    let (status, detail) = chunk(&rig, BACK, "l/b", 91, 0, &data).unwrap_err();
    assert_eq!(status, Status::WRITE_BACK_FULL, "{detail}");
    rig.master.chunked.set_orphan_age(Duration::from_millis(1));
    eventually("the writes in flight abandoned", || {
        rig.master.chunked.is_empty()
    });
    let data = vec![1u8; MAX_CHUNK_DATA as usize];
    for i in 0..8 {
        if let Err(e) = write_large(&rig, BACK, &format!("l/{i}"), 100 + i, &data) {
            rig.store.set_down(false);
            return e;
        }
    }
    panic!("never refused");
}
