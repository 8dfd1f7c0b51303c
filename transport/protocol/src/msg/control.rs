//! Server control RPCs (`0x0400`–`0x04FF`), sent by the coordinator to masters (and by one
//! master to another during migration): tablet ownership, migration steps, server info.
//!
//! Migration of tablet `[start, end]` of table T from master S to master D (the coordinator
//! drives it; see `docs/protocol.md`):
//! 1. coordinator → D `PrepareMigration`: D accepts `ReceiveMigrationData` for the range but
//!    still answers clients `UNKNOWN_TABLET`;
//! 2. coordinator → S `MigrateTabletOut`: S copies the range to D in batches while serving
//!    writes (recording the keys written meanwhile), re-sends those keys, then answers writes of
//!    the range `RETRY` while it sends the last ones, and replies `OK`;
//! 3. coordinator records D as the owner (persisted), → D `TakeTabletOwnership`, → S
//!    `DropTabletOwnership` (S answers `UNKNOWN_TABLET` from then on, clients refresh the map).

use super::common::{ServerId, MAX_LOCATOR_LEN};
use super::faas::CacheInfo;
use super::{
    decode_all, read_count, read_key, read_str, read_value, write_count, Empty, Message, MsgError,
    Request,
};
use crate::wire::codec::{Reader, Writer};
use crate::wire::Opcode;

/// A tablet named by table and key-hash range: table `u64`, start `u64`, end `u64` (inclusive).
/// Body of `TakeTabletOwnership` and `DropTabletOwnership` (replies empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TabletRange {
    /// Table id.
    pub table_id: u64,
    /// First key hash.
    pub start_hash: u64,
    /// Last key hash (inclusive).
    pub end_hash: u64,
}

impl TabletRange {
    /// Encoded size.
    pub const LEN: usize = 24;
    fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.table_id).u64(self.start_hash).u64(self.end_hash);
    }
    fn read(r: &mut Reader<'_>) -> Result<TabletRange, MsgError> {
        let t = TabletRange {
            table_id: r.u64()?,
            start_hash: r.u64()?,
            end_hash: r.u64()?,
        };
        if t.start_hash > t.end_hash {
            return Err(MsgError::BadField {
                field: "end_hash",
                value: t.end_hash,
            });
        }
        Ok(t)
    }
    /// Does the range contain `hash`?
    pub fn contains(&self, hash: u64) -> bool {
        self.start_hash <= hash && hash <= self.end_hash
    }
}

impl Message<'_> for TabletRange {
    fn encode(&self, out: &mut Vec<u8>) {
        self.write(&mut Writer::new(out));
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, TabletRange::read)
    }
}

macro_rules! range_request {
    ($(#[$doc:meta])* $name:ident, $op:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub TabletRange);
        impl Message<'_> for $name {
            fn encode(&self, out: &mut Vec<u8>) {
                self.0.encode(out)
            }
            fn decode(buf: &[u8]) -> Result<Self, MsgError> {
                TabletRange::decode(buf).map($name)
            }
        }
        impl Request<'_> for $name {
            const OPCODE: Opcode = Opcode::$op;
            type Response<'b> = Empty;
        }
    };
}

range_request!(
    /// `TakeTabletOwnership` (coordinator → master): serve this range from now on (creates the
    /// table on the master if needed; turns an incoming migration into ownership). Idempotent.
    TakeTabletOwnershipRequest,
    TakeTabletOwnership
);
range_request!(
    /// `DropTabletOwnership` (coordinator → master): stop serving this range (clients get
    /// `UNKNOWN_TABLET`) and delete its objects; cancels an incoming migration of it.
    /// Idempotent.
    DropTabletOwnershipRequest,
    DropTabletOwnership
);

/// `PrepareMigration` (coordinator → target): range (24), source id `u64`. The target accepts
/// `ReceiveMigrationData` for the range; clients still get `UNKNOWN_TABLET` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareMigrationRequest {
    /// The tablet.
    pub range: TabletRange,
    /// The master it comes from.
    pub source: ServerId,
}

impl Message<'_> for PrepareMigrationRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        self.range.write(&mut w);
        w.u64(self.source.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(PrepareMigrationRequest {
                range: TabletRange::read(r)?,
                source: ServerId(r.u64()?),
            })
        })
    }
}
impl Request<'_> for PrepareMigrationRequest {
    const OPCODE: Opcode = Opcode::PrepareMigration;
    type Response<'b> = Empty;
}

/// `MigrateTabletOut` (coordinator → source): range (24), target id `u64`, target locator
/// (`u16` len). The source copies the range to the target (see the module docs) and replies `OK`
/// once the target holds every acknowledged write; writes of the range then get `RETRY` until
/// `DropTabletOwnership`. On failure it replies an error and serves the range as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateTabletOutRequest<'a> {
    /// The tablet.
    pub range: TabletRange,
    /// The new owner.
    pub target: ServerId,
    /// Its locator.
    pub target_locator: &'a str,
}

impl<'a> Message<'a> for MigrateTabletOutRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        self.range.write(&mut w);
        w.u64(self.target.0)
            .bytes_u16(self.target_locator.as_bytes());
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(MigrateTabletOutRequest {
                range: TabletRange::read(r)?,
                target: ServerId(r.u64()?),
                target_locator: read_str(r, "target_locator", MAX_LOCATOR_LEN)?,
            })
        })
    }
}
impl<'a> Request<'a> for MigrateTabletOutRequest<'a> {
    const OPCODE: Opcode = Opcode::MigrateTabletOut;
    type Response<'b> = Empty;
}

/// One object in `ReceiveMigrationData`: flags `u8` (bit 0 = removed: the key was removed at
/// the source, delete it, value then empty; bit 1 = clean: a backed table's object that is
/// already in its object store, so it is not uploaded again; other bits 0), key (`u16` len),
/// value (`u32` len), version `u64` (the source's version). A sender that knows no flags but
/// `removed` sends objects as dirty, which is safe (a needless upload at worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratedObject<'a> {
    /// The key no longer exists at the source.
    pub removed: bool,
    /// The object is in its backing store (not dirty).
    pub clean: bool,
    /// Key.
    pub key: &'a [u8],
    /// Value (empty if removed).
    pub value: &'a [u8],
    /// Version at the source.
    pub version: u64,
}

/// The result of a tracked mutation on a key of a migrating tablet (a completion record), so
/// that a client retrying it at the new owner gets the result instead of a second run: key hash
/// `u64`, client id `u64`, rpc id `u64`, ack id `u64`, status `u16`, version `u64`, reply kind
/// `u8`, value (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratedCompletion {
    /// Hash of the key.
    pub key_hash: u64,
    /// Client.
    pub client_id: u64,
    /// Rpc id.
    pub rpc_id: u64,
    /// The client's ack id as the source knows it.
    pub ack_id: u64,
    /// The reply's status.
    pub status: u16,
    /// The reply's version.
    pub version: u64,
    /// Which reply (the master's reply kinds).
    pub kind: u8,
    /// An increment's value.
    pub value: [u8; 8],
}

/// Encoded size of a [`MigratedCompletion`].
const MIGRATED_COMPLETION_LEN: usize = 8 * 4 + 2 + 8 + 1 + 8;
/// Most completion records in one `ReceiveMigrationData`.
pub const MAX_MIGRATED_COMPLETIONS: usize = 65_536;

/// `ReceiveMigrationData` (source → target): range (24), count `u32`, objects, count `u32`
/// (≤ 65 536), completion records. Items are applied in order; a later item for the same key
/// wins. Reply empty; `UNKNOWN_TABLET` if the target was not prepared for the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveMigrationDataRequest<'a> {
    /// The tablet being migrated.
    pub range: TabletRange,
    /// Objects.
    pub objects: Vec<MigratedObject<'a>>,
    /// Results of tracked mutations of the tablet's keys.
    pub completions: Vec<MigratedCompletion>,
}

impl<'a> Message<'a> for ReceiveMigrationDataRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        self.range.write(&mut w);
        write_count(&mut w, self.objects.len());
        for o in &self.objects {
            w.u8(o.removed as u8 | (o.clean as u8) << 1)
                .bytes_u16(o.key)
                .bytes_u32(o.value)
                .u64(o.version);
        }
        write_count(&mut w, self.completions.len());
        for c in &self.completions {
            w.u64(c.key_hash)
                .u64(c.client_id)
                .u64(c.rpc_id)
                .u64(c.ack_id)
                .u16(c.status)
                .u64(c.version)
                .u8(c.kind)
                .u64(u64::from_le_bytes(c.value));
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let range = TabletRange::read(r)?;
            let n = read_count(r, "migrated objects", 1 + 2 + 1 + 4 + 8, usize::MAX)?;
            let mut objects = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                if flags > 3 {
                    return Err(MsgError::BadField {
                        field: "migrated object flags",
                        value: flags as u64,
                    });
                }
                objects.push(MigratedObject {
                    removed: flags & 1 != 0,
                    clean: flags & 2 != 0,
                    key: read_key(r)?,
                    value: read_value(r)?,
                    version: r.u64()?,
                });
            }
            let n = read_count(
                r,
                "migrated completion records",
                MIGRATED_COMPLETION_LEN,
                MAX_MIGRATED_COMPLETIONS,
            )?;
            let mut completions = Vec::with_capacity(n);
            for _ in 0..n {
                completions.push(MigratedCompletion {
                    key_hash: r.u64()?,
                    client_id: r.u64()?,
                    rpc_id: r.u64()?,
                    ack_id: r.u64()?,
                    status: r.u16()?,
                    version: r.u64()?,
                    kind: r.u8()?,
                    value: r.u64()?.to_le_bytes(),
                });
            }
            Ok(ReceiveMigrationDataRequest {
                range,
                objects,
                completions,
            })
        })
    }
}
impl<'a> Request<'a> for ReceiveMigrationDataRequest<'a> {
    const OPCODE: Opcode = Opcode::ReceiveMigrationData;
    type Response<'b> = Empty;
}

/// `GetServerInfo`: empty request (to any server; the CLI's `status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetServerInfoRequest;

impl Message<'_> for GetServerInfoRequest {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        Empty::decode(buf).map(|_| GetServerInfoRequest)
    }
}
impl Request<'_> for GetServerInfoRequest {
    const OPCODE: Opcode = Opcode::GetServerInfo;
    type Response<'b> = GetServerInfoResponse<'b>;
}

/// `GetServerInfo` reply: server id `u64`, memory budget bytes `u64`, live log bytes `u64`,
/// objects `u64`, owned tablets `u32`, transport (`u16` len), poll mode (`u16` len), durability
/// (`u16` len, what an acknowledged write survives), transport choice (`u16` len: why this
/// transport, e.g. `first choice` or the preferred alternatives that failed), exactly-once
/// clients, results and bytes (`u64` each), replication (`u16` len: how the log is replicated
/// now), under-replicated `u8` (0/1), then (absent from older servers: decoded as the
/// default) the backed tables' counters ([`CacheInfo`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetServerInfoResponse<'a> {
    /// Id.
    pub server_id: ServerId,
    /// Log memory budget.
    pub budget_bytes: u64,
    /// Live log bytes.
    pub live_bytes: u64,
    /// Live objects.
    pub objects: u64,
    /// Owned tablets.
    pub tablets: u32,
    /// Transport serving clients (e.g. `tcp`).
    pub transport: &'a str,
    /// Poll mode of the dispatch cores.
    pub poll: &'a str,
    /// What an acknowledged write survives (e.g. "memory only: lost if this server crashes").
    pub durability: &'a str,
    /// Why this transport: `first choice`, or which preferred alternatives failed and how.
    pub transport_choice: &'a str,
    /// Exactly-once state: clients with saved results on this master.
    pub eo_clients: u64,
    /// Exactly-once state: saved results (completion records) kept.
    pub eo_results: u64,
    /// Exactly-once state: bytes of memory the saved results and their clients take.
    pub eo_bytes: u64,
    /// How the master's log is replicated now (e.g. "2 replicas per segment on 2 backups", or
    /// why it is under-replicated); empty for a server that does not replicate.
    pub replication: &'a str,
    /// Some segment of the master's log has fewer replicas than `--replicas` asks.
    pub under_replicated: bool,
    /// Backed tables: write-back queue, hits and misses, store errors.
    pub cache: CacheInfo<'a>,
}

impl<'a> Message<'a> for GetServerInfoResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.server_id.0)
            .u64(self.budget_bytes)
            .u64(self.live_bytes)
            .u64(self.objects)
            .u32(self.tablets)
            .bytes_u16(self.transport.as_bytes())
            .bytes_u16(self.poll.as_bytes())
            .bytes_u16(self.durability.as_bytes())
            .bytes_u16(self.transport_choice.as_bytes())
            .u64(self.eo_clients)
            .u64(self.eo_results)
            .u64(self.eo_bytes)
            .bytes_u16(self.replication.as_bytes())
            .u8(u8::from(self.under_replicated));
        self.cache.write(&mut Writer::new(out));
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(GetServerInfoResponse {
                server_id: ServerId(r.u64()?),
                budget_bytes: r.u64()?,
                live_bytes: r.u64()?,
                objects: r.u64()?,
                tablets: r.u32()?,
                transport: read_str(r, "transport", 256)?,
                poll: read_str(r, "poll", 256)?,
                durability: read_str(r, "durability", 1024)?,
                transport_choice: read_str(r, "transport choice", 4096)?,
                eo_clients: r.u64()?,
                eo_results: r.u64()?,
                eo_bytes: r.u64()?,
                replication: read_str(r, "replication", 1024)?,
                under_replicated: match r.u8()? {
                    0 => false,
                    1 => true,
                    value => {
                        return Err(MsgError::BadField {
                            field: "under_replicated",
                            value: value.into(),
                        })
                    }
                },
                cache: if r.remaining() == 0 {
                    CacheInfo::default()
                } else {
                    CacheInfo::read(r)?
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::round_trip;
    use super::*;

    const R: TabletRange = TabletRange {
        table_id: 3,
        start_hash: 10,
        end_hash: 20,
    };

    #[test]
    fn control_messages_round_trip() {
        round_trip!(TakeTabletOwnershipRequest(R));
        round_trip!(DropTabletOwnershipRequest(R));
        round_trip!(PrepareMigrationRequest {
            range: R,
            source: ServerId::new(1, 1)
        });
        round_trip!(MigrateTabletOutRequest {
            range: R,
            target: ServerId::new(2, 1),
            target_locator: "tcp:host=x,port=1"
        });
        round_trip!(ReceiveMigrationDataRequest {
            range: R,
            objects: vec![
                MigratedObject {
                    removed: false,
                    clean: true,
                    key: b"k",
                    value: b"v",
                    version: 4
                },
                MigratedObject {
                    removed: true,
                    clean: false,
                    key: b"gone",
                    value: b"",
                    version: 5
                },
            ],
            completions: vec![MigratedCompletion {
                key_hash: 12,
                client_id: 3,
                rpc_id: 4,
                ack_id: 2,
                status: 5,
                version: 6,
                kind: 2,
                value: 7i64.to_le_bytes(),
            }],
        });
        round_trip!(GetServerInfoRequest);
        // No round_trip!: a reply without the trailing cache counters (an older server's) is
        // valid, so one prefix decodes.
        let info = GetServerInfoResponse {
            server_id: ServerId::new(1, 2),
            budget_bytes: 1 << 30,
            live_bytes: 5,
            objects: 1,
            tablets: 2,
            transport: "tcp",
            poll: "adaptive",
            durability: "memory",
            transport_choice: "fallback; skipped dpdk:vdev=af_packet,iface=x: no such device",
            eo_clients: 5,
            eo_results: 6,
            eo_bytes: 700,
            replication: "UNDER-REPLICATED: R=2 but 1 other backup(s) up",
            under_replicated: true,
            cache: CacheInfo {
                dirty_objects: 3,
                last_error: "s3: 503",
                ..CacheInfo::default()
            },
        };
        let buf = info.to_vec();
        assert_eq!(GetServerInfoResponse::decode(&buf).unwrap(), info);
        let old_len = buf.len() - (14 * 8 + 2 + "s3: 503".len());
        let old = GetServerInfoResponse::decode(&buf[..old_len]).unwrap();
        assert_eq!(old.cache, CacheInfo::default());
        for cut in (1..buf.len()).filter(|&c| c != old_len) {
            assert!(GetServerInfoResponse::decode(&buf[..cut]).is_err(), "{cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(GetServerInfoResponse::decode(&longer).is_err());
        assert!(R.contains(10) && R.contains(20) && !R.contains(21));
        let bad = TabletRange {
            table_id: 1,
            start_hash: 5,
            end_hash: 4,
        };
        assert!(TabletRange::decode(&bad.to_vec()).is_err());
        let mut buf = R.to_vec();
        Writer::new(&mut buf)
            .u32(1)
            .u8(4) // an unknown flag
            .u16(1)
            .u8(b'k')
            .u32(0)
            .u64(0);
        assert!(matches!(
            ReceiveMigrationDataRequest::decode(&buf),
            Err(MsgError::BadField { .. })
        ));
    }

    #[test]
    fn recover_tablets_round_trips_and_rejects_hostile_bytes() {
        let req = RecoverTabletsRequest {
            crashed: ServerId::new(3, 1),
            ranges: vec![R, R],
            segments: vec![
                RecoverySegment {
                    segment_id: 7,
                    backups: vec![(ServerId::new(1, 1), "tcp:host=a,port=1")],
                },
                RecoverySegment {
                    segment_id: 9,
                    backups: vec![
                        (ServerId::new(1, 1), "tcp:host=a,port=1"),
                        (ServerId::new(2, 1), "tcp:host=b,port=2"),
                    ],
                },
            ],
        };
        round_trip!(req.clone());
        round_trip!(RecoverTabletsResponse {
            objects: 1,
            bytes: 2,
            read_bytes: 3
        });
        let bytes = req.to_vec();
        // Every truncation is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(RecoverTabletsRequest::decode(&bytes[..cut]).is_err());
        }
        // A huge segment count is refused before any allocation.
        let mut buf = Vec::new();
        Writer::new(&mut buf).u64(1).u32(0).u32(u32::MAX);
        assert!(matches!(
            RecoverTabletsRequest::decode(&buf),
            Err(MsgError::TooMany { .. })
        ));
        // A segment with no backups is refused.
        let mut buf = Vec::new();
        Writer::new(&mut buf)
            .u64(1)
            .u32(0)
            .u32(1)
            .u64(5)
            .u8(0)
            .u64(0)
            .u16(0)
            .u64(0);
        assert!(RecoverTabletsRequest::decode(&buf).is_err());
        // Random bytes never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let n = (x % 200) as usize;
            let v: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = RecoverTabletsRequest::decode(&v);
        }
    }
}

/// Most tablet ranges in one `RecoverTablets`.
pub const MAX_RECOVER_RANGES: usize = 1024;
/// Most segments in one `RecoverTablets` (8 TiB of 8 MiB segments).
pub const MAX_RECOVER_SEGMENTS: usize = 1 << 20;
/// Most backups listed for one segment.
pub const MAX_RECOVER_BACKUPS: usize = 16;

/// A segment of the crashed master's log and the backups holding a replica of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySegment<'a> {
    /// Segment id.
    pub segment_id: u64,
    /// Backups with a replica (id, locator), best first.
    pub backups: Vec<(ServerId, &'a str)>,
}

/// `RecoverTablets` (coordinator → recovery master): crashed master `u64`; ranges (count `u32`,
/// 24 bytes each, at most [`MAX_RECOVER_RANGES`]); segments (count `u32`, at most
/// [`MAX_RECOVER_SEGMENTS`]; each: id `u64`, backup count `u8` (1..=[`MAX_RECOVER_BACKUPS`]),
/// each backup: id `u64`, locator (`u16` len)). The master fetches the entries of every segment
/// that fall in the ranges from one of its backups (`BackupGetRecoveryData`), replays them (the
/// newest version of each key wins; tombstones remove older versions), waits until what it
/// wrote is on its own replicas, and replies with what it recovered. It does not serve the
/// ranges until the coordinator sends `TakeTabletOwnership`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverTabletsRequest<'a> {
    /// The crashed master.
    pub crashed: ServerId,
    /// The key-hash ranges to recover.
    pub ranges: Vec<TabletRange>,
    /// Every segment of the crashed master's log (its newest digest).
    pub segments: Vec<RecoverySegment<'a>>,
}

/// `RecoverTablets` reply: objects `u64`, bytes `u64` (key + value) recovered, segments
/// `u64` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoverTabletsResponse {
    /// Live objects recovered.
    pub objects: u64,
    /// Their key + value bytes.
    pub bytes: u64,
    /// Recovery-data bytes read from backups.
    pub read_bytes: u64,
}

impl<'a> Message<'a> for RecoverTabletsRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.crashed.0);
        write_count(&mut w, self.ranges.len());
        for r in &self.ranges {
            r.write(&mut w);
        }
        write_count(&mut w, self.segments.len());
        for s in &self.segments {
            w.u64(s.segment_id).u8(s.backups.len() as u8);
            for (id, loc) in &s.backups {
                w.u64(id.0).bytes_u16(loc.as_bytes());
            }
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let crashed = ServerId(r.u64()?);
            let n = read_count(r, "ranges", TabletRange::LEN, MAX_RECOVER_RANGES)?;
            let mut ranges = Vec::with_capacity(n);
            for _ in 0..n {
                ranges.push(TabletRange::read(r)?);
            }
            let n = read_count(r, "segments", 8 + 1 + 10, MAX_RECOVER_SEGMENTS)?;
            let mut segments = Vec::with_capacity(n);
            for _ in 0..n {
                let segment_id = r.u64()?;
                let k = r.u8()? as usize;
                if k == 0 || k > MAX_RECOVER_BACKUPS {
                    return Err(MsgError::BadField {
                        field: "backup count",
                        value: k as u64,
                    });
                }
                let mut backups = Vec::with_capacity(k);
                for _ in 0..k {
                    let id = ServerId(r.u64()?);
                    backups.push((id, read_str(r, "backup locator", MAX_LOCATOR_LEN)?));
                }
                segments.push(RecoverySegment {
                    segment_id,
                    backups,
                });
            }
            Ok(RecoverTabletsRequest {
                crashed,
                ranges,
                segments,
            })
        })
    }
}
impl<'a> Request<'a> for RecoverTabletsRequest<'a> {
    const OPCODE: Opcode = Opcode::RecoverTablets;
    type Response<'b> = RecoverTabletsResponse;
}

impl Message<'_> for RecoverTabletsResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.objects)
            .u64(self.bytes)
            .u64(self.read_bytes);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(RecoverTabletsResponse {
                objects: r.u64()?,
                bytes: r.u64()?,
                read_bytes: r.u64()?,
            })
        })
    }
}
