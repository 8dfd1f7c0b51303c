//! The FaaS layer's messages: tables backed by an object store (`docs/faas.md`).
//!
//! * [`TableBacking`]: what `CreateTable` may carry and `GetTableConfig` returns — the store's
//!   URL (`s3://bucket[/prefix]`, `swift://container[/prefix]`, or empty for an ephemeral table
//!   without a store), the write policy and the table's cache parameters. Never credentials:
//!   each server takes those from its own flags, environment or config file.
//! * Master RPCs (`0x05xx`): `FlushObjects` (wait until dirty objects are in the store),
//!   `InvalidateObjects` (drop clean copies after a change made outside the cache),
//!   `ReadObject` (a byte range of an object with its store metadata; objects above one value's
//!   limit are read piece by piece), `CheckBacking` (a master checks a backing with its
//!   credentials before a table is created on it), `WriteObject` (a `Write` of a backed table
//!   that carries the object's metadata: content type, user metadata, ETag, last-modified),
//!   `WriteObjectChunk` + `CommitObject` (an object above one value's limit, written in
//!   chunks and made visible at once: [`super::large`]).

use super::common::{ExactlyOnce, RejectRules};
use super::master::VersionResponse;
use super::{
    decode_all, read_count, read_key, read_str, read_value, write_count, Message, MsgError, Request,
};
use crate::wire::codec::{Reader, Writer};
use crate::wire::Opcode;

/// Longest backing URL.
pub const MAX_BACKING_URL_LEN: usize = 2048;
/// Longest ETag, content type, or user-metadata name or value carried in [`ObjectMeta`].
pub const MAX_META_FIELD_LEN: usize = 2048;
/// Most user-metadata pairs in [`ObjectMeta`].
pub const MAX_USER_META: usize = 64;
/// Largest piece `ReadObject` returns in one reply.
pub const MAX_READ_OBJECT_PIECE: u32 = 1024 * 1024;

/// When a write to a backed table reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WritePolicy {
    /// Acknowledged once the object is in R backups' memory; uploaded later, in per-key order.
    WriteBack = 1,
    /// Acknowledged after the store has it.
    WriteThrough = 2,
    /// Never uploaded (intermediate data); removed with the table or after its TTL.
    Ephemeral = 3,
}

impl WritePolicy {
    /// The policy's name as the CLI spells it.
    pub const fn name(self) -> &'static str {
        match self {
            WritePolicy::WriteBack => "write-back",
            WritePolicy::WriteThrough => "write-through",
            WritePolicy::Ephemeral => "ephemeral",
        }
    }
    /// Parse a CLI name (`write-back`, `write-through`, `ephemeral`).
    pub fn parse(s: &str) -> Option<WritePolicy> {
        match s {
            "write-back" => Some(WritePolicy::WriteBack),
            "write-through" => Some(WritePolicy::WriteThrough),
            "ephemeral" => Some(WritePolicy::Ephemeral),
            _ => None,
        }
    }
    fn from_u8(v: u8) -> Result<WritePolicy, MsgError> {
        match v {
            1 => Ok(WritePolicy::WriteBack),
            2 => Ok(WritePolicy::WriteThrough),
            3 => Ok(WritePolicy::Ephemeral),
            v => Err(MsgError::BadField {
                field: "write policy",
                value: v as u64,
            }),
        }
    }
}

impl std::fmt::Display for WritePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A table's backing store and cache parameters (fixed when the table is created).
///
/// Wire: url (`u16` len, UTF-8, ≤ [`MAX_BACKING_URL_LEN`]), policy `u8`, negative TTL ms `u32`,
/// revalidation ms `u32`, admission limit `u64`, TTL ms `u64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableBacking {
    /// `s3://bucket[/prefix]` or `swift://container[/prefix]`; empty only for an ephemeral
    /// table without a store.
    pub url: String,
    /// Write policy.
    pub policy: WritePolicy,
    /// How long a "not in the store" answer is remembered (0: not at all).
    pub negative_ttl_ms: u32,
    /// A hit on an object validated longer ago than this asks the store whether it changed
    /// (a conditional GET); 0: never.
    pub revalidate_ms: u32,
    /// Objects larger than this are passed through without being cached (0: the default).
    pub admit_max_bytes: u64,
    /// Ephemeral objects are removed this long after they were written (0: kept until the
    /// table is dropped). Ignored by the other policies.
    pub ttl_ms: u64,
}

/// Default negative-cache time.
pub const DEFAULT_NEGATIVE_TTL_MS: u32 = 1_000;
/// Default admission limit: the largest object the cache keeps (64 MiB).
pub const DEFAULT_ADMIT_MAX_BYTES: u64 = 64 * 1024 * 1024;

impl TableBacking {
    /// A backing with the default parameters.
    pub fn new(url: impl Into<String>, policy: WritePolicy) -> TableBacking {
        TableBacking {
            url: url.into(),
            policy,
            negative_ttl_ms: DEFAULT_NEGATIVE_TTL_MS,
            revalidate_ms: 0,
            admit_max_bytes: DEFAULT_ADMIT_MAX_BYTES,
            ttl_ms: 0,
        }
    }

    /// The admission limit in force (the default when 0).
    pub fn admit_max(&self) -> u64 {
        if self.admit_max_bytes == 0 {
            DEFAULT_ADMIT_MAX_BYTES
        } else {
            self.admit_max_bytes
        }
    }

    /// Whether the table has a store (read-through and, unless ephemeral, uploads).
    pub fn has_store(&self) -> bool {
        !self.url.is_empty()
    }

    /// Check the fields a coordinator must refuse before storing them.
    pub fn validate(&self) -> Result<(), BackingError> {
        if self.url.is_empty() {
            if self.policy != WritePolicy::Ephemeral {
                return Err(BackingError(format!(
                    "a {} table needs a store: pass --backing s3://BUCKET[/PREFIX] or swift://CONTAINER[/PREFIX]",
                    self.policy
            )));
            }
            return Ok(());
        }
        let scheme_ok = ["s3://", "swift://"]
            .iter()
            .any(|s| self.url.starts_with(s) && self.url.len() > s.len());
        if !scheme_ok {
            return Err(BackingError(format!(
                "unsupported backing {:?}: use s3://BUCKET[/PREFIX] or swift://CONTAINER[/PREFIX]",
                self.url
            )));
        }
        if self.url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(BackingError(format!(
                "backing {:?} contains spaces or control characters",
                self.url
            )));
        }
        Ok(())
    }

    /// Append the encoding.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.bytes_u16(self.url.as_bytes())
            .u8(self.policy as u8)
            .u32(self.negative_ttl_ms)
            .u32(self.revalidate_ms)
            .u64(self.admit_max_bytes)
            .u64(self.ttl_ms);
    }

    /// Read the encoding.
    pub fn read(r: &mut Reader<'_>) -> Result<TableBacking, MsgError> {
        Ok(TableBacking {
            url: read_str(r, "backing url", MAX_BACKING_URL_LEN)?.to_string(),
            policy: WritePolicy::from_u8(r.u8()?)?,
            negative_ttl_ms: r.u32()?,
            revalidate_ms: r.u32()?,
            admit_max_bytes: r.u64()?,
            ttl_ms: r.u64()?,
        })
    }

    /// Append an optional backing: a presence byte, then the backing.
    pub fn write_opt(b: Option<&TableBacking>, w: &mut Writer<'_>) {
        match b {
            None => {
                w.u8(0);
            }
            Some(b) => {
                w.u8(1);
                b.write(w);
            }
        }
    }

    /// Read an optional backing written by [`TableBacking::write_opt`].
    pub fn read_opt(r: &mut Reader<'_>) -> Result<Option<TableBacking>, MsgError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(TableBacking::read(r)?)),
            v => Err(MsgError::BadField {
                field: "backing present",
                value: v as u64,
            }),
        }
    }
}

/// Why a [`TableBacking`] was refused (the text says what to pass instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackingError(pub String);

/// A master's counters for its backed tables, in `GetServerInfo` (shown by `status`).
/// Wire: 14 × `u64` in field order, then the store's last error (`u16` len, ≤ 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheInfo<'a> {
    /// Objects not yet in their store (write-back queue).
    pub dirty_objects: u64,
    /// Their bytes.
    pub dirty_bytes: u64,
    /// Age of the oldest queued upload, ms (0: none).
    pub oldest_dirty_ms: u64,
    /// The dirty-bytes limit beyond which writes get `WRITE_BACK_FULL`.
    pub dirty_limit_bytes: u64,
    /// Uploads that succeeded.
    pub uploads: u64,
    /// Uploads that failed (and will be retried).
    pub upload_errors: u64,
    /// Hits on backed tables.
    pub hits: u64,
    /// Misses read through from the store.
    pub misses: u64,
    /// Misses answered from the negative cache.
    pub negative_hits: u64,
    /// Store reads (GET, conditional GET, HEAD).
    pub store_reads: u64,
    /// Store reads that failed.
    pub store_read_errors: u64,
    /// Objects passed through without being cached (above the admission limit).
    pub not_admitted: u64,
    /// Clean objects dropped by invalidation or revalidation.
    pub invalidated: u64,
    /// Clean objects of backed tables evicted by the cleaner.
    pub evicted: u64,
    /// The store's last error (empty: none since the server started).
    pub last_error: &'a str,
}

impl<'a> CacheInfo<'a> {
    /// Append the encoding.
    pub fn write(&self, w: &mut Writer<'_>) {
        for v in [
            self.dirty_objects,
            self.dirty_bytes,
            self.oldest_dirty_ms,
            self.dirty_limit_bytes,
            self.uploads,
            self.upload_errors,
            self.hits,
            self.misses,
            self.negative_hits,
            self.store_reads,
            self.store_read_errors,
            self.not_admitted,
            self.invalidated,
            self.evicted,
        ] {
            w.u64(v);
        }
        w.bytes_u16(self.last_error.as_bytes());
    }
    /// Read the encoding.
    pub fn read(r: &mut Reader<'a>) -> Result<CacheInfo<'a>, MsgError> {
        Ok(CacheInfo {
            dirty_objects: r.u64()?,
            dirty_bytes: r.u64()?,
            oldest_dirty_ms: r.u64()?,
            dirty_limit_bytes: r.u64()?,
            uploads: r.u64()?,
            upload_errors: r.u64()?,
            hits: r.u64()?,
            misses: r.u64()?,
            negative_hits: r.u64()?,
            store_reads: r.u64()?,
            store_read_errors: r.u64()?,
            not_admitted: r.u64()?,
            invalidated: r.u64()?,
            evicted: r.u64()?,
            last_error: read_str(r, "last store error", 1024)?,
        })
    }
}

/// `GetTableConfig` (coordinator): table id `u64`. Reply [`TableConfigResponse`];
/// `TABLE_DOESNT_EXIST` if there is no such table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetTableConfigRequest {
    /// Table id.
    pub table_id: u64,
}

/// `GetTableConfig` reply: name (`u16` len), optional backing (presence byte + backing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfigResponse<'a> {
    /// The table's name.
    pub name: &'a str,
    /// Its backing store, if it has one.
    pub backing: Option<TableBacking>,
}

impl Message<'_> for GetTableConfigRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.table_id);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| Ok(GetTableConfigRequest { table_id: r.u64()? }))
    }
}
impl Request<'_> for GetTableConfigRequest {
    const OPCODE: Opcode = Opcode::GetTableConfig;
    type Response<'b> = TableConfigResponse<'b>;
}

impl<'a> Message<'a> for TableConfigResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.bytes_u16(self.name.as_bytes());
        TableBacking::write_opt(self.backing.as_ref(), &mut w);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(TableConfigResponse {
                name: read_str(r, "table name", super::MAX_TABLE_NAME_LEN)?,
                backing: TableBacking::read_opt(r)?,
            })
        })
    }
}

/// `FlushObjects` (master): table `u64`, key (`u16` len; empty = every dirty object of the
/// table on this master), timeout ms `u32`. Waits until each object that was dirty when the
/// request arrived is in the store (or was overwritten and that newer write is); reply
/// [`FlushResponse`]. `TIMEOUT` (detail: how many remain and the store's last error) when the
/// time runs out; `UNKNOWN_TABLET` when the key is not this master's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Key, or empty for the whole table on this master.
    pub key: &'a [u8],
    /// How long to wait.
    pub timeout_ms: u32,
}

/// `FlushObjects` reply: objects `u64` and bytes `u64` that were waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushResponse {
    /// Objects that were dirty and are now in the store.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl<'a> Message<'a> for FlushRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.table)
            .bytes_u16(self.key)
            .u32(self.timeout_ms);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(FlushRequest {
                table: r.u64()?,
                key: r.bytes_u16()?,
                timeout_ms: r.u32()?,
            })
        })
    }
}
impl<'a> Request<'a> for FlushRequest<'a> {
    const OPCODE: Opcode = Opcode::FlushObjects;
    type Response<'b> = FlushResponse;
}

impl Message<'_> for FlushResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.objects).u64(self.bytes);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(FlushResponse {
                objects: r.u64()?,
                bytes: r.u64()?,
            })
        })
    }
}

/// `InvalidateObjects` (master): table `u64`, prefix flag `u8` (0: `key` is one key, 1: every
/// key starting with `key`; an empty prefix is the whole table on this master), key (`u16`
/// len). Drops the clean cached copies (the next read fetches from the store) and the negative
/// entries it names; dirty objects are kept (the cache's write is newer) and counted. Reply
/// [`InvalidateResponse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidateRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Whether `key` is a prefix.
    pub prefix: bool,
    /// Key or prefix.
    pub key: &'a [u8],
}

/// `InvalidateObjects` reply: invalidated `u64`, kept dirty `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InvalidateResponse {
    /// Clean objects dropped.
    pub invalidated: u64,
    /// Dirty objects kept (not yet uploaded: the cache's version is the newer one).
    pub kept_dirty: u64,
}

impl<'a> Message<'a> for InvalidateRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out)
            .u64(self.table)
            .u8(self.prefix as u8)
            .bytes_u16(self.key);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let table = r.u64()?;
            let prefix = super::read_bool(r, "prefix")?;
            let key = if prefix { r.bytes_u16()? } else { read_key(r)? };
            Ok(InvalidateRequest { table, prefix, key })
        })
    }
}
impl<'a> Request<'a> for InvalidateRequest<'a> {
    const OPCODE: Opcode = Opcode::InvalidateObjects;
    type Response<'b> = InvalidateResponse;
}

impl Message<'_> for InvalidateResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u64(self.invalidated).u64(self.kept_dirty);
    }
    fn decode(buf: &[u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(InvalidateResponse {
                invalidated: r.u64()?,
                kept_dirty: r.u64()?,
            })
        })
    }
}

/// `CheckBacking` (master): url (`u16` len, ≤ [`MAX_BACKING_URL_LEN`]). The master opens the
/// store with its own credentials and checks them and the bucket/container with one request;
/// reply empty on success, else `STORE_REJECTED` (credentials, no such bucket, bad URL) or
/// `STORE_UNAVAILABLE` with the store's message. Clients call it before creating a backed
/// table, so a wrong backing is refused when it is given rather than at the first miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckBackingRequest<'a> {
    /// The backing URL.
    pub url: &'a str,
}

impl<'a> Message<'a> for CheckBackingRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).bytes_u16(self.url.as_bytes());
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(CheckBackingRequest {
                url: read_str(r, "backing url", MAX_BACKING_URL_LEN)?,
            })
        })
    }
}
impl<'a> Request<'a> for CheckBackingRequest<'a> {
    const OPCODE: Opcode = Opcode::CheckBacking;
    type Response<'b> = super::Empty;
}

/// An object's store metadata: ETag (unquoted), content type, last-modified (ms since the
/// epoch, 0 unknown), user metadata (lower-case names). Wire: etag (`u16` len), content type
/// (`u16` len), last-modified `u64`, count `u32`, then name (`u16` len) value (`u16` len) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    /// ETag, empty if the store has not seen this version yet.
    pub etag: String,
    /// Content type, empty if unknown.
    pub content_type: String,
    /// Last-modified, ms since the epoch.
    pub last_modified_ms: u64,
    /// User metadata.
    pub user: Vec<(String, String)>,
}

impl ObjectMeta {
    /// Check the limits [`ObjectMeta::read`] enforces (each field ≤ [`MAX_META_FIELD_LEN`]
    /// bytes, ≤ [`MAX_USER_META`] pairs), so that an encoding is not refused (or, past
    /// 65 535 bytes, cannot be written).
    pub fn check(&self) -> Result<(), MsgError> {
        let field = |field: &'static str, s: &str| {
            if s.len() > MAX_META_FIELD_LEN {
                return Err(MsgError::TooLong {
                    field,
                    len: s.len(),
                    max: MAX_META_FIELD_LEN,
                });
            }
            Ok(())
        };
        field("etag", &self.etag)?;
        field("content type", &self.content_type)?;
        if self.user.len() > MAX_USER_META {
            return Err(MsgError::TooMany {
                what: "user metadata",
                count: self.user.len() as u64,
                max: MAX_USER_META as u64,
            });
        }
        for (k, v) in &self.user {
            field("metadata name", k)?;
            field("metadata value", v)?;
        }
        Ok(())
    }

    /// Append the encoding.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.bytes_u16(self.etag.as_bytes())
            .bytes_u16(self.content_type.as_bytes())
            .u64(self.last_modified_ms);
        write_count(w, self.user.len());
        for (k, v) in &self.user {
            w.bytes_u16(k.as_bytes()).bytes_u16(v.as_bytes());
        }
    }
    /// Read the encoding.
    pub fn read(r: &mut Reader<'_>) -> Result<ObjectMeta, MsgError> {
        let etag = read_str(r, "etag", MAX_META_FIELD_LEN)?.to_string();
        let content_type = read_str(r, "content type", MAX_META_FIELD_LEN)?.to_string();
        let last_modified_ms = r.u64()?;
        let n = read_count(r, "user metadata", 4, MAX_USER_META)?;
        let mut user = Vec::with_capacity(n);
        for _ in 0..n {
            let k = read_str(r, "metadata name", MAX_META_FIELD_LEN)?.to_string();
            let v = read_str(r, "metadata value", MAX_META_FIELD_LEN)?.to_string();
            user.push((k, v));
        }
        Ok(ObjectMeta {
            etag,
            content_type,
            last_modified_ms,
            user,
        })
    }
}

/// `ReadObject` (master): table `u64`, reject rules (9), key (`u16` len), offset `u64`, most
/// bytes `u32` (≤ [`MAX_READ_OBJECT_PIECE`]). Reply [`ReadObjectResponse`]: the object's
/// version (the same for every piece of one version: a reader that sees it change starts
/// again), its whole length and metadata, and the bytes from `offset`. A miss on a backed table
/// reads through like `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadObjectRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
    /// First byte wanted.
    pub offset: u64,
    /// Most bytes wanted.
    pub max_len: u32,
}

/// `ReadObject` reply: version `u64`, total length `u64`, metadata, data (`u32` len).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadObjectResponse<'a> {
    /// Version of the object.
    pub version: u64,
    /// Length of the whole object.
    pub total_len: u64,
    /// Store metadata.
    pub meta: ObjectMeta,
    /// The bytes from the requested offset.
    pub data: &'a [u8],
}

impl<'a> Message<'a> for ReadObjectRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rules.write(&mut w);
        w.bytes_u16(self.key).u64(self.offset).u32(self.max_len);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            let req = ReadObjectRequest {
                table: r.u64()?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
                offset: r.u64()?,
                max_len: r.u32()?,
            };
            if req.max_len > MAX_READ_OBJECT_PIECE {
                return Err(MsgError::TooLong {
                    field: "max_len",
                    len: req.max_len as usize,
                    max: MAX_READ_OBJECT_PIECE as usize,
                });
            }
            Ok(req)
        })
    }
}
impl<'a> Request<'a> for ReadObjectRequest<'a> {
    const OPCODE: Opcode = Opcode::ReadObject;
    type Response<'b> = ReadObjectResponse<'b>;
}

impl ReadObjectResponse<'_> {
    /// Append everything but the data, for `data_len` bytes the caller appends.
    pub fn encode_head(
        version: u64,
        total_len: u64,
        meta: &ObjectMeta,
        data_len: usize,
        out: &mut Vec<u8>,
    ) {
        let mut w = Writer::new(out);
        w.u64(version).u64(total_len);
        meta.write(&mut w);
        w.u32(data_len as u32);
    }
}

impl<'a> Message<'a> for ReadObjectResponse<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.version).u64(self.total_len);
        self.meta.write(&mut w);
        w.bytes_u32(self.data);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(ReadObjectResponse {
                version: r.u64()?,
                total_len: r.u64()?,
                meta: ObjectMeta::read(r)?,
                data: r.bytes_u32_max(MAX_READ_OBJECT_PIECE as usize)?,
            })
        })
    }
}

/// `WriteObject` (master): table `u64`, exactly-once header (40), reject rules (9), key (`u16`
/// len), metadata ([`ObjectMeta`]'s encoding and limits), value (`u32` len, ≤ 1 MiB). Reply
/// [`VersionResponse`]. A `Write` of a backed table (same key checks, write-back limit,
/// write-through wait, exactly-once and reject rules) whose stored envelope carries `meta`
/// instead of empty metadata: its content type and user metadata are uploaded with the bytes;
/// a last-modified of 0 is stamped with the write's wall-clock time; the ETag is kept until
/// the upload replaces it with the store's. On a plain table: `REQUEST_FORMAT_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteObjectRequest<'a> {
    /// Table id.
    pub table: u64,
    /// Exactly-once header.
    pub rpc: ExactlyOnce,
    /// Conditions.
    pub rules: RejectRules,
    /// Key.
    pub key: &'a [u8],
    /// The object's metadata.
    pub meta: ObjectMeta,
    /// The object's bytes.
    pub value: &'a [u8],
}

impl<'a> Message<'a> for WriteObjectRequest<'a> {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.table);
        self.rpc.write(&mut w);
        self.rules.write(&mut w);
        w.bytes_u16(self.key);
        self.meta.write(&mut w);
        w.bytes_u32(self.value);
    }
    fn decode(buf: &'a [u8]) -> Result<Self, MsgError> {
        decode_all(buf, |r| {
            Ok(WriteObjectRequest {
                table: r.u64()?,
                rpc: ExactlyOnce::read(r)?,
                rules: RejectRules::read(r)?,
                key: read_key(r)?,
                meta: ObjectMeta::read(r)?,
                value: read_value(r)?,
            })
        })
    }
}
impl<'a> Request<'a> for WriteObjectRequest<'a> {
    const OPCODE: Opcode = Opcode::WriteObject;
    type Response<'b> = VersionResponse;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::testutil::*;

    fn backing() -> TableBacking {
        TableBacking {
            url: "s3://photos/in".into(),
            policy: WritePolicy::WriteThrough,
            negative_ttl_ms: 500,
            revalidate_ms: 30_000,
            admit_max_bytes: 1 << 20,
            ttl_ms: 0,
        }
    }

    #[test]
    fn round_trips() {
        round_trip!(GetTableConfigRequest { table_id: 7 });
        round_trip!(CheckBackingRequest { url: "swift://c/p" });
        round_trip!(TableConfigResponse {
            name: "photos",
            backing: Some(backing()),
        });
        round_trip!(TableConfigResponse {
            name: "plain",
            backing: None,
        });
        round_trip!(FlushRequest {
            table: 3,
            key: b"k",
            timeout_ms: 1000,
        });
        round_trip!(FlushRequest {
            table: 3,
            key: b"",
            timeout_ms: 0,
        });
        round_trip!(FlushResponse {
            objects: 2,
            bytes: 9
        });
        round_trip!(InvalidateRequest {
            table: 1,
            prefix: true,
            key: b"",
        });
        round_trip!(InvalidateRequest {
            table: 1,
            prefix: false,
            key: b"a/b",
        });
        round_trip!(InvalidateResponse {
            invalidated: 4,
            kept_dirty: 1
        });
        round_trip!(ReadObjectRequest {
            table: 1,
            rules: RejectRules::NONE,
            key: b"k",
            offset: 1 << 20,
            max_len: 4096,
        });
        round_trip!(ReadObjectResponse {
            version: 9,
            total_len: 3 << 20,
            meta: ObjectMeta {
                etag: "abc".into(),
                content_type: "image/png".into(),
                last_modified_ms: 1_700_000_000_000,
                user: vec![("owner".into(), "me".into())],
            },
            data: b"xyz",
        });
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            etag: "9e107d9d372bb6826bd81d3542a419d6".into(),
            content_type: "text/plain".into(),
            last_modified_ms: 0,
            user: vec![("owner".into(), "me".into()), ("k".into(), String::new())],
        }
    }

    fn write_object(meta: ObjectMeta, value: &[u8]) -> WriteObjectRequest<'_> {
        WriteObjectRequest {
            table: 4,
            rpc: ExactlyOnce {
                client_id: 3,
                rpc_id: 9,
                ack_id: 8,
                lease: super::super::ClientLease {
                    expiration: 30_000,
                    timestamp: 1_000,
                },
            },
            rules: RejectRules::version_is(7),
            key: b"a/b.txt",
            meta,
            value,
        }
    }

    #[test]
    fn write_object_round_trips() {
        round_trip!(write_object(meta(), b"hello"));
        round_trip!(write_object(ObjectMeta::default(), b""));
        let big = vec![7u8; crate::msg::MAX_VALUE_LEN];
        round_trip!(write_object(meta(), &big));
        assert_eq!(WriteObjectRequest::OPCODE.as_u16(), 0x0505);
    }

    #[test]
    fn write_object_bad_lengths_are_refused() {
        let ok = write_object(meta(), b"v").to_vec();
        // The value's length field is the last 4 bytes before the 1-byte value.
        let at = ok.len() - 1 - 4;
        for len in [0u32, 2, 1 << 20, (1 << 20) + 1, u32::MAX] {
            let mut b = ok.clone();
            b[at..at + 4].copy_from_slice(&len.to_le_bytes());
            assert!(WriteObjectRequest::decode(&b).is_err(), "value len {len}");
        }
        // A value over the limit, with all its bytes present.
        let over = vec![0u8; crate::msg::MAX_VALUE_LEN + 1];
        let b = write_object(meta(), &over).to_vec();
        assert!(WriteObjectRequest::decode(&b).is_err());
        // Metadata over its limits: a long field, too many pairs, a huge declared count.
        let mut long = meta();
        long.content_type = "x".repeat(MAX_META_FIELD_LEN + 1);
        assert!(long.check().is_err());
        assert!(WriteObjectRequest::decode(&write_object(long, b"v").to_vec()).is_err());
        let mut many = meta();
        many.user = (0..=MAX_USER_META)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert!(many.check().is_err());
        assert!(WriteObjectRequest::decode(&write_object(many, b"v").to_vec()).is_err());
        assert!(meta().check().is_ok());
        let mut b = Vec::new();
        let mut w = Writer::new(&mut b);
        w.u64(1);
        ExactlyOnce::default().write(&mut w);
        RejectRules::NONE.write(&mut w);
        w.bytes_u16(b"k")
            .bytes_u16(b"")
            .bytes_u16(b"")
            .u64(0)
            .u32(u32::MAX);
        assert!(
            WriteObjectRequest::decode(&b).is_err(),
            "count past the bytes"
        );
        // An empty key, bad UTF-8 in the metadata.
        let mut b = Vec::new();
        let mut w = Writer::new(&mut b);
        w.u64(1);
        ExactlyOnce::default().write(&mut w);
        RejectRules::NONE.write(&mut w);
        w.bytes_u16(b"").bytes_u16(b"").bytes_u16(b"").u64(0).u32(0);
        w.bytes_u32(b"v");
        assert!(WriteObjectRequest::decode(&b).is_err(), "empty key");
        let mut b = Vec::new();
        let mut w = Writer::new(&mut b);
        w.u64(1);
        ExactlyOnce::default().write(&mut w);
        RejectRules::NONE.write(&mut w);
        w.bytes_u16(b"k")
            .bytes_u16(&[0xff])
            .bytes_u16(b"")
            .u64(0)
            .u32(0);
        w.bytes_u32(b"v");
        assert!(WriteObjectRequest::decode(&b).is_err(), "etag not UTF-8");
    }

    #[test]
    fn bad_input_is_refused() {
        // A single key must not be empty; a prefix may be.
        let mut b = Vec::new();
        Writer::new(&mut b).u64(1).u8(0).bytes_u16(b"");
        assert!(InvalidateRequest::decode(&b).is_err());
        // Unknown policy.
        let mut b = Vec::new();
        let mut w = Writer::new(&mut b);
        w.bytes_u16(b"t").u8(1).bytes_u16(b"s3://b").u8(9);
        w.u32(0).u32(0).u64(0).u64(0);
        assert!(TableConfigResponse::decode(&b).is_err());
        // Oversized piece.
        let mut b = Vec::new();
        let mut w = Writer::new(&mut b);
        w.u64(1);
        RejectRules::NONE.write(&mut w);
        w.bytes_u16(b"k").u64(0).u32(MAX_READ_OBJECT_PIECE + 1);
        assert!(ReadObjectRequest::decode(&b).is_err());
    }

    #[test]
    fn backing_validation() {
        assert!(backing().validate().is_ok());
        assert!(TableBacking::new("", WritePolicy::Ephemeral)
            .validate()
            .is_ok());
        let e = TableBacking::new("", WritePolicy::WriteBack)
            .validate()
            .unwrap_err()
            .0;
        assert!(e.contains("needs a store"), "{e}");
        let e = TableBacking::new("gs://b", WritePolicy::WriteBack)
            .validate()
            .unwrap_err()
            .0;
        assert!(e.contains("unsupported backing"), "{e}");
        assert!(TableBacking::new("s3://", WritePolicy::WriteBack)
            .validate()
            .is_err());
        assert_eq!(
            WritePolicy::parse("write-back"),
            Some(WritePolicy::WriteBack)
        );
        assert_eq!(WritePolicy::parse("lazy"), None);
    }
}
