//! Unit tests of the backup store: write rules, capacity, fencing, validation, digest, filtering,
//! and replica files (restart in both modes, torn updates, corrupt files). Segment images come
//! from a real storage engine.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use faascache_protocol::msg::backup::{BackupWriteRequest, ReplicaCertificate};
use faascache_protocol::msg::control::TabletRange;
use faascache_protocol::ServerId;
use faascache_transport::Status;

use super::file::{self, FileHeader, DATA_OFFSET, HEADER_LEN, SLOT_OFFSETS};
use super::*;
use faascache_storage::format::{decode_entry_header, Certificate, Entry, SegmentIterator};
use faascache_storage::{key_hash, Engine, EngineConfig, RejectRules, TableOptions};

const M: ServerId = ServerId::new(1, 1);
const OTHER: ServerId = ServerId::new(2, 1);
const OPEN: u8 = BackupWriteRequest::OPEN;
const CLOSE: u8 = BackupWriteRequest::CLOSE;

/// A temporary directory removed on drop (`tempfile`).
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("faascache-backup-{tag}-"))
        .tempdir()
        .unwrap()
}

/// One segment image with the certificate of every entry boundary.
struct Image {
    id: u64,
    bytes: Vec<u8>,
    cert: Certificate,
    /// (length, certificate) at each entry boundary, in order; the last is `cert`.
    prefixes: Vec<Certificate>,
}

fn prefixes(bytes: &[u8]) -> Vec<Certificate> {
    let mut out = Vec::new();
    let (mut pos, mut crc) = (0usize, 0u32);
    while pos < bytes.len() {
        let h = decode_entry_header(&bytes[pos..], pos).unwrap();
        crc = crc32c::crc32c_append(crc, &bytes[pos..pos + h.header_len]);
        pos += h.total_len();
        out.push(Certificate {
            length: pos as u32,
            checksum: crc,
        });
    }
    out
}

/// An engine with 16 KiB segments holding objects of tables 1 and 2 and some tombstones;
/// returns its segment images (several, the head last).
fn images() -> Vec<Image> {
    let cfg = EngineConfig {
        memory_bytes: 1 << 20,
        max_memory_bytes: 1 << 20,
        seglet_bytes: 1024,
        segment_bytes: 16 * 1024,
        hash_buckets: Some(1024),
        huge_pages: false,
        log_id: M.0,
        background_cleaner: false,
        cleaner_reserve_seglets: None,
        warm_ahead_bytes: 0,
    };
    let e = Engine::new(cfg).unwrap();
    e.create_table(1, TableOptions::default()).unwrap();
    e.create_table(2, TableOptions::default()).unwrap();
    for i in 0..120u32 {
        let key = format!("key-{i}");
        e.write(
            1 + i % 2,
            key.as_bytes(),
            &[i as u8; 300],
            &RejectRules::NONE,
        )
        .unwrap();
    }
    for i in (0..120u32).step_by(7) {
        e.remove(1 + i % 2, format!("key-{i}").as_bytes(), &RejectRules::NONE)
            .unwrap();
    }
    let imgs: Vec<Image> = e
        .segment_images()
        .into_iter()
        .map(|(id, bytes, cert)| {
            let p = prefixes(&bytes[..cert.length as usize]);
            assert_eq!(p.last(), Some(&cert));
            Image {
                id,
                bytes,
                cert,
                prefixes: p,
            }
        })
        .collect();
    assert!(imgs.len() >= 3, "want several segments, got {}", imgs.len());
    imgs
}

fn req<'a>(
    master: ServerId,
    seg: u64,
    offset: u32,
    flags: u8,
    cert: Certificate,
    data: &'a [u8],
) -> BackupWriteRequest<'a> {
    BackupWriteRequest {
        master,
        segment_id: seg,
        offset,
        flags,
        certificate: ReplicaCertificate {
            length: cert.length,
            checksum: cert.checksum,
        },
        data,
        epoch: 0,
    }
}

/// Replicates `img` in pieces at entry boundaries (about `pieces` of them), closing at the end.
fn replicate(b: &BackupService, master: ServerId, img: &Image, close: bool) {
    let step = (img.prefixes.len() / 4).max(1);
    let mut at = 0u32;
    let mut first = true;
    let cuts: Vec<Certificate> = img
        .prefixes
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % step == 0 || *i + 1 == img.prefixes.len())
        .map(|(_, c)| *c)
        .collect();
    for (i, c) in cuts.iter().enumerate() {
        let mut flags = if first { OPEN } else { 0 };
        if close && i + 1 == cuts.len() {
            flags |= CLOSE;
        }
        let data = &img.bytes[at as usize..c.length as usize];
        b.write(&req(master, img.id, at, flags, *c, data)).unwrap();
        at = c.length;
        first = false;
    }
}

fn memory_backup() -> Arc<BackupService> {
    BackupService::open(BackupConfig::default()).unwrap()
}

fn status(r: Result<(), service::Refusal>) -> Status {
    match r {
        Ok(()) => Status::OK,
        Err(r) => r.status,
    }
}

#[test]
fn pieces_append_and_validate() {
    let imgs = images();
    let b = memory_backup();
    for img in &imgs {
        replicate(&b, M, img, img.id != imgs.last().unwrap().id);
    }
    let s = b.stats();
    assert_eq!((s.replicas, s.masters), (imgs.len(), 1));
    assert_eq!(
        s.bytes,
        imgs.iter().map(|i| u64::from(i.cert.length)).sum::<u64>()
    );
    let list = b.get_replicas(M);
    assert_eq!(list.replicas.len(), imgs.len());
    for (info, img) in list.replicas.iter().zip(&imgs) {
        assert_eq!((info.segment_id, info.length), (img.id, img.cert.length));
        assert_eq!(info.closed, img.id != imgs.last().unwrap().id);
    }
}

#[test]
fn retries_overwrite_and_the_longest_certificate_stays() {
    let img = &images()[0];
    let c1 = img.prefixes[0];
    let c2 = img.prefixes[2];
    let c3 = img.prefixes[4];
    let d1 = &img.bytes[..c1.length as usize];
    let d2 = &img.bytes[c1.length as usize..c2.length as usize];
    for master in [M, OTHER] {
        let b = memory_backup();
        b.write(&req(master, img.id, 0, OPEN, c1, d1)).unwrap();
        b.write(&req(master, img.id, c1.length, 0, c2, d2)).unwrap();
        // Retries of both, in the wrong order: accepted, nothing shrinks.
        b.write(&req(master, img.id, 0, OPEN, c1, d1)).unwrap();
        b.write(&req(master, img.id, c1.length, 0, c2, d2)).unwrap();
        b.write(&req(master, img.id, 0, OPEN, c1, d1)).unwrap();
        assert_eq!(b.stats().bytes, u64::from(c2.length));
        if master == M {
            // The stored certificate is still the longest one (listing fences M: stop here).
            let l = b.get_replicas(M);
            assert_eq!(l.replicas.len(), 1);
            assert_eq!(l.replicas[0].length, c2.length);
            continue;
        }
        // A write covering old and new bytes at once.
        b.write(&req(
            master,
            img.id,
            c1.length,
            0,
            c3,
            &img.bytes[c1.length as usize..c3.length as usize],
        ))
        .unwrap();
        assert_eq!(b.stats().bytes, u64::from(c3.length));
        let l = b.get_replicas(master);
        assert_eq!(l.replicas[0].length, c3.length);
    }
}

#[test]
fn write_rules() {
    let img = &images()[0];
    let b = memory_backup();
    let c1 = img.prefixes[1];
    let d1 = &img.bytes[..c1.length as usize];
    // Unknown replica without OPEN.
    assert_eq!(
        status(b.write(&req(M, img.id, 0, 0, c1, d1))),
        Status::BACKUP_BAD_SEGMENT_ID
    );
    b.write(&req(M, img.id, 0, OPEN, c1, d1)).unwrap();
    // A gap.
    let c3 = img.prefixes[3];
    let c2 = img.prefixes[2];
    let gap = b.write(&req(
        M,
        img.id,
        c2.length,
        0,
        c3,
        &img.bytes[c2.length as usize..c3.length as usize],
    ));
    let e = gap.unwrap_err();
    assert_eq!(e.status, Status::BACKUP_SEGMENT_OVERFLOW);
    assert!(e.detail.contains("gap"), "{}", e.detail);
    // Past the maximum replica size.
    let big = vec![0u8; 16];
    let at = (MAX_REPLICA_BYTES - 8) as u32;
    let cert = Certificate {
        length: at + 16,
        checksum: 0,
    };
    assert_eq!(
        status(b.write(&req(M, 99, at, OPEN, cert, &big))),
        Status::BACKUP_SEGMENT_OVERFLOW
    );
    // Certificate length must equal offset + data length (checked here too).
    let wrong = Certificate {
        length: c1.length + 1,
        ..c1
    };
    assert_eq!(
        status(b.write(&req(M, img.id, 0, 0, wrong, d1))),
        Status::REQUEST_FORMAT_ERROR
    );
    // Master 0.
    assert_eq!(
        status(b.write(&req(ServerId::NONE, 1, 0, OPEN, c1, d1))),
        Status::REQUEST_FORMAT_ERROR
    );
    // Close, then: retries fine, growth refused with "closed".
    b.write(&req(
        M,
        img.id,
        c1.length,
        CLOSE,
        c2,
        &img.bytes[c1.length as usize..c2.length as usize],
    ))
    .unwrap();
    b.write(&req(M, img.id, 0, OPEN, c1, d1)).unwrap();
    b.write(&req(
        M,
        img.id,
        c1.length,
        CLOSE,
        c2,
        &img.bytes[c1.length as usize..c2.length as usize],
    ))
    .unwrap();
    let e = b
        .write(&req(
            M,
            img.id,
            c2.length,
            0,
            c3,
            &img.bytes[c2.length as usize..c3.length as usize],
        ))
        .unwrap_err();
    assert_eq!(e.status, Status::BACKUP_SEGMENT_ALREADY_OPEN);
    assert!(e.detail.contains("closed"));
    let l = b.get_replicas(M);
    assert!(l.replicas[0].closed && l.replicas[0].length == c2.length);
}

#[test]
fn free_and_recovery_done() {
    let imgs = images();
    let b = memory_backup();
    for img in &imgs {
        replicate(&b, M, img, true);
        replicate(&b, OTHER, img, true);
    }
    b.free(M, imgs[0].id);
    b.free(M, imgs[0].id); // idempotent
    b.free(M, 12345);
    assert_eq!(b.stats().replicas, 2 * imgs.len() - 1);
    // A freed replica is unknown to writes without OPEN.
    let c = imgs[0].prefixes[0];
    assert_eq!(
        status(b.write(&req(
            M,
            imgs[0].id,
            0,
            0,
            c,
            &imgs[0].bytes[..c.length as usize]
        ))),
        Status::BACKUP_BAD_SEGMENT_ID
    );
    assert_eq!(b.recovery_done(M), imgs.len() - 1);
    let s = b.stats();
    assert_eq!((s.replicas, s.masters), (imgs.len(), 1));
    assert_eq!(
        s.bytes,
        imgs.iter().map(|i| u64::from(i.cert.length)).sum::<u64>()
    );
    assert_eq!(b.recovery_done(OTHER), imgs.len());
    let s = b.stats();
    assert_eq!((s.replicas, s.bytes, s.reserved_bytes), (0, 0, 0));
}

#[test]
fn capacity_refuses_new_replicas_with_retry() {
    let imgs = images();
    // Segments declare 16 KiB: room for two open replicas, not three.
    let b = BackupService::open(BackupConfig {
        capacity_bytes: 40 * 1024,
        ..BackupConfig::default()
    })
    .unwrap();
    fn first(img: &Image) -> BackupWriteRequest<'_> {
        let c = img.prefixes[0];
        req(M, img.id, 0, OPEN, c, &img.bytes[..c.length as usize])
    }
    b.write(&first(&imgs[0])).unwrap();
    b.write(&first(&imgs[1])).unwrap();
    assert_eq!(b.stats().reserved_bytes, 32 * 1024);
    let e = b.write(&first(&imgs[2])).unwrap_err();
    assert_eq!(e.status, Status::RETRY);
    assert!(e.detail.contains("another backup"), "{}", e.detail);
    // Closing one shrinks its reservation to its length: now the third fits.
    let c = imgs[0].prefixes[0];
    b.write(&req(M, imgs[0].id, c.length, CLOSE, c, &[]))
        .unwrap();
    assert_eq!(b.stats().reserved_bytes, 16 * 1024 + u64::from(c.length));
    b.write(&first(&imgs[2])).unwrap();
    // An OPEN without the segment header reserves a whole maximum replica.
    let small = BackupService::open(BackupConfig {
        capacity_bytes: MAX_REPLICA_BYTES,
        ..BackupConfig::default()
    })
    .unwrap();
    let empty = Certificate::default();
    small.write(&req(M, 1000, 0, OPEN, empty, &[])).unwrap();
    assert_eq!(small.stats().reserved_bytes, MAX_REPLICA_BYTES as u64);
    assert_eq!(status(small.write(&first(&imgs[0]))), Status::RETRY);
    small.free(M, 1000);
    assert_eq!(small.stats().reserved_bytes, 0);
    small.write(&first(&imgs[0])).unwrap();
    assert!(BackupService::open(BackupConfig {
        capacity_bytes: 0,
        ..BackupConfig::default()
    })
    .is_err());
}

#[test]
fn fencing_refuses_the_zombie_only() {
    let imgs = images();
    let b = memory_backup();
    let c = imgs[0].prefixes[0];
    let d = &imgs[0].bytes[..c.length as usize];
    b.write(&req(M, imgs[0].id, 0, OPEN, c, d)).unwrap();
    b.write(&req(OTHER, imgs[0].id, 0, OPEN, c, d)).unwrap();
    assert_eq!(b.get_replicas(M).replicas.len(), 1);
    // Existing and new replicas of M: refused.
    let c2 = imgs[0].prefixes[1];
    let d2 = &imgs[0].bytes[c.length as usize..c2.length as usize];
    let e = b
        .write(&req(M, imgs[0].id, c.length, 0, c2, d2))
        .unwrap_err();
    assert_eq!(e.status, Status::CALLER_NOT_IN_CLUSTER);
    assert_eq!(
        status(b.write(&req(M, imgs[1].id, 0, OPEN, c, d))),
        Status::CALLER_NOT_IN_CLUSTER
    );
    // OTHER is unaffected; M's replicas stay readable for recovery.
    b.write(&req(OTHER, imgs[0].id, c.length, 0, c2, d2))
        .unwrap();
    let mut out = Vec::new();
    b.recovery_data(M, imgs[0].id, &[], &mut out).unwrap();
    // RecoveryDone frees M's replicas and drops its fence (the coordinator waited out M's
    // master lease before the handover, so M admits no new write): the set stays bounded.
    assert!(b.fenced().contains(&M));
    b.recovery_done(M);
    assert!(!b.fenced().contains(&M));
    assert_eq!(
        status(b.write(&req(M, imgs[0].id, c.length, 0, c2, d2))),
        Status::BACKUP_BAD_SEGMENT_ID,
        "the freed replica is gone"
    );
    // A master fenced before it ever wrote here is refused too.
    let never = ServerId::new(9, 1);
    assert!(b.get_replicas(never).replicas.is_empty());
    assert_eq!(
        status(b.write(&req(never, 1, 0, OPEN, c, d))),
        Status::CALLER_NOT_IN_CLUSTER
    );
}

#[test]
fn invalid_replicas_are_left_out_and_the_digest_is_the_newest_valid_one() {
    let imgs = images();
    // Which images carry a digest (heads), by a direct walk.
    let with_digest: Vec<(u64, Vec<u64>)> = imgs
        .iter()
        .filter_map(|img| {
            let mut it = SegmentIterator::new(&img.bytes, Some(img.cert)).unwrap();
            let mut d = None;
            while let Some(e) = it.next() {
                if let (_, Entry::LogDigest(x)) = e.unwrap() {
                    d.get_or_insert(x);
                }
            }
            d.map(|d| (img.id, d))
        })
        .collect();
    assert!(
        with_digest.len() >= 2,
        "want two heads, got {}",
        with_digest.len()
    );
    let b = memory_backup();
    for img in &imgs {
        replicate(&b, M, img, true);
    }
    // An empty replica and a corrupt one: neither listed.
    b.write(&req(M, 777, 0, OPEN, Certificate::default(), &[]))
        .unwrap();
    let img = &imgs[0];
    let mut corrupt = img.bytes[..img.cert.length as usize].to_vec();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x40;
    b.write(&req(M, 778, 0, OPEN | CLOSE, img.cert, &corrupt))
        .unwrap();
    let l = b.get_replicas(M);
    let ids: Vec<u64> = l.replicas.iter().map(|r| r.segment_id).collect();
    assert_eq!(ids, imgs.iter().map(|i| i.id).collect::<Vec<_>>());
    let (newest, segs) = with_digest.last().unwrap();
    let d = l.digest.unwrap();
    assert_eq!((d.segment_id, &d.segments), (*newest, segs));
    assert!(d.segments.contains(newest));
    let mut out = Vec::new();
    let e = b.recovery_data(M, 778, &[], &mut out).unwrap_err();
    assert_eq!(e.status, Status::BACKUP_MALFORMED_SEGMENT);
    assert!(out.is_empty());
    assert_eq!(
        b.recovery_data(M, 779, &[], &mut out).unwrap_err().status,
        Status::BACKUP_BAD_SEGMENT_ID
    );

    // If the newest head is invalid (here: freed and rewritten with a bad certificate), the
    // digest comes from the previous head.
    let b = memory_backup();
    for img in &imgs {
        if img.id == *newest {
            let bad = Certificate {
                checksum: img.cert.checksum ^ 1,
                ..img.cert
            };
            b.write(&req(
                M,
                img.id,
                0,
                OPEN,
                bad,
                &img.bytes[..img.cert.length as usize],
            ))
            .unwrap();
        } else {
            replicate(&b, M, img, true);
        }
    }
    let l = b.get_replicas(M);
    assert_eq!(l.replicas.len(), imgs.len() - 1);
    let prev = &with_digest[with_digest.len() - 2];
    assert_eq!(
        l.digest.map(|d| (d.segment_id, d.segments)),
        Some(prev.clone())
    );
}

#[test]
fn recovery_data_is_filtered_by_tablet() {
    let imgs = images();
    let b = memory_backup();
    for img in &imgs {
        replicate(&b, M, img, true);
    }
    let ranges = [
        TabletRange {
            table_id: 1,
            start_hash: 0,
            end_hash: u64::MAX / 2,
        },
        TabletRange {
            table_id: 2,
            start_hash: u64::MAX / 4,
            end_hash: u64::MAX,
        },
    ];
    let inside = |table: u32, key: &[u8]| {
        let h = key_hash(key);
        ranges
            .iter()
            .any(|r| r.table_id == u64::from(table) && r.contains(h))
    };
    let (mut total_in, mut total_out, mut tombstones) = (0, 0, 0);
    for img in &imgs {
        // Expected, by a direct walk of the image.
        let mut expect = Vec::new();
        let mut it = SegmentIterator::new(&img.bytes, Some(img.cert)).unwrap();
        while let Some(e) = it.next() {
            match e.unwrap().1 {
                Entry::Object(o) => {
                    if inside(o.table, o.key) {
                        expect.push(format!("o{}:{:?}:{}", o.table, o.key, o.version));
                        total_in += 1;
                    } else {
                        total_out += 1;
                    }
                }
                Entry::Tombstone(t) if inside(t.table, t.key) => {
                    expect.push(format!("t{}:{:?}:{}", t.table, t.key, t.version))
                }
                Entry::SafeVersion(v) => expect.push(format!("s{v}")),
                _ => {}
            }
        }
        let mut out = Vec::new();
        b.recovery_data(M, img.id, &ranges, &mut out).unwrap();
        let mut got = Vec::new();
        for_each_recovery_entry(&out, |e| {
            got.push(match e {
                RecoveryEntry::Object(o) => format!("o{}:{:?}:{}", o.table, o.key, o.version),
                RecoveryEntry::Tombstone(t) => {
                    tombstones += 1;
                    format!("t{}:{:?}:{}", t.table, t.key, t.version)
                }
                RecoveryEntry::SafeVersion(v) => format!("s{v}"),
                RecoveryEntry::Completion(c) => {
                    format!("c{}:{}:{}", c.table, c.client_id, c.rpc_id)
                }
            })
        })
        .unwrap();
        assert_eq!(got, expect, "segment {}", img.id);
        // No ranges: only the safe versions.
        let mut none = Vec::new();
        b.recovery_data(M, img.id, &[], &mut none).unwrap();
        for_each_recovery_entry(&none, |e| {
            assert!(matches!(e, RecoveryEntry::SafeVersion(_)))
        })
        .unwrap();
    }
    assert!(
        total_in > 10 && total_out > 10,
        "{total_in} in, {total_out} out"
    );
    assert!(tombstones > 0);
}

// ---- files ------------------------------------------------------------------------------------

fn cfg(dir: &Path, durability: Durability) -> BackupConfig {
    BackupConfig {
        dir: Some(dir.to_path_buf()),
        durability,
        capacity_bytes: DEFAULT_CAPACITY_BYTES,
        warm_bytes: 0,
    }
}

/// Every replica's (segment, length, closed) and its table-1 recovery bytes, to compare two
/// backups. Fences `master` on `b`.
fn contents(b: &BackupService, master: ServerId) -> Vec<(u64, u32, bool, Vec<u8>)> {
    let mut out = Vec::new();
    let l = b.get_replicas(master);
    for r in l.replicas {
        let mut bytes = Vec::new();
        let all = TabletRange {
            table_id: 1,
            start_hash: 0,
            end_hash: u64::MAX,
        };
        b.recovery_data(master, r.segment_id, &[all], &mut bytes)
            .unwrap();
        out.push((r.segment_id, r.length, r.closed, bytes));
    }
    out
}

#[test]
fn restart_from_dir_in_both_modes() {
    let imgs = images();
    for durability in [Durability::Disk, Durability::Memory] {
        let dir = temp_dir("restart");
        let b = BackupService::open(cfg(dir.path(), durability)).unwrap();
        for img in &imgs {
            replicate(&b, M, img, img.id != imgs.last().unwrap().id);
        }
        replicate(&b, OTHER, &imgs[0], true);
        b.free(OTHER, imgs[0].id);
        replicate(&b, OTHER, &imgs[1], false);
        if durability == Durability::Memory {
            assert!(b.flush());
        }
        let before = b.stats();
        // A second backup on the same directory is refused while the first runs.
        assert!(matches!(
            BackupService::open(cfg(dir.path(), durability)),
            Err(BackupError::Locked { .. })
        ));
        drop(b);
        let b2 = BackupService::open(cfg(dir.path(), durability)).unwrap();
        let after = b2.stats();
        assert_eq!(
            (after.replicas, after.bytes, after.masters),
            (before.replicas, before.bytes, before.masters),
            "{durability}"
        );
        assert!(!file::replica_path(dir.path(), OTHER, imgs[0].id).exists());
        // Reference: the same writes to a memory-only backup.
        let reference = memory_backup();
        for img in &imgs {
            replicate(&reference, M, img, img.id != imgs.last().unwrap().id);
        }
        assert_eq!(contents(&b2, M), contents(&reference, M), "{durability}");
        // The reloaded open replica takes further writes; the closed ones refuse growth.
        b2.write(&req(
            OTHER,
            imgs[1].id,
            imgs[1].cert.length,
            CLOSE,
            imgs[1].cert,
            &[],
        ))
        .unwrap();
        let c = imgs[0].cert;
        assert_eq!(
            status(b2.write(&req(M, imgs[0].id, c.length, 0, c, &[0]))),
            Status::REQUEST_FORMAT_ERROR
        );
        // RecoveryDone deletes the files.
        b2.recovery_done(M);
        b2.recovery_done(OTHER);
        drop(b2);
        let b3 = BackupService::open(cfg(dir.path(), durability)).unwrap();
        assert_eq!(b3.stats().replicas, 0, "{durability}");
    }
}

#[test]
fn memory_mode_flusher_writes_in_the_background() {
    let imgs = images();
    let dir = temp_dir("flusher");
    let b = BackupService::open(cfg(dir.path(), Durability::Memory)).unwrap();
    replicate(&b, M, &imgs[0], true);
    // Without calling flush: dropping the service stops the flusher after a last flush; and
    // before that, the flusher writes on its own (polled with a generous liveness timeout).
    let path = file::replica_path(dir.path(), M, imgs[0].id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let loaded = std::fs::read(&path).ok().and_then(|b| {
            let h0 = FileHeader::decode(&b[..HEADER_LEN.min(b.len())]).ok();
            let at = SLOT_OFFSETS[1] as usize;
            let h1 = b
                .get(at..at + HEADER_LEN)
                .and_then(|s| FileHeader::decode(s).ok());
            [h0, h1].into_iter().flatten().max_by_key(|h| h.sequence)
        });
        if loaded.is_some_and(|h| h.closed && h.certificate == imgs[0].cert) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flusher did not write the replica"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    replicate(&b, M, &imgs[1], true);
    drop(b);
    let b2 = BackupService::open(cfg(dir.path(), Durability::Memory)).unwrap();
    assert_eq!(b2.get_replicas(M).replicas.len(), 2);
}

fn open_rw(p: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap()
}

#[test]
fn torn_updates_fall_back_to_the_previous_header() {
    use std::os::unix::fs::FileExt;
    let img = &images()[0];
    let c1 = img.prefixes[1];
    let c2 = img.prefixes[3];
    let setup = |dir: &Path| {
        let b = BackupService::open(cfg(dir, Durability::Disk)).unwrap();
        b.write(&req(
            M,
            img.id,
            0,
            OPEN,
            c1,
            &img.bytes[..c1.length as usize],
        ))
        .unwrap();
        b.write(&req(
            M,
            img.id,
            c1.length,
            0,
            c2,
            &img.bytes[c1.length as usize..c2.length as usize],
        ))
        .unwrap();
        // Sequences: 0 (create, slot 0), 1 (first write, slot 1), 2 (second write, slot 0).
        file::replica_path(dir, M, img.id)
    };
    let length_after_reload = |dir: &Path| {
        let b = BackupService::open(cfg(dir, Durability::Disk)).unwrap();
        let l = b.get_replicas(M);
        // Listing fenced M (persistently): undo it, the next step plays M retrying a write.
        b.store.unfence(M);
        l.replicas.first().map(|r| r.length)
    };

    // 1. The newest header slot torn: the previous one (first write) is used.
    let dir = temp_dir("torn-header");
    let p = setup(dir.path());
    open_rw(&p)
        .write_all_at(&[0xEE; 20], SLOT_OFFSETS[0] + 10)
        .unwrap();
    assert_eq!(length_after_reload(dir.path()), Some(c1.length));

    // 2. The newest header written but its data not (zeros where the second write went).
    let dir = temp_dir("torn-data");
    let p = setup(dir.path());
    let hole = vec![0u8; (c2.length - c1.length) as usize];
    open_rw(&p)
        .write_all_at(&hole, DATA_OFFSET + u64::from(c1.length))
        .unwrap();
    assert_eq!(length_after_reload(dir.path()), Some(c1.length));
    // And the reloaded replica takes the retried second write and validates again.
    let b = BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
    b.write(&req(
        M,
        img.id,
        c1.length,
        0,
        c2,
        &img.bytes[c1.length as usize..c2.length as usize],
    ))
    .unwrap();
    drop(b);
    assert_eq!(length_after_reload(dir.path()), Some(c2.length));

    // 3. The file cut short (data lost past the first write).
    let dir = temp_dir("torn-short");
    let p = setup(dir.path());
    open_rw(&p)
        .set_len(DATA_OFFSET + u64::from(c1.length) + 3)
        .unwrap();
    assert_eq!(length_after_reload(dir.path()), Some(c1.length));
}

#[test]
fn corrupt_files_are_renamed_and_skipped() {
    use std::os::unix::fs::FileExt;
    let imgs = images();
    let dir = temp_dir("corrupt");
    let b = BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
    for img in &imgs {
        replicate(&b, M, img, true);
    }
    drop(b);
    let mdir = file::master_dir(dir.path(), M);
    // Data corrupted under every header: bad.
    let p0 = file::replica_path(dir.path(), M, imgs[0].id);
    open_rw(&p0)
        .write_all_at(&[0x55; 4], DATA_OFFSET + 40)
        .unwrap();
    // Both header slots destroyed: bad.
    let p1 = file::replica_path(dir.path(), M, imgs[1].id);
    let f = open_rw(&p1);
    f.write_all_at(&[0; HEADER_LEN], SLOT_OFFSETS[0]).unwrap();
    f.write_all_at(&[0; HEADER_LEN], SLOT_OFFSETS[1]).unwrap();
    // Garbage and an empty file under replica names; a stray file; a file under another
    // master's name (header names M): bad.
    std::fs::write(mdir.join("900.replica"), b"not a replica at all").unwrap();
    std::fs::write(mdir.join("901.replica"), b"").unwrap();
    std::fs::write(mdir.join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("README"), b"hello").unwrap();
    let odir = file::master_dir(dir.path(), OTHER);
    std::fs::create_dir_all(&odir).unwrap();
    std::fs::copy(
        file::replica_path(dir.path(), M, imgs[2].id),
        odir.join(format!("{}.replica", imgs[2].id)),
    )
    .unwrap();

    let b = BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
    let s = b.stats();
    assert_eq!((s.replicas, s.masters), (imgs.len() - 2, 1));
    for name in [
        format!("{}.replica.bad", imgs[0].id),
        format!("{}.replica.bad", imgs[1].id),
        "900.replica.bad".into(),
        "901.replica.bad".into(),
    ] {
        assert!(mdir.join(&name).exists(), "{name}");
    }
    assert!(odir.join(format!("{}.replica.bad", imgs[2].id)).exists());
    assert!(mdir.join("notes.txt").exists());
    let ids: Vec<u64> = b
        .get_replicas(M)
        .replicas
        .iter()
        .map(|r| r.segment_id)
        .collect();
    assert_eq!(ids, imgs[2..].iter().map(|i| i.id).collect::<Vec<_>>());
    drop(b);
    // A second restart loads the same and does not trip over the .bad files.
    let b = BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
    assert_eq!(b.stats().replicas, imgs.len() - 2);
}

#[test]
fn config_errors() {
    let e = BackupService::open(BackupConfig {
        durability: Durability::Disk,
        ..BackupConfig::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("--backup-dir"), "{e}");
    assert_eq!("disk".parse::<Durability>(), Ok(Durability::Disk));
    assert_eq!("memory".parse::<Durability>(), Ok(Durability::Memory));
    assert!("tape".parse::<Durability>().is_err());
    // A stale lock (dead pid) is taken over.
    let dir = temp_dir("stale-lock");
    std::fs::write(dir.path().join("lock"), b"4000000000").unwrap();
    BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
}

#[test]
fn concurrent_writers_and_the_flusher() {
    let imgs = Arc::new(images());
    for durability in [Durability::Memory, Durability::Disk] {
        let dir = temp_dir("concurrent");
        let b = BackupService::open(cfg(dir.path(), durability)).unwrap();
        let threads: Vec<_> = (1..=4u32)
            .map(|t| {
                let (b, imgs) = (b.clone(), imgs.clone());
                std::thread::spawn(move || {
                    for img in imgs.iter() {
                        replicate(&b, ServerId::new(t, 1), img, true);
                    }
                    // Free one, to race frees with the flusher too.
                    b.free(ServerId::new(t, 1), imgs[0].id);
                })
            })
            .collect();
        let b2 = b.clone();
        let poller = std::thread::spawn(move || {
            for _ in 0..50 {
                let _ = b2.stats();
                b2.flush();
            }
        });
        for t in threads {
            t.join().unwrap();
        }
        poller.join().unwrap();
        drop(b);
        let b = BackupService::open(cfg(dir.path(), durability)).unwrap();
        for t in 1..=4u32 {
            let l = b.get_replicas(ServerId::new(t, 1));
            let got: Vec<(u64, u32, bool)> = l
                .replicas
                .iter()
                .map(|r| (r.segment_id, r.length, r.closed))
                .collect();
            let want: Vec<(u64, u32, bool)> = imgs[1..]
                .iter()
                .map(|i| (i.id, i.cert.length, true))
                .collect();
            assert_eq!(got, want, "{durability}, master {t}");
        }
        assert!(!file::replica_path(dir.path(), ServerId::new(1, 1), imgs[0].id).exists());
    }
}

mod epochs;
mod fences;

/// `BackupFree` on a dispatch thread frees the memory at once and leaves the file to the write
/// worker: the file is gone after `unlink_freed`, and a restart does not bring the replica back.
#[test]
fn free_now_frees_memory_at_once_and_the_file_later() {
    let imgs = images();
    let dir = temp_dir("free-now");
    let b = BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
    replicate(&b, M, &imgs[0], true);
    let path = super::file::replica_path(dir.path(), M, imgs[0].id);
    assert!(path.exists());
    b.store.free_now(M, imgs[0].id);
    assert_eq!(
        (
            b.stats().replicas,
            b.stats().bytes,
            b.stats().reserved_bytes
        ),
        (0, 0, 0)
    );
    b.store.unlink_freed();
    assert!(!path.exists(), "the freed replica's file is deleted");
    drop(b);
    let b = BackupService::open(cfg(dir.path(), Durability::Disk)).unwrap();
    assert_eq!(b.stats().replicas, 0);
}
