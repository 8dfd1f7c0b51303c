//! RPC message codecs shared by the server and the client: one request and one response struct
//! per RPC of the cluster (master data operations, coordinator, server control).
//!
//! Every payload is explicit little-endian, written with [`crate::wire::codec::Writer`] and read
//! with [`crate::wire::codec::Reader`]; the byte layouts are in `docs/protocol.md` ("Cluster
//! messages"). Decoders borrow keys, values, names and locators from the payload (no copy),
//! check every count and length against the bytes present and against the limits below before
//! anything is allocated, reject trailing bytes and unknown enum values, and return a typed
//! [`MsgError`] — they never panic.
//!
//! Reply convention (every RPC here): a response with status `OK` carries the response struct.
//! A response with any other status carries an [`ErrorReply`] (current version for
//! `OBJECT_EXISTS` / `WRONG_VERSION`, and a human-readable detail), or nothing at all when the
//! transport itself answered (`UNIMPLEMENTED_REQUEST`, ...). [`decode_reply`] applies the rule.
//!
//! Encoders assume their input respects the limits ([`check_key`], [`check_value`]): a key longer
//! than 65 535 bytes is a caller bug and panics in the writer.
//!
//! Modules: [`common`] (reject rules, exactly-once header, server ids, error replies),
//! [`master`] (`0x01xx`), [`coordinator`] (`0x02xx`), [`backup`] (`0x03xx`), [`control`]
//! (`0x04xx`), [`faas`] (backed tables: `GetTableConfig` `0x0210`, master RPCs `0x05xx`),
//! [`elastic`] (`ResizeMemory` `0x0408`, `DrainServer` `0x0212`, `RetireServer` `0x0409`).

pub mod backup;
pub mod common;
pub mod control;
pub mod coordinator;
pub mod elastic;
pub mod faas;
pub mod large;
pub mod master;

pub use common::{
    check_key, check_value, chunk_key, chunk_parent, key_hash, ClientLease, ErrorReply,
    ExactlyOnce, RejectRules, ServerId, Services, CHUNK_SUFFIX_LEN, MAX_KEY_LEN, MAX_LOCATOR_LEN,
    MAX_MULTI_ITEMS, MAX_TABLE_NAME_LEN, MAX_VALUE_LEN,
};

use crate::wire::codec::{CodecError, Reader, Writer};
use crate::wire::{Opcode, Status};

/// A payload that does not decode as the message expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// Truncated payload, trailing bytes or an over-long length field.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A field holds a value the format does not allow (unknown enum tag, reserved bit set).
    #[error("field `{field}` has the invalid value {value}")]
    BadField {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A list is longer than the format allows, or than the bytes present could hold.
    #[error("{what}: {count} entries exceed the limit of {max}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// Declared count.
        count: u64,
        /// Limit (the smaller of the format limit and what the remaining bytes can hold).
        max: u64,
    },
    /// A text field is not UTF-8.
    #[error("field `{field}` is not valid UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A length exceeds a limit of the message (key, value, name, locator).
    #[error("field `{field}` is {len} bytes; the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Length found.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A key is empty (keys are 1 to 65 535 bytes).
    #[error("empty key: keys are 1 to 65535 bytes")]
    EmptyKey,
}

impl MsgError {
    /// The status a server answers a request that failed to decode with.
    pub fn status(&self) -> Status {
        match self {
            MsgError::Codec(CodecError::Truncated { .. }) => Status::MESSAGE_TOO_SHORT,
            _ => Status::REQUEST_FORMAT_ERROR,
        }
    }
}

/// A message body with an explicit little-endian encoding.
pub trait Message<'a>: Sized {
    /// Append the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decode a whole payload (trailing bytes are an error).
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError>;
    /// The encoding as a new vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// A request: its opcode and the response it expects.
pub trait Request<'a>: Message<'a> {
    /// The RPC's opcode.
    const OPCODE: Opcode;
    /// The response body on `OK`.
    type Response<'b>: Message<'b>;
}

/// The empty body (requests and responses with no fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Empty;

impl Message<'_> for Empty {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        Reader::new(buf).finish()?;
        Ok(Empty)
    }
}

/// A non-`OK` reply, decoded by [`decode_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The response status.
    pub status: Status,
    /// The object's current version (`OBJECT_EXISTS`, `WRONG_VERSION`), else 0.
    pub version: u64,
    /// The server's explanation (may be empty).
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Decode a response: `Ok(body)` on `OK`, `Err(Ok(failure))` for another status, and
/// `Err(Err(e))` if the payload does not decode.
#[allow(clippy::type_complexity)]
pub fn decode_reply<'a, M: Message<'a>>(
    status: Status,
    payload: &'a [u8],
) -> Result<M, Result<Failure, MsgError>> {
    if status.is_ok() {
        return M::decode(payload).map_err(Err);
    }
    if payload.is_empty() {
        return Err(Ok(Failure {
            status,
            version: 0,
            detail: String::new(),
        }));
    }
    match ErrorReply::decode(payload) {
        Ok(e) => Err(Ok(Failure {
            status,
            version: e.version,
            detail: e.detail.to_string(),
        })),
        Err(e) => Err(Err(e)),
    }
}

// ---- helpers shared by the message modules ----------------------------------------------------

/// Read a list count and check it against `max` and against what the remaining bytes can hold
/// (each entry takes at least `min_entry` bytes), before any allocation.
pub(crate) fn read_count(
    r: &mut Reader<'_>,
    what: &'static str,
    min_entry: usize,
    max: usize,
) -> Result<usize, MsgError> {
    let n = r.u32()? as usize;
    let fits = r.remaining() / min_entry.max(1);
    let limit = max.min(fits);
    if n > limit {
        return Err(MsgError::TooMany {
            what,
            count: n as u64,
            max: limit as u64,
        });
    }
    Ok(n)
}

pub(crate) fn write_count(w: &mut Writer<'_>, n: usize) {
    w.u32(u32::try_from(n).expect("list longer than u32::MAX entries"));
}

/// A UTF-8 string with a u16 length prefix, at most `max` bytes.
pub(crate) fn read_str<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
    max: usize,
) -> Result<&'a str, MsgError> {
    let b = r.bytes_u16()?;
    if b.len() > max {
        return Err(MsgError::TooLong {
            field,
            len: b.len(),
            max,
        });
    }
    std::str::from_utf8(b).map_err(|_| MsgError::NotUtf8 { field })
}

/// A key: u16 length prefix, 1..=65535 bytes.
pub(crate) fn read_key<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], MsgError> {
    let k = r.bytes_u16()?;
    if k.is_empty() {
        return Err(MsgError::EmptyKey);
    }
    Ok(k)
}

/// A value: u32 length prefix, at most [`MAX_VALUE_LEN`].
pub(crate) fn read_value<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], MsgError> {
    Ok(r.bytes_u32_max(MAX_VALUE_LEN)?)
}

/// `Option<u64>`: a presence byte (0 or 1) and the value (0 when absent).
pub(crate) fn read_opt_u64(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<u64>, MsgError> {
    let present = r.u8()?;
    let v = r.u64()?;
    match present {
        0 if v == 0 => Ok(None),
        0 => Err(MsgError::BadField { field, value: v }),
        1 => Ok(Some(v)),
        p => Err(MsgError::BadField {
            field,
            value: p as u64,
        }),
    }
}

pub(crate) fn write_opt_u64(w: &mut Writer<'_>, v: Option<u64>) {
    match v {
        Some(v) => w.u8(1).u64(v),
        None => w.u8(0).u64(0),
    };
}

/// A boolean byte (0 or 1).
pub(crate) fn read_bool(r: &mut Reader<'_>, field: &'static str) -> Result<bool, MsgError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(MsgError::BadField {
            field,
            value: v as u64,
        }),
    }
}

/// Decode helper: run `f` over a reader and require that it consumes everything.
pub(crate) fn decode_all<'a, T>(
    buf: &'a [u8],
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, MsgError>,
) -> Result<T, MsgError> {
    let mut r = Reader::new(buf);
    let v = f(&mut r)?;
    r.finish()?;
    Ok(v)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Decode `buf` as the type of `_like`.
    pub fn dec<'a, M: Message<'a>>(_like: &M, buf: &'a [u8]) -> Result<M, MsgError> {
        M::decode(buf)
    }

    /// Encode, decode, compare; then check that every strict prefix and one extra trailing byte
    /// fail to decode (and do not panic).
    macro_rules! round_trip {
        ($m:expr) => {{
            let m = $m;
            let buf = $crate::msg::Message::to_vec(&m);
            let back = $crate::msg::testutil::dec(&m, &buf).expect("decodes");
            assert_eq!(back, m);
            for cut in 0..buf.len() {
                assert!(
                    $crate::msg::testutil::dec(&m, &buf[..cut]).is_err(),
                    "prefix of {cut} bytes decoded: {m:?}"
                );
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert!(
                $crate::msg::testutil::dec(&m, &longer).is_err(),
                "trailing byte accepted"
            );
        }};
    }
    pub(crate) use round_trip;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_convention() {
        let e = ErrorReply {
            version: 7,
            detail: "too big",
        };
        let buf = e.to_vec();
        let r = decode_reply::<Empty>(Status::WRONG_VERSION, &buf);
        assert_eq!(
            r,
            Err(Ok(Failure {
                status: Status::WRONG_VERSION,
                version: 7,
                detail: "too big".into()
            }))
        );
        assert_eq!(
            decode_reply::<Empty>(Status::UNIMPLEMENTED_REQUEST, &[]),
            Err(Ok(Failure {
                status: Status::UNIMPLEMENTED_REQUEST,
                version: 0,
                detail: String::new()
            }))
        );
        assert_eq!(decode_reply::<Empty>(Status::OK, &[]), Ok(Empty));
        assert!(matches!(
            decode_reply::<Empty>(Status::OK, &[1]),
            Err(Err(_))
        ));
    }

    #[test]
    fn counts_checked_before_allocation() {
        let mut buf = Vec::new();
        Writer::new(&mut buf).u32(u32::MAX);
        let mut r = Reader::new(&buf);
        assert!(matches!(
            read_count(&mut r, "x", 8, 1000),
            Err(MsgError::TooMany { max: 0, .. })
        ));
        assert_eq!(
            MsgError::Codec(CodecError::Truncated { at: 0, need: 1 }).status(),
            Status::MESSAGE_TOO_SHORT
        );
        assert_eq!(MsgError::EmptyKey.status(), Status::REQUEST_FORMAT_ERROR);
    }

    macro_rules! decode_all_kinds {
        ($bytes:expr) => {{
            use super::backup::*;
            use super::control::*;
            use super::coordinator::*;
            use super::master::*;
            let b: &[u8] = $bytes;
            let _ = ReadRequest::decode(b);
            let _ = ReadResponse::decode(b);
            let _ = WriteRequest::decode(b);
            let _ = VersionResponse::decode(b);
            let _ = RemoveRequest::decode(b);
            let _ = IncrementRequest::decode(b);
            let _ = IncrementResponse::decode(b);
            let _ = MultiReadRequest::decode(b);
            let _ = MultiReadResponse::decode(b);
            let _ = MultiWriteRequest::decode(b);
            let _ = MultiRemoveRequest::decode(b);
            let _ = MultiResponse::decode(b);
            let _ = EnumerateRequest::decode(b);
            let _ = EnumerateResponse::decode(b);
            let _ = EnlistServerRequest::decode(b);
            let _ = EnlistServerResponse::decode(b);
            let _ = HeartbeatRequest::decode(b);
            let _ = GetServerListRequest::decode(b);
            let _ = GetServerListResponse::decode(b);
            let _ = CreateTableRequest::decode(b);
            let _ = TableIdResponse::decode(b);
            let _ = DropTableRequest::decode(b);
            let _ = GetTableIdRequest::decode(b);
            let _ = ListTablesRequest::decode(b);
            let _ = ListTablesResponse::decode(b);
            let _ = GetTabletMapRequest::decode(b);
            let _ = GetTabletMapResponse::decode(b);
            let _ = SplitTabletRequest::decode(b);
            let _ = MigrateTabletRequest::decode(b);
            let _ = GetClientLeaseRequest::decode(b);
            let _ = ClientLeaseResponse::decode(b);
            let _ = ReleaseClientLeaseRequest::decode(b);
            let _ = CheckClientLeasesRequest::decode(b);
            let _ = CheckClientLeasesResponse::decode(b);
            let _ = HeartbeatResponse::decode(b);
            let _ = TakeTabletOwnershipRequest::decode(b);
            let _ = DropTabletOwnershipRequest::decode(b);
            let _ = PrepareMigrationRequest::decode(b);
            let _ = MigrateTabletOutRequest::decode(b);
            let _ = ReceiveMigrationDataRequest::decode(b);
            let _ = GetServerInfoRequest::decode(b);
            let _ = GetServerInfoResponse::decode(b);
            let _ = super::elastic::ResizeMemoryRequest::decode(b);
            let _ = super::elastic::ResizeMemoryResponse::decode(b);
            let _ = super::elastic::DrainServerRequest::decode(b);
            let _ = super::elastic::DrainServerResponse::decode(b);
            let _ = super::elastic::RetireServerRequest::decode(b);
            let _ = BackupWriteRequest::decode(b);
            let _ = BackupFreeRequest::decode(b);
            let _ = BackupGetReplicasRequest::decode(b);
            let _ = BackupGetReplicasResponse::decode(b);
            let _ = BackupGetRecoveryDataRequest::decode(b);
            let _ = BackupGetRecoveryDataResponse::decode(b);
            let _ = BackupRecoveryDoneRequest::decode(b);
            let _ = ErrorReply::decode(b);
            let _ = Empty::decode(b);
        }};
    }

    proptest::proptest! {
        /// No decoder panics on any input (the property form of a fuzz target).
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            decode_all_kinds!(&bytes);
        }

        /// Nor on a valid encoding with one byte changed.
        #[test]
        fn decoders_survive_mutated_encodings(pos in 0usize..200, val in proptest::prelude::any::<u8>()) {
            let req = super::master::MultiWriteRequest {
                client_id: 1,
                ack_id: 2,
                lease: ClientLease { expiration: 5, timestamp: 1 },
                items: vec![super::master::MultiWriteItem {
                    table: 3, rpc_id: 4, rules: RejectRules::NONE, key: b"key", value: b"value",
                }; 3],
            };
            let mut buf = req.to_vec();
            let i = pos % buf.len();
            buf[i] = val;
            decode_all_kinds!(&buf);
        }
    }
}
