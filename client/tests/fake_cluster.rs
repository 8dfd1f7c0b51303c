//! The client's retry, refresh and exactly-once logic against a scripted server (one loopback
//! server playing coordinator and master), where the answers are chosen by the test:
//! - a mutation answered `RETRY` and `UNKNOWN_TABLET` is resent with the same client id and
//!   rpc id, after a tablet-map refresh, and the ack id then covers it;
//! - a call that keeps getting `RETRY` ends with `Error::Timeout` at its deadline, naming why;
//! - in a multi-write, only the item answered `RETRY` is resent, with its own rpc id;
//! - every tracked request carries the lease the coordinator granted; a request refused with
//!   `EXPIRED_LEASE` that never ran is resent under the renewed lease (a new client id and rpc
//!   id when the coordinator says the old id is dead);
//! - `NOT_SERVING` refreshes the tablet map and retries;
//! - dropping the client releases its lease; untracked clients take no lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_client::{Client, ClientOptions, Error, WriteItem};
use faascache_protocol::msg::coordinator::{
    ClientLeaseResponse, GetClientLeaseRequest, GetTabletMapResponse, ReleaseClientLeaseRequest,
    TableIdResponse, TabletEntry, TabletState,
};
use faascache_protocol::msg::master::{
    MultiResponse, MultiResult, MultiWriteRequest, VersionResponse, WriteRequest,
};
use faascache_protocol::msg::{ClientLease, ErrorReply, ExactlyOnce, Message, ServerId};
use faascache_transport::server::IncomingRpc;
use faascache_transport::{serve, Dispatch, DispatchConfig, DispatchHandler, PollMode, Status};
use parking_lot::Mutex;

/// One multi-write attempt as the server saw it: client id, ack id, (rpc id, key) per item.
type MultiAttempt = (u64, u64, Vec<(u64, Vec<u8>)>);

#[derive(Default)]
struct Script {
    /// Statuses to answer the next writes with before answering OK.
    write_failures: Vec<Status>,
    writes: Vec<ExactlyOnce>,
    tablet_map_fetches: usize,
    /// Reads seen (all answered `RETRY`).
    reads: usize,
    /// Multi-write attempts: (client id, ack id, [(rpc id, key)]).
    multi_writes: Vec<MultiAttempt>,
    /// `GetClientLease` requests seen (the id asked for; 0 = new).
    lease_requests: Vec<u64>,
    /// Renewals answer with a new id (the old one "expired").
    renew_gives_new_id: bool,
    /// `ReleaseClientLease` requests seen.
    releases: Vec<u64>,
    /// Refuse the next multi-write as a whole with `EXPIRED_LEASE`.
    multi_expired: bool,
    /// The lease of each multi-write attempt.
    multi_leases: Vec<ClientLease>,
}

/// The lease the fake grants to client id `id`.
fn lease_of(id: u64) -> ClientLease {
    ClientLease {
        expiration: 60_000 + id,
        timestamp: id,
    }
}

struct Fake {
    locator: String,
    script: Arc<Mutex<Script>>,
}

fn fail(call: &mut IncomingRpc<'_>, status: Status) {
    call.reply_with(status, |b| {
        ErrorReply {
            version: 0,
            detail: "scripted",
        }
        .encode(b)
    });
}

impl Dispatch for Fake {
    fn get_table_id(&self, call: &mut IncomingRpc<'_>) {
        call.reply(Status::OK, &TableIdResponse { table_id: 1 }.to_vec());
    }
    fn get_client_lease(&self, call: &mut IncomingRpc<'_>) {
        let req = GetClientLeaseRequest::decode(call.payload()).unwrap();
        let mut s = self.script.lock();
        s.lease_requests.push(req.client_id);
        let id = match req.client_id {
            0 => 77,
            old if s.renew_gives_new_id => old + 1,
            old => old,
        };
        let r = ClientLeaseResponse {
            client_id: id,
            lease: lease_of(id),
            term_ms: 60_000,
        };
        call.reply(Status::OK, &r.to_vec());
    }
    fn release_client_lease(&self, call: &mut IncomingRpc<'_>) {
        let req = ReleaseClientLeaseRequest::decode(call.payload()).unwrap();
        self.script.lock().releases.push(req.client_id);
        call.reply(Status::OK, &[]);
    }
    fn get_tablet_map(&self, call: &mut IncomingRpc<'_>) {
        self.script.lock().tablet_map_fetches += 1;
        let r = GetTabletMapResponse {
            version: 1,
            tablets: vec![TabletEntry {
                table_id: 1,
                start_hash: 0,
                end_hash: u64::MAX,
                owner: ServerId::new(1, 1),
                locator: &self.locator,
                state: TabletState::Normal,
            }],
        };
        call.reply(Status::OK, &r.to_vec());
    }
    fn read(&self, call: &mut IncomingRpc<'_>) {
        self.script.lock().reads += 1;
        fail(call, Status::RETRY);
    }
    fn write(&self, call: &mut IncomingRpc<'_>) {
        let req = WriteRequest::decode(call.payload()).unwrap();
        let mut s = self.script.lock();
        s.writes.push(req.rpc);
        if !s.write_failures.is_empty() {
            let st = s.write_failures.remove(0);
            drop(s);
            return fail(call, st);
        }
        let v = VersionResponse {
            version: req.rpc.rpc_id * 10,
        };
        call.reply(Status::OK, &v.to_vec());
    }
    fn multi_write(&self, call: &mut IncomingRpc<'_>) {
        let req = MultiWriteRequest::decode(call.payload()).unwrap();
        let mut s = self.script.lock();
        let first = s.multi_writes.is_empty() && !s.multi_expired;
        s.multi_leases.push(req.lease);
        if std::mem::take(&mut s.multi_expired) {
            s.multi_writes.push((
                req.client_id,
                req.ack_id,
                req.items
                    .iter()
                    .map(|i| (i.rpc_id, i.key.to_vec()))
                    .collect(),
            ));
            drop(s);
            return fail(call, Status::EXPIRED_LEASE);
        }
        s.multi_writes.push((
            req.client_id,
            req.ack_id,
            req.items
                .iter()
                .map(|i| (i.rpc_id, i.key.to_vec()))
                .collect(),
        ));
        let items = req
            .items
            .iter()
            .map(|i| MultiResult {
                // On the first attempt, key "b" is refused with RETRY.
                status: if first && i.key == b"b" {
                    Status::RETRY
                } else {
                    Status::OK
                },
                version: i.rpc_id,
            })
            .collect();
        call.reply(Status::OK, &MultiResponse { items }.to_vec());
    }
}

fn setup(
    name: &str,
    timeout: Duration,
) -> (
    faascache_transport::ServerHandle,
    Client,
    Arc<Mutex<Script>>,
) {
    setup_with(name, ClientOptions::default().timeout(timeout))
}

fn setup_with(
    name: &str,
    opts: ClientOptions,
) -> (
    faascache_transport::ServerHandle,
    Client,
    Arc<Mutex<Script>>,
) {
    let locator = format!("loopback:name={name}");
    let script = Arc::new(Mutex::new(Script::default()));
    let fake = Fake {
        locator: locator.clone(),
        script: script.clone(),
    };
    let server = serve(
        &locator.parse().unwrap(),
        Arc::new(DispatchHandler(fake)),
        DispatchConfig {
            cores: 1,
            pin: false,
            first_core: 0,
            poll: PollMode::Block,
            conn: Default::default(),
        },
    )
    .unwrap();
    let client = Client::connect_with(&locator, opts).unwrap();
    (server, client, script)
}

#[test]
fn retried_mutations_keep_their_rpc_id() {
    let (_server, client, script) = setup("fake-eo", Duration::from_secs(5));
    script.lock().write_failures = vec![
        Status::RETRY,
        Status::NO_TABLE_SPACE,
        Status::UNKNOWN_TABLET,
    ];
    let t = client.table_id("t").unwrap();
    assert_eq!(client.write(t, b"k", b"v").unwrap(), 10);
    {
        let s = script.lock();
        assert_eq!(s.writes.len(), 4, "three refusals, then success");
        for w in &s.writes {
            assert_eq!((w.client_id, w.rpc_id, w.ack_id), (77, 1, 0));
            assert_eq!(w.lease, lease_of(77), "the granted lease rides along");
        }
        assert_eq!(
            s.tablet_map_fetches, 2,
            "UNKNOWN_TABLET refreshed the map once"
        );
    }
    // The next mutation acknowledges the first.
    assert_eq!(client.write(t, b"k", b"w").unwrap(), 20);
    assert_eq!(
        *script.lock().writes.last().unwrap(),
        ExactlyOnce {
            client_id: 77,
            rpc_id: 2,
            ack_id: 1,
            lease: lease_of(77),
        }
    );
    // Pipelined writes: the retried one keeps its id too.
    script.lock().write_failures = vec![Status::RETRY];
    let p3 = client.write_async(t, b"a", b"1").unwrap();
    let p4 = client.write_async(t, b"b", b"2").unwrap();
    assert_eq!(p3.wait().unwrap(), 30);
    assert_eq!(p4.wait().unwrap(), 40);
    let ids: Vec<u64> = script.lock().writes[5..].iter().map(|w| w.rpc_id).collect();
    assert_eq!(ids, vec![3, 4, 3], "rpc 3 refused once and resent as rpc 3");
}

#[test]
fn persistent_retry_ends_in_a_timeout_at_the_deadline() {
    let (_server, client, script) = setup("fake-timeout", Duration::from_millis(300));
    let t = client.table_id("t").unwrap();
    let start = Instant::now();
    let e = client.read(t, b"k").unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&e, Error::Timeout { cause, .. } if cause.contains("RETRY")),
        "{e:?}"
    );
    // Not before the deadline, and retrying meanwhile (not one attempt then a wait).
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let reads = script.lock().reads;
    assert!(reads >= 2, "the read was sent {reads} time(s): no retry");
    // It returned: the bound is only a guard against hanging (a loaded machine may be slow).
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[test]
fn multi_write_resends_only_refused_items() {
    let (_server, client, script) = setup("fake-multi", Duration::from_secs(5));
    let t = client.table_id("t").unwrap();
    let r = client.multi_write(&[
        WriteItem::new(t, b"a", b"1"),
        WriteItem::new(t, b"b", b"2"),
        WriteItem::new(t, b"c", b"3"),
    ]);
    assert_eq!(r, vec![Ok(1), Ok(2), Ok(3)]);
    let s = script.lock();
    assert_eq!(s.multi_writes.len(), 2);
    let (client_id, ack, first) = &s.multi_writes[0];
    assert_eq!((*client_id, *ack), (77, 0));
    assert_eq!(
        first.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let (_, ack, second) = &s.multi_writes[1];
    assert_eq!(second, &vec![(2, b"b".to_vec())], "only b, with its rpc id");
    assert_eq!(*ack, 0, "the call's ids stay in flight until it returns");
    drop(s);
    // The next call acknowledges all three.
    client.write(t, b"d", b"4").unwrap();
    assert_eq!(script.lock().writes.last().unwrap().ack_id, 3);
}

#[test]
fn an_expired_lease_is_renewed_and_the_refused_write_resent() {
    let (_server, client, script) = setup("fake-expired", Duration::from_secs(5));
    let t = client.table_id("t").unwrap();
    assert_eq!(client.write(t, b"k", b"v").unwrap(), 10);
    // Still valid at the coordinator: the renewal keeps the id, the write keeps its rpc id.
    script.lock().write_failures = vec![Status::EXPIRED_LEASE];
    assert_eq!(client.write(t, b"k", b"w").unwrap(), 20);
    {
        let s = script.lock();
        assert_eq!(s.lease_requests, vec![0, 77]);
        let last: Vec<(u64, u64)> = s.writes[1..]
            .iter()
            .map(|w| (w.client_id, w.rpc_id))
            .collect();
        assert_eq!(last, vec![(77, 2), (77, 2)]);
    }
    // Dead at the coordinator: a new id; the refused write never ran, so it is resent under
    // the new id with a new rpc id, carrying the new lease.
    {
        let mut s = script.lock();
        s.write_failures = vec![Status::EXPIRED_LEASE];
        s.renew_gives_new_id = true;
    }
    assert_eq!(client.write(t, b"k", b"x").unwrap(), 40);
    let s = script.lock();
    assert_eq!(s.lease_requests, vec![0, 77, 77]);
    let refused = s.writes[3];
    let resent = s.writes[4];
    assert_eq!((refused.client_id, refused.rpc_id), (77, 3));
    assert_eq!(refused.lease, lease_of(77));
    assert_eq!((resent.client_id, resent.rpc_id), (78, 4));
    assert_eq!(resent.lease, lease_of(78));
    assert_eq!(s.writes.len(), 5);
}

#[test]
fn not_serving_refreshes_the_tablet_map_and_retries() {
    let (_server, client, script) = setup("fake-not-serving", Duration::from_secs(5));
    let t = client.table_id("t").unwrap();
    script.lock().write_failures = vec![Status::NOT_SERVING, Status::NOT_SERVING];
    assert_eq!(client.write(t, b"k", b"v").unwrap(), 10);
    let s = script.lock();
    assert_eq!(s.writes.len(), 3, "two refusals, then success");
    assert_eq!(
        s.tablet_map_fetches, 3,
        "each NOT_SERVING refreshed the map"
    );
    assert!(s.writes.iter().all(|w| (w.client_id, w.rpc_id) == (77, 1)));
}

#[test]
fn dropping_the_client_releases_its_lease() {
    let (_server, client, script) = setup("fake-release", Duration::from_secs(5));
    let t = client.table_id("t").unwrap();
    let clone = client.clone();
    client.write(t, b"k", b"v").unwrap();
    drop(client);
    assert!(script.lock().releases.is_empty(), "a clone still holds it");
    drop(clone);
    faascache_testkit::eventually(Duration::from_secs(10), || {
        let r = script.lock().releases.clone();
        if r == vec![77] {
            Ok(())
        } else {
            Err(format!("releases seen: {r:?}"))
        }
    });
}

#[test]
fn untracked_clients_take_no_lease() {
    let opts = ClientOptions::default()
        .timeout(Duration::from_secs(5))
        .tracked(false);
    let (_server, client, script) = setup_with("fake-untracked", opts);
    let t = client.table_id("t").unwrap();
    client.write(t, b"k", b"v").unwrap();
    drop(client);
    let s = script.lock();
    assert_eq!(s.writes[0], ExactlyOnce::UNTRACKED);
    assert!(s.lease_requests.is_empty() && s.releases.is_empty());
}

#[test]
fn a_multi_write_refused_for_an_expired_lease_is_resent_under_the_new_one() {
    let (_server, client, script) = setup("fake-multi-expired", Duration::from_secs(5));
    let t = client.table_id("t").unwrap();
    client.write(t, b"first", b"0").unwrap(); // lease 77, rpc 1
    {
        let mut s = script.lock();
        s.multi_expired = true;
        s.renew_gives_new_id = true;
    }
    let r = client.multi_write(&[WriteItem::new(t, b"a", b"1"), WriteItem::new(t, b"c", b"3")]);
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
    let s = script.lock();
    assert_eq!(s.lease_requests, vec![0, 77]);
    // Refused: under 77 with its lease; resent: under 78, its lease, new rpc ids.
    assert_eq!(s.multi_leases, vec![lease_of(77), lease_of(78)]);
    let (id, _, items) = &s.multi_writes[0];
    assert_eq!(*id, 77);
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![2, 3]);
    let (id, _, items) = &s.multi_writes[1];
    assert_eq!(*id, 78);
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), vec![4, 5]);
}
