//! Completion records (tracked mutations): written with what they report, refusals recorded,
//! kept by the cleaner while the master needs them and dropped when it does not.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::small_engine;
use faascache_protocol::Status;
use faascache_storage::format::{Entry, SegmentIterator};
use faascache_storage::{
    CompletionRecord, Engine, RejectRules, Rpc, StorageError, TableOptions, Want,
};
use parking_lot::Mutex;

fn rpc(client: u64, id: u64) -> Rpc {
    Rpc {
        client_id: client,
        rpc_id: id,
        ack_id: id - 1,
        kind: 3,
    }
}

/// Every entry of the log in order: (is_object_or_tombstone, completion if any).
fn entries(e: &Engine) -> Vec<Entry<'static>> {
    let mut out = Vec::new();
    for (_, bytes, cert) in e.segment_images() {
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let mut it = SegmentIterator::new(bytes, Some(cert)).unwrap();
        while let Some(x) = it.next() {
            out.push(x.unwrap().1);
        }
    }
    out
}

fn completions(e: &Engine) -> Vec<CompletionRecord> {
    entries(e)
        .into_iter()
        .filter_map(|x| match x {
            Entry::Completion(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tracked_mutation_appends_its_record_right_after_its_object() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let v = e
        .write_rpc(1, b"k", b"value", &RejectRules::NONE, Some(&rpc(9, 1)))
        .unwrap();
    let all = entries(&e);
    let i = all
        .iter()
        .position(|x| matches!(x, Entry::Object(o) if o.key == b"k"))
        .unwrap();
    let Entry::Completion(c) = &all[i + 1] else {
        panic!("the record follows its object: {:?}", all[i + 1]);
    };
    assert_eq!(
        (c.client_id, c.rpc_id, c.ack_id, c.status, c.version, c.kind),
        (9, 1, 0, Status::OK.0, v, 3)
    );
    assert_eq!(c.key_hash, faascache_storage::key_hash(b"k"));
    assert_eq!(c.table, 1);
    // Untracked: no record.
    e.write(1, b"u", b"x", &RejectRules::NONE).unwrap();
    assert_eq!(completions(&e).len(), 1);

    // An increment's record carries the new value; a remove's the removed version.
    let (n, iv) = e
        .increment_i64_rpc(1, b"n", 5, &RejectRules::NONE, Some(&rpc(9, 2)))
        .unwrap();
    assert_eq!(n, 5);
    let rv = e
        .remove_rpc(1, b"k", &RejectRules::NONE, Some(&rpc(9, 3)))
        .unwrap();
    assert_eq!(rv, Some(v));
    let cs = completions(&e);
    assert_eq!(cs[1].value, 5i64.to_le_bytes());
    assert_eq!(cs[1].version, iv);
    assert_eq!((cs[2].rpc_id, cs[2].version), (3, v));
}

#[test]
fn refusals_and_no_ops_are_recorded_alone() {
    let (e, _) = small_engine(256 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let v = e.write(1, b"k", b"v", &RejectRules::NONE).unwrap();
    let r = e.write_rpc(
        1,
        b"k",
        b"w",
        &RejectRules::version_is(v + 100),
        Some(&rpc(4, 1)),
    );
    assert_eq!(r, Err(StorageError::WrongVersion { current: v }));
    assert_eq!(
        e.remove_rpc(1, b"missing", &RejectRules::NONE, Some(&rpc(4, 2))),
        Ok(None)
    );
    e.write(1, b"s", b"not a number", &RejectRules::NONE)
        .unwrap();
    assert!(matches!(
        e.increment_i64_rpc(1, b"s", 1, &RejectRules::NONE, Some(&rpc(4, 3))),
        Err(StorageError::NotANumber { .. })
    ));
    let cs = completions(&e);
    let got: Vec<(u64, u16, u64)> = cs.iter().map(|c| (c.rpc_id, c.status, c.version)).collect();
    assert_eq!(
        got,
        vec![
            (1, Status::WRONG_VERSION.0, v),
            (2, Status::OK.0, 0),
            (3, Status::REQUEST_FORMAT_ERROR.0, 0)
        ]
    );
    // The refused write changed nothing.
    let mut out = Vec::new();
    assert_eq!(e.read(1, b"k", &RejectRules::NONE, &mut out), Ok(v));
    // Not run at all (unknown table): nothing recorded.
    assert!(e
        .write_rpc(7, b"k", b"v", &RejectRules::NONE, Some(&rpc(4, 4)))
        .is_err());
    assert_eq!(completions(&e).len(), 3);
}

#[test]
fn the_cleaner_keeps_live_records_and_drops_dead_ones() {
    let (e, _) = small_engine(512 * 1024);
    e.create_table(1, TableOptions::default()).unwrap();
    let live: Arc<Mutex<HashSet<(u64, u64)>>> = Arc::default();
    let l2 = live.clone();
    e.set_completion_liveness(Arc::new(move |c: &CompletionRecord| {
        l2.lock().contains(&(c.client_id, c.rpc_id))
    }));
    // 200 tracked overwrites of a few keys: the old objects die, so cleaning has work.
    for i in 1..=200u64 {
        let key = format!("k{}", i % 4);
        e.write_rpc(
            1,
            key.as_bytes(),
            &[7u8; 200],
            &RejectRules::NONE,
            Some(&rpc(1, i)),
        )
        .unwrap();
        live.lock().insert((1, i));
    }
    // The client acknowledged all but the last ten.
    live.lock().retain(|&(_, id)| id > 190);
    e.completions_changed();
    for _ in 0..4 {
        e.clean_with(Want::Combined);
    }
    let ids: HashSet<u64> = completions(&e).iter().map(|c| c.rpc_id).collect();
    for id in 191..=200 {
        assert!(ids.contains(&id), "live record {id} kept by cleaning");
    }
    let dead_left = ids.iter().filter(|&&id| id <= 190).count();
    assert!(
        dead_left < 100,
        "cleaning dropped most dead records ({dead_left} of 190 left, in segments not cleaned yet)"
    );
}
