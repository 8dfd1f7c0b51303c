//! Multi-reads bounded by bytes (issue 15): a reply stops at a byte budget and answers the
//! rest `RETRY`, so 20 values of the largest legal size come back whole through the client
//! (which asks again for the rest), and a hostile 4,096-item request for a 1 MiB object gets a
//! reply under the protocol maximum instead of a multi-GiB allocation.

mod cluster_util;

use std::time::Duration;

use cluster_util::*;
use faascache_client::{Client, ClientOptions};
use faascache_protocol::limits::MAX_PAYLOAD;
use faascache_protocol::msg::master::{MultiReadItem, MultiReadRequest};
use faascache_protocol::msg::{key_hash, MAX_VALUE_LEN};
use faascache_transport::{call, Status};

#[test]
fn large_multi_reads_are_served_in_budgeted_replies() {
    let dir = tempdir("multi");
    let (_coord, cloc) = coordinator(&dir, 0, "coordinator");
    let _s = server(&dir, &cloc, "server-1");
    let client = Client::connect_with(
        &cloc,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let t = client.create_table("big", 1).unwrap();
    let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("big-{i}").into_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        client.write(t, k, &vec![i as u8; MAX_VALUE_LEN]).unwrap();
    }
    // 20 × 1 MiB: more than one reply may carry; every value comes back whole.
    let items: Vec<(u64, &[u8])> = keys.iter().map(|k| (t, k.as_slice())).collect();
    let got = client.multi_read(&items);
    assert_eq!(got.len(), 20);
    for (i, r) in got.iter().enumerate() {
        let o = r.as_ref().unwrap_or_else(|e| panic!("item {i}: {e}"));
        assert_eq!(o.value.len(), MAX_VALUE_LEN);
        assert!(o.value.iter().all(|&b| b == i as u8), "item {i} intact");
    }

    // Hostile: 4,096 items, all the same 1 MiB object (4 GiB if answered whole).
    let mut raw = Raw::new(&cloc);
    raw.refresh();
    let session = raw.session_for(t, key_hash(&keys[0])).unwrap();
    let req = MultiReadRequest {
        items: vec![
            MultiReadItem {
                table: t,
                key: &keys[0],
            };
            4096
        ],
    };
    let (served, retry, bytes) = call(&session, &req, T, |r| {
        let served = r.items.iter().filter(|i| i.status == Status::OK).count();
        let retry = r.items.iter().filter(|i| i.status == Status::RETRY).count();
        let bytes: usize = r.items.iter().map(|i| i.value.len()).sum();
        assert_eq!(r.items.len(), 4096, "one result per item");
        (served, retry, bytes)
    })
    .unwrap();
    eprintln!("hostile multi-read: {served} served ({bytes} bytes), {retry} answered RETRY");
    assert!(
        (1..=8).contains(&served),
        "served {served} within the budget"
    );
    assert_eq!(served + retry, 4096);
    assert!(bytes < MAX_PAYLOAD, "reply under the protocol maximum");
}
