//! Master data operations (`0x0100`–`0x01FF`): read, write, remove, increment, the multi-ops and
//! enumerate. Table ids are `u64` on the wire; masters refuse ids ≥ 2^32 with
//! `TABLE_DOESNT_EXIST` (the coordinator never hands them out).

use super::common::{ClientLease, ExactlyOnce, RejectRules, MAX_MULTI_ITEMS};
use super::{
    decode_all, read_count, read_key, read_opt_u64, read_value, write_count, write_opt_u64,
    Message, MsgError, Request,
};
use crate::wire::codec::{Reader, Writer};
use crate::wire::{Opcode, Status};

/// `Read`: table `u64`, reject rules (9), key (`u16` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Conditions (e.g. "only if version ≠ what I cached").
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
}

/// `Read` reply: version `u64`, value (`u32` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadResponse<'a> {
    /// The object's version.
    pub version: u64,
    /// The value.
    pub value: &'a [u8],
}

impl<'a> Message<'a> for ReadRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rules.write(&mut w);
        w.bytes_u16(self.key);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ReadRequest {
                table: r.u64()?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
            })
        })
    }
}
impl<'a> Request<'a> for ReadRequest<'a> {
    const OPCODE: Opcode = Opcode::Read;
    type Response<'b> = ReadResponse<'b>;
}

impl<'a> ReadResponse<'a> {
    /// Append the reply header (version and value length) for a value of `value_len` bytes;
    /// the caller appends the value itself (lets a server read straight into the reply).
    pub fn encode_head(version: u64, value_len: usize, out: &mut Vec<u8>) {
        Writer::new(out).u64(version).u32(value_len as u32);
    }
}

impl<'a> Message<'a> for ReadResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.version).bytes_u32(self.value);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ReadResponse {
                version: r.u64()?,
                value: read_value(r)?,
            })
        })
    }
}

/// `Write`: table `u64`, exactly-once header (24), reject rules (9), key (`u16` len), value
/// (`u32` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Exactly-once header.
    pub rpc: ExactlyOnce,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// Reply of `Write`, `Remove` and each multi-op item: the new version (for `Remove`: the
/// version removed, 0 if no object existed). Wire: `u64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionResponse {
    /// Version.
    pub version: u64,
}

impl<'a> Message<'a> for WriteRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rpc.write(&mut w);
        self.rules.write(&mut w);
        w.bytes_u16(self.key).bytes_u32(self.value);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(WriteRequest {
                table: r.u64()?,
                rpc: ExactlyOnce::read(r)?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
                value: read_value(r)?,
            })
        })
    }
}
impl<'a> Request<'a> for WriteRequest<'a> {
    const OPCODE: Opcode = Opcode::Write;
    type Response<'b> = VersionResponse;
}

impl Message<'_> for VersionResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.version);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| Ok(VersionResponse { version: r.u64()? }))
    }
}

/// `Remove`: table `u64`, exactly-once header (24), reject rules (9), key (`u16` len).
/// Reply: [`VersionResponse`] (version removed; 0 = there was no object, still `OK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Exactly-once header.
    pub rpc: ExactlyOnce,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
}

impl<'a> Message<'a> for RemoveRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rpc.write(&mut w);
        self.rules.write(&mut w);
        w.bytes_u16(self.key);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(RemoveRequest {
                table: r.u64()?,
                rpc: ExactlyOnce::read(r)?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
            })
        })
    }
}
impl<'a> Request<'a> for RemoveRequest<'a> {
    const OPCODE: Opcode = Opcode::Remove;
    type Response<'b> = VersionResponse;
}

/// A number to add (or the result of an increment). Wire: kind `u8` (1 = i64, 2 = f64) + 8 bytes
/// little-endian (two's complement / IEEE-754 bits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A signed 64-bit integer.
    I64(i64),
    /// A 64-bit float.
    F64(f64),
}

impl Number {
    fn write(&self, w: &mut Writer<'_>) {
        match *self {
            Number::I64(v) => w.u8(1).u64(v as u64),
            Number::F64(v) => w.u8(2).u64(v.to_bits()),
        };
    }
    fn read(r: &mut Reader<'_>) -> Result<Number, MsgError> {
        let kind = r.u8()?;
        let bits = r.u64()?;
        match kind {
            1 => Ok(Number::I64(bits as i64)),
            2 => Ok(Number::F64(f64::from_bits(bits))),
            k => Err(MsgError::BadField {
                field: "number.kind",
                value: k as u64,
            }),
        }
    }
}

/// `Increment`: table `u64`, exactly-once header (24), reject rules (9), key (`u16` len), delta
/// ([`Number`], 9). The stored value must be 8 bytes (an absent object counts as 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncrementRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Exactly-once header.
    pub rpc: ExactlyOnce,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
    /// What to add.
    pub delta: Number,
}

/// `Increment` reply: version `u64`, new value ([`Number`], same kind as the delta).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncrementResponse {
    /// New version.
    pub version: u64,
    /// New value.
    pub value: Number,
}

impl<'a> Message<'a> for IncrementRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rpc.write(&mut w);
        self.rules.write(&mut w);
        w.bytes_u16(self.key);
        self.delta.write(&mut w);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(IncrementRequest {
                table: r.u64()?,
                rpc: ExactlyOnce::read(r)?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
                delta: Number::read(r)?,
            })
        })
    }
}
impl<'a> Request<'a> for IncrementRequest<'a> {
    const OPCODE: Opcode = Opcode::Increment;
    type Response<'b> = IncrementResponse;
}

impl Message<'_> for IncrementResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.version);
        self.value.write(&mut w);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(IncrementResponse {
                version: r.u64()?,
                value: Number::read(r)?,
            })
        })
    }
}

/// One key of a `MultiRead`: table `u64`, key (`u16` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiReadItem<'a> {
    /// Table id.
    pub table: u64,
    /// Key.
    pub key: &'a [u8],
}

/// `MultiRead`: count `u32` (≤ 4096), then the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiReadRequest<'a> {
    /// Keys to read.
    pub items: Vec<MultiReadItem<'a>>,
}

/// One result of a `MultiRead`: status `u16`, version `u64`, value (`u32` len; empty unless OK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiReadResult<'a> {
    /// This item's status (`OK`, `OBJECT_DOESNT_EXIST`, `UNKNOWN_TABLET`, ...).
    pub status: Status,
    /// Version (0 unless OK).
    pub version: u64,
    /// Value (empty unless OK).
    pub value: &'a [u8],
}

/// `MultiRead` reply: count `u32` (= request count), then one result per item, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiReadResponse<'a> {
    /// Results in request order.
    pub items: Vec<MultiReadResult<'a>>,
}

impl<'a> Message<'a> for MultiReadRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.items.len());
        for i in &self.items {
            w.u64(i.table).bytes_u16(i.key);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "multi-read items", 8 + 2 + 1, MAX_MULTI_ITEMS)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(MultiReadItem {
                    table: r.u64()?,
                    key: read_key(r)?,
                });
            }
            Ok(MultiReadRequest { items })
        })
    }
}
impl<'a> Request<'a> for MultiReadRequest<'a> {
    const OPCODE: Opcode = Opcode::MultiRead;
    type Response<'b> = MultiReadResponse<'b>;
}

impl<'a> Message<'a> for MultiReadResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.items.len());
        for i in &self.items {
            w.u16(i.status.0).u64(i.version).bytes_u32(i.value);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "multi-read results", 2 + 8 + 4, MAX_MULTI_ITEMS)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(MultiReadResult {
                    status: Status(r.u16()?),
                    version: r.u64()?,
                    value: read_value(r)?,
                });
            }
            Ok(MultiReadResponse { items })
        })
    }
}

/// One write of a `MultiWrite`: table `u64`, rpc id `u64`, reject rules (9), key (`u16` len),
/// value (`u32` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiWriteItem<'a> {
    /// Table id.
    pub table: u64,
    /// This item's rpc id (exactly-once, with the request's client id and ack id).
    pub rpc_id: u64,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// `MultiWrite`: client id `u64`, ack id `u64`, lease ([`ClientLease`], 16), count `u32`
/// (≤ 4096), items. Each item is atomic and exactly-once on its own; the batch is not a
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiWriteRequest<'a> {
    /// Client id (0 = untracked).
    pub client_id: u64,
    /// Ack id.
    pub ack_id: u64,
    /// The client's lease.
    pub lease: ClientLease,
    /// Writes.
    pub items: Vec<MultiWriteItem<'a>>,
}

/// One result of a `MultiWrite` / `MultiRemove`: status `u16`, version `u64` (new version; for
/// a remove the version removed, 0 if none; for `OBJECT_EXISTS` / `WRONG_VERSION` the current
/// version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiResult {
    /// Status of this item.
    pub status: Status,
    /// Version.
    pub version: u64,
}

/// Reply of `MultiWrite` / `MultiRemove`: count `u32`, then one [`MultiResult`] per item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    /// Results in request order.
    pub items: Vec<MultiResult>,
}

impl<'a> Message<'a> for MultiWriteRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.client_id).u64(self.ack_id);
        self.lease.write(&mut w);
        write_count(&mut w, self.items.len());
        for i in &self.items {
            w.u64(i.table).u64(i.rpc_id);
            i.rules.write(&mut w);
            w.bytes_u16(i.key).bytes_u32(i.value);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let client_id = r.u64()?;
            let ack_id = r.u64()?;
            let lease = ClientLease::read(r)?;
            let n = read_count(
                r,
                "multi-write items",
                8 + 8 + 9 + 2 + 1 + 4,
                MAX_MULTI_ITEMS,
            )?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(MultiWriteItem {
                    table: r.u64()?,
                    rpc_id: r.u64()?,
                    rules: RejectRules::read(r)?,
                    key: read_key(r)?,
                    value: read_value(r)?,
                });
            }
            Ok(MultiWriteRequest {
                client_id,
                ack_id,
                lease,
                items,
            })
        })
    }
}
impl<'a> Request<'a> for MultiWriteRequest<'a> {
    const OPCODE: Opcode = Opcode::MultiWrite;
    type Response<'b> = MultiResponse;
}

impl Message<'_> for MultiResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_count(&mut w, self.items.len());
        for i in &self.items {
            w.u16(i.status.0).u64(i.version);
        }
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let n = read_count(r, "multi-op results", 10, MAX_MULTI_ITEMS)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(MultiResult {
                    status: Status(r.u16()?),
                    version: r.u64()?,
                });
            }
            Ok(MultiResponse { items })
        })
    }
}

/// One remove of a `MultiRemove`: table `u64`, rpc id `u64`, reject rules (9), key (`u16` len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiRemoveItem<'a> {
    /// Table id.
    pub table: u64,
    /// This item's rpc id.
    pub rpc_id: u64,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
}

/// `MultiRemove`: client id `u64`, ack id `u64`, lease ([`ClientLease`], 16), count `u32`
/// (≤ 4096), items. Reply: [`MultiResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiRemoveRequest<'a> {
    /// Client id (0 = untracked).
    pub client_id: u64,
    /// Ack id.
    pub ack_id: u64,
    /// The client's lease.
    pub lease: ClientLease,
    /// Removes.
    pub items: Vec<MultiRemoveItem<'a>>,
}

impl<'a> Message<'a> for MultiRemoveRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.client_id).u64(self.ack_id);
        self.lease.write(&mut w);
        write_count(&mut w, self.items.len());
        for i in &self.items {
            w.u64(i.table).u64(i.rpc_id);
            i.rules.write(&mut w);
            w.bytes_u16(i.key);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let client_id = r.u64()?;
            let ack_id = r.u64()?;
            let lease = ClientLease::read(r)?;
            let n = read_count(r, "multi-remove items", 8 + 8 + 9 + 2 + 1, MAX_MULTI_ITEMS)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(MultiRemoveItem {
                    table: r.u64()?,
                    rpc_id: r.u64()?,
                    rules: RejectRules::read(r)?,
                    key: read_key(r)?,
                });
            }
            Ok(MultiRemoveRequest {
                client_id,
                ack_id,
                lease,
                items,
            })
        })
    }
}
impl<'a> Request<'a> for MultiRemoveRequest<'a> {
    const OPCODE: Opcode = Opcode::MultiRemove;
    type Response<'b> = MultiResponse;
}

/// `Enumerate`: table `u64`, tablet start hash `u64`, tablet end hash `u64` (inclusive; the
/// range of one tablet from the map — a master that does not own exactly that range, or a range
/// containing it, answers `UNKNOWN_TABLET`), cursor (presence `u8` + `u64`; absent = start),
/// max bytes `u32` (soft limit on key + value bytes of one reply; ≥ 1 object is returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumerateRequest {
    /// Table id.
    pub table: u64,
    /// First key hash of the tablet.
    pub start_hash: u64,
    /// Last key hash of the tablet (inclusive).
    pub end_hash: u64,
    /// Where to continue (`next_cursor` of the previous reply), or `None` to start.
    pub cursor: Option<u64>,
    /// Soft cap on key + value bytes in the reply.
    pub max_bytes: u32,
}

/// An object in an `Enumerate` reply: key (`u16` len), value (`u32` len), version `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumeratedObject<'a> {
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Version.
    pub version: u64,
}

/// `Enumerate` reply: next cursor (presence `u8` + `u64`; absent = tablet done), count `u32`,
/// objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumerateResponse<'a> {
    /// Pass back to continue; `None` when the tablet is exhausted.
    pub next_cursor: Option<u64>,
    /// Objects of this batch.
    pub objects: Vec<EnumeratedObject<'a>>,
}

impl Message<'_> for EnumerateRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table).u64(self.start_hash).u64(self.end_hash);
        write_opt_u64(&mut w, self.cursor);
        w.u32(self.max_bytes);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let table = r.u64()?;
            let start_hash = r.u64()?;
            let end_hash = r.u64()?;
            if start_hash > end_hash {
                return Err(MsgError::BadField {
                    field: "end_hash",
                    value: end_hash,
                });
            }
            Ok(EnumerateRequest {
                table,
                start_hash,
                end_hash,
                cursor: read_opt_u64(r, "cursor")?,
                max_bytes: r.u32()?,
            })
        })
    }
}
impl Request<'_> for EnumerateRequest {
    const OPCODE: Opcode = Opcode::Enumerate;
    type Response<'b> = EnumerateResponse<'b>;
}

impl<'a> Message<'a> for EnumerateResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        write_opt_u64(&mut w, self.next_cursor);
        write_count(&mut w, self.objects.len());
        for o in &self.objects {
            w.bytes_u16(o.key).bytes_u32(o.value).u64(o.version);
        }
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let next_cursor = read_opt_u64(r, "next_cursor")?;
            let n = read_count(r, "enumerated objects", 2 + 1 + 4 + 8, usize::MAX)?;
            let mut objects = Vec::with_capacity(n);
            for _ in 0..n {
                objects.push(EnumeratedObject {
                    key: read_key(r)?,
                    value: read_value(r)?,
                    version: r.u64()?,
                });
            }
            Ok(EnumerateResponse {
                next_cursor,
                objects,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::round_trip;
    use super::*;

    const EO: ExactlyOnce = ExactlyOnce {
        client_id: 5,
        rpc_id: 9,
        ack_id: 8,
        lease: ClientLease {
            expiration: 30_000,
            timestamp: 1_000,
        },
    };
    const RULES: RejectRules = RejectRules {
        doesnt_exist: true,
        exists: false,
        version_le_given: true,
        version_ne_given: false,
        given_version: 77,
    };

    #[test]
    fn single_ops_round_trip() {
        round_trip!(ReadRequest {
            table: 1,
            rules: RULES,
            key: b"k"
        });
        round_trip!(ReadResponse {
            version: 3,
            value: b"value"
        });
        round_trip!(ReadResponse {
            version: 3,
            value: b""
        });
        round_trip!(WriteRequest {
            table: u64::MAX,
            rpc: EO,
            rules: RULES,
            key: b"key",
            value: b"v"
        });
        round_trip!(VersionResponse { version: 12 });
        round_trip!(RemoveRequest {
            table: 2,
            rpc: EO,
            rules: RejectRules::NONE,
            key: b"x"
        });
        round_trip!(IncrementRequest {
            table: 2,
            rpc: EO,
            rules: RULES,
            key: b"c",
            delta: Number::I64(-5)
        });
        round_trip!(IncrementRequest {
            table: 2,
            rpc: EO,
            rules: RULES,
            key: b"c",
            delta: Number::F64(1.5)
        });
        round_trip!(IncrementResponse {
            version: 4,
            value: Number::I64(i64::MIN)
        });
        let mut buf = Vec::new();
        ReadResponse::encode_head(9, 3, &mut buf);
        buf.extend_from_slice(b"abc");
        assert_eq!(
            ReadResponse::decode(&buf),
            Ok(ReadResponse {
                version: 9,
                value: b"abc"
            })
        );
    }

    #[test]
    fn multi_ops_round_trip() {
        round_trip!(MultiReadRequest { items: vec![] });
        round_trip!(MultiReadRequest {
            items: vec![
                MultiReadItem {
                    table: 1,
                    key: b"a"
                },
                MultiReadItem {
                    table: 2,
                    key: b"bb"
                }
            ],
        });
        round_trip!(MultiReadResponse {
            items: vec![
                MultiReadResult {
                    status: Status::OK,
                    version: 1,
                    value: b"x"
                },
                MultiReadResult {
                    status: Status::OBJECT_DOESNT_EXIST,
                    version: 0,
                    value: b""
                },
            ],
        });
        round_trip!(MultiWriteRequest {
            client_id: 1,
            ack_id: 2,
            lease: ClientLease {
                expiration: 7,
                timestamp: 6,
            },
            items: vec![MultiWriteItem {
                table: 1,
                rpc_id: 3,
                rules: RULES,
                key: b"k",
                value: b"v"
            }],
        });
        round_trip!(MultiRemoveRequest {
            client_id: 1,
            ack_id: 2,
            lease: ClientLease {
                expiration: 7,
                timestamp: 6,
            },
            items: vec![MultiRemoveItem {
                table: 1,
                rpc_id: 3,
                rules: RULES,
                key: b"k"
            }],
        });
        round_trip!(MultiResponse {
            items: vec![MultiResult {
                status: Status::WRONG_VERSION,
                version: 8
            }],
        });
    }

    #[test]
    fn enumerate_round_trip() {
        round_trip!(EnumerateRequest {
            table: 1,
            start_hash: 0,
            end_hash: u64::MAX,
            cursor: None,
            max_bytes: 1 << 20
        });
        round_trip!(EnumerateRequest {
            table: 1,
            start_hash: 5,
            end_hash: 9,
            cursor: Some(7),
            max_bytes: 10
        });
        round_trip!(EnumerateResponse {
            next_cursor: Some(0),
            objects: vec![EnumeratedObject {
                key: b"k",
                value: b"v",
                version: 1
            }],
        });
        round_trip!(EnumerateResponse {
            next_cursor: None,
            objects: vec![]
        });
        let bad = EnumerateRequest {
            table: 1,
            start_hash: 9,
            end_hash: 5,
            cursor: None,
            max_bytes: 1,
        };
        assert!(EnumerateRequest::decode(&bad.to_vec()).is_err());
    }

    #[test]
    fn hostile_inputs_are_typed_errors() {
        // Empty key.
        let mut buf = Vec::new();
        Writer::new(&mut buf).u64(1).u8(0).u64(0).u16(0);
        assert_eq!(ReadRequest::decode(&buf), Err(MsgError::EmptyKey));
        // Value length above 1 MiB is refused before reading it.
        let mut buf = Vec::new();
        Writer::new(&mut buf).u64(1).u32(u32::MAX);
        assert!(matches!(
            ReadResponse::decode(&buf),
            Err(MsgError::Codec(_))
        ));
        // Huge counts are refused before allocating.
        let mut buf = Vec::new();
        Writer::new(&mut buf).u32(u32::MAX);
        assert!(matches!(
            MultiReadRequest::decode(&buf),
            Err(MsgError::TooMany { .. })
        ));
        let mut buf = Vec::new();
        Writer::new(&mut buf)
            .u64(0)
            .u64(0)
            .u32(MAX_MULTI_ITEMS as u32 + 1);
        buf.resize(buf.len() + 64 * 4097, 1);
        assert!(matches!(
            MultiRemoveRequest::decode(&buf),
            Err(MsgError::TooMany { .. })
        ));
        // Unknown number kind; bad presence byte.
        let mut buf = Vec::new();
        Writer::new(&mut buf).u64(1).u8(3).u64(0);
        assert!(matches!(
            IncrementResponse::decode(&buf),
            Err(MsgError::BadField { .. })
        ));
        let mut buf = Vec::new();
        Writer::new(&mut buf).u8(2).u64(0).u32(0);
        assert!(matches!(
            EnumerateResponse::decode(&buf),
            Err(MsgError::BadField { .. })
        ));
        // Random bytes never panic.
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = ReadRequest::decode(&bytes);
            let _ = WriteRequest::decode(&bytes);
            let _ = MultiWriteRequest::decode(&bytes);
            let _ = MultiReadResponse::decode(&bytes);
            let _ = EnumerateResponse::decode(&bytes);
        }
    }
}
