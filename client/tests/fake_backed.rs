//! The client's backed-table calls against a scripted server (one loopback server playing
//! coordinator and master, as in `fake_cluster.rs`):
//! - `read_object` reads an object larger than one reply piece by piece and starts over when
//!   the version changes between pieces; `read` falls back to it on `OBJECT_TOO_LARGE`;
//! - `flush` and `invalidate` send the key and the timeout and return the master's counts;
//!   a master's `TIMEOUT` for a flush keeps its text;
//! - multi-read items answered `RETRY` are asked again after at least ~1 ms, not at once;
//! - `head_object` asks for 0 bytes; `read_object_range_to` asks for just its range, across
//!   piece boundaries, and refuses a range past the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faascache_client::{Client, ClientOptions, Error};
use faascache_protocol::msg::coordinator::{
    GetTabletMapResponse, TableIdResponse, TabletEntry, TabletState,
};
use faascache_protocol::msg::faas::{
    FlushRequest, FlushResponse, InvalidateRequest, InvalidateResponse, ObjectMeta,
    ReadObjectRequest, ReadObjectResponse,
};
use faascache_protocol::msg::master::{MultiReadRequest, MultiReadResponse, MultiReadResult};
use faascache_protocol::msg::{ErrorReply, Message, ServerId};
use faascache_transport::server::IncomingRpc;
use faascache_transport::{serve, Dispatch, DispatchConfig, DispatchHandler, PollMode, Status};
use parking_lot::Mutex;

const SIZE: usize = 2 * 1024 * 1024 + 12_345;

#[derive(Default)]
struct Script {
    /// Bump the version after this many ReadObject pieces (once).
    bump_after: Option<usize>,
    pieces: usize,
    version: u64,
    flushes: Vec<(Vec<u8>, u32)>,
    flush_timeout: bool,
    invalidations: Vec<(bool, Vec<u8>)>,
    /// When each multi-read arrived; the first `multi_retries` are answered RETRY.
    multi_reads: Vec<Instant>,
    multi_retries: usize,
}

struct Fake {
    locator: String,
    script: Arc<Mutex<Script>>,
}

fn body(version: u64) -> Vec<u8> {
    (0..SIZE).map(|i| (i as u64 * 7 + version) as u8).collect()
}

fn fail(call: &mut IncomingRpc<'_>, status: Status, detail: &str) {
    call.reply_with(status, |b| ErrorReply { version: 0, detail }.encode(b));
}

impl Dispatch for Fake {
    fn get_table_id(&self, call: &mut IncomingRpc<'_>) {
        call.reply(Status::OK, &TableIdResponse { table_id: 1 }.to_vec());
    }
    fn get_tablet_map(&self, call: &mut IncomingRpc<'_>) {
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
        fail(
            call,
            Status::OBJECT_TOO_LARGE,
            "the object is 2109497 bytes",
        );
    }
    fn read_object(&self, call: &mut IncomingRpc<'_>) {
        let req = ReadObjectRequest::decode(call.payload()).unwrap();
        let mut s = self.script.lock();
        s.pieces += 1;
        if s.bump_after == Some(s.pieces - 1) {
            s.version += 1;
            s.bump_after = None;
        }
        let data = body(s.version);
        let at = (req.offset as usize).min(SIZE);
        let end = (at + req.max_len as usize).min(SIZE);
        let r = ReadObjectResponse {
            version: s.version,
            total_len: SIZE as u64,
            meta: ObjectMeta {
                etag: format!("\"v{}\"", s.version),
                content_type: "application/x-test".into(),
                last_modified_ms: 1,
                user: vec![("k".into(), "v".into())],
            },
            data: &data[at..end],
        };
        drop(s);
        call.reply(Status::OK, &r.to_vec());
    }
    fn flush_objects(&self, call: &mut IncomingRpc<'_>) {
        let req = FlushRequest::decode(call.payload()).unwrap();
        let mut s = self.script.lock();
        s.flushes.push((req.key.to_vec(), req.timeout_ms));
        if s.flush_timeout {
            drop(s);
            return fail(
                call,
                Status::TIMEOUT,
                "2 objects still dirty; store: 503 Slow Down",
            );
        }
        call.reply(
            Status::OK,
            &FlushResponse {
                objects: 3,
                bytes: 300,
            }
            .to_vec(),
        );
    }
    fn invalidate_objects(&self, call: &mut IncomingRpc<'_>) {
        let req = InvalidateRequest::decode(call.payload()).unwrap();
        self.script
            .lock()
            .invalidations
            .push((req.prefix, req.key.to_vec()));
        let r = InvalidateResponse {
            invalidated: 4,
            kept_dirty: 1,
        };
        call.reply(Status::OK, &r.to_vec());
    }
    fn multi_read(&self, call: &mut IncomingRpc<'_>) {
        let req = MultiReadRequest::decode(call.payload()).unwrap();
        let mut s = self.script.lock();
        s.multi_reads.push(Instant::now());
        let retry = s.multi_reads.len() <= s.multi_retries;
        drop(s);
        let items = req
            .items
            .iter()
            .map(|_| MultiReadResult {
                status: if retry { Status::RETRY } else { Status::OK },
                version: if retry { 0 } else { 5 },
                value: if retry { b"" } else { b"fetched" },
            })
            .collect();
        call.reply(Status::OK, &MultiReadResponse { items }.to_vec());
    }
}

fn setup(
    name: &str,
) -> (
    faascache_transport::ServerHandle,
    Client,
    Arc<Mutex<Script>>,
) {
    let locator = format!("loopback:name={name}");
    let script = Arc::new(Mutex::new(Script {
        version: 10,
        ..Script::default()
    }));
    let fake = Fake {
        locator: locator.clone(),
        script: script.clone(),
    };
    let cfg = DispatchConfig {
        cores: 1,
        pin: false,
        first_core: 0,
        poll: PollMode::Block,
        conn: Default::default(),
    };
    let server = serve(
        &locator.parse().unwrap(),
        Arc::new(DispatchHandler(fake)),
        cfg,
    )
    .unwrap();
    let opts = ClientOptions::default().timeout(Duration::from_secs(5));
    let client = Client::connect_with(&locator, opts).unwrap();
    (server, client, script)
}

#[test]
fn large_objects_are_read_in_pieces_and_restarted_when_they_change() {
    let (_s, c, script) = setup("fake-backed-read");
    let (meta, data, version) = c.read_object(1, b"big").unwrap();
    assert_eq!((data.len(), version), (SIZE, 10));
    assert!(data == body(10));
    assert_eq!(meta.etag, "\"v10\"");
    assert_eq!(meta.user, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(script.lock().pieces, 3, "2 MiB + a bit in 1 MiB pieces");

    // The object changes after the first piece: read again from the start, all of v11.
    {
        let mut s = script.lock();
        s.pieces = 0;
        s.bump_after = Some(1);
    }
    let (_, data, version) = c.read_object(1, b"big").unwrap();
    assert_eq!(version, 11);
    assert!(data == body(11), "no mix of versions");
    // The first pass stops at the piece that changed; the pieces after it were already in
    // flight (pipelined) and are answered too. Then 3 pieces of v11.
    let pieces = script.lock().pieces;
    assert!((2 + 3..=3 + 3).contains(&pieces), "{pieces} pieces");

    // Streaming: the same bytes into a writer.
    let mut out = Vec::new();
    let info = c.read_object_to(1, b"big", &mut out).unwrap();
    assert_eq!((info.len, info.version), (SIZE as u64, 11));
    assert_eq!(info.total_len, SIZE as u64);
    assert!(out == body(11));

    // A plain read answered OBJECT_TOO_LARGE falls back to read_object.
    let o = c.read(1, b"big").unwrap();
    assert_eq!((o.value.len(), o.version), (SIZE, 11));
}

#[test]
fn flush_and_invalidate_send_their_arguments_and_sum_the_answers() {
    let (_s, c, script) = setup("fake-backed-flush");
    let r = c.flush(1, Some(b"k"), Duration::from_secs(3)).unwrap();
    assert_eq!((r.objects, r.bytes), (3, 300));
    let r = c.flush(1, None, Duration::from_millis(1500)).unwrap();
    assert_eq!(
        (r.objects, r.bytes),
        (3, 300),
        "one master owns the whole table"
    );
    assert_eq!(
        script.lock().flushes,
        vec![(b"k".to_vec(), 3000), (Vec::new(), 1500)]
    );
    script.lock().flush_timeout = true;
    match c.flush(1, None, Duration::from_secs(1)) {
        Err(Error::Timeout { cause, .. }) => {
            assert!(cause.contains("2 objects still dirty"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    let r = c.invalidate(1, b"k").unwrap();
    assert_eq!((r.invalidated, r.kept_dirty), (4, 1));
    c.invalidate_prefix(1, b"2024/").unwrap();
    assert_eq!(
        script.lock().invalidations,
        vec![(false, b"k".to_vec()), (true, b"2024/".to_vec())]
    );
}

#[test]
fn multi_read_items_answered_retry_are_asked_again_after_a_pause() {
    let (_s, c, script) = setup("fake-backed-multi");
    script.lock().multi_retries = 3;
    let keys: [&[u8]; 2] = [b"a", b"b"];
    let items: Vec<(u64, &[u8])> = keys.iter().map(|k| (1, *k)).collect();
    let r = c.multi_read(&items);
    assert!(
        r.iter().all(|o| o.as_ref().unwrap().value == b"fetched"),
        "{r:?}"
    );
    let at = script.lock().multi_reads.clone();
    assert_eq!(at.len(), 4);
    for w in at.windows(2) {
        // The floor is 1 ms with jitter down to half of it.
        assert!(
            w[1] - w[0] >= Duration::from_micros(500),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[test]
fn head_object_and_ranges_read_only_what_they_name() {
    let (_s, c, script) = setup("fake-backed-range");
    let size = SIZE as u64;
    let pieces = || std::mem::take(&mut script.lock().pieces);
    let (meta, total, version) = c.head_object(1, b"big").unwrap();
    assert_eq!((total, version), (size, 10));
    assert_eq!(meta.content_type, "application/x-test");
    assert_eq!(pieces(), 1, "one ReadObject of 0 bytes");
    let body = body(10);
    let mib = 1u64 << 20;
    // (offset, len, ReadObject calls): 1 MiB pieces from the offset, the last one short.
    for (off, len, calls) in [
        (0, Some(1), 1),
        (mib - 3, Some(7), 1),
        (mib - 1, Some(mib + 2), 2),
        (5, None, 3),
        (2 * mib, Some(size), 1),
        (size - 1, None, 1),
        (size, None, 1),
        (size, Some(0), 1),
        (17, Some(0), 1),
        (3, Some(u64::MAX), 3),
    ] {
        let mut out = Vec::new();
        let info = c
            .read_object_range_to(1, b"big", off, len, &mut out)
            .unwrap();
        let end = len.map_or(size, |l| off.saturating_add(l).min(size));
        assert!(out == body[off as usize..end as usize], "{off}+{len:?}");
        assert_eq!(
            (info.len, info.total_len, info.version),
            (end - off, size, 10)
        );
        assert_eq!(info.meta.etag, "\"v10\"");
        assert_eq!(pieces(), calls, "{off}+{len:?}");
    }
    // Past the end: refused, with the object's length.
    let e = c
        .read_object_range_to(1, b"big", size + 1, None, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("past the end") && m.contains(&size.to_string())),
        "{e}"
    );
    // The object changes between the pieces of a range: the bytes written cannot be taken
    // back.
    pieces();
    script.lock().bump_after = Some(1);
    let e = c
        .read_object_range_to(1, b"big", 10, Some(2 * mib), &mut Vec::new())
        .unwrap_err();
    assert_eq!(e, Error::VersionMismatch { current: 11 });
}
