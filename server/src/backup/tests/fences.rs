//! Fences: what a fenced master's acknowledged writes become, fences learned from the
//! coordinator.

use super::*;

#[test]
fn every_acknowledged_write_is_listed_after_the_fence() {
    // A writer appends entry by entry while another thread fences the master: every write that
    // was acknowledged must be covered by the listed length; every later one is refused.
    let imgs = Arc::new(images());
    for round in 0..20u64 {
        let b = memory_backup();
        let (bw, iw) = (b.clone(), imgs.clone());
        let acked = Arc::new(AtomicU32::new(0));
        let acked_w = acked.clone();
        let writer = std::thread::spawn(move || {
            for img in iw.iter() {
                let mut at = 0u32;
                for (i, c) in img.prefixes.iter().enumerate() {
                    let flags = if i == 0 { OPEN } else { 0 };
                    let data = &img.bytes[at as usize..c.length as usize];
                    if let Err(r) = bw.write(&req(M, img.id, at, flags, *c, data)) {
                        assert_eq!(r.status, Status::CALLER_NOT_IN_CLUSTER);
                        return Some((img.id, at));
                    }
                    acked_w.fetch_add(1, Ordering::Release);
                    at = c.length;
                }
            }
            None
        });
        // Let the writer get going for a variable number of writes, then fence.
        let total: usize = imgs.iter().map(|i| i.prefixes.len()).sum();
        let target = (round as usize * total / 20) as u32;
        while acked.load(Ordering::Acquire) < target {
            std::thread::yield_now();
        }
        let l = b.get_replicas(M);
        if let Some((stopped_seg, stopped_at)) = writer.join().unwrap() {
            // The refused write's segment is listed up to exactly the acknowledged bytes (or
            // not at all if nothing of it was acknowledged).
            let listed = l.replicas.iter().find(|r| r.segment_id == stopped_seg);
            assert_eq!(listed.map_or(0, |r| r.length), stopped_at, "round {round}");
        }
        // Every listed replica validates (the listing validated it) and the writes after the
        // fence left nothing behind.
        for r in &l.replicas {
            let mut out = Vec::new();
            b.recovery_data(M, r.segment_id, &[], &mut out).unwrap();
        }
    }
}

#[test]
fn adopted_fences_refuse_writes_and_dropped_ones_free_replicas() {
    let imgs = images();
    let b = memory_backup();
    let c = imgs[0].prefixes[0];
    let d = &imgs[0].bytes[..c.length as usize];
    b.write(&req(M, imgs[0].id, 0, OPEN, c, d)).unwrap();
    b.write(&req(OTHER, imgs[0].id, 0, OPEN, c, d)).unwrap();
    // The coordinator says M awaits recovery: M's open replica refuses its next write.
    b.adopt_fences(&[M], b.fence_token());
    assert_eq!(b.fenced(), vec![M]);
    let c2 = imgs[0].prefixes[1];
    let d2 = &imgs[0].bytes[c.length as usize..c2.length as usize];
    assert_eq!(
        status(b.write(&req(M, imgs[0].id, c.length, 0, c2, d2))),
        Status::CALLER_NOT_IN_CLUSTER
    );
    // Its replica is still listed for the recovery.
    assert_eq!(b.get_replicas(M).replicas.len(), 1);
    // Later M is no longer listed (recovered): fence and replicas go; OTHER's stay.
    b.adopt_fences(&[], b.fence_token());
    assert!(b.fenced().is_empty());
    assert_eq!(b.stats().replicas, 1);
    b.write(&req(OTHER, imgs[0].id, c.length, 0, c2, d2))
        .unwrap();
}
