//! Backup RPCs (`0x0300`–`0x03FF`): masters replicate their log segments to backups, the
//! coordinator and recovery masters read them back when a master crashed.
//!
//! Life of a replica of segment S of master M on one backup:
//! 1. M → backup `BackupWrite` with `OPEN` (creates the replica), then further `BackupWrite`s
//!    appending at increasing offsets, each carrying the certificate of the prefix written so
//!    far; the last one carries `CLOSE`. A retried write resends the same bytes at the same
//!    offset and is accepted again.
//! 2. M → backup `BackupFree` once the segment left M's log (cleaned). Idempotent.
//! 3. If M crashes: coordinator → every backup `BackupGetReplicas{M}` (this also *fences* M: the
//!    backup refuses M's later writes with `CALLER_NOT_IN_CLUSTER`), recovery masters →
//!    backups `BackupGetRecoveryData{M, S, ranges}`, and when recovery is complete
//!    coordinator → every backup `BackupRecoveryDone{M}` (the backup frees M's replicas and
//!    drops M's fence).
//!
//! Fences are persisted in the backup's directory. A backup that (re-)enlists asks the
//! coordinator `GetFencedMasters` (opcode in the coordinator's range, message here): the crashed
//! masters whose recovery is not complete; it fences those and drops fences of masters no
//! longer listed (their recovery completed while it was away).
//!
//! Errors (status + [`super::ErrorReply`] detail): `BACKUP_BAD_SEGMENT_ID` (no such replica),
//! `BACKUP_SEGMENT_OVERFLOW` (past [`MAX_REPLICA_BYTES`], or a gap after the replica's end),
//! `BACKUP_SEGMENT_ALREADY_OPEN` (a write adding bytes to a closed replica),
//! `BACKUP_MALFORMED_SEGMENT` (the replica fails validation), `RETRY` (the backup is full: pick
//! another backup), `CALLER_NOT_IN_CLUSTER` (the master was fenced).
//!
//! Layouts are written on each struct; all integers little-endian. Decoders borrow the data
//! bytes (no copy) and bound every count by the bytes present before allocating.

use super::common::ServerId;
use super::control::TabletRange;
use super::{decode_all, read_bool, read_count, write_count, Empty, Message, MsgError, Request};
use crate::wire::codec::{Reader, Writer};
use crate::wire::Opcode;

/// Largest replica a backup keeps: 8 MiB, the default segment size. A write reaching past it is
/// refused with `BACKUP_SEGMENT_OVERFLOW`. (The largest RPC payload, 8 MiB + 64 KiB, leaves room
/// for a whole replica plus the request's fields.)
pub const MAX_REPLICA_BYTES: usize = 8 * 1024 * 1024;

/// Most tablet ranges in one `BackupGetRecoveryData` request.
pub const MAX_RECOVERY_RANGES: usize = 1024;

/// Commits a prefix of a replica: its length and the CRC32C over every log entry header in it
/// (the storage engine's `Certificate`, repeated here so the transport crate does not depend on
/// the server). Wire: length `u32`, checksum `u32` = 8 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaCertificate {
    /// Bytes of the replica covered.
    pub length: u32,
    /// CRC32C over every entry header in those bytes.
    pub checksum: u32,
}

impl ReplicaCertificate {
    /// Encoded size.
    pub const LEN: usize = 8;
    fn write(&self, w: &mut Writer<'_>) {
        w.u32(self.length).u32(self.checksum);
    }
    fn read(r: &mut Reader<'_>) -> Result<ReplicaCertificate, MsgError> {
        Ok(ReplicaCertificate {
            length: r.u32()?,
            checksum: r.u32()?,
        })
    }
}

/// `BackupWrite` (master → backup): master `u64`, segment id `u64`, offset `u32`, flags `u8`
/// ([`Self::OPEN`] | [`Self::CLOSE`]; other bits reserved), certificate (8), data (`u32` len),
/// replica epoch `u64` (trailing; absent = 0). Reply: empty, sent once the bytes are buffered
/// (memory durability) or on disk (disk durability).
///
/// The epoch: a master raises it when it loses a replica of a segment that was not closed
/// (the lost copy may be stale: later acknowledged bytes are not on it), writes the new epoch
/// to every open replica it still has, and then records it at the coordinator
/// (`SetReplicaEpoch`) before it acknowledges another write. The backup keeps the highest
/// epoch written to each replica; recovery ignores open replicas below the recorded epoch
/// ([`BackupGetReplicasRequest::min_epoch`]).
///
/// Rules (checked by the decoder): `certificate.length == offset + data.len()`. Checked by the
/// backup: `OPEN` creates an unknown replica (`RETRY` if the backup is full); without `OPEN` an
/// unknown replica is `BACKUP_BAD_SEGMENT_ID`; `offset` ≤ the replica's length (bytes at
/// `offset..` are overwritten — retries resend the same bytes — and the length becomes the max),
/// `offset` > length is a gap (`BACKUP_SEGMENT_OVERFLOW`: the backup lost data; replicate the
/// segment elsewhere); `offset + data.len()` ≤ [`MAX_REPLICA_BYTES`]; `CLOSE` closes the replica
/// after applying the data; a closed replica accepts only writes that add nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupWriteRequest<'a> {
    /// The master whose segment this is.
    pub master: ServerId,
    /// The segment.
    pub segment_id: u64,
    /// Where `data` goes in the replica.
    pub offset: u32,
    /// [`Self::OPEN`], [`Self::CLOSE`], both or neither.
    pub flags: u8,
    /// Certificate of the replica's first `offset + data.len()` bytes.
    pub certificate: ReplicaCertificate,
    /// The bytes.
    pub data: &'a [u8],
    /// The master's replica epoch for this segment (see above): the backup keeps the highest.
    pub epoch: u64,
}

impl BackupWriteRequest<'_> {
    /// Create the replica if the backup does not have it.
    pub const OPEN: u8 = 1;
    /// The segment is complete: no bytes will be added.
    pub const CLOSE: u8 = 2;
    /// Every flag this build knows.
    pub const KNOWN_FLAGS: u8 = Self::OPEN | Self::CLOSE;
    /// Fixed part of the encoding (everything but the data bytes).
    pub const FIXED_LEN: usize = 8 + 8 + 4 + 1 + ReplicaCertificate::LEN + 4 + 8;

    /// Is `OPEN` set?
    pub fn open(&self) -> bool {
        self.flags & Self::OPEN != 0
    }
    /// Is `CLOSE` set?
    pub fn close(&self) -> bool {
        self.flags & Self::CLOSE != 0
    }
    /// `offset + data.len()`: the replica length this write reaches.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + self.data.len() as u64
    }
}

impl BackupWriteRequest<'_> {
    /// Encodes this request with its data appended to `out` by `fill` rather than copied from
    /// `self.data` (ignored by this function; `encode` fills it from there): a master reads its
    /// log straight into the request. `fill` should
    /// append `certificate.length - offset` bytes; the length field says what it appended, so
    /// the message is well-formed either way (a backup refuses one whose certificate length
    /// then differs).
    pub fn encode_filled(&self, out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut w = Writer::new(out);
        w.u64(self.master.0)
            .u64(self.segment_id)
            .u32(self.offset)
            .u8(self.flags);
        self.certificate.write(&mut w);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        fill(out);
        let n = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
        out[len_at..start].copy_from_slice(&n.to_le_bytes());
        Writer::new(out).u64(self.epoch);
    }
}

impl<'a> Message<'a> for BackupWriteRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_filled(out, |o| o.extend_from_slice(self.data));
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let req = BackupWriteRequest {
                master: ServerId(r.u64()?),
                segment_id: r.u64()?,
                offset: r.u32()?,
                flags: r.u8()?,
                certificate: ReplicaCertificate::read(r)?,
                data: r.bytes_u32()?,
                // Trailing: a writer without epochs sends none (epoch 0).
                epoch: if r.remaining() == 0 { 0 } else { r.u64()? },
            };
            if req.flags & !Self::KNOWN_FLAGS != 0 {
                return Err(MsgError::BadField {
                    field: "flags",
                    value: u64::from(req.flags),
                });
            }
            if u64::from(req.certificate.length) != req.end() {
                return Err(MsgError::BadField {
                    field: "certificate.length (must equal offset + data length)",
                    value: u64::from(req.certificate.length),
                });
            }
            Ok(req)
        })
    }
}
impl<'a> Request<'a> for BackupWriteRequest<'a> {
    const OPCODE: Opcode = Opcode::BackupWrite;
    type Response<'b> = Empty;
}

/// `BackupFree` (master → backup): master `u64`, segment id `u64`. Deletes the replica (memory
/// and file). Reply empty; `OK` also if the backup has no such replica (idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupFreeRequest {
    /// The master.
    pub master: ServerId,
    /// The segment.
    pub segment_id: u64,
}

impl Message<'_> for BackupFreeRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.master.0).u64(self.segment_id);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(BackupFreeRequest {
                master: ServerId(r.u64()?),
                segment_id: r.u64()?,
            })
        })
    }
}
impl Request<'_> for BackupFreeRequest {
    const OPCODE: Opcode = Opcode::BackupFree;
    type Response<'b> = Empty;
}

/// `BackupGetReplicas` (coordinator → every backup, when recovery of `master` starts): master
/// `u64`, min epoch `u64` (trailing; absent = 0). From then on the backup refuses every
/// `BackupWrite` of that master with `CALLER_NOT_IN_CLUSTER` (fencing a zombie). Reply:
/// [`BackupGetReplicasResponse`], which leaves out open replicas whose epoch is below
/// `min_epoch` (stale copies the master gave up on: see [`BackupWriteRequest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupGetReplicasRequest {
    /// The crashed master.
    pub master: ServerId,
    /// The replica epoch the master last recorded at the coordinator.
    pub min_epoch: u64,
}

impl Message<'_> for BackupGetReplicasRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.master.0).u64(self.min_epoch);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(BackupGetReplicasRequest {
                master: ServerId(r.u64()?),
                min_epoch: if r.remaining() == 0 { 0 } else { r.u64()? },
            })
        })
    }
}

/// Whether a replica may be used by recovery: a closed replica holds its whole segment; an
/// open one only if its epoch is at least the one its master recorded (a lower epoch is a copy
/// the master gave up on, and bytes it acknowledged later may be missing from it).
pub fn replica_usable(closed: bool, epoch: u64, min_epoch: u64) -> bool {
    closed || epoch >= min_epoch
}
impl Request<'_> for BackupGetReplicasRequest {
    const OPCODE: Opcode = Opcode::BackupGetReplicas;
    type Response<'b> = BackupGetReplicasResponse;
}

/// One replica a backup holds: segment id `u64`, length `u32` (its certificate's length),
/// closed `u8` (0/1) = 13 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// The segment.
    pub segment_id: u64,
    /// Validated bytes (the replica's certificate length).
    pub length: u32,
    /// The master closed the segment (it is complete).
    pub closed: bool,
}

impl ReplicaInfo {
    /// Encoded size.
    pub const LEN: usize = 13;
}

/// The log digest found in a master's newest head replica: the head's segment id `u64`, count
/// `u32`, segment ids `u64` each — every segment of the master's log when that head opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDigestInfo {
    /// The segment holding the digest.
    pub segment_id: u64,
    /// The segments of the log it names.
    pub segments: Vec<u64>,
}

/// `BackupGetReplicas` reply: count `u32`, [`ReplicaInfo`] each (only replicas that validate
/// under their certificate), then the digest: present `u8` (0 = none, 1 = a [`LogDigestInfo`]
/// follows) — the digest of the valid replica with the highest segment id that has one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupGetReplicasResponse {
    /// Valid replicas of the master.
    pub replicas: Vec<ReplicaInfo>,
    /// The newest log digest among them.
    pub digest: Option<LogDigestInfo>,
}

impl Message<'_> for BackupGetReplicasResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.replicas.len());
        for r in &self.replicas {
            w.u64(r.segment_id).u32(r.length).u8(r.closed as u8);
        }
        match &self.digest {
            None => {
                w.u8(0);
            }
            Some(d) => {
                w.u8(1).u64(d.segment_id);
                write_count(&mut w, d.segments.len());
                for s in &d.segments {
                    w.u64(*s);
                }
            }
        }
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "replicas", ReplicaInfo::LEN, usize::MAX)?;
            let mut replicas = Vec::with_capacity(n);
            for _ in 0..n {
                replicas.push(ReplicaInfo {
                    segment_id: r.u64()?,
                    length: r.u32()?,
                    closed: read_bool(r, "closed")?,
                });
            }
            let digest = match r.u8()? {
                0 => None,
                1 => {
                    let segment_id = r.u64()?;
                    let n = read_count(r, "digest segments", 8, MAX_REPLICA_BYTES / 8)?;
                    let mut segments = Vec::with_capacity(n);
                    for _ in 0..n {
                        segments.push(r.u64()?);
                    }
                    Some(LogDigestInfo {
                        segment_id,
                        segments,
                    })
                }
                v => {
                    return Err(MsgError::BadField {
                        field: "digest present",
                        value: u64::from(v),
                    })
                }
            };
            Ok(BackupGetReplicasResponse { replicas, digest })
        })
    }
}

/// `BackupGetRecoveryData` (recovery master → backup): master `u64`, segment id `u64`, count
/// `u32` (≤ [`MAX_RECOVERY_RANGES`]), tablet ranges (24 each). Reply:
/// [`BackupGetRecoveryDataResponse`]; `BACKUP_BAD_SEGMENT_ID` if the backup has no such replica,
/// `BACKUP_MALFORMED_SEGMENT` if it fails validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupGetRecoveryDataRequest {
    /// The crashed master.
    pub master: ServerId,
    /// The segment.
    pub segment_id: u64,
    /// The tablets the caller recovers: entries whose (table, key hash) lies in one of them.
    pub ranges: Vec<TabletRange>,
}

impl Message<'_> for BackupGetRecoveryDataRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.master.0).u64(self.segment_id);
        write_count(&mut w, self.ranges.len());
        for t in &self.ranges {
            w.u64(t.table_id).u64(t.start_hash).u64(t.end_hash);
        }
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let master = ServerId(r.u64()?);
            let segment_id = r.u64()?;
            let n = read_count(r, "tablet ranges", TabletRange::LEN, MAX_RECOVERY_RANGES)?;
            let mut ranges = Vec::with_capacity(n);
            for _ in 0..n {
                ranges.push(TabletRange::decode(r.take(TabletRange::LEN)?)?);
            }
            Ok(BackupGetRecoveryDataRequest {
                master,
                segment_id,
                ranges,
            })
        })
    }
}
impl Request<'_> for BackupGetRecoveryDataRequest {
    const OPCODE: Opcode = Opcode::BackupGetRecoveryData;
    type Response<'b> = BackupGetRecoveryDataResponse<'b>;
}

/// `BackupGetRecoveryData` reply: entries (`u32` len, ≤ [`MAX_REPLICA_BYTES`]) — the replica's
/// Object, Tombstone and SafeVersion log entries (header + body, exactly as in the log) of the
/// requested ranges, in log order (SafeVersion entries always). Parse them with the server's
/// `backup::for_each_recovery_entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupGetRecoveryDataResponse<'a> {
    /// Concatenated log entries.
    pub entries: &'a [u8],
}

impl BackupGetRecoveryDataResponse<'_> {
    /// Append the reply header for `len` bytes of entries; the caller appends the entries
    /// (lets a backup filter straight into the reply buffer).
    pub fn encode_head(len: usize, out: &mut Vec<u8>) {
        Writer::new(out).u32(u32::try_from(len).expect("entries longer than u32::MAX"));
    }
}

impl<'a> Message<'a> for BackupGetRecoveryDataResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).bytes_u32(self.entries);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(BackupGetRecoveryDataResponse {
                entries: r.bytes_u32_max(MAX_REPLICA_BYTES)?,
            })
        })
    }
}

/// `BackupRecoveryDone` (coordinator → every backup, after recovery of `master` completed):
/// master `u64`. The backup frees every replica of that master (memory and files) and drops its
/// fence (the master's lease ran out before its tablets were handed over). Reply empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupRecoveryDoneRequest {
    /// The recovered master.
    pub master: ServerId,
}

impl Message<'_> for BackupRecoveryDoneRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.master.0);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(BackupRecoveryDoneRequest {
                master: ServerId(r.u64()?),
            })
        })
    }
}
impl Request<'_> for BackupRecoveryDoneRequest {
    const OPCODE: Opcode = Opcode::BackupRecoveryDone;
    type Response<'b> = Empty;
}

/// `SetReplicaEpoch` (master → coordinator): server id `u64`, epoch `u64`. The master lost a
/// replica of a segment it had not closed, raised its replica epoch, wrote it to every open
/// replica it keeps, and now records it: recovery will ignore open replicas with a lower epoch.
/// The coordinator keeps the highest epoch, persisted, and answers once it is durable; it
/// refuses (`SERVER_DOESNT_EXIST`) a server that is not up (declared crashed: the master must
/// acknowledge nothing more). Reply empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetReplicaEpochRequest {
    /// The master.
    pub server: ServerId,
    /// Its replica epoch.
    pub epoch: u64,
}

impl Message<'_> for SetReplicaEpochRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.server.0).u64(self.epoch);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(SetReplicaEpochRequest {
                server: ServerId(r.u64()?),
                epoch: r.u64()?,
            })
        })
    }
}
impl Request<'_> for SetReplicaEpochRequest {
    const OPCODE: Opcode = Opcode::SetReplicaEpoch;
    type Response<'b> = Empty;
}

/// Most masters in a `GetFencedMasters` reply (the crashed masters of a cluster awaiting
/// recovery; a cluster has far fewer servers).
pub const MAX_FENCED_MASTERS: usize = 65_536;

/// `GetFencedMasters` (backup's server → coordinator, when it enlists): empty request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetFencedMastersRequest;

impl Message<'_> for GetFencedMastersRequest {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        Empty::decode(buf).map(|_| GetFencedMastersRequest)
    }
}
impl Request<'_> for GetFencedMastersRequest {
    const OPCODE: Opcode = Opcode::GetFencedMasters;
    type Response<'b> = GetFencedMastersResponse;
}

/// `GetFencedMasters` reply: count `u32` (≤ [`MAX_FENCED_MASTERS`]), then that many server ids
/// `u64` — every master the coordinator declared crashed whose recovery is not complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetFencedMastersResponse {
    /// The masters to fence.
    pub masters: Vec<ServerId>,
}

impl Message<'_> for GetFencedMastersResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.masters.len());
        for m in &self.masters {
            w.u64(m.0);
        }
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "fenced masters", 8, MAX_FENCED_MASTERS)?;
            let mut masters = Vec::with_capacity(n);
            for _ in 0..n {
                masters.push(ServerId(r.u64()?));
            }
            Ok(GetFencedMastersResponse { masters })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::round_trip;
    use super::*;

    const M: ServerId = ServerId::new(4, 2);

    fn write(offset: u32, flags: u8, data: &[u8]) -> BackupWriteRequest<'_> {
        BackupWriteRequest {
            master: M,
            segment_id: 9,
            offset,
            flags,
            certificate: ReplicaCertificate {
                length: offset + data.len() as u32,
                checksum: 0xDEAD_BEEF,
            },
            data,
            epoch: 7,
        }
    }

    #[test]
    fn a_filled_write_encodes_as_the_write_with_its_data() {
        let data = b"segment bytes read from the log";
        let whole = write(5, BackupWriteRequest::OPEN, data);
        let head = BackupWriteRequest { data: &[], ..whole };
        let mut out = vec![0xAA];
        head.encode_filled(&mut out, |o| o.extend_from_slice(data));
        assert_eq!(out[0], 0xAA, "appended after what `out` held");
        assert_eq!(&out[1..], &whole.to_vec()[..]);
        // A fill of the wrong length still frames: the backup sees the certificate mismatch.
        let mut short = Vec::new();
        head.encode_filled(&mut short, |o| o.extend_from_slice(&data[1..]));
        let e = BackupWriteRequest::decode(&short).unwrap_err();
        assert!(format!("{e:?}").contains("certificate.length"), "{e:?}");
    }

    #[test]
    fn a_write_without_an_epoch_has_epoch_0() {
        let mut bytes = write(0, BackupWriteRequest::OPEN, b"abc").to_vec();
        bytes.truncate(bytes.len() - 8);
        assert_eq!(BackupWriteRequest::decode(&bytes).unwrap().epoch, 0);
        let bytes = M.0.to_le_bytes();
        let req = BackupGetReplicasRequest::decode(&bytes).unwrap();
        assert_eq!(req.min_epoch, 0);
        assert!(replica_usable(true, 0, 5));
        assert!(replica_usable(false, 5, 5));
        assert!(!replica_usable(false, 4, 5));
    }

    /// `round_trip!` for a message with a trailing optional `u64`: the one prefix without it
    /// decodes too (as an older sender's message).
    macro_rules! round_trip_trailing_u64 {
        ($m:expr, $t:ty) => {{
            let m = $m;
            let buf = m.to_vec();
            assert_eq!(<$t>::decode(&buf).unwrap(), m);
            for cut in 0..buf.len() {
                let r = <$t>::decode(&buf[..cut]);
                assert_eq!(r.is_ok(), cut == buf.len() - 8, "prefix of {cut} bytes");
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert!(<$t>::decode(&longer).is_err(), "trailing byte accepted");
        }};
    }

    #[test]
    fn backup_messages_round_trip() {
        type W<'a> = BackupWriteRequest<'a>;
        round_trip_trailing_u64!(write(0, BackupWriteRequest::OPEN, b"segment bytes"), W<'_>);
        round_trip_trailing_u64!(write(13, BackupWriteRequest::CLOSE, b"more"), W<'_>);
        round_trip_trailing_u64!(write(17, 0, b""), W<'_>);
        round_trip!(BackupFreeRequest {
            master: M,
            segment_id: 3
        });
        round_trip!(SetReplicaEpochRequest {
            server: M,
            epoch: 12
        });
        round_trip_trailing_u64!(
            BackupGetReplicasRequest {
                master: M,
                min_epoch: 3
            },
            BackupGetReplicasRequest
        );
        round_trip!(BackupGetReplicasResponse {
            replicas: vec![
                ReplicaInfo {
                    segment_id: 1,
                    length: 100,
                    closed: true
                },
                ReplicaInfo {
                    segment_id: 2,
                    length: 7,
                    closed: false
                },
            ],
            digest: Some(LogDigestInfo {
                segment_id: 2,
                segments: vec![1, 2]
            }),
        });
        round_trip!(BackupGetReplicasResponse::default());
        round_trip!(BackupGetRecoveryDataRequest {
            master: M,
            segment_id: 5,
            ranges: vec![
                TabletRange {
                    table_id: 1,
                    start_hash: 0,
                    end_hash: u64::MAX
                },
                TabletRange {
                    table_id: 2,
                    start_hash: 5,
                    end_hash: 5
                },
            ],
        });
        round_trip!(BackupGetRecoveryDataResponse { entries: b"abc" });
        round_trip!(BackupRecoveryDoneRequest { master: M });
        round_trip!(GetFencedMastersRequest);
        round_trip!(GetFencedMastersResponse {
            masters: vec![M, ServerId::new(1, 7)]
        });
        // A count larger than the bytes can hold is refused before allocating.
        let mut huge = Vec::new();
        Writer::new(&mut huge).u32(u32::MAX).u64(1);
        assert!(GetFencedMastersResponse::decode(&huge).is_err());
        let mut head = Vec::new();
        BackupGetRecoveryDataResponse::encode_head(3, &mut head);
        head.extend_from_slice(b"xyz");
        assert_eq!(
            BackupGetRecoveryDataResponse::decode(&head)
                .unwrap()
                .entries,
            b"xyz"
        );
    }

    #[test]
    fn write_rules_are_checked_by_the_decoder() {
        let mut bad_len = write(4, 0, b"data");
        bad_len.certificate.length = 7;
        assert!(matches!(
            BackupWriteRequest::decode(&bad_len.to_vec()),
            Err(MsgError::BadField { .. })
        ));
        let bad_flags = write(0, 4, b"x");
        let e = BackupWriteRequest::decode(&bad_flags.to_vec()).unwrap_err();
        assert_eq!(e.status(), crate::wire::Status::REQUEST_FORMAT_ERROR);
        let w = write(0, 3, b"x");
        assert!(w.open() && w.close() && w.end() == 1);
        // An offset near u32::MAX cannot overflow the length check.
        let mut big = write(0, 0, b"xy");
        big.offset = u32::MAX;
        big.certificate.length = 1;
        assert!(BackupWriteRequest::decode(&big.to_vec()).is_err());
    }

    #[test]
    fn counts_are_bounded() {
        // A replica count larger than the bytes present.
        let mut b = Vec::new();
        Writer::new(&mut b).u32(1000).u64(1);
        assert!(matches!(
            BackupGetReplicasResponse::decode(&b),
            Err(MsgError::TooMany { .. })
        ));
        // Bad digest presence byte.
        let mut b = Vec::new();
        Writer::new(&mut b).u32(0).u8(2);
        assert!(BackupGetReplicasResponse::decode(&b).is_err());
        // More ranges than allowed, even when the bytes are there.
        let req = BackupGetRecoveryDataRequest {
            master: M,
            segment_id: 1,
            ranges: vec![
                TabletRange {
                    table_id: 1,
                    start_hash: 0,
                    end_hash: 1
                };
                MAX_RECOVERY_RANGES + 1
            ],
        };
        assert!(matches!(
            BackupGetRecoveryDataRequest::decode(&req.to_vec()),
            Err(MsgError::TooMany { .. })
        ));
        // An inverted range.
        let req = BackupGetRecoveryDataRequest {
            master: M,
            segment_id: 1,
            ranges: vec![TabletRange {
                table_id: 1,
                start_hash: 9,
                end_hash: 1,
            }],
        };
        assert!(BackupGetRecoveryDataRequest::decode(&req.to_vec()).is_err());
        // Entries longer than a replica.
        let mut b = Vec::new();
        Writer::new(&mut b).u32(MAX_REPLICA_BYTES as u32 + 1);
        assert!(BackupGetRecoveryDataResponse::decode(&b).is_err());
    }
}
