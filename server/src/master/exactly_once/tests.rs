use super::*;

fn ok(v: u8) -> Outcome {
    Outcome {
        status: Status::OK,
        version: u64::from(v),
        kind: 1,
        value: [0; 8],
    }
}

fn t(client: u64, rpc_id: u64, ack_id: u64) -> Tracked {
    Tracked {
        client,
        rpc_id,
        ack_id,
        lease_expiration: 10_000,
    }
}

fn record(client: u64, rpc_id: u64, ack_id: u64) -> CompletionRecord {
    CompletionRecord {
        table: 1,
        key_hash: 50,
        client_id: client,
        rpc_id,
        ack_id,
        timestamp: 0,
        status: 0,
        version: rpc_id * 10,
        kind: 1,
        value: [0; 8],
    }
}

#[test]
fn retries_get_the_saved_reply_until_acked() {
    let r = UnackedResults::default();
    assert_eq!(r.begin(t(7, 1, 0), 0, 0), Begin::Run);
    assert_eq!(r.begin(t(7, 1, 0), 0, 0), Begin::InProgress);
    r.finish(7, 1, 1, 5, ok(1));
    assert_eq!(r.begin(t(7, 1, 0), 0, 0), Begin::Done(ok(1)));
    assert_eq!(r.begin(t(7, 2, 0), 0, 0), Begin::Run);
    r.finish(7, 2, 1, 5, ok(2));
    assert_eq!(r.len(), 2);
    // Ack 1: result 1 is forgotten, its retry is stale; 2 still answered.
    assert_eq!(r.begin(t(7, 3, 1), 0, 0), Begin::Run);
    assert_eq!(r.len(), 2);
    assert_eq!(r.died(), 1);
    assert_eq!(r.begin(t(7, 1, 1), 0, 0), Begin::Stale);
    assert_eq!(r.begin(t(7, 2, 1), 0, 0), Begin::Done(ok(2)));
    // Another client is independent.
    assert_eq!(r.begin(t(8, 1, 0), 0, 0), Begin::Run);
    r.abandon(8, 1);
    assert_eq!(r.begin(t(8, 1, 0), 0, 0), Begin::Run);
    assert_eq!(r.clients(), 2);
}

#[test]
fn bounded_per_client_and_in_total() {
    let r = UnackedResults::with_limits(2, 3);
    assert_eq!(r.begin(t(1, 1, 0), 0, 0), Begin::Run);
    assert_eq!(r.begin(t(1, 2, 0), 0, 0), Begin::Run);
    assert_eq!(r.begin(t(1, 3, 0), 0, 0), Begin::ClientFull);
    assert_eq!(r.begin(t(2, 1, 0), 0, 0), Begin::Run);
    assert_eq!(r.begin(t(3, 1, 0), 0, 0), Begin::Full);
    // Acks free room.
    assert_eq!(r.begin(t(1, 3, 2), 0, 0), Begin::Run);
    assert_eq!(r.len(), 2);
    assert_eq!(r.begin(t(3, 1, 0), 0, 0), Begin::Run);
}

#[test]
fn expired_leases_are_refused_and_dead_clients_dropped() {
    let r = UnackedResults::default();
    // The lease expires at 10 000: refused once the master knows a cluster time at or past it.
    assert_eq!(r.begin(t(5, 1, 0), 9_999, 0), Begin::Run);
    r.finish(5, 1, 1, 5, ok(1));
    assert_eq!(r.begin(t(5, 2, 0), 10_000, 0), Begin::Expired);
    // A client quiet for 2 s is a candidate; so is one whose lease looks expired.
    assert_eq!(r.begin(t(6, 1, 0), 0, 3_000), Begin::Run);
    assert_eq!(r.lease_candidates(0, 2_000, 2_000, 100), vec![5]);
    let mut c = r.lease_candidates(9_999, 3_500, 2_000, 100);
    c.sort_unstable();
    assert_eq!(c, vec![5]);
    assert_eq!(r.lease_candidates(10_000, 3_500, 2_000, 100).len(), 2);
    // The coordinator says 5 is dead (released early: its lease would run to 10 000), 6 lives.
    assert_eq!(r.apply_lease_checks(&[5, 6], &[0, 40_000], 9_000, 3_500), 1);
    assert_eq!((r.len(), r.clients()), (1, 1));
    assert_eq!(r.died(), 1);
    // A late request under 5's old lease is refused although it has not expired yet.
    assert_eq!(r.begin(t(5, 1, 0), 9_000, 3_600), Begin::Expired);
    assert!(
        !r.replay(&record(5, 1, 0), 3_600),
        "departed: not taken back"
    );
    r.prune_departed(10_000);
    // After pruning, the lease test alone refuses it.
    assert_eq!(r.begin(t(5, 1, 0), 10_000, 3_700), Begin::Expired);
    // Checked: 6 is not asked about again until idle for another period.
    assert!(r.lease_candidates(9_000, 4_000, 2_000, 100).is_empty());
}

#[test]
fn replay_restores_results_and_acks() {
    let r = UnackedResults::default();
    assert!(r.replay(&record(9, 3, 1), 0));
    assert!(!r.replay(&record(9, 3, 1), 0), "a second copy adds nothing");
    assert!(r.replay(&record(9, 4, 2), 0));
    assert!(!r.replay(&record(9, 1, 0), 0), "at or below the ack id");
    assert!(r.is_live(&record(9, 3, 0)));
    assert!(!r.is_live(&record(9, 2, 0)));
    let done = r.begin(t(9, 3, 2), 0, 0);
    assert_eq!(
        done,
        Begin::Done(Outcome {
            status: Status::OK,
            version: 30,
            kind: 1,
            value: [0; 8]
        })
    );
    // Ack 3 frees result 3: its record is dead.
    assert_eq!(r.begin(t(9, 5, 3), 0, 0), Begin::Run);
    assert!(!r.is_live(&record(9, 3, 0)));
    let moved = r.records_in(1, 0, 100, 0);
    assert_eq!(moved.len(), 1, "only finished results move: {moved:?}");
    assert_eq!((moved[0].rpc_id, moved[0].ack_id), (4, 3));
    assert!(r.records_in(2, 0, 100, 0).is_empty());
    assert!(r.records_in(1, 51, 100, 0).is_empty());
}
