//! Replica epochs: an open replica below the epoch its master recorded is a stale copy the
//! master gave up on; it is neither listed for recovery nor the source of the log digest, in
//! memory and after a restart from the replica files.

use super::*;

/// The log (all but the head closed) replicated to `b`, the head's writes carrying `epoch`.
fn log_with_head_epoch(b: &BackupService, imgs: &[Image], epoch: u64) {
    let head = imgs.last().unwrap();
    for img in &imgs[..imgs.len() - 1] {
        replicate(b, M, img, true);
    }
    let c = head.cert;
    let data = &head.bytes[..c.length as usize];
    b.write(&BackupWriteRequest {
        epoch,
        ..req(M, head.id, 0, OPEN, c, data)
    })
    .unwrap();
}

#[test]
fn stale_open_replicas_are_not_offered_to_recovery() {
    let imgs = images();
    let head = imgs.last().unwrap();
    let older = &imgs[imgs.len() - 2];
    // Not stale: the head's epoch (2) is the recorded one.
    let b = memory_backup();
    log_with_head_epoch(&b, &imgs, 2);
    let l = b.get_replicas_from_epoch(M, 2);
    assert_eq!(l.replicas.len(), imgs.len());
    assert_eq!(l.digest.as_ref().map(|d| d.segment_id), Some(head.id));
    // Stale: the master recorded epoch 3 after giving this copy up. The head is left out and
    // the digest comes from the newest usable replica (a closed older head), so recovery sees
    // an older log and waits for the newer head instead of replaying a stale copy of it.
    let b = memory_backup();
    log_with_head_epoch(&b, &imgs, 2);
    let l = b.get_replicas_from_epoch(M, 3);
    assert_eq!(l.replicas.len(), imgs.len() - 1);
    assert!(l
        .replicas
        .iter()
        .all(|r| r.segment_id != head.id && r.closed));
    assert_eq!(l.digest.as_ref().map(|d| d.segment_id), Some(older.id));
    // Closed replicas need no epoch: they are complete.
    let b = memory_backup();
    for img in &imgs {
        replicate(&b, M, img, true);
    }
    assert_eq!(b.get_replicas_from_epoch(M, 9).replicas.len(), imgs.len());
}

#[test]
fn a_write_raises_the_epoch_and_never_lowers_it() {
    let imgs = images();
    let head = imgs.last().unwrap();
    let c = head.cert;
    let b = memory_backup();
    log_with_head_epoch(&b, &imgs, 1);
    // The master re-stamps the replica it keeps with a write that adds no bytes.
    b.write(&BackupWriteRequest {
        epoch: 4,
        ..req(M, head.id, c.length, 0, c, &[])
    })
    .unwrap();
    // A delayed write of the old epoch arrives late: the epoch stays 4.
    b.write(&BackupWriteRequest {
        epoch: 1,
        ..req(M, head.id, c.length, 0, c, &[])
    })
    .unwrap();
    let l = b.get_replicas_from_epoch(M, 4);
    assert_eq!(l.digest.as_ref().map(|d| d.segment_id), Some(head.id));
}

#[test]
fn the_epoch_survives_a_restart_from_the_replica_files() {
    let imgs = images();
    let head = imgs.last().unwrap();
    for durability in [Durability::Disk, Durability::Memory] {
        let dir = temp_dir("epochs");
        let b = BackupService::open(cfg(dir.path(), durability)).unwrap();
        log_with_head_epoch(&b, &imgs, 5);
        if durability == Durability::Memory {
            assert!(b.flush());
        }
        drop(b);
        let b = BackupService::open(cfg(dir.path(), durability)).unwrap();
        let l = b.get_replicas_from_epoch(M, 5);
        assert_eq!(l.replicas.len(), imgs.len(), "{durability}");
        assert_eq!(l.digest.as_ref().map(|d| d.segment_id), Some(head.id));
        drop(b);
        let b = BackupService::open(cfg(dir.path(), durability)).unwrap();
        let l = b.get_replicas_from_epoch(M, 6);
        assert_eq!(l.replicas.len(), imgs.len() - 1, "{durability}");
    }
}
