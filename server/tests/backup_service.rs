//! The backup service over real TCP loopback: every backup RPC through a `Session` and
//! `msg::call`, with segment images built by the storage engine; bad input gets an error reply
//! and the server keeps serving; a disk-mode backup restarts from its directory.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_protocol::msg::backup::*;
use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::msg::{Empty, Message};
use faascache_protocol::ServerId;
use faascache_server::backup::{
    for_each_recovery_entry, BackupConfig, BackupService, Durability, RecoveryEntry,
    MAX_REPLICA_BYTES,
};
use faascache_storage::format::{decode_entry_header, Certificate, Entry, SegmentIterator};
use faascache_storage::{key_hash, Engine, EngineConfig, RejectRules, TableOptions};
use faascache_transport::{call, CallError};
use faascache_transport::{
    connect, serve, ClientConfig, DispatchConfig, DispatchHandler, Opcode, ServerHandle, Session,
    Status,
};

const T: Duration = Duration::from_secs(30);
const M: ServerId = ServerId::new(1, 1);
const OTHER: ServerId = ServerId::new(2, 1);

/// A temporary directory removed on drop (`tempfile`).
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("faascache-backup-it-{tag}-"))
        .tempdir()
        .unwrap()
}

struct Image {
    id: u64,
    bytes: Vec<u8>,
    cert: Certificate,
    /// Certificates at entry boundaries (the last is `cert`).
    prefixes: Vec<Certificate>,
}

/// Segment images of a real engine: 64 KiB segments, tables 1 and 2, some removes.
fn images(segment_bytes: usize, objects: u32, value_len: usize) -> Vec<Image> {
    let e = Engine::new(EngineConfig {
        memory_bytes: 64 * segment_bytes,
        max_memory_bytes: 64 * segment_bytes,
        seglet_bytes: 1024,
        segment_bytes,
        hash_buckets: Some(4096),
        huge_pages: false,
        log_id: M.0,
        background_cleaner: false,
        cleaner_reserve_seglets: None,
        warm_ahead_bytes: 0,
    })
    .unwrap();
    e.create_table(1, TableOptions::default()).unwrap();
    e.create_table(2, TableOptions::default()).unwrap();
    let value = vec![0xA5u8; value_len];
    for i in 0..objects {
        e.write(
            1 + i % 2,
            format!("k{i}").as_bytes(),
            &value,
            &RejectRules::NONE,
        )
        .unwrap();
    }
    for i in (0..objects).step_by(5) {
        e.remove(1 + i % 2, format!("k{i}").as_bytes(), &RejectRules::NONE)
            .unwrap();
    }
    e.segment_images()
        .into_iter()
        .map(|(id, bytes, cert)| {
            let mut prefixes = Vec::new();
            let (mut pos, mut crc) = (0usize, 0u32);
            while pos < cert.length as usize {
                let h = decode_entry_header(&bytes[pos..], pos).unwrap();
                crc = crc32c::crc32c_append(crc, &bytes[pos..pos + h.header_len]);
                pos += h.total_len();
                prefixes.push(Certificate {
                    length: pos as u32,
                    checksum: crc,
                });
            }
            assert_eq!(prefixes.last(), Some(&cert));
            Image {
                id,
                bytes,
                cert,
                prefixes,
            }
        })
        .collect()
}

fn start(svc: &Arc<BackupService>) -> (ServerHandle, Session) {
    let server = serve(
        &"tcp:host=127.0.0.1,port=0".parse().unwrap(),
        Arc::new(DispatchHandler(svc.clone())),
        DispatchConfig {
            cores: 2,
            pin: false,
            ..DispatchConfig::default()
        },
    )
    .unwrap();
    let session = connect(
        &server.local_locator().clone().into(),
        ClientConfig::default(),
    )
    .unwrap();
    (server, session)
}

fn rc(c: Certificate) -> ReplicaCertificate {
    ReplicaCertificate {
        length: c.length,
        checksum: c.checksum,
    }
}

fn write(
    s: &Session,
    master: ServerId,
    seg: u64,
    offset: u32,
    flags: u8,
    cert: Certificate,
    data: &[u8],
) -> Result<(), CallError> {
    let req = BackupWriteRequest {
        master,
        segment_id: seg,
        offset,
        flags,
        certificate: rc(cert),
        data,
        epoch: 0,
    };
    call(s, &req, T, |_: Empty| ())
}

fn status(r: Result<(), CallError>) -> Status {
    match r {
        Ok(()) => Status::OK,
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("transport failure: {e}")),
    }
}

/// Replicates `img` in `pieces` writes at entry boundaries, closing it if `close`.
fn replicate(s: &Session, master: ServerId, img: &Image, pieces: usize, close: bool) {
    let step = img.prefixes.len().div_ceil(pieces).max(1);
    let mut cuts: Vec<Certificate> = img.prefixes.iter().step_by(step).copied().collect();
    if cuts.last() != Some(&img.cert) {
        cuts.push(img.cert);
    }
    let mut at = 0u32;
    for (i, c) in cuts.iter().enumerate() {
        let mut flags = if i == 0 { BackupWriteRequest::OPEN } else { 0 };
        if close && i + 1 == cuts.len() {
            flags |= BackupWriteRequest::CLOSE;
        }
        write(
            s,
            master,
            img.id,
            at,
            flags,
            *c,
            &img.bytes[at as usize..c.length as usize],
        )
        .unwrap();
        at = c.length;
    }
}

fn get_replicas(s: &Session, master: ServerId) -> BackupGetReplicasResponse {
    call(
        s,
        &BackupGetReplicasRequest {
            master,
            min_epoch: 0,
        },
        T,
        |r| r,
    )
    .unwrap()
}

fn recovery_data(
    s: &Session,
    master: ServerId,
    seg: u64,
    ranges: &[TabletRange],
) -> Result<Vec<u8>, CallError> {
    let req = BackupGetRecoveryDataRequest {
        master,
        segment_id: seg,
        ranges: ranges.to_vec(),
    };
    call(s, &req, T, |r| r.entries.to_vec())
}

/// (kind, table, key, version) of every entry, as text, for comparisons.
fn describe_recovery(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for_each_recovery_entry(bytes, |e| {
        out.push(match e {
            RecoveryEntry::Object(o) => format!("o {} {:?} {}", o.table, o.key, o.version),
            RecoveryEntry::Tombstone(t) => format!("t {} {:?} {}", t.table, t.key, t.version),
            RecoveryEntry::SafeVersion(v) => format!("s {v}"),
            RecoveryEntry::Completion(c) => format!("c {} {} {}", c.table, c.client_id, c.rpc_id),
        })
    })
    .unwrap();
    out
}

fn expected_recovery(img: &Image, ranges: &[TabletRange]) -> Vec<String> {
    let inside = |table: u32, key: &[u8]| {
        let h = key_hash(key);
        ranges
            .iter()
            .any(|r| r.table_id == u64::from(table) && r.contains(h))
    };
    let mut out = Vec::new();
    let mut it = SegmentIterator::new(&img.bytes, Some(img.cert)).unwrap();
    while let Some(e) = it.next() {
        match e.unwrap().1 {
            Entry::Object(o) if inside(o.table, o.key) => {
                out.push(format!("o {} {:?} {}", o.table, o.key, o.version))
            }
            Entry::Tombstone(t) if inside(t.table, t.key) => {
                out.push(format!("t {} {:?} {}", t.table, t.key, t.version))
            }
            Entry::SafeVersion(v) => out.push(format!("s {v}")),
            _ => {}
        }
    }
    out
}

fn digest_of(img: &Image) -> Option<Vec<u64>> {
    let mut it = SegmentIterator::new(&img.bytes, Some(img.cert)).unwrap();
    while let Some(e) = it.next() {
        if let (_, Entry::LogDigest(d)) = e.unwrap() {
            return Some(d);
        }
    }
    None
}

#[test]
fn every_rpc_over_tcp() {
    let imgs = images(64 * 1024, 600, 400);
    assert!(imgs.len() >= 3, "{} segments", imgs.len());
    let head = imgs.last().unwrap();
    let svc = BackupService::open(BackupConfig::default()).unwrap();
    let (_server, s) = start(&svc);

    // Replicate every segment of M (the head stays open) and two of OTHER.
    for img in &imgs {
        replicate(&s, M, img, 5, img.id != head.id);
    }
    replicate(&s, OTHER, &imgs[0], 1, true);
    replicate(&s, OTHER, &imgs[1], 3, false);
    let st = svc.stats();
    assert_eq!((st.replicas, st.masters), (imgs.len() + 2, 2));

    write_rules(&s, &imgs);
    big_replica_and_free(&s, &svc, &imgs);
    replica_list_and_digest(&s, &imgs);
    fencing(&s, &imgs);
    recovery(&s, &svc, &imgs);
}

/// Write rules, as statuses over the wire.
fn write_rules(s: &Session, imgs: &[Image]) {
    let head = imgs.last().unwrap();
    let c0 = imgs[0].prefixes[0];
    let first = &imgs[0].bytes[..c0.length as usize];
    assert_eq!(
        status(write(s, M, 999, 0, 0, c0, first)),
        Status::BACKUP_BAD_SEGMENT_ID
    );
    let len = head.cert.length;
    assert_eq!(
        status(write(
            s,
            M,
            head.id,
            len + 1,
            0,
            Certificate {
                length: len + 2,
                checksum: 0
            },
            &[0]
        )),
        Status::BACKUP_SEGMENT_OVERFLOW
    );
    assert_eq!(
        status(write(
            s,
            M,
            imgs[0].id,
            imgs[0].cert.length,
            0,
            Certificate {
                length: imgs[0].cert.length + 1,
                checksum: 0
            },
            &[0]
        )),
        Status::BACKUP_SEGMENT_ALREADY_OPEN
    );
    // A retry to a closed replica is fine.
    assert_eq!(
        status(write(
            s,
            M,
            imgs[0].id,
            0,
            BackupWriteRequest::OPEN,
            c0,
            first
        )),
        Status::OK
    );
}

/// An 8 MiB replica in one RPC; free is idempotent.
fn big_replica_and_free(s: &Session, svc: &BackupService, imgs: &[Image]) {
    // A whole 8 MiB replica in one RPC, then one byte more.
    let big = vec![7u8; MAX_REPLICA_BYTES];
    let full = Certificate {
        length: MAX_REPLICA_BYTES as u32,
        checksum: 1,
    };
    write(
        s,
        ServerId::new(7, 1),
        1,
        0,
        BackupWriteRequest::OPEN,
        full,
        &big,
    )
    .unwrap();
    assert_eq!(
        status(write(
            s,
            ServerId::new(7, 1),
            1,
            full.length,
            0,
            Certificate {
                length: full.length + 1,
                checksum: 1
            },
            &[1]
        )),
        Status::BACKUP_SEGMENT_OVERFLOW
    );
    call(
        s,
        &BackupFreeRequest {
            master: ServerId::new(7, 1),
            segment_id: 1,
        },
        T,
        |_| (),
    )
    .unwrap();

    // Free: idempotent.
    for _ in 0..2 {
        call(
            s,
            &BackupFreeRequest {
                master: OTHER,
                segment_id: imgs[0].id,
            },
            T,
            |_| (),
        )
        .unwrap();
    }
    assert_eq!(svc.stats().replicas, imgs.len() + 1);
}

fn replica_list_and_digest(s: &Session, imgs: &[Image]) {
    let head = imgs.last().unwrap();
    // GetReplicas: every segment of M, closed except the head, with the head's digest.
    let l = get_replicas(s, M);
    let ids: Vec<u64> = l.replicas.iter().map(|r| r.segment_id).collect();
    assert_eq!(ids, imgs.iter().map(|i| i.id).collect::<Vec<_>>());
    for (r, img) in l.replicas.iter().zip(imgs) {
        assert_eq!(r.length, img.cert.length);
        assert_eq!(r.closed, img.id != head.id);
    }
    let newest_head = imgs.iter().rev().find(|i| digest_of(i).is_some()).unwrap();
    let d = l.digest.expect("a digest");
    assert_eq!(d.segment_id, newest_head.id);
    assert_eq!(Some(d.segments.clone()), digest_of(newest_head));
    let listed: HashSet<u64> = ids.iter().copied().collect();
    assert!(
        d.segments.iter().all(|s| listed.contains(s)),
        "digest names a segment not replicated here"
    );
}

fn fencing(s: &Session, imgs: &[Image]) {
    let head = imgs.last().unwrap();
    let len = head.cert.length;
    let c0 = imgs[0].prefixes[0];
    let first = &imgs[0].bytes[..c0.length as usize];
    // M is fenced now; OTHER is not.
    assert_eq!(
        status(write(s, M, head.id, len, 0, head.cert, &[])),
        Status::CALLER_NOT_IN_CLUSTER
    );
    assert_eq!(
        status(write(s, M, 5000, 0, BackupWriteRequest::OPEN, c0, first)),
        Status::CALLER_NOT_IN_CLUSTER
    );
    write(
        s,
        OTHER,
        imgs[1].id,
        imgs[1].cert.length,
        BackupWriteRequest::CLOSE,
        imgs[1].cert,
        &[],
    )
    .unwrap();
}

fn recovery(s: &Session, svc: &BackupService, imgs: &[Image]) {
    // GetRecoveryData: entries of the requested tablets, plus safe versions.
    let ranges = [
        TabletRange {
            table_id: 1,
            start_hash: 0,
            end_hash: u64::MAX / 3,
        },
        TabletRange {
            table_id: 2,
            start_hash: u64::MAX / 2,
            end_hash: u64::MAX,
        },
    ];
    let mut objects = 0;
    for img in imgs {
        let got = recovery_data(s, M, img.id, &ranges).unwrap();
        let got = describe_recovery(&got);
        assert_eq!(got, expected_recovery(img, &ranges), "segment {}", img.id);
        objects += got.iter().filter(|e| e.starts_with('o')).count();
    }
    assert!(objects > 20, "only {objects} objects in range");
    assert_eq!(
        recovery_data(s, M, 424242, &ranges).unwrap_err().status(),
        Some(Status::BACKUP_BAD_SEGMENT_ID)
    );

    // RecoveryDone frees M's replicas; OTHER's stay.
    call(s, &BackupRecoveryDoneRequest { master: M }, T, |_| ()).unwrap();
    assert_eq!(svc.stats().replicas, 1);
    assert_eq!(
        recovery_data(s, M, imgs[0].id, &ranges)
            .unwrap_err()
            .status(),
        Some(Status::BACKUP_BAD_SEGMENT_ID)
    );
    assert_eq!(get_replicas(s, OTHER).replicas.len(), 1);
}

#[test]
fn malformed_replica_is_refused_for_recovery() {
    let imgs = images(64 * 1024, 200, 300);
    let svc = BackupService::open(BackupConfig::default()).unwrap();
    let (_server, s) = start(&svc);
    let img = &imgs[0];
    let mut bytes = img.bytes[..img.cert.length as usize].to_vec();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    write(
        &s,
        M,
        img.id,
        0,
        BackupWriteRequest::OPEN | BackupWriteRequest::CLOSE,
        img.cert,
        &bytes,
    )
    .unwrap();
    let e = recovery_data(&s, M, img.id, &[]).unwrap_err();
    assert_eq!(e.status(), Some(Status::BACKUP_MALFORMED_SEGMENT));
    assert!(e.to_string().contains("validation"), "{e}");
    let l = get_replicas(&s, M);
    assert!(l.replicas.is_empty() && l.digest.is_none());
}

#[test]
fn garbage_gets_an_error_and_the_server_keeps_serving() {
    let imgs = images(64 * 1024, 100, 100);
    let svc = BackupService::open(BackupConfig::default()).unwrap();
    let (_server, s) = start(&svc);
    let ops = [
        Opcode::BackupWrite,
        Opcode::BackupFree,
        Opcode::BackupGetReplicas,
        Opcode::BackupGetRecoveryData,
        Opcode::BackupRecoveryDone,
    ];
    // Deterministic pseudo-random garbage (xorshift), plus some hand-made hostile payloads.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut payloads: Vec<Vec<u8>> = (0..60)
        .map(|i| (0..(i * 7) % 97).map(|_| next() as u8).collect())
        .collect();
    payloads.push(vec![]);
    payloads.push(vec![0xFF; 40]);
    // A write whose certificate does not cover exactly its data.
    let mut w = BackupWriteRequest {
        master: M,
        segment_id: 1,
        offset: 0,
        flags: BackupWriteRequest::OPEN,
        certificate: ReplicaCertificate {
            length: 3,
            checksum: 0,
        },
        data: b"ab",
        epoch: 0,
    }
    .to_vec();
    payloads.push(w.clone());
    // Unknown flag bits.
    w[20] = 0x80;
    payloads.push(w);
    // A recovery request with a huge range count.
    let mut r = vec![0u8; 16];
    r.extend_from_slice(&u32::MAX.to_le_bytes());
    payloads.push(r);
    for op in ops {
        for p in &payloads {
            let (st, reply) = s.call(op, p, T).unwrap();
            // Some short garbage can be a valid request (e.g. 8 bytes = a master id): those
            // answer OK or a backup status; anything else must be a decode error with a body.
            if st == Status::MESSAGE_TOO_SHORT || st == Status::REQUEST_FORMAT_ERROR {
                assert!(!reply.is_empty(), "{op}: error reply without a detail");
            } else {
                let backup_statuses = [
                    Status::OK,
                    Status::BACKUP_BAD_SEGMENT_ID,
                    Status::BACKUP_SEGMENT_ALREADY_OPEN,
                    Status::BACKUP_SEGMENT_OVERFLOW,
                    Status::BACKUP_MALFORMED_SEGMENT,
                    Status::RETRY,
                    Status::CALLER_NOT_IN_CLUSTER,
                ];
                assert!(
                    backup_statuses.contains(&st),
                    "{op}: unexpected {st:?} for {} garbage bytes",
                    p.len()
                );
            }
        }
    }
    // Still serving, and correctly.
    replicate(&s, OTHER, &imgs[0], 2, true);
    assert_eq!(get_replicas(&s, OTHER).replicas.len(), 1);
}

#[test]
fn disk_backup_restarts_from_its_directory() {
    let imgs = images(64 * 1024, 300, 300);
    let dir = temp_dir("disk");
    let cfg = BackupConfig {
        dir: Some(dir.path().to_path_buf()),
        durability: Durability::Disk,
        capacity_bytes: 64 * MAX_REPLICA_BYTES,
        warm_bytes: 0,
    };
    let before;
    {
        let svc = BackupService::open(cfg.clone()).unwrap();
        let (server, s) = start(&svc);
        for img in &imgs {
            replicate(&s, M, img, 3, img.id != imgs.last().unwrap().id);
        }
        before = svc.stats();
        drop(s);
        server.shutdown();
    }
    let svc = BackupService::open(cfg).unwrap();
    let after = svc.stats();
    assert_eq!(
        (after.replicas, after.bytes),
        (before.replicas, before.bytes)
    );
    let (_server, s) = start(&svc);
    let l = get_replicas(&s, M);
    assert_eq!(l.replicas.len(), imgs.len());
    let all = [TabletRange {
        table_id: 2,
        start_hash: 0,
        end_hash: u64::MAX,
    }];
    for img in &imgs {
        let got = describe_recovery(&recovery_data(&s, M, img.id, &all).unwrap());
        assert_eq!(got, expected_recovery(img, &all));
    }
    call(&s, &BackupRecoveryDoneRequest { master: M }, T, |_| ()).unwrap();
    assert!(!dir.path().join(format!("{:016x}", M.0)).exists());
}

/// Replication throughput: 64 KiB appends over TCP loopback, memory vs disk durability.
/// Run: `cargo test --release -p faascache-server --test backup_service -- --ignored --nocapture`
#[test]
#[ignore = "measurement, not a check"]
fn measure_write_throughput() {
    let chunk = 64 * 1024;
    let segments = 8u64;
    let data = vec![0x5Au8; MAX_REPLICA_BYTES];
    for durability in [Durability::Memory, Durability::Disk] {
        let dir = temp_dir("measure");
        let svc = BackupService::open(BackupConfig {
            dir: (durability == Durability::Disk).then(|| dir.path().to_path_buf()),
            durability,
            capacity_bytes: 64 * MAX_REPLICA_BYTES,
            warm_bytes: 0,
        })
        .unwrap();
        let (_server, s) = start(&svc);
        // Baseline: the transport alone (Echo of the same payload size).
        let t = Instant::now();
        for _ in 0..256 {
            let (st, _) = s.call(Opcode::Echo, &data[..chunk], T).unwrap();
            assert!(st.is_ok());
        }
        println!(
            "{durability}: baseline Echo of 64 KiB: {:.1} µs per call",
            t.elapsed().as_secs_f64() * 1e6 / 256.0
        );
        let t = Instant::now();
        let mut rpcs = 0;
        for seg in 0..segments {
            let mut at = 0;
            while at < MAX_REPLICA_BYTES {
                let end = at + chunk;
                let flags = if at == 0 { BackupWriteRequest::OPEN } else { 0 };
                let cert = Certificate {
                    length: end as u32,
                    checksum: 0,
                };
                write(&s, M, seg, at as u32, flags, cert, &data[at..end]).unwrap();
                at = end;
                rpcs += 1;
            }
        }
        let el = t.elapsed();
        let mib = (segments as usize * MAX_REPLICA_BYTES) as f64 / (1 << 20) as f64;
        println!(
            "{durability}: {rpcs} writes of 64 KiB in {el:?}: {:.0} MiB/s, {:.1} µs per write",
            mib / el.as_secs_f64(),
            el.as_secs_f64() * 1e6 / rpcs as f64
        );
    }
}

/// Fences survive a restart of a backup with a directory (`DIR/fences`), are dropped by
/// `BackupRecoveryDone`, and a backup that comes back adopts the coordinator's list of masters
/// awaiting recovery (`GetFencedMasters`, as its server does when it enlists): it fences those
/// it did not know and forgets (and frees) those recovered while it was away.
#[test]
fn fences_persist_across_restarts_and_follow_the_coordinator() {
    let imgs = images(64 * 1024, 100, 300);
    let dir = temp_dir("fences");
    let cfg = BackupConfig {
        dir: Some(dir.path().to_path_buf()),
        durability: Durability::Memory,
        capacity_bytes: 64 * MAX_REPLICA_BYTES,
        warm_bytes: 0,
    };
    let third = ServerId::new(3, 1);
    let c0 = imgs[0].prefixes[0];
    let first = &imgs[0].bytes[..c0.length as usize];
    {
        let svc = BackupService::open(cfg.clone()).unwrap();
        let (server, s) = start(&svc);
        replicate(&s, M, &imgs[0], 2, true);
        replicate(&s, OTHER, &imgs[0], 1, true);
        assert!(svc.flush());
        // The coordinator lists M's and OTHER's replicas: both fenced, on disk before the reply.
        assert_eq!(get_replicas(&s, M).replicas.len(), 1);
        assert_eq!(get_replicas(&s, OTHER).replicas.len(), 1);
        // OTHER's recovery completes: its fence is dropped.
        call(&s, &BackupRecoveryDoneRequest { master: OTHER }, T, |_| ()).unwrap();
        assert_eq!(svc.fenced(), vec![M]);
        drop(s);
        server.shutdown();
    }
    // Restart: M is still fenced (new and existing replicas), OTHER may write again.
    let svc = BackupService::open(cfg.clone()).unwrap();
    assert_eq!(svc.fenced(), vec![M]);
    let (server, s) = start(&svc);
    assert_eq!(
        status(write(&s, M, 77, 0, BackupWriteRequest::OPEN, c0, first)),
        Status::CALLER_NOT_IN_CLUSTER
    );
    write(&s, OTHER, 78, 0, BackupWriteRequest::OPEN, c0, first).unwrap();
    // While this backup was away, M's recovery completed and `third` crashed: the coordinator's
    // list names only `third`. A fence set after the question was asked is kept.
    let token = svc.fence_token();
    let late = ServerId::new(4, 1);
    assert!(get_replicas(&s, late).replicas.is_empty());
    let answer = GetFencedMastersResponse {
        masters: vec![third],
    };
    let decoded = GetFencedMastersResponse::decode(&answer.to_vec()).unwrap();
    svc.adopt_fences(&decoded.masters, token);
    assert_eq!(svc.fenced(), sorted(vec![third, late]));
    assert_eq!(
        status(write(&s, third, 79, 0, BackupWriteRequest::OPEN, c0, first)),
        Status::CALLER_NOT_IN_CLUSTER
    );
    // M's replica was freed with its fence (its recovery is over).
    assert!(get_replicas(&s, M).replicas.is_empty());
    drop(s);
    server.shutdown();
    drop(svc);
    let svc = BackupService::open(cfg).unwrap();
    assert_eq!(svc.fenced(), sorted(vec![third, late, M]));
}

fn sorted(mut v: Vec<ServerId>) -> Vec<ServerId> {
    v.sort();
    v
}
